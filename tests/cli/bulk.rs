use sqlx::PgPool;

use crate::server::Server;

const TEN: [&str; 10] = [
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
];

#[sqlx::test]
async fn ten_states_are_onboarded_from_a_file_and_a_rerun_skips_them(pool: PgPool) {
    let server = Server::start(&pool, 10, &[]).await;
    let list = format!(
        "# first wave\n{}\n\nalabama   # listed twice, created once\n",
        TEN.join("\n")
    );
    let file = server.dir.write("states.txt", &list);
    let file = file.to_str().unwrap();

    let started = std::time::Instant::now();
    let run = server.cli(&[
        "tenants",
        "create",
        "--from-file",
        file,
        "--wait",
        "--concurrency",
        "4",
    ]);
    run.expect(0);
    println!("10 tenants ready in {:?}", started.elapsed());

    // The summary: one row per state, in the file's order, each ready with its endpoint.
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert!(
        rows[0].starts_with("NAME") && rows[0].contains("RESULT"),
        "{run}"
    );
    assert_eq!(rows.len(), 11, "{run}");
    for (row, name) in rows[1..].iter().zip(TEN) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..3], [name, "ready", "ready"], "{run}");
        assert!(cells[4].starts_with(&format!("https://{name}.")), "{run}");
    }
    // Not a terminal: plain, timestamped lines, ending with each tenant's outcome.
    assert!(
        run.stderr.starts_with("Creating 10 tenants, 4 at a time"),
        "{run}"
    );
    for name in TEN {
        assert!(
            run.stderr.lines().any(|l| l.starts_with('[')
                && l.split_whitespace().nth(2) == Some(name)
                && l.contains("ready")
                && l.contains("https://")),
            "no final line for {name}:\n{run}"
        );
    }
    assert!(
        run.stderr
            .contains("10 created, 0 already existed, 0 failed"),
        "{run}"
    );
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no terminal escapes in plain output"
    );

    let rerun = server.cli_with(
        &[
            "tenants",
            "create",
            "--from-file",
            "-",
            "--wait",
            "--output",
            "json",
        ],
        &[],
        Some(&list),
    );
    let results = rerun.expect(0).json();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 10);
    for (result, name) in results.iter().zip(TEN) {
        assert_eq!(result["name"], name);
        assert_eq!(result["result"], "exists", "{rerun}");
        assert_eq!(result["tenant"]["status"], "ready");
        assert_eq!(result["exit_code"], 0);
    }

    let bad = server
        .dir
        .write("bad.txt", "ohio\nnarnia\n\nwakanda # no\n");
    let refused = server.cli(&["tenants", "create", "--from-file", bad.to_str().unwrap()]);
    refused.expect(2);
    assert!(
        refused.stderr.contains("line 2") && refused.stderr.contains("line 4"),
        "{refused}"
    );
    server.cli(&["tenants", "get", "ohio"]).expect(3);
}

#[sqlx::test]
async fn the_example_script_onboards_states_and_reports_failures(pool: PgPool) {
    let server = Server::start(&pool, 10, &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onboard-states.sh");
    let bin_dir = std::path::Path::new(crate::server::BIN)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let report = server.dir.0.join("report.json");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(script)
            .args(args)
            .env("PATH", &path)
            .env("REPORT", &report)
            .env("STATEHOUSE_API_URL", &server.url)
            .env("STATEHOUSE_TOKEN", crate::server::TOKEN)
            .env("STATEHOUSE_CONFIG", "/nonexistent/config.toml")
            .output()
            .expect("run the script");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["maine", "vermont"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 of 2 states onboarded"),
        "{stdout}\n{stderr}"
    );
    // One state, already there: followed, not refused, and reported like any list.
    let (code, stdout, stderr) = run(&["maine"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 of 1 states onboarded"),
        "{stdout}\n{stderr}"
    );

    // A viewer key cannot create: every state fails and the script says which.
    let viewer = server.create_key("auditor", "viewer");
    let out = std::process::Command::new(script)
        .args(["maine", "texas"])
        .env("PATH", &path)
        .env("REPORT", &report)
        .env("STATEHOUSE_API_URL", &server.url)
        .env("STATEHOUSE_TOKEN", &viewer)
        .env("STATEHOUSE_CONFIG", "/nonexistent/config.toml")
        .output()
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("texas"), "{stdout}");
}
