UNWIND $ids AS id
MATCH (p:Profile {id: id})
SET p.golden = null, p.golden_hint = null
