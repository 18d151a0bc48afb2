//! AWS KMS as the key-encryption key (`[encryption.kek.aws_kms]`): the `idgraph` binary,
//! through the official AWS SDK, against the real local-kms server (the AWS KMS API; built
//! from the Go module proxy and started on loopback by `scripts/local-kms.sh`). Keys are
//! created, disabled and checked with local-kms's own KMS API, never through idgraph.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::encryption::{borrowed, enc_env, kek_file, needles, person_event, refused_start};
use crate::helpers::*;
use crate::jvm_server;

/// The local-kms server of this test process.
struct Kms {
    endpoint: String,
    region: String,
    client: reqwest::Client,
}

impl Kms {
    fn start() -> Kms {
        let env: HashMap<String, String> = jvm_server::start("local-kms", "LOCAL_KMS")
            .unwrap_or_else(|e| panic!("the KMS test server did not start: {e}"));
        Kms {
            endpoint: jvm_server::var(&env, "LOCAL_KMS_ENDPOINT").expect("endpoint"),
            region: jvm_server::var(&env, "LOCAL_KMS_REGION").expect("region"),
            client: http_client(),
        }
    }

    /// One KMS API call (`TrentService.<op>`): (HTTP status, answer).
    async fn call(&self, op: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(&self.endpoint)
            .header("x-amz-target", format!("TrentService.{op}"))
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("KMS {op}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A new symmetric key's id.
    async fn create_key(&self) -> String {
        let (status, key) = self.call("CreateKey", json!({})).await;
        assert_eq!(status, 200, "{key}");
        key["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("KeyId")
            .to_owned()
    }

    /// The settings (as environment) of an encrypted store whose KEK is `key_id`, with
    /// test credentials and nothing of this machine's AWS configuration.
    fn env(&self, key_id: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("IDGRAPH_ENCRYPTION__ENABLED".to_owned(), "true".to_owned()),
            (
                "IDGRAPH_ENCRYPTION__KEK__AWS_KMS__KEY_ID".to_owned(),
                key_id.to_owned(),
            ),
            (
                "IDGRAPH_ENCRYPTION__KEK__AWS_KMS__REGION".to_owned(),
                self.region.clone(),
            ),
            (
                "IDGRAPH_ENCRYPTION__KEK__AWS_KMS__ENDPOINT".to_owned(),
                self.endpoint.clone(),
            ),
        ];
        env.extend(aws_env(true));
        env
    }
}

/// AWS credentials for the test server (`with_keys`), and no shared config files, profile
/// or instance metadata: the SDK sees only what the test gives it.
fn aws_env(with_keys: bool) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_CONFIG_FILE".to_owned(), "/nonexistent".to_owned()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            "/nonexistent".to_owned(),
        ),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ];
    if with_keys {
        env.push(("AWS_ACCESS_KEY_ID".to_owned(), "AKIAIDGRAPHTEST".to_owned()));
        env.push((
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            "idgraph-test-secret".to_owned(),
        ));
    }
    env
}

fn key_file(data: &Path) -> Value {
    let text = std::fs::read_to_string(data.join("data-key.json")).expect("data-key.json");
    serde_json::from_str(&text).expect("key file is JSON")
}

async fn lookup(base: &str) -> (u16, Value) {
    let resp = http_client()
        .get(format!("{base}/v1/lookup"))
        .query(&[("kind", "email"), ("value", crate::encryption::EMAIL)])
        .send()
        .await
        .expect("GET /v1/lookup");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn rotate(data: &Path, old: &[(String, String)], new: &[&str]) -> std::process::Output {
    idgraph_command()
        .args(["keys", "rotate-kek", "--data-dir"])
        .arg(data)
        .args(new)
        .envs(old.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run idgraph keys rotate-kek")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_kms_key_wraps_the_data_keys_and_start_up_refuses_what_kms_will_not_open() {
    let kms = Kms::start();
    let key_a = kms.create_key().await;
    let key_b = kms.create_key().await;
    let root = tempfile::tempdir().expect("tmp");
    let data = root.path().join("data");

    // A new store: KMS encrypts its data key; the file holds only KMS's ciphertext.
    let mut server = ServeProcess::start_with_env(&data, &kms.env(&key_a));
    let client = http_client();
    let (status, body) = post_json(&client, &server.url("/v1/events"), &person_event("k-1")).await;
    assert_eq!(status, 200, "{body}");
    let (status, before) = lookup(&server.address).await;
    assert_eq!(status, 200, "{before}");
    // A tenant created on this server gets its own data key, wrapped by KMS too.
    let (status, tenant) = post_json_with_key(
        &client,
        &server.url("/v1/tenants"),
        &key_of("test-operator"),
        &json!({"id": "acme"}),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    server.terminate();
    let file = key_file(&data);
    assert_eq!(file["wrapped_by"], "aws_kms", "{file}");
    let tenant_file = key_file(&data.join("tenants/acme"));
    assert_eq!(tenant_file["wrapped_by"], "aws_kms", "{tenant_file}");
    assert_ne!(
        tenant_file["key_id"], file["key_id"],
        "one data key per tenant"
    );
    let hits = files_holding(&data, &needles());
    assert!(
        hits.iter().all(|(p, _)| p.starts_with(data.join("search"))),
        "no store file holds a personal value: {hits:?}"
    );

    // KMS itself opens the blob only with the key id as encryption context: a blob
    // copied into another data directory's key file does not decrypt there.
    let blob = file["wrapped"].as_str().expect("wrapped");
    let key_id = file["key_id"].as_str().expect("key_id");
    let (status, plain) = kms
        .call(
            "Decrypt",
            json!({"CiphertextBlob": blob, "KeyId": key_a,
                   "EncryptionContext": {"idgraph-data-key": key_id}}),
        )
        .await;
    assert_eq!(status, 200, "{plain}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(plain["Plaintext"].as_str().expect("Plaintext"))
        .expect("base64");
    assert_eq!(bytes.len(), 32, "KMS wrapped a 32-byte data key");
    let (status, refused) = kms
        .call(
            "Decrypt",
            json!({"CiphertextBlob": blob, "KeyId": key_a,
                   "EncryptionContext": {"idgraph-data-key": "another-store"}}),
        )
        .await;
    assert_ne!(status, 200, "another context must not open it: {refused}");

    // A restart opens the data key through KMS and reads the same profile back.
    let mut server = ServeProcess::start_with_env(&data, &kms.env(&key_a));
    let (status, after) = lookup(&server.address).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after.to_string(), before.to_string());
    server.terminate();

    // Refusals, each naming the cause; nothing starts and nothing is changed.
    let err = refused_start(&data, &borrowed(&kms.env(&key_b)));
    assert!(
        err.contains("wrong key-encryption key") && err.contains(&key_b),
        "another KMS key: {err}"
    );
    let mut unreachable = kms.env(&key_a);
    unreachable.push((
        "IDGRAPH_ENCRYPTION__KEK__AWS_KMS__ENDPOINT".to_owned(),
        "http://127.0.0.1:9".to_owned(),
    ));
    let err = refused_start(&data, &borrowed(&unreachable));
    assert!(err.contains("cannot reach AWS KMS"), "KMS down: {err}");
    let mut no_credentials: Vec<(String, String)> = kms
        .env(&key_a)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_"))
        .collect();
    no_credentials.extend(aws_env(false));
    let err = refused_start_without_aws_keys(&data, &no_credentials);
    assert!(
        err.contains("aws_kms") && err.to_lowercase().contains("credentials"),
        "no credentials: {err}"
    );
    let (status, answer) = kms.call("DisableKey", json!({"KeyId": key_a})).await;
    assert_eq!(status, 200, "{answer}");
    let err = refused_start(&data, &borrowed(&kms.env(&key_a)));
    assert!(err.contains("disabled"), "disabled key: {err}");
    let (status, answer) = kms.call("EnableKey", json!({"KeyId": key_a})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        key_file(&data),
        file,
        "refusals leave the key file as it was"
    );

    // Rotation from KMS key A to KMS key B: every data key (tenant's too) re-wrapped, no
    // record rewritten; then B alone opens the store.
    let out = rotate(
        &data,
        &kms.env(&key_a),
        &[
            "--new-aws-kms-key-id",
            &key_b,
            "--new-aws-kms-region",
            &kms.region,
            "--new-aws-kms-endpoint",
            &kms.endpoint,
        ],
    );
    assert_succeeded(&out, "rotate-kek from KMS key A to key B");
    let rewrapped = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        rewrapped.matches("re-wrapped data key").count(),
        2,
        "{rewrapped}"
    );
    assert_eq!(key_file(&data)["key_id"], file["key_id"], "same data key");
    assert_ne!(key_file(&data)["wrapped"], file["wrapped"]);
    let err = refused_start(&data, &borrowed(&kms.env(&key_a)));
    assert!(err.contains("wrong key-encryption key"), "old key A: {err}");
    let mut server = ServeProcess::start_with_env(&data, &kms.env(&key_b));
    let (status, after) = lookup(&server.address).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after.to_string(), before.to_string());
    server.terminate();

    // And from KMS to a local KEK file: the store leaves KMS without a rewrite.
    let local = kek_file(root.path(), "kek", 0x4b);
    let out = rotate(
        &data,
        &kms.env(&key_b),
        &["--new-file", local.to_str().expect("utf-8 path")],
    );
    assert_succeeded(&out, "rotate-kek from KMS to a file");
    assert_eq!(key_file(&data)["wrapped_by"], "local");
    let mut server = ServeProcess::start_with_env(&data, &enc_env(&local));
    let (status, after) = lookup(&server.address).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after.to_string(), before.to_string());
    server.terminate();
}

/// [`refused_start`] with the AWS credential variables of this process removed too (the
/// machine running the tests may have some).
fn refused_start_without_aws_keys(data: &Path, env: &[(String, String)]) -> String {
    let mut env = borrowed(env);
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        if std::env::var_os(name).is_some() {
            env.push((name, String::new()));
        }
    }
    refused_start(data, &env)
}

async fn post_json_with_key(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
