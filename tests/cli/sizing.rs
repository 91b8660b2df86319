use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use crate::server::Server;

/// Polls `tenants sizing NAME` until its recommendation says `direction`.
fn recommendation(server: &Server, name: &str, direction: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let run = server.cli(&["tenants", "sizing", name, "--output", "json"]);
        let tenant = run.expect(0).json();
        let rec = &tenant["sizing"]["recommendation"];
        if rec["direction"] == direction {
            return rec.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {direction} recommendation for {name}:\n{run}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[sqlx::test]
async fn a_busy_state_gets_a_bigger_size_recommended_shown_priced_and_applied_from_the_cli(
    pool: PgPool,
) {
    let server = Server::start(&pool, 1, &[("STATEHOUSE_SIZING_INTERVAL", "2s")]).await;
    for name in ["texas", "ohio"] {
        let made = server.cli(&[
            "tenants",
            "create",
            name,
            "--min",
            "1",
            "--desired",
            "1",
            "--max",
            "1",
            "--wait",
        ]);
        made.expect(0);
    }

    // Nothing to apply yet: a conflict, and the spec keeps its size.
    let early = server.cli(&["tenants", "sizing", "apply", "texas"]);
    early.expect(4);
    assert!(early.stderr.contains("Conflict"), "{early}");

    // Bad input to the metric writer is a usage error before any call.
    let bad = server.dev(&["put-metrics", "texas", "--cpu", "150", "--memory", "50"]);
    bad.expect(2);
    assert!(bad.stderr.contains("--cpu is a percentage"), "{bad}");

    // Two days at 95 % CPU and 90 % memory of 256 CPU / 512 MiB.
    let put = server.dev(&[
        "put-metrics",
        "texas",
        "--cpu",
        "95",
        "--memory",
        "90",
        "--over",
        "2d",
        "--every",
        "10m",
    ]);
    put.expect(0);
    assert!(
        put.stderr.contains("points written for humangov-texas"),
        "{put}"
    );

    let rec = recommendation(&server, "texas", "up");
    assert_eq!(
        (rec["cpu"].as_u64(), rec["memory"].as_u64()),
        (Some(512), Some(1024))
    );
    let shown = server.cli(&["tenants", "sizing", "texas"]);
    for line in [
        "Mode:",
        "recommend",
        "Recommended:",
        "512 CPU / 1024 MiB (up)",
        "CPU p90 243 units (95%)",
        "Monthly cost:",
        "$9.01 now, $18.02 recommended (1 task)",
    ] {
        assert!(shown.expect(0).stdout.contains(line), "{line} in:\n{shown}");
    }

    let fleet = server
        .cli(&["fleet", "sizing", "--output", "json"])
        .expect(0)
        .json();
    assert_eq!(fleet["totals"]["current"], 18.02, "{fleet}");
    assert_eq!(fleet["totals"]["increase"], 9.01, "{fleet}");
    let table = server.cli(&["fleet", "sizing"]);
    let texas = table
        .expect(0)
        .stdout
        .lines()
        .find(|l| l.starts_with("texas"))
        .unwrap_or_else(|| panic!("a texas row in:\n{table}"))
        .to_owned();
    assert!(
        texas.contains("256/512") && texas.contains("512/1024"),
        "{table}"
    );

    let applied = server.cli(&["tenants", "sizing", "apply", "texas"]);
    applied.expect(0);
    assert!(
        applied
            .stderr
            .contains("texas is to run at 512 CPU / 1024 MiB (generation 2)"),
        "{applied}"
    );
    let got = server
        .cli(&["tenants", "get", "texas", "--output", "json"])
        .expect(0)
        .json();
    assert_eq!(
        (got["spec"]["cpu"].as_u64(), got["spec"]["memory"].as_u64()),
        (Some(512), Some(1024))
    );

    // The mode and bounds are spec flags like any other; bad bounds are the API's 422.
    let auto = server.cli(&[
        "tenants", "update", "ohio", "--sizing", "auto", "--output", "json",
    ]);
    assert_eq!(auto.expect(0).json()["spec"]["sizing"]["mode"], "auto");
    let inverted = server.cli(&[
        "tenants",
        "update",
        "ohio",
        "--sizing-min",
        "1024/2048",
        "--sizing-max",
        "512/1024",
    ]);
    inverted.expect(2);
    assert!(inverted.stderr.contains("spec.sizing"), "{inverted}");
}
