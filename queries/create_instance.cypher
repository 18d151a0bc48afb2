MERGE (m:Meta {name: "instance"})
ON CREATE SET m.id = $id
RETURN m.id AS id
