//! The `statehouse` command line: the server, the admin commands, and the API client.

mod bulk;
mod completions;
mod dev;
mod events;
pub mod exit;
mod fleet;
mod healthcheck;
mod keys;
mod output;
mod progress;
mod rollouts;
mod serve;
mod sizing;
mod sweep;
pub mod synthetic;
mod tenants;
mod wait;
mod worker;

use clap::{Parser, Subcommand};

use crate::{
    config::{DatabaseArgs, ServeArgs, WorkerCommandArgs},
    telemetry::LogFormat,
};

#[derive(Parser, Debug)]
#[command(
    name = "statehouse",
    version,
    about = "Isolated per-state application stacks on AWS, from one API"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "STATEHOUSE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API (applies migrations first).
    #[command(
        after_help = "Example:\n  DATABASE_URL=postgres://postgres@127.0.0.1/statehouse statehouse serve"
    )]
    Serve(ServeArgs),
    /// Run the reconciler alone (the same one `serve` runs unless --no-worker).
    #[command(after_help = "Example:\n  set -a; . .dev/platform.env; set +a; statehouse worker")]
    Worker(WorkerCommandArgs),
    /// Local development helpers.
    #[command(
        subcommand,
        after_help = "Example:\n  statehouse dev bootstrap --out .dev/platform.env"
    )]
    Dev(dev::DevCommand),
    /// Apply database migrations and exit.
    #[command(
        after_help = "Example:\n  DATABASE_URL=postgres://statehouse@db.internal/statehouse statehouse migrate"
    )]
    Migrate(DatabaseArgs),
    /// Print the OpenAPI document.
    #[command(after_help = "Example:\n  statehouse openapi > openapi/openapi.json")]
    Openapi,
    /// Manage API keys.
    #[command(
        subcommand,
        after_help = "Examples:\n  statehouse keys create --name ops --role admin\n  statehouse keys list\n  statehouse keys revoke ops"
    )]
    Keys(keys::KeysCommand),
    /// Find resources tagged for tenants that no longer live (exit 3 if any are left).
    #[command(
        after_help = "Examples:\n  statehouse sweep                         # list orphans; exit 0 if none, 3 if some\n  statehouse sweep --delete                # remove them, except buckets and tables\n  statehouse sweep --delete --include-data # also tables (after a final backup) and buckets\n  statehouse sweep --output json"
    )]
    Sweep(sweep::SweepArgs),
    /// Create, inspect, change and delete tenants through the API.
    Tenants(tenants::TenantsArgs),
    /// The fleet at a glance: tenants by status and health, cells, what needs attention.
    Fleet(fleet::FleetArgs),
    /// Ship a spec change (a new image) to many states in waves, and follow it.
    Rollouts(rollouts::RolloutsArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Exit 0 if the API answers 200 on /healthz (for container health checks).
    #[command(
        after_help = "Examples:\n  statehouse healthcheck\n  statehouse healthcheck --url http://127.0.0.1:9090/healthz"
    )]
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// Runs the command line and returns the process exit code.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    crate::telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Dev(command) => dev::run(command).await,
        Command::Migrate(args) => {
            let pool = crate::db::connect(&args.database_url, 1).await?;
            crate::db::MIGRATOR.run(&pool).await?;
            tracing::info!("database is up to date");
            Ok(())
        }
        Command::Openapi => {
            println!("{}", crate::http::openapi::document().to_pretty_json()?);
            Ok(())
        }
        Command::Keys(command) => keys::run(command).await,
        Command::Sweep(args) => sweep::run(args).await,
        Command::Tenants(args) => tenants::run(args).await,
        Command::Fleet(args) => fleet::run(args).await,
        Command::Rollouts(args) => rollouts::run(args).await,
        Command::Completions(args) => {
            completions::run(args);
            Ok(())
        }
        Command::Healthcheck(args) => healthcheck::run(args).await,
    }
}

/// A pool on `DATABASE_URL` with every migration applied.
async fn migrated_pool(args: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    use anyhow::Context;
    let pool = crate::db::connect(&args.database_url, args.db_max_connections)
        .await
        .context("cannot connect to the database at DATABASE_URL")?;
    crate::db::MIGRATOR
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(pool)
}
