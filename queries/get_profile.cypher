MATCH (p:Profile {id: $id})
RETURN p.state AS state
