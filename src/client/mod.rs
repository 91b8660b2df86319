//! A typed client for the `/v1` REST API, used by the `statehouse tenants …` commands.
//! It speaks only HTTP: everything it knows comes from the API's answers.

pub mod config;

use std::time::Duration;

use reqwest::{header, Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    db::{events::Event, rollouts::Rollout},
    domain::{
        rollout::RolloutState,
        tenant::{DataPolicy, Tenant, TenantStatus},
    },
    health::{live::LiveHealth, HealthStatus},
    http::{
        error::Problem,
        events::EventPage,
        fleet::Fleet,
        rollouts::{RolloutEventPage, RolloutPage},
        sizing::FleetSizing,
        tenants::TenantPage,
    },
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A 429 is sent again this many times, after the wait the server asks for (at most 30 s).
const BUSY_RETRIES: u32 = 5;
const MAX_BUSY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an RFC 9457 problem (or an error status without one).
    #[error("{}: {}", .0.title, .0.detail)]
    Api(Problem),
    /// The API could not be reached, or did not answer in time.
    #[error("cannot reach the statehouse API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API answered, but not with what this client understands.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(problem) => Some(problem.status),
            _ => None,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

/// A tenant and the ETag it was served with.
#[derive(Debug)]
pub struct Tagged {
    pub tenant: Tenant,
    pub etag: String,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("statehouse-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `request`. A 429 means the server turned the request away before doing
    /// anything with it, so it is sent again, whatever its method, after `Retry-After`.
    async fn send(&self, request: RequestBuilder) -> ClientResult<Response> {
        let mut request = request.build().map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let url = request.url().to_string();
        let mut retries = 0;
        let response = loop {
            let again = request.try_clone();
            let response =
                self.http
                    .execute(request)
                    .await
                    .map_err(|e| ClientError::Unreachable {
                        url: self.base.clone(),
                        reason: root_cause(&e),
                    })?;
            match again {
                Some(next)
                    if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                        && retries < BUSY_RETRIES =>
                {
                    retries += 1;
                    tokio::time::sleep(retry_after(&response)).await;
                    request = next;
                }
                _ => break response,
            }
        };
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(problem(url, response).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> ClientResult<T> {
        let response = self.send(request).await?;
        decode(response).await
    }

    async fn tagged(&self, request: RequestBuilder) -> ClientResult<Tagged> {
        let response = self.send(request).await?;
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Tagged {
            tenant: decode(response).await?,
            etag,
        })
    }

    /// `POST /v1/tenants`, tried once more after a lost connection or a 502/503/504: the
    /// idempotency key makes the server answer a repeat with the first result.
    pub async fn create(&self, body: &Value, idempotency_key: &str) -> ClientResult<Tenant> {
        let attempt = || {
            self.json(
                self.request(Method::POST, "/v1/tenants")
                    .header("idempotency-key", idempotency_key)
                    .json(body),
            )
        };
        match attempt().await {
            Err(err) if worth_retrying(&err) => {
                tokio::time::sleep(RETRY_AFTER).await;
                attempt().await
            }
            other => other,
        }
    }

    /// The tenant as the database holds it: a command that just changed it, or waits for
    /// it, must not read an API process's memory from before the change.
    pub async fn get(&self, name: &str) -> ClientResult<Tagged> {
        self.tagged(
            self.request(Method::GET, &tenant_path(name))
                .header(header::CACHE_CONTROL, "no-cache"),
        )
        .await
    }

    /// One page of `GET /v1/tenants`.
    pub async fn list_page(
        &self,
        status: Option<TenantStatus>,
        health: Option<HealthStatus>,
        limit: u32,
        cursor: Option<&str>,
    ) -> ClientResult<TenantPage> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(status) = status {
            query.push(("status", status.as_str().to_owned()));
        }
        if let Some(health) = health {
            query.push(("health", health.as_str().to_owned()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.json(self.request(Method::GET, "/v1/tenants").query(&query))
            .await
    }

    /// Every tenant, following `next_cursor` to the last page.
    pub async fn list_all(
        &self,
        status: Option<TenantStatus>,
        health: Option<HealthStatus>,
        page_size: u32,
    ) -> ClientResult<Vec<Tenant>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_page(status, health, page_size, cursor.as_deref())
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// `PATCH` with a JSON merge patch, only if the tenant still has `etag`.
    pub async fn patch(&self, name: &str, etag: &str, patch: &Value) -> ClientResult<Tenant> {
        self.json(
            self.request(Method::PATCH, &tenant_path(name))
                .header(header::CONTENT_TYPE, "application/merge-patch+json")
                .header(header::IF_MATCH, etag)
                .body(patch.to_string()),
        )
        .await
    }

    /// Reads the tenant for its ETag and patches it; if someone changed it in between
    /// (412), reads it again and retries once.
    pub async fn update(&self, name: &str, patch: &Value) -> ClientResult<Tenant> {
        let mut retried = false;
        loop {
            let current = self.get(name).await?;
            match self.patch(name, &current.etag, patch).await {
                Err(err) if err.status() == Some(412) && !retried => retried = true,
                other => return other,
            }
        }
    }

    pub async fn delete(&self, name: &str, data: DataPolicy) -> ClientResult<Tenant> {
        self.json(
            self.request(Method::DELETE, &tenant_path(name))
                .query(&[("data", data.as_str())]),
        )
        .await
    }

    pub async fn reconcile(&self, name: &str) -> ClientResult<Tenant> {
        self.json(self.request(Method::POST, &format!("{}/reconcile", tenant_path(name))))
            .await
    }

    /// The tenant's health read from AWS now (shared by every caller for up to 10 s).
    pub async fn health(&self, name: &str) -> ClientResult<LiveHealth> {
        self.json(self.request(Method::GET, &format!("{}/health", tenant_path(name))))
            .await
    }

    /// `GET /v1/fleet`.
    pub async fn fleet(&self) -> ClientResult<Fleet> {
        self.json(self.request(Method::GET, "/v1/fleet")).await
    }

    /// `POST /v1/tenants/{name}/sizing/apply`: the recommended size becomes the spec.
    pub async fn apply_sizing(&self, name: &str) -> ClientResult<Tenant> {
        self.json(self.request(Method::POST, &format!("{}/sizing/apply", tenant_path(name))))
            .await
    }

    /// `GET /v1/fleet/sizing`.
    pub async fn fleet_sizing(&self) -> ClientResult<FleetSizing> {
        self.json(self.request(Method::GET, "/v1/fleet/sizing"))
            .await
    }

    /// `POST /v1/rollouts` (or its dry run), tried once more like [`Client::create`].
    pub async fn create_rollout(
        &self,
        body: &Value,
        dry_run: bool,
        idempotency_key: &str,
    ) -> ClientResult<Value> {
        let attempt = || {
            let mut request = self
                .request(Method::POST, "/v1/rollouts")
                .query(&[("dry_run", dry_run)])
                .json(body);
            if !dry_run {
                request = request.header("idempotency-key", idempotency_key);
            }
            self.json(request)
        };
        match attempt().await {
            Err(err) if worth_retrying(&err) => {
                tokio::time::sleep(RETRY_AFTER).await;
                attempt().await
            }
            other => other,
        }
    }

    pub async fn rollout(&self, id: &str) -> ClientResult<Rollout> {
        self.json(self.request(Method::GET, &rollout_path(id)))
            .await
    }

    /// Every rollout (newest first), optionally in one state, following the pages.
    pub async fn rollouts(&self, state: Option<RolloutState>) -> ClientResult<Vec<Rollout>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned())];
            if let Some(state) = state {
                query.push(("state", state.as_str().to_owned()));
            }
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let page: RolloutPage = self
                .json(self.request(Method::GET, "/v1/rollouts").query(&query))
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The rollout's events after `cursor` (from the start without one), oldest first.
    pub async fn rollout_events(
        &self,
        id: &str,
        cursor: Option<&str>,
    ) -> ClientResult<RolloutEventPage> {
        let mut query = vec![("limit", "500".to_owned())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.json(
            self.request(Method::GET, &format!("{}/events", rollout_path(id)))
                .query(&query),
        )
        .await
    }

    /// `POST /v1/rollouts/{id}/{op}`: pause, resume, promote or abort.
    pub async fn rollout_op(
        &self,
        id: &str,
        op: &str,
        body: Option<&Value>,
    ) -> ClientResult<Rollout> {
        let mut request = self.request(Method::POST, &format!("{}/{op}", rollout_path(id)));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.json(request).await
    }

    /// The newest `limit` events of a state, newest first.
    pub async fn events(&self, name: &str, limit: u32) -> ClientResult<Vec<Event>> {
        let page: EventPage = self
            .json(
                self.request(Method::GET, &format!("{}/events", tenant_path(name)))
                    .query(&[("limit", limit)]),
            )
            .await?;
        Ok(page.items)
    }
}

/// The wait a 429 asks for: `Retry-After` seconds, within 1 s and [`MAX_BUSY_WAIT`].
fn retry_after(response: &Response) -> Duration {
    response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(RETRY_AFTER, Duration::from_secs)
        .clamp(RETRY_AFTER, MAX_BUSY_WAIT)
}

/// The server may not have seen the request, or may be restarting.
fn worth_retrying(err: &ClientError) -> bool {
    match err {
        ClientError::Unreachable { .. } => true,
        ClientError::Api(problem) => matches!(problem.status, 502..=504),
        ClientError::Protocol { .. } => false,
    }
}

fn rollout_path(id: &str) -> String {
    let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
    format!("/v1/rollouts/{id}")
}

fn tenant_path(name: &str) -> String {
    let name = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("/v1/tenants/{name}")
}

async fn decode<T: DeserializeOwned>(response: Response) -> ClientResult<T> {
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: root_cause(&e),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
        url,
        reason: e.to_string(),
    })
}

/// The problem document of an error response; a bare status when there is none (e.g. a
/// proxy in front of the API answered).
async fn problem(url: String, response: Response) -> ClientError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => ClientError::Api(problem),
        Err(_) => ClientError::Api(Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("HTTP error").to_owned(),
            status: status.as_u16(),
            detail: format!("{url} answered {status}"),
            errors: Vec::new(),
        }),
    }
}

/// The root cause of a transport error, which is what a person can act on (e.g.
/// "Connection refused (os error 111)"), or that it timed out.
fn root_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time".to_owned();
    }
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests;
