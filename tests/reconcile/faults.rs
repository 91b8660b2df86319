//! statehouse under AWS faults, produced by a fault-injecting proxy in front of the real
//! emulator: each fault as the SDK clients see it, then the worker through a throttling
//! storm and through IAM's propagation delay.

use std::time::{Duration, Instant};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_sdk_ecs::types::ContainerDefinition;
use aws_sdk_s3::config::Credentials;
use sqlx::PgPool;
use statehouse::{
    aws::{error::sdk, AwsError, Retry},
    domain::{state::StateSlug, tenant::TenantStatus},
    worker::WorkerSettings,
};

use crate::{
    harness::{settings, spec, Stack},
    moto::Moto,
    proxy::{ecs_limits, Action, Call, FaultConfig, FaultProxy, Rule},
    REGION,
};

/// Clients through `proxy` that try each call once and give up on an attempt after 1 s, so
/// every fault shows as the error it is.
/// One attempt per call, with room for a busy machine: these calls are answered by the
/// proxy itself, and what they check is the answer, not how long it took.
async fn single_attempt(proxy: &FaultProxy) -> statehouse::aws::Aws {
    single_attempt_within(proxy, Duration::from_secs(30)).await
}

async fn single_attempt_within(proxy: &FaultProxy, timeout: Duration) -> statehouse::aws::Aws {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&proxy.endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .load()
        .await;
    statehouse::aws::Aws::new(&config)
}

async fn proxy(moto: &Moto, rules: &str) -> FaultProxy {
    FaultProxy::start(&moto.endpoint, FaultConfig::parse(rules).unwrap())
        .await
        .unwrap()
}

fn call(service: &str, operation: &str) -> Call {
    Call {
        service: service.into(),
        operation: operation.into(),
    }
}

async fn list_clusters(aws: &statehouse::aws::Aws) -> Result<(), AwsError> {
    aws.ecs
        .list_clusters()
        .send()
        .await
        .map(drop)
        .map_err(sdk("ecs", "ListClusters"))
}

#[tokio::test]
async fn throttling_comes_back_as_each_services_own_transient_error() {
    let moto = Moto::start(0).await;
    let proxy = proxy(
        &moto,
        "ecs:* throttle; iam:* throttle; dynamodb:* throttle; s3:* throttle",
    )
    .await;
    let aws = single_attempt(&proxy).await;
    let (ecs, iam, ddb, s3) = tokio::join!(
        list_clusters(&aws),
        async {
            aws.iam
                .list_roles()
                .send()
                .await
                .map(drop)
                .map_err(sdk("iam", "ListRoles"))
        },
        async {
            aws.dynamodb
                .list_tables()
                .send()
                .await
                .map(drop)
                .map_err(sdk("dynamodb", "ListTables"))
        },
        async {
            aws.s3
                .get_bucket_tagging()
                .bucket("b")
                .send()
                .await
                .map(drop)
                .map_err(sdk("s3", "GetBucketTagging"))
        },
    );
    for (result, code, status) in [
        (ecs, "ThrottlingException", 400),
        (iam, "Throttling", 400),
        (ddb, "ThrottlingException", 400),
        (s3, "SlowDown", 503),
    ] {
        let e = result.expect_err(code);
        assert_eq!(
            (e.code.as_str(), e.http_status),
            (code, Some(status)),
            "{e}"
        );
        assert_eq!(e.retry, Retry::Transient, "{e}");
        assert!(e.request_id.is_some(), "AWS names the request: {e}");
    }
    let counts = proxy.snapshot();
    assert_eq!(counts[&call("s3", "GetBucketTagging")].throttled, 1);
    assert_eq!(counts[&call("dynamodb", "ListTables")].throttled, 1);
    assert_eq!(proxy.totals().forwarded, 0);
}

#[tokio::test]
async fn the_sdk_retries_a_throttled_call_and_the_retries_are_counted() {
    let moto = Moto::start(0).await;
    let proxy = proxy(&moto, "ecs:ListClusters throttle first=2").await;
    let aws = statehouse::aws::Aws::new(&crate::config_at(&proxy.endpoint).await);
    list_clusters(&aws)
        .await
        .expect("the third attempt gets through");
    let c = proxy.snapshot()[&call("ecs", "ListClusters")];
    assert_eq!((c.total, c.throttled, c.forwarded), (3, 2, 1));
    let retries = aws.calls.retries();
    assert_eq!(retries[&("ecs".to_owned(), "ListClusters".to_owned())], 2);
}

#[tokio::test]
async fn server_errors_are_transient_in_every_protocol() {
    let moto = Moto::start(0).await;
    let proxy = proxy(
        &moto,
        "ecs:* error status=500; iam:* error status=503; s3:* error status=500",
    )
    .await;
    let aws = single_attempt(&proxy).await;
    let ecs = list_clusters(&aws).await.unwrap_err();
    let iam = aws
        .iam
        .list_roles()
        .send()
        .await
        .map_err(sdk("iam", "ListRoles"))
        .unwrap_err();
    let s3 = aws
        .s3
        .list_buckets()
        .send()
        .await
        .map_err(sdk("s3", "ListBuckets"))
        .unwrap_err();
    for (e, code, status) in [
        (ecs, "InternalFailure", 500),
        (iam, "ServiceUnavailable", 503),
        (s3, "InternalError", 500),
    ] {
        assert_eq!(
            (e.code.as_str(), e.http_status),
            (code, Some(status)),
            "{e}"
        );
        assert!(e.is_transient(), "{e}");
    }
    assert_eq!(proxy.totals().errored, 3);
}

#[tokio::test]
async fn a_reset_connection_is_a_transient_failure_and_the_next_call_gets_through() {
    let moto = Moto::start(0).await;
    let proxy = proxy(&moto, "ecs:* reset first=1").await;
    // The emulator's first ECS answer can take a while on a busy machine.
    let aws = single_attempt_within(&proxy, Duration::from_secs(20)).await;
    let e = list_clusters(&aws)
        .await
        .expect_err(&format!("reset: {}", proxy.summary()));
    assert_eq!(e.http_status, None, "{e}");
    assert!(e.is_transient(), "{e}");
    list_clusters(&aws)
        .await
        .expect("the connection after the reset works");
    let c = proxy.snapshot()[&call("ecs", "ListClusters")];
    assert_eq!((c.reset, c.forwarded), (1, 1));
}

#[tokio::test]
async fn a_stalled_call_times_out_as_a_transient_error_instead_of_hanging() {
    // The production clients give up on an attempt too; a stall could otherwise hold a
    // tenant's lease forever.
    let production = statehouse::aws::timeouts();
    assert!(production
        .operation_attempt_timeout()
        .is_some_and(|t| t <= Duration::from_secs(60)));
    assert!(production.connect_timeout().is_some());

    let moto = Moto::start(0).await;
    let stall = FaultConfig::default().rule(Rule::new("ecs", "*", Action::Stall));
    let proxy = FaultProxy::start(&moto.endpoint, stall).await.unwrap();
    let aws = single_attempt_within(&proxy, Duration::from_secs(1)).await;
    let started = Instant::now();
    let e = list_clusters(&aws).await.unwrap_err();
    assert_eq!(e.code, "Timeout", "{e}");
    assert!(e.is_transient(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.totals().stalled, 1);
}

#[tokio::test]
async fn a_task_definition_bucket_refuses_the_registration_past_its_burst() {
    assert!(
        ecs_limits().contains(&Rule::bucket("ecs", "RegisterTaskDefinition", 1.0, 20)),
        "the ECS preset allows a burst of 20 registrations at 1/s"
    );
    let moto = Moto::start(0).await;
    // The preset's burst, with a rate so low that no token comes back during the test
    // however long 21 registrations take to arrive on a busy machine.
    let proxy = proxy(
        &moto,
        "ecs:RegisterTaskDefinition bucket rate=0.001 burst=20",
    )
    .await;
    // The emulator answers 20 registrations at once slowly on a busy machine.
    let aws = single_attempt_within(&proxy, Duration::from_secs(60)).await;
    let register = |i: usize| {
        aws.ecs
            .register_task_definition()
            .family(format!("limits-{i}"))
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("app:1")
                    .memory(512)
                    .build(),
            )
            .send()
    };
    let results = futures::future::join_all((0..21).map(register)).await;
    let refused: Vec<AwsError> = results
        .into_iter()
        .filter_map(|r| r.err().map(sdk("ecs", "RegisterTaskDefinition")))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].code, "ThrottlingException");
    assert!(refused[0].is_transient());
    let c = proxy.snapshot()[&call("ecs", "RegisterTaskDefinition")];
    assert_eq!((c.forwarded, c.throttled), (20, 1));
}

/// The worker settings of a production worker, with short backoffs so that tests end soon.
fn patient() -> WorkerSettings {
    WorkerSettings {
        retry_budget: Duration::from_secs(600),
        ..settings()
    }
}

/// Tenants the worker ever marked `failed`.
async fn ever_failed(stack: &Stack) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT DISTINCT tenant_name FROM tenant_events WHERE action = 'tenant.failed'",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

fn passes(stack: &Stack, outcome: &str) -> u64 {
    let needle = format!("statehouse_reconciles_total{{outcome=\"{outcome}\"}} ");
    stack
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// Onboards `n` tenants and waits until all are ready, watching that none shows `failed`.
async fn onboard(stack: &Stack, n: usize, within: Duration) -> Duration {
    let names: Vec<&str> = StateSlug::all().take(n).map(|s| s.as_str()).collect();
    let started = Instant::now();
    for name in &names {
        stack.create(name, spec()).await;
    }
    for name in &names {
        let left = within.saturating_sub(started.elapsed());
        let t = stack
            .wait_for(name, left, |t| {
                assert_ne!(t.status, TenantStatus::Failed, "{name}: {:?}", t.last_error);
                t.status == TenantStatus::Ready && t.observed_generation == t.generation
            })
            .await;
        assert_eq!(t.status, TenantStatus::Ready);
    }
    started.elapsed()
}

/// Half of all calls throttled and the ECS limits enforced: every tenant still gets to
/// `ready`, none is ever shown `failed`, and the SDK's retries stay in proportion.
#[sqlx::test]
async fn a_throttling_storm_leaves_every_tenant_ready_and_none_failed(pool: PgPool) {
    let faults = FaultConfig::default()
        .rule(Rule::throttle("*", "*").p(0.5))
        .rules(ecs_limits());
    let stack = Stack::start_through(faults, pool, 10, patient()).await;
    // Convergence is the point, not speed: how long it takes swings with the random draws of
    // throttles and backoffs (45 s to over 3 minutes on a busy 2-core machine).
    let took = onboard(&stack, 10, Duration::from_secs(480)).await;
    assert_eq!(ever_failed(&stack).await, Vec::<String>::new());

    let proxy = stack.faults.as_ref().unwrap();
    let seen = proxy.totals();
    let attempts: u64 = stack.aws.calls.snapshot().values().sum();
    let retries: u64 = stack.aws.calls.retries().values().sum();
    let first_attempts = attempts - retries;
    let retry_rate = retries as f64 / first_attempts as f64;
    println!("{}", proxy.summary());
    println!(
        "throttling storm, 10 tenants ready in {:.1} s: {} requests reached AWS, {} throttled ({:.0}%); \
         SDK: {first_attempts} first attempts, {retries} retries (retry rate {retry_rate:.2}); \
         worker: {} passes retried, {} ready; {:.1} requests/s",
        took.as_secs_f64(),
        seen.total,
        seen.throttled,
        100.0 * seen.throttled as f64 / seen.total as f64,
        passes(&stack, "retrying"),
        passes(&stack, "ready"),
        seen.total as f64 / took.as_secs_f64(),
    );
    // Attempts cut short when a sibling call of the same pass failed reach the proxy but
    // never finish in the SDK.
    assert!(
        seen.total >= attempts,
        "the proxy saw every attempt: {seen:?}, {attempts}"
    );
    assert!(
        seen.throttled * 3 > seen.total,
        "the storm throttled about half: {seen:?}"
    );
    // Five attempts per call at most, each throttled half the time: about 0.94 retries per
    // call on average, 4 at worst.
    assert!(retry_rate < 1.5, "retry rate {retry_rate:.2}");
    stack.stop().await;
}

/// ECS says it cannot assume a new role for a while after IAM created it; the tenant
/// waits it out as a transient error and becomes ready, never `failed`.
#[sqlx::test]
async fn a_role_ecs_cannot_assume_yet_delays_the_tenant_without_failing_it(pool: PgPool) {
    let window = Duration::from_secs(15);
    let faults = FaultConfig::default().rule(
        Rule::error(
            "ecs",
            "CreateService",
            400,
            "InvalidParameterException",
            "ECS was unable to assume the role 'arn:aws:iam::123456789012:role/humangov-alabama-task' \
             that was provided for this task. Please verify that the role being passed has the proper \
             trust relationship and permissions and that your IAM user has permissions to pass this role.",
        )
        .during(window),
    );
    let stack = Stack::start_through(faults, pool, 10, patient()).await;
    let started = Instant::now();
    stack.create("alabama", spec()).await;
    let waiting = stack
        .wait_for("alabama", Duration::from_secs(30), |t| {
            t.last_error
                .as_deref()
                .is_some_and(|e| e.contains("unable to assume"))
        })
        .await;
    assert_eq!(waiting.status, TenantStatus::Provisioning);
    let ready = stack
        .wait_for("alabama", window + Duration::from_secs(45), |t| {
            assert_ne!(t.status, TenantStatus::Failed, "{:?}", t.last_error);
            t.status == TenantStatus::Ready
        })
        .await;
    assert!(
        started.elapsed() >= window,
        "ready only after the role propagated"
    );
    assert_eq!(ready.last_error, None);
    assert_eq!(ever_failed(&stack).await, Vec::<String>::new());
    let c = stack.faults.as_ref().unwrap().snapshot()[&call("ecs", "CreateService")];
    assert!(c.errored >= 2 && c.forwarded >= 1, "{c:?}");
    println!(
        "IAM propagation: ready after {:.1} s; CreateService refused {} times, then created",
        started.elapsed().as_secs_f64(),
        c.errored
    );
    stack.stop().await;
}
