UNWIND $ids AS id
MATCH (e:Event {id: id})
DETACH DELETE e
