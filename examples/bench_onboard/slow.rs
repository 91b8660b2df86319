//! The slow-emulator case: every call through a fault proxy that adds latency and enforces
//! AWS's ECS rate limits; 1 tenant, then 56, against the target of 56 in at most 2 × the time
//! of one, next to the least time the enforced limits allow at all.

use std::time::Duration;

use super::{
    faults::{ecs_limits, Action, FaultConfig, Rule},
    ms, onboard,
};

/// The rules from `STATEHOUSE_BENCH_FAULTS`, or by default every call 100 ms later and the
/// ECS limits (`*:* latency 100ms; preset ecs-limits`).
pub fn faults() -> Result<FaultConfig, String> {
    match std::env::var("STATEHOUSE_BENCH_FAULTS") {
        Ok(text) => FaultConfig::parse(&text),
        Err(_) => Ok(FaultConfig::default()
            .rule(Rule::latency(
                "*",
                "*",
                Duration::from_millis(100),
                Duration::ZERO,
            ))
            .rules(ecs_limits())),
    }
}

/// Operations a fresh tenant calls exactly once each.
const ONCE_PER_TENANT: &[&str] = &["RegisterTaskDefinition", "CreateService"];

/// The least time `n` fresh tenants can take under the config's ECS token buckets: a bucket
/// lets `burst` calls through at once and then `rate` a second, so `n` calls of one operation
/// need at least (n − burst) / rate seconds. The operation that needs longest, and how long.
fn bucket_floor(config: &FaultConfig, n: usize) -> Option<(String, f64, u32, Duration)> {
    config
        .rules
        .iter()
        .filter(|r| matches!(r.target.service.as_str(), "ecs" | "*"))
        .filter_map(|r| match r.action {
            Action::Bucket { rate, burst } => Some((r, rate, burst)),
            _ => None,
        })
        .flat_map(|(r, rate, burst)| {
            ONCE_PER_TENANT
                .iter()
                .filter(move |op| r.target.operation == "*" || r.target.operation == **op)
                .map(move |op| {
                    let calls = n.saturating_sub(burst as usize) as f64;
                    (
                        (*op).to_owned(),
                        rate,
                        burst,
                        Duration::from_secs_f64(calls / rate),
                    )
                })
        })
        .max_by_key(|(_, _, _, floor)| *floor)
}

pub async fn run(admin_url: &str, config: &FaultConfig) {
    let n = 56;
    println!("slow emulator: every call through a fault proxy with these rules:");
    for rule in &config.rules {
        println!("  {rule}");
    }
    let one = onboard(1, admin_url, Some(config)).await;
    let many = onboard(n, admin_url, Some(config)).await;
    let ratio = many.wall.as_secs_f64() / one.wall.as_secs_f64();
    let verdict = if ratio <= 2.0 { "met" } else { "missed" };
    println!();
    println!("  1 tenant ready in  {:>10}", ms(one.wall));
    println!(
        "{n:>3} tenants ready in {:>10}  ({ratio:.2} x one tenant; target <= 2.00 x, i.e. <= {})",
        ms(many.wall),
        ms(one.wall * 2)
    );
    match bucket_floor(config, n) {
        Some((op, rate, burst, floor)) => {
            println!(
                "  floor under the enforced limits: {n} x {op} at {rate}/s with burst {burst} need at least {} ({:.2} x one tenant)",
                ms(floor),
                floor.as_secs_f64() / one.wall.as_secs_f64()
            );
            if floor > one.wall * 2 {
                println!(
                    "  the 2 x target cannot be met with these limits enforced: their floor alone is above it; \
                     {} is {:.2} x that floor",
                    ms(many.wall),
                    many.wall.as_secs_f64() / floor.as_secs_f64()
                );
            } else {
                println!("  target {verdict}");
            }
        }
        None => println!("  no ECS token bucket in the rules; target {verdict}"),
    }
    if let Some(summary) = &many.faults {
        println!();
        println!("what the proxy did in the {n}-tenant run:");
        print!("{summary}");
    }
}
