MATCH (l:Meta {name: "writer_lease"})
WHERE l.holder = $holder
SET l.expires = 0
