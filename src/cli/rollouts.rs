//! `statehouse rollouts …`: ship a spec change to many states in waves, and follow it.

use std::{collections::HashMap, io::IsTerminal, time::Duration};

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{
    exit::{self, Exit},
    output,
    progress::{Display, Line},
    tenants::{connect, ApiArgs, ClientContext, SpecFlags},
};
use crate::{
    client::ClientError,
    config::parse_duration,
    db::rollouts::{Rollout, RolloutEvent, Target},
    domain::rollout::{RolloutState, TargetState},
};

const HELP: &str = "\
Examples:
  statehouse rollouts create --image humangov/app:1.6.0 --wait
  statehouse rollouts create --image humangov/app:1.6.0 --canary vermont --waves 1,5,15,rest \\
      --canary-bake 30m --bake 10m --min-requests 500 --wait
  statehouse rollouts create --image humangov/app:1.6.0 --only texas,ohio --dry-run
  statehouse rollouts list --state running
  statehouse rollouts get 0193…   # each tenant's state, timings and reason
  statehouse rollouts abort 0193… --rollback

Exit codes: as for `statehouse tenants` (see its --help); with --wait, 0 only when the
rollout succeeded, 1 when it ended otherwise (rolled back, rollback failed, aborted), 7
when --timeout passed first.";

#[derive(Args, Debug)]
#[command(after_help = HELP)]
pub struct RolloutsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: RolloutsCommand,
}

#[derive(Subcommand, Debug)]
enum RolloutsCommand {
    /// Start a rollout of a spec change (e.g. a new image) to every selected tenant.
    #[command(after_help = "\
The first wave is the canary. Left out, the strategy defaults to a canary of 1, waves of
1, 5, 15 and the rest, 10 tenants at once, a 30m bake after the canary and 10m after each
later tenant, a halt at the first failure with every changed tenant rolled back, and a 20m
deploy timeout. Durations: 90s, 5m, 1h 30m.

Examples:
  statehouse rollouts create --image humangov/app:1.6.0 --wait
  statehouse rollouts create --image humangov/app:1.6.0 --exclude alaska,hawaii --manual
  statehouse rollouts create --cpu 512 --memory 1024 --only texas --canary 1 --waves 1 --dry-run")]
    Create(Box<CreateArgs>),
    /// List rollouts, newest first.
    List {
        /// Only rollouts in this state (running, paused, succeeded, rolled_back, …).
        #[arg(long, value_parser = parse_state)]
        state: Option<RolloutState>,
    },
    /// Show a rollout: its state, wave, and each tenant's state with timings and reason.
    Get { id: String },
    /// Show a rollout's history: who did what, on which trigger.
    Events { id: String },
    /// Start nothing new until resumed (tenants under way carry on).
    Pause { id: String },
    /// Go on with a paused rollout; failed tenants are tried again (fix the cause first).
    Resume { id: String },
    /// End the bakes under way now, or approve the next waves of a --manual rollout.
    Promote { id: String },
    /// Stop a rollout, putting back what it changed (--rollback) or not (--keep).
    Abort {
        id: String,
        /// Put the previous spec back on every tenant it changed, newest wave first.
        #[arg(long, conflicts_with = "keep", required_unless_present = "keep")]
        rollback: bool,
        /// Leave every tenant as it is now.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args, Debug)]
struct CreateArgs {
    #[command(flatten)]
    spec: SpecFlags,
    /// Only these states (slugs or postal codes, comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Not these states.
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Only tenants in these cells.
    #[arg(long, value_delimiter = ',')]
    cells: Vec<String>,
    /// How many tenants go first, or which (e.g. 2, or vermont,wyoming).
    #[arg(long)]
    canary: Option<String>,
    /// Every wave's size, the canary's first; `rest` last takes what is left (1,5,15,rest).
    #[arg(long, conflicts_with = "growth")]
    waves: Option<String>,
    /// Instead of --waves: each wave this many times the one before.
    #[arg(long)]
    growth: Option<f64>,
    /// Tenants deploying or baking at once.
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// How long each tenant after the canary stays healthy before it counts.
    #[arg(long)]
    bake: Option<String>,
    /// How long the canary stays healthy before the next wave.
    #[arg(long)]
    canary_bake: Option<String>,
    /// Requests a tenant must serve during its bake.
    #[arg(long)]
    min_requests: Option<u64>,
    /// Failed tenants tolerated before the rollout halts.
    #[arg(long)]
    max_failures: Option<u32>,
    /// What a halt does: rollback (default) or pause.
    #[arg(long, value_parser = ["rollback", "pause"])]
    on_failure: Option<String>,
    /// Wait for `promote` after the canary.
    #[arg(long)]
    manual: bool,
    /// How long a tenant may take to be ready with its new spec.
    #[arg(long)]
    deploy_timeout: Option<String>,
    /// Do not make the change the fleet defaults, even if it succeeds over the whole fleet.
    #[arg(long)]
    no_update_defaults: bool,
    /// Show the plan and store nothing.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// Follow the rollout to its end: a line per wave, a bar per tenant.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (exit code 7); the rollout goes on.
    #[arg(long, requires = "wait", default_value = "6h", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_state(input: &str) -> Result<RolloutState, String> {
    RolloutState::ALL
        .into_iter()
        .find(|s| s.as_str() == input)
        .ok_or_else(|| {
            let all: Vec<&str> = RolloutState::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "`{input}` is not a rollout state: use one of {}",
                all.join(", ")
            )
        })
}

impl CreateArgs {
    fn body(&self) -> Result<Value, Exit> {
        let patch = self.spec.members(&[]);
        if patch.is_empty() {
            return Err(Exit::usage(
                "say what to change: --image, --cpu, --memory, --env, … (see --help)",
            ));
        }
        let mut selector = Map::new();
        for (key, list) in [
            ("only", &self.only),
            ("exclude", &self.exclude),
            ("cells", &self.cells),
        ] {
            if !list.is_empty() {
                selector.insert(key.into(), json!(list));
            }
        }
        let mut strategy = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                strategy.insert(key.to_owned(), v);
            }
        };
        put("canary", self.canary.as_deref().map(canary));
        put("waves", self.waves.as_deref().map(waves).transpose()?);
        put("growth", self.growth.map(Value::from));
        put("max_concurrent", self.max_concurrent.map(Value::from));
        put("bake", self.bake.clone().map(Value::from));
        put("canary_bake", self.canary_bake.clone().map(Value::from));
        put("min_requests", self.min_requests.map(Value::from));
        put("max_failures", self.max_failures.map(Value::from));
        put("on_failure", self.on_failure.clone().map(Value::from));
        put("approval", self.manual.then(|| Value::from("manual")));
        put(
            "deploy_timeout",
            self.deploy_timeout.clone().map(Value::from),
        );
        put(
            "update_defaults",
            self.no_update_defaults.then_some(Value::Bool(false)),
        );
        Ok(json!({ "patch": patch, "selector": selector, "strategy": strategy }))
    }
}

fn canary(text: &str) -> Value {
    match text.trim().parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => json!(text.split(',').map(str::trim).collect::<Vec<_>>()),
    }
}

fn waves(text: &str) -> Result<Value, Exit> {
    text.split(',')
        .map(str::trim)
        .map(|w| match w.parse::<u64>() {
            Ok(n) => Ok(Value::from(n)),
            Err(_) if w == "rest" => Ok(Value::from("rest")),
            Err(_) => Err(Exit::usage(format!(
                "--waves: `{w}` is not a size: give numbers, and `rest` last (e.g. 1,5,15,rest)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::from)
}

pub async fn run(args: RolloutsArgs) -> anyhow::Result<()> {
    let ctx = connect(args.api)?;
    let client = &ctx.client;
    match args.command {
        RolloutsCommand::Create(create) => run_create(&ctx, *create).await,
        RolloutsCommand::List { state } => {
            let all = client.rollouts(state).await?;
            output::print(ctx.format, &all, |r| list_table(r))
        }
        RolloutsCommand::Get { id } => show(&ctx, &client.rollout(&id).await?),
        RolloutsCommand::Events { id } => {
            let mut all: Vec<RolloutEvent> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = client.rollout_events(&id, cursor.as_deref()).await?;
                let last_page = page.items.is_empty();
                all.extend(page.items);
                match page.next_cursor {
                    Some(next) if !last_page => cursor = Some(next),
                    _ => break,
                }
            }
            output::print(ctx.format, &all, |e| events_table(e))
        }
        RolloutsCommand::Pause { id } => show(&ctx, &client.rollout_op(&id, "pause", None).await?),
        RolloutsCommand::Resume { id } => {
            show(&ctx, &client.rollout_op(&id, "resume", None).await?)
        }
        RolloutsCommand::Promote { id } => {
            show(&ctx, &client.rollout_op(&id, "promote", None).await?)
        }
        RolloutsCommand::Abort { id, rollback, .. } => {
            let body = json!({ "rollback": rollback });
            show(&ctx, &client.rollout_op(&id, "abort", Some(&body)).await?)
        }
    }
}

fn show(ctx: &ClientContext, rollout: &Rollout) -> anyhow::Result<()> {
    output::print(ctx.format, rollout, detail)
}

async fn run_create(ctx: &ClientContext, args: CreateArgs) -> anyhow::Result<()> {
    let body = args.body()?;
    let key = uuid::Uuid::now_v7().to_string();
    let answer = ctx.client.create_rollout(&body, args.dry_run, &key).await?;
    if args.dry_run {
        return output::print(ctx.format, &answer, plan_text);
    }
    let rollout: Rollout = serde_json::from_value(answer).map_err(|e| {
        anyhow::Error::from(ClientError::Protocol {
            url: "/v1/rollouts".into(),
            reason: e.to_string(),
        })
    })?;
    if !args.wait {
        eprintln!(
            "Rollout {} is {}; follow it with `statehouse rollouts get {}`, or use --wait.",
            rollout.id,
            rollout.state.as_str(),
            rollout.id
        );
        return show(ctx, &rollout);
    }
    follow(ctx, rollout, args.timeout).await
}

/// `--wait`: a line per wave as it starts, a bar per tenant, and the rollout as it ended.
async fn follow(ctx: &ClientContext, first: Rollout, timeout: Duration) -> anyhow::Result<()> {
    let id = first.id.to_string();
    let targets = first.tenants.clone().unwrap_or_default();
    let width = targets
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let display = Display::new(width);
    display.println(&format!(
        "rollout {id}: {} tenants in {} waves, {} skipped",
        targets.len(),
        first.waves,
        first.skipped.len()
    ));
    let mut lines: HashMap<String, Line> = HashMap::new();
    let mut shown_wave = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rollout = first;
    loop {
        let targets = rollout.tenants.clone().unwrap_or_default();
        // The tenants of the waves shown so far first, so a wave's line follows the end of
        // the one before it.
        for t in &targets {
            if let Some(line) = lines.get_mut(&t.name) {
                line.update(t.state.as_str(), &bar(t));
            }
        }
        while shown_wave < rollout.current_wave && shown_wave < rollout.waves {
            shown_wave += 1;
            let names: Vec<&str> = targets
                .iter()
                .filter(|t| t.wave == shown_wave)
                .map(|t| t.name.as_str())
                .collect();
            let label = if shown_wave == 1 { " (canary)" } else { "" };
            display.println(&format!(
                "wave {shown_wave}/{}{label}: {}",
                rollout.waves,
                names.join(", ")
            ));
            for t in targets.iter().filter(|t| t.wave == shown_wave) {
                let mut line = display.line(&t.name);
                line.update(t.state.as_str(), &bar(t));
                lines.insert(t.name.clone(), line);
            }
        }
        if !rollout.state.is_active() {
            // Plain lines have said each tenant's end already; spinners stop with a mark.
            let spinners = std::io::stderr().is_terminal();
            for t in targets.iter().filter(|_| spinners) {
                if let Some(line) = lines.get(&t.name) {
                    let ok = matches!(t.state, TargetState::Succeeded | TargetState::Reverted);
                    line.finish(ok, t.state.as_str(), t.reason.as_deref().unwrap_or(""));
                }
            }
            display.println(&format!(
                "rollout {id} {}: {}",
                rollout.state.as_str(),
                rollout.reason.as_deref().unwrap_or("")
            ));
            show(ctx, &rollout)?;
            return if rollout.state == RolloutState::Succeeded {
                Ok(())
            } else {
                Err(Exit::new(
                    exit::FAILED,
                    format!("rollout {id} {}", rollout.state.as_str()),
                )
                .into())
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Exit::new(
                exit::TIMEOUT,
                format!(
                    "gave up waiting after {timeout:?}; rollout {id} goes on ({})",
                    rollout.state.as_str()
                ),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rollout = ctx.client.rollout(&id).await?;
    }
}

/// How far one tenant is, as a bar of four steps (written, ready, baked, done) and its
/// reason.
fn bar(t: &Target) -> String {
    let steps = match t.state {
        TargetState::Pending | TargetState::Cancelled => 0,
        TargetState::Deploying | TargetState::Reverting => 1,
        TargetState::Baking => 2,
        _ => 4,
    };
    let filled = "█".repeat(steps * 2);
    let empty = "░".repeat(8 - steps * 2);
    let why = match (&t.failure, t.state) {
        (Some(failure), TargetState::Reverting | TargetState::Reverted) => {
            format!(
                "failed: {failure}; then {}",
                t.reason.as_deref().unwrap_or("")
            )
        }
        _ => t.reason.clone().unwrap_or_default(),
    };
    format!("{filled}{empty}  {why}")
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("-".into(), |t| t.format("%H:%M:%S").to_string())
}

fn progress(r: &Rollout) -> String {
    r.progress
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_table(rollouts: &[Rollout]) -> String {
    output::table(
        &["ID", "STATE", "WAVE", "CREATED", "BY", "TENANTS"],
        rollouts,
        |r| {
            vec![
                r.id.to_string(),
                r.state.as_str().to_owned(),
                format!("{}/{}", r.current_wave.min(r.waves), r.waves),
                r.created_at.format("%Y-%m-%d %H:%M").to_string(),
                r.created_by.clone(),
                progress(r),
            ]
        },
    )
}

fn detail(r: &Rollout) -> String {
    let mut out = format!(
        "rollout     {}\nstate       {}\nreason      {}\nwave        {}/{}\npatch       {}\ncreated     {} by {}\nprogress    {}\n",
        r.id,
        r.state.as_str(),
        output::or_dash(r.reason.as_deref()),
        r.current_wave.min(r.waves),
        r.waves,
        r.patch,
        r.created_at.format("%Y-%m-%d %H:%M:%S"),
        r.created_by,
        progress(r),
    );
    for s in &r.skipped {
        out += &format!(
            "skipped     {} ({})\n",
            s.name,
            crate::domain::rollout::skip_text(s.reason)
        );
    }
    let targets = r.tenants.clone().unwrap_or_default();
    out.push('\n');
    out += &output::table(
        &[
            "TENANT", "WAVE", "STATE", "STARTED", "READY", "FINISHED", "REASON",
        ],
        &targets,
        |t| {
            vec![
                t.name.clone(),
                t.wave.to_string(),
                t.state.as_str().to_owned(),
                when(t.started_at),
                when(t.ready_at),
                when(t.finished_at),
                match &t.failure {
                    Some(failure) if t.state != TargetState::Failed => {
                        format!(
                            "failed: {failure}; then {}",
                            output::or_dash(t.reason.as_deref())
                        )
                    }
                    _ => output::or_dash(t.reason.as_deref()),
                },
            ]
        },
    );
    out
}

fn events_table(events: &[RolloutEvent]) -> String {
    output::table(
        &["AT", "ACTOR", "TRIGGER", "ACTION", "TENANT", "MESSAGE"],
        events,
        |e| {
            vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.actor.clone(),
                e.trigger.clone(),
                e.action.clone(),
                output::or_dash(e.tenant_name.as_deref()),
                e.message.clone(),
            ]
        },
    )
}

fn plan_text(plan: &Value) -> String {
    let mut out = String::from("dry run: nothing was stored\n");
    for wave in plan["waves"].as_array().into_iter().flatten() {
        let names: Vec<&str> = wave["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        out += &format!("wave {}: {}\n", wave["wave"], names.join(", "));
    }
    for s in plan["skipped"].as_array().into_iter().flatten() {
        out += &format!(
            "skipped {} ({})\n",
            s["name"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("?")
        );
    }
    out += &format!("strategy {}", plan["strategy"]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_request_the_api_takes() {
        assert_eq!(canary("2"), json!(2));
        assert_eq!(canary("vermont, wyoming"), json!(["vermont", "wyoming"]));
        assert_eq!(waves("1,5,15,rest").unwrap(), json!([1, 5, 15, "rest"]));
        assert_eq!(waves("1,lots").unwrap_err().code, exit::USAGE);
    }

    /// Each `statehouse rollouts …` command in a CI example, one per string, with the
    /// pipeline's image variable standing for an image.
    fn commands(yaml: &str) -> Vec<Vec<String>> {
        let image = regex::Regex::new(r#""(\$\{\{[^}]*\}\}|\$IMAGE)""#).unwrap();
        let joined = yaml.replace(">-\n", "").replace('\n', " \n");
        let mut found = Vec::new();
        for (i, _) in joined.match_indices("statehouse rollouts") {
            let mut text = String::new();
            for line in joined[i..].split('\n') {
                let line = line.trim();
                let next_item = line.starts_with("- ") || line == "-";
                let next_key = line.contains(':') && !line.starts_with("--");
                if !text.is_empty() && (next_item || next_key) {
                    break;
                }
                text.push_str(line);
                text.push(' ');
            }
            let text = text.split(" > ").next().unwrap_or_default();
            let text = image.replace_all(text, "humangov/app:1.6.0");
            found.push(
                text.split_whitespace()
                    .map(|w| w.trim_matches('"').to_owned())
                    .collect(),
            );
        }
        found
    }

    #[test]
    fn the_ci_examples_run_commands_this_cli_takes() {
        use clap::Parser;
        for (file, yaml) in [
            (
                "github-actions.yml",
                include_str!("../../examples/ci/github-actions.yml"),
            ),
            (
                "gitlab-ci.yml",
                include_str!("../../examples/ci/gitlab-ci.yml"),
            ),
        ] {
            let commands = commands(yaml);
            assert_eq!(commands.len(), 2, "{file}: {commands:?}");
            assert!(
                commands.iter().any(|c| c.contains(&"--wait".to_owned())),
                "{file}"
            );
            for command in commands {
                if let Err(e) = super::super::Cli::try_parse_from(&command) {
                    panic!("{file}: {command:?}: {e}");
                }
            }
        }
    }
}
