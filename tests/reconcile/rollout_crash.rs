//! Crash safety of rollouts: the worker, as a real process, is SIGKILLed at chosen points
//! of a 20-tenant rollout and of its rollback (AWS calls of the reconciler, and the point
//! between a controller step's decision and its commit), and started again each time.
//! Each tenant must be changed exactly once, none skipped, and the rollback must leave
//! alone a tenant someone changed by hand.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::domain::{spec::SpecDoc, state::StateSlug};

use crate::{
    harness::{spec, Stack},
    process::{database_url, killed, worker_env, Proc},
    proxy::{FaultConfig, Rule},
};

const TOKEN: &str = "rollout-crash-admin-token-0123456789";

/// Where the worker is killed while the rollout goes forward.
const FORWARD_POINTS: &[&str] = &[
    "kill:before:RolloutCommit#1",
    "kill:before:RolloutCommit#2",
    "kill:after:RegisterTaskDefinition#1",
    "kill:before:RolloutCommit#3",
    "kill:before:UpdateService#2",
    "kill:before:RolloutCommit#5",
    "kill:after:UpdateService#3",
    "kill:before:RolloutCommit#4",
];

/// Where it is killed while the second rollout fails and is rolled back.
const ROLLBACK_POINTS: &[&str] = &[
    "kill:before:RolloutCommit#1",
    "kill:after:RegisterTaskDefinition#2",
    "kill:before:RolloutCommit#2",
    "kill:before:UpdateService#3",
    "kill:before:RolloutCommit#4",
    "kill:after:UpdateService#2",
    "kill:before:RolloutCommit#3",
];

fn twenty() -> Vec<&'static str> {
    StateSlug::all().map(|s| s.as_str()).take(20).collect()
}

struct Run<'a> {
    stack: &'a Stack,
    api: String,
    http: reqwest::Client,
    env: Vec<(String, String)>,
    landed: Vec<String>,
}

impl Run<'_> {
    async fn rollout(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/rollouts/{id}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn start(&self, body: Value) -> String {
        let response = self
            .http
            .request(Method::POST, format!("{}/v1/rollouts", self.api))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A worker armed with `point`, until the kill lands or `done` holds; then every lease
    /// the dead worker held is ended (the harness saw it die).
    async fn round(&mut self, point: &str, done: impl AsyncFn() -> bool) {
        let mut worker = Proc::worker("rollout-crash", &self.env, Some(point));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = worker.try_exit() {
                assert!(
                    killed(status),
                    "the worker ended otherwise ({status}) at {point}:\n{}",
                    worker.output()
                );
                self.landed
                    .push(worker.fault_line().expect("the fault point's line"));
                break;
            }
            if Instant::now() > deadline || done().await {
                worker.kill().await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for table in ["tenants", "rollouts"] {
            sqlx::query(&format!(
                "UPDATE {table} SET lease_expires_at = now() - interval '1 millisecond' \
                 WHERE lease_token IS NOT NULL"
            ))
            .execute(&self.stack.pool)
            .await
            .unwrap();
        }
    }

    /// A worker without a fault until `done` holds.
    async fn converge(&self, what: &str, done: impl AsyncFn() -> bool) {
        let started = Instant::now();
        let mut worker = Proc::worker("rollout-converge", &self.env, None);
        while !done().await {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{what}: no convergence:\n{}",
                worker.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.kill().await;
    }
}

fn states(rollout: &Value) -> BTreeMap<String, String> {
    rollout["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[sqlx::test]
async fn a_worker_killed_during_a_rollout_and_its_rollback_changes_each_tenant_exactly_once(
    pool: PgPool,
) {
    let all = twenty();
    // The second rollout's image is refused for one tenant of its last wave.
    let refused = all[5];
    let faults = FaultConfig::default().rule(
        Rule::error(
            "ecs",
            "RegisterTaskDefinition",
            400,
            "ClientException",
            "no such tag",
        )
        .body("humangov/app:3.0.0")
        .body(&format!("humangov-{refused}")),
    );
    let stack =
        Stack::without_worker_through(pool.clone(), 1, Duration::from_secs(600), Some(faults))
            .await;
    let proxy = stack.faults.as_ref().unwrap().endpoint.clone();
    let mut env: Vec<(String, String)> = worker_env(&stack, &database_url(&pool), "30s")
        .into_iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
        .collect();
    env.push(("AWS_ENDPOINT_URL".into(), proxy));
    env.push(("STATEHOUSE_ROLLOUT_GATE_INTERVAL".into(), "200ms".into()));
    let mut run = Run {
        api: stack.api(TOKEN).await,
        stack: &stack,
        http: reqwest::Client::new(),
        env,
        landed: Vec::new(),
    };
    for name in &all {
        stack.create(name, spec()).await;
    }
    let all_ready = async || {
        for name in twenty() {
            let t = stack.tenant(name).await;
            if t.status.as_str() != "ready" || t.observed_generation != t.generation {
                return false;
            }
        }
        true
    };
    run.converge("onboarding", all_ready).await;

    // Forward: every tenant gets 2.0.0, in waves of 1, 4 and 15, four at a time (so that
    // there are many steps to kill the worker in).
    let strategy = json!({"canary": [all[0]], "waves": [1, 4, 15], "canary_bake": "0s", "bake": "0s", "max_concurrent": 20});
    let mut four = strategy.clone();
    four["max_concurrent"] = json!(4);
    let first = run
        .start(json!({"patch": {"app_image": "humangov/app:2.0.0"}, "strategy": four}))
        .await;
    for point in FORWARD_POINTS {
        run.round(point, async || run_ended(&stack, &first).await)
            .await;
    }
    run.converge("the first rollout", async || {
        run_ended(&stack, &first).await
    })
    .await;
    let forward_kills = run.landed.len();
    let done = run.rollout(&first).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(states(&done).values().all(|s| s == "succeeded"), "{done:#}");
    let writes = stack.rollout_writes(&first).await;
    assert_eq!(writes.len(), 20, "none skipped: {writes:?}");
    assert!(
        writes.values().all(|n| *n == 1),
        "each written once: {writes:?}"
    );
    for name in &all {
        let t = stack.tenant(name).await;
        assert_eq!(
            (t.generation, t.spec.app_image.as_str()),
            (2, "humangov/app:2.0.0"),
            "{name}"
        );
    }

    // Backward: 3.0.0 fails on one tenant of the last wave and everything is put back,
    // except the canary, which someone changes by hand once the rollout has changed it
    // (while the rollout waits for its approval after the canary).
    // All of the last wave at once, so that every tenant but the canary has been changed
    // when the refused one halts the rollout.
    let mut manual = strategy.clone();
    manual["approval"] = json!("manual");
    let second = run
        .start(json!({"patch": {"app_image": "humangov/app:3.0.0"}, "strategy": manual}))
        .await;
    let approval = async || run.rollout(&second).await["state"] == "awaiting_approval";
    run.converge("the second canary", approval).await;
    let hand = SpecDoc {
        app_image: "humangov/app:2.0.1-hotfix".into(),
        ..spec()
    };
    stack.update_spec(all[0], hand).await;
    let promoted = run
        .http
        .post(format!("{}/v1/rollouts/{second}/promote", run.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status(), 200);
    for point in ROLLBACK_POINTS {
        run.round(point, async || run_ended(&stack, &second).await)
            .await;
    }
    run.converge("the rollback", async || run_ended(&stack, &second).await)
        .await;
    let done = run.rollout(&second).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    let states = states(&done);
    assert_eq!(states[all[0]], "kept", "{done:#}");
    let writes = stack.rollout_writes(&second).await;
    assert_eq!(writes[all[0]], 1, "the hand-changed canary is left alone");
    assert_eq!(
        stack.tenant(all[0]).await.spec.app_image,
        "humangov/app:2.0.1-hotfix"
    );
    for name in &all[1..] {
        assert_eq!(states[*name], "reverted", "{name}: {done:#}");
        assert_eq!(writes[*name], 2, "{name}: written once, put back once");
        let t = stack.tenant(name).await;
        assert_eq!(t.spec.app_image, "humangov/app:2.0.0", "{name}");
    }
    let at_commit = |kills: &[String]| kills.iter().filter(|l| l.contains("RolloutCommit")).count();
    let (forward, backward) = run.landed.split_at(forward_kills);
    eprintln!(
        "rollout crash test: {} kills landed going forward ({} between a decision and its commit), \
         {} rolling back ({}): {:#?}",
        forward.len(),
        at_commit(forward),
        backward.len(),
        at_commit(backward),
        run.landed
    );
    assert!(
        at_commit(forward) >= 2 && at_commit(backward) >= 2,
        "{:#?}",
        run.landed
    );
    assert!(
        run.landed.len() >= 8,
        "only {} kills landed",
        run.landed.len()
    );
}

async fn run_ended(stack: &Stack, id: &str) -> bool {
    let finished: Option<bool> =
        sqlx::query_scalar("SELECT finished_at IS NOT NULL FROM rollouts WHERE id = $1::uuid")
            .bind(id)
            .fetch_optional(&stack.pool)
            .await
            .unwrap();
    finished.unwrap_or(false)
}
