//! `statehouse fleet`: the whole fleet at a glance, then what needs attention.

use clap::{Args, Subcommand};

use super::{
    exit, output,
    tenants::{connect, ApiArgs},
};

#[derive(Args, Debug)]
#[command(after_help = format!("\
Examples:
  statehouse fleet
  statehouse fleet --output json | jq -r '.attention[] | \"\\(.name): \\(.reason)\"'
  statehouse fleet sizing

Counts are by status and by the health the worker last observed (every
STATEHOUSE_HEALTH_INTERVAL); `statehouse tenants health NAME` reads one tenant from AWS now.

{}", exit::HELP))]
pub struct FleetArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: Option<FleetCommand>,
}

#[derive(Subcommand, Debug)]
enum FleetCommand {
    /// Every tenant's current and recommended size and monthly cost, with the fleet's
    /// totals and savings.
    #[command(after_help = "\
Examples:
  statehouse fleet sizing
  statehouse fleet sizing --output json | jq '.totals'

Costs are at the configured Fargate prices (STATEHOUSE_FARGATE_VCPU_HOUR,
STATEHOUSE_FARGATE_GB_HOUR; us-east-1 Linux/x86 list prices by default), 730 hours a month.")]
    Sizing,
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let ctx = connect(args.api)?;
    match args.command {
        None => {
            let fleet = ctx.client.fleet().await?;
            output::print(ctx.format, &fleet, output::fleet)
        }
        Some(FleetCommand::Sizing) => {
            let sizing = ctx.client.fleet_sizing().await?;
            output::print(ctx.format, &sizing, super::sizing::fleet)
        }
    }
}
