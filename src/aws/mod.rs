//! The AWS clients statehouse calls, built from one SDK configuration.

pub mod error;

use aws_config::SdkConfig;

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
}

impl Aws {
    /// Loads credentials, region and `AWS_ENDPOINT_URL` the standard way.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(&config)
    }

    /// With a custom endpoint (an emulator), S3 is addressed path-style, since the bucket
    /// cannot be a subdomain of a loopback address.
    pub fn new(config: &SdkConfig) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some());
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config.build()),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            autoscaling: aws_sdk_applicationautoscaling::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
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
