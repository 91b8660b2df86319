//! `statehouse tenants events NAME [--follow]`: a state's history, oldest first.

use std::{collections::HashSet, time::Duration};

use super::{
    output::{self, Format},
    tenants::ClientContext,
};
use crate::{db::events::Event, domain::state::StateSlug, domain::tenant::TenantStatus};

const POLL_EVERY: Duration = Duration::from_secs(1);
/// Events fetched per poll while following; more than a pass writes in a second.
const FOLLOW_PAGE: u32 = 100;

pub async fn run(
    ctx: &ClientContext,
    name: StateSlug,
    limit: u32,
    follow: bool,
) -> anyhow::Result<()> {
    let mut events = ctx.client.events(name.as_str(), limit).await?;
    events.reverse();
    if !follow {
        return output::print(ctx.format, events.as_slice(), |e| {
            output::events_table(e, true)
        });
    }
    let mut seen: HashSet<i64> = HashSet::new();
    print_new(ctx, &events, &mut seen, true)?;
    tokio::select! {
        result = poll(ctx, name, &mut seen) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Prints new events until the tenant is deleted (or gone).
async fn poll(ctx: &ClientContext, name: StateSlug, seen: &mut HashSet<i64>) -> anyhow::Result<()> {
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let tenant = ctx.client.get(name.as_str()).await;
        let mut events = ctx.client.events(name.as_str(), FOLLOW_PAGE).await?;
        events.reverse();
        print_new(ctx, &events, seen, false)?;
        match tenant {
            Ok(t) if t.tenant.status == TenantStatus::Deleted => return Ok(()),
            Err(err) if err.status() == Some(404) => return Ok(()),
            Err(err) => return Err(err.into()),
            Ok(_) => {}
        }
    }
}

/// Events not printed before, in id order; ids are compared as a set because a later
/// commit can carry a smaller id.
fn print_new(
    ctx: &ClientContext,
    events: &[Event],
    seen: &mut HashSet<i64>,
    with_header: bool,
) -> anyhow::Result<()> {
    let fresh: Vec<Event> = events
        .iter()
        .filter(|e| seen.insert(e.id))
        .cloned()
        .collect();
    match ctx.format {
        Format::Json => {
            for event in &fresh {
                println!("{}", serde_json::to_string(event)?);
            }
        }
        Format::Table if with_header || !fresh.is_empty() => {
            println!("{}", output::events_table(&fresh, with_header));
        }
        Format::Table => {}
    }
    Ok(())
}
