UNWIND $rows AS r
MERGE (h:History {key: r.key})
SET h.profile = r.profile, h.seq = r.seq, h.body = r.body
