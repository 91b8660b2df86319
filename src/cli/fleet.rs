//! `statehouse fleet`: the whole fleet at a glance, then what needs attention.

use clap::Args;

use super::{
    exit, output,
    tenants::{connect, ApiArgs},
};

#[derive(Args, Debug)]
#[command(after_help = format!("\
Examples:
  statehouse fleet
  statehouse fleet --output json | jq -r '.attention[] | \"\\(.name): \\(.reason)\"'

Counts are by status and by the health the worker last observed (every
STATEHOUSE_HEALTH_INTERVAL); `statehouse tenants health NAME` reads one tenant from AWS now.

{}", exit::HELP))]
pub struct FleetArgs {
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let ctx = connect(args.api)?;
    let fleet = ctx.client.fleet().await?;
    output::print(ctx.format, &fleet, output::fleet)
}
