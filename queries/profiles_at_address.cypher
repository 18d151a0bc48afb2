MATCH (p:Profile)-[:LIVES_AT]->(:Address {key: $key})
RETURN p.id AS id
ORDER BY p.id
LIMIT $limit
