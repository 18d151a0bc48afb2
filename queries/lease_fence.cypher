MATCH (l:Meta {name: "writer_lease"})
SET l.touched = $now
WITH l
WHERE l.holder = $holder
SET l.expires = $expires
RETURN count(l) AS written
