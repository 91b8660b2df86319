//! The cells file (`STATEHOUSE_CELLS_FILE`, TOML or JSON): every cell statehouse places
//! tenants in, each a shared load balancer and cluster in an account and region of its own
//! choosing, reached with an IAM role to assume when it is in another account. A file that is
//! wrong is refused whole, with the cell and the field named, so that `serve`, `worker` and
//! `sweep` never start on half a configuration.
//!
//! ```toml
//! [[cell]]
//! name = "ca-dedicated"
//! region = "us-west-1"
//! role_arn = "arn:aws:iam::222222222222:role/statehouse-cell"
//! capacity = 1
//! reserved_for = ["california"]
//! cluster = "statehouse"
//! listener_arn = "arn:aws:elasticloadbalancing:us-west-1:222222222222:listener/app/statehouse/50dc6c495c0c9188/f2f7dc8efc522ab2"
//! vpc_id = "vpc-0abc"
//! subnets = ["subnet-0a", "subnet-0b"]
//! security_groups = ["sg-0tasks"]
//! execution_role_arn = "arn:aws:iam::222222222222:role/statehouse-execution"
//! ```
//!
//! As JSON: `{"cell": [{"name": "ca-dedicated", …}]}`.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use crate::{config::MAX_CELL_CAPACITY, domain::state::StateSlug};

/// The regions a cell may be in.
pub const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "ca-central-1",
    "ca-west-1",
    "mx-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
];

/// One cell as the file gives it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellConfig {
    pub name: String,
    pub region: String,
    /// The account, read off the listener's ARN.
    pub account: String,
    /// The role the worker assumes to reach the cell; `None` uses its own credentials.
    pub role_arn: Option<String>,
    pub capacity: u32,
    /// Only these states are placed in the cell; empty: any state.
    pub reserved_for: Vec<StateSlug>,
    pub cluster: String,
    pub listener_arn: String,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub execution_role_arn: String,
    /// The SNS topic the cell's tenants' alarms notify, in the cell's account.
    pub alarm_topic_arn: Option<String>,
}

impl From<CellConfig> for crate::reconcile::platform::Cell {
    fn from(c: CellConfig) -> Self {
        Self {
            name: c.name,
            cluster: c.cluster,
            listener_arn: c.listener_arn,
            vpc_id: c.vpc_id,
            subnets: c.subnets,
            security_groups: c.security_groups,
            account: c.account,
            region: c.region,
            execution_role_arn: c.execution_role_arn,
            role_arn: c.role_arn,
            alarm_topic_arn: c.alarm_topic_arn,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellDoc {
    name: String,
    region: String,
    role_arn: Option<String>,
    capacity: Option<u32>,
    #[serde(default)]
    reserved_for: Vec<String>,
    cluster: String,
    listener_arn: String,
    vpc_id: String,
    subnets: Vec<String>,
    security_groups: Vec<String>,
    execution_role_arn: String,
    alarm_topic_arn: Option<String>,
}

/// Reads and checks the cells file at `path`; TOML unless it ends in `.json`.
pub fn load(path: &Path, default_capacity: u32) -> anyhow::Result<Vec<CellConfig>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("STATEHOUSE_CELLS_FILE: cannot read {}: {e}", path.display())
    })?;
    let json = path.extension().is_some_and(|e| e == "json");
    parse(&text, json, default_capacity)
        .map_err(|e| anyhow::anyhow!("STATEHOUSE_CELLS_FILE {}: {e}", path.display()))
}

/// Parses and checks a cells file's text (TOML, or JSON when `json`).
pub fn parse(text: &str, json: bool, default_capacity: u32) -> Result<Vec<CellConfig>, String> {
    let entries: Vec<serde_json::Value> = if json {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        cell_list(doc)?
    } else {
        let doc: toml::Value = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
        let doc = serde_json::to_value(doc).map_err(|e| e.to_string())?;
        cell_list(doc)?
    };
    if entries.is_empty() {
        return Err("it lists no cell (add a [[cell]] table)".into());
    }
    let mut cells: Vec<CellConfig> = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let label = entry["name"].as_str().map_or_else(
            || format!("cell {} (no name)", i + 1),
            |n| format!("cell `{n}`"),
        );
        let doc: CellDoc = serde_path_to_error::deserialize(entry).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                format!("{label}: {inner}")
            } else {
                format!("{label}: `{path}`: {inner}")
            }
        })?;
        let cell = check(doc, default_capacity).map_err(|e| format!("{label}: {e}"))?;
        if let Some(other) = cells.iter().find(|c| c.name == cell.name) {
            return Err(format!("cell `{}` is listed twice", other.name));
        }
        if let Some(other) = cells.iter().find(|c| c.listener_arn == cell.listener_arn) {
            return Err(format!(
                "cell `{}`: `listener_arn` is cell `{}`'s too; each cell has a listener of its own",
                cell.name, other.name
            ));
        }
        for state in &cell.reserved_for {
            if let Some(other) = cells.iter().find(|c| c.reserved_for.contains(state)) {
                return Err(format!(
                    "cell `{}`: `reserved_for`: {state} is reserved by cell `{}` already",
                    cell.name, other.name
                ));
            }
        }
        cells.push(cell);
    }
    Ok(cells)
}

fn cell_list(doc: serde_json::Value) -> Result<Vec<serde_json::Value>, String> {
    let serde_json::Value::Object(mut top) = doc else {
        return Err(
            "expected a table of cells (`[[cell]]` in TOML, {\"cell\": [...]} in JSON)".into(),
        );
    };
    if let Some(other) = top.keys().find(|k| *k != "cell") {
        return Err(format!(
            "unknown top-level field `{other}` (only `cell` is allowed)"
        ));
    }
    let cells = top
        .remove("cell")
        .ok_or("no `cell` list (add a [[cell]] table)")?;
    match cells {
        serde_json::Value::Array(list) => Ok(list),
        _ => Err("`cell` must be a list of cells".into()),
    }
}

fn nonempty(value: &str, field: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("`{field}` is empty"))
    } else {
        Ok(())
    }
}

/// `arn:{partition}:{service}:{region}:{account}:{resource}`.
fn arn_parts<'a>(arn: &'a str, field: &str, service: &str) -> Result<[&'a str; 3], String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && (parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit()))
        && !parts[5].is_empty();
    if ok {
        Ok([parts[3], parts[4], parts[5]])
    } else {
        Err(format!(
            "`{field}` is not a{} {service} ARN with a 12-digit account: `{arn}`",
            if service.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "n"
            } else {
                ""
            }
        ))
    }
}

fn role_arn(arn: &str, field: &str) -> Result<String, String> {
    let [region, account, resource] = arn_parts(arn, field, "iam")?;
    let name_ok = resource.strip_prefix("role/").is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
    });
    if !region.is_empty() || !name_ok {
        return Err(format!(
            "`{field}` is not an IAM role ARN (arn:aws:iam::123456789012:role/name): `{arn}`"
        ));
    }
    Ok(account.to_owned())
}

fn check(doc: CellDoc, default_capacity: u32) -> Result<CellConfig, String> {
    let name_ok = !doc.name.is_empty()
        && doc
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!(
            "`name`: `{}` is not a cell name (letters, digits, - and _)",
            doc.name
        ));
    }
    if !REGIONS.contains(&doc.region.as_str()) {
        return Err(format!("`region`: `{}` is not an AWS region", doc.region));
    }
    let [lb_region, account, resource] =
        arn_parts(&doc.listener_arn, "listener_arn", "elasticloadbalancing")?;
    if !resource.starts_with("listener/app/") || resource.split('/').count() != 5 {
        return Err(format!(
            "`listener_arn` is not an ALB listener's ARN (…:listener/app/NAME/ID/ID): `{}`",
            doc.listener_arn
        ));
    }
    if lb_region != doc.region {
        return Err(format!(
            "`listener_arn` is in {lb_region}, but the cell's `region` is {}",
            doc.region
        ));
    }
    let account = account.to_owned();
    if let Some(role) = &doc.role_arn {
        let role_account = role_arn(role, "role_arn")?;
        if role_account != account {
            return Err(format!(
                "`role_arn` is in account {role_account}, but the listener is in {account}"
            ));
        }
    }
    let execution_account = role_arn(&doc.execution_role_arn, "execution_role_arn")?;
    if execution_account != account {
        return Err(format!(
            "`execution_role_arn` is in account {execution_account}, but the listener is in {account}"
        ));
    }
    if let Some(topic) = &doc.alarm_topic_arn {
        let [topic_region, topic_account, _] = arn_parts(topic, "alarm_topic_arn", "sns")?;
        if topic_region != doc.region || topic_account != account {
            return Err(format!(
                "`alarm_topic_arn` must be in the cell's account and region ({account}, {}): `{topic}`",
                doc.region
            ));
        }
    }
    let capacity = doc.capacity.unwrap_or(default_capacity);
    if capacity > MAX_CELL_CAPACITY {
        return Err(format!(
            "`capacity`: {capacity} is more than a cell holds ({MAX_CELL_CAPACITY}, target groups per load balancer)"
        ));
    }
    nonempty(&doc.cluster, "cluster")?;
    if !doc.vpc_id.starts_with("vpc-") {
        return Err(format!(
            "`vpc_id`: `{}` is not a VPC id (vpc-…)",
            doc.vpc_id
        ));
    }
    for (list, field, prefix) in [
        (&doc.subnets, "subnets", "subnet-"),
        (&doc.security_groups, "security_groups", "sg-"),
    ] {
        if list.is_empty() {
            return Err(format!("`{field}` is empty"));
        }
        if let Some(bad) = list.iter().find(|s| !s.starts_with(prefix)) {
            return Err(format!("`{field}`: `{bad}` is not a {prefix}… id"));
        }
    }
    let mut reserved_for = Vec::new();
    for state in &doc.reserved_for {
        let slug =
            StateSlug::parse(state).map_err(|e| format!("`reserved_for`: `{state}`: {e}"))?;
        if reserved_for.contains(&slug) {
            return Err(format!("`reserved_for`: {state} is listed twice"));
        }
        reserved_for.push(slug);
    }
    Ok(CellConfig {
        name: doc.name,
        region: doc.region,
        account,
        role_arn: doc.role_arn,
        capacity,
        reserved_for,
        cluster: doc.cluster,
        listener_arn: doc.listener_arn,
        vpc_id: doc.vpc_id,
        subnets: doc.subnets,
        security_groups: doc.security_groups,
        execution_role_arn: doc.execution_role_arn,
        alarm_topic_arn: doc.alarm_topic_arn,
    })
}

/// The cells by (account, region): cells there share AWS's buckets, so one call budget.
pub fn by_account_region(cells: &[CellConfig]) -> BTreeMap<(String, String), Vec<&CellConfig>> {
    let mut map: BTreeMap<(String, String), Vec<&CellConfig>> = BTreeMap::new();
    for c in cells {
        map.entry((c.account.clone(), c.region.clone()))
            .or_default()
            .push(c);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[cell]]
name = "cell-1"
region = "us-east-1"
cluster = "statehouse"
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2"
vpc_id = "vpc-0a"
subnets = ["subnet-0a", "subnet-0b"]
security_groups = ["sg-0a"]
execution_role_arn = "arn:aws:iam::111111111111:role/statehouse-execution"

[[cell]]
name = "ca-dedicated"
region = "us-west-1"
role_arn = "arn:aws:iam::222222222222:role/statehouse-cell"
capacity = 1
reserved_for = ["california"]
cluster = "statehouse"
listener_arn = "arn:aws:elasticloadbalancing:us-west-1:222222222222:listener/app/shared/60dc6c495c0c9188/a2f7dc8efc522ab2"
vpc_id = "vpc-0b"
subnets = ["subnet-1a"]
security_groups = ["sg-1a"]
execution_role_arn = "arn:aws:iam::222222222222:role/statehouse-execution"
"#;

    #[test]
    fn a_good_file_gives_each_cell_its_account_region_role_and_reservations() {
        let cells = parse(GOOD, false, 100).unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].account, "111111111111");
        assert_eq!(cells[0].capacity, 100);
        assert_eq!(cells[0].role_arn, None);
        assert_eq!(cells[1].account, "222222222222");
        assert_eq!(cells[1].region, "us-west-1");
        assert_eq!(
            cells[1].reserved_for,
            [StateSlug::parse("california").unwrap()]
        );
        let as_json = serde_json::to_string(&toml::from_str::<toml::Value>(GOOD).unwrap()).unwrap();
        assert_eq!(parse(&as_json, true, 100).unwrap(), cells);
        assert_eq!(by_account_region(&cells).len(), 2);
    }

    #[test]
    fn a_wrong_file_is_refused_naming_the_cell_and_the_field() {
        let second = GOOD.find("[[cell]]\nname = \"ca-dedicated\"").unwrap();
        let edit = |from: &str, to: &str| {
            let (a, b) = GOOD.split_at(second);
            format!("{a}{}", b.replacen(from, to, 1))
        };
        for (text, says) in [
            (edit("cluster = \"statehouse\"\n", ""), "cell `ca-dedicated`: missing field `cluster`"),
            (edit("us-west-1\"\nrole", "us-wset-1\"\nrole"), "cell `ca-dedicated`: `region`: `us-wset-1` is not an AWS region"),
            (edit("arn:aws:iam::222222222222:role/statehouse-cell", "arn:aws:iam::2222:role/x"), "cell `ca-dedicated`: `role_arn` is not an iam ARN"),
            (edit("role/statehouse-cell", "user/statehouse"), "`role_arn` is not an IAM role ARN"),
            (edit("222222222222:role/statehouse-cell", "333333333333:role/statehouse-cell"), "`role_arn` is in account 333333333333, but the listener is in 222222222222"),
            (edit("60dc6c495c0c9188/a2f7dc8efc522ab2", "50dc6c495c0c9188/f2f7dc8efc522ab2").replace("us-west-1:222222222222:listener/app/shared/50", "us-east-1:111111111111:listener/app/shared/50"), "cell `ca-dedicated`: `listener_arn` is in us-east-1, but the cell's `region` is us-west-1"),
            (edit("capacity = 1", "capacity = 101"), "cell `ca-dedicated`: `capacity`: 101 is more than a cell holds"),
            (edit("capacity = 1", "capcity = 1"), "cell `ca-dedicated`: `capcity`: unknown field `capcity`"),
            (edit("[\"california\"]", "[\"calfornia\"]"), "cell `ca-dedicated`: `reserved_for`: `calfornia`"),
            (edit("name = \"ca-dedicated\"", "name = \"cell-1\""), "cell `cell-1` is listed twice"),
            (edit("subnets = [\"subnet-1a\"]", "subnets = []"), "cell `ca-dedicated`: `subnets` is empty"),
            (edit("capacity = 1", "capacity = \"one\""), "cell `ca-dedicated`: `capacity`: invalid type"),
            ("".to_owned(), "no `cell` list"),
            ("cells = []".to_owned(), "unknown top-level field `cells`"),
        ] {
            let err = parse(&text, false, 100).unwrap_err();
            assert!(err.contains(says), "expected {says:?} in: {err}");
        }
        // Two cells on one listener.
        let shared = GOOD
            .replace(
                "us-west-1:222222222222:listener/app/shared/60dc6c495c0c9188/a2f7dc8efc522ab2",
                "us-east-1:111111111111:listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2",
            )
            .replace("region = \"us-west-1\"", "region = \"us-east-1\"")
            .replace("222222222222", "111111111111");
        let err = parse(&shared, false, 100).unwrap_err();
        assert!(
            err.contains("cell `ca-dedicated`: `listener_arn` is cell `cell-1`'s too"),
            "{err}"
        );
    }
}
