use sqlx::PgPool;

use crate::server::{cli, free_port, Server};

#[sqlx::test]
async fn waiting_ends_in_a_timeout_or_a_failure_with_their_own_exit_codes(pool: PgPool) {
    // Services never run a task, so deployments never finish; the worker calls one that has
    // not completed in 3 s failed.
    let server = Server::start(&pool, 0, &[("STATEHOUSE_DEPLOYMENT_TIMEOUT", "3s")]).await;

    let timed_out = server.cli(&["tenants", "create", "alaska", "--wait", "--timeout", "1s"]);
    timed_out.expect(7);
    assert!(
        timed_out
            .stderr
            .contains("gave up waiting for alaska after 1s"),
        "{timed_out}"
    );

    let failed = server.cli(&[
        "tenants",
        "create",
        "arizona",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    failed.expect(1);
    let tenant = failed.json();
    assert_eq!(tenant["status"], "failed", "{failed}");
    assert!(
        failed.stderr.contains("tenant arizona failed: ")
            && failed.stderr.contains("did not complete"),
        "the worker's error is shown: {failed}"
    );
    let deployed = tenant["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Deployed")
        .expect("a Deployed condition");
    assert_eq!(deployed["status"], "False");

    // In a bulk create the failure is one row of the summary, and the exit code says so.
    let bulk = server.cli(&[
        "tenants",
        "create",
        "arizona",
        "nevada",
        "--wait",
        "--timeout",
        "60s",
    ]);
    bulk.expect(1);
    let row = |name: &str| {
        bulk.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("arizona").contains("failed"), "{bulk}");
    assert!(row("nevada").contains("failed"), "{bulk}");
    assert!(
        bulk.stderr.contains("2 of 2 tenants did not succeed"),
        "{bulk}"
    );
    // arizona had failed before this run: the rerun asked for another pass, not just a report.
    let events = server.cli(&["tenants", "events", "arizona", "--output", "json"]);
    events.expect(0);
    assert!(
        events.stdout.contains("tenant.reconcile_requested"),
        "{events}"
    );
}

#[test]
fn an_api_that_cannot_be_reached_is_a_server_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = cli(
        &["tenants", "get", "ohio"],
        &[("STATEHOUSE_API_URL", &url), ("STATEHOUSE_TOKEN", "any")],
        None,
    );
    run.expect(6);
    assert!(
        run.stderr.contains("cannot reach the statehouse API"),
        "{run}"
    );
    let bulk = cli(
        &["tenants", "create", "ohio", "utah"],
        &[("STATEHOUSE_API_URL", &url), ("STATEHOUSE_TOKEN", "any")],
        None,
    );
    bulk.expect(6);
}

#[test]
fn bad_input_is_a_usage_error_before_any_request() {
    let env = [
        ("STATEHOUSE_API_URL", "http://127.0.0.1:9"),
        ("STATEHOUSE_TOKEN", "any"),
    ];
    for args in [
        &["tenants", "create", "narnia"][..],
        &["tenants", "create"],
        &["tenants", "create", "ohio", "--cpu", "lots"],
        &["tenants", "create", "ohio", "--env", "NOVALUE"],
        &["tenants", "create", "ohio", "--timeout", "5s"],
        &["tenants", "create", "ohio", "--all-states"],
        &["tenants", "create", "--all-states", "--display-name", "x"],
        &["tenants", "delete", "ohio", "--yes"],
        &[
            "tenants",
            "create",
            "--from-file",
            "/nonexistent/states.txt",
        ],
        &["tenants", "list", "--page-size", "0"],
        &["completions", "tcsh"],
    ] {
        let run = cli(args, &env, None);
        run.expect(2);
        assert!(!run.stderr.contains("panicked"), "{run}");
    }
    let unknown = cli(&["tenants", "get", "narnia"], &env, None);
    assert!(unknown.stderr.contains("postal code"), "{unknown}");
}

#[test]
fn every_client_command_has_examples_and_shells_get_completions() {
    for command in [
        "create",
        "list",
        "get",
        "update",
        "delete",
        "events",
        "reconcile",
    ] {
        let help = cli(&["tenants", command, "--help"], &[], None);
        help.expect(0);
        assert!(help.stdout.contains("Examples:"), "{command}: {help}");
    }
    for command in [
        "serve",
        "worker",
        "migrate",
        "sweep",
        "healthcheck",
        "openapi",
        "dev",
        "keys",
    ] {
        let help = cli(&[command, "--help"], &[], None);
        help.expect(0);
        assert!(help.stdout.contains("Example"), "{command}: {help}");
    }
    let help = cli(&["tenants", "--help"], &[], None);
    assert!(help.stdout.contains("Exit codes:") && help.stdout.contains("7  timeout"));
    for shell in ["bash", "zsh", "fish"] {
        let script = cli(&["completions", shell], &[], None);
        script.expect(0);
        assert!(
            script.stdout.contains("tenants") && script.stdout.contains("all-states"),
            "{shell}: {script}"
        );
    }
}
