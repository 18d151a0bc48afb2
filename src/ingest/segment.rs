//! Segment's HTTP Tracking API (and RudderStack's variant of it) mapped into idgraph's
//! native event wire format, so a Segment call resolves exactly like the native event it
//! becomes (same validator, same writer path).
//!
//! A message (`identify`, `track`, `page`, `screen`, `group`, `alias`) becomes one native
//! event:
//!
//! - `event_id` = `messageId` (the idempotency key: a re-sent message is a duplicate).
//!   A message without one gets `seg-` + the SHA-256 of the message (so an identical
//!   retry is still a duplicate).
//! - `source` = `[segment] sources.<type>` or else `[segment] source` (default `web`).
//! - `type` = the Segment call type; `timestamp` = `timestamp`, else RudderStack's
//!   `originalTimestamp`, else the time it is received.
//! - identifiers: `userId` → `user_id_kind`, `anonymousId` → `anonymous_id_kind`,
//!   `previousId` (alias) → `previous_id_kind`, `context.device.id` and
//!   `context.device.advertisingId` → `device_id_kind`, `groupId` → `group_id_kind` when
//!   set; every trait named in `identifier_traits` (default `email` → `email`, `phone` →
//!   `phone`) becomes an identifier of that kind instead of a trait.
//! - traits: `identify`'s `traits` over `context.traits` (every other call: `context.traits`),
//!   names renamed by `trait_names` (`firstName` → `first_name`, ...), the Segment address
//!   (`street`, `city`, `postalCode`, `state`, `country`) → idgraph's address; any other
//!   address field becomes the trait `address_<field>`.
//! - properties: `{"segment": {event, name, category, properties, group_id, group_traits,
//!   channel, library}}`, whichever the message has. `context.ip`, the user agent and the
//!   page URL are not stored.
//!
//! Errors name the message (`batch[2].type`) and the field, never a value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The Segment call types.
pub const CALL_TYPES: [&str; 6] = ["identify", "track", "page", "screen", "group", "alias"];

/// `[segment]`: how Segment calls map to identifiers, traits and sources.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentSettings {
    /// Kind `userId` becomes.
    pub user_id_kind: String,
    /// Kind `anonymousId` becomes.
    pub anonymous_id_kind: String,
    /// Kind an alias call's `previousId` becomes (it is usually the anonymous id the
    /// user had before signing up).
    pub previous_id_kind: String,
    /// Kind `context.device.id` and `context.device.advertisingId` become (empty: not used).
    pub device_id_kind: String,
    /// Kind a group call's `groupId` becomes (empty, the default: kept in properties only,
    /// since a company is not a person).
    pub group_id_kind: String,
    /// Trait name → identifier kind: these traits become identifiers, not traits.
    pub identifier_traits: BTreeMap<String, String>,
    /// Segment trait name → idgraph trait name; traits not listed keep their name.
    pub trait_names: BTreeMap<String, String>,
    /// Source of every call, unless `sources` names one for its type.
    pub source: String,
    /// Call type → source (e.g. `screen = "mobile"`).
    pub sources: BTreeMap<String, String>,
    /// Consent category of `context.consent.categoryPreferences` (Segment's consent
    /// management) → idgraph consent purpose; categories not listed are ignored.
    pub consent_categories: BTreeMap<String, String>,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        SegmentSettings {
            user_id_kind: "customer_id".into(),
            anonymous_id_kind: "cookie_id".into(),
            previous_id_kind: "cookie_id".into(),
            device_id_kind: "device_id".into(),
            group_id_kind: String::new(),
            identifier_traits: pairs(&[("email", "email"), ("phone", "phone")]),
            trait_names: pairs(&[
                ("firstName", "first_name"),
                ("lastName", "last_name"),
                ("birthday", "birth_date"),
                ("first_name", "first_name"),
                ("last_name", "last_name"),
            ]),
            source: "web".into(),
            sources: pairs(&[("screen", "mobile")]),
            consent_categories: pairs(&[
                ("Advertising", "advertising"),
                ("Analytics", "analytics"),
                ("Personalization", "personalization"),
            ]),
        }
    }
}

impl SegmentSettings {
    /// Checks the call types named in `sources` (kinds and sources are checked when an
    /// event is validated, with the same messages as native events).
    pub fn check(&self) -> Result<(), String> {
        for t in self.sources.keys() {
            if !CALL_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "segment.sources: {t:?} is not a Segment call type ({})",
                    CALL_TYPES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A message that cannot be mapped: where (`batch[1].userId`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SegmentError {
    SegmentError {
        field: field.into(),
        message: message.into(),
    }
}

/// The messages of a request body: `call` is the endpoint's type (`None` for
/// `/v1/batch`). Returns each message with its path for errors (`""` or `batch[i]`),
/// the batch's `context` merged under each message's own.
pub fn messages(body: &Value, call: Option<&str>) -> Result<Vec<(String, Value)>, SegmentError> {
    let obj = body
        .as_object()
        .ok_or_else(|| err("", "the body must be a JSON object"))?;
    if call.is_none() {
        let batch = match obj.get("batch") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => return Err(err("batch", "is required")),
            Some(_) => return Err(err("batch", "must be an array of messages")),
        };
        let shared = obj.get("context").and_then(Value::as_object);
        let mut out = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let path = format!("batch[{i}]");
            let Some(mo) = m.as_object() else {
                return Err(err(path, "must be an object"));
            };
            let mut mo = mo.clone();
            if let Some(shared) = shared {
                let mut ctx = shared.clone();
                if let Some(Value::Object(own)) = mo.get("context") {
                    for (k, v) in own {
                        ctx.insert(k.clone(), v.clone());
                    }
                }
                mo.insert("context".into(), Value::Object(ctx));
            }
            out.push((path, Value::Object(mo)));
        }
        return Ok(out);
    }
    Ok(vec![(String::new(), body.clone())])
}

fn sub(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// A Segment id (`userId`, `anonymousId`, ...): a string, or a number as Segment's
/// libraries allow; empty means absent.
fn id_field(
    obj: &Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<String>, SegmentError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(err(sub(path, name), "must be a string")),
    }
}

fn object<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, SegmentError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(err(sub(path, name), "must be an object")),
    }
}

/// Maps one Segment message (at `path`) to a native wire event. `call` is the
/// endpoint's type; in a batch each message names its own `type`.
pub fn to_event(
    settings: &SegmentSettings,
    msg: &Value,
    path: &str,
    call: Option<&str>,
) -> Result<Value, SegmentError> {
    let obj = msg
        .as_object()
        .ok_or_else(|| err(path, "must be an object"))?;
    let ty = match (call, obj.get("type")) {
        (Some(c), _) => c.to_owned(),
        (None, Some(Value::String(t))) => {
            let t = t.trim().to_ascii_lowercase();
            if !CALL_TYPES.contains(&t.as_str()) {
                return Err(err(
                    sub(path, "type"),
                    format!("unknown type; expected one of {}", CALL_TYPES.join(", ")),
                ));
            }
            t
        }
        (None, None | Some(Value::Null)) => return Err(err(sub(path, "type"), "is required")),
        (None, Some(_)) => return Err(err(sub(path, "type"), "must be a string")),
    };
    let context = object(obj, "context", path)?;
    let ctx_path = sub(path, "context");
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |kind: &str, value: String| {
        if kind.is_empty() {
            return;
        }
        let values = ids.entry(kind.to_owned()).or_default();
        if !values.contains(&value) {
            values.push(value);
        }
    };
    let user_id = id_field(obj, "userId", path)?;
    let anonymous_id = id_field(obj, "anonymousId", path)?;
    if ty == "alias" {
        let previous = id_field(obj, "previousId", path)?
            .ok_or_else(|| err(sub(path, "previousId"), "is required for an alias call"))?;
        if user_id.is_none() {
            return Err(err(sub(path, "userId"), "is required for an alias call"));
        }
        add(&settings.previous_id_kind, previous);
    } else if user_id.is_none() && anonymous_id.is_none() {
        return Err(err(
            path,
            "userId or anonymousId is required (Segment's rule for every call but alias)",
        ));
    }
    if let Some(u) = user_id {
        add(&settings.user_id_kind, u);
    }
    if let Some(a) = anonymous_id {
        add(&settings.anonymous_id_kind, a);
    }
    if let Some(device) = context
        .map(|c| object(c, "device", &ctx_path))
        .transpose()?
    {
        let dev_path = sub(&ctx_path, "device");
        for f in ["id", "advertisingId"] {
            if let Some(d) = device.and_then(|d| id_field(d, f, &dev_path).transpose()) {
                add(&settings.device_id_kind, d?);
            }
        }
    }
    let mut segment = Map::new();
    if ty == "group" {
        let gid = id_field(obj, "groupId", path)?
            .ok_or_else(|| err(sub(path, "groupId"), "is required for a group call"))?;
        add(&settings.group_id_kind, gid.clone());
        segment.insert("group_id".into(), Value::String(gid));
    }
    if ty == "track" {
        match obj.get("event") {
            Some(Value::String(e)) if !e.trim().is_empty() => {
                segment.insert("event".into(), Value::String(e.clone()));
            }
            _ => return Err(err(sub(path, "event"), "is required for a track call")),
        }
    }
    for f in ["name", "category"] {
        if let Some(v @ Value::String(_)) = obj.get(f) {
            segment.insert(f.into(), v.clone());
        }
    }
    if let Some(p) = object(obj, "properties", path)? {
        segment.insert("properties".into(), Value::Object(p.clone()));
    }
    if let Some(v @ Value::String(_)) = obj.get("channel") {
        segment.insert("channel".into(), v.clone());
    }
    if let Some(lib) = context
        .and_then(|c| c.get("library"))
        .filter(|l| l.is_object())
    {
        segment.insert("library".into(), lib.clone());
    }

    // Person traits: identify's own traits over context.traits; a group's traits describe
    // the company, so they go to properties.
    let mut raw_traits = Map::new();
    if let Some(ct) = context
        .map(|c| object(c, "traits", &ctx_path))
        .transpose()?
        .flatten()
    {
        raw_traits.extend(ct.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let own = object(obj, "traits", path)?;
    match (ty.as_str(), own) {
        ("identify", Some(t)) => raw_traits.extend(t.iter().map(|(k, v)| (k.clone(), v.clone()))),
        ("group", Some(t)) => {
            segment.insert("group_traits".into(), Value::Object(t.clone()));
        }
        _ => {}
    }
    let mut traits = Map::new();
    for (name, v) in raw_traits {
        if v.is_null() {
            continue;
        }
        if let Some(kind) = settings.identifier_traits.get(&name) {
            match v {
                Value::String(s) if s.trim().is_empty() => {}
                Value::String(s) => add(kind, s),
                Value::Number(n) => add(kind, n.to_string()),
                _ => {
                    return Err(err(
                        sub(path, &format!("traits.{name}")),
                        "must be a string (it maps to an identifier)",
                    ))
                }
            }
            continue;
        }
        if name == "address" {
            if let Value::Object(a) = &v {
                let mut addr = Map::new();
                for (k, x) in a {
                    let to = match k.as_str() {
                        "street" | "city" | "region" | "country" => k.as_str(),
                        "postalCode" | "postal_code" => "postal_code",
                        "state" => "region",
                        _ => {
                            traits.insert(format!("address_{k}"), x.clone());
                            continue;
                        }
                    };
                    let x = match x {
                        Value::Number(n) => Value::String(n.to_string()),
                        x => x.clone(),
                    };
                    addr.insert(to.into(), x);
                }
                traits.insert("address".into(), Value::Object(addr));
                continue;
            }
        }
        let to = settings.trait_names.get(&name).cloned().unwrap_or(name);
        traits.insert(to, v);
    }

    // Consent: mapped categories of `context.consent.categoryPreferences`; two categories
    // mapped to one purpose that disagree give `denied`.
    let mut consent = Map::new();
    if let Some(c) = context
        .map(|c| object(c, "consent", &ctx_path))
        .transpose()?
        .flatten()
    {
        let consent_path = sub(&ctx_path, "consent");
        if let Some(prefs) = object(c, "categoryPreferences", &consent_path)? {
            let prefs_path = sub(&consent_path, "categoryPreferences");
            for (category, v) in prefs {
                let state = match v {
                    Value::Bool(true) => "granted",
                    Value::Bool(false) => "denied",
                    _ => return Err(err(sub(&prefs_path, category), "must be true or false")),
                };
                let Some(purpose) = settings.consent_categories.get(category) else {
                    continue;
                };
                if consent.get(purpose).and_then(Value::as_str) != Some("denied") {
                    consent.insert(purpose.clone(), Value::String(state.into()));
                }
            }
        }
    }

    let source = settings
        .sources
        .get(&ty)
        .cloned()
        .unwrap_or_else(|| settings.source.clone());
    let event_id = match id_field(obj, "messageId", path)? {
        Some(m) => m,
        None => {
            let digest = Sha256::digest(serde_json::to_vec(msg).unwrap_or_default());
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("seg-{hex}")
        }
    };
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => obj.get("originalTimestamp").cloned(),
        t => t.cloned(),
    };
    let identifiers: Map<String, Value> = ids
        .into_iter()
        .map(|(k, mut v)| {
            let v = if v.len() == 1 {
                Value::String(v.remove(0))
            } else {
                Value::Array(v.into_iter().map(Value::String).collect())
            };
            (k, v)
        })
        .collect();
    let mut event = json!({
        "event_id": event_id,
        "source": source,
        "type": ty,
        "identifiers": identifiers,
        "traits": traits,
        "properties": { "segment": segment },
    });
    if let Some(t) = timestamp.filter(|t| !t.is_null()) {
        event["timestamp"] = t;
    }
    if !consent.is_empty() {
        event["consent"] = Value::Object(consent);
    }
    Ok(event)
}

/// The Segment field a native validation error on a mapped event points at, for the
/// caller's error message (`identifiers.cookie_id` came from `anonymousId`, ...).
pub fn segment_field(settings: &SegmentSettings, native_field: &str) -> String {
    let kind_of = |f: &str| {
        f.strip_prefix("identifiers.")
            .map(|k| k.split('[').next().unwrap_or(k).to_owned())
    };
    if let Some(kind) = kind_of(native_field) {
        let mut from = Vec::new();
        if kind == settings.user_id_kind {
            from.push("userId".to_owned());
        }
        if kind == settings.anonymous_id_kind {
            from.push("anonymousId".to_owned());
        }
        if kind == settings.previous_id_kind {
            from.push("previousId".to_owned());
        }
        if kind == settings.device_id_kind {
            from.push("context.device.id".to_owned());
        }
        if kind == settings.group_id_kind {
            from.push("groupId".to_owned());
        }
        for (t, k) in &settings.identifier_traits {
            if *k == kind {
                from.push(format!("traits.{t}"));
            }
        }
        if !from.is_empty() {
            return from.join(" or ");
        }
    }
    match native_field {
        "event_id" => "messageId".into(),
        "properties" => "properties".into(),
        f => f.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(msg: Value, call: Option<&str>) -> Result<Value, SegmentError> {
        to_event(&SegmentSettings::default(), &msg, "", call)
    }

    #[test]
    fn identify_maps_ids_traits_and_message_id() {
        let e = map(
            json!({"userId": "u1", "anonymousId": "a1", "messageId": "m1",
                   "timestamp": "2026-01-02T03:04:05.000Z",
                   "traits": {"email": "A@x.io", "firstName": "Ann", "plan": "pro",
                              "address": {"postalCode": "02110", "state": "MA", "line2": "x"}},
                   "context": {"device": {"id": "d1"}, "traits": {"lastName": "Lee"}}}),
            Some("identify"),
        )
        .unwrap();
        assert_eq!(e["event_id"], "m1");
        assert_eq!(e["source"], "web");
        assert_eq!(e["type"], "identify");
        assert_eq!(e["timestamp"], "2026-01-02T03:04:05.000Z");
        assert_eq!(
            e["identifiers"],
            json!({"customer_id": "u1", "cookie_id": "a1", "device_id": "d1", "email": "A@x.io"})
        );
        assert_eq!(
            e["traits"],
            json!({"first_name": "Ann", "last_name": "Lee", "plan": "pro",
                   "address": {"postal_code": "02110", "region": "MA"}, "address_line2": "x"})
        );
    }

    #[test]
    fn alias_and_group_and_track() {
        let a = map(
            json!({"type": "alias", "previousId": "anon", "userId": "u"}),
            None,
        )
        .unwrap();
        assert_eq!(
            a["identifiers"],
            json!({"customer_id": "u", "cookie_id": "anon"})
        );
        assert!(a["event_id"].as_str().unwrap().starts_with("seg-"));
        let g = map(
            json!({"userId": "u", "groupId": "g1", "traits": {"name": "Acme"}}),
            Some("group"),
        )
        .unwrap();
        assert_eq!(g["properties"]["segment"]["group_id"], "g1");
        assert_eq!(g["properties"]["segment"]["group_traits"]["name"], "Acme");
        assert_eq!(g["traits"], json!({}));
        let t = map(
            json!({"anonymousId": "a", "properties": {"x": 1}}),
            Some("track"),
        );
        assert_eq!(t.unwrap_err().field, "event");
        let s = map(json!({"anonymousId": "a", "name": "Home"}), Some("screen")).unwrap();
        assert_eq!(s["source"], "mobile");
    }

    #[test]
    fn batch_errors_name_the_message() {
        let body = json!({"batch": [{"type": "identify", "userId": "u"}, {"type": "bogus"}],
                          "context": {"device": {"id": "d"}}});
        let msgs = messages(&body, None).unwrap();
        assert_eq!(msgs[0].1["context"]["device"]["id"], "d");
        let e = to_event(&SegmentSettings::default(), &msgs[1].1, &msgs[1].0, None).unwrap_err();
        assert_eq!(e.field, "batch[1].type");
        assert!(messages(&json!({"batch": 3}), None).is_err());
        let e = map(json!({"type": "identify"}), None).unwrap_err();
        assert!(e.message.contains("userId or anonymousId"));
    }

    #[test]
    fn same_message_without_id_gets_the_same_event_id() {
        let m = json!({"type": "track", "event": "x", "userId": "u"});
        assert_eq!(
            map(m.clone(), None).unwrap()["event_id"],
            map(m, None).unwrap()["event_id"]
        );
    }

    #[test]
    fn rudderstack_original_timestamp_and_channel() {
        let e = map(
            json!({"type": "track", "event": "x", "anonymousId": "a", "rudderId": "r",
                   "channel": "server", "originalTimestamp": "2026-01-02T00:00:00Z",
                   "context": {"library": {"name": "analytics-node"}}}),
            None,
        )
        .unwrap();
        assert_eq!(e["timestamp"], "2026-01-02T00:00:00Z");
        assert_eq!(e["properties"]["segment"]["channel"], "server");
        assert_eq!(
            e["properties"]["segment"]["library"]["name"],
            "analytics-node"
        );
    }

    #[test]
    fn consent_categories_map_to_purposes() {
        let s = SegmentSettings::default();
        let msg = json!({"type": "identify", "userId": "u1", "messageId": "m1",
            "context": {"consent": {"categoryPreferences": {
                "Advertising": true, "Analytics": false, "C0009": true}}}});
        let ev = to_event(&s, &msg, "", None).expect("mapped");
        assert_eq!(
            ev["consent"],
            json!({"advertising": "granted", "analytics": "denied"})
        );
        let bad = json!({"type": "identify", "userId": "u1",
            "context": {"consent": {"categoryPreferences": {"Advertising": "yes"}}}});
        let e = to_event(&s, &bad, "", None).expect_err("refused");
        assert!(
            e.field
                .ends_with("context.consent.categoryPreferences.Advertising"),
            "{e:?}"
        );
        // No consent object: no consent on the event.
        let plain = json!({"type": "identify", "userId": "u1"});
        assert!(to_event(&s, &plain, "", None)
            .expect("mapped")
            .get("consent")
            .is_none());
    }
}
