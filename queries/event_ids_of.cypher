MATCH (:Identifier {key: $key})-[s:SEEN_IN]->(e:Event)
RETURN e.id AS id
ORDER BY s.seq
LIMIT $limit
