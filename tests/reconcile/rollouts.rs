//! Fleet rollouts end to end: the API, the worker's controller and reconciler, and the AWS
//! emulator. Failures are made on purpose: the fault proxy refuses one tenant's new task
//! definition, or an alarm is put in ALARM while a tenant bakes.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::domain::state::StateSlug;

use crate::{
    harness::{settings, spec, Stack},
    proxy::{FaultConfig, Rule},
};

const TOKEN: &str = "rollout-tests-admin-token-0123456789";
const OLD: &str = "humangov/app:1.0.0";

struct Fleet {
    stack: Stack,
    api: String,
    http: reqwest::Client,
}

/// Ready tenants for `names`, their tasks behind their target groups, and the API.
async fn fleet(pool: PgPool, names: &[&str], faults: Option<FaultConfig>) -> Fleet {
    let stack = match faults {
        Some(f) => Stack::start_through(f, pool, 1, settings()).await,
        None => Stack::start(pool, 1, settings()).await,
    };
    for name in names {
        stack.create(name, spec()).await;
    }
    for name in names {
        stack.ready(name).await;
    }
    stack.attach_tasks().await;
    let api = stack.api(TOKEN).await;
    Fleet {
        stack,
        api,
        http: reqwest::Client::new(),
    }
}

/// A refusal of the new task definition of every tenant (or of those whose request also
/// holds `only`), in ECS's own words: a permanent error, so the tenant fails at once.
fn refuse_image(image: &str, only: Option<&str>) -> Rule {
    let rule = Rule::error(
        "ecs",
        "RegisterTaskDefinition",
        400,
        "ClientException",
        "Container.image repository humangov/app tag does not exist",
    )
    .body(image);
    match only {
        Some(text) => rule.body(text),
        None => rule,
    }
}

impl Fleet {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn start(&self, body: Value) -> String {
        let (status, created) = self.send(Method::POST, "/v1/rollouts", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// Starts a rollout of app 1.8.0 with `canary` alone in a canary baking for an hour, and
    /// waits until it bakes.
    async fn canary_baking(&self, canary: &str) -> String {
        let id = self
            .start(json!({
                "patch": {"app_image": "humangov/app:1.8.0"},
                "strategy": {"canary": [canary], "waves": [1, "rest"], "canary_bake": "1h"},
            }))
            .await;
        self.until(&id, Duration::from_secs(60), |r| {
            target(r, canary)["state"] == "baking"
        })
        .await;
        id
    }

    async fn rollout(&self, id: &str) -> Value {
        self.send(Method::GET, &format!("/v1/rollouts/{id}"), None)
            .await
            .1
    }

    async fn op(&self, id: &str, op: &str, body: Option<Value>) -> Value {
        let (status, answer) = self
            .send(Method::POST, &format!("/v1/rollouts/{id}/{op}"), body)
            .await;
        assert_eq!(status, 200, "{op}: {answer}");
        answer
    }

    /// Waits until the rollout satisfies `done`.
    async fn until(&self, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.rollout(id).await;
            if done(&r) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rollout did not get there in {timeout:?}: {:#}",
                r
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ended(&self, id: &str) -> Value {
        self.until(id, Duration::from_secs(180), |r| {
            r["finished_at"].is_string()
        })
        .await
    }

    async fn events(&self, id: &str) -> Vec<Value> {
        let (_, page) = self
            .send(
                Method::GET,
                &format!("/v1/rollouts/{id}/events?limit=500"),
                None,
            )
            .await;
        page["items"].as_array().unwrap().clone()
    }

    /// The task definition the tenant's ECS service runs.
    async fn task_definition(&self, name: &str) -> String {
        self.running(name).await.0
    }

    /// The image of the `app` container of the task definition the service runs.
    async fn image(&self, name: &str) -> String {
        self.running(name).await.1
    }

    /// The task definition the tenant's ECS service runs, and its `app` image, read with
    /// the clients of the tenant's cell.
    async fn running(&self, name: &str) -> (String, String) {
        let tenant = self.stack.tenant(name).await;
        let cell = self.stack.platform.cell(&tenant.cell).unwrap();
        let aws = self
            .stack
            .cell_aws
            .get(&cell.name)
            .unwrap_or(&self.stack.aws);
        let names = cell.names(&self.stack.platform.prefix, StateSlug::parse(name).unwrap());
        let out = aws
            .ecs
            .describe_services()
            .cluster(&cell.cluster)
            .services(&names.service)
            .send()
            .await
            .unwrap();
        let arn = out.services()[0].task_definition().unwrap().to_owned();
        let def = aws
            .ecs
            .describe_task_definition()
            .task_definition(&arn)
            .send()
            .await
            .unwrap();
        let image = def
            .task_definition()
            .unwrap()
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some("app"))
            .and_then(|c| c.image())
            .unwrap()
            .to_owned();
        (arn, image)
    }
}

/// Puts the tenant's 5xx-rate alarm in ALARM, with `aws` (its cell's clients); its name.
async fn alarm_5xx(
    aws: &statehouse::aws::Aws,
    names: &statehouse::reconcile::names::TenantNames,
) -> String {
    let alarm = format!("{}5xx-rate", names.alarm_prefix);
    aws.cloudwatch
        .set_alarm_state()
        .alarm_name(&alarm)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("5xx above 5% for 3 of 5 minutes")
        .send()
        .await
        .unwrap();
    alarm
}

/// The rollout's `tenant.failed` event: it names the alarm and says `alarm` set it off.
fn failed_on_alarm<'a>(events: &'a [Value], alarm: &str) -> &'a Value {
    let failed = events
        .iter()
        .find(|e| e["action"] == "tenant.failed")
        .unwrap();
    assert_eq!(failed["trigger"], "alarm", "{failed}");
    assert!(
        failed["message"].as_str().unwrap().contains(alarm),
        "{failed}"
    );
    failed
}

fn target<'a>(rollout: &'a Value, name: &str) -> &'a Value {
    rollout["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {rollout:#}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("a time, not {v}"))
        .parse()
        .unwrap()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

const TWELVE: [&str; 12] = [
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
    "idaho",
];

#[sqlx::test]
async fn a_new_image_reaches_every_tenant_wave_by_wave_and_becomes_the_default(pool: PgPool) {
    let f = fleet(pool, &TWELVE, None).await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:1.6.0"},
            "strategy": {"canary": 1, "waves": [1, 3, "rest"], "canary_bake": "1s", "bake": "1s", "max_concurrent": 3},
        }))
        .await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for name in TWELVE {
        assert_eq!(f.image(name).await, "humangov/app:1.6.0", "{name}");
        assert_eq!(target(&done, name)["state"], "succeeded");
    }
    let changes = f.stack.rollout_writes(&id).await;
    assert_eq!(changes.len(), 12);
    assert!(
        changes.values().all(|n| *n == 1),
        "each changed once: {changes:?}"
    );

    let tenants = done["tenants"].as_array().unwrap();
    let of_wave = |w: i64| tenants.iter().filter(move |t| t["wave"] == w);
    assert_eq!(
        (1..=3).map(|w| of_wave(w).count()).collect::<Vec<_>>(),
        [1, 3, 8]
    );
    for w in 1..3 {
        let last_done = of_wave(w).map(|t| time(&t["finished_at"])).max().unwrap();
        let first_start = of_wave(w + 1)
            .map(|t| time(&t["started_at"]))
            .min()
            .unwrap();
        assert!(
            last_done <= first_start,
            "wave {} started before wave {w} ended",
            w + 1
        );
    }
    for t in tenants {
        let at = time(&t["started_at"]);
        let running = tenants
            .iter()
            .filter(|o| time(&o["started_at"]) <= at && at < time(&o["finished_at"]))
            .count();
        assert!(running <= 3, "{running} tenants at once at {at}");
    }

    let (_, defaults) = f.send(Method::GET, "/v1/fleet/defaults", None).await;
    assert_eq!(defaults["spec"]["app_image"], "humangov/app:1.6.0");
    assert_eq!(defaults["updated_by"], format!("rollout:{id}"));
    let (status, later) = f
        .send(Method::POST, "/v1/tenants", Some(json!({"name": "iowa"})))
        .await;
    assert_eq!(status, 202);
    assert_eq!(later["spec"]["app_image"], "humangov/app:1.6.0");
    f.stack.ready("iowa").await;
    assert_eq!(f.image("iowa").await, "humangov/app:1.6.0");
    let events = f.events(&id).await;
    let waves: Vec<&str> = actions(&events)
        .into_iter()
        .filter(|a| a.starts_with("wave."))
        .collect();
    assert_eq!(waves, ["wave.started", "wave.started"]);
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_failing_canary_halts_the_rollout_and_is_rolled_back(pool: PgPool) {
    let faults = FaultConfig::default().rule(refuse_image("app:bad", None));
    let f = fleet(pool, &["ohio", "texas", "utah"], Some(faults)).await;
    let before = f.task_definition("ohio").await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:bad"},
            "strategy": {"canary": ["ohio"], "waves": [1, "rest"], "canary_bake": "1s"},
        }))
        .await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    assert_eq!(target(&done, "ohio")["state"], "reverted");
    assert_eq!(f.task_definition("ohio").await, before);
    f.stack.ready("ohio").await;
    assert_eq!(f.stack.tenant("ohio").await.spec.app_image, OLD);
    for name in ["texas", "utah"] {
        assert_eq!(target(&done, name)["state"], "cancelled");
        assert_eq!(f.stack.tenant(name).await.generation, 1, "{name} untouched");
    }
    assert_eq!(
        f.stack.rollout_writes(&id).await,
        BTreeMap::from([("ohio".to_owned(), 2)])
    );
    let events = f.events(&id).await;
    let failed = events
        .iter()
        .find(|e| e["action"] == "tenant.failed")
        .unwrap();
    assert_eq!(failed["tenant_name"], "ohio");
    assert_eq!(failed["trigger"], "gate");
    assert!(failed["message"]
        .as_str()
        .unwrap()
        .contains("tag does not exist"));
    let halted = events
        .iter()
        .find(|e| e["action"] == "rollout.halted")
        .unwrap();
    assert!(halted["actor"].as_str().unwrap().starts_with("controller:"));
    assert_eq!(
        actions(&events)
            .into_iter()
            .filter(|a| a.starts_with("tenant.") || a.starts_with("rollout."))
            .collect::<Vec<_>>(),
        [
            "rollout.created",
            "tenant.started",
            "tenant.failed",
            "rollout.halted",
            "tenant.reverting",
            "tenant.reverted",
            "rollout.rolled_back"
        ]
    );
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_failing_canary_with_pause_waits_and_goes_on_after_a_fix(pool: PgPool) {
    // The registry has the image from the second try on: the fix.
    let faults = FaultConfig::default().rule(refuse_image("app:1.7.0", None).first(1));
    let f = fleet(pool, &["ohio", "texas", "utah"], Some(faults)).await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:1.7.0"},
            "strategy": {"canary": ["texas"], "waves": [1, "rest"], "canary_bake": "1s", "bake": "1s", "on_failure": "pause"},
        }))
        .await;
    let paused = f
        .until(&id, Duration::from_secs(60), |r| r["state"] == "paused")
        .await;
    assert!(
        paused["reason"].as_str().unwrap().contains("texas"),
        "{paused:#}"
    );
    assert_eq!(target(&paused, "texas")["state"], "failed");
    for name in ["ohio", "utah"] {
        assert_eq!(target(&paused, name)["state"], "pending");
    }
    // It waits: nothing else starts while paused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(f.rollout(&id).await["state"], "paused");
    assert_eq!(f.stack.tenant("ohio").await.generation, 1);

    f.op(&id, "resume", None).await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for name in ["ohio", "texas", "utah"] {
        assert_eq!(f.image(name).await, "humangov/app:1.7.0", "{name}");
    }
    assert!(actions(&f.events(&id).await).contains(&"rollout.resumed"));
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_paused_rollout_aborted_with_rollback_puts_the_canary_back(pool: PgPool) {
    let faults = FaultConfig::default().rule(refuse_image("app:bad", None));
    let f = fleet(pool, &["ohio", "texas"], Some(faults)).await;
    let before = f.task_definition("ohio").await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:bad"},
            "strategy": {"canary": ["ohio"], "waves": [1, "rest"], "on_failure": "pause"},
        }))
        .await;
    f.until(&id, Duration::from_secs(60), |r| r["state"] == "paused")
        .await;
    f.op(&id, "abort", Some(json!({"rollback": true}))).await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    assert_eq!(target(&done, "ohio")["state"], "reverted");
    assert_eq!(f.task_definition("ohio").await, before);
    assert_eq!(f.stack.tenant("texas").await.generation, 1);
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_failure_in_wave_two_rolls_back_waves_two_then_one_and_never_starts_three(pool: PgPool) {
    let six = &TWELVE[..6];
    let faults = FaultConfig::default().rule(refuse_image("app:2.0.0", Some("humangov-arizona")));
    let f = fleet(pool, six, Some(faults)).await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:2.0.0"},
            "strategy": {"canary": ["alabama"], "waves": [1, 2, "rest"], "canary_bake": "1s", "bake": "1s"},
        }))
        .await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    assert_eq!(target(&done, "arizona")["wave"], 2);
    for name in ["alabama", "alaska", "arizona"] {
        assert_eq!(target(&done, name)["state"], "reverted", "{name}");
        assert_eq!(f.image(name).await, OLD, "{name}");
    }
    for name in ["arkansas", "california", "colorado"] {
        assert_eq!(target(&done, name)["state"], "cancelled", "{name}");
        assert_eq!(f.stack.tenant(name).await.generation, 1, "{name} untouched");
    }
    // Newest wave first: the canary is put back only once wave 2 is.
    let canary_back = time(&target(&done, "alabama")["revert_started_at"]);
    for name in ["alaska", "arizona"] {
        assert!(
            time(&target(&done, name)["finished_at"]) <= canary_back,
            "{name}"
        );
    }
    f.stack.stop().await;
}

#[sqlx::test]
async fn an_alarm_in_alarm_during_the_bake_fails_the_tenant(pool: PgPool) {
    let f = fleet(pool, &["ohio", "texas"], None).await;
    let id = f.canary_baking("ohio").await;
    let alarm = alarm_5xx(
        &f.stack.aws,
        &f.stack.platform.names(StateSlug::parse("ohio").unwrap()),
    )
    .await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    let ohio = target(&done, "ohio");
    assert_eq!(ohio["state"], "reverted");
    let events = f.events(&id).await;
    failed_on_alarm(&events, &alarm);
    let halted = events
        .iter()
        .find(|e| e["action"] == "rollout.halted")
        .unwrap();
    assert_eq!(halted["trigger"], "alarm");
    assert_eq!(target(&done, "texas")["state"], "cancelled");
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_tenant_changed_by_hand_mid_rollout_keeps_its_change_and_promote_ends_a_long_bake(
    pool: PgPool,
) {
    let f = fleet(pool, &["ohio", "texas", "utah"], None).await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:1.9.0"},
            "strategy": {"canary": ["ohio"], "waves": [1, "rest"], "canary_bake": "1h", "bake": "0s"},
        }))
        .await;
    f.until(&id, Duration::from_secs(60), |r| {
        target(r, "ohio")["state"] == "baking"
    })
    .await;
    let response = f
        .http
        .get(format!("{}/v1/tenants/texas", f.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let etag = response.headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    let patched = f
        .http
        .patch(format!("{}/v1/tenants/texas", f.api))
        .bearer_auth(TOKEN)
        .header(header::IF_MATCH, etag)
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({"spec": {"app_image": "humangov/app:hotfix"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let promoted = f.op(&id, "promote", None).await;
    assert_eq!(promoted["state"], "running");
    let done = f
        .until(&id, Duration::from_secs(60), |r| {
            r["finished_at"].is_string()
        })
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let texas = target(&done, "texas");
    assert_eq!(texas["state"], "superseded");
    assert!(
        texas["reason"].as_str().unwrap().contains("someone else"),
        "{texas}"
    );
    f.stack.ready("texas").await;
    assert_eq!(f.image("texas").await, "humangov/app:hotfix");
    assert_eq!(f.image("utah").await, "humangov/app:1.9.0");
    assert_eq!(f.image("ohio").await, "humangov/app:1.9.0");
    assert!(!f.stack.rollout_writes(&id).await.contains_key("texas"));
    let events = f.events(&id).await;
    let promote = events
        .iter()
        .find(|e| e["action"] == "rollout.promoted")
        .unwrap();
    assert_eq!(promote["trigger"], "user");
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_deployment_that_never_completes_times_out_and_a_rollback_that_cannot_finish_says_who(
    pool: PgPool,
) {
    // An emulator whose services never run a task: no deployment ever completes.
    let stack = Stack::start_with(pool, 0, settings(), Duration::from_secs(600)).await;
    stack.create("ohio", spec()).await;
    let f = Fleet {
        api: stack.api(TOKEN).await,
        stack,
        http: reqwest::Client::new(),
    };
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:2.0.0"},
            "strategy": {"canary": ["ohio"], "waves": [1], "deploy_timeout": "2s"},
        }))
        .await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "rollback_failed", "{done:#}");
    assert!(
        done["reason"].as_str().unwrap().contains("stuck: ohio"),
        "{done:#}"
    );
    let ohio = target(&done, "ohio");
    assert_eq!(ohio["state"], "revert_failed");
    assert!(
        ohio["failure"].as_str().unwrap().contains("within 2s"),
        "{ohio}"
    );
    let events = f.events(&id).await;
    let triggers: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["tenant_name"] == "ohio" && e["action"].as_str().unwrap().contains("failed"))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["trigger"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        triggers,
        [
            ("tenant.failed", "timeout"),
            ("tenant.revert_failed", "timeout")
        ]
    );
    // The previous spec is what the tenant wants again, whatever the rollback's verdict.
    assert_eq!(f.stack.tenant("ohio").await.spec.app_image, OLD);
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_bake_with_min_requests_lasts_until_the_tenant_has_served_them(pool: PgPool) {
    let f = fleet(pool, &["ohio"], None).await;
    let id = f
        .start(json!({
            "patch": {"app_image": "humangov/app:2.1.0"},
            "strategy": {"canary": 1, "waves": [1], "canary_bake": "1s", "min_requests": 50},
        }))
        .await;
    let baking = f
        .until(&id, Duration::from_secs(60), |r| {
            target(r, "ohio")["state"] == "baking"
        })
        .await;
    let bake_ends = time(&target(&baking, "ohio")["bake_ends_at"]);
    // Its bake time is over, but it has served nothing: it goes on baking.
    let wait = (bake_ends - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    tokio::time::sleep(wait).await;
    assert_eq!(target(&f.rollout(&id).await, "ohio")["state"], "baking");
    // The load balancer reports 80 requests since it became ready.
    let tenant = f.stack.tenant("ohio").await;
    let tg = tenant.resources["target_group"]["arn"].as_str().unwrap();
    let dim = |k: &str, v: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(k)
            .value(v)
            .build()
    };
    f.stack
        .aws
        .cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("RequestCount")
                .dimensions(dim(
                    "TargetGroup",
                    statehouse::reconcile::alarms::target_group_dimension(tg),
                ))
                .dimensions(dim(
                    "LoadBalancer",
                    &statehouse::reconcile::alarms::load_balancer_dimension(
                        &f.stack.cell().listener_arn,
                    ),
                ))
                .timestamp(aws_smithy_types::DateTime::from_secs(
                    Utc::now().timestamp(),
                ))
                .value(80.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let events = f.events(&id).await;
    let succeeded = events
        .iter()
        .find(|e| e["action"] == "tenant.succeeded")
        .unwrap();
    assert_eq!(succeeded["details"]["requests"], 80.0, "{succeeded}");
    f.stack.stop().await;
}

#[sqlx::test]
async fn a_canary_in_another_account_is_gated_on_that_account_s_alarms_and_put_back_there(
    pool: PgPool,
) {
    let stack = Stack::with_dedicated_cell(pool).await;
    stack.create_in("vermont", spec(), "dedicated").await;
    stack.create("ohio", spec()).await;
    stack.ready("vermont").await;
    stack.ready("ohio").await;
    stack.attach_tasks().await;
    let api = stack.api(TOKEN).await;
    let f = Fleet {
        stack,
        api,
        http: reqwest::Client::new(),
    };
    let there = f.stack.cell_aws["dedicated"].clone();
    let cell = f.stack.platform.cell("dedicated").unwrap().clone();
    let names = cell.names(
        &f.stack.platform.prefix,
        StateSlug::parse("vermont").unwrap(),
    );
    let (arn, image) = f.running("vermont").await;
    assert!(
        arn.contains(":222222222222:"),
        "read in its own account: {arn}"
    );
    assert_eq!(image, OLD);

    let id = f.canary_baking("vermont").await;
    assert_eq!(
        f.image("vermont").await,
        "humangov/app:1.8.0",
        "the canary runs the new image there"
    );
    // In ALARM in the dedicated account only: the main account has no alarm of that name.
    let alarm = alarm_5xx(&there, &names).await;
    let done = f.ended(&id).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    assert_eq!(target(&done, "vermont")["state"], "reverted");
    assert_eq!(target(&done, "ohio")["state"], "cancelled");
    failed_on_alarm(&f.events(&id).await, &alarm);
    // Put back on the old image there (the first revision was retired once the canary's
    // deployment moved past it, so the same rendering is registered again).
    f.stack.ready("vermont").await;
    assert_eq!(f.image("vermont").await, OLD);
    assert_eq!(f.stack.tenant("vermont").await.spec.app_image, OLD);
    f.stack.stop().await;
}
