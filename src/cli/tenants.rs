//! `statehouse tenants …`: the API's tenant operations for people and scripts.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{
    bulk,
    exit::{self, Exit},
    output::{self, Format},
    progress::Display,
    wait::{self, Goal, Outcome},
};
use crate::{
    client::{config, Client},
    config::parse_duration,
    domain::{
        state::StateSlug,
        tenant::{DataPolicy, Tenant, TenantStatus},
    },
    health::HealthStatus,
};

const TENANTS_HELP: &str = "\
Examples:
  export STATEHOUSE_API_URL=http://127.0.0.1:8080 STATEHOUSE_TOKEN=$(cat .dev/admin-token)
  statehouse tenants create california texas ohio --wait
  statehouse tenants list --status failed --output json | jq -r '.[].name'

The API and key come from --api-url/--token, else STATEHOUSE_API_URL/STATEHOUSE_TOKEN, else
the config file ($STATEHOUSE_CONFIG, else $XDG_CONFIG_HOME/statehouse/config.toml, else
~/.config/statehouse/config.toml; `api_url` and `token` at the top, or under
[profiles.NAME] for --profile NAME), else http://127.0.0.1:8080 and no key.
Progress goes to stderr; results go to stdout.
";

#[derive(Args, Debug)]
#[command(after_help = format!("{TENANTS_HELP}\n{}", exit::HELP))]
pub struct TenantsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TenantsCommand,
}

/// Where the API is, how to authenticate, and how to print.
#[derive(Args, Debug)]
pub(super) struct ApiArgs {
    /// Base URL of the statehouse API.
    #[arg(long, global = true, env = "STATEHOUSE_API_URL")]
    api_url: Option<String>,
    /// API key (bearer token). Prefer the environment or the config file to a flag.
    #[arg(long, global = true, env = "STATEHOUSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A [profiles.NAME] section of the config file.
    #[arg(long, global = true, env = "STATEHOUSE_PROFILE")]
    profile: Option<String>,
    /// `table` for people, `json` (the API's own shape) for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
}

/// Spec fields; any left out keep their current value (update) or the default (create).
#[derive(Args, Debug, Default)]
pub(super) struct SpecFlags {
    /// Image of the `app` container.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Image of the `nginx` container.
    #[arg(long, value_name = "IMAGE")]
    nginx_image: Option<String>,
    /// Task CPU units (256, 512, 1024, …).
    #[arg(long)]
    cpu: Option<u32>,
    /// Task memory in MiB, a size Fargate allows for --cpu.
    #[arg(long)]
    memory: Option<u32>,
    /// Tasks to run.
    #[arg(long)]
    desired: Option<u32>,
    /// Fewest tasks autoscaling may leave.
    #[arg(long)]
    min: Option<u32>,
    /// Most tasks autoscaling may start.
    #[arg(long)]
    max: Option<u32>,
    /// An environment variable for the app, NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Who applies the rightsizer's recommendations: off, recommend (a person) or auto.
    #[arg(long, value_name = "MODE", value_parser = ["off", "recommend", "auto"])]
    sizing: Option<String>,
    /// The smallest size the rightsizer may choose, CPU/MEMORY (e.g. 256/512).
    #[arg(long, value_name = "CPU/MEMORY", value_parser = parse_size)]
    sizing_min: Option<(u32, u32)>,
    /// The largest size the rightsizer may choose, CPU/MEMORY (e.g. 2048/8192).
    #[arg(long, value_name = "CPU/MEMORY", value_parser = parse_size)]
    sizing_max: Option<(u32, u32)>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Follow the tenant until it is ready (or deleted) or fails, showing its progress.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 90s, 10m); exit code 7.
    #[arg(long, requires = "wait", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Subcommand, Debug)]
enum TenantsCommand {
    /// Create tenants: one, several, every state, or a list from a file.
    #[command(after_help = "\
With one name, an existing tenant is a conflict (exit 4). With several names, --all-states or
--from-file, tenants are created --concurrency at a time, existing ones are skipped (so a rerun
picks up where it stopped), and a summary table follows; the exit code is non-zero if any
failed.

Examples:
  statehouse tenants create california
  statehouse tenants create NY --image humangov/app:1.4.0 --desired 2 --env FEATURE_X=on --wait
  statehouse tenants create california texas ohio --wait
  statehouse tenants create --all-states --wait --concurrency 16
  statehouse tenants create --from-file states.txt --wait --output json   # one name a line, # comments
  grep -v '^#' states.txt | statehouse tenants create --from-file - --wait")]
    Create(CreateArgs),
    /// List tenants (every page), optionally only those in one status.
    #[command(after_help = "\
Examples:
  statehouse tenants list
  statehouse tenants list --status failed
  statehouse tenants list --health degraded
  statehouse tenants list --output json | jq -r '.[] | select(.status == \"ready\") | .endpoint'")]
    List {
        /// Only tenants in this status (without it: every tenant not deleted).
        #[arg(long, value_parser = parse_status)]
        status: Option<TenantStatus>,
        /// Only tenants whose observed health is this: healthy, degraded, down or unknown.
        #[arg(long, value_parser = parse_health)]
        health: Option<HealthStatus>,
        /// Tenants fetched per request.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
        page_size: u32,
    },
    /// Show one tenant: spec, status, endpoint and conditions.
    #[command(after_help = "\
Examples:
  statehouse tenants get california
  statehouse tenants get CA --output json | jq .conditions")]
    Get {
        /// Slug or postal code.
        name: StateSlug,
    },
    /// Change a tenant's spec or display name (safe against concurrent changes).
    #[command(after_help = "\
Reads the tenant's ETag and sends the change with If-Match; if the tenant changed in between,
it reads it again and retries once, then gives up with exit code 4.

Examples:
  statehouse tenants update texas --image humangov/app:1.5.0 --wait
  statehouse tenants update texas --env FEATURE_X=on --unset-env OLD_FLAG
  statehouse tenants update texas --min 2 --desired 2 --max 6
  statehouse tenants update texas --sizing auto --sizing-min 256/512 --sizing-max 2048/8192")]
    Update {
        /// Slug or postal code.
        name: StateSlug,
        #[command(flatten)]
        spec: SpecFlags,
        /// Remove an environment variable (repeatable).
        #[arg(long, value_name = "NAME")]
        unset_env: Vec<String>,
        /// A new display name.
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a tenant; its bucket and table are kept unless --purge.
    #[command(after_help = "\
Examples:
  statehouse tenants delete ohio --wait
  statehouse tenants delete ohio --purge --yes --wait   # also deletes the data, after a final backup")]
    Delete {
        /// Slug or postal code.
        name: StateSlug,
        /// Delete the tenant's bucket and table too (a final DynamoDB backup is taken first).
        #[arg(long)]
        purge: bool,
        /// Confirm --purge without a prompt (required when not on a terminal).
        #[arg(long, requires = "purge")]
        yes: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show a state's history: who did what, and every step and error of the worker.
    #[command(after_help = "\
Examples:
  statehouse tenants events california
  statehouse tenants events california --follow        # until Ctrl-C or the tenant is deleted
  statehouse tenants events california --output json   # oldest first; with --follow, one event per line")]
    Events {
        /// Slug or postal code.
        name: StateSlug,
        /// How many of the latest events to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Keep printing new events as they happen.
        #[arg(long)]
        follow: bool,
    },
    /// Show a tenant's health read from AWS now: tasks, deployment, targets, alarms,
    /// the last minutes' metrics and the service's last events.
    #[command(after_help = "\
The API reads AWS at most once every 10 seconds per tenant; `health` on `tenants get` is the
worker's last observation (every STATEHOUSE_HEALTH_INTERVAL).

Examples:
  statehouse tenants health texas
  statehouse tenants health TX --output json | jq '.health.alarms[] | select(.state == \"ALARM\")'")]
    Health {
        /// Slug or postal code.
        name: StateSlug,
    },
    /// Show a tenant's sizing recommendation (evidence, cost), or apply it.
    Sizing(super::sizing::SizingArgs),
    /// Ask the worker to reconcile a tenant now (e.g. to retry a failed one).
    #[command(after_help = "\
Examples:
  statehouse tenants reconcile idaho
  statehouse tenants reconcile idaho && statehouse tenants events idaho --follow")]
    Reconcile {
        /// Slug or postal code.
        name: StateSlug,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// States to create: slugs or postal codes.
    #[arg(value_name = "NAME")]
    pub names: Vec<StateSlug>,
    /// Every state, DC and inhabited territory (56 tenants).
    #[arg(long, conflicts_with_all = ["names", "from_file"])]
    pub all_states: bool,
    /// Read names from a file, one a line (`#` starts a comment); `-` is stdin.
    #[arg(long, value_name = "PATH", conflicts_with = "names")]
    pub from_file: Option<PathBuf>,
    /// Tenants created and followed at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Display name (only when creating one tenant).
    #[arg(long)]
    pub display_name: Option<String>,
    /// The cell to place the tenants in (e.g. one in a dedicated account); by default the
    /// first cell with room the state may use.
    #[arg(long)]
    pub cell: Option<String>,
    #[command(flatten)]
    spec: SpecFlags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

impl CreateArgs {
    /// The request that creates `name`: its spec holds only what was given.
    pub fn body(&self, name: StateSlug) -> Value {
        let mut body = json!({ "name": name.as_str(), "spec": self.spec.members(&[]) });
        if let Some(display_name) = &self.display_name {
            body["display_name"] = Value::from(display_name.clone());
        }
        if let Some(cell) = &self.cell {
            body["cell"] = Value::from(cell.clone());
        }
        body
    }
}

impl SpecFlags {
    /// The spec members given by flags; `env` holds the `--env` values and, for a merge
    /// patch, a null for each variable in `unset_env`.
    pub(super) fn members(&self, unset_env: &[String]) -> Map<String, Value> {
        let mut spec = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                spec.insert(key.to_owned(), value);
            }
        };
        put("app_image", self.image.clone().map(Value::from));
        put("nginx_image", self.nginx_image.clone().map(Value::from));
        put("cpu", self.cpu.map(Value::from));
        put("memory", self.memory.map(Value::from));
        put("desired_count", self.desired.map(Value::from));
        put("min_count", self.min.map(Value::from));
        put("max_count", self.max.map(Value::from));
        let env: Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .chain(unset_env.iter().map(|k| (k.clone(), Value::Null)))
            .collect();
        if !env.is_empty() {
            spec.insert("env".to_owned(), Value::Object(env));
        }
        let size =
            |s: Option<(u32, u32)>| s.map(|(cpu, memory)| json!({"cpu": cpu, "memory": memory}));
        let sizing: Map<String, Value> = [
            ("mode", self.sizing.clone().map(Value::from)),
            ("min", size(self.sizing_min)),
            ("max", size(self.sizing_max)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
        if !sizing.is_empty() {
            spec.insert("sizing".to_owned(), Value::Object(sizing));
        }
        spec
    }
}

fn parse_size(input: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{input}` is not CPU/MEMORY (e.g. 512/1024)");
    let (cpu, memory) = input.split_once('/').ok_or_else(bad)?;
    Ok((
        cpu.trim().parse().map_err(|_| bad())?,
        memory.trim().parse().map_err(|_| bad())?,
    ))
}

fn parse_env(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{input}` is not NAME=VALUE")),
    }
}

fn parse_status(input: &str) -> Result<TenantStatus, String> {
    TenantStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == input)
        .ok_or_else(|| {
            let all: Vec<&str> = TenantStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("`{input}` is not a status: use one of {}", all.join(", "))
        })
}

/// What every client command needs: the API client and the output format.
pub struct ClientContext {
    pub client: Client,
    pub format: Format,
}

pub async fn run(args: TenantsArgs) -> anyhow::Result<()> {
    let ctx = connect(args.api)?;
    match args.command {
        TenantsCommand::Create(create) => {
            if create.names.len() > 1 || create.all_states || create.from_file.is_some() {
                bulk::run(&ctx, create).await
            } else {
                create_one(&ctx, create).await
            }
        }
        TenantsCommand::List {
            status,
            health,
            page_size,
        } => {
            let tenants = ctx.client.list_all(status, health, page_size).await?;
            if ctx.format == Format::Table && tenants.is_empty() {
                eprintln!("No tenants.");
                return Ok(());
            }
            output::print(ctx.format, tenants.as_slice(), output::tenants_table)
        }
        TenantsCommand::Get { name } => {
            let tenant = ctx.client.get(name.as_str()).await?.tenant;
            print_detail(&ctx, &tenant)
        }
        TenantsCommand::Update {
            name,
            spec,
            unset_env,
            display_name,
            wait,
        } => update(&ctx, name, &spec, &unset_env, display_name, &wait).await,
        TenantsCommand::Delete {
            name,
            purge,
            yes,
            wait,
        } => delete(&ctx, name, purge, yes, &wait).await,
        TenantsCommand::Events {
            name,
            limit,
            follow,
        } => super::events::run(&ctx, name, limit, follow).await,
        TenantsCommand::Health { name } => {
            let reading = ctx.client.health(name.as_str()).await?;
            output::print(ctx.format, &reading, output::live_health)
        }
        TenantsCommand::Sizing(args) => super::sizing::run(&ctx, args).await,
        TenantsCommand::Reconcile { name } => {
            let tenant = ctx.client.reconcile(name.as_str()).await?;
            eprintln!(
                "Reconcile of {name} requested; it is {} now. Follow it with `statehouse tenants events {name} --follow`.",
                tenant.status.as_str()
            );
            print_row(&ctx, &tenant)
        }
    }
}

fn parse_health(input: &str) -> Result<HealthStatus, String> {
    HealthStatus::parse(input).ok_or_else(|| {
        let all: Vec<&str> = HealthStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("`{input}` is not a health: use one of {}", all.join(", "))
    })
}

pub(super) fn connect(api: ApiArgs) -> anyhow::Result<ClientContext> {
    let file = match config::config_path() {
        Some(path) => config::load(&path).map_err(|e| Exit::usage(format!("{e:#}")))?,
        None => config::ConfigFile::default(),
    };
    let endpoint = config::resolve(api.api_url, api.token, api.profile.as_deref(), file)
        .map_err(|e| Exit::usage(e.to_string()))?;
    let token = endpoint.token.ok_or_else(|| {
        Exit::new(
            exit::AUTH,
            "no API key: pass --token, set STATEHOUSE_TOKEN, or put `token = \"…\"` in ~/.config/statehouse/config.toml",
        )
    })?;
    let client = Client::new(&endpoint.api_url, &token).context("cannot set up the HTTP client")?;
    Ok(ClientContext {
        client,
        format: api.output,
    })
}

pub fn print_row(ctx: &ClientContext, tenant: &Tenant) -> anyhow::Result<()> {
    output::print(ctx.format, tenant, |t| {
        output::tenants_table(std::slice::from_ref(t))
    })
}

fn print_detail(ctx: &ClientContext, tenant: &Tenant) -> anyhow::Result<()> {
    output::print(ctx.format, tenant, output::tenant_detail)
}

async fn create_one(ctx: &ClientContext, args: CreateArgs) -> anyhow::Result<()> {
    let Some(name) = args.names.first().copied() else {
        return Err(Exit::usage(
            "name a state to create, or use --all-states or --from-file (see --help)",
        )
        .into());
    };
    let body = args.body(name);
    let key = uuid::Uuid::now_v7().to_string();
    let tenant = ctx.client.create(&body, &key).await?;
    if !args.wait.wait {
        eprintln!(
            "Created {name}; it is {}. Follow it with `statehouse tenants get {name}`, or use --wait.",
            tenant.status.as_str()
        );
        return print_row(ctx, &tenant);
    }
    follow(ctx, name, Goal::Ready, args.wait.timeout).await
}

/// `--wait` for one tenant: progress on stderr, the tenant as it ended on stdout.
async fn follow(
    ctx: &ClientContext,
    name: StateSlug,
    goal: Goal,
    timeout: Duration,
) -> anyhow::Result<()> {
    let display = Display::new(name.as_str().len());
    let mut line = display.line(name.as_str());
    let outcome = wait::wait(&ctx.client, name.as_str(), goal, timeout, &mut line).await?;
    let result = outcome_result(name, &outcome, timeout);
    match &result {
        Ok(()) => {
            let detail = match outcome.tenant() {
                Some(t) if goal == Goal::Ready => t.endpoint.clone().unwrap_or_default(),
                _ => String::new(),
            };
            let status = if goal == Goal::Ready {
                "ready"
            } else {
                "deleted"
            };
            line.finish(true, status, &detail);
        }
        Err(exit) => {
            let status = outcome.tenant().map_or("unknown", |t| t.status.as_str());
            line.finish(false, status, &exit.message);
        }
    }
    if let Some(tenant) = outcome.tenant() {
        print_row(ctx, tenant)?;
    }
    result.map_err(Into::into)
}

/// Success, or the exit that a tenant's end means.
pub fn outcome_result(name: StateSlug, outcome: &Outcome, timeout: Duration) -> Result<(), Exit> {
    match outcome {
        Outcome::Reached(_) => Ok(()),
        Outcome::Failed(t) => Err(Exit::new(
            exit::FAILED,
            format!(
                "tenant {name} failed: {}",
                t.last_error.as_deref().unwrap_or("see its conditions")
            ),
        )),
        Outcome::Deleting(_) => Err(Exit::new(
            exit::CONFLICT,
            format!("tenant {name} is being deleted"),
        )),
        Outcome::TimedOut(t) => Err(Exit::new(
            exit::TIMEOUT,
            format!(
                "gave up waiting for {name} after {}: {}",
                humanize(timeout),
                t.as_ref().map_or_else(
                    || "no answer".to_owned(),
                    |t| format!("{} ({})", t.status.as_str(), output::current_step(t))
                )
            ),
        )),
    }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 120.0 {
        format!("{secs}s")
    } else {
        format!("{}m", (secs / 60.0).round())
    }
}

async fn update(
    ctx: &ClientContext,
    name: StateSlug,
    spec: &SpecFlags,
    unset_env: &[String],
    display_name: Option<String>,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let spec_patch = spec.members(unset_env);
    let mut patch = Map::new();
    if !spec_patch.is_empty() {
        patch.insert("spec".to_owned(), Value::Object(spec_patch));
    }
    if let Some(display_name) = display_name {
        patch.insert("display_name".to_owned(), Value::from(display_name));
    }
    if patch.is_empty() {
        return Err(Exit::usage(
            "nothing to change: give at least one of --image, --cpu, --env, … (see --help)",
        )
        .into());
    }
    let tenant = ctx
        .client
        .update(name.as_str(), &Value::Object(patch))
        .await?;
    if !wait.wait {
        eprintln!(
            "Updated {name} (generation {}); it is {}.",
            tenant.generation,
            tenant.status.as_str()
        );
        return print_row(ctx, &tenant);
    }
    follow(ctx, name, Goal::Ready, wait.timeout).await
}

async fn delete(
    ctx: &ClientContext,
    name: StateSlug,
    purge: bool,
    yes: bool,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    if purge && !yes {
        confirm_purge(name)?;
    }
    let policy = if purge {
        DataPolicy::Purge
    } else {
        DataPolicy::Retain
    };
    let tenant = ctx.client.delete(name.as_str(), policy).await?;
    if !wait.wait {
        eprintln!(
            "Deleting {name} ({}); the worker removes its resources. Use --wait to follow it.",
            if purge {
                "data purged"
            } else {
                "bucket and table retained"
            }
        );
        return print_row(ctx, &tenant);
    }
    follow(ctx, name, Goal::Deleted, wait.timeout).await
}

/// `--purge` destroys data: on a terminal the name must be typed; elsewhere `--yes` is needed.
fn confirm_purge(name: StateSlug) -> Result<(), Exit> {
    let refuse = || {
        Exit::usage(format!(
            "--purge deletes {name}'s bucket and table for good; add --yes to confirm"
        ))
    };
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(refuse());
    }
    eprint!(
        "This deletes {name}'s bucket and table (after a final backup). Type `{name}` to confirm: "
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|_| refuse())?;
    if answer.trim() == name.as_str() {
        Ok(())
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Line {
        #[command(flatten)]
        spec: SpecFlags,
    }

    fn members(args: &[&str]) -> Result<Value, clap::Error> {
        Line::try_parse_from(std::iter::once("update").chain(args.iter().copied()))
            .map(|l| Value::Object(l.spec.members(&[])))
    }

    #[test]
    fn sizing_flags_become_only_the_sizing_members_they_name() {
        assert_eq!(
            members(&["--sizing", "auto"]).unwrap(),
            json!({"sizing": {"mode": "auto"}})
        );
        assert_eq!(
            members(&["--sizing-min", "256/512", "--sizing-max", "2048/8192"]).unwrap(),
            json!({"sizing": {"min": {"cpu": 256, "memory": 512}, "max": {"cpu": 2048, "memory": 8192}}})
        );
        assert_eq!(members(&["--cpu", "512"]).unwrap(), json!({"cpu": 512}));
    }

    #[test]
    fn a_bad_sizing_flag_is_refused_before_any_request() {
        for bad in [
            ["--sizing", "sometimes"],
            ["--sizing-min", "256"],
            ["--sizing-max", "big/8192"],
        ] {
            let e = members(&bad).unwrap_err().to_string();
            assert!(
                e.contains("invalid value") && e.contains(bad[0]),
                "{bad:?}: {e}"
            );
        }
    }
}
