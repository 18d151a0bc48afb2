UNWIND $keys AS k
MATCH (n:Identifier {key: k})
DETACH DELETE n
