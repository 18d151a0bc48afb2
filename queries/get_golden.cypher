MATCH (p:Profile {id: $id})
RETURN p.golden_hint AS hint, p.golden AS golden
