//! A burst: 500 requests at once, with two CPU hogs running, against `statehouse serve`
//! with its worker and the AWS emulator 100 ms away per call (through the fault proxy): a
//! create of every state, PATCHes with If-Match, reconcile requests, deletes, and reads.
//! Half the states exist first, in a cell of capacity 40, so placement is at its limit.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rand::{seq::SliceRandom, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use statehouse::domain::state::StateSlug;

use crate::{
    bench::{self, percentile},
    faults::{FaultConfig, FaultProxy, Rule},
    moto::Moto,
    server::{self, Server, ADMIN_TOKEN},
};

const CAPACITY: i64 = 40;
const REQUESTS: usize = 500;

/// One request of the burst.
struct Shot {
    kind: &'static str,
    method: Method,
    path: String,
    if_match: Option<String>,
    body: Option<Value>,
}

/// Busy loops that hold a core each for as long as they live.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start(n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| {
                    Command::new("yes")
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("start a CPU hog (yes)")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

fn get(kind: &'static str, path: String) -> Shot {
    Shot {
        kind,
        method: Method::GET,
        path,
        if_match: None,
        body: None,
    }
}

/// The burst's requests in a shuffled (but repeatable) order; `existing` states with their ETags.
fn shots(existing: &[(StateSlug, String)]) -> Vec<Shot> {
    let mut shots: Vec<Shot> = StateSlug::all()
        .map(|s| Shot {
            kind: "create",
            method: Method::POST,
            path: "/v1/tenants".into(),
            if_match: None,
            body: Some(json!({ "name": s.as_str() })),
        })
        .collect();
    for (state, etag) in existing {
        let path = format!("/v1/tenants/{state}");
        shots.push(Shot {
            kind: "patch",
            method: Method::PATCH,
            path: path.clone(),
            if_match: Some(etag.clone()),
            body: Some(json!({ "spec": { "app_image": "humangov/app:1.6.0" } })),
        });
        for _ in 0..2 {
            shots.push(Shot {
                kind: "reconcile",
                method: Method::POST,
                path: format!("{path}/reconcile"),
                if_match: None,
                body: None,
            });
        }
    }
    for (state, _) in existing.iter().take(8) {
        shots.push(Shot {
            kind: "delete",
            method: Method::DELETE,
            path: format!("/v1/tenants/{state}"),
            if_match: None,
            body: None,
        });
    }
    let states: Vec<StateSlug> = StateSlug::all().collect();
    for state in states.iter().cycle().take(REQUESTS - 100 - shots.len()) {
        shots.push(get("get", format!("/v1/tenants/{state}")));
    }
    while shots.len() < REQUESTS {
        shots.push(get("list", "/v1/tenants?limit=100".into()));
    }
    shots.shuffle(&mut rand::rngs::StdRng::seed_from_u64(12));
    shots
}

async fn fire(client: &reqwest::Client, server: &Server, shot: &Shot) -> (StatusCode, Duration) {
    let mut request = client
        .request(shot.method.clone(), server.url(&shot.path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(tag) = &shot.if_match {
        request = request.header("if-match", tag);
    }
    if let Some(body) = &shot.body {
        let content_type = if shot.method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        request = request
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let started = Instant::now();
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let _ = response.bytes().await;
    (status, started.elapsed())
}

async fn ready(server: &Server, client: &reqwest::Client, n: usize) {
    let started = Instant::now();
    loop {
        let page: Value = client
            .get(server.url("/v1/tenants?status=ready&limit=500"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("a page");
        if page["items"].as_array().map_or(0, Vec::len) >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the first tenants never got ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(admin_url: &str) {
    let moto = Moto::start(10).await;
    let platform = server::dev_bootstrap(&moto.endpoint).await;
    let slow = FaultConfig::default().rule(Rule::latency(
        "*",
        "*",
        Duration::from_millis(100),
        Duration::ZERO,
    ));
    let proxy = FaultProxy::start(&moto.endpoint, slow)
        .await
        .expect("the fault proxy");
    let mut env: Vec<(String, String)> = platform.into_iter().collect();
    env.extend([
        ("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()),
        ("STATEHOUSE_CELL_CAPACITY".into(), CAPACITY.to_string()),
    ]);
    let database = bench::fresh_database(admin_url, "statehouse_bench_burst").await;
    let log = std::env::temp_dir().join("statehouse-bench-api-burst.log");
    let server = Server::start(&database, &[], &env, &log.to_string_lossy()).await;
    let client = reqwest::Client::new();

    let existing: Vec<StateSlug> = StateSlug::all().step_by(2).collect();
    server.create(&client, &existing).await;
    ready(&server, &client, existing.len()).await;
    let mut tagged = Vec::new();
    for state in existing {
        let response = client
            .get(server.url(&format!("/v1/tenants/{state}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("get");
        let tag = response.headers()["etag"]
            .to_str()
            .expect("an ETag")
            .to_owned();
        tagged.push((state, tag));
    }
    let shots = shots(&tagged);

    let hogs = Hogs::start(2);
    let started = Instant::now();
    let answers =
        futures::future::join_all(shots.iter().map(|shot| fire(&client, &server, shot))).await;
    let wall = started.elapsed();
    drop(hogs);

    let mut by_kind: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    for (shot, (status, took)) in shots.iter().zip(&answers) {
        *by_kind
            .entry(shot.kind)
            .or_default()
            .entry(status.as_u16())
            .or_default() += 1;
        latencies.push(*took);
    }
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    let server_errors = answers.iter().filter(|(s, _)| s.is_server_error()).count();
    let pool = sqlx::PgPool::connect(&database)
        .await
        .expect("the benchmark's database");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status <> 'deleted'")
        .fetch_one(&pool)
        .await
        .expect("count");
    println!(
        "Burst: {REQUESTS} requests at once with 2 CPU hogs, worker running, emulator 100 ms away per call"
    );
    for (kind, statuses) in &by_kind {
        let list: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        println!("  {kind:<10} {}", list.join(" "));
    }
    println!(
        "  5xx: {server_errors}   all answered in {:.0} ms   p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms",
        wall.as_secs_f64() * 1000.0,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        slowest.as_secs_f64() * 1000.0,
    );
    println!(
        "  placement: {live} live tenants in a cell of capacity {CAPACITY} ({})",
        if live <= CAPACITY {
            "within capacity"
        } else {
            "OVER CAPACITY"
        }
    );
}
