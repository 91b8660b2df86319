//! Test-only fault injection: stop or kill the whole process at a chosen AWS call, so the
//! crash tests can show that a worker dying at any point leaks nothing and duplicates
//! nothing. Inert unless `STATEHOUSE_TEST_FAULT` is set; when unset, the only cost is one
//! `Option` check per call.
//!
//! `STATEHOUSE_TEST_FAULT=<signal>:<when>:<which>`
//! - `signal`: `kill` (SIGKILL: the process is gone at once, as in a power cut or an OOM
//!   kill) or `stop` (SIGSTOP: the process freezes until someone sends SIGCONT, as in a long
//!   GC pause or a stalled VM; it then carries on from that very point);
//! - `when`: `before` (the request is not sent) or `after` (AWS answered, and nothing of it
//!   has reached Postgres yet);
//! - `which`: `N` for the N-th call this process makes (1-based, counting every attempt), or
//!   `Operation` / `Operation#N` for the first / N-th call of that operation. Besides AWS
//!   operations, the process names points of its own with `Aws::checkpoint`:
//!   `RolloutCommit`, just before a rollout step's transaction commits.
//!
//! The process writes one line to stderr before it signals itself, so a test can tell
//! which call it landed on:
//! `statehouse-test-fault: kill after call 17 (elasticloadbalancing CreateRule #1)`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the fault.
pub const ENV: &str = "STATEHOUSE_TEST_FAULT";

/// The prefix of the line written just before the signal.
pub const MARKER: &str = "statehouse-test-fault:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Which {
    Call(u64),
    Operation(String, u64),
}

/// Where to signal; counts calls as they pass.
#[derive(Debug)]
pub struct FaultPoint {
    signal: Signal,
    when: When,
    which: Which,
    seen: AtomicU64,
}

impl FaultPoint {
    /// The fault asked for in the environment, if any. A malformed value is an error, so a
    /// test that meant to crash the worker cannot silently run without the fault.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    pub fn parse(input: &str) -> Result<Self, String> {
        let bad =
            || format!("{ENV}=`{input}`: expected <kill|stop>:<before|after>:<N|Operation[#N]>");
        let mut parts = input.trim().splitn(3, ':');
        let signal = match parts.next() {
            Some("kill") => Signal::Kill,
            Some("stop") => Signal::Stop,
            _ => return Err(bad()),
        };
        let when = match parts.next() {
            Some("before") => When::Before,
            Some("after") => When::After,
            _ => return Err(bad()),
        };
        let which = match parts.next() {
            Some(n) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                Which::Call(n.parse().map_err(|_| bad())?)
            }
            Some(op) if !op.is_empty() => {
                let (name, n) = match op.split_once('#') {
                    Some((name, n)) => (name, n.parse().map_err(|_| bad())?),
                    None => (op, 1),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(bad());
                }
                Which::Operation(name.to_owned(), n)
            }
            _ => return Err(bad()),
        };
        Ok(Self {
            signal,
            when,
            which,
            seen: AtomicU64::new(0),
        })
    }

    /// Called by the call counter before each attempt and after each answer.
    pub(crate) fn check(&self, when: When, service: &str, operation: &str) {
        if when != self.when {
            return;
        }
        let target = match &self.which {
            Which::Call(n) => *n,
            Which::Operation(name, n) if name == operation => *n,
            Which::Operation(..) => return,
        };
        let count = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if count != target {
            return;
        }
        let (signal, word) = match self.signal {
            Signal::Kill => (libc::SIGKILL, "kill"),
            Signal::Stop => (libc::SIGSTOP, "stop"),
        };
        let when = match when {
            When::Before => "before",
            When::After => "after",
        };
        let nth = match &self.which {
            Which::Call(_) => String::new(),
            Which::Operation(_, n) => format!(" #{n}"),
        };
        eprintln!("{MARKER} {word} {when} call {count} ({service} {operation}{nth})");
        // The signal goes to this very thread (raise(3) is tgkill(2) on the caller), so the
        // thread stops or dies before the call returns. kill(2) on the process would let the
        // kernel hand the signal to another thread and, on a busy machine, let this one run
        // on for a while: far enough to pass the lease check and send the request the fault
        // was meant to stop in front of.
        // SAFETY: raise(3) with a valid signal number has no memory effects. SIGKILL never
        // returns; after SIGSTOP the process resumes here on SIGCONT.
        unsafe {
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_point_names_a_signal_a_side_and_a_call() {
        let f = FaultPoint::parse("kill:after:17").unwrap();
        assert_eq!(
            (f.signal, f.when, f.which),
            (Signal::Kill, When::After, Which::Call(17))
        );
        let f = FaultPoint::parse("stop:before:CreateService#2").unwrap();
        assert_eq!(
            (f.signal, f.when, f.which),
            (
                Signal::Stop,
                When::Before,
                Which::Operation("CreateService".into(), 2)
            )
        );
        let f = FaultPoint::parse("kill:before:DeleteRule").unwrap();
        assert_eq!(f.which, Which::Operation("DeleteRule".into(), 1));
    }

    #[test]
    fn a_malformed_fault_point_is_refused() {
        for bad in [
            "",
            "kill",
            "crash:after:1",
            "kill:during:1",
            "kill:after:",
            "kill:after:Create Service",
            "kill:after:CreateService#x",
        ] {
            assert!(FaultPoint::parse(bad).is_err(), "{bad}");
        }
    }
}
