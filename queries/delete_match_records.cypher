UNWIND $keys AS k
MATCH (m:MatchRecord {ident: k})
DELETE m
