UNWIND $keys AS k
MATCH (:Identifier {key: k})-[s:SEEN_IN]->(:Event)
DELETE s
