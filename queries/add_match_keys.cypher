UNWIND $rows AS r
MERGE (:MatchKey {key: r.key, ident: r.ident})
