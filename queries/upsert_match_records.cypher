UNWIND $rows AS r
MERGE (m:MatchRecord {ident: r.ident})
SET m.body = r.body
