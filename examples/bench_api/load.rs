//! A closed-loop HTTP load generator: each connection sends its next request as soon as
//! the last answer is read, over one keep-alive HTTP/1.1 connection, as wrk does.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::bench::percentile;

#[derive(Clone)]
pub struct Load {
    pub addr: String,
    pub path: String,
    pub token: Option<String>,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

pub struct Figures {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub statuses: BTreeMap<u16, usize>,
}

impl Figures {
    /// The statuses as `200×1234`, for a line of the report.
    pub fn statuses(&self) -> String {
        self.statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Latencies of the answers that arrived inside the measuring window, and their statuses.
async fn connection(load: Load, start: Instant) -> (Vec<Duration>, BTreeMap<u16, usize>) {
    let stream = TcpStream::connect(&load.addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let (from, until) = (start + load.warmup, start + load.warmup + load.measure);
    let (mut latencies, mut statuses) = (Vec::new(), BTreeMap::new());
    while Instant::now() < until {
        let mut request = Request::get(&load.path).header("host", &load.addr);
        if let Some(token) = &load.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new()).expect("a request");
        sender.ready().await.expect("the connection stays open");
        let sent = Instant::now();
        let response = sender.send_request(request).await.expect("an answer");
        let status = response.status().as_u16();
        response.into_body().collect().await.expect("the body");
        let done = Instant::now();
        if sent >= from && done <= until {
            latencies.push(done - sent);
            *statuses.entry(status).or_default() += 1;
        }
    }
    (latencies, statuses)
}

/// One task a connection, so they spread over the runtime's threads.
pub async fn run(load: &Load) -> Figures {
    let start = Instant::now();
    let tasks = (0..load.connections).map(|_| tokio::spawn(connection(load.clone(), start)));
    let results = futures::future::join_all(tasks).await;
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::new();
    for (l, s) in results.into_iter().map(|r| r.expect("a connection task")) {
        latencies.extend(l);
        for (status, n) in s {
            *statuses.entry(status).or_default() += n;
        }
    }
    Figures {
        per_second: latencies.len() as f64 / load.measure.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        statuses,
    }
}
