UNWIND $rows AS r
MATCH (k:MatchKey {key: r.key, ident: r.ident})
DELETE k
