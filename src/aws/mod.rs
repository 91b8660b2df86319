//! The AWS clients statehouse calls, built from one SDK configuration.

pub mod calls;
pub mod error;

use std::time::Duration;

use aws_config::{timeout::TimeoutConfig, SdkConfig};

pub use calls::{CallCounter, CallLog, CallScope};
pub use error::{AwsError, Retry};

#[derive(Clone, Debug)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
    pub sts: aws_sdk_sts::Client,
    /// Every call the clients above made.
    pub calls: CallLog,
}

impl Aws {
    /// Credentials, region and `AWS_ENDPOINT_URL` the standard way, with timeouts so a
    /// stalled connection becomes a retryable error instead of a stuck reconcile.
    pub async fn load_config() -> SdkConfig {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await
    }

    /// Clients whose every call is also counted on `/metrics`.
    pub fn with_metrics(
        config: &SdkConfig,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let on_call: calls::OnCall = std::sync::Arc::new(move |key| {
            metrics.aws_call(&key.service, &key.operation, key.outcome);
        });
        Self::with_counter(config, CallCounter::new(CallLog::default(), Some(on_call)))
    }

    pub fn new(config: &SdkConfig) -> Self {
        Self::with_counter(config, CallCounter::new(CallLog::default(), None))
    }

    /// With a custom endpoint (an emulator), S3 is addressed path-style, since the bucket
    /// cannot be a subdomain of a loopback address.
    pub fn with_counter(config: &SdkConfig, counter: CallCounter) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .interceptor(counter.clone());
        macro_rules! client {
            ($krate:ident) => {
                $krate::Client::from_conf(
                    $krate::config::Builder::from(config)
                        .interceptor(counter.clone())
                        .build(),
                )
            };
        }
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config.build()),
            dynamodb: client!(aws_sdk_dynamodb),
            iam: client!(aws_sdk_iam),
            logs: client!(aws_sdk_cloudwatchlogs),
            ecs: client!(aws_sdk_ecs),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            autoscaling: client!(aws_sdk_applicationautoscaling),
            sts: client!(aws_sdk_sts),
            calls: counter.log().clone(),
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
