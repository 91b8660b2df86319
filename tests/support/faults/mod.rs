//! A fault-injecting proxy between statehouse and the AWS emulator: per service and
//! operation it adds latency, throttles the way AWS does (in each protocol's real error
//! format), answers 5xx or any error, resets or stalls connections, and enforces token
//! buckets like AWS's published ECS limits. Everything it did is counted.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&moto.endpoint, FaultConfig::default()
//!     .rule(Rule::throttle("*", "*").p(0.5))
//!     .rules(ecs_limits())).await?;
//! // point the SDK at proxy.endpoint …
//! println!("{}", proxy.summary());
//! ```

mod identify;
mod parse;
mod respond;
mod rules;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};

pub use identify::Call;
pub use rules::{ecs_limits, Action, Rule};

use rules::{Live, Verdict};

/// The rules, applied in order to every call: latency rules delay it and go on, a bucket
/// with tokens lets it go on, and the first rule that answers decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    pub rules: Vec<Rule>,
}

impl FaultConfig {
    /// Rules in the text form (see `parse.rs`); errors name the line and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse::parse(text).map(|rules| Self { rules })
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.rules.extend(rules);
        self
    }
}

/// What happened to the calls of one service and operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub forwarded: u64,
    /// Answered with the service's throttling error (a throttle rule or an empty bucket).
    pub throttled: u64,
    /// Answered with another error.
    pub errored: u64,
    pub reset: u64,
    pub stalled: u64,
    /// Answered by a `reply` rule with its fixture.
    pub answered: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.forwarded += other.forwarded;
        self.throttled += other.throttled;
        self.errored += other.errored;
        self.answered += other.answered;
        self.reset += other.reset;
        self.stalled += other.stalled;
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rules: Vec<Live>,
    counts: Mutex<BTreeMap<Call, Counts>>,
    /// Client connections open now.
    connections: AtomicUsize,
    /// Requests sent on to the emulator and not yet answered by it.
    forwarding: AtomicUsize,
}

pub struct FaultProxy {
    /// Where to point the SDK: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns every connection task; aborting it ends them all.
        self.accept.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (e.g. the emulator).
    pub async fn start(upstream: &str, config: FaultConfig) -> Result<Self, String> {
        for (i, rule) in config.rules.iter().enumerate() {
            rule.check().map_err(|e| format!("rule {}: {e}", i + 1))?;
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the forwarding client: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            rules: config.rules.into_iter().map(Live::new).collect(),
            counts: Mutex::default(),
            connections: AtomicUsize::new(0),
            forwarding: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            endpoint: format!("http://{addr}"),
            shared,
            accept,
        })
    }

    /// No client connection is open and the emulator has answered everything sent on to it:
    /// once the clients are gone, every request they made has had its effect.
    pub fn is_quiet(&self) -> bool {
        self.shared.connections.load(Ordering::SeqCst) == 0
            && self.shared.forwarding.load(Ordering::SeqCst) == 0
    }

    pub fn snapshot(&self) -> BTreeMap<Call, Counts> {
        self.shared
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn totals(&self) -> Counts {
        let mut sum = Counts::default();
        for c in self.snapshot().values() {
            sum.add(c);
        }
        sum
    }

    /// One line per operation and a total, for printing.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{:<52} {:>6} {:>9} {:>9} {:>7} {:>5} {:>7}\n",
            "service:operation", "total", "forwarded", "throttled", "errored", "reset", "stalled"
        );
        let line = |name: &str, c: &Counts| {
            format!(
                "{name:<52} {:>6} {:>9} {:>9} {:>7} {:>5} {:>7}\n",
                c.total, c.forwarded, c.throttled, c.errored, c.reset, c.stalled
            )
        };
        for (call, c) in self.snapshot() {
            out += &line(&format!("{}:{}", call.service, call.operation), &c);
        }
        out += &line("total", &self.totals());
        out
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Closing a connection then sends a TCP reset: a `reset` rule looks like AWS's
        // load balancer dropping the connection, and nothing else closes a live one.
        let _ = stream.set_zero_linger();
        let shared = shared.clone();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        connections.spawn(async move {
            let _open = Closes(shared.clone());
            let kill = Arc::new(Notify::new());
            let on_kill = kill.clone();
            let service = service_fn(move |req| {
                let (shared, kill) = (shared.clone(), kill.clone());
                async move { handle(&shared, &kill, req).await }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = on_kill.notified() => {}
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Closes the count of a connection when its task ends, however it ends.
struct Closes(Arc<Shared>);

impl Drop for Closes {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

type Reply = Result<Response<Full<Bytes>>, std::convert::Infallible>;

async fn handle(shared: &Arc<Shared>, kill: &Notify, req: Request<hyper::body::Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(400, "unreadable request body")),
    };
    let call = identify::identify(
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    );
    let mut counted = Counts {
        total: 1,
        ..Counts::default()
    };
    let mut verdict = Verdict::Pass;
    for rule in &shared.rules {
        match rule.judge(&call, &body) {
            Verdict::Delay(d) => tokio::time::sleep(d).await,
            Verdict::Pass => {}
            decided => {
                verdict = decided;
                break;
            }
        }
    }
    let reply = match verdict {
        Verdict::Refuse(reply) => {
            if reply.code == respond::ErrorReply::throttling(&call).code {
                counted.throttled = 1;
            } else {
                counted.errored = 1;
            }
            Some(reply.to_response(&call))
        }
        Verdict::Reset => {
            counted.reset = 1;
            None
        }
        Verdict::Answer(json) => {
            counted.answered = 1;
            Some(respond::fixture(&call, json))
        }
        Verdict::Stall => {
            counted.stalled = 1;
            None
        }
        Verdict::Pass | Verdict::Delay(_) => {
            counted.forwarded = 1;
            // Once sent on, a request reaches the emulator even if its client goes away,
            // as a request that reached AWS does.
            let shared = shared.clone();
            shared.forwarding.fetch_add(1, Ordering::SeqCst);
            let sent = tokio::spawn(async move {
                let reply = forward(&shared, parts, body).await;
                shared.forwarding.fetch_sub(1, Ordering::SeqCst);
                reply
            });
            Some(
                sent.await
                    .unwrap_or_else(|_| plain(502, "the forwarding task failed")),
            )
        }
    };
    record(shared, &call, &counted);
    match reply {
        Some(reply) => Ok(reply),
        None => {
            if counted.reset == 1 {
                kill.notify_one();
            }
            // Stalled (or about to be closed): never answer.
            std::future::pending().await
        }
    }
}

fn record(shared: &Shared, call: &Call, counted: &Counts) {
    if let Ok(mut counts) = shared.counts.lock() {
        counts.entry(call.clone()).or_default().add(counted);
    }
}

/// Headers that belong to one hop, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

async fn forward(
    shared: &Shared,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", shared.upstream);
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let sent = shared
        .client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let res = match sent {
        Ok(res) => res,
        Err(e) => return plain(502, &format!("the emulator did not answer: {e}")),
    };
    let status = res.status();
    let mut headers = res.headers().clone();
    let bytes = match res.bytes().await {
        Ok(b) => b,
        Err(e) => return plain(502, &format!("the emulator's answer broke off: {e}")),
    };
    for name in HOP_BY_HOP {
        // A HEAD answer has no body, but its length is part of the answer.
        if !(*name == "content-length" && parts.method == hyper::Method::HEAD) {
            headers.remove(*name);
        }
    }
    let mut out = Response::new(Full::new(bytes));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn plain(status: u16, text: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(text.to_owned())));
    *res.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    res
}
