MATCH (p:Profile)
WHERE p.id > $after AND p.golden IS NOT NULL
RETURN p.id AS id, p.golden_hint AS hint, p.golden AS golden
ORDER BY p.id
LIMIT $limit
