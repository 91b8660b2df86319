//! A fleet rollout's request: which tenants ([`Selector`]), and how to go through them
//! ([`Strategy`]). Both are parsed from what a client sends into values that add up, and
//! every problem is reported at once by the member at fault (`strategy.waves[2]`).
//!
//! The defaults are for a fleet of 56 states, after AWS's guidance on safe deployments
//! (the Builders' Library): one canary first, waves that grow about threefold (1, 5, 15,
//! the rest), a longer bake after the canary than after each later wave, and a halt with
//! automatic rollback at the first failure.

mod plan;
pub mod schema;
mod state;

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::{state::StateSlug, whole, ValidationErrors};

pub use plan::{plan, skip_text, Plan, PlannedTarget, Skip, SkipReason};
pub use state::{RolloutState, TargetState};

/// A length of time written as people write it: `90s`, `5m`, `1h 30m`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub fn parse(text: &str) -> Result<Self, String> {
        static FORM: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(schema::SPAN_PATTERN).expect("the duration pattern compiles")
        });
        if text.trim().starts_with('-') {
            return Err(format!("`{text}` is negative; a duration is 0s or more"));
        }
        if !FORM.is_match(text) {
            return Err(format!(
                "`{text}` is not a duration: give numbers with units ms, s, m, h or d, such as 30s, 5m or 1h 30m"
            ));
        }
        humantime::parse_duration(text.trim())
            .map(Span)
            .map_err(|e| format!("`{text}` is not a duration such as 30s, 5m or 1h 30m: {e}"))
    }

    pub fn as_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The canary: how many tenants go first, or which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CanaryInput {
    /// This many tenants, healthy ones first, then in name order.
    Count(#[serde(deserialize_with = "whole::required")] u32),
    /// These states (slugs or postal codes), e.g. a state with little traffic.
    Names(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canary {
    Count(u32),
    Names(Vec<StateSlug>),
}

impl Canary {
    pub fn size(&self) -> u32 {
        match self {
            Canary::Count(n) => *n,
            Canary::Names(names) => names.len() as u32,
        }
    }
}

/// One wave's size: a number of tenants, or `"rest"` for every tenant still left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WaveSize {
    Count(#[serde(deserialize_with = "whole::required")] u32),
    Rest(String),
}

pub const REST: &str = "rest";

/// What happens once more tenants failed than `max_failures` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Every tenant the rollout changed gets its previous spec back, newest wave first.
    #[default]
    Rollback,
    /// The rollout waits for a person: resume (after a fix) or abort.
    Pause,
}

/// Whether the waves after the canary wait for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    #[default]
    Auto,
    /// After the canary's bake the rollout waits for `promote`.
    Manual,
}

/// How to go through the selected tenants; every member may be left out for its default.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyInput {
    #[schema(schema_with = schema::canary_schema)]
    pub canary: Option<CanaryInput>,
    #[schema(schema_with = schema::waves_schema)]
    pub waves: Option<Vec<WaveSize>>,
    /// Instead of `waves`: each wave after the canary is this many times the one before
    /// (more than 1), until every tenant is in one. Give this or `waves`, not both.
    #[schema(exclusive_minimum = 1.0, example = 3.0)]
    pub growth: Option<f64>,
    /// Tenants deploying or baking at once (default 10).
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_concurrent: Option<u32>,
    /// How long the canary must stay healthy once ready (default `30m`).
    #[schema(schema_with = schema::span_schema)]
    pub canary_bake: Option<Span>,
    /// How long each tenant of a later wave must stay healthy once ready (default `10m`).
    #[schema(schema_with = schema::span_schema)]
    pub bake: Option<Span>,
    /// Requests a tenant must have served during its bake before the bake can end (default:
    /// none); a bake on an idle tenant proves little.
    #[schema(minimum = 1, maximum = 18446744073709551615_u64)]
    pub min_requests: Option<u64>,
    /// Failed tenants tolerated before the rollout halts (default 0).
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    pub max_failures: Option<u32>,
    /// Default `rollback`.
    pub on_failure: Option<OnFailure>,
    /// Default `auto`.
    pub approval: Option<Approval>,
    /// How long a tenant may take to be ready with its new spec (default `20m`).
    #[schema(schema_with = schema::positive_span_schema)]
    pub deploy_timeout: Option<Span>,
    /// Whether success over the whole fleet makes the patched spec the fleet defaults that
    /// new tenants get (default true).
    pub update_defaults: Option<bool>,
}

/// A strategy that adds up, every default filled in: what is stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Strategy {
    #[schema(value_type = CanaryInput)]
    #[serde(with = "canary_form")]
    pub canary: Canary,
    /// The waves' sizes, the canary's first; with `growth`, what it works out to.
    pub waves: Vec<WaveSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<f64>,
    pub max_concurrent: u32,
    #[schema(value_type = String, example = "30m")]
    pub canary_bake: Span,
    #[schema(value_type = String, example = "10m")]
    pub bake: Span,
    pub min_requests: Option<u64>,
    pub max_failures: u32,
    pub on_failure: OnFailure,
    pub approval: Approval,
    #[schema(value_type = String, example = "20m")]
    pub deploy_timeout: Span,
    pub update_defaults: bool,
}

mod canary_form {
    use super::*;

    pub fn serialize<S: Serializer>(c: &Canary, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Canary::Count(n) => CanaryInput::Count(*n),
            Canary::Names(names) => {
                CanaryInput::Names(names.iter().map(|n| n.as_str().to_owned()).collect())
            }
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Canary, D::Error> {
        match CanaryInput::deserialize(d)? {
            CanaryInput::Count(n) => Ok(Canary::Count(n)),
            CanaryInput::Names(names) => names
                .iter()
                .map(|n| StateSlug::parse(n).map_err(serde::de::Error::custom))
                .collect::<Result<_, _>>()
                .map(Canary::Names),
        }
    }
}

pub const DEFAULT_MAX_CONCURRENT: u32 = 10;
pub const DEFAULT_CANARY_BAKE: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_BAKE: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// After the canary; `[canary, 5, 15, "rest"]` covers 56 states as 1, 5, 15 and 35.
const DEFAULT_LATER_WAVES: [u32; 2] = [5, 15];

impl StrategyInput {
    /// The strategy with its defaults, or every way it does not add up on its own. Whether
    /// it fits the tenants it selects is for [`plan`].
    pub fn resolve(self) -> Result<Strategy, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let canary = match self.canary.unwrap_or(CanaryInput::Count(1)) {
            CanaryInput::Count(0) => {
                errors.push("strategy.canary", "the canary needs at least 1 tenant");
                Canary::Count(1)
            }
            CanaryInput::Count(n) => Canary::Count(n),
            CanaryInput::Names(names) => Canary::Names(canary_names(&names, &mut errors)),
        };
        let waves = match (self.waves, self.growth) {
            (Some(_), Some(_)) => {
                errors.push("strategy.growth", "give `waves` or `growth`, not both");
                Vec::new()
            }
            (Some(waves), None) => {
                check_waves(&waves, canary.size(), &mut errors);
                waves
            }
            (None, Some(g)) => {
                if !(g.is_finite() && g > 1.0) {
                    errors.push(
                        "strategy.growth",
                        format!("{g} does not grow: each wave is `growth` times the one before, so it must be more than 1"),
                    );
                }
                vec![WaveSize::Count(canary.size())]
            }
            (None, None) => std::iter::once(canary.size())
                .chain(DEFAULT_LATER_WAVES)
                .map(WaveSize::Count)
                .chain([WaveSize::Rest(REST.into())])
                .collect(),
        };
        let max_concurrent = self.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
        if max_concurrent == 0 {
            errors.push(
                "strategy.max_concurrent",
                "at least 1 tenant must be able to deploy",
            );
        }
        if self.min_requests == Some(0) {
            errors.push(
                "strategy.min_requests",
                "leave it out for no minimum; otherwise at least 1",
            );
        }
        let deploy_timeout = self.deploy_timeout.unwrap_or(Span(DEFAULT_DEPLOY_TIMEOUT));
        if deploy_timeout.0.is_zero() {
            errors.push(
                "strategy.deploy_timeout",
                "no deployment is ready in no time: give more than 0s",
            );
        }
        errors.into_result(|| Strategy {
            canary,
            waves,
            growth: self.growth,
            max_concurrent,
            canary_bake: self.canary_bake.unwrap_or(Span(DEFAULT_CANARY_BAKE)),
            bake: self.bake.unwrap_or(Span(DEFAULT_BAKE)),
            min_requests: self.min_requests,
            max_failures: self.max_failures.unwrap_or(0),
            on_failure: self.on_failure.unwrap_or_default(),
            approval: self.approval.unwrap_or_default(),
            deploy_timeout,
            update_defaults: self.update_defaults.unwrap_or(true),
        })
    }
}

fn canary_names(names: &[String], errors: &mut ValidationErrors) -> Vec<StateSlug> {
    if names.is_empty() {
        errors.push(
            "strategy.canary",
            "name at least one state, or give a count",
        );
    }
    let mut slugs: Vec<StateSlug> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match StateSlug::from_api(name) {
            Ok(slug) if slugs.contains(&slug) => errors.push(
                format!("strategy.canary[{i}]"),
                format!("{slug} is named twice"),
            ),
            Ok(slug) => slugs.push(slug),
            Err(e) => errors.push(format!("strategy.canary[{i}]"), e.to_string()),
        }
    }
    slugs
}

fn check_waves(waves: &[WaveSize], canary: u32, errors: &mut ValidationErrors) {
    if waves.is_empty() {
        errors.push("strategy.waves", "at least one wave: the canary's");
    }
    for (i, wave) in waves.iter().enumerate() {
        let field = format!("strategy.waves[{i}]");
        match wave {
            WaveSize::Count(0) => errors.push(field, "a wave holds at least 1 tenant"),
            WaveSize::Count(n) if i == 0 && *n != canary => errors.push(
                field,
                format!("the first wave is the canary: it holds {canary}, not {n}"),
            ),
            WaveSize::Rest(word) if word != REST => errors.push(
                field,
                format!("`{word}` is not a size: give a number, or \"rest\" for the last wave"),
            ),
            WaveSize::Rest(_) if i == 0 => errors.push(
                field,
                "the first wave is the canary: give its size, not \"rest\"",
            ),
            WaveSize::Rest(_) if i + 1 != waves.len() => {
                errors.push(field, "\"rest\" can only be the last wave")
            }
            _ => {}
        }
    }
}

impl Strategy {
    /// The waves' sizes for `tenants` tenants to change, the last one taking what is left;
    /// `None` for a strategy whose waves leave some out.
    pub fn wave_sizes(&self, tenants: u32) -> Option<Vec<u32>> {
        let mut sizes = Vec::new();
        let mut left = tenants;
        let mut take = |n: u32, left: &mut u32| {
            let n = n.min(*left);
            if n > 0 {
                sizes.push(n);
                *left -= n;
            }
        };
        match self.growth {
            Some(g) => {
                let mut size = f64::from(self.canary.size());
                take(self.canary.size(), &mut left);
                while left > 0 {
                    size = (size * g).ceil();
                    take(size.min(f64::from(u32::MAX)) as u32, &mut left);
                }
            }
            None => {
                for wave in &self.waves {
                    let n = match wave {
                        WaveSize::Count(n) => *n,
                        WaveSize::Rest(_) => left,
                    };
                    take(n, &mut left);
                }
            }
        }
        (left == 0).then_some(sizes)
    }

    pub fn bake_of(&self, wave: i32) -> Span {
        if wave == 1 {
            self.canary_bake
        } else {
            self.bake
        }
    }
}

/// Which live tenants a rollout is for: all of them unless narrowed.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectorInput {
    /// Only these states (slugs or postal codes); each must have a live tenant.
    #[schema(value_type = Option<Vec<StateSlug>>, min_items = 1)]
    pub only: Option<Vec<String>>,
    /// Not these states.
    #[schema(value_type = Option<Vec<StateSlug>>)]
    pub exclude: Option<Vec<String>>,
    /// Only tenants placed in these cells (each a configured cell, or one that holds a
    /// tenant). The selection must match at least one live tenant.
    pub cells: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
}

impl SelectorInput {
    /// Names parsed to slugs and cells checked against `known_cells`.
    pub fn resolve(self, known_cells: &[String]) -> Result<Selector, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut names = |field: &str, list: Option<Vec<String>>| -> Vec<String> {
            let mut slugs: Vec<String> = Vec::new();
            for (i, name) in list.unwrap_or_default().iter().enumerate() {
                match StateSlug::from_api(name) {
                    Ok(slug) if !slugs.iter().any(|s| s == slug.as_str()) => {
                        slugs.push(slug.as_str().to_owned())
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(format!("selector.{field}[{i}]"), e.to_string()),
                }
            }
            slugs
        };
        let only_given = self.only.is_some();
        let only = names("only", self.only);
        let exclude = names("exclude", self.exclude);
        if only_given && only.is_empty() && errors.0.is_empty() {
            errors.push(
                "selector.only",
                "names no state; leave it out for every tenant",
            );
        }
        let cells = self.cells.unwrap_or_default();
        for (i, cell) in cells.iter().enumerate() {
            if !known_cells.contains(cell) {
                errors.push(
                    format!("selector.cells[{i}]"),
                    format!(
                        "`{cell}` is not a configured cell ({})",
                        known_cells.join(", ")
                    ),
                );
            }
        }
        errors.into_result(|| Selector {
            only,
            exclude,
            cells,
        })
    }
}

impl Selector {
    /// Whether the selection is every tenant, so that success may set the fleet defaults.
    pub fn is_whole_fleet(&self) -> bool {
        self.only.is_empty() && self.exclude.is_empty() && self.cells.is_empty()
    }

    pub fn matches(&self, name: &str, cell: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|n| n == name))
            && !self.exclude.iter().any(|n| n == name)
            && (self.cells.is_empty() || self.cells.iter().any(|c| c == cell))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strategy(value: serde_json::Value) -> Result<Strategy, Vec<String>> {
        let input: StrategyInput = serde_json::from_value(value).unwrap();
        input
            .resolve()
            .map_err(|e| e.0.into_iter().map(|f| f.field).collect())
    }

    #[test]
    fn the_defaults_cover_a_fleet_of_56_in_growing_waves() {
        let s = strategy(json!({})).unwrap();
        assert_eq!(s.wave_sizes(56), Some(vec![1, 5, 15, 35]));
        assert_eq!(s.wave_sizes(3), Some(vec![1, 2]));
        assert_eq!(s.max_failures, 0);
        assert_eq!(s.on_failure, OnFailure::Rollback);
        assert!(s.canary_bake > s.bake);
    }

    #[test]
    fn growth_multiplies_each_wave_until_everyone_is_in_one() {
        let s = strategy(json!({"canary": 2, "growth": 3})).unwrap();
        assert_eq!(s.wave_sizes(30), Some(vec![2, 6, 18, 4]));
    }

    #[test]
    fn waves_without_rest_that_leave_tenants_out_do_not_add_up() {
        let s = strategy(json!({"waves": [1, 5, 50]})).unwrap();
        assert_eq!(s.wave_sizes(56), Some(vec![1, 5, 50]));
        assert_eq!(s.wave_sizes(57), None);
        assert_eq!(s.wave_sizes(4), Some(vec![1, 3]));
    }

    #[test]
    fn every_way_a_strategy_does_not_add_up_is_named() {
        let fields = strategy(json!({
            "canary": 2, "waves": [1, 0, "rest", 4, "all"], "max_concurrent": 0,
            "deploy_timeout": "0s", "min_requests": 0
        }))
        .unwrap_err();
        for f in [
            "strategy.waves[0]",
            "strategy.waves[1]",
            "strategy.waves[2]",
            "strategy.waves[4]",
            "strategy.max_concurrent",
            "strategy.deploy_timeout",
            "strategy.min_requests",
        ] {
            assert!(fields.contains(&f.to_owned()), "{f} in {fields:?}");
        }
        assert_eq!(
            strategy(json!({"waves": [1], "growth": 2})).unwrap_err(),
            ["strategy.growth"]
        );
        assert_eq!(
            strategy(json!({"canary": ["ohio", "texas", "OH", "narnia"]})).unwrap_err(),
            ["strategy.canary[2]", "strategy.canary[3]"]
        );
        assert_eq!(
            strategy(json!({"growth": 1})).unwrap_err(),
            ["strategy.growth"]
        );
    }

    #[test]
    fn durations_are_written_as_people_write_them_and_never_negative() {
        assert_eq!(Span::parse("1h 30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(Span::parse("0s").unwrap().0, Duration::ZERO);
        assert!(Span::parse("-5s").unwrap_err().contains("negative"));
        assert!(Span::parse("soon").is_err());
        let err = serde_json::from_value::<StrategyInput>(json!({"bake": "-1m"})).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        assert_eq!(Span(Duration::from_secs(90)).to_string(), "1m 30s");
        for text in ["1 ms", " 2h ", "1d1h", "1h 30m 5s", "999999999d", "0s 0ms"] {
            assert!(Span::parse(text).is_ok(), "{text}");
        }
        for text in ["5", "5 minutes", "1y", "", "1.5h"] {
            assert!(Span::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_selector_names_states_and_configured_cells_only() {
        let cells = vec!["cell-1".to_owned()];
        let input: SelectorInput = serde_json::from_value(json!({
            "only": ["OH", "narnia"], "cells": ["cell-9"]
        }))
        .unwrap();
        let fields: Vec<_> = input
            .resolve(&cells)
            .unwrap_err()
            .0
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["selector.only[1]", "selector.cells[0]"]);
        let s = SelectorInput {
            exclude: Some(vec!["TX".into()]),
            ..SelectorInput::default()
        }
        .resolve(&cells)
        .unwrap();
        assert!(s.matches("ohio", "cell-1") && !s.matches("texas", "cell-1"));
        assert!(!s.is_whole_fleet());
    }
}
