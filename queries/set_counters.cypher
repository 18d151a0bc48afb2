MERGE (m:Meta {name: "counters"})
SET m.profile_seq = $profile_seq, m.event_seq = $event_seq, m.commit_seq = $commit_seq,
    m.history_seq = $history_seq, m.suppressed = $suppressed
