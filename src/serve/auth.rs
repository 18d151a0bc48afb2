//! Enforcement of `governance` at the HTTP edge.
//!
//! Every `/v1` handler takes an [`Auth<P>`] argument, where `P` names the permission the
//! route needs: the check is part of the handler's signature, so no route can forget it.
//! The extractor reads the key (`Authorization: Bearer <key>`, `X-Api-Key`, or Basic with the
//! key as user name, as Segment sends a writeKey), checks the
//! role and the key's rate, and registers the request for the audit trail; the [`audit`]
//! middleware writes the entry once the answer is known (status, profile ids).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde_json::Value;

use super::error::ApiError;
use crate::engine::Engine;
use crate::governance::access;
use crate::governance::audit::AuditEntry;
use crate::governance::keys::{Caller, Denied, Permission, Visibility};
use crate::governance::mask::Masker;
use crate::governance::Governance;

/// A permission as a type, for [`Auth`].
pub trait Perm {
    const PERMISSION: Permission;
}

macro_rules! perms {
    ($($name:ident),*) => {
        $(
            pub struct $name;
            impl Perm for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*
    };
}

/// The permissions, as types (`Auth<perm::Views>`).
pub mod perm {
    use super::{Perm, Permission};
    perms!(
        Ingest,
        Lookup,
        ReadProfile,
        Search,
        Views,
        Changes,
        Audiences,
        Stats,
        Admin,
        Tenants
    );
}

/// What the audit middleware needs to know about a request.
#[derive(Clone, Default)]
struct AuditNote {
    caller: Option<Caller>,
    profiles: Arc<Mutex<Vec<String>>>,
}

/// An authorized caller of a route that needs `P`.
pub struct Auth<P: Perm> {
    pub caller: Caller,
    gov: web::Data<Governance>,
    note: AuditNote,
    _p: PhantomData<P>,
}

impl<P: Perm> Auth<P> {
    /// Records the profile ids this request read or changed, for the audit trail.
    pub fn touched<I: IntoIterator<Item = impl Into<String>>>(&self, ids: I) {
        if let Ok(mut p) = self.note.profiles.lock() {
            for id in ids {
                let id: String = id.into();
                if !p.contains(&id) && p.len() < 1000 {
                    p.push(id);
                }
            }
        }
    }

    pub fn visibility(&self) -> Visibility {
        self.caller.visibility
    }

    /// Masks `v` for this caller (the one place: see `governance::mask`).
    pub fn mask(&self, engine: &Engine, v: &mut Value) {
        if self.caller.visibility == Visibility::Full {
            return;
        }
        let kinds = engine.identifier_kinds();
        Masker {
            visibility: self.caller.visibility,
            secret: &self.gov.pseudonym_key,
            kinds: &kinds,
        }
        .apply(v);
    }

    /// What masking this caller's answers takes, for answers built off the request's
    /// thread (streams): `None` when values are shown as stored.
    pub fn masking(&self, engine: &Engine) -> Option<(Visibility, Vec<u8>, Vec<String>)> {
        (self.caller.visibility != Visibility::Full).then(|| {
            (
                self.caller.visibility,
                self.gov.pseudonym_key.clone(),
                engine.identifier_kinds(),
            )
        })
    }

    /// `keys` (`kind:value`) as this caller sees them, in order (to map masked
    /// identifiers back to the real ones).
    pub fn masked_keys(&self, engine: &Engine, keys: &[String]) -> Vec<String> {
        let mut v = Value::Array(keys.iter().cloned().map(Value::String).collect());
        self.mask(engine, &mut v);
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| i.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, `X-Api-Key: <key>`, or
/// `Authorization: Basic` with the key as the user name and an empty password (a
/// Segment/RudderStack writeKey).
pub(crate) fn presented_key(req: &HttpRequest) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, key) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("basic") {
            return basic_user(key.trim());
        }
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_owned());
    }
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| k.trim().to_owned())
}

/// The user name of HTTP Basic credentials (`base64(user:password)`); the password is
/// ignored (Segment sends the writeKey with an empty one).
fn basic_user(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

fn denied(d: Denied) -> ApiError {
    match d {
        Denied::Unauthenticated => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API key is required (Authorization: Bearer <key>)",
        )
        .with_header(
            header::WWW_AUTHENTICATE.as_str(),
            "Bearer realm=\"idgraph\"",
        ),
        Denied::Forbidden { role, permission } => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the {} role does not grant the {} permission this route needs",
                role.name(),
                serde_json::to_value(permission)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        ),
        Denied::RateLimited { retry_after } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this key is over its request rate; retry in {retry_after} s"),
        )
        .with_header(header::RETRY_AFTER.as_str(), &retry_after.to_string()),
    }
}

/// The answer to a request without a valid key: 401, or 429 once its client is over
/// `auth.failed_auth_per_minute` (see `governance::lockout`).
fn unauthenticated(req: &HttpRequest, gov: &Governance) -> ApiError {
    let wait = req.peer_addr().and_then(|a| gov.failed_auth.failed(a.ip()));
    match wait {
        None => denied(Denied::Unauthenticated),
        Some(retry_after) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_authentications",
            format!(
                "too many requests from this address without a valid API key; retry in {retry_after} s"
            ),
        )
        .with_header(header::RETRY_AFTER.as_str(), &retry_after.to_string()),
    }
}

impl<P: Perm> FromRequest for Auth<P> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Self::for_key(req, presented_key(req).as_deref()))
    }
}

impl<P: Perm> Auth<P> {
    /// Authorizes `key` for a route that reads its key from elsewhere than the headers
    /// (a Segment call's `writeKey` in its body); the same checks as the extractor.
    pub(crate) fn for_key(req: &HttpRequest, key: Option<&str>) -> Result<Self, ApiError> {
        let Some(gov) = req.app_data::<web::Data<Governance>>().cloned() else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config_error",
                "governance is not configured",
            ));
        };
        // The route table (`governance::access`) is the source of truth: a handler whose
        // permission type disagrees with it, or a route missing from it, never answers.
        let pattern = req.match_pattern().unwrap_or_default();
        if access::permission_of(req.method().as_str(), &pattern) != Some(P::PERMISSION) {
            tracing::error!(route = %pattern, "route missing from the access table or disagreeing with it");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config_error",
                "this route is not in the access table (governance::access)",
            ));
        }
        Self::authorize(req, gov, key)
    }

    fn authorize(
        req: &HttpRequest,
        gov: web::Data<Governance>,
        key: Option<&str>,
    ) -> Result<Self, ApiError> {
        let mut note = AuditNote::default();
        let result = gov.keys.authorize(key, P::PERMISSION);
        note.caller = match &result {
            Ok(caller) => Some(caller.clone()),
            Err(_) => gov.keys.identify(key),
        };
        // A key of a suspended tenant is refused whatever it asks, naming the suspension.
        let suspension = note.caller.as_ref().and_then(|c| {
            let tenant = c.tenant.as_deref()?;
            let tenants = req.app_data::<web::Data<super::tenants::Tenants>>()?;
            tenants.suspension(tenant).map(|s| (tenant.to_owned(), s))
        });
        req.extensions_mut().insert(note.clone());
        if let Some((tenant, (since, reason))) = suspension {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                format!("tenant {tenant:?} is suspended (since {since}: {reason}); its keys are refused until the operator resumes it"),
            ));
        }
        match result {
            Ok(caller) => {
                // The request is served from its key's tenant (`serve::tenants::route`);
                // a key read from elsewhere (a Segment body's writeKey) may name another.
                if let Some(t) = &caller.tenant {
                    if *t != gov.tenant {
                        return Err(ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "tenant_key_not_in_header",
                            "this key belongs to a tenant other than the default: send it in the Authorization or X-Api-Key header, not in the body",
                        ));
                    }
                    if let Some(e) = req.app_data::<web::Data<Engine>>() {
                        e.usage().request();
                    }
                }
                Ok(Auth {
                    caller,
                    gov,
                    note,
                    _p: PhantomData,
                })
            }
            Err(Denied::Unauthenticated) => Err(unauthenticated(req, &gov)),
            Err(d) => Err(denied(d)),
        }
    }
}

/// Whether the request presents a configured key of the default tenant, or the
/// operator's (any role; no rate token is taken): `/health`'s counts are the default
/// tenant's, which another tenant's key may not read.
pub fn known_key(req: &HttpRequest, gov: &Governance) -> bool {
    gov.keys
        .identify(presented_key(req).as_deref())
        .is_some_and(|c| c.tenant.as_deref().is_none_or(|t| t == gov.tenant))
}

/// Checks a key of any role of the default tenant, or the operator's (for `/metrics`
/// when `auth.protect_metrics` is set: the deployment's figures, every tenant's usage).
pub fn any_key(req: &HttpRequest, gov: &Governance) -> Result<(), ApiError> {
    let key = presented_key(req);
    let key = key.as_deref();
    if let Some(t) = gov.keys.identify(key).and_then(|c| c.tenant) {
        if t != crate::governance::keys::DEFAULT_TENANT {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "/metrics holds the deployment's figures: only the operator's and the default tenant's keys may read it",
            ));
        }
    }
    for p in Permission::ALL {
        match gov.keys.authorize(key, p) {
            Ok(_) => return Ok(()),
            Err(Denied::Forbidden { .. }) => continue,
            Err(Denied::Unauthenticated) => return Err(unauthenticated(req, gov)),
            Err(d) => return Err(denied(d)),
        }
    }
    Err(unauthenticated(req, gov))
}

/// Middleware on `/v1`: writes the audit entry of every request except event ingest.
pub async fn audit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let gov = req.app_data::<web::Data<Governance>>().cloned();
    let res = next.call(req).await?;
    if method == "POST"
        && (route == "/v1/events" || super::segment::ROUTES.contains(&route.as_str()))
    {
        return Ok(res.map_into_left_body());
    }
    let Some(gov) = gov else {
        return Ok(res.map_into_left_body());
    };
    let note = res.request().extensions().get::<AuditNote>().cloned();
    let (caller, profiles) = match note {
        Some(n) => (
            n.caller,
            n.profiles.lock().map(|p| p.clone()).unwrap_or_default(),
        ),
        None => (None, Vec::new()),
    };
    let status = res.status();
    let is_get = method == "GET";
    let appended = gov.audit.append(AuditEntry {
        seq: 0,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        key: caller
            .as_ref()
            .map_or_else(|| "-".to_owned(), |c| c.name.clone()),
        role: caller.as_ref().map(|c| c.role.name().to_owned()),
        method,
        route,
        status: status.as_u16(),
        profiles,
    });
    if let Err(e) = appended {
        tracing::error!(error = %e, "cannot append to the audit log");
        // A read that cannot be audited is not answered (unless the operator chose to
        // serve): the answer is replaced before any of it leaves. Writes are done by now;
        // their answer stands. Refusals (401, 403, 429) carry no data.
        let refusal = matches!(status.as_u16(), 401 | 403 | 429);
        if gov.audit_on_failure == crate::config::AuditFailure::Refuse && is_get && !refusal {
            let (req, _) = res.into_parts();
            let answer = actix_web::ResponseError::error_response(
                &ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    "the audit log cannot be written (is the disk full?), so reads are refused \
                     (audit.on_failure = \"refuse\"); retry later",
                )
                .with_header(header::RETRY_AFTER.as_str(), "5"),
            );
            return Ok(ServiceResponse::new(req, answer).map_into_right_body());
        }
    }
    Ok(res.map_into_left_body())
}
