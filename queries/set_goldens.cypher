UNWIND $rows AS r
MERGE (p:Profile {id: r.id})
SET p.golden = r.golden, p.golden_hint = r.hint
