//! TLS on the API (`[server.tls]`) with the real binary: HTTPS answers, plain HTTP on the
//! same port does not, SIGHUP swaps in a renewed certificate for new connections, a bad
//! file on reload keeps the previous certificate, a bad file at start stops start-up, and a
//! replica follows an HTTPS writer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    admin_headers, event, get_json, idgraph_command, key_of, post_json, ServeProcess,
};

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it: returns the
/// CA's PEM and writes the server's chain and key to `cert_file` and `key_file`.
fn issue(cert_file: &Path, key_file: &Path, ca_name: &str) -> String {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server params");
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(cert_file, cert.pem()).expect("write the certificate");
    std::fs::write(key_file, key.serialize_pem()).expect("write the key");
    ca_cert.pem()
}

/// A fresh client (no pooled connection) that trusts `ca_pem`.
fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .default_headers(admin_headers())
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn tls_env(cert: &Path, key: &Path) -> Vec<(String, String)> {
    vec![
        (
            "IDGRAPH_SERVER__TLS__CERT_FILE".into(),
            cert.display().to_string(),
        ),
        (
            "IDGRAPH_SERVER__TLS__KEY_FILE".into(),
            key.display().to_string(),
        ),
    ]
}

fn hangup(server: &ServeProcess) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(sent.success(), "kill -HUP failed");
}

/// Waits until the server's log holds `needle` `count` times.
fn wait_for_log(server: &ServeProcess, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.stderr();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a client trusting `ca_pem` can complete a request to `url`.
async fn connects(ca_pem: &str, url: &str) -> bool {
    client_trusting(ca_pem).get(url).send().await.is_ok()
}

#[tokio::test]
async fn https_serves_reloads_on_sighup_and_keeps_the_old_certificate_on_a_bad_file() {
    let certs = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    let old_ca = issue(&cert, &key, "idgraph old CA");
    let mut env = tls_env(&cert, &key);
    env.push(("RUST_LOG".into(), "info".into()));
    let mut server = ServeProcess::start_with_env(data.path(), &env);
    assert!(
        server.address.starts_with("https://127.0.0.1:"),
        "{}",
        server.address
    );

    // HTTPS answers, /v1 included.
    let c = client_trusting(&old_ca);
    let (status, body) = post_json(
        &c,
        &server.url("/v1/events"),
        &event(
            "tls-1",
            "web",
            json!({"email": "tls@example.com"}),
            json!(null),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_json(
        &c,
        &server.url("/v1/lookup?kind=email&value=tls%40example.com"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Plain HTTP on the TLS port gets no API answer.
    let plain = server.address.replacen("https://", "http://", 1);
    let answer = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("{plain}/health"))
        .send()
        .await;
    if let Ok(resp) = answer {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            !status.is_success() && !text.contains("\"status\""),
            "plain HTTP got an answer: {status} {text}"
        );
    }

    // A renewed certificate from another CA, then SIGHUP: new connections present it.
    let new_ca = issue(&cert, &key, "idgraph new CA");
    hangup(&server);
    let log = wait_for_log(&server, "TLS certificate reloaded", 1);
    assert!(log.contains("not_after") && log.contains("serial"), "{log}");
    let health = server.url("/health");
    assert!(
        connects(&new_ca, &health).await,
        "the new CA is not trusted"
    );
    assert!(
        !connects(&old_ca, &health).await,
        "the old certificate is still served after the reload"
    );
    let (status, body) = get_json(
        &client_trusting(&new_ca),
        &server.url("/v1/lookup?kind=email&value=tls%40example.com"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Garbage in the certificate file: the reload is refused, the last good one stays.
    std::fs::write(&cert, "not a certificate").expect("write garbage");
    hangup(&server);
    let log = wait_for_log(&server, "TLS certificate not reloaded", 1);
    assert!(
        log.contains(&format!("server.tls.cert_file {}", cert.display())),
        "the warning does not name the file:\n{log}"
    );
    assert!(
        connects(&new_ca, &health).await,
        "no longer serving the previous certificate"
    );
    assert!(!connects(&old_ca, &health).await);
    assert!(!log.contains("tls@example.com"), "PII in the log:\n{log}");

    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

/// `idgraph serve` with `[server.tls]` as given; returns its exit status and stderr.
fn serve_fails(data: &Path, env: &[(String, String)]) -> (bool, String) {
    let out = idgraph_command()
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--bind", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run idgraph serve");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_or_bad_key_stops_start_up_naming_the_file() {
    let certs = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    issue(&cert, &key, "idgraph CA");
    let missing: PathBuf = certs.path().join("absent.key");

    let (ok, stderr) = serve_fails(data.path(), &tls_env(&cert, &missing));
    assert!(!ok, "served without its key: {stderr}");
    assert!(
        stderr.contains("server.tls.key_file") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let only_cert = vec![tls_env(&cert, &key).remove(0)];
    let (ok, stderr) = serve_fails(data.path(), &only_cert);
    assert!(!ok, "served without a key file setting: {stderr}");
    assert!(
        stderr.contains("server.tls.key_file is missing"),
        "{stderr}"
    );

    std::fs::write(&key, "garbage").expect("write garbage");
    let (ok, stderr) = serve_fails(data.path(), &tls_env(&cert, &key));
    assert!(!ok, "served with a garbage key: {stderr}");
    assert!(
        stderr.contains("server.tls.key_file") && stderr.contains("no PEM private key"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_replica_follows_an_https_writer() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (writer_dir, replica_dir) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    let ca = issue(&cert, &key, "idgraph writer CA");
    std::fs::write(certs.path().join("ca.pem"), &ca).expect("write the CA");
    let mut env = tls_env(&cert, &key);
    env.push(("IDGRAPH_REPLICATION__ENABLED".into(), "true".into()));
    let writer = ServeProcess::start_with_env(writer_dir.path(), &env);
    let c = client_trusting(&ca);
    let (status, body) = post_json(
        &c,
        &writer.url("/v1/events"),
        &event(
            "rep-1",
            "web",
            json!({"email": "replica@example.com"}),
            json!(null),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let replica = ServeProcess::start_args(
        &["replica", "--follow", &writer.address],
        replica_dir.path(),
        &[
            ("IDGRAPH_REPLICA__KEY".into(), key_of("test-admin")),
            (
                "IDGRAPH_REPLICA__CA_FILE".into(),
                certs.path().join("ca.pem").display().to_string(),
            ),
        ],
    );
    assert!(
        replica.address.starts_with("http://"),
        "{}",
        replica.address
    );
    let plain = reqwest::Client::builder()
        .no_proxy()
        .default_headers(admin_headers())
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get_json(
            &plain,
            &replica.url("/v1/lookup?kind=email&value=replica%40example.com"),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not follow the HTTPS writer: {status} {body}\n{}",
            replica.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
