//! `statehouse healthcheck`: a probe for container health checks (the runtime image has no
//! curl). A plain HTTP/1.0 GET; exit 0 on a 200, 1 on anything else or after the timeout.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The address to probe: http://HOST:PORT/PATH.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    url: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = crate::config::parse_duration)]
    timeout: Duration,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let (authority, path) = split_url(&args.url)?;
    let status = tokio::time::timeout(args.timeout, get(authority, path))
        .await
        .with_context(|| format!("no answer from {} within {:?}", args.url, args.timeout))??;
    if status != 200 {
        bail!("{} answered {status}", args.url);
    }
    Ok(())
}

fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}` is not an http:// URL"))?;
    Ok(match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    })
}

async fn get(authority: &str, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 32];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    status_code(&head[..read])
}

/// The status code of an `HTTP/1.x NNN …` status line.
fn status_code(head: &[u8]) -> anyhow::Result<u16> {
    let line = std::str::from_utf8(head).unwrap_or_default();
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_code_of_an_http_answer() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(status_code(b"HTTP/1.0 503 Service").unwrap(), 503);
        assert!(status_code(b"SSH-2.0-OpenSSH").is_err());
        assert!(status_code(b"").is_err());
    }

    #[test]
    fn splits_an_http_url_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/healthz").unwrap(),
            ("127.0.0.1:8080", "/healthz")
        );
        assert_eq!(split_url("http://db:80").unwrap(), ("db:80", "/"));
        assert!(split_url("https://example.com/").is_err());
    }
}
