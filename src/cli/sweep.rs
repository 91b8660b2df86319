//! `statehouse sweep`: finds (and with `--delete` removes) what the statehouse tags say
//! belongs to a tenant that no longer lives.

use std::{collections::HashSet, sync::Arc};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{
    exit::Exit,
    output::{self, Format},
};
use crate::{
    config::{BudgetArgs, DatabaseArgs, PlatformArgs},
    db,
    metrics::Metrics,
    reconcile::{
        inventory,
        sweep::{self, Findings, Leftover, DATA_KINDS},
    },
};

/// Exit code when orphans were found and left in place.
pub const ORPHANS_FOUND: u8 = 3;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Remove the orphans, in the order a tenant's deletion uses.
    #[arg(long)]
    delete: bool,
    /// With --delete, also remove orphaned tables (after a final backup) and buckets (every
    /// object version). Without it, data is listed but never removed.
    #[arg(long, requires = "delete")]
    include_data: bool,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// The cell whose cluster and load balancer are searched.
    #[arg(long, env = "STATEHOUSE_CELL", default_value = "cell-1")]
    cell: String,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    platform: PlatformArgs,
    #[command(flatten)]
    budget: BudgetArgs,
}

pub async fn run(args: SweepArgs) -> anyhow::Result<()> {
    let pool = super::migrated_pool(&args.database).await?;
    let budget = args.budget.settings()?;
    let (aws, platform) = super::worker::aws_and_platform(
        &args.platform,
        &args.cell,
        &budget,
        Arc::new(Metrics::default()),
    )
    .await?;
    let metrics = Arc::new(Metrics::default());
    let clients = crate::worker::clients::cell_clients(
        &aws,
        &platform.account,
        &platform.region,
        &platform.cells,
        &budget,
        metrics,
    )
    .await?;
    let mut findings = Findings::default();
    let mut report = Report::default();
    // Every cell of the platform: the one of STATEHOUSE_CELL, or each cell of the file.
    for cell in &platform.cells {
        let aws = clients.get(&cell.name).unwrap_or(&aws);
        sweep_cell(
            &args,
            &pool,
            aws,
            cell,
            &platform,
            &mut findings,
            &mut report,
        )
        .await?;
    }
    print(&args, &findings, &report)?;
    let left = if args.delete {
        report.kept.len() + report.failed.len()
    } else {
        findings.orphans.len()
    };
    if !report.failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} orphan(s) could not be removed; run the sweep again",
            report.failed.len()
        ));
    }
    if left > 0 {
        return Err(Exit::new(ORPHANS_FOUND, format!("{left} orphan(s) left in place")).into());
    }
    Ok(())
}

/// Inventories one cell and, with `--delete`, removes its orphans; adds to `findings`
/// and `report`.
async fn sweep_cell(
    args: &SweepArgs,
    pool: &sqlx::PgPool,
    aws: &crate::aws::Aws,
    cell: &crate::reconcile::platform::Cell,
    platform: &crate::reconcile::platform::Platform,
    findings: &mut Findings,
    report: &mut Report,
) -> anyhow::Result<()> {
    // The inventory is read before the tenants, so a tenant created meanwhile counts as
    // live and its new resources are never taken for orphans.
    let inv = inventory::take(aws, cell, platform.prefix.as_str())
        .await
        .with_context(|| format!("cannot list the resources of cell {}", cell.name))?;
    let live: HashSet<String> = db::tenants::live_names(pool).await?.into_iter().collect();
    let retained: HashSet<String> = db::tenants::retained_data(pool)
        .await?
        .into_iter()
        .collect();
    let found = sweep::classify(inv, &live, &retained);
    if args.delete {
        let suffix = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        // Deleting one revision deletes its whole family; the rest are then gone too.
        let mut families_deleted: HashSet<&str> = HashSet::new();
        for item in &found.orphans {
            if item.kind == "task_definition"
                && families_deleted.contains(sweep::task_family(&item.id))
            {
                report.deleted.push(item.clone());
                continue;
            }
            if DATA_KINDS.contains(&item.kind) && !args.include_data {
                report.kept.push(item.clone());
                continue;
            }
            // The state may have been created again since the inventory: its worker adopts
            // what carries its names, so nothing of it is removed any more.
            if db::tenants::is_live(pool, &item.tenant).await? {
                report.revived.push(item.clone());
                continue;
            }
            match sweep::delete(aws, cell, item, &suffix).await {
                Ok(_) => {
                    if item.kind == "task_definition" {
                        families_deleted.insert(sweep::task_family(&item.id));
                    }
                    report.deleted.push(item.clone());
                }
                Err(e) => report.failed.push((item.clone(), e.to_string())),
            }
        }
    }
    findings.orphans.extend(found.orphans);
    findings.retained.extend(found.retained);
    Ok(())
}

#[derive(Default)]
struct Report {
    deleted: Vec<Leftover>,
    kept: Vec<Leftover>,
    /// Left alone because their tenant was created again while the sweep ran.
    revived: Vec<Leftover>,
    failed: Vec<(Leftover, String)>,
}

fn print(args: &SweepArgs, f: &Findings, r: &Report) -> anyhow::Result<()> {
    if args.output == Format::Json {
        let failed: Vec<_> = r
            .failed
            .iter()
            .map(|(item, error)| json!({ "tenant": item.tenant, "kind": item.kind, "id": item.id, "error": error }))
            .collect();
        let doc = json!({
            "orphans": f.orphans,
            "retained": f.retained,
            "deleted": r.deleted,
            "kept": r.kept,
            "revived": r.revived,
            "failed": failed,
        });
        return output::json(&doc);
    }
    if f.orphans.is_empty() {
        println!("No orphans: every tagged resource belongs to a live tenant.");
    } else {
        println!("{:<24} {:<16} RESOURCE", "TENANT", "KIND");
        for o in &f.orphans {
            let state = if r.deleted.contains(o) {
                "  (deleted)"
            } else if r.kept.contains(o) {
                "  (data: kept, use --include-data)"
            } else if r.revived.contains(o) {
                "  (left: its tenant was created again)"
            } else if r.failed.iter().any(|(item, _)| item == o) {
                "  (FAILED)"
            } else {
                ""
            };
            println!("{:<24} {:<16} {}{state}", o.tenant, o.kind, o.id);
        }
    }
    for (item, error) in &r.failed {
        eprintln!("cannot remove {} {}: {error}", item.kind, item.id);
    }
    if !f.retained.is_empty() {
        println!(
            "\nRetained on purpose by deleted tenants (not orphans): {}",
            f.retained
                .iter()
                .map(|r| format!("{} {}", r.kind, r.id))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "\n{} orphan(s), {} deleted, {} kept, {} failed, {} retained.",
        f.orphans.len(),
        r.deleted.len(),
        r.kept.len(),
        r.failed.len(),
        f.retained.len()
    );
    Ok(())
}
