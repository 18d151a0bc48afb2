UNWIND $rows AS r
MATCH (:Profile {id: r.profile})-[l:LIVES_AT]->(:Address {key: r.address})
DELETE l
