UNWIND $ids AS id
MATCH (h:History {profile: id})
DELETE h
