//! Resource modules against the AWS emulator, over the wire.

#[path = "../support/moto.rs"]
mod moto;

mod bucket;
mod harness;
mod worker;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use statehouse::aws::Aws;

pub const REGION: &str = "us-west-2";

/// Clients pointed at a private emulator.
pub async fn aws_for(moto: &moto::Moto) -> Aws {
    Aws::new(&config_for(moto).await)
}

pub async fn config_for(moto: &moto::Moto) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}
