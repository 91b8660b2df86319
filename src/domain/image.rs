//! Container image references, checked against the grammar Docker and ECR accept:
//! `[registry[:port]/]path[:tag][@algorithm:digest]`.

use std::fmt;

const MAX_LEN: usize = 255;

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
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (input, None),
        };
        if let Some(digest) = digest {
            check_digest(digest)?;
        }
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        check_name(name)?;
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `:` after the last `/` starts the tag; one before it belongs to a registry port.
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, None),
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let bad = || format!("digest `{digest}` must look like `sha256:` followed by 64 hex digits");
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let known_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    if hex.len() == known_len
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok_first = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok_rest = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok_first && ok_rest && tag.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1-128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && looks_like_registry(parts[0]) {
        check_registry(parts.remove(0))?;
    }
    for part in parts {
        check_path_component(part)?;
    }
    Ok(())
}

fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "registry `{registry}` is not a valid host name with an optional port"
        ))
    }
}

/// Path components are lowercase alphanumerics joined by single `.`, `_`, `__` or runs of `-`.
fn check_path_component(part: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{part}` is not a valid repository path component: use lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
        )
    };
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return Err(bad());
        }
    }
    Ok(())
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
