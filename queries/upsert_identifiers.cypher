UNWIND $rows AS r
MERGE (n:Identifier {key: r.key})
SET n.kind = r.kind, n.value = r.value, n.profile_id = r.profile_id,
    n.first_seen = r.first_seen, n.last_seen = r.last_seen, n.sources = r.sources,
    n.event_count = r.event_count, n.platform = r.platform
