//! The one table of `/v1` routes and the permission each needs: the single source of truth
//! for who may call what.
//!
//! - The HTTP edge refuses to answer a route whose handler's `Auth<P>` disagrees with this
//!   table (or that is missing from it), so the code cannot drift from it.
//! - The README's role table is generated from it ([`role_table_markdown`]; a unit test
//!   fails when the README differs).
//! - The authorization-matrix test calls every route of it with every role.
//!
//! Which routes a role may call is [`Role::allows`] applied to this table; how personal
//! values appear to it and which forms it may present are [`values_shown`] and
//! [`values_accepted`].

use super::keys::{Permission, Role};

/// One `/v1` route: its method, actix route pattern and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    pub method: &'static str,
    /// The route pattern as actix matches it (`/v1/profiles/{id}`).
    pub pattern: &'static str,
    pub permission: Permission,
}

const fn rule(method: &'static str, pattern: &'static str, permission: Permission) -> RouteRule {
    RouteRule {
        method,
        pattern,
        permission,
    }
}

/// Every `/v1` route. `/health`, `/ready`, `/metrics` and the console's files are outside
/// `/v1` and need no key (`/metrics` any key with `auth.protect_metrics`).
pub const ROUTES: &[RouteRule] = &[
    rule("POST", "/v1/events", Permission::Ingest),
    rule("POST", "/v1/identify", Permission::Ingest),
    rule("POST", "/v1/track", Permission::Ingest),
    rule("POST", "/v1/page", Permission::Ingest),
    rule("POST", "/v1/screen", Permission::Ingest),
    rule("POST", "/v1/group", Permission::Ingest),
    rule("POST", "/v1/alias", Permission::Ingest),
    rule("POST", "/v1/batch", Permission::Ingest),
    rule("GET", "/v1/lookup", Permission::Lookup),
    rule("GET", "/v1/profiles/{id}", Permission::ReadProfile),
    rule("GET", "/v1/search", Permission::Search),
    rule("GET", "/v1/profiles/{id}/devices", Permission::Views),
    rule("GET", "/v1/profiles/{id}/household", Permission::Views),
    rule("GET", "/v1/households/{id}", Permission::Views),
    rule("GET", "/v1/profiles/{id}/graph", Permission::Views),
    rule("GET", "/v1/profiles/{id}/explain", Permission::Views),
    rule("GET", "/v1/profiles/{id}/history", Permission::Views),
    rule("GET", "/v1/explain", Permission::Admin),
    rule("GET", "/v1/review", Permission::Admin),
    rule("POST", "/v1/review/{seq}", Permission::Admin),
    rule("POST", "/v1/profiles/merge", Permission::Admin),
    rule("POST", "/v1/profiles/{id}/split", Permission::Admin),
    rule("GET", "/v1/profiles/{id}/values", Permission::Admin),
    rule("PUT", "/v1/profiles/{id}/pins/{name}", Permission::Admin),
    rule("DELETE", "/v1/profiles/{id}/pins/{name}", Permission::Admin),
    rule("GET", "/v1/changes", Permission::Changes),
    rule("POST", "/v1/audiences", Permission::Audiences),
    rule("GET", "/v1/audiences", Permission::Audiences),
    rule("POST", "/v1/audiences/estimate", Permission::Audiences),
    rule("GET", "/v1/audiences/{id}", Permission::Audiences),
    rule("DELETE", "/v1/audiences/{id}", Permission::Audiences),
    rule("GET", "/v1/audiences/{id}/members", Permission::Audiences),
    rule(
        "PUT",
        "/v1/audiences/{id}/destinations",
        Permission::Audiences,
    ),
    rule("GET", "/v1/stats", Permission::Stats),
    rule("GET", "/v1/exports/{kind}", Permission::Changes),
    rule("DELETE", "/v1/links", Permission::Admin),
    rule(
        "DELETE",
        "/v1/identifiers/{kind}/{value:.*}",
        Permission::Admin,
    ),
    rule("POST", "/v1/erasure", Permission::Admin),
    rule("POST", "/v1/subject-access", Permission::Admin),
    rule("DELETE", "/v1/suppressions", Permission::Admin),
    rule("GET", "/v1/audit", Permission::Admin),
    rule("GET", "/v1/config", Permission::Admin),
    rule("POST", "/v1/admin/backup", Permission::Admin),
    rule("GET", "/v1/admin/reresolve", Permission::Admin),
    rule("POST", "/v1/admin/reresolve", Permission::Admin),
    rule("GET", "/v1/webhooks", Permission::Admin),
    rule("POST", "/v1/webhooks/{name}/replay", Permission::Admin),
    rule("GET", "/v1/destinations", Permission::Admin),
    rule("POST", "/v1/destinations/{name}/resync", Permission::Admin),
    rule("GET", "/v1/replication/log", Permission::Admin),
    rule("GET", "/v1/replication/snapshot", Permission::Admin),
    rule(
        "GET",
        "/v1/replication/snapshot/{id}/{file}",
        Permission::Admin,
    ),
    rule("GET", "/v1/tenants", Permission::Tenants),
    rule("POST", "/v1/tenants", Permission::Tenants),
    rule("GET", "/v1/tenants/{id}", Permission::Tenants),
    rule("PATCH", "/v1/tenants/{id}", Permission::Tenants),
    rule("DELETE", "/v1/tenants/{id}", Permission::Tenants),
    rule("POST", "/v1/tenants/{id}/suspend", Permission::Tenants),
    rule("POST", "/v1/tenants/{id}/resume", Permission::Tenants),
    rule("POST", "/v1/tenants/{id}/keys", Permission::Tenants),
    rule(
        "DELETE",
        "/v1/tenants/{id}/keys/{name}",
        Permission::Tenants,
    ),
];

/// The permission route `method` `pattern` needs, if it is in the table.
pub fn permission_of(method: &str, pattern: &str) -> Option<Permission> {
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.pattern == pattern)
        .map(|r| r.permission)
}

/// The routes `role` may call.
pub fn routes_of(role: Role) -> impl Iterator<Item = &'static RouteRule> {
    ROUTES.iter().filter(move |r| role.allows(r.permission))
}

/// How personal values appear in `role`'s answers.
pub fn values_shown(role: Role) -> &'static str {
    match role {
        Role::Ingest => "n/a (reads nothing)",
        Role::Service | Role::Admin => "full",
        Role::Agent => {
            "emails `j***@example.com`, phones `+1 *** *** 0100`, birth dates, streets and \
             postcodes masked; names, cities and other identifiers readable; full with \
             `unmask = true`"
        }
        Role::Analyst => {
            "every identifier value is a stable keyed pseudonym (`email:ps_3f9a…`, \
             HMAC-SHA256); traits masked"
        }
        Role::Operator => "n/a (reads no tenant's data: ids, quotas, usage, key names)",
    }
}

/// What `role` may present to name a person (the rule against probing with raw values).
pub fn values_accepted(role: Role) -> &'static str {
    match role {
        Role::Ingest => "n/a",
        Role::Service | Role::Admin => "any raw identifier value",
        Role::Agent => {
            "profile ids, and identifiers as it is shown them: a masked agent's explain \
             takes the masked forms (`email:j***@example.com`), never raw emails or phones, \
             and its search refuses emails and phone numbers (`400 masked_value`); with \
             `unmask = true`, raw values"
        }
        Role::Analyst => {
            "profile ids and household ids; explain takes the pseudonyms it is shown \
             (`email:ps_3f9a…`), never raw values"
        }
        Role::Operator => "n/a",
    }
}

/// The README's role table, generated from [`ROUTES`], [`Role::allows`], [`values_shown`]
/// and [`values_accepted`].
pub fn role_table_markdown() -> String {
    let mut out = String::from(
        "| role | may call | personal values shown | may present |\n|---|---|---|---|\n",
    );
    for role in Role::ALL {
        let routes: Vec<String> = routes_of(role)
            .map(|r| format!("`{} {}`", r.method, r.pattern))
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            role.name(),
            routes.join(", "),
            values_shown(role),
            values_accepted(role)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once_and_every_permission_is_used() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(r.pattern.starts_with("/v1/"), "{r:?}");
            assert!(
                ROUTES[..i]
                    .iter()
                    .all(|o| (o.method, o.pattern) != (r.method, r.pattern)),
                "{r:?} is listed twice"
            );
        }
        for p in Permission::ALL {
            assert!(ROUTES.iter().any(|r| r.permission == p), "{p:?} is unused");
        }
        assert_eq!(permission_of("get", "/v1/lookup"), Some(Permission::Lookup));
        assert_eq!(permission_of("GET", "/v1/nothing"), None);
    }

    #[test]
    fn only_full_visibility_roles_may_look_up_raw_values() {
        // The lookup takes any raw identifier value: a role shown masked or pseudonymized
        // values must not have it (it would confirm guesses).
        let lookup: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(Permission::Lookup))
            .collect();
        assert_eq!(lookup, [Role::Service, Role::Admin]);
    }

    /// The README's role table is this table; when they differ, paste the printed one.
    #[test]
    fn the_readme_role_table_is_generated_from_the_route_table() {
        let readme = include_str!("../../README.md");
        let table = role_table_markdown();
        assert!(
            readme.contains(&table),
            "README.md's role table differs from governance::access; replace it with:\n\n{table}"
        );
    }
}
