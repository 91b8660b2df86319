//! Fault rules: what to do to which calls, and when.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use rand::Rng;

use super::{identify::Call, identify::SERVICES, respond::ErrorReply};

/// A service and an operation, either of which may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub operation: String,
}

impl Target {
    pub fn new(service: &str, operation: &str) -> Self {
        Self {
            service: service.to_owned(),
            operation: operation.to_owned(),
        }
    }

    fn matches(&self, call: &Call) -> bool {
        (self.service == "*" || self.service == call.service)
            && (self.operation == "*" || self.operation == call.operation)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delay the call, then go on with the next rule.
    Latency { fixed: Duration, jitter: Duration },
    /// Answer with the service's throttling error.
    Throttle,
    /// Answer with this error; `code` and `message` default per protocol for 500 and 503.
    Error {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// Close the connection without answering.
    Reset,
    /// Never answer; the client has to time out.
    Stall,
    /// A token bucket per operation: `rate` tokens a second, at most `burst`; an empty
    /// bucket answers with the throttling error.
    Bucket { rate: f64, burst: u32 },
    /// Answer 200 with this JSON body in the protocol's content type, without asking the
    /// emulator: a fixture of what AWS says where the emulator cannot (e.g. stopped tasks).
    Reply { json: String },
}

/// When a rule applies to a call it matches: only to calls whose request body holds every
/// string of `body` (so a rule can aim at one tenant, by its resource names), with
/// probability `p`, only to the first `first` matching calls, and only within `window` of
/// the first matching call.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub body: Vec<String>,
    pub p: f64,
    pub first: Option<u64>,
    pub window: Option<Duration>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            body: Vec::new(),
            p: 1.0,
            first: None,
            window: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub target: Target,
    pub action: Action,
    pub gate: Gate,
}

impl Rule {
    pub fn new(service: &str, operation: &str, action: Action) -> Self {
        Self {
            target: Target::new(service, operation),
            action,
            gate: Gate::default(),
        }
    }

    pub fn latency(service: &str, operation: &str, fixed: Duration, jitter: Duration) -> Self {
        Self::new(service, operation, Action::Latency { fixed, jitter })
    }

    pub fn throttle(service: &str, operation: &str) -> Self {
        Self::new(service, operation, Action::Throttle)
    }

    /// A 500 or 503 in the protocol's own words.
    pub fn server_error(service: &str, operation: &str, status: u16) -> Self {
        Self::new(
            service,
            operation,
            Action::Error {
                status,
                code: None,
                message: None,
            },
        )
    }

    pub fn error(service: &str, operation: &str, status: u16, code: &str, message: &str) -> Self {
        Self::new(
            service,
            operation,
            Action::Error {
                status,
                code: Some(code.to_owned()),
                message: Some(message.to_owned()),
            },
        )
    }

    /// Answers the call with `json`, as AWS would (JSON protocols only).
    pub fn reply(service: &str, operation: &str, json: &serde_json::Value) -> Self {
        Self::new(
            service,
            operation,
            Action::Reply {
                json: json.to_string(),
            },
        )
    }

    pub fn bucket(service: &str, operation: &str, rate: f64, burst: u32) -> Self {
        Self::new(service, operation, Action::Bucket { rate, burst })
    }

    /// Applies only to calls whose request body holds `text` (all of them, when called
    /// again): e.g. one tenant's family name and one image.
    pub fn body(mut self, text: &str) -> Self {
        self.gate.body.push(text.to_owned());
        self
    }

    /// Applies to each matching call with probability `p`.
    pub fn p(mut self, p: f64) -> Self {
        self.gate.p = p;
        self
    }

    /// Applies only to the first `n` matching calls.
    pub fn first(mut self, n: u64) -> Self {
        self.gate.first = Some(n);
        self
    }

    /// Applies only for `window` from the first matching call.
    pub fn during(mut self, window: Duration) -> Self {
        self.gate.window = Some(window);
        self
    }

    /// Why the rule cannot work, in words for whoever wrote it.
    pub fn check(&self) -> Result<(), String> {
        let Target { service, operation } = &self.target;
        if service != "*" && !SERVICES.contains(&service.as_str()) {
            return Err(format!(
                "unknown service \"{service}\", expected * or one of {}",
                SERVICES.join(", ")
            ));
        }
        if operation.is_empty()
            || !operation
                .chars()
                .all(|c| c == '*' || c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "bad operation \"{operation}\", expected * or a name like CreateService"
            ));
        }
        if !(0.0..=1.0).contains(&self.gate.p) {
            return Err(format!(
                "p={} is not a probability between 0 and 1",
                self.gate.p
            ));
        }
        match &self.action {
            Action::Error { status, code, .. } => {
                if !(400..=599).contains(status) {
                    return Err(format!("status={status} is not an error status (400-599)"));
                }
                if code.is_none() && !matches!(status, 500 | 503) {
                    return Err(format!(
                        "error status={status} needs code=, only 500 and 503 have a default"
                    ));
                }
            }
            Action::Bucket { rate, burst } => {
                if !(rate.is_finite() && *rate > 0.0) {
                    return Err(format!(
                        "rate={rate} must be a positive number of calls a second"
                    ));
                }
                if *burst == 0 {
                    return Err("burst=0 would refuse every call; use throttle for that".into());
                }
                if self.gate != Gate::default() {
                    return Err("bucket takes only rate= and burst=".into());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The rule in the text form `parse` reads.
impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ", self.target.service, self.target.operation)?;
        match &self.action {
            Action::Latency { fixed, jitter } => write!(
                f,
                "latency {}ms jitter={}ms",
                fixed.as_millis(),
                jitter.as_millis()
            )?,
            Action::Throttle => write!(f, "throttle")?,
            Action::Error {
                status,
                code,
                message,
            } => {
                write!(f, "error status={status}")?;
                if let Some(code) = code {
                    write!(f, " code={code}")?;
                }
                if let Some(message) = message {
                    write!(f, " message=\"{message}\"")?;
                }
            }
            Action::Reset => write!(f, "reset")?,
            Action::Stall => write!(f, "stall")?,
            Action::Bucket { rate, burst } => write!(f, "bucket rate={rate} burst={burst}")?,
            Action::Reply { json } => write!(f, "reply ({} bytes of JSON)", json.len())?,
        }
        let Gate {
            body,
            p,
            first,
            window,
        } = &self.gate;
        for text in body {
            write!(f, " body=\"{text}\"")?;
        }
        if *p < 1.0 {
            write!(f, " p={p}")?;
        }
        if let Some(n) = first {
            write!(f, " first={n}")?;
        }
        if let Some(w) = window {
            write!(f, " for={}ms", w.as_millis())?;
        }
        Ok(())
    }
}

/// The rules AWS's ECS limits amount to (DESIGN.md, "AWS facts"): sustained rates, and the
/// burst where one is published; elsewhere the burst is one second's worth, the strict reading.
pub fn ecs_limits() -> Vec<Rule> {
    vec![
        Rule::bucket("ecs", "RegisterTaskDefinition", 1.0, 20),
        Rule::bucket("ecs", "CreateService", 5.0, 5),
        Rule::bucket("ecs", "UpdateService", 5.0, 5),
        Rule::bucket("ecs", "DeleteService", 5.0, 5),
        Rule::bucket("ecs", "DescribeServices", 20.0, 20),
    ]
}

/// What a rule decided for one call.
pub enum Verdict {
    Delay(Duration),
    Refuse(ErrorReply),
    Reset,
    Stall,
    Answer(String),
    Pass,
}

/// A rule with its running state.
pub struct Live {
    pub rule: Rule,
    matched: AtomicU64,
    first_match: OnceLock<Instant>,
    buckets: Mutex<HashMap<Call, (f64, Instant)>>,
}

impl Live {
    pub fn new(rule: Rule) -> Self {
        Self {
            rule,
            matched: AtomicU64::new(0),
            first_match: OnceLock::new(),
            buckets: Mutex::default(),
        }
    }

    pub fn judge(&self, call: &Call, body: &[u8]) -> Verdict {
        if !self.rule.target.matches(call) || !self.body_matches(body) || !self.gate_open() {
            return Verdict::Pass;
        }
        match &self.rule.action {
            Action::Latency { fixed, jitter } => {
                let extra = jitter.mul_f64(rand::rng().random_range(0.0..=1.0));
                Verdict::Delay(*fixed + extra)
            }
            Action::Throttle => Verdict::Refuse(ErrorReply::throttling(call)),
            Action::Error {
                status,
                code,
                message,
            } => {
                let default = ErrorReply::server(call, *status);
                let pick = |given: &Option<String>, fallback: Option<&str>| {
                    given
                        .clone()
                        .or(fallback.map(str::to_owned))
                        .unwrap_or_default()
                };
                Verdict::Refuse(ErrorReply {
                    status: *status,
                    code: pick(code, default.as_ref().map(|d| d.code.as_str())),
                    message: pick(message, default.as_ref().map(|d| d.message.as_str())),
                })
            }
            Action::Reset => Verdict::Reset,
            Action::Stall => Verdict::Stall,
            Action::Reply { json } => Verdict::Answer(json.clone()),
            Action::Bucket { rate, burst } => {
                if self.take_token(call, *rate, *burst) {
                    Verdict::Pass
                } else {
                    Verdict::Refuse(ErrorReply::throttling(call))
                }
            }
        }
    }

    fn body_matches(&self, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        self.rule
            .gate
            .body
            .iter()
            .all(|b| text.contains(b.as_str()))
    }

    fn gate_open(&self) -> bool {
        let gate = &self.rule.gate;
        let n = self.matched.fetch_add(1, Ordering::Relaxed);
        if gate.first.is_some_and(|first| n >= first) {
            return false;
        }
        let since = self.first_match.get_or_init(Instant::now).elapsed();
        if gate.window.is_some_and(|w| since > w) {
            return false;
        }
        gate.p >= 1.0 || rand::rng().random_bool(gate.p)
    }

    fn take_token(&self, call: &Call, rate: f64, burst: u32) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        let now = Instant::now();
        let (tokens, last) = buckets
            .entry(call.clone())
            .or_insert((f64::from(burst), now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(f64::from(burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: &str) -> Call {
        Call {
            service: "ecs".into(),
            operation: op.into(),
        }
    }

    #[test]
    fn a_bucket_lets_the_burst_through_then_refuses_until_it_refills() {
        let live = Live::new(Rule::bucket("ecs", "*", 1.0, 20));
        let passed = (0..25)
            .filter(|_| {
                matches!(
                    live.judge(&call("RegisterTaskDefinition"), b""),
                    Verdict::Pass
                )
            })
            .count();
        assert_eq!(passed, 20);
        // Each operation has a bucket of its own.
        assert!(matches!(
            live.judge(&call("CreateService"), b""),
            Verdict::Pass
        ));
    }

    #[test]
    fn a_body_gate_aims_at_the_calls_that_name_one_tenant() {
        let live = Live::new(
            Rule::error("ecs", "*", 400, "ClientException", "refused")
                .body("humangov-ohio")
                .body("app:bad"),
        );
        let register = call("RegisterTaskDefinition");
        let ohio = br#"{"family":"humangov-ohio","image":"humangov/app:bad"}"#;
        let iowa = br#"{"family":"humangov-iowa","image":"humangov/app:bad"}"#;
        let good = br#"{"family":"humangov-ohio","image":"humangov/app:1"}"#;
        assert!(matches!(live.judge(&register, ohio), Verdict::Refuse(_)));
        assert!(matches!(live.judge(&register, iowa), Verdict::Pass));
        assert!(matches!(live.judge(&register, good), Verdict::Pass));
    }

    #[test]
    fn first_n_applies_to_the_first_n_matching_calls_only() {
        let live = Live::new(Rule::throttle("ecs", "CreateService").first(2));
        let refused = (0..5)
            .filter(|_| matches!(live.judge(&call("CreateService"), b""), Verdict::Refuse(_)))
            .count();
        assert_eq!(refused, 2);
        assert!(matches!(
            live.judge(&call("DescribeServices"), b""),
            Verdict::Pass
        ));
    }

    #[test]
    fn a_window_closes_after_its_time_from_the_first_match() {
        let live = Live::new(Rule::throttle("*", "*").during(Duration::from_millis(50)));
        assert!(matches!(live.judge(&call("X"), b""), Verdict::Refuse(_)));
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(live.judge(&call("X"), b""), Verdict::Pass));
    }

    #[test]
    fn an_error_without_a_code_takes_the_protocols_default() {
        let live = Live::new(Rule::server_error("*", "*", 503));
        let Verdict::Refuse(reply) = live.judge(&call("X"), b"") else {
            panic!("refused")
        };
        assert_eq!(
            (reply.status, reply.code.as_str()),
            (503, "ServiceUnavailableException")
        );
    }
}
