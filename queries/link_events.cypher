UNWIND $rows AS r
MATCH (i:Identifier {key: r.key})
MATCH (e:Event {id: r.event})
MERGE (i)-[s:SEEN_IN]->(e)
SET s.seq = r.seq
RETURN count(s) AS written
