//! How the client commands print: aligned tables for people, the API's own JSON for scripts.

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

use crate::{
    db::events::Event,
    domain::tenant::{Condition, Tenant, TenantStatus},
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

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

pub fn tenants_table(tenants: &[Tenant]) -> String {
    table(
        &["NAME", "STATUS", "GENERATION", "APP IMAGE", "ENDPOINT"],
        tenants,
        |t| {
            vec![
                t.name.clone(),
                t.status.as_str().to_owned(),
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
