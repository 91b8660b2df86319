//! The rollout case: a new image to 56 ready tenants in waves of 1, 5 and 50 with no bake,
//! against the same change sent as 56 concurrent PATCHes on the same emulator; then the
//! same through the slow emulator, where the floor is RegisterTaskDefinition's limit; then
//! how soon a rollout halts once a tenant's failure is recorded.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{json, Value};

use super::{
    faults::{Action, FaultConfig, Rule},
    ms, Env, TOKEN,
};

const N: usize = 56;

pub async fn run(admin_url: &str, slow: &FaultConfig) {
    println!(
        "rollouts: a new image to {N} ready tenants, waves [1, 5, 50], bake 0, max_concurrent 56"
    );
    println!(
        "{:<22}  {:>12}  {:>12}  {:>6}  {:>12}",
        "emulator", "56 PATCHes", "rollout", "ratio", "floor"
    );
    overhead(admin_url, None).await;
    overhead(admin_url, Some(slow)).await;
    println!("PATCHes: all sent at once, to every tenant ready with the new generation; rollout: POST to succeeded.");
    println!(
        "floor: RegisterTaskDefinition's enforced rate after its burst, which both must wait for."
    );
    println!(
        "Targets: rollout <= 1.2 x the PATCHes; under the enforced limits <= 1.2 x the floor."
    );
    println!();
    halt(admin_url).await;
}

/// The least time `n` new task definition revisions take under the config's bucket on
/// RegisterTaskDefinition, if it has one.
fn register_floor(config: &FaultConfig, n: usize) -> Option<Duration> {
    config.rules.iter().find_map(|r| match r.action {
        Action::Bucket { rate, burst }
            if matches!(r.target.operation.as_str(), "RegisterTaskDefinition" | "*") =>
        {
            Some(Duration::from_secs_f64(
                n.saturating_sub(burst as usize) as f64 / rate,
            ))
        }
        _ => None,
    })
}

async fn overhead(admin_url: &str, faults: Option<&FaultConfig>) {
    let env = Env::start(admin_url, faults).await;
    env.create(N).await;
    env.ready(N, 1).await;
    let floor = faults.and_then(|f| register_floor(f, N));
    // Under a token bucket, each measured run starts with its burst available again.
    let refill = || async {
        if floor.is_some() {
            tokio::time::sleep(Duration::from_secs(21)).await;
        }
    };
    refill().await;
    let started = Instant::now();
    join_all(
        statehouse::domain::state::StateSlug::all()
            .take(N)
            .map(|s| patch(&env, s.as_str(), "humangov/app:1.1.0")),
    )
    .await;
    env.ready(N, 2).await;
    let patches = started.elapsed();
    refill().await;
    let started = Instant::now();
    let id = start(
        &env,
        json!({
            "patch": {"app_image": "humangov/app:1.2.0"},
            "strategy": {"waves": [1, 5, 50], "canary_bake": "0s", "bake": "0s", "max_concurrent": 56},
        }),
    )
    .await;
    let state = ended(&env, &id).await;
    env.ready(N, 3).await;
    let rollout = started.elapsed();
    assert_eq!(state, "succeeded");
    let label = if faults.is_some() {
        "100 ms + ECS limits"
    } else {
        "plain"
    };
    let floor_text = floor.map_or("-".to_owned(), |f| {
        format!(
            "{} ({:.2}x)",
            ms(f),
            rollout.as_secs_f64() / f.as_secs_f64()
        )
    });
    println!(
        "{label:<22}  {:>12}  {:>12}  {:>6.2}  {:>12}",
        ms(patches),
        ms(rollout),
        rollout.as_secs_f64() / patches.as_secs_f64(),
        floor_text
    );
    env.stop().await;
}

async fn patch(env: &Env, name: &str, image: &str) {
    let url = format!("{}/v1/tenants/{name}", env.base);
    let got = env
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let etag = got.headers()["etag"].to_str().unwrap().to_owned();
    let res = env
        .client
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("if-match", etag)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"app_image": image}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

async fn start(env: &Env, body: Value) -> String {
    let res = env
        .client
        .post(format!("{}/v1/rollouts", env.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for the rollout to end; its final state.
async fn ended(env: &Env, id: &str) -> String {
    let started = Instant::now();
    loop {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state::text FROM rollouts WHERE id = $1::uuid AND finished_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&env.pool)
        .await
        .unwrap();
        if let Some(state) = state {
            return state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "rollout {id} never ended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// From a canary's failure being recorded to its rollout halting: five canaries refused
/// by the registry (a permanent error), each in a rollout of its own.
async fn halt(admin_url: &str) {
    let faults = FaultConfig::default().rule(
        Rule::error(
            "ecs",
            "RegisterTaskDefinition",
            400,
            "ClientException",
            "Container.image repository humangov/app tag does not exist",
        )
        .body("app:broken"),
    );
    let env = Env::start(admin_url, Some(&faults)).await;
    let tenants = 6;
    env.create(tenants).await;
    env.ready(tenants, 1).await;
    let mut gaps = Vec::new();
    for (i, canary) in statehouse::domain::state::StateSlug::all()
        .take(5)
        .enumerate()
    {
        let id = start(
            &env,
            json!({
                "patch": {"app_image": format!("humangov/app:broken-{i}")},
                "strategy": {"canary": [canary.as_str()], "waves": [1, "rest"]},
            }),
        )
        .await;
        assert_eq!(ended(&env, &id).await, "rolled_back");
        let gap: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM h.at - f.at)::float8 \
             FROM rollout_events h, tenant_events f \
             WHERE h.rollout_id = $1::uuid AND h.action = 'rollout.halted' \
               AND f.tenant_name = $2 AND f.action = 'tenant.failed' \
             ORDER BY f.id DESC LIMIT 1",
        )
        .bind(&id)
        .bind(canary.as_str())
        .fetch_one(&env.pool)
        .await
        .unwrap();
        gaps.push(Duration::from_secs_f64(gap.max(0.0)));
        env.ready(tenants, 1).await;
    }
    gaps.sort();
    println!(
        "time to halt: a canary's deployment failure recorded (its tenant.failed event) to the rollout halted, 5 rollouts:"
    );
    println!(
        "  p50 {}  max {}  (target < 1 s; alarms and health read during a bake halt in the step that reads them,",
        ms(gaps[gaps.len() / 2]),
        ms(gaps[gaps.len() - 1])
    );
    println!("  so their signal is seen at most STATEHOUSE_ROLLOUT_GATE_INTERVAL after it fires)");
    env.stop().await;
}
