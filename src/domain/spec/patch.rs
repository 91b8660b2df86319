//! A JSON merge patch (RFC 7396) of a spec, typed: a body that does not fit the shape is
//! refused by name (`spec.memory`) before anything else is looked at.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    check_count_cap, check_env_len, check_env_var, check_image, schema::fargate_memories,
    sizing::SizingPatch, SpecDoc, SpecLimits, FARGATE_CPUS,
};
use crate::domain::{present, whole, ValidationErrors};

/// A member left out keeps its value; `null` returns it to its default; in `env`, `null`
/// removes a variable and any other member sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecPatch {
    #[serde(default, deserialize_with = "present")]
    pub app_image: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub nginx_image: Option<Option<String>>,
    #[serde(default, deserialize_with = "whole::present")]
    pub cpu: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::present")]
    pub memory: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::present")]
    pub desired_count: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::present")]
    pub min_count: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::present")]
    pub max_count: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub env: Option<Option<BTreeMap<String, Option<String>>>>,
    #[serde(default, deserialize_with = "crate::domain::present_object")]
    pub sizing: Option<Option<SizingPatch>>,
}

/// One member of a merge patch: left out, `null`, or a value.
pub(super) fn merge<T: Clone>(current: &T, default: &T, member: &Option<Option<T>>) -> T {
    match member {
        None => current.clone(),
        Some(None) => default.clone(),
        Some(Some(value)) => value.clone(),
    }
}

impl SpecPatch {
    /// The rules each member sent keeps on its own, which the document states as schema
    /// keywords; checked before anything is looked up. The rules between members apply to
    /// the spec [`SpecPatch::apply`] makes.
    pub fn check(&self, limits: SpecLimits) -> ValidationErrors {
        let mut errors = ValidationErrors::default();
        for (field, image) in [
            ("spec.app_image", &self.app_image),
            ("spec.nginx_image", &self.nginx_image),
        ] {
            if let Some(Some(image)) = image {
                check_image(field, image, &mut errors);
            }
        }
        if let Some(Some(cpu)) = self.cpu {
            if !FARGATE_CPUS.contains(&cpu) {
                errors.push(
                    "spec.cpu",
                    format!("cpu {cpu} is not a Fargate size: use one of {FARGATE_CPUS:?}"),
                );
            }
        }
        if let Some(Some(memory)) = self.memory {
            if !fargate_memories().contains(&memory) {
                errors.push(
                    "spec.memory",
                    format!("memory {memory} MiB is not a size Fargate offers for any cpu"),
                );
            }
        }
        for (field, count) in [
            ("min_count", self.min_count),
            ("desired_count", self.desired_count),
            ("max_count", self.max_count),
        ] {
            if let Some(Some(count)) = count {
                check_count_cap(field, count, limits, &mut errors);
            }
        }
        if let Some(Some(env)) = &self.env {
            check_env_len(env.len(), &mut errors);
            for (name, value) in env {
                check_env_var(name, value.as_deref(), &mut errors);
            }
        }
        if let Some(Some(sizing)) = &self.sizing {
            sizing.check(&mut errors);
        }
        errors
    }

    /// The spec after this patch: what RFC 7396 gives when the result's missing members take
    /// `defaults`. The result is not checked; validate it like any other spec.
    pub fn apply(&self, current: &SpecDoc, defaults: &SpecDoc) -> SpecDoc {
        let env = match &self.env {
            None => current.env.clone(),
            Some(None) => defaults.env.clone(),
            Some(Some(changes)) => {
                let mut env = current.env.clone();
                for (name, value) in changes {
                    match value {
                        Some(value) => env.insert(name.clone(), value.clone()),
                        None => env.remove(name),
                    };
                }
                env
            }
        };
        SpecDoc {
            app_image: merge(&current.app_image, &defaults.app_image, &self.app_image),
            nginx_image: merge(
                &current.nginx_image,
                &defaults.nginx_image,
                &self.nginx_image,
            ),
            cpu: merge(&current.cpu, &defaults.cpu, &self.cpu),
            memory: merge(&current.memory, &defaults.memory, &self.memory),
            desired_count: merge(
                &current.desired_count,
                &defaults.desired_count,
                &self.desired_count,
            ),
            min_count: merge(&current.min_count, &defaults.min_count, &self.min_count),
            max_count: merge(&current.max_count, &defaults.max_count, &self.max_count),
            env,
            sizing: match &self.sizing {
                None => current.sizing,
                Some(None) => defaults.sizing,
                Some(Some(p)) => p.apply(&current.sizing, &defaults.sizing),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(cpu: u32, env: &[(&str, &str)]) -> SpecDoc {
        SpecDoc {
            app_image: "humangov/app:1".into(),
            nginx_image: "nginx:1.27".into(),
            cpu,
            memory: 2048,
            desired_count: 2,
            min_count: 1,
            max_count: 4,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sizing: Default::default(),
        }
    }

    fn patch(value: serde_json::Value) -> SpecPatch {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn left_out_keeps_null_restores_the_default_and_a_value_sets() {
        let current = doc(512, &[("A", "1"), ("B", "2")]);
        let defaults = doc(256, &[]);
        let after = patch(json!({"cpu": null, "max_count": 6, "env": {"A": null, "C": "3"}}))
            .apply(&current, &defaults);
        assert_eq!(after.cpu, 256);
        assert_eq!(after.max_count, 6);
        assert_eq!(after.desired_count, 2);
        assert_eq!(
            after.env,
            doc(0, &[("B", "2"), ("C", "3")]).env,
            "null removes a variable, a string sets one, the rest stay"
        );
        let reset = patch(json!({"env": null})).apply(&current, &defaults);
        assert!(reset.env.is_empty());
        assert_eq!(patch(json!({})).apply(&current, &defaults), current);
    }

    #[test]
    fn a_member_of_the_wrong_type_is_an_error_that_names_it() {
        for (body, path) in [
            (json!({"memory": true}), "memory"),
            (json!({"env": {"A": 1}}), "env.A"),
            (json!({"cpu": -256}), "cpu"),
            (json!({"replicas": 2}), "replicas"),
        ] {
            let err = serde_path_to_error::deserialize::<_, SpecPatch>(body).unwrap_err();
            assert_eq!(err.path().to_string(), path);
        }
    }
}
