UNWIND $rows AS r
MERGE (a:Alias {id: r.id})
SET a.survivor = r.survivor
