MATCH (s:Suppressed {hash: $hash})
RETURN count(s) AS n
