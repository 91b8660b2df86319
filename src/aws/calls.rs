//! Counting every request statehouse sends to AWS: by service, operation and outcome for
//! `/metrics`, and per reconcile pass, so a pass can say how many calls it made, how many
//! of them changed something, and how soon after it started the first one left.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Instant,
};

use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::{
            context::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef},
            Intercept,
        },
        orchestrator::Metadata,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::ConfigBag;

/// Operations whose names start so only read; every other operation changes something.
const READ_PREFIXES: &[&str] = &["Describe", "Get", "List", "Head"];

pub fn is_mutating(operation: &str) -> bool {
    !READ_PREFIXES.iter().any(|p| operation.starts_with(p))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey {
    pub service: String,
    pub operation: String,
    /// `ok`, `client_error`, `server_error` or `no_response`.
    pub outcome: &'static str,
}

/// Totals since the process started (or since the log was made, in tests).
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    counts: Arc<Mutex<BTreeMap<CallKey, u64>>>,
}

impl CallLog {
    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, key: CallKey) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_default() += 1;
        }
    }
}

/// The calls one reconcile pass made; installed with [`CallScope::run`].
#[derive(Debug, Default)]
pub struct CallScope {
    calls: AtomicU64,
    mutating: AtomicU64,
    first_call: OnceLock<Instant>,
}

tokio::task_local! {
    static SCOPE: Arc<CallScope>;
}

impl CallScope {
    /// Runs `fut` with every AWS call it makes counted in `scope`.
    pub async fn run<F: std::future::Future>(scope: Arc<CallScope>, fut: F) -> F::Output {
        SCOPE.scope(scope, fut).await
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn mutating(&self) -> u64 {
        self.mutating.load(Ordering::Relaxed)
    }

    pub fn first_call(&self) -> Option<Instant> {
        self.first_call.get().copied()
    }
}

/// Called once per attempt, e.g. to feed `/metrics`.
pub type OnCall = Arc<dyn Fn(&CallKey) + Send + Sync>;

/// The SDK interceptor behind both counts; one instance is shared by every client.
#[derive(Clone)]
pub struct CallCounter {
    log: CallLog,
    on_call: Option<OnCall>,
}

impl std::fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallCounter").finish_non_exhaustive()
    }
}

impl CallCounter {
    pub fn new(log: CallLog, on_call: Option<OnCall>) -> Self {
        Self { log, on_call }
    }

    pub fn log(&self) -> &CallLog {
        &self.log
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "statehouse-call-counter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let _ = SCOPE.try_with(|scope| {
            scope.first_call.get_or_init(Instant::now);
            scope.calls.fetch_add(1, Ordering::Relaxed);
            if is_mutating(meta.name()) {
                scope.mutating.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let outcome = match context.response().map(|r| r.status().as_u16()) {
            Some(s) if s < 400 => "ok",
            Some(s) if s < 500 => "client_error",
            Some(_) => "server_error",
            None => "no_response",
        };
        let key = CallKey {
            service: meta.service().to_ascii_lowercase().replace(' ', "-"),
            operation: meta.name().to_owned(),
            outcome,
        };
        if let Some(on_call) = &self.on_call {
            on_call(&key);
        }
        self.log.record(key);
        Ok(())
    }
}
