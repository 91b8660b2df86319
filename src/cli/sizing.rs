//! `statehouse tenants sizing NAME`, `statehouse tenants sizing apply NAME` and
//! `statehouse fleet sizing`: rightsizing for people and scripts.

use clap::{Args, Subcommand};

use super::{
    output::{self, field_lines, table, when},
    tenants::{print_row, ClientContext},
};
use crate::{
    domain::{spec::sizing::SizeDoc, state::StateSlug, tenant::Tenant},
    http::sizing::FleetSizing,
    sizing::{Change, Recommendation},
};

#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "\
Examples:
  statehouse tenants sizing texas                  # the recommendation, its evidence and cost
  statehouse tenants sizing apply texas            # make the recommended size the spec
  statehouse tenants sizing TX --output json | jq .sizing.recommendation.evidence

The rightsizer recommends once every STATEHOUSE_SIZING_INTERVAL (1h), from the last
STATEHOUSE_SIZING_LOOKBACK (14d) of CPU and memory. `spec.sizing.mode` says who applies it:
`recommend` a person (this command), `auto` the rightsizer within its guards."
)]
pub struct SizingArgs {
    /// Slug or postal code.
    #[arg(required = true)]
    name: Option<StateSlug>,
    #[command(subcommand)]
    command: Option<SizingCommand>,
}

#[derive(Subcommand, Debug)]
enum SizingCommand {
    /// Apply the tenant's recommendation now: its cpu and memory become the spec.
    Apply {
        /// Slug or postal code.
        name: StateSlug,
    },
}

pub async fn run(ctx: &ClientContext, args: SizingArgs) -> anyhow::Result<()> {
    match (args.command, args.name) {
        (Some(SizingCommand::Apply { name }), _) => {
            let tenant = ctx.client.apply_sizing(name.as_str()).await?;
            eprintln!(
                "{name} is to run at {} CPU / {} MiB (generation {}); the worker deploys it.",
                tenant.spec.cpu, tenant.spec.memory, tenant.generation
            );
            print_row(ctx, &tenant)
        }
        (None, Some(name)) => {
            let tenant = ctx.client.get(name.as_str()).await?.tenant;
            output::print(ctx.format, &tenant, detail)
        }
        (None, None) => Err(super::exit::Exit::usage("name a state (see --help)").into()),
    }
}

fn size(s: SizeDoc) -> String {
    format!("{} CPU / {} MiB", s.cpu, s.memory)
}

fn dollars(v: f64) -> String {
    let v = v + 0.0;
    if v < 0.0 {
        format!("-${:.2}", -v)
    } else {
        format!("${v:.2}")
    }
}

fn tasks(n: u32) -> String {
    format!("{n} task{}", if n == 1 { "" } else { "s" })
}

/// The counts whose key is one of `keys`, in that order, as "1 up, 2 down".
fn counted(counts: &std::collections::BTreeMap<String, i64>, keys: &[&str]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            counts
                .get(*k)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {k}"))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// One tenant's sizing: the spec's mode and bounds, the recommendation with its evidence
/// and cost, what was done with it, and the last change.
pub fn detail(t: &Tenant) -> String {
    let spec = &t.spec;
    let mut fields = vec![
        ("Tenant", t.name.clone()),
        ("Mode", spec.sizing.mode.as_str().to_owned()),
        (
            "Size",
            size(SizeDoc {
                cpu: spec.cpu,
                memory: spec.memory,
            }),
        ),
        (
            "Bounds",
            format!("{} to {}", size(spec.sizing.min), size(spec.sizing.max)),
        ),
    ];
    match &t.sizing.recommendation {
        Some(r) => fields.extend(recommendation(r)),
        None => fields.push(("Recommended", "none yet".into())),
    }
    if let Some(a) = &t.sizing.action {
        fields.push(("Action", a.clone()));
    }
    if let Some(until) = t.sizing.frozen_until {
        fields.push((
            "Frozen until",
            format!(
                "{}: {}",
                when(until),
                t.sizing.frozen_reason.as_deref().unwrap_or("-")
            ),
        ));
    }
    if let Some(c) = &t.sizing.last_change {
        fields.push(("Last change", change(c)));
    }
    field_lines(&fields).trim_end().to_owned()
}

fn recommendation(r: &Recommendation) -> Vec<(&'static str, String)> {
    let e = &r.evidence;
    let mut fields = vec![(
        "Recommended",
        match (r.cpu, r.memory) {
            (Some(cpu), Some(memory)) => format!(
                "{} ({})",
                size(SizeDoc { cpu, memory }),
                r.direction.as_str()
            ),
            _ => "nothing (not enough data)".into(),
        },
    )];
    fields.push(("Reason", r.reason.clone()));
    fields.push((
        "Evidence",
        format!(
            "{} CPU and {} memory samples over {:.1} h of a {:.0}-day lookback",
            e.cpu_samples,
            e.memory_samples,
            e.window.hours,
            e.window.lookback_hours / 24.0
        ),
    ));
    if let (Some(cpu), Some(mem)) = (e.cpu_p90, e.memory_peak) {
        fields.push((
            "Used",
            format!(
                "CPU p90 {:.0} units ({:.0}%), memory peak {:.0} MiB ({:.0}%)",
                cpu.amount, cpu.percent_of_current, mem.amount, mem.percent_of_current
            ),
        ));
    }
    if let Some(oom) = &e.out_of_memory {
        fields.push(("Out of memory", format!("{}: {}", oom.task_arn, oom.reason)));
    }
    let c = &r.monthly_cost;
    fields.push((
        "Monthly cost",
        match c.recommended {
            Some(rec) => format!(
                "{} now, {} recommended ({})",
                dollars(c.current),
                dollars(rec),
                tasks(c.tasks)
            ),
            None => format!("{} now ({})", dollars(c.current), tasks(c.tasks)),
        },
    ));
    fields.push(("Computed", when(r.computed_at)));
    fields
}

fn change(c: &Change) -> String {
    format!(
        "{} {} → {} ({}, {} by {}, generation {}){}",
        when(c.at),
        size(c.from),
        size(c.to),
        c.direction.as_str(),
        c.trigger.as_str(),
        c.actor,
        c.generation,
        c.outcome
            .as_ref()
            .map_or_else(|| ": deploying".into(), |o| format!(": {o}"))
    )
}

/// The fleet: totals, then a line per tenant.
pub fn fleet(f: &FleetSizing) -> String {
    let t = &f.totals;
    let net = if t.net <= 0.0 {
        format!("net saving {}", dollars(-t.net))
    } else {
        format!("net increase {}", dollars(t.net))
    };
    let mut out = field_lines(&[
        ("Tenants", f.tenants.len().to_string()),
        (
            "By status",
            counted(
                &f.counts,
                &["recommended", "not_enough_data", "pending", "off"],
            ),
        ),
        ("Recommended", counted(&f.counts, &["up", "down", "none"])),
        ("Monthly now", dollars(t.current)),
        ("If applied", dollars(t.recommended)),
        (
            "Savings",
            format!(
                "{} a month from downsizes, {} more for upsizes: {net}",
                dollars(t.savings),
                dollars(t.increase),
            ),
        ),
        (
            "Prices",
            format!(
                "${}/vCPU-hour, ${}/GB-hour, {} h a month",
                f.prices.vcpu_hour, f.prices.gb_hour, f.prices.hours_per_month
            ),
        ),
    ]);
    out.push('\n');
    out.push_str(&table(
        &[
            "TENANT",
            "MODE",
            "STATUS",
            "CURRENT",
            "RECOMMENDED",
            "TASKS",
            "NOW/MO",
            "REC/MO",
            "SAVINGS",
            "ACTION",
        ],
        &f.tenants,
        |r| {
            vec![
                r.name.clone(),
                r.mode.as_str().to_owned(),
                r.status.clone(),
                format!("{}/{}", r.current.cpu, r.current.memory),
                r.recommended
                    .map_or_else(|| "-".into(), |s| format!("{}/{}", s.cpu, s.memory)),
                r.tasks.to_string(),
                dollars(r.monthly_cost),
                dollars(r.recommended_monthly_cost),
                dollars(r.savings),
                output::or_dash(r.action.as_deref()),
            ]
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Line {
        #[command(flatten)]
        sizing: SizingArgs,
    }

    fn parse(args: &[&str]) -> Result<SizingArgs, clap::Error> {
        Line::try_parse_from(std::iter::once("sizing").chain(args.iter().copied()))
            .map(|l| l.sizing)
    }

    #[test]
    fn a_name_shows_and_apply_then_a_name_applies() {
        let shown = parse(&["TX"]).unwrap();
        assert!(shown.command.is_none());
        assert_eq!(shown.name.unwrap().as_str(), "texas");

        let applied = parse(&["apply", "texas"]).unwrap();
        assert!(applied.name.is_none());
        match applied.command {
            Some(SizingCommand::Apply { name }) => assert_eq!(name.as_str(), "texas"),
            None => panic!("apply parsed as a show"),
        }
    }

    #[test]
    fn a_missing_or_unknown_state_is_refused_before_any_request() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["apply"]).is_err());
        assert!(parse(&["atlantis"]).is_err());
        assert!(parse(&["apply", "atlantis"]).is_err());
        assert!(parse(&["texas", "apply"]).is_err());
    }
}
