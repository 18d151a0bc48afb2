MATCH (a:Alias)
WHERE a.id > $after
RETURN a.id AS id, a.survivor AS survivor
ORDER BY a.id
LIMIT $limit
