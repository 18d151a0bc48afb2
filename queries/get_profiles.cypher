UNWIND $ids AS id
MATCH (p:Profile {id: id})
RETURN p.id AS id, p.state AS state
