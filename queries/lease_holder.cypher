MATCH (l:Meta {name: "writer_lease"})
RETURN l.holder AS holder, l.label AS label, l.expires AS expires
