//! The AWS call budget: a client-side token bucket for each of AWS's own request buckets
//! (per account and region), filled at a share of the documented rate, so that statehouse
//! never uses more than its share of what it, Terraform, other controllers and people in
//! the console all draw on. A call waits for a token before it is sent (each retry too);
//! an urgent call (a pass for an API change, any write) is served before waiting
//! background reads (resync rounds, deep checks, health, rightsizing).
//!
//! The wait happens in the HTTP connector, outside the SDK's attempt timeout: the connector
//! applies that timeout itself to the request once a token is held.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

// Tokio's clock, so that tests with paused time see the buckets fill.
use tokio::time::Instant;

use aws_smithy_runtime_api::client::{
    http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    },
    orchestrator::HttpRequest,
    result::ConnectorError,
    runtime_components::RuntimeComponents,
};

/// One of AWS's request buckets that statehouse draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    EcsRead,
    EcsWrite,
    RegisterTaskDefinition,
    /// Every Elastic Load Balancing call of the account and region.
    Elb,
    Logs,
    Iam,
    S3,
    DynamoDb,
    AutoScaling,
    CloudWatch,
}

/// A sustained rate (tokens a second) and a burst (the bucket's size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

impl Bucket {
    pub const ALL: [Bucket; 10] = [
        Self::EcsRead,
        Self::EcsWrite,
        Self::RegisterTaskDefinition,
        Self::Elb,
        Self::Logs,
        Self::Iam,
        Self::S3,
        Self::DynamoDb,
        Self::AutoScaling,
        Self::CloudWatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcsRead => "ecs-read",
            Self::EcsWrite => "ecs-write",
            Self::RegisterTaskDefinition => "ecs-register-task-definition",
            Self::Elb => "elb",
            Self::Logs => "logs",
            Self::Iam => "iam",
            Self::S3 => "s3",
            Self::DynamoDb => "dynamodb",
            Self::AutoScaling => "application-autoscaling",
            Self::CloudWatch => "cloudwatch",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == name)
    }

    /// AWS's limit for the whole account and region, as documented where AWS publishes
    /// one (ECS, ELB, CloudWatch Logs, CloudWatch, DynamoDB's control plane), and a cautious
    /// figure where it does not (IAM, S3 bucket settings, Application Auto Scaling).
    /// `STATEHOUSE_AWS_LIMITS` overrides any of them.
    pub fn documented(self) -> Limit {
        let (rate, burst) = match self {
            // DescribeServices: 20 a second; the cluster read bucket holds 50.
            Self::EcsRead => (20.0, 50.0),
            Self::EcsWrite => (5.0, 10.0),
            Self::RegisterTaskDefinition => (1.0, 1.0),
            // One bucket for every ELBv2 call: 10 a second, burst 40.
            Self::Elb => (10.0, 40.0),
            // DescribeLogGroups: 5 a second.
            Self::Logs => (5.0, 5.0),
            Self::Iam => (5.0, 10.0),
            Self::S3 => (50.0, 100.0),
            // The control plane: 2,500 a second.
            Self::DynamoDb => (2500.0, 2500.0),
            Self::AutoScaling => (10.0, 20.0),
            // DescribeAlarms: 9 a second (PutMetricAlarm's 3 is lower; its calls are few).
            Self::CloudWatch => (9.0, 9.0),
        };
        Limit { rate, burst }
    }

    /// The bucket a call draws on; `None` for calls outside every bucket (STS).
    pub fn of(service: &str, operation: &str) -> Option<Self> {
        Some(match service {
            "ecs" if operation == "RegisterTaskDefinition" => Self::RegisterTaskDefinition,
            "ecs" if super::calls::is_mutating(operation) => Self::EcsWrite,
            "ecs" => Self::EcsRead,
            "elasticloadbalancing" => Self::Elb,
            "logs" => Self::Logs,
            "iam" => Self::Iam,
            "s3" => Self::S3,
            "dynamodb" => Self::DynamoDb,
            "application-autoscaling" => Self::AutoScaling,
            "cloudwatch" => Self::CloudWatch,
            _ => return None,
        })
    }
}

/// How much of each documented limit this process may use.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSettings {
    /// The share of every limit for all of statehouse's processes together (0 < s <= 1).
    pub share: f64,
    /// How many processes call AWS in the same account and region; each gets
    /// `share / processes`.
    pub processes: u32,
    /// Limits other than the documented ones, by bucket.
    pub limits: BTreeMap<Bucket, Limit>,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            share: 0.25,
            processes: 1,
            limits: BTreeMap::new(),
        }
    }
}

impl BudgetSettings {
    /// What this process may draw from `bucket`: its share of the rate, and of the burst
    /// (at least one token, or nothing could ever be sent).
    pub fn allowance(&self, bucket: Bucket) -> Limit {
        let limit = self
            .limits
            .get(&bucket)
            .copied()
            .unwrap_or_else(|| bucket.documented());
        let share = self.share / f64::from(self.processes.max(1));
        Limit {
            rate: limit.rate * share,
            burst: (limit.burst * share).max(1.0),
        }
    }

    /// Parses `STATEHOUSE_AWS_LIMITS`: `elb=10/40,iam=2/5` (rate a second / burst).
    pub fn parse_limits(text: &str) -> Result<BTreeMap<Bucket, Limit>, String> {
        let mut limits = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let names = || {
                Bucket::ALL
                    .iter()
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (name, figures) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not bucket=rate/burst (e.g. elb=10/40)"))?;
            let bucket = Bucket::parse(name.trim()).ok_or_else(|| {
                format!("`{}` is not a bucket; use one of {}", name.trim(), names())
            })?;
            let (rate, burst) = figures
                .split_once('/')
                .and_then(|(r, b)| Some((r.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
                .filter(|(r, b)| r.is_finite() && *r > 0.0 && b.is_finite() && *b >= 1.0)
                .ok_or_else(|| {
                    format!("`{entry}`: give a rate above 0 a second and a burst of at least 1, as in elb=10/40")
                })?;
            if limits.insert(bucket, Limit { rate, burst }).is_some() {
                return Err(format!("bucket `{}` is listed twice", bucket.as_str()));
            }
        }
        Ok(limits)
    }
}

/// Told how long each call waited for its token.
pub type OnWait = Arc<dyn Fn(Bucket, Duration) + Send + Sync>;

/// The token buckets of one account and region, shared by every client and pass of the
/// process that calls there.
pub struct Budget {
    buckets: BTreeMap<Bucket, TokenBucket>,
    on_wait: Option<OnWait>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl Budget {
    pub fn new(settings: &BudgetSettings, on_wait: Option<OnWait>) -> Self {
        Self {
            buckets: Bucket::ALL
                .into_iter()
                .map(|b| (b, TokenBucket::new(settings.allowance(b))))
                .collect(),
            on_wait,
        }
    }

    /// Waits for a token of `bucket`; urgent calls go before background ones.
    pub async fn acquire(&self, bucket: Bucket, urgent: bool) {
        let Some(b) = self.buckets.get(&bucket) else {
            return;
        };
        let waited = b.acquire(urgent).await;
        if let Some(on_wait) = &self.on_wait {
            on_wait(bucket, waited);
        }
    }

    /// An HTTP client for `service`'s SDK client that takes a token before each request
    /// and gives each request `attempt_timeout` once it holds one.
    pub fn client(
        self: &Arc<Self>,
        service: &'static str,
        inner: SharedHttpClient,
        attempt_timeout: Duration,
    ) -> SharedHttpClient {
        SharedHttpClient::new(BudgetedClient {
            budget: self.clone(),
            service,
            inner,
            attempt_timeout,
        })
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
    /// Urgent calls waiting now: background calls wait while there are any.
    urgent_waiting: usize,
}

#[derive(Debug)]
pub struct TokenBucket {
    limit: Limit,
    state: Mutex<State>,
}

/// Counts an urgent waiter for as long as it waits, also if its call is abandoned.
struct Waiting<'a>(&'a Mutex<State>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.urgent_waiting = s.urgent_waiting.saturating_sub(1);
        }
    }
}

impl TokenBucket {
    pub fn new(limit: Limit) -> Self {
        Self {
            limit,
            state: Mutex::new(State {
                tokens: limit.burst,
                at: Instant::now(),
                urgent_waiting: 0,
            }),
        }
    }

    /// Takes a token, waiting until there is one (and, for a background call, until no
    /// urgent call waits); returns how long it waited.
    pub async fn acquire(&self, urgent: bool) -> Duration {
        let started = Instant::now();
        let mut waiting = None;
        loop {
            let wait = {
                let Ok(mut s) = self.state.lock() else {
                    return started.elapsed();
                };
                let now = Instant::now();
                let refill = now.duration_since(s.at).as_secs_f64() * self.limit.rate;
                s.tokens = (s.tokens + refill).min(self.limit.burst);
                s.at = now;
                let blocked = !urgent && s.urgent_waiting > 0;
                if !blocked && s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    drop(s);
                    drop(waiting);
                    return started.elapsed();
                }
                if urgent && waiting.is_none() {
                    s.urgent_waiting += 1;
                    waiting = Some(Waiting(&self.state));
                }
                let missing = (1.0 - s.tokens).max(0.0);
                Duration::from_secs_f64((missing / self.limit.rate).max(0.001))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Debug)]
struct BudgetedClient {
    budget: Arc<Budget>,
    service: &'static str,
    inner: SharedHttpClient,
    attempt_timeout: Duration,
}

impl HttpClient for BudgetedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BudgetedConnector {
            budget: self.budget.clone(),
            service: self.service,
            inner: self.inner.http_connector(settings, components),
            attempt_timeout: self.attempt_timeout,
        })
    }
}

#[derive(Debug)]
struct BudgetedConnector {
    budget: Arc<Budget>,
    service: &'static str,
    inner: SharedHttpConnector,
    attempt_timeout: Duration,
}

impl HttpConnector for BudgetedConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        // Put there by the call counter, which knows the operation; not sent to AWS.
        let op = request
            .headers_mut()
            .remove(super::calls::OPERATION_HEADER)
            .unwrap_or_default();
        let bucket = Bucket::of(self.service, &op);
        let urgent = (!op.is_empty() && super::calls::is_mutating(&op)) || super::calls::urgent();
        let budget = self.budget.clone();
        let inner = self.inner.clone();
        let timeout = self.attempt_timeout;
        HttpConnectorFuture::new(async move {
            if let Some(bucket) = bucket {
                budget.acquire(bucket, urgent).await;
                if super::calls::lease_lapsed() {
                    return Err(ConnectorError::other(
                        Box::new(super::calls::LeaseLapsed),
                        None,
                    ));
                }
            }
            with_timeout(timeout, inner.call(request)).await
        })
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => Err(ConnectorError::timeout(
            format!("no answer within {}s", timeout.as_secs()).into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_is_counted_against_its_bucket() {
        assert_eq!(Bucket::of("ecs", "DescribeServices"), Some(Bucket::EcsRead));
        assert_eq!(Bucket::of("ecs", "UpdateService"), Some(Bucket::EcsWrite));
        assert_eq!(
            Bucket::of("ecs", "RegisterTaskDefinition"),
            Some(Bucket::RegisterTaskDefinition)
        );
        assert_eq!(
            Bucket::of("elasticloadbalancing", "DescribeTags"),
            Some(Bucket::Elb)
        );
        assert_eq!(Bucket::of("sts", "AssumeRole"), None);
    }

    #[test]
    fn the_share_is_divided_among_processes_and_never_below_one_token() {
        let s = BudgetSettings {
            share: 0.25,
            processes: 2,
            limits: BTreeMap::new(),
        };
        assert_eq!(
            s.allowance(Bucket::Elb),
            Limit {
                rate: 1.25,
                burst: 5.0
            }
        );
        assert_eq!(
            s.allowance(Bucket::RegisterTaskDefinition),
            Limit {
                rate: 0.125,
                burst: 1.0
            }
        );
    }

    #[test]
    fn limits_are_overridden_per_bucket_and_bad_ones_named() {
        let limits = BudgetSettings::parse_limits("elb=20/80, iam=2/5").unwrap();
        assert_eq!(
            limits[&Bucket::Elb],
            Limit {
                rate: 20.0,
                burst: 80.0
            }
        );
        for (text, says) in [
            ("elb", "is not bucket=rate/burst"),
            ("sqs=1/1", "`sqs` is not a bucket"),
            ("elb=0/4", "a rate above 0"),
            ("elb=1/0.5", "a burst of at least 1"),
            ("elb=1/1,elb=2/2", "listed twice"),
        ] {
            let err = BudgetSettings::parse_limits(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_never_lets_more_through_than_its_burst_and_rate() {
        let bucket = Arc::new(TokenBucket::new(Limit {
            rate: 2.0,
            burst: 3.0,
        }));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..13 {
            let b = bucket.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire(false).await;
                tokio::time::Instant::now()
            }));
        }
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap() - start);
        }
        at.sort();
        // Three at once, then two a second: the thirteenth at five seconds.
        assert!(at[2] < Duration::from_millis(10), "{at:?}");
        assert!(at[12] >= Duration::from_millis(4990), "{at:?}");
        for (i, t) in at.iter().enumerate() {
            let allowed = 3.0 + 2.0 * t.as_secs_f64();
            assert!((i + 1) as f64 <= allowed + 1e-6, "{i}: {t:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_calls_are_served_before_waiting_background_ones() {
        let bucket = Arc::new(TokenBucket::new(Limit {
            rate: 1.0,
            burst: 1.0,
        }));
        bucket.acquire(false).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, urgent) in [(0, false), (1, false), (2, true), (3, true)] {
            let (b, order) = (bucket.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                // The background calls queue first.
                tokio::time::sleep(Duration::from_millis(if urgent { 10 } else { 1 })).await;
                b.acquire(urgent).await;
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [2, 3, 0, 1]);
    }
}
