//! The spec's `sizing`: whether the rightsizer only recommends a Fargate size or applies it
//! (`auto`), and the bounds it keeps to. The bounds are Fargate pairs themselves, with
//! `min` at or below `max` in both cpu and memory, so the smallest pair that fits any need
//! within them always exists.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{fargate_memory_for, patch::merge, schema::fargate_memories, TaskSize, FARGATE_CPUS};
use crate::domain::{object, optional_object, present, present_object, whole, ValidationErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SizingMode {
    /// No recommendation is made and nothing is read for it.
    Off,
    /// A recommendation is kept on the tenant; only a person applies it.
    #[default]
    Recommend,
    /// The rightsizer applies its recommendations itself, within the guards.
    Auto,
}

impl SizingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Recommend => "recommend",
            Self::Auto => "auto",
        }
    }
}

/// A task size as it travels and is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SizeDoc {
    #[serde(deserialize_with = "whole::required")]
    pub cpu: u32,
    #[serde(deserialize_with = "whole::required")]
    pub memory: u32,
}

impl From<TaskSize> for SizeDoc {
    fn from(s: TaskSize) -> Self {
        Self {
            cpu: s.cpu(),
            memory: s.memory(),
        }
    }
}

/// The smallest and the largest pair Fargate offers.
pub const SMALLEST: SizeDoc = SizeDoc {
    cpu: 256,
    memory: 512,
};
pub const LARGEST: SizeDoc = SizeDoc {
    cpu: 16384,
    memory: 122880,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingDoc {
    pub mode: SizingMode,
    #[serde(deserialize_with = "object")]
    pub min: SizeDoc,
    #[serde(deserialize_with = "object")]
    pub max: SizeDoc,
}

impl Default for SizingDoc {
    /// Recommend only, over every size Fargate offers.
    fn default() -> Self {
        Self {
            mode: SizingMode::Recommend,
            min: SMALLEST,
            max: LARGEST,
        }
    }
}

/// A size as a client sends it: a member left out takes its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeInput {
    #[serde(default, deserialize_with = "whole::optional")]
    pub cpu: Option<u32>,
    #[serde(default, deserialize_with = "whole::optional")]
    pub memory: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingInput {
    pub mode: Option<SizingMode>,
    #[serde(default, deserialize_with = "optional_object")]
    pub min: Option<SizeInput>,
    #[serde(default, deserialize_with = "optional_object")]
    pub max: Option<SizeInput>,
}

fn size_or(input: Option<SizeInput>, d: SizeDoc) -> SizeDoc {
    let i = input.unwrap_or_default();
    SizeDoc {
        cpu: i.cpu.unwrap_or(d.cpu),
        memory: i.memory.unwrap_or(d.memory),
    }
}

impl SizingInput {
    pub fn or_defaults(self, d: &SizingDoc) -> SizingDoc {
        SizingDoc {
            mode: self.mode.unwrap_or(d.mode),
            min: size_or(self.min, d.min),
            max: size_or(self.max, d.max),
        }
    }
}

/// A merge patch of a size: `null` returns a member to its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizePatch {
    #[serde(default, deserialize_with = "whole::present")]
    pub cpu: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::present")]
    pub memory: Option<Option<u32>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingPatch {
    #[serde(default, deserialize_with = "present")]
    pub mode: Option<Option<SizingMode>>,
    #[serde(default, deserialize_with = "present_object")]
    pub min: Option<Option<SizePatch>>,
    #[serde(default, deserialize_with = "present_object")]
    pub max: Option<Option<SizePatch>>,
}

fn patch_size(current: SizeDoc, default: SizeDoc, member: &Option<Option<SizePatch>>) -> SizeDoc {
    match member {
        None => current,
        Some(None) => default,
        Some(Some(p)) => SizeDoc {
            cpu: merge(&current.cpu, &default.cpu, &p.cpu),
            memory: merge(&current.memory, &default.memory, &p.memory),
        },
    }
}

impl SizingPatch {
    pub fn apply(&self, current: &SizingDoc, default: &SizingDoc) -> SizingDoc {
        SizingDoc {
            mode: merge(&current.mode, &default.mode, &self.mode),
            min: patch_size(current.min, default.min, &self.min),
            max: patch_size(current.max, default.max, &self.max),
        }
    }

    /// What each member sent keeps on its own: a cpu Fargate offers, a memory it offers
    /// for some cpu.
    pub fn check(&self, errors: &mut ValidationErrors) {
        for (bound, member) in [("min", &self.min), ("max", &self.max)] {
            let Some(Some(size)) = member else { continue };
            if let Some(Some(cpu)) = size.cpu {
                if !FARGATE_CPUS.contains(&cpu) {
                    errors.push(format!("spec.sizing.{bound}.cpu"), not_a_cpu(cpu));
                }
            }
            if let Some(Some(memory)) = size.memory {
                if !fargate_memories().contains(&memory) {
                    errors.push(
                        format!("spec.sizing.{bound}.memory"),
                        format!("memory {memory} MiB is not a size Fargate offers for any cpu"),
                    );
                }
            }
        }
    }
}

fn not_a_cpu(cpu: u32) -> String {
    format!("cpu {cpu} is not a Fargate size: use one of {FARGATE_CPUS:?}")
}

/// The bounds, checked: both are Fargate pairs and `min <= max` in cpu and in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub mode: SizingMode,
    pub min: TaskSize,
    pub max: TaskSize,
}

impl Sizing {
    pub fn validate(doc: SizingDoc, errors: &mut ValidationErrors) -> Option<Self> {
        let pair = |bound: &str, s: SizeDoc, errors: &mut ValidationErrors| {
            let field = if fargate_memory_for(s.cpu).is_some() {
                "memory"
            } else {
                "cpu"
            };
            TaskSize::new(s.cpu, s.memory)
                .map_err(|m| errors.push(format!("spec.sizing.{bound}.{field}"), m))
                .ok()
        };
        let min = pair("min", doc.min, errors);
        let max = pair("max", doc.max, errors);
        let (min, max) = (min?, max?);
        if min.cpu() > max.cpu() {
            errors.push(
                "spec.sizing.min.cpu",
                format!("min.cpu {} is above max.cpu {}", min.cpu(), max.cpu()),
            );
        }
        if min.memory() > max.memory() {
            errors.push(
                "spec.sizing.min.memory",
                format!(
                    "min.memory {} MiB is above max.memory {} MiB",
                    min.memory(),
                    max.memory()
                ),
            );
        }
        (min.cpu() <= max.cpu() && min.memory() <= max.memory()).then_some(Self {
            mode: doc.mode,
            min,
            max,
        })
    }

    pub fn to_doc(self) -> SizingDoc {
        SizingDoc {
            mode: self.mode,
            min: self.min.into(),
            max: self.max.into(),
        }
    }

    /// Whether `size` lies within the bounds.
    pub fn holds(&self, size: TaskSize) -> bool {
        (self.min.cpu()..=self.max.cpu()).contains(&size.cpu())
            && (self.min.memory()..=self.max.memory()).contains(&size.memory())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(doc: SizingDoc) -> Vec<String> {
        let mut errors = ValidationErrors::default();
        Sizing::validate(doc, &mut errors);
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn bounds_that_are_not_fargate_pairs_or_cross_are_named_by_field() {
        let mut doc = SizingDoc {
            min: SizeDoc {
                cpu: 4096,
                memory: 8192,
            },
            max: SizeDoc {
                cpu: 1024,
                memory: 4096,
            },
            ..SizingDoc::default()
        };
        assert_eq!(
            fields(doc),
            ["spec.sizing.min.cpu", "spec.sizing.min.memory"]
        );
        doc.min = SizeDoc {
            cpu: 300,
            memory: 512,
        };
        doc.max = SizeDoc {
            cpu: 256,
            memory: 4096,
        };
        assert_eq!(
            fields(doc),
            ["spec.sizing.min.cpu", "spec.sizing.max.memory"]
        );
        assert!(fields(SizingDoc::default()).is_empty());
    }

    #[test]
    fn a_size_is_an_object_never_an_array_of_its_members() {
        for bad in [json!({"min": [null, null]}), json!({"max": [256, 512]})] {
            let err = serde_json::from_value::<SizingPatch>(bad.clone()).unwrap_err();
            assert!(err.to_string().contains("a JSON object"), "{bad}: {err}");
            assert!(serde_json::from_value::<SizingInput>(bad).is_err());
        }
        assert!(serde_json::from_value::<SizingDoc>(json!({
            "mode": "auto", "min": [256, 512], "max": {"cpu": 256, "memory": 512}
        }))
        .is_err());
        let patch: SizingPatch = serde_json::from_value(json!({"min": null})).unwrap();
        assert_eq!(patch.min, Some(None));
    }

    #[test]
    fn a_patch_merges_into_each_bound_and_null_restores_the_default() {
        let current = SizingDoc {
            mode: SizingMode::Auto,
            min: SizeDoc {
                cpu: 512,
                memory: 1024,
            },
            max: SizeDoc {
                cpu: 2048,
                memory: 8192,
            },
        };
        let patch: SizingPatch =
            serde_json::from_value(json!({"max": {"memory": 16384}, "min": null})).unwrap();
        let after = patch.apply(&current, &SizingDoc::default());
        assert_eq!(after.mode, SizingMode::Auto);
        assert_eq!(after.min, SMALLEST);
        assert_eq!(
            after.max,
            SizeDoc {
                cpu: 2048,
                memory: 16384
            }
        );
    }
}
