UNWIND $ids AS id
MATCH (e:Event {id: id})
RETURN e.id AS id
