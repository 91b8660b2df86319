//! API reads under load: GET one tenant and a page of 100, with a named viewer key, next to
//! `/healthz` on the same server (no key, no database) as the ceiling of the HTTP stack.

use std::time::Duration;

use crate::{
    load::{self, Load},
    server::{Server, ADMIN_TOKEN},
};

pub const CONNECTIONS: usize = 32;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(admin_url: &str, measure: Duration) {
    let database = crate::bench::fresh_database(admin_url, "statehouse_bench_api").await;
    let log = std::env::temp_dir().join("statehouse-bench-api-reads.log");
    let server = Server::start(&database, &["--no-worker"], &[], &log.to_string_lossy()).await;
    let client = reqwest::Client::new();
    let states: Vec<_> = statehouse::domain::state::StateSlug::all().collect();
    server.create(&client, &states).await;
    let viewer = server.key("bench-viewer", "viewer").await;
    let admin = ADMIN_TOKEN.to_owned();
    println!(
        "API reads: {CONNECTIONS} connections, {:?} each after 2 s of warm-up, 56 tenants, a named viewer key",
        measure
    );
    println!(
        "  {:<32} {:>10} {:>9} {:>9}  {:>7}  statuses",
        "request", "req/s", "p50", "p99", "vs ceiling"
    );
    let cases = [
        ("GET /healthz (ceiling)", "/healthz", None),
        (
            "  same, bootstrap token (no key)",
            "/v1/tenants/california",
            Some(&admin),
        ),
        (
            "GET /v1/tenants/california",
            "/v1/tenants/california",
            Some(&viewer),
        ),
        (
            "GET /v1/tenants?limit=100",
            "/v1/tenants?limit=100",
            Some(&viewer),
        ),
    ];
    let mut ceiling = None;
    for (label, path, token) in cases {
        let figures = load::run(&Load {
            addr: server.addr.clone(),
            path: path.to_owned(),
            token: token.cloned(),
            connections: CONNECTIONS,
            warmup: Duration::from_secs(2),
            measure,
        })
        .await;
        let ceiling = *ceiling.get_or_insert(figures.per_second);
        println!(
            "  {label:<32} {:>10.0} {:>9} {:>9}  {:>9.2}  {}",
            figures.per_second,
            ms(figures.p50),
            ms(figures.p99),
            figures.per_second / ceiling,
            figures.statuses()
        );
    }
}
