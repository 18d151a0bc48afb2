MATCH (m:Meta {name: "counters"})
RETURN m.profile_seq AS profile_seq, m.event_seq AS event_seq, m.commit_seq AS commit_seq,
       m.history_seq AS history_seq, m.suppressed AS suppressed
