MATCH (l:Meta {name: "writer_lease"})
WHERE l.holder = $holder OR l.expires < $now
SET l.holder = $holder, l.label = $label, l.expires = $expires
