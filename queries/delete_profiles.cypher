UNWIND $ids AS id
MATCH (p:Profile {id: id})
DETACH DELETE p
