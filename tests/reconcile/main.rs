//! Resource modules against the AWS emulator, over the wire.

#[path = "../support/moto.rs"]
mod moto;

#[path = "../support/faults/mod.rs"]
mod proxy;

mod accounts;
mod bucket;
mod budget;
mod crash;
mod drift;
mod faults;
mod harness;
mod health;
mod leases;
mod postgres_restart;
mod process;
mod resync;
mod rollout_crash;
mod rollouts;
mod sizing;
mod sweep;
mod worker;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use statehouse::aws::Aws;

pub const REGION: &str = "us-west-2";

/// Clients pointed at a private emulator.
pub async fn aws_for(moto: &moto::Moto) -> Aws {
    Aws::new(&config_at(&moto.endpoint).await)
}

/// The production timeouts and retries, with the emulator's (or a proxy's) address.
pub async fn config_at(endpoint: &str) -> aws_config::SdkConfig {
    statehouse::aws::client_policy(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}
