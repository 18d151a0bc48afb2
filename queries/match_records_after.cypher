MATCH (m:MatchRecord)
WHERE m.ident > $after
RETURN m.ident AS ident, m.body AS body
ORDER BY m.ident
LIMIT $limit
