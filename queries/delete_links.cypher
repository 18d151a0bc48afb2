UNWIND $rows AS r
MATCH (a:Identifier {key: r.a})-[e:LINKED]->(b:Identifier {key: r.b})
DELETE e
