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
            context::{
                BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
                FinalizerInterceptorContextRef,
            },
            Intercept,
        },
        orchestrator::Metadata,
        retries::RequestAttempts,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::ConfigBag;

use super::fault::{FaultPoint, When};

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
    /// Every attempt, by outcome.
    counts: Arc<Mutex<BTreeMap<CallKey, u64>>>,
    /// Attempts the SDK made again after a failed one, by (service, operation).
    retries: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl CallLog {
    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn retries(&self) -> BTreeMap<(String, String), u64> {
        self.retries.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, key: CallKey, attempt: u32) {
        if attempt > 1 {
            if let Ok(mut retries) = self.retries.lock() {
                *retries
                    .entry((key.service.clone(), key.operation.clone()))
                    .or_default() += 1;
            }
        }
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_default() += 1;
        }
    }
}

/// The calls one reconcile pass made; installed with [`CallScope::run`]. It also knows
/// until when the pass's lease is surely still held, and refuses to send a call after that:
/// a worker that was frozen (a stopped process, a stalled VM) past its lease must not touch
/// a tenant that another worker may have taken over. Its Postgres writes are fenced anyway;
/// this keeps its AWS calls off too.
#[derive(Debug, Default)]
pub struct CallScope {
    /// Its calls may wait for urgent ones (see `budget`): a resync round, a deep check,
    /// a health round, rightsizing.
    background: bool,
    calls: AtomicU64,
    mutating: AtomicU64,
    first_call: OnceLock<Instant>,
    lease_until: Mutex<Option<Instant>>,
}

/// The error a call fails with when its pass's lease may have lapsed; it is never sent.
#[derive(Debug, thiserror::Error)]
#[error("the lease on the tenant may have lapsed (not renewed for a whole lease term); the call was not sent")]
pub struct LeaseLapsed;

tokio::task_local! {
    static SCOPE: Arc<CallScope>;
}

/// Whether the calls of the current task are urgent: those of a pass for an API change,
/// and those made outside any scope (the API's own reads); not those of background work.
pub fn urgent() -> bool {
    SCOPE.try_with(|s| !s.background).unwrap_or(true)
}

/// Whether the current task's pass may have lost its lease.
pub fn lease_lapsed() -> bool {
    SCOPE.try_with(|s| s.lease_lapsed()).unwrap_or(false)
}

/// The header the counter names each request's operation in for the budget's connector,
/// which takes it off again before the request is sent.
pub const OPERATION_HEADER: &str = "x-statehouse-operation";

impl CallScope {
    /// A scope for background work, whose calls give way to urgent ones.
    pub fn background() -> Self {
        Self {
            background: true,
            ..Self::default()
        }
    }

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

    /// Calls are sent only until `until` (moved on by each renewal of the lease).
    pub fn hold_lease_until(&self, until: Instant) {
        if let Ok(mut held) = self.lease_until.lock() {
            *held = Some(until);
        }
    }

    /// Until when the lease surely holds, if the scope has one.
    pub fn lease_held_until(&self) -> Option<Instant> {
        self.lease_until.lock().ok().and_then(|held| *held)
    }

    fn lease_lapsed(&self) -> bool {
        self.lease_held_until()
            .is_some_and(|until| Instant::now() >= until)
    }
}

fn service_label(meta: &Metadata) -> String {
    meta.service().to_ascii_lowercase().replace(' ', "-")
}

/// Called once per attempt, e.g. to feed `/metrics`.
pub type OnCall = Arc<dyn Fn(&CallKey) + Send + Sync>;

/// The SDK interceptor behind both counts; one instance is shared by every client.
#[derive(Clone)]
pub struct CallCounter {
    log: CallLog,
    on_call: Option<OnCall>,
    /// Test-only: where to stop or kill the process (see [`super::fault`]).
    fault: Option<Arc<FaultPoint>>,
    /// Name each request's operation in [`OPERATION_HEADER`], for the budget.
    name_operations: bool,
}

impl std::fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallCounter").finish_non_exhaustive()
    }
}

impl CallCounter {
    pub fn new(log: CallLog, on_call: Option<OnCall>) -> Self {
        Self {
            log,
            on_call,
            fault: None,
            name_operations: false,
        }
    }

    /// Arms a test-only fault point; `None` leaves the counter inert.
    pub fn with_fault(mut self, fault: Option<FaultPoint>) -> Self {
        self.fault = fault.map(Arc::new);
        self
    }

    /// Names each request's operation for the budget's connector (see [`OPERATION_HEADER`]).
    pub fn naming_operations(mut self) -> Self {
        self.name_operations = true;
        self
    }

    pub fn log(&self) -> &CallLog {
        &self.log
    }

    pub(crate) fn fault(&self) -> Option<Arc<FaultPoint>> {
        self.fault.clone()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "statehouse-call-counter"
    }

    /// Runs after signing, right before the request goes on the wire, so that as little
    /// as possible lies between the lease check and the send (a process stopped in that
    /// gap still sends once it runs again; the reconciler copes with that, see
    /// `task_def::ensure`).
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        if let Some(fault) = &self.fault {
            fault.check(When::Before, &service_label(meta), meta.name());
        }
        let lapsed = SCOPE.try_with(|scope| {
            if scope.lease_lapsed() {
                return true;
            }
            scope.first_call.get_or_init(Instant::now);
            scope.calls.fetch_add(1, Ordering::Relaxed);
            if is_mutating(meta.name()) {
                scope.mutating.fetch_add(1, Ordering::Relaxed);
            }
            false
        });
        if lapsed == Ok(true) {
            tracing::warn!(
                operation = meta.name(),
                "the lease may have lapsed; AWS call not sent"
            );
            return Err(Box::new(LeaseLapsed));
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.name_operations {
            return Ok(());
        }
        if let Some(meta) = cfg.load::<Metadata>() {
            let name = meta.name().to_owned();
            context
                .request_mut()
                .headers_mut()
                .insert(OPERATION_HEADER, name);
        }
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
            service: service_label(meta),
            operation: meta.name().to_owned(),
            outcome,
        };
        if let Some(on_call) = &self.on_call {
            on_call(&key);
        }
        let attempt = cfg
            .load::<RequestAttempts>()
            .map_or(1, RequestAttempts::attempts);
        self.log.record(key.clone(), attempt);
        if let Some(fault) = &self.fault {
            fault.check(When::After, &key.service, &key.operation);
        }
        Ok(())
    }
}
