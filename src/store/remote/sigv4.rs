//! AWS Signature Version 4, for Amazon Neptune with IAM database authentication, and the
//! credentials it signs with from the standard AWS sources.
//!
//! Neptune authenticates a connection by a SigV4-signed HTTP request: for openCypher over
//! Bolt, the signed headers travel as the Bolt password ([`neptune_bolt_token`]); for
//! Gremlin they go on the WebSocket handshake. [`sign`] is the plain algorithm (canonical
//! request, string to sign, derived key), tested against the published AWS SigV4 test
//! suite. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `AWS_PROFILE` or
//! `default`), then the workload's role (`instance_role`: ECS, EC2). Secrets are never logged: [`Credentials`]' `Debug` hides them.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::store::StoreError;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// One HTTP request to sign. `headers` are the extra headers to sign (names in any case);
/// `host` and `x-amz-date` are always signed, and `x-amz-security-token` when the
/// credentials carry a session token.
pub struct Request<'a> {
    pub method: &'a str,
    /// The host header's value (`host` or `host:port`).
    pub host: &'a str,
    /// The path, already URI-encoded (`/`, `/opencypher`, `/gremlin`).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The headers a signed request carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    pub authorization: String,
    pub amz_date: String,
    pub security_token: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, everything else is
/// `%XX` (uppercase).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Signs `request` for `service` in `region` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Signed {
    let date = &amz_date[..amz_date.len().min(8)];
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    headers.push(("host".into(), request.host.to_owned()));
    headers.push(("x-amz-date".into(), amz_date.to_owned()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path,
        canonical_query,
        canonical_headers,
        signed_headers,
        hex(&Sha256::digest(request.payload))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
        amz_date: amz_date.to_owned(),
        security_token: credentials.session_token.clone(),
    }
}

/// The region of `<section>.aws_region` (`configured`), else `AWS_REGION`.
pub fn region(configured: &str, section: &str) -> Result<String, StoreError> {
    let region = if configured.is_empty() {
        std::env::var("AWS_REGION").unwrap_or_default()
    } else {
        configured.to_owned()
    };
    if region.is_empty() {
        return Err(StoreError::Engine(format!(
            "{section}.auth = \"aws_iam\" needs {section}.aws_region (or AWS_REGION)"
        )));
    }
    Ok(region)
}

/// Now as SigV4 writes it.
pub fn amz_date_now() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// The Bolt password that authenticates to Neptune's openCypher endpoint `host:port` with
/// IAM: the headers of a signed `GET https://host:port/opencypher` (service `neptune-db`)
/// as JSON; the Bolt user is `username`. Neptune checks the signature's time, so a token
/// is good for new connections for a few minutes only.
pub fn neptune_bolt_token(
    host_port: &str,
    credentials: &Credentials,
    region: &str,
    amz_date: &str,
) -> String {
    let signed = sign(
        &Request {
            method: "GET",
            host: host_port,
            path: "/opencypher",
            query: &[],
            headers: &[],
            payload: b"",
        },
        credentials,
        region,
        "neptune-db",
        amz_date,
    );
    let mut token = serde_json::json!({
        "Authorization": signed.authorization,
        "HttpMethod": "GET",
        "X-Amz-Date": signed.amz_date,
        "Host": host_port,
    });
    if let (Some(t), Some(map)) = (signed.security_token, token.as_object_mut()) {
        map.insert("X-Amz-Security-Token".into(), serde_json::Value::String(t));
    }
    token.to_string()
}

/// Credentials from the standard sources, in the AWS SDKs' order: the environment, the
/// shared credentials file, then the role the workload runs as (ECS task role, EC2
/// instance profile; see [`super::instance_role`]).
pub fn credentials() -> Result<Credentials, StoreError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: var("AWS_SESSION_TOKEN"),
        });
    }
    let file = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if let Some(found) = file
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| profile_credentials(&text, &profile))
    {
        return Ok(found);
    }
    super::instance_role::role_credentials()?.ok_or_else(|| {
        StoreError::Engine(format!(
            "AWS IAM authentication: no credentials (set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or profile {profile} in the shared credentials file, or \
             run with an ECS task role or EC2 instance profile)"
        ))
    })
}

/// The credentials of `[profile]` in the text of a shared credentials file.
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials, region, service and time of the AWS SigV4 test suite.
    fn suite() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn suite_sign(method: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> String {
        sign(
            &Request {
                method,
                host: "example.amazonaws.com",
                path: "/",
                query,
                headers,
                payload: b"",
            },
            &suite(),
            "us-east-1",
            "service",
            "20150830T123600Z",
        )
        .authorization
    }

    fn expected(signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={signature}"
        )
    }

    #[test]
    fn the_published_test_suite_vectors() {
        // get-vanilla
        assert_eq!(
            suite_sign("GET", &[], &[]),
            expected("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
        // post-vanilla
        assert_eq!(
            suite_sign("POST", &[], &[]),
            expected("5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
        // post-vanilla-query
        assert_eq!(
            suite_sign("POST", &[("Param1", "value1")], &[]),
            expected("28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11")
        );
        // get-vanilla-query-order-key-case: parameters are sorted
        assert_eq!(
            suite_sign("GET", &[("Param2", "value2"), ("Param1", "value1")], &[]),
            expected("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn a_session_token_is_signed_and_a_neptune_token_carries_it() {
        let mut creds = suite();
        let plain = neptune_bolt_token("db.example:8182", &creds, "us-east-1", "20150830T123600Z");
        creds.session_token = Some("session-token".into());
        let with = neptune_bolt_token("db.example:8182", &creds, "us-east-1", "20150830T123600Z");
        let plain: serde_json::Value = serde_json::from_str(&plain).expect("json");
        let with: serde_json::Value = serde_json::from_str(&with).expect("json");
        assert_eq!(plain["Host"], "db.example:8182");
        assert_eq!(plain["HttpMethod"], "GET");
        assert!(plain.get("X-Amz-Security-Token").is_none());
        assert_eq!(with["X-Amz-Security-Token"], "session-token");
        let auth = with["Authorization"].as_str().expect("string");
        assert!(
            auth.contains("/us-east-1/neptune-db/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_ne!(plain["Authorization"], with["Authorization"]);
        assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
    }

    #[test]
    fn profiles_are_read_from_the_shared_credentials_file() {
        let text = "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n\
                    # comment\n[prod]\naws_access_key_id=A2\naws_secret_access_key=S2\naws_session_token=T2\n";
        let d = profile_credentials(text, "default").expect("default");
        assert_eq!((d.access_key_id.as_str(), d.session_token), ("A1", None));
        let p = profile_credentials(text, "prod").expect("prod");
        assert_eq!(p.session_token.as_deref(), Some("T2"));
        assert!(profile_credentials(text, "missing").is_none());
        assert_eq!(encode("a b/c~d*"), "a%20b%2Fc~d%2A");
    }
}
