MATCH (a:Alias {id: $id})
RETURN a.survivor AS survivor
