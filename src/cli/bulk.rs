//! Creating many tenants at once: bounded concurrency, one progress display, and a summary.
//! Existing tenants are skipped, so a rerun after a partial failure finishes the job.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    time::Instant,
};

use futures::{stream, StreamExt};
use serde::Serialize;

use super::{
    exit::{self, Exit},
    output::{self, Format},
    progress::{Display, Line},
    tenants::{outcome_result, ClientContext, CreateArgs},
    wait::{self, Goal},
};
use crate::{
    client::ClientError,
    domain::{
        state::StateSlug,
        tenant::{Tenant, TenantStatus},
    },
};

/// How one tenant of a bulk create ended.
#[derive(Debug, Serialize)]
pub struct BulkResult {
    pub name: String,
    /// `created`, `exists` (skipped), `ready`, `failed`, `timeout` or `error`.
    pub result: &'static str,
    /// The tenant's status when we stopped following it.
    pub status: Option<TenantStatus>,
    pub endpoint: Option<String>,
    pub error: Option<String>,
    /// The exit code this tenant alone would give.
    pub exit_code: u8,
    pub seconds: f64,
    /// The tenant as the API last served it.
    pub tenant: Option<Tenant>,
}

pub async fn run(ctx: &ClientContext, args: CreateArgs) -> anyhow::Result<()> {
    if args.display_name.is_some() {
        return Err(Exit::usage("--display-name names one tenant; create it on its own").into());
    }
    let names = names(&args)?;
    if names.is_empty() {
        return Err(Exit::usage("no state names to create").into());
    }
    let width = names.iter().map(|n| n.as_str().len()).max().unwrap_or(0);
    let display = Display::new(width);
    display.println(&format!(
        "Creating {} tenant{}, {} at a time{}",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        args.concurrency,
        if args.wait.wait {
            ", until each is ready or fails"
        } else {
            ""
        }
    ));
    let (args, display) = (&args, &display);
    let mut results: Vec<(usize, BulkResult)> = stream::iter(names.into_iter().enumerate())
        .map(|(i, name)| async move { (i, one(ctx, args, display, name).await) })
        .buffer_unordered(usize::from(args.concurrency))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<BulkResult> = results.into_iter().map(|(_, r)| r).collect();
    report(ctx, &results)?;
    let failed: Vec<&BulkResult> = results.iter().filter(|r| r.exit_code != 0).collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => {
            let code = if failed.iter().all(|r| r.exit_code == first.exit_code) {
                first.exit_code
            } else {
                exit::FAILED
            };
            Err(Exit::new(
                code,
                format!(
                    "{} of {} tenants did not succeed",
                    failed.len(),
                    results.len()
                ),
            )
            .into())
        }
    }
}

/// The names asked for, in order, each once.
fn names(args: &CreateArgs) -> anyhow::Result<Vec<StateSlug>> {
    let mut names: Vec<StateSlug> = if args.all_states {
        StateSlug::all().collect()
    } else if let Some(path) = &args.from_file {
        read_names(path)?
    } else {
        args.names.clone()
    };
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(*n));
    Ok(names)
}

/// One name a line; blank lines and `#` comments are skipped. Every bad line is reported.
fn read_names(path: &Path) -> anyhow::Result<Vec<StateSlug>> {
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(path)
                .map_err(|e| Exit::usage(format!("cannot read {}: {e}", path.display())))?,
        )
    };
    let mut names = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| Exit::usage(format!("cannot read {}: {e}", path.display())))?;
        let name = line.split('#').next().unwrap_or_default().trim();
        if name.is_empty() {
            continue;
        }
        match StateSlug::parse(name) {
            Ok(slug) => names.push(slug),
            Err(err) => bad.push(format!("  line {}: {err}", n + 1)),
        }
    }
    if bad.is_empty() {
        Ok(names)
    } else {
        Err(Exit::usage(format!(
            "{} has names that are not states:\n{}",
            path.display(),
            bad.join("\n")
        ))
        .into())
    }
}

async fn one(
    ctx: &ClientContext,
    args: &CreateArgs,
    display: &Display,
    name: StateSlug,
) -> BulkResult {
    let started = Instant::now();
    let mut line = display.line(name.as_str());
    line.update("creating", "");
    let body = args.body(name);
    let key = uuid::Uuid::now_v7().to_string();
    let (existed, tenant) = match ctx.client.create(&body, &key).await {
        Ok(t) => (false, t),
        Err(err) if err.status() == Some(409) => match ctx.client.get(name.as_str()).await {
            Ok(current) if current.tenant.status != TenantStatus::Deleting => {
                (true, current.tenant)
            }
            Ok(_) | Err(_) => return error(&line, name, started, err),
        },
        Err(err) => return error(&line, name, started, err),
    };
    if !args.wait.wait {
        let result = if existed { "exists" } else { "created" };
        line.finish(true, result, tenant.status.as_str());
        return finished(name, result, started, Some(tenant), None);
    }
    if existed && tenant.status == TenantStatus::Failed {
        // A rerun after a failure asks for another pass rather than reporting the old failure.
        line.update("exists", "failed before; asking for another pass");
        if let Err(err) = ctx.client.reconcile(name.as_str()).await {
            return error(&line, name, started, err);
        }
    } else if existed {
        line.update("exists", "already created; following it");
    }
    let outcome = match wait::wait(
        &ctx.client,
        name.as_str(),
        Goal::Ready,
        args.wait.timeout,
        &mut line,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(err) => return error(&line, name, started, err),
    };
    let tenant = outcome.tenant().cloned();
    match outcome_result(name, &outcome, args.wait.timeout) {
        Ok(()) => {
            let endpoint = tenant.as_ref().and_then(|t| t.endpoint.clone());
            let result = if existed { "exists" } else { "ready" };
            line.finish(true, result, endpoint.as_deref().unwrap_or_default());
            finished(name, result, started, tenant, None)
        }
        Err(failure) => {
            let result = if failure.code == exit::TIMEOUT {
                "timeout"
            } else {
                "failed"
            };
            line.finish(false, result, &failure.message);
            finished(name, result, started, tenant, Some(failure))
        }
    }
}

fn error(line: &Line, name: StateSlug, started: Instant, err: ClientError) -> BulkResult {
    let failure = Exit::from(err);
    line.finish(false, "error", &failure.message);
    finished(name, "error", started, None, Some(failure))
}

fn finished(
    name: StateSlug,
    result: &'static str,
    started: Instant,
    tenant: Option<Tenant>,
    failure: Option<Exit>,
) -> BulkResult {
    BulkResult {
        name: name.as_str().to_owned(),
        result,
        status: tenant.as_ref().map(|t| t.status),
        endpoint: tenant.as_ref().and_then(|t| t.endpoint.clone()),
        exit_code: failure.as_ref().map_or(0, |f| f.code),
        error: failure.map(|f| f.message),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        tenant,
    }
}

/// The summary: a table on stdout (counts on stderr), or the results as JSON.
fn report(ctx: &ClientContext, results: &[BulkResult]) -> anyhow::Result<()> {
    if ctx.format == Format::Json {
        return output::json(results);
    }
    println!(
        "{}",
        output::table(
            &["NAME", "RESULT", "STATUS", "SECONDS", "ENDPOINT / ERROR"],
            results,
            |r| vec![
                r.name.clone(),
                r.result.to_owned(),
                r.status.map_or("-", TenantStatus::as_str).to_owned(),
                format!("{:.1}", r.seconds),
                output::or_dash(r.error.as_deref().or(r.endpoint.as_deref())),
            ]
        )
    );
    let count = |kinds: &[&str]| results.iter().filter(|r| kinds.contains(&r.result)).count();
    eprintln!(
        "{} created, {} already existed, {} failed, {} timed out, {} errors",
        count(&["created", "ready"]),
        count(&["exists"]),
        count(&["failed"]),
        count(&["timeout"]),
        count(&["error"]),
    );
    Ok(())
}
