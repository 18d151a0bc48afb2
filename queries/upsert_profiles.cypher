UNWIND $rows AS r
MERGE (p:Profile {id: r.id})
SET p.seq = r.seq, p.state = r.state, p.address_key = r.address_key
