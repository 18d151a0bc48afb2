UNWIND $keys AS k
MATCH (n:Identifier {key: k})
RETURN n.key AS key, n.profile_id AS profile_id, n.first_seen AS first_seen,
       n.last_seen AS last_seen, n.sources AS sources, n.event_count AS event_count,
       n.platform AS platform
