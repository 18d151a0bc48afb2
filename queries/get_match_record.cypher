MATCH (m:MatchRecord {ident: $key})
RETURN m.body AS body
