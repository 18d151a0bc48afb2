MATCH (h:History {profile: $id})
RETURN h.body AS body
ORDER BY h.seq
LIMIT $limit
