UNWIND $rows AS r
MERGE (e:Event {id: r.id})
SET e.seq = r.seq, e.source = r.source, e.type = r.type, e.timestamp = r.timestamp,
    e.body = r.body
