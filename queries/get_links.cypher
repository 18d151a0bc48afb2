UNWIND $rows AS r
MATCH (a:Identifier {key: r.a})-[e:LINKED]->(b:Identifier {key: r.b})
RETURN a.key AS key, b.key AS other, e.status AS status, e.rule AS rule, e.sources AS sources,
       e.count AS count, e.first_seen AS first_seen, e.last_seen AS last_seen,
       e.event_ids AS event_ids, e.probable AS probable
