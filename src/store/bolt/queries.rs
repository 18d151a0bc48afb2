//! Every Cypher statement the Bolt store sends, compiled in from `queries/` (one statement
//! per file, named for what it does). Input only ever reaches them as parameters.

macro_rules! statement {
    ($name:ident, $file:literal) => {
        pub const $name: &str =
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/queries/", $file));
    };
}

// Writes (batched, `UNWIND $rows`), in the order `BoltGraph::apply` sends them.
statement!(UPSERT_IDENTIFIERS, "upsert_identifiers.cypher");
statement!(UPSERT_PROFILES, "upsert_profiles.cypher");
statement!(SET_GOLDENS, "set_goldens.cypher");
statement!(CLEAR_GOLDENS, "clear_goldens.cypher");
statement!(UPSERT_ALIASES, "upsert_aliases.cypher");
statement!(DELETE_LINKS, "delete_links.cypher");
statement!(UPSERT_LINKS, "upsert_links.cypher");
statement!(INSERT_EVENTS, "insert_events.cypher");
statement!(UNLINK_EVENTS, "unlink_events.cypher");
statement!(LINK_EVENTS, "link_events.cypher");
statement!(REMOVE_ADDRESSES, "remove_addresses.cypher");
statement!(ADD_ADDRESSES, "add_addresses.cypher");
statement!(UPSERT_MATCH_RECORDS, "upsert_match_records.cypher");
statement!(DELETE_MATCH_RECORDS, "delete_match_records.cypher");
statement!(REMOVE_MATCH_KEYS, "remove_match_keys.cypher");
statement!(ADD_MATCH_KEYS, "add_match_keys.cypher");
statement!(DELETE_EVENTS, "delete_events.cypher");
statement!(DELETE_ALIASES, "delete_aliases.cypher");
statement!(DROP_HISTORY, "drop_history.cypher");
statement!(ADD_SUPPRESSIONS, "add_suppressions.cypher");
statement!(REMOVE_SUPPRESSIONS, "remove_suppressions.cypher");
statement!(INSERT_HISTORY, "insert_history.cypher");
statement!(DELETE_IDENTIFIERS, "delete_identifiers.cypher");
statement!(DELETE_PROFILES, "delete_profiles.cypher");
statement!(SET_COUNTERS, "set_counters.cypher");
statement!(CREATE_INSTANCE, "create_instance.cypher");

// The writer lease.
statement!(LEASE_LOCK, "lease_lock.cypher");
statement!(LEASE_CLAIM, "lease_claim.cypher");
statement!(LEASE_HOLDER, "lease_holder.cypher");
statement!(LEASE_FENCE, "lease_fence.cypher");
statement!(LEASE_RELEASE, "lease_release.cypher");

// Reads (parameterized point reads and pages).
statement!(GET_COUNTERS, "get_counters.cypher");
statement!(GET_IDENTIFIER, "get_identifier.cypher");
statement!(GET_IDENTIFIERS, "get_identifiers.cypher");
statement!(IDENTIFIERS_AFTER, "identifiers_after.cypher");
statement!(GET_LINK, "get_link.cypher");
statement!(GET_LINKS, "get_links.cypher");
statement!(GET_PROFILES, "get_profiles.cypher");
statement!(STORED_EVENTS, "stored_events.cypher");
statement!(LINKS_OF, "links_of.cypher");
statement!(GET_PROFILE, "get_profile.cypher");
statement!(GET_GOLDEN, "get_golden.cypher");
statement!(GOLDENS_AFTER, "goldens_after.cypher");
statement!(GET_ALIAS, "get_alias.cypher");
statement!(ALIASES_AFTER, "aliases_after.cypher");
statement!(GET_EVENT, "get_event.cypher");
statement!(EVENT_IDS_OF, "event_ids_of.cypher");
statement!(PROFILES_AT_ADDRESS, "profiles_at_address.cypher");
statement!(HISTORY_OF, "history_of.cypher");
statement!(GET_MATCH_RECORD, "get_match_record.cypher");
statement!(IS_SUPPRESSED, "is_suppressed.cypher");
statement!(MATCH_CANDIDATES, "match_candidates.cypher");
statement!(MATCH_RECORDS_AFTER, "match_records_after.cypher");
