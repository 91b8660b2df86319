//! Container image references, checked against the grammar Docker and ECR accept:
//! `[registry[:port]/]path[:tag][@algorithm:digest]`. One pattern is both the check and
//! what the API document states, so the two cannot disagree.

use std::{fmt, sync::LazyLock};

use regex::Regex;

pub const MAX_LEN: usize = 255;

/// A repository path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
macro_rules! component {
    () => {
        "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    };
}
/// A path component without `.`: a first component with a `.` or `:` names a registry.
macro_rules! plain_component {
    () => {
        "[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*"
    };
}
macro_rules! host_label {
    () => {
        "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    };
}

/// An image reference (ECMA-262 syntax, which the `regex` crate reads the same way). One
/// component alone is a repository; with more, the first is a registry (a host name with
/// a dot, a host with a port, or `localhost`) or a component without a dot.
pub const PATTERN: &str = concat!(
    "^(?:",
    component!(),
    "|(?:",
    host_label!(),
    "(?:\\.",
    host_label!(),
    ")+(?::[0-9]{1,5})?|",
    host_label!(),
    ":[0-9]{1,5}|localhost|",
    plain_component!(),
    ")(?:/",
    component!(),
    ")+)(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}))?$"
);

static GRAMMAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(PATTERN).expect("the image reference pattern compiles"));

pub const RULE: &str =
    "an image reference `[registry[:port]/]repository[:tag][@sha256:<64 hex digits>]`: \
    repository path components of lowercase letters and digits joined by `.`, `_`, `__` or `-`, \
    a tag of 1-128 letters, digits, `_`, `.` or `-` not starting with `.` or `-`";

#[derive(Clone, PartialEq, Eq)]
pub struct ImageRef(String);

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() {
            return Err("must not be empty".into());
        }
        if input.len() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        if GRAMMAR.is_match(input) {
            Ok(Self(input.to_owned()))
        } else {
            Err(format!("`{input}` is not {RULE}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::ImageRef;

    #[test]
    fn accepts_common_references() {
        for ok in [
            "nginx",
            "nginx:1.27-alpine",
            "humangov/app:latest",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/humangov-app:v1.2.3",
            "localhost:5000/team/app_v2",
            "public.ecr.aws/nginx/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "registry.example.com:443/a/b/c:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "UPPER/case",
            "nginx:",
            "nginx:-bad",
            "nginx@sha256:short",
            "a//b",
            "-leading",
            "trailing-",
            "has space",
            "nginx:tag:another",
            "bad..dots",
            "host:99999999/app",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ImageRef::parse(&"a".repeat(300)).is_err());
    }
}
