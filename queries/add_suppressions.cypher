UNWIND $hashes AS hash
MERGE (:Suppressed {hash: hash})
