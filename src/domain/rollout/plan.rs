//! The plan a rollout is created with, and never changes: which tenant goes in which wave,
//! each with its spec before and after, and which selected tenants it leaves alone and why.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Canary, Strategy};
use crate::{
    domain::{
        spec::SpecDoc,
        tenant::{Tenant, TenantStatus},
        FieldError, ValidationErrors,
    },
    health::HealthStatus,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// An operator paused it: statehouse does not touch it.
    Paused,
    /// Its last change failed; fix it first (a rollout would pile a change on a failure).
    Failed,
    Deleting,
    /// Its spec already is what the patch makes it.
    AtTarget,
}

/// A selected tenant the plan leaves alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Skip {
    pub name: String,
    pub reason: SkipReason,
}

/// One tenant the rollout will change.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTarget {
    pub tenant_id: Uuid,
    pub name: String,
    pub wave: i32,
    /// Its place in the order the wave's tenants start in.
    pub position: i32,
    pub from: SpecDoc,
    pub to: SpecDoc,
    /// The tenant's generation now: the rollout changes it only if it is still this.
    pub generation: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In wave order, and in start order within each wave.
    pub targets: Vec<PlannedTarget>,
    pub skipped: Vec<Skip>,
    pub waves: i32,
}

fn skip_reason(t: &Tenant, to: &SpecDoc) -> Option<SkipReason> {
    if t.deletion_requested_at.is_some() || t.status == TenantStatus::Deleting {
        Some(SkipReason::Deleting)
    } else if t.paused_at.is_some() {
        Some(SkipReason::Paused)
    } else if t.status == TenantStatus::Failed {
        Some(SkipReason::Failed)
    } else if &t.spec == to {
        Some(SkipReason::AtTarget)
    } else {
        None
    }
}

/// The plan for the `selected` tenants (live ones, in any order), each to get `patched` of
/// its spec. Errors name what does not fit: a patch some tenant's spec cannot hold (under
/// `patch.*`), a canary or waves the tenants to change do not add up to.
pub fn plan(
    selected: &[Tenant],
    patched: impl Fn(&SpecDoc) -> Result<SpecDoc, ValidationErrors>,
    strategy: &Strategy,
) -> Result<Plan, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let mut skipped = Vec::new();
    let mut changing = Vec::new();
    for t in selected {
        let to = match patched(&t.spec) {
            Ok(to) => to,
            Err(found) => {
                for e in found.0 {
                    let field = e.field.replacen("spec.", "patch.", 1);
                    let error = FieldError::new(field, e.message);
                    if !errors.0.contains(&error) {
                        errors.0.push(error);
                    }
                }
                continue;
            }
        };
        match skip_reason(t, &to) {
            Some(reason) => skipped.push(Skip {
                name: t.name.clone(),
                reason,
            }),
            None => changing.push((t, to)),
        }
    }
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    // Healthy tenants go first: a canary that is already degraded fails its gate for
    // reasons of its own.
    let health_rank = |t: &Tenant| match t.health.known() {
        Some(HealthStatus::Healthy) => 0,
        None | Some(HealthStatus::Unknown) => 1,
        Some(HealthStatus::Degraded) => 2,
        Some(HealthStatus::Down) => 3,
    };
    changing.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name));
    let canary_first = |names: &[crate::domain::state::StateSlug],
                        errors: &mut ValidationErrors| {
        for (i, slug) in names.iter().enumerate() {
            if !changing.iter().any(|(t, _)| t.name == slug.as_str()) {
                let why = skipped.iter().find(|s| s.name == slug.as_str()).map_or(
                    "it is not selected, or has no live tenant".to_owned(),
                    |s| format!("it is skipped ({})", skip_text(s.reason)),
                );
                errors.push(
                    format!("strategy.canary[{i}]"),
                    format!("{slug} cannot be the canary: {why}"),
                );
            }
        }
    };
    let mut order: Vec<usize> = (0..changing.len()).collect();
    match &strategy.canary {
        Canary::Names(names) => {
            canary_first(names, &mut errors);
            order.sort_by_key(|&i| {
                let name = &changing[i].0.name;
                names
                    .iter()
                    .position(|n| n.as_str() == name)
                    .unwrap_or(usize::MAX)
            });
        }
        Canary::Count(n) => {
            let mut by_health = order.clone();
            by_health.sort_by_key(|&i| health_rank(changing[i].0));
            let canary: Vec<usize> = by_health.into_iter().take(*n as usize).collect();
            order.retain(|i| !canary.contains(i));
            order.splice(0..0, canary);
        }
    }
    let count = changing.len() as u32;
    let canary = strategy.canary.size();
    if count > 0 && canary > count {
        errors.push(
            "strategy.canary",
            format!("the canary holds {canary} tenants but only {count} are to change"),
        );
    }
    let sizes = strategy.wave_sizes(count).unwrap_or_else(|| {
        errors.push(
            "strategy.waves",
            format!(
                "the waves leave tenants out: {count} are to change; end them with \"rest\" or make them larger"
            ),
        );
        Vec::new()
    });
    if !errors.0.is_empty() {
        return Err(errors);
    }
    let mut targets = Vec::with_capacity(changing.len());
    let mut next = order.into_iter();
    for (w, size) in sizes.iter().enumerate() {
        for position in 0..*size {
            let Some(i) = next.next() else { break };
            let (t, to) = &changing[i];
            targets.push(PlannedTarget {
                tenant_id: t.id,
                name: t.name.clone(),
                wave: w as i32 + 1,
                position: position as i32,
                from: t.spec.clone(),
                to: to.clone(),
                generation: t.generation,
            });
        }
    }
    Ok(Plan {
        targets,
        skipped,
        waves: sizes.len() as i32,
    })
}

pub fn skip_text(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::Paused => "paused",
        SkipReason::Failed => "failed",
        SkipReason::Deleting => "being deleted",
        SkipReason::AtTarget => "already at the target spec",
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::{domain::rollout::StrategyInput, health::Health};

    fn spec(image: &str) -> SpecDoc {
        SpecDoc {
            app_image: image.into(),
            nginx_image: "nginx:1.27".into(),
            cpu: 256,
            memory: 512,
            desired_count: 1,
            min_count: 1,
            max_count: 2,
            env: Default::default(),
            sizing: Default::default(),
        }
    }

    fn tenant(name: &str, status: TenantStatus, image: &str) -> Tenant {
        Tenant {
            id: Uuid::now_v7(),
            name: name.into(),
            display_name: name.into(),
            postal_code: "XX".into(),
            status,
            generation: 3,
            observed_generation: 3,
            spec: spec(image),
            resources: json!({}),
            endpoint: None,
            conditions: vec![],
            last_error: None,
            cell: "cell-1".into(),
            data_policy: None,
            deletion_requested_at: None,
            paused_at: None,
            paused_reason: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            deleted_at: None,
            health: Health::default(),
            sizing: Default::default(),
        }
    }

    fn to_v2(s: &SpecDoc) -> Result<SpecDoc, ValidationErrors> {
        Ok(SpecDoc {
            app_image: "app:2".into(),
            ..s.clone()
        })
    }

    fn strategy(value: serde_json::Value) -> Strategy {
        serde_json::from_value::<StrategyInput>(value)
            .unwrap()
            .resolve()
            .unwrap()
    }

    fn waves(p: &Plan) -> Vec<Vec<&str>> {
        (1..=p.waves)
            .map(|w| {
                p.targets
                    .iter()
                    .filter(|t| t.wave == w)
                    .map(|t| t.name.as_str())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_named_canary_goes_first_and_the_rest_follow_in_name_order() {
        let fleet: Vec<_> = ["ohio", "iowa", "utah", "texas", "maine"]
            .iter()
            .map(|n| tenant(n, TenantStatus::Ready, "app:1"))
            .collect();
        let p = plan(
            &fleet,
            to_v2,
            &strategy(json!({"canary": ["utah"], "waves": [1, 2, "rest"]})),
        )
        .unwrap();
        assert_eq!(
            waves(&p),
            [vec!["utah"], vec!["iowa", "maine"], vec!["ohio", "texas"]]
        );
        assert!(p
            .targets
            .iter()
            .all(|t| t.from.app_image == "app:1" && t.to.app_image == "app:2"));
    }

    #[test]
    fn a_counted_canary_is_a_healthy_tenant() {
        let mut fleet: Vec<_> = ["alaska", "iowa"]
            .iter()
            .map(|n| tenant(n, TenantStatus::Ready, "app:1"))
            .collect();
        fleet[0].health.status = HealthStatus::Degraded;
        fleet[1].health.status = HealthStatus::Healthy;
        let p = plan(&fleet, to_v2, &strategy(json!({}))).unwrap();
        assert_eq!(waves(&p), [vec!["iowa"], vec!["alaska"]]);
    }

    #[test]
    fn paused_failed_deleting_and_up_to_date_tenants_are_skipped_with_the_reason() {
        let mut paused = tenant("ohio", TenantStatus::Ready, "app:1");
        paused.paused_at = Some(Utc::now());
        let fleet = vec![
            paused,
            tenant("iowa", TenantStatus::Failed, "app:1"),
            tenant("utah", TenantStatus::Deleting, "app:1"),
            tenant("texas", TenantStatus::Ready, "app:2"),
            tenant("maine", TenantStatus::Ready, "app:1"),
        ];
        let p = plan(&fleet, to_v2, &strategy(json!({}))).unwrap();
        assert_eq!(waves(&p), [vec!["maine"]]);
        let skipped: Vec<_> = p
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                ("iowa", SkipReason::Failed),
                ("ohio", SkipReason::Paused),
                ("texas", SkipReason::AtTarget),
                ("utah", SkipReason::Deleting)
            ]
        );
    }

    #[test]
    fn a_canary_larger_than_the_change_or_not_in_it_is_refused() {
        let fleet = vec![
            tenant("ohio", TenantStatus::Ready, "app:1"),
            tenant("texas", TenantStatus::Ready, "app:2"),
        ];
        let fields = |s| {
            plan(&fleet, to_v2, &s)
                .unwrap_err()
                .0
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(strategy(json!({"canary": 2}))), ["strategy.canary"]);
        let err = plan(&fleet, to_v2, &strategy(json!({"canary": ["texas"]}))).unwrap_err();
        assert_eq!(err.0[0].field, "strategy.canary[0]");
        assert!(err.0[0].message.contains("already at the target"), "{err}");
    }

    #[test]
    fn a_patch_a_tenant_cannot_hold_is_named_under_patch() {
        let fleet = vec![tenant("ohio", TenantStatus::Ready, "app:1")];
        let bad = |_: &SpecDoc| {
            let mut e = ValidationErrors::default();
            e.push("spec.memory", "memory 8192 MiB does not fit cpu 256");
            Err(e)
        };
        let err = plan(&fleet, bad, &strategy(json!({}))).unwrap_err();
        assert_eq!(err.0[0].field, "patch.memory");
    }
}
