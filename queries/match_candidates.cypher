MATCH (k:MatchKey {key: $key})
RETURN k.ident AS ident
ORDER BY k.ident
LIMIT $limit
