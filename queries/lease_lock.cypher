MERGE (l:Meta {name: "writer_lease"})
ON CREATE SET l.holder = "", l.label = "", l.expires = 0
SET l.touched = $now
