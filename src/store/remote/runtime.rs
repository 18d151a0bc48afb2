//! The async runtime of a remote graph client, behind a synchronous call with a deadline.
//!
//! The graph-database clients (`neo4rs`, `gremlin-client`) are async; the [`GraphStore`]
//! trait is synchronous and called from the resolver thread and the blocking pool. Each
//! remote backend owns one small tokio runtime; every call spawns its future there and
//! waits for it at most the configured timeout, so no call can hang and the trait stays
//! the same for every backend.
//!
//! [`GraphStore`]: crate::store::GraphStore

use std::future::Future;
use std::time::Duration;

use crate::store::StoreError;

pub struct ClientRuntime {
    rt: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    /// Who answers the calls, for messages ("the graph database", "AWS KMS").
    peer: &'static str,
}

impl ClientRuntime {
    /// A one-worker runtime whose thread is called `thread_name`; calls wait at most
    /// `timeout_ms` (at least 1 ms).
    pub fn new(thread_name: &str, timeout_ms: u64) -> Result<ClientRuntime, StoreError> {
        ClientRuntime::for_peer(thread_name, "the graph database", timeout_ms)
    }

    /// [`ClientRuntime::new`] for a client of `peer` (named in timeout messages).
    pub fn for_peer(
        thread_name: &str,
        peer: &'static str,
        timeout_ms: u64,
    ) -> Result<ClientRuntime, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map_err(|e| StoreError::Engine(format!("cannot start the client of {peer}: {e}")))?;
        Ok(ClientRuntime {
            rt: Some(rt),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            peer,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `fut` on the client runtime in the background (a task that lives as long as
    /// the runtime, e.g. a listener).
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.rt {
            rt.spawn(fut);
        }
    }

    /// Runs `fut` on the client runtime and waits for it, at most the timeout: no answer
    /// in time is [`StoreError::Unavailable`] (HTTP 503), like a refused connection.
    pub fn call<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(StoreError::Unavailable(format!(
                "the client of {} is shut down",
                self.peer
            )));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        rt.spawn(async move {
            let result = tokio::time::timeout(timeout, fut).await;
            let _ = tx.send(result);
        });
        match rx.recv() {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Unavailable(format!(
                "{what}: no answer from {} within {} ms",
                self.peer,
                timeout.as_millis()
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "{what}: the client of {} stopped",
                self.peer
            ))),
        }
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        // Never blocks, so a store may be dropped anywhere, even inside async code.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
