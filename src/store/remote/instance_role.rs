//! Credentials of the role a workload runs as, where there are no keys in the environment
//! or a credentials file: an ECS task role (the container credentials endpoint) or an EC2
//! instance profile (the instance metadata service, IMDSv2). Both answer plain HTTP on a
//! link-local address, so a few lines of HTTP/1.1 over a `TcpStream` are all it takes.
//!
//! - ECS: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on `http://169.254.170.2`) or
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` (http only), with
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `_TOKEN_FILE`) as the `Authorization` header.
//! - EC2: a session token (`PUT /latest/api/token`), then the role name and its credentials
//!   under `/latest/meta-data/iam/security-credentials/`. The endpoint is
//!   `http://169.254.169.254` unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` says otherwise;
//!   `AWS_EC2_METADATA_DISABLED=true` turns it off.
//!
//! Role credentials expire (hours); they are cached until five minutes before.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use super::sigv4::Credentials;
use crate::store::StoreError;

const ECS_HOST: &str = "http://169.254.170.2";
const IMDS_DEFAULT: &str = "http://169.254.169.254";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read (credentials are a few KB).
const MAX_BODY: u64 = 64 * 1024;

static CACHE: Mutex<Option<(Credentials, i64)>> = Mutex::new(None);

fn fail(source: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(format!("AWS IAM authentication: {source}: {why}"))
}

/// `http://host[:port]` and a path of `url`.
fn split_http(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "/")),
    }
}

/// One HTTP/1.1 exchange; the status and the body.
fn http(
    method: &str,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let (authority, prefix) =
        split_http(base).ok_or_else(|| format!("{base} is not an http:// address"))?;
    let path = if prefix == "/" {
        path.to_owned()
    } else {
        format!("{}{path}", prefix.trim_end_matches('/'))
    };
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot reach {authority}: {e}"))?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(READ_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("cannot send to {authority}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_BODY)
        .read_to_end(&mut raw)
        .map_err(|e| format!("no answer from {authority}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{authority} sent an incomplete answer"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{authority} sent no HTTP status"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| format!("{authority} sent a malformed chunked body"))?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The credentials JSON both endpoints answer, and when they expire (Unix seconds).
fn parse(source: &str, body: &str) -> Result<(Credentials, i64), StoreError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|_| fail(source, "the answer is not JSON"))?;
    if let Some(code) = v.get("Code").and_then(|c| c.as_str()) {
        if code != "Success" {
            return Err(fail(source, format!("the endpoint says {code}")));
        }
    }
    let field = |name: &str| {
        v.get(name)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err(fail(
            source,
            "the answer has no AccessKeyId/SecretAccessKey",
        ));
    };
    let expires = field("Expiration")
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e).ok())
        .map(|t| t.timestamp())
        .unwrap_or(i64::MAX);
    Ok((
        Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: field("Token"),
        },
        expires,
    ))
}

/// The ECS task role's credentials from `url`.
pub fn container_credentials(
    url: &str,
    authorization: Option<&str>,
) -> Result<(Credentials, i64), StoreError> {
    let source = "container credentials endpoint";
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let (status, body) = http("GET", url, "", &headers).map_err(|e| fail(source, e))?;
    if status != 200 {
        return Err(fail(source, format!("HTTP {status}")));
    }
    parse(source, &body)
}

/// The EC2 instance profile's credentials from the metadata service at `endpoint`
/// (IMDSv2).
pub fn imds_credentials(endpoint: &str) -> Result<(Credentials, i64), StoreError> {
    let source = "instance metadata service";
    let (status, token) = http(
        "PUT",
        endpoint,
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
    )
    .map_err(|e| fail(source, e))?;
    if status != 200 || token.trim().is_empty() {
        return Err(fail(source, format!("no session token (HTTP {status})")));
    }
    let auth = [("X-aws-ec2-metadata-token", token.trim())];
    let base = "/latest/meta-data/iam/security-credentials/";
    let (status, roles) = http("GET", endpoint, base, &auth).map_err(|e| fail(source, e))?;
    let role = roles.lines().next().map(str::trim).unwrap_or("");
    if status != 200 || role.is_empty() {
        return Err(fail(
            source,
            format!("this instance has no IAM role (HTTP {status})"),
        ));
    }
    let (status, body) =
        http("GET", endpoint, &format!("{base}{role}"), &auth).map_err(|e| fail(source, e))?;
    if status != 200 {
        return Err(fail(
            source,
            format!("HTTP {status} for the role's credentials"),
        ));
    }
    parse(source, &body)
}

/// The role credentials the environment points at (ECS first, then EC2), cached until five
/// minutes before they expire; `Ok(None)` when neither source is configured or reachable
/// and nothing said why.
pub fn role_credentials() -> Result<Option<Credentials>, StoreError> {
    let now = chrono::Utc::now().timestamp();
    if let Ok(cache) = CACHE.lock() {
        if let Some((c, expires)) = cache.as_ref() {
            if *expires - 300 > now {
                return Ok(Some(c.clone()));
            }
        }
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let fetched = if let Some(uri) = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        Some(container_credentials(&format!("{ECS_HOST}{uri}"), None)?)
    } else if let Some(url) = var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let token = match var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| fail("container credentials", format!("{path}: {e}")))?
                    .trim()
                    .to_owned(),
            ),
            None => var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        Some(container_credentials(&url, token.as_deref())?)
    } else if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        None
    } else {
        let endpoint =
            var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS_DEFAULT.into());
        match imds_credentials(&endpoint) {
            Ok(found) => Some(found),
            // Not on EC2 (nothing answers): not an error of its own, the caller names
            // every source it tried.
            Err(e) if e.to_string().contains("cannot reach") => None,
            Err(e) => return Err(e),
        }
    };
    let Some((credentials, expires)) = fetched else {
        return Ok(None);
    };
    if let Ok(mut cache) = CACHE.lock() {
        *cache = Some((credentials.clone(), expires));
    }
    Ok(Some(credentials))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A metadata service on loopback answering `routes` (method and path to status and
    /// body); returns its base URL and the requests it saw (request line and headers).
    fn serve(
        routes: Vec<(&'static str, &'static str, u16, String)>,
        connections: usize,
    ) -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let (method, path) = {
                    let mut parts = head.split_whitespace();
                    (
                        parts.next().unwrap_or("").to_owned(),
                        parts.next().unwrap_or("").to_owned(),
                    )
                };
                let (status, body) = routes
                    .iter()
                    .find(|(m, p, _, _)| *m == method && *p == path)
                    .map(|(_, _, s, b)| (*s, b.clone()))
                    .unwrap_or((404, String::new()));
                let _ = tx.send(head);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (base, rx)
    }

    const CREDS: &str = r#"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAROLE",
        "SecretAccessKey":"role-secret","Token":"role-token","Expiration":"2030-01-01T00:00:00Z"}"#;

    #[test]
    fn imdsv2_token_then_role_then_credentials() {
        let (base, seen) = serve(
            vec![
                ("PUT", "/latest/api/token", 200, "tok-123".into()),
                (
                    "GET",
                    "/latest/meta-data/iam/security-credentials/",
                    200,
                    "app-role\n".into(),
                ),
                (
                    "GET",
                    "/latest/meta-data/iam/security-credentials/app-role",
                    200,
                    CREDS.into(),
                ),
            ],
            3,
        );
        let (c, expires) = imds_credentials(&base).expect("credentials");
        assert_eq!(c.access_key_id, "ASIAROLE");
        assert_eq!(c.secret_access_key, "role-secret");
        assert_eq!(c.session_token.as_deref(), Some("role-token"));
        assert_eq!(expires, 1_893_456_000);
        let token_request = seen.recv().expect("token request");
        assert!(token_request.contains("X-aws-ec2-metadata-token-ttl-seconds: 21600"));
        for _ in 0..2 {
            let r = seen.recv().expect("metadata request");
            assert!(r.contains("X-aws-ec2-metadata-token: tok-123"), "{r}");
        }
    }

    #[test]
    fn an_instance_without_a_role_says_so() {
        let (base, _seen) = serve(
            vec![
                ("PUT", "/latest/api/token", 200, "tok".into()),
                (
                    "GET",
                    "/latest/meta-data/iam/security-credentials/",
                    404,
                    String::new(),
                ),
            ],
            2,
        );
        let e = imds_credentials(&base).expect_err("no role").to_string();
        assert!(e.contains("no IAM role"), "{e}");
    }

    #[test]
    fn container_credentials_send_the_authorization_token() {
        let (base, seen) = serve(vec![("GET", "/v2/credentials/abc", 200, CREDS.into())], 1);
        let (c, _) =
            container_credentials(&format!("{base}/v2/credentials/abc"), Some("Bearer xyz"))
                .expect("credentials");
        assert_eq!(c.access_key_id, "ASIAROLE");
        assert!(seen
            .recv()
            .expect("request")
            .contains("Authorization: Bearer xyz"));
        let e = container_credentials("https://example.com/creds", None)
            .expect_err("https")
            .to_string();
        assert!(e.contains("not an http:// address"), "{e}");
    }

    #[test]
    fn refusals_and_unreachable_endpoints_are_named_without_secrets() {
        let (base, _seen) = serve(
            vec![(
                "GET",
                "/creds",
                200,
                r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"x"}"#.into(),
            )],
            1,
        );
        let e = container_credentials(&format!("{base}/creds"), None)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("AssumeRoleUnauthorizedAccess"), "{e}");
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let e = imds_credentials(&url).expect_err("closed").to_string();
        assert!(e.contains("cannot reach"), "{e}");
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some("Wikipedia")
        );
        assert_eq!(dechunk("zz\r\nx"), None);
    }
}
