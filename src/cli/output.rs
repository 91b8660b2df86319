//! How the client commands print: aligned tables for people, the API's own JSON for scripts.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

use crate::{
    db::events::Event,
    domain::tenant::{Condition, Tenant, TenantStatus},
    health::{live::LiveHealth, Health},
    http::fleet::Fleet,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for reading.
    Table,
    /// The API's JSON, for scripts (`jq`).
    Json,
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as JSON, or the text `table` renders, depending on `format`.
pub fn print<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => json(value),
        Format::Table => {
            println!("{}", table(value));
            Ok(())
        }
    }
}

/// One row per item, its columns padded to their widest cell; the last column is not padded.
pub fn table<T>(headers: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:width$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

pub fn tenants_table(tenants: &[Tenant]) -> String {
    table(
        &[
            "NAME",
            "STATUS",
            "HEALTH",
            "GENERATION",
            "APP IMAGE",
            "ENDPOINT",
        ],
        tenants,
        |t| {
            vec![
                t.name.clone(),
                t.status.as_str().to_owned(),
                t.health.status.as_str().to_owned(),
                format!("{}/{}", t.observed_generation, t.generation),
                t.spec.app_image.clone(),
                or_dash(t.endpoint.as_deref()),
            ]
        },
    )
}

/// One tenant, field by field, then its conditions.
pub fn tenant_detail(t: &Tenant) -> String {
    let spec = &t.spec;
    let env = if spec.env.is_empty() {
        "-".to_owned()
    } else {
        spec.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let fields = [
        ("Name", format!("{} ({})", t.name, t.postal_code)),
        ("Display name", t.display_name.clone()),
        ("Status", t.status.as_str().to_owned()),
        (
            "Generation",
            format!("{} (observed {})", t.generation, t.observed_generation),
        ),
        ("Endpoint", or_dash(t.endpoint.as_deref())),
        (
            "Health",
            format!("{}: {}", t.health.status.as_str(), t.health.reason),
        ),
        ("App image", spec.app_image.clone()),
        ("Nginx image", spec.nginx_image.clone()),
        ("Size", format!("{} cpu, {} MiB", spec.cpu, spec.memory)),
        (
            "Tasks",
            format!(
                "desired {}, min {}, max {}",
                spec.desired_count, spec.min_count, spec.max_count
            ),
        ),
        ("Env", env),
        ("Cell", t.cell.clone()),
        ("Created", when(t.created_at)),
        ("Updated", when(t.updated_at)),
        ("Last error", or_dash(t.last_error.as_deref())),
    ];
    let mut out: String = fields
        .iter()
        .map(|(k, v)| format!("{:<14}{v}\n", format!("{k}:")))
        .collect();
    if !t.conditions.is_empty() {
        out.push('\n');
        out.push_str(&conditions_table(&t.conditions));
        out.push('\n');
    }
    out.trim_end().to_owned()
}

fn conditions_table(conditions: &[Condition]) -> String {
    table(
        &["CONDITION", "STATUS", "REASON", "MESSAGE"],
        conditions,
        |c| {
            vec![
                c.kind.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        },
    )
}

fn number(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(
        || "-".to_owned(),
        |v| format!("{}{unit}", (v * 10.0).round() / 10.0),
    )
}

/// The health fields of a snapshot or reading, one a line.
fn health_fields(h: &Health) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("Health", h.status.as_str().to_owned()),
        ("Reason", h.reason.clone()),
        ("Since", h.since.map_or_else(|| "-".into(), when)),
        ("Observed", h.observed_at.map_or_else(|| "-".into(), when)),
    ];
    if let Some(t) = h.tasks {
        fields.push((
            "Tasks",
            format!(
                "{} running, {} pending, {} desired",
                t.running, t.pending, t.desired
            ),
        ));
    }
    if let Some(d) = &h.deployment {
        fields.push((
            "Deployment",
            format!(
                "{} {} ({} of {} running, {} failed tasks)",
                d.id,
                d.rollout_state.as_deref().unwrap_or("-"),
                d.running,
                d.desired,
                d.failed_tasks
            ),
        ));
    }
    if let Some(t) = h.targets {
        fields.push((
            "Targets",
            format!(
                "{} healthy, {} unhealthy, {} initial, {} draining",
                t.healthy, t.unhealthy, t.initial, t.draining
            ),
        ));
    }
    if let Some(m) = &h.metrics {
        let text = match &m.unavailable {
            Some(why) => format!("unavailable: {why}"),
            None => format!(
                "{} requests, {} 5xx, cpu {}, memory {} (last {} min)",
                number(m.requests, ""),
                number(m.errors_5xx, ""),
                number(m.cpu_percent, "%"),
                number(m.memory_percent, "%"),
                m.seconds / 60
            ),
        };
        fields.push(("Metrics", text));
    }
    fields
}

pub fn field_lines(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{:<14}{v}\n", format!("{k}:")))
        .collect()
}

/// A live health reading: the roll-up, the alarms, then the service's events.
pub fn live_health(r: &LiveHealth) -> String {
    let mut fields = vec![("Tenant", r.tenant.clone()), ("Read at", when(r.read_at))];
    fields.extend(health_fields(&r.health));
    let mut out = field_lines(&fields);
    if !r.health.alarms.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["ALARM", "STATE", "SINCE"],
            &r.health.alarms,
            |a| {
                vec![
                    a.name.clone(),
                    a.state.clone(),
                    a.since.map_or_else(|| "-".into(), when),
                ]
            },
        ));
        out.push('\n');
    }
    let unavailable: Vec<String> = r
        .series
        .iter()
        .filter_map(|(k, s)| s.unavailable.as_ref().map(|why| format!("{k}: {why}")))
        .collect();
    if !unavailable.is_empty() {
        out.push_str(&format!(
            "\nUnavailable series:\n  {}\n",
            unavailable.join("\n  ")
        ));
    }
    if !r.events.is_empty() {
        out.push('\n');
        out.push_str(&table(&["SERVICE EVENT", "MESSAGE"], &r.events, |e| {
            vec![e.at.map_or_else(|| "-".into(), when), e.message.clone()]
        }));
    }
    out.trim_end().to_owned()
}

/// The fleet summary: counts, cells, then what needs attention.
pub fn fleet(f: &Fleet) -> String {
    let counts = |m: &std::collections::BTreeMap<String, i64>| {
        m.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let or_none = |s: String| if s.is_empty() { "none".to_owned() } else { s };
    let mut out = field_lines(&[
        ("Tenants", f.tenants.to_string()),
        ("By status", or_none(counts(&f.by_status))),
        ("By health", or_none(counts(&f.by_health))),
    ]);
    out.push('\n');
    out.push_str(&table(
        &["CELL", "USED", "FREE", "CAPACITY"],
        &f.cells,
        |c| {
            vec![
                c.name.clone(),
                c.used.to_string(),
                c.free.map_or_else(|| "-".into(), |n| n.to_string()),
                c.capacity.map_or_else(|| "-".into(), |n| n.to_string()),
            ]
        },
    ));
    out.push_str("\n\n");
    if f.attention.is_empty() {
        out.push_str("Nothing needs attention.");
    } else {
        out.push_str(&table(
            &["NEEDS ATTENTION", "PROBLEM", "STATUS", "SINCE", "REASON"],
            &f.attention,
            |a| {
                vec![
                    a.name.clone(),
                    a.problem.clone(),
                    a.status.as_str().to_owned(),
                    a.since.map_or_else(|| "-".into(), when),
                    a.reason.clone(),
                ]
            },
        ));
    }
    out
}

/// Events in the order given (callers pass them oldest first).
pub fn events_table(events: &[Event], with_header: bool) -> String {
    let text = table(&["TIME", "ACTOR", "ACTION", "MESSAGE"], events, event_row);
    if with_header {
        text
    } else {
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    }
}

fn event_row(e: &Event) -> Vec<String> {
    vec![
        when(e.at),
        e.actor.clone(),
        e.action.clone(),
        e.message.clone(),
    ]
}

/// What the worker is doing for a tenant, for progress displays: the most recent change
/// among its conditions, or the error that failed it.
pub fn current_step(t: &Tenant) -> String {
    match t.status {
        TenantStatus::Failed => t.last_error.clone().unwrap_or_else(|| "failed".to_owned()),
        TenantStatus::Pending => "waiting for a worker".to_owned(),
        TenantStatus::Ready => t.endpoint.clone().unwrap_or_else(|| "ready".to_owned()),
        _ => t
            .conditions
            .iter()
            .max_by_key(|c| c.last_transition_at)
            .map_or_else(
                || "starting".to_owned(),
                |c| format!("{}: {}", c.kind, c.message),
            ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let text = table(
            &["NAME", "STATUS"],
            &[("north-carolina", "ready"), ("ohio", "pending")],
            |(name, status)| vec![(*name).to_owned(), (*status).to_owned()],
        );
        assert_eq!(
            text,
            "NAME            STATUS\nnorth-carolina  ready\nohio            pending"
        );
    }
}
