UNWIND $rows AS r
MATCH (a:Identifier {key: r.a})
MATCH (b:Identifier {key: r.b})
MERGE (a)-[e:LINKED]->(b)
SET e.status = r.status, e.rule = r.rule, e.sources = r.sources, e.count = r.count,
    e.first_seen = r.first_seen, e.last_seen = r.last_seen, e.event_ids = r.event_ids,
    e.probable = r.probable
RETURN count(e) AS written
