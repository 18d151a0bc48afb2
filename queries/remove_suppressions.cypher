UNWIND $hashes AS hash
MATCH (s:Suppressed {hash: hash})
DELETE s
