//! The text form of fault rules, for benchmarks and ad-hoc runs:
//!
//! ```text
//! *:* latency 100ms jitter=20ms        # every call, 100-120 ms later
//! ecs:CreateService throttle p=0.5     # half of them answered with ThrottlingException
//! ecs:* bucket rate=1 burst=20         # a token bucket per ECS operation
//! iam:* error status=400 code=Throttling message="Rate exceeded" for=60s
//! s3:* reset first=3; logs:* stall p=0.1
//! preset ecs-limits                    # ecs_limits(): DESIGN.md's published ECS rates
//! ```
//!
//! Rules are separated by newlines or `;`, `#` starts a comment, values with spaces are
//! quoted. Gates on every action but `bucket`: `body=` (only requests whose body holds this
//! text, e.g. a tenant's name), `p=` (probability), `first=` (the first N matching calls),
//! `for=` (a duration from the first matching call).

use std::time::Duration;

use super::rules::{ecs_limits, Action, Rule};

const ACTIONS: &str = "latency, throttle, error, reset, stall, bucket";
const GATES: &[&str] = &["body", "p", "first", "for"];

pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = parse_rule(part).and_then(|found| {
                for rule in &found {
                    rule.check()?;
                }
                Ok(found)
            });
            match parsed {
                Ok(found) => rules.extend(found),
                Err(e) => return Err(format!("line {}: \"{part}\": {e}", index + 1)),
            }
        }
    }
    Ok(rules)
}

fn parse_rule(text: &str) -> Result<Vec<Rule>, String> {
    let words = split_words(text)?;
    let (first, rest) = words.split_first().ok_or("empty rule")?;
    if first == "preset" {
        return match rest {
            [name] if name == "ecs-limits" => Ok(ecs_limits()),
            _ => Err("expected \"preset ecs-limits\"".into()),
        };
    }
    let (service, operation) = first
        .split_once(':')
        .ok_or_else(|| format!("\"{first}\" is not SERVICE:OPERATION (either may be *)"))?;
    let (action, args) = rest
        .split_first()
        .ok_or_else(|| format!("no action, expected one of {ACTIONS}"))?;
    let mut args = Args::new(args, action)?;
    let action = match action.as_str() {
        "latency" => Action::Latency {
            fixed: duration(args.positional.as_deref().unwrap_or("0ms"))?,
            jitter: args
                .take("jitter")
                .map(|j| duration(&j))
                .transpose()?
                .unwrap_or_default(),
        },
        "throttle" => Action::Throttle,
        "error" => Action::Error {
            status: number(&args.take("status").ok_or("error needs status=")?, "status")?,
            code: args.take("code"),
            message: args.take("message"),
        },
        "reset" => Action::Reset,
        "stall" => Action::Stall,
        "bucket" => Action::Bucket {
            rate: number(&args.take("rate").ok_or("bucket needs rate=")?, "rate")?,
            burst: number(&args.take("burst").ok_or("bucket needs burst=")?, "burst")?,
        },
        other => {
            return Err(format!(
                "unknown action \"{other}\", expected one of {ACTIONS}"
            ))
        }
    };
    let mut rule = Rule::new(service, operation, action);
    if let Some(text) = args.take("body") {
        rule.gate.body.push(text);
    }
    if let Some(p) = args.take("p") {
        rule.gate.p = number(&p, "p")?;
    }
    if let Some(n) = args.take("first") {
        rule.gate.first = Some(number(&n, "first")?);
    }
    if let Some(w) = args.take("for") {
        rule.gate.window = Some(duration(&w)?);
    }
    Ok(vec![rule])
}

/// `key=value` settings, checked against what the action takes, and at most one bare value
/// (latency's delay).
struct Args {
    positional: Option<String>,
    named: Vec<(String, String)>,
}

impl Args {
    fn new(words: &[String], action: &str) -> Result<Self, String> {
        let allowed: &[&str] = match action {
            "latency" => &["jitter"],
            "error" => &["status", "code", "message"],
            "bucket" => &["rate", "burst"],
            _ => &[],
        };
        let gates = if action == "bucket" { &[][..] } else { GATES };
        let mut args = Self {
            positional: None,
            named: Vec::new(),
        };
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    if !allowed.contains(&key) && !gates.contains(&key) {
                        let known: Vec<&str> = allowed.iter().chain(gates).copied().collect();
                        return Err(format!(
                            "unknown setting \"{key}\" for {action}, expected {}",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                format!("one of {}", known.join(", "))
                            }
                        ));
                    }
                    if args.named.iter().any(|(k, _)| k == key) {
                        return Err(format!("{key}= given twice"));
                    }
                    args.named.push((key.to_owned(), value.to_owned()));
                }
                None if action == "latency" && args.positional.is_none() => {
                    args.positional = Some(word.clone());
                }
                None => return Err(format!("unexpected \"{word}\", expected key=value")),
            }
        }
        Ok(args)
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let at = self.named.iter().position(|(k, _)| k == key)?;
        Some(self.named.remove(at).1)
    }
}

/// Words separated by spaces; `key="a b"` keeps its spaces.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err("unclosed quote".into());
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what}={text} is not a valid number"))
}

/// `250ms`, `1.5s`, `2m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration \"{text}\" (write e.g. 100ms, 2s or 1m)");
    let (value, unit) = if let Some(v) = text.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('m') {
        (v, 60.0)
    } else {
        return Err(bad());
    };
    let value: f64 = value.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * unit).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::super::rules::Gate;
    use super::*;

    #[test]
    fn every_action_parses_with_its_settings_and_gates() {
        let rules = parse(
            "ecs:CreateService throttle p=0.5; *:* latency 100ms jitter=20ms\n\
             # a comment line\n\
             ecs:* bucket rate=1 burst=20   # trailing comment\n\
             ecs:CreateService error status=400 code=InvalidParameterException message=\"ECS was unable to assume the role\" for=60s\n\
             s3:* reset first=3; logs:* stall; iam:* error status=503",
        )
        .unwrap();
        assert_eq!(rules.len(), 7);
        assert_eq!(rules[0], Rule::throttle("ecs", "CreateService").p(0.5));
        assert_eq!(
            rules[1],
            Rule::latency(
                "*",
                "*",
                Duration::from_millis(100),
                Duration::from_millis(20)
            )
        );
        assert_eq!(rules[2], Rule::bucket("ecs", "*", 1.0, 20));
        assert_eq!(
            rules[3],
            Rule::error(
                "ecs",
                "CreateService",
                400,
                "InvalidParameterException",
                "ECS was unable to assume the role"
            )
            .during(Duration::from_secs(60))
        );
        assert_eq!(
            rules[4].gate,
            Gate {
                first: Some(3),
                ..Gate::default()
            }
        );
        assert_eq!(rules[5], Rule::new("logs", "*", Action::Stall));
        assert_eq!(rules[6], Rule::server_error("iam", "*", 503));
    }

    #[test]
    fn the_ecs_limits_preset_expands_to_its_buckets() {
        assert_eq!(parse("preset ecs-limits").unwrap(), ecs_limits());
    }

    #[test]
    fn bad_input_says_where_and_what_is_wrong() {
        for (text, expected) in [
            (
                "ecs:* throtle",
                "line 1: \"ecs:* throtle\": unknown action \"throtle\", expected one of latency, throttle, error, reset, stall, bucket",
            ),
            ("ok:* throttle", "unknown service \"ok\", expected * or one of"),
            ("ecs throttle", "\"ecs\" is not SERVICE:OPERATION"),
            ("ecs:*", "no action, expected one of"),
            ("*:* throttle p=1.5", "p=1.5 is not a probability"),
            ("*:* throttle p=half", "p=half is not a valid number"),
            ("*:* latency 100", "bad duration \"100\""),
            ("*:* latency 10ms 20ms", "unexpected \"20ms\""),
            ("*:* throttle jitter=5ms", "unknown setting \"jitter\" for throttle, expected one of body, p, first, for"),
            ("*:* bucket rate=1", "bucket needs burst="),
            ("*:* bucket rate=0 burst=1", "rate=0 must be a positive number"),
            ("*:* bucket rate=1 burst=2 p=0.5", "unknown setting \"p\" for bucket, expected one of rate, burst"),
            ("*:* error status=400", "error status=400 needs code="),
            ("*:* error status=200 code=X", "status=200 is not an error status"),
            ("*:* error status=400 code=X message=\"oops", "unclosed quote"),
            ("*:* reset first=2 first=3", "first= given twice"),
            ("preset aws", "expected \"preset ecs-limits\""),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = parse("*:* throttle\n\necs:Create-Service reset").unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");
        assert!(err.contains("bad operation \"Create-Service\""), "{err}");
    }

    #[test]
    fn a_rule_prints_as_the_text_that_parses_back_to_it() {
        let text = "*:* latency 100ms jitter=20ms p=0.5; ecs:CreateService error status=400 \
                    code=InvalidParameterException message=\"unable to assume\" first=3 for=1500ms; \
                    preset ecs-limits; s3:* stall; ecs:RegisterTaskDefinition error status=400 \
                    code=ClientException body=humangov-ohio";
        let rules = parse(text).unwrap();
        let printed: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(parse(&printed.join("\n")).unwrap(), rules);
        assert_eq!(
            printed[2],
            "ecs:RegisterTaskDefinition bucket rate=1 burst=20"
        );
    }

    #[test]
    fn empty_text_means_no_faults() {
        assert_eq!(parse("  \n# nothing\n;;").unwrap(), vec![]);
    }
}
