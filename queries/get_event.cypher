MATCH (e:Event {id: $id})
RETURN e.body AS body
