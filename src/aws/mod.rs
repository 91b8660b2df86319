//! The AWS clients statehouse calls, built from one SDK configuration.

pub mod budget;
pub mod calls;
pub mod error;
pub mod fault;

use std::time::Duration;

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, ConfigLoader, SdkConfig};

pub use calls::{CallCounter, CallLog, CallScope};
pub use error::{AwsError, Retry};

/// Timeouts, so that a stalled connection becomes a retryable error instead of a stuck
/// reconcile, and how the SDK retries one call before the worker's own backoff takes over.
pub fn client_policy(loader: ConfigLoader) -> ConfigLoader {
    loader.timeout_config(timeouts()).retry_config(retries())
}

pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// How long one attempt of a call may take once it is sent.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// With a budget, the wait for a token is no part of an attempt: the budget's connector
/// applies [`ATTEMPT_TIMEOUT`] itself, from when the request leaves.
fn budgeted_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .disable_operation_attempt_timeout()
        .build()
}

/// The SDK's own HTTPS client, for the budget's connector to wrap.
fn base_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

/// Five attempts rather than the SDK's three: a pass makes some twenty calls and fails if
/// any of them runs out of attempts, so when AWS throttles half of all calls, three attempts
/// (1 in 8 calls lost) almost never let a pass through, five (1 in 32) mostly do.
pub fn retries() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(5)
}

#[derive(Clone, Debug)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sts: aws_sdk_sts::Client,
    /// Every call the clients above made.
    pub calls: CallLog,
    /// Test-only: the fault point the counter carries, for [`Aws::checkpoint`].
    fault: Option<std::sync::Arc<fault::FaultPoint>>,
    /// What the clients were made from, to make clients for other accounts and regions
    /// that count into the same log.
    origin: Option<std::sync::Arc<Origin>>,
}

#[derive(Debug)]
struct Origin {
    config: SdkConfig,
    counter: CallCounter,
    budget: std::sync::Arc<budget::Budget>,
}

impl Aws {
    /// Credentials, region and `AWS_ENDPOINT_URL` the standard way, with [`client_policy`].
    pub async fn load_config() -> SdkConfig {
        client_policy(aws_config::defaults(aws_config::BehaviorVersion::latest()))
            .load()
            .await
    }

    /// Clients whose every call is also counted on `/metrics`.
    pub fn with_metrics(
        config: &SdkConfig,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self::with_counter(config, Self::metrics_counter(metrics))
    }

    /// The counter behind [`Aws::with_metrics`], to be given more hooks before use.
    pub fn metrics_counter(metrics: std::sync::Arc<crate::metrics::Metrics>) -> CallCounter {
        let on_call: calls::OnCall = std::sync::Arc::new(move |key| {
            metrics.aws_call(&key.service, &key.operation, key.outcome);
        });
        CallCounter::new(CallLog::default(), Some(on_call))
    }

    pub fn new(config: &SdkConfig) -> Self {
        Self::with_counter(config, CallCounter::new(CallLog::default(), None))
    }

    /// With a custom endpoint (an emulator), S3 is addressed path-style, since the bucket
    /// cannot be a subdomain of a loopback address.
    pub fn with_counter(config: &SdkConfig, counter: CallCounter) -> Self {
        Self::with_budget(config, counter, None)
    }

    /// As [`Aws::with_counter`]; with a budget, every request first waits for a token of
    /// the AWS bucket it draws on (see [`budget`]).
    pub fn with_budget(
        config: &SdkConfig,
        counter: CallCounter,
        budget: Option<std::sync::Arc<budget::Budget>>,
    ) -> Self {
        let counter = if budget.is_some() {
            counter.naming_operations()
        } else {
            counter
        };
        let base = budget.as_ref().map(|_| base_http_client());
        let http = |service: &'static str| {
            budget
                .as_ref()
                .zip(base.clone())
                .map(|(b, base)| b.client(service, base, ATTEMPT_TIMEOUT))
        };
        let timeouts = budget.as_ref().map(|_| budgeted_timeouts());
        macro_rules! client {
            ($krate:ident, $service:literal) => {{
                let mut builder =
                    $krate::config::Builder::from(config).interceptor(counter.clone());
                if let Some(client) = http($service) {
                    builder = builder.http_client(client);
                }
                if let Some(t) = timeouts.clone() {
                    builder = builder.timeout_config(t);
                }
                $krate::Client::from_conf(builder.build())
            }};
        }
        let path_style = config.endpoint_url().is_some();
        let s3 = {
            let mut builder = aws_sdk_s3::config::Builder::from(config)
                .force_path_style(path_style)
                .interceptor(counter.clone());
            if let Some(client) = http("s3") {
                builder = builder.http_client(client);
            }
            if let Some(t) = timeouts.clone() {
                builder = builder.timeout_config(t);
            }
            aws_sdk_s3::Client::from_conf(builder.build())
        };
        Self {
            s3,
            dynamodb: client!(aws_sdk_dynamodb, "dynamodb"),
            iam: client!(aws_sdk_iam, "iam"),
            logs: client!(aws_sdk_cloudwatchlogs, "logs"),
            ecs: client!(aws_sdk_ecs, "ecs"),
            elb: client!(aws_sdk_elasticloadbalancingv2, "elasticloadbalancing"),
            autoscaling: client!(aws_sdk_applicationautoscaling, "application-autoscaling"),
            cloudwatch: client!(aws_sdk_cloudwatch, "cloudwatch"),
            sts: client!(aws_sdk_sts, "sts"),
            calls: counter.log().clone(),
            fault: counter.fault(),
            origin: None,
        }
    }

    /// Remembers what these clients were made from (see [`Aws::origin`]).
    pub fn with_origin(
        mut self,
        config: SdkConfig,
        counter: CallCounter,
        budget: std::sync::Arc<budget::Budget>,
    ) -> Self {
        self.origin = Some(std::sync::Arc::new(Origin {
            config,
            counter,
            budget,
        }));
        self
    }

    /// The configuration, counter and budget the clients were made with, if remembered.
    pub fn origin(&self) -> Option<(&SdkConfig, &CallCounter, &std::sync::Arc<budget::Budget>)> {
        self.origin
            .as_deref()
            .map(|o| (&o.config, &o.counter, &o.budget))
    }

    /// Test-only: a named point of the process's own (not an AWS call) where an armed
    /// fault (`kill:before:<name>#N`) may stop or kill it, as at an AWS call.
    pub fn checkpoint(&self, name: &str) {
        if let Some(fault) = &self.fault {
            fault.check(fault::When::Before, "statehouse", name);
        }
    }

    /// The account the credentials belong to.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts", "GetCallerIdentity", e))?;
        identity.account.ok_or_else(|| {
            AwsError::new(
                "sts",
                "GetCallerIdentity",
                "MissingAccount",
                "the answer named no account",
                Retry::Permanent,
            )
        })
    }
}
