//! A tenant's desired application spec. [`TenantSpec`] can only hold values Fargate and
//! ECS accept; [`SpecDoc`] is its wire and storage form, [`SpecInput`] what a client
//! may send (every field optional, missing ones come from configured defaults), and
//! [`SpecPatch`] a merge patch of it. Their OpenAPI schemas come from `schema`, built
//! from the same tables and limits as the checks here.

mod patch;
mod schema;
pub mod sizing;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{image::ImageRef, whole, ValidationErrors};

pub use patch::SpecPatch;
pub use schema::fargate_memories;
pub use sizing::{Sizing, SizingDoc, SizingMode};

/// Variable names the platform sets itself; a spec may not override them.
pub const RESERVED_ENV: [&str; 4] = ["AWS_BUCKET", "AWS_DYNAMODB_TABLE", "AWS_REGION", "US_STATE"];
pub const MAX_ENV_VARS: usize = 50;
pub const MAX_ENV_NAME_LEN: usize = 128;
pub const MAX_ENV_VALUE_LEN: usize = 4096;
pub const MAX_ENV_TOTAL_BYTES: usize = 32 * 1024;
/// No configuration may allow more tasks than ECS runs in one service (its tasks-per-service
/// quota), so the document's bound on counts is always one the server can keep.
pub const MAX_TASK_COUNT_CEILING: u32 = 5000;
/// The task CPU sizes Fargate offers, in CPU units.
pub const FARGATE_CPUS: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// The application spec as it travels in JSON and is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecDoc {
    pub app_image: String,
    pub nginx_image: String,
    pub cpu: u32,
    pub memory: u32,
    pub desired_count: u32,
    pub min_count: u32,
    pub max_count: u32,
    pub env: BTreeMap<String, String>,
    /// Specs stored before rightsizing existed read as the default.
    #[serde(default, deserialize_with = "crate::domain::object")]
    pub sizing: SizingDoc,
}

/// A spec as a client sends it: any field left out takes its configured default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecInput {
    pub app_image: Option<String>,
    pub nginx_image: Option<String>,
    #[serde(default, deserialize_with = "whole::optional")]
    pub cpu: Option<u32>,
    #[serde(default, deserialize_with = "whole::optional")]
    pub memory: Option<u32>,
    #[serde(default, deserialize_with = "whole::optional")]
    pub desired_count: Option<u32>,
    #[serde(default, deserialize_with = "whole::optional")]
    pub min_count: Option<u32>,
    #[serde(default, deserialize_with = "whole::optional")]
    pub max_count: Option<u32>,
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "crate::domain::optional_object")]
    pub sizing: Option<sizing::SizingInput>,
}

impl SpecInput {
    pub fn or_defaults(self, defaults: &SpecDoc) -> SpecDoc {
        let d = defaults.clone();
        SpecDoc {
            app_image: self.app_image.unwrap_or(d.app_image),
            nginx_image: self.nginx_image.unwrap_or(d.nginx_image),
            cpu: self.cpu.unwrap_or(d.cpu),
            memory: self.memory.unwrap_or(d.memory),
            desired_count: self.desired_count.unwrap_or(d.desired_count),
            min_count: self.min_count.unwrap_or(d.min_count),
            max_count: self.max_count.unwrap_or(d.max_count),
            env: self.env.unwrap_or(d.env),
            sizing: self.sizing.unwrap_or_default().or_defaults(&d.sizing),
        }
    }
}

/// Operator policy that bounds every spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecLimits {
    /// At most [`MAX_TASK_COUNT_CEILING`].
    pub max_task_count: u32,
}

impl Default for SpecLimits {
    fn default() -> Self {
        Self { max_task_count: 10 }
    }
}

/// A cpu/memory pair that Fargate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSize {
    cpu: u32,
    memory: u32,
}

impl TaskSize {
    pub fn new(cpu: u32, memory: u32) -> Result<Self, String> {
        let allowed = fargate_memory_for(cpu).ok_or_else(|| {
            format!("cpu {cpu} is not a Fargate size: use one of {FARGATE_CPUS:?}")
        })?;
        if allowed.contains(&memory) {
            Ok(Self { cpu, memory })
        } else {
            let first = allowed.first().copied().unwrap_or_default();
            let last = allowed.last().copied().unwrap_or_default();
            Err(format!(
                "memory {memory} MiB does not fit cpu {cpu}: Fargate allows {first}..={last} MiB in steps of {}",
                allowed.get(1).map_or(first, |second| second - first)
            ))
        }
    }

    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    pub fn memory(&self) -> u32 {
        self.memory
    }

    /// Every pair Fargate offers, by cpu, then memory.
    pub fn all() -> impl Iterator<Item = TaskSize> {
        FARGATE_CPUS.into_iter().flat_map(|cpu| {
            fargate_memory_for(cpu)
                .unwrap_or_default()
                .into_iter()
                .map(move |memory| TaskSize { cpu, memory })
        })
    }
}

impl std::fmt::Display for TaskSize {
    /// `512 CPU / 1024 MiB`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} CPU / {} MiB", self.cpu, self.memory)
    }
}

/// The memory sizes (MiB) Fargate offers for each size in [`FARGATE_CPUS`].
fn fargate_memory_for(cpu: u32) -> Option<Vec<u32>> {
    let steps = |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).collect();
    match cpu {
        256 => Some(vec![512, 1024, 2048]),
        512 => Some(steps(1024, 4096, 1024)),
        1024 => Some(steps(2048, 8192, 1024)),
        2048 => Some(steps(4096, 16384, 1024)),
        4096 => Some(steps(8192, 30720, 1024)),
        8192 => Some(steps(16384, 61440, 4096)),
        16384 => Some(steps(32768, 122880, 8192)),
        _ => None,
    }
}

/// Task counts with `min <= desired <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCounts {
    min: u32,
    desired: u32,
    max: u32,
}

impl TaskCounts {
    pub fn min(&self) -> u32 {
        self.min
    }
    pub fn desired(&self) -> u32 {
        self.desired
    }
    pub fn max(&self) -> u32 {
        self.max
    }
}

/// Validated extra environment for the `app` container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn check_env(env: &BTreeMap<String, String>, errors: &mut ValidationErrors) {
    check_env_len(env.len(), errors);
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ENV_TOTAL_BYTES {
        errors.push(
            "spec.env",
            format!("names and values together must be at most {MAX_ENV_TOTAL_BYTES} bytes"),
        );
    }
    for (name, value) in env {
        check_env_var(name, Some(value), errors);
    }
}

fn check_env_len(len: usize, errors: &mut ValidationErrors) {
    if len > MAX_ENV_VARS {
        errors.push(
            "spec.env",
            format!("at most {MAX_ENV_VARS} variables are allowed"),
        );
    }
}

/// The rules one variable keeps on its own; `None` is a patch's removal.
fn check_env_var(name: &str, value: Option<&str>, errors: &mut ValidationErrors) {
    let field = format!(
        "spec.env.{}",
        name.chars().take(MAX_ENV_NAME_LEN).collect::<String>()
    );
    if let Err(message) = check_env_name(name) {
        errors.push(field.clone(), message);
    }
    let Some(value) = value else { return };
    if value.len() > MAX_ENV_VALUE_LEN {
        errors.push(
            field.clone(),
            format!("value must be at most {MAX_ENV_VALUE_LEN} bytes"),
        );
    }
    if value.contains('\0') {
        errors.push(field, "value must not contain NUL characters");
    }
}

fn check_image(field: &str, value: &str, errors: &mut ValidationErrors) -> Option<ImageRef> {
    ImageRef::parse(value)
        .map_err(|m| errors.push(field, m))
        .ok()
}

/// A count on its own: at most the platform's cap.
fn check_count_cap(field: &str, value: u32, limits: SpecLimits, errors: &mut ValidationErrors) {
    if value > limits.max_task_count {
        errors.push(
            format!("spec.{field}"),
            format!(
                "{field} {value} is over this platform's cap of {} tasks",
                limits.max_task_count
            ),
        );
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_uppercase() || *b == b'_');
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    if !first_ok || !rest_ok || name.len() > MAX_ENV_NAME_LEN {
        return Err(format!(
            "name must match [A-Z_][A-Z0-9_]* and be at most {MAX_ENV_NAME_LEN} characters"
        ));
    }
    if RESERVED_ENV.contains(&name) {
        return Err(format!(
            "{name} is set by the platform and cannot be overridden (reserved: {})",
            RESERVED_ENV.join(", ")
        ));
    }
    Ok(())
}

/// A spec every part of which ECS and Fargate accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SpecDoc", into = "SpecDoc")]
pub struct TenantSpec {
    pub app_image: ImageRef,
    pub nginx_image: ImageRef,
    pub size: TaskSize,
    pub counts: TaskCounts,
    pub env: EnvVars,
    pub sizing: Sizing,
}

impl TenantSpec {
    /// Checks every field and reports every problem at once. `limits` is the operator's
    /// policy; `None` only checks what AWS itself requires (used for stored specs).
    pub fn validate(doc: SpecDoc, limits: Option<SpecLimits>) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let app_image = check_image("spec.app_image", &doc.app_image, &mut errors);
        let nginx_image = check_image("spec.nginx_image", &doc.nginx_image, &mut errors);
        // An unknown cpu is the cpu's fault; a known one with the wrong memory, the memory's.
        let size_field = if fargate_memory_for(doc.cpu).is_some() {
            "spec.memory"
        } else {
            "spec.cpu"
        };
        let size = TaskSize::new(doc.cpu, doc.memory)
            .map_err(|m| errors.push(size_field, m))
            .ok();
        let counts = TaskCounts {
            min: doc.min_count,
            desired: doc.desired_count,
            max: doc.max_count,
        };
        check_counts(counts, limits, &mut errors);
        check_env(&doc.env, &mut errors);
        let sizing = Sizing::validate(doc.sizing, &mut errors);
        match (app_image, nginx_image, size, sizing) {
            (Some(app_image), Some(nginx_image), Some(size), Some(sizing))
                if errors.0.is_empty() =>
            {
                Ok(Self {
                    app_image,
                    nginx_image,
                    size,
                    counts,
                    env: EnvVars(doc.env),
                    sizing,
                })
            }
            _ => Err(errors),
        }
    }

    pub fn to_doc(&self) -> SpecDoc {
        SpecDoc::from(self.clone())
    }
}

fn check_counts(c: TaskCounts, limits: Option<SpecLimits>, errors: &mut ValidationErrors) {
    if c.min > c.desired {
        errors.push(
            "spec.min_count",
            format!(
                "min_count {} must not exceed desired_count {}",
                c.min, c.desired
            ),
        );
    }
    if c.desired > c.max {
        errors.push(
            "spec.max_count",
            format!(
                "max_count {} must be at least desired_count {}",
                c.max, c.desired
            ),
        );
    }
    if let Some(limits) = limits {
        for (field, value) in [
            ("min_count", c.min),
            ("desired_count", c.desired),
            ("max_count", c.max),
        ] {
            check_count_cap(field, value, limits, errors);
        }
    }
}

impl TryFrom<SpecDoc> for TenantSpec {
    type Error = ValidationErrors;
    fn try_from(doc: SpecDoc) -> Result<Self, Self::Error> {
        Self::validate(doc, None)
    }
}

impl From<TenantSpec> for SpecDoc {
    fn from(spec: TenantSpec) -> Self {
        SpecDoc {
            app_image: spec.app_image.to_string(),
            nginx_image: spec.nginx_image.to_string(),
            cpu: spec.size.cpu,
            memory: spec.size.memory,
            desired_count: spec.counts.desired,
            min_count: spec.counts.min,
            max_count: spec.counts.max,
            env: spec.env.0,
            sizing: spec.sizing.to_doc(),
        }
    }
}

impl TenantSpec {
    /// The same spec at another size.
    pub fn resized(&self, size: TaskSize) -> Self {
        Self {
            size,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> SpecDoc {
        SpecDoc {
            app_image: "humangov/app:1".into(),
            nginx_image: "nginx:1.27".into(),
            cpu: 256,
            memory: 512,
            desired_count: 1,
            min_count: 1,
            max_count: 2,
            env: BTreeMap::new(),
            sizing: SizingDoc::default(),
        }
    }

    const LIMITS: Option<SpecLimits> = Some(SpecLimits { max_task_count: 10 });

    #[test]
    fn fargate_pairs_are_enforced() {
        assert!(TaskSize::new(256, 512).is_ok());
        assert!(TaskSize::new(4096, 30720).is_ok());
        assert!(TaskSize::new(16384, 122880).is_ok());
        assert!(TaskSize::new(256, 4096).is_err());
        assert!(TaskSize::new(8192, 18432).is_err());
        assert!(TaskSize::new(300, 512).is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut d = doc();
        d.cpu = 256;
        d.memory = 8192;
        d.min_count = 3;
        d.max_count = 50;
        d.app_image = "Not An Image".into();
        d.env.insert("US_STATE".into(), "x".into());
        d.env.insert("lower".into(), "x".into());
        let errors = TenantSpec::validate(d, LIMITS).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "spec.app_image",
            "spec.memory",
            "spec.min_count",
            "spec.max_count",
            "spec.env.US_STATE",
            "spec.env.lower",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn a_valid_spec_round_trips_through_its_document() {
        let mut d = doc();
        d.env.insert("FEATURE_X".into(), "on".into());
        let spec = TenantSpec::validate(d.clone(), LIMITS).unwrap();
        assert_eq!(spec.to_doc(), d);
    }

    #[test]
    fn zero_tasks_are_allowed_when_min_and_desired_are_zero() {
        let mut d = doc();
        d.min_count = 0;
        d.desired_count = 0;
        assert!(TenantSpec::validate(d, LIMITS).is_ok());
    }
}
