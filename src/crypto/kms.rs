//! AWS KMS as the key-encryption key (`[encryption.kek.aws_kms]`), through the official
//! AWS SDK for Rust (`aws-sdk-kms`, `aws-config`).
//!
//! The 32-byte data key is sent to KMS `Encrypt` under the configured symmetric key; the
//! ciphertext blob KMS returns is what the key file keeps. At start-up KMS `Decrypt` gives
//! the data key back; the key never leaves memory otherwise. Both calls carry the
//! encryption context `idgraph-data-key = <key id>` (KMS binds it to the ciphertext, and
//! CloudTrail records it), so a blob copied to another data directory does not decrypt
//! there; `Decrypt` names the configured key, so a blob of another KMS key is refused.
//!
//! Credentials and region come the SDK's usual way (environment, shared profile, web
//! identity, ECS or EC2 instance role); `endpoint` points at a VPC endpoint or a
//! KMS-compatible server. The SDK's HTTPS client is rustls on ring, the provider the API's
//! TLS already uses. Calls run on one small runtime per configuration (see
//! [`ClientRuntime`]), so they can be made from synchronous code, inside async code too,
//! and never wait longer than [`CALL_TIMEOUT_MS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::kek::AwsKmsSettings;
use super::{CryptoError, KeyBytes};
use crate::store::remote::runtime::ClientRuntime;

/// The encryption-context entry bound to every wrapped data key.
const CONTEXT_KEY: &str = "idgraph-data-key";
/// Longest wait for one KMS call, retries included.
pub const CALL_TIMEOUT_MS: u64 = 60_000;
/// One attempt's limit; the SDK retries throttling and transient failures (3 attempts).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A KMS client for one configuration, with its runtime.
pub struct KmsClient {
    settings: AwsKmsSettings,
    rt: ClientRuntime,
    client: aws_sdk_kms::Client,
}

/// One client per configuration for the life of the process: a start-up opens the data
/// key of every tenant with the same client (and credentials cache).
type Clients = Mutex<HashMap<(String, String, Option<String>), Arc<KmsClient>>>;

fn clients() -> &'static Clients {
    static CLIENTS: OnceLock<Clients> = OnceLock::new();
    CLIENTS.get_or_init(|| Mutex::new(HashMap::new()))
}

impl KmsClient {
    /// The client of `settings` (built on first use; building contacts nothing, so a
    /// KMS that is down fails the first call, naming it).
    pub fn for_settings(settings: &AwsKmsSettings) -> Result<Arc<KmsClient>, CryptoError> {
        let id = (
            settings.key_id.clone(),
            settings.region.clone(),
            settings.endpoint.clone(),
        );
        let mut clients = clients().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&id) {
            return Ok(c.clone());
        }
        let client = Arc::new(KmsClient::build(settings)?);
        clients.insert(id, client.clone());
        Ok(client)
    }

    fn build(settings: &AwsKmsSettings) -> Result<KmsClient, CryptoError> {
        let rt = ClientRuntime::for_peer("idgraph-kms", "AWS KMS", CALL_TIMEOUT_MS)
            .map_err(|e| CryptoError::Config(e.to_string()))?;
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        let loader = match &settings.endpoint {
            Some(url) => loader.endpoint_url(url.clone()),
            None => loader,
        };
        let config = rt
            .call("loading the AWS configuration", async move {
                Ok(loader.load().await)
            })
            .map_err(|e| CryptoError::Config(e.to_string()))?;
        Ok(KmsClient {
            settings: settings.clone(),
            rt,
            client: aws_sdk_kms::Client::new(&config),
        })
    }

    /// The data key `key_id` encrypted by KMS: the ciphertext blob.
    pub fn encrypt(&self, key_id: &str, key: &KeyBytes) -> Result<Vec<u8>, CryptoError> {
        let call = self
            .client
            .encrypt()
            .key_id(self.settings.key_id.clone())
            .plaintext(Blob::new(key.to_vec()))
            .encryption_context(CONTEXT_KEY, key_id);
        let out = self
            .rt
            .call("AWS KMS Encrypt", async move { Ok(call.send().await) })
            .map_err(|e| self.failed("Encrypt", e.to_string()))?
            .map_err(|e| self.sdk_error("Encrypt", e))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| self.failed("Encrypt", "the answer holds no ciphertext".into()))
    }

    /// The data key `key_id` back from its ciphertext blob.
    pub fn decrypt(&self, key_id: &str, wrapped: &[u8]) -> Result<KeyBytes, CryptoError> {
        let call = self
            .client
            .decrypt()
            .key_id(self.settings.key_id.clone())
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .encryption_context(CONTEXT_KEY, key_id);
        let out = self
            .rt
            .call("AWS KMS Decrypt", async move { Ok(call.send().await) })
            .map_err(|e| self.failed("Decrypt", e.to_string()))?
            .map_err(|e| self.sdk_error("Decrypt", e))?;
        let plain = Zeroizing::new(
            out.plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| self.failed("Decrypt", "the answer holds no plaintext".into()))?,
        );
        if plain.len() != 32 {
            return Err(self.failed(
                "Decrypt",
                format!(
                    "the plaintext is {} bytes, a data key is 32: the ciphertext is not an idgraph data key",
                    plain.len()
                ),
            ));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    pub fn settings(&self) -> &AwsKmsSettings {
        &self.settings
    }

    fn describe(&self) -> String {
        let s = &self.settings;
        match &s.endpoint {
            Some(url) => format!("KMS key {} (region {}, endpoint {url})", s.key_id, s.region),
            None => format!("KMS key {} (region {})", s.key_id, s.region),
        }
    }

    fn failed(&self, op: &str, why: String) -> CryptoError {
        CryptoError::Config(format!(
            "encryption.kek.aws_kms: {op} with {} failed: {why}",
            self.describe()
        ))
    }

    /// A KMS refusal in words: what it means for the store and what to check. A
    /// ciphertext the key does not open is [`CryptoError::Tampered`] (the caller names
    /// the file).
    fn sdk_error<E, R>(&self, op: &str, e: SdkError<E, R>) -> CryptoError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = e.code().unwrap_or_default().to_owned();
        let why = match code.as_str() {
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                return CryptoError::Tampered;
            }
            "NotFoundException" => "the key does not exist in this region (check key_id and region)".to_owned(),
            "DisabledException" => "the key is disabled; enable it in KMS".to_owned(),
            "KMSInvalidStateException" => {
                "the key is not usable in its current state (pending deletion, or pending import); cancel the deletion or enable it".to_owned()
            }
            "AccessDeniedException" => {
                "access denied: the credentials idgraph runs with need kms:Encrypt and kms:Decrypt on this key".to_owned()
            }
            "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
                format!("the AWS credentials were refused ({code}); check the credentials idgraph runs with")
            }
            _ => {
                let chain = error_chain(&e);
                match &e {
                    SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
                        format!("cannot reach AWS KMS: {chain}")
                    }
                    SdkError::TimeoutError(_) => format!("no answer from AWS KMS in time: {chain}"),
                    _ if chain.contains("credential") => format!(
                        "no usable AWS credentials (the SDK looks in the environment, the shared profile, web identity, ECS and the EC2 instance role): {chain}"
                    ),
                    _ => chain,
                }
            }
        };
        self.failed(op, why)
    }
}

/// `e` and its sources, each in its own words (no debug dump).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
