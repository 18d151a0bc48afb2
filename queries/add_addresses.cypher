UNWIND $rows AS r
MERGE (a:Address {key: r.address})
MERGE (p:Profile {id: r.profile})
MERGE (p)-[:LIVES_AT]->(a)
