use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::Router;
use reqwest::{header, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::PgPool;
use statehouse::{
    auth::{generate_token, hash_token, Role},
    db::{self, cells::CellCapacity},
    domain::spec::{SpecDoc, SpecLimits},
    http::{self, ApiSettings, AppState, TenantCache, Tuning},
    metrics::Metrics,
};
use tokio::{net::TcpListener, sync::oneshot};

pub const BOOTSTRAP_TOKEN: &str = "test-bootstrap-token-0123456789";
pub const MAX_TASKS: u32 = 10;
/// Longer than any test waits: what a test sees of a cache's freshness is the work of the
/// change announcements, not of the TTL.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The API served on a loopback port, with an admin and a viewer key.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub admin: String,
    pub viewer: String,
    pub metrics: Arc<Metrics>,
    /// What the server keeps of the tenants it served.
    pub tenants: TenantCache,
    _stop: oneshot::Sender<()>,
}

pub fn settings() -> ApiSettings {
    ApiSettings {
        spec_defaults: SpecDoc {
            app_image: "humangov/app:1.0.0".into(),
            nginx_image: "nginx:1.27-alpine".into(),
            cpu: 256,
            memory: 512,
            desired_count: 1,
            min_count: 1,
            max_count: 2,
            env: BTreeMap::new(),
            sizing: Default::default(),
        },
        spec_limits: SpecLimits {
            max_task_count: MAX_TASKS,
        },
        cells: vec![CellCapacity {
            name: "cell-1".into(),
            capacity: 100,
            reserved_for: Vec::new(),
        }],
        prices: Default::default(),
    }
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, settings()).await
    }

    pub async fn spawn_with(pool: PgPool, settings: ApiSettings) -> Self {
        Self::spawn_router(pool, http::router, settings, QUEUE_TIMEOUT).await
    }

    /// The API with `queue_timeout` for admission to the database.
    pub async fn spawn_queueing(pool: PgPool, queue_timeout: Duration) -> Self {
        Self::spawn_router(pool, http::router, settings(), queue_timeout).await
    }

    /// Serves what `router` makes of the app's state (the API, or other routes behind the
    /// same middleware).
    pub async fn spawn_router(
        pool: PgPool,
        router: impl FnOnce(AppState) -> Router,
        settings: ApiSettings,
        queue_timeout: Duration,
    ) -> Self {
        Self::spawn_full(pool, router, settings, queue_timeout, None).await
    }

    /// The API whose `/v1/tenants/{name}/health` reads AWS with `aws`.
    pub async fn spawn_with_aws(pool: PgPool, aws: statehouse::aws::Aws) -> Self {
        Self::spawn_full(pool, http::router, settings(), QUEUE_TIMEOUT, Some(aws)).await
    }

    async fn spawn_full(
        pool: PgPool,
        router: impl FnOnce(AppState) -> Router,
        settings: ApiSettings,
        queue_timeout: Duration,
        aws: Option<statehouse::aws::Aws>,
    ) -> Self {
        let admin = Self::create_key(&pool, "ops", Role::Admin).await;
        let viewer = Self::create_key(&pool, "auditor", Role::Viewer).await;
        let metrics = Arc::new(Metrics::default());
        let tuning = Tuning {
            queue_timeout,
            cache_ttl: CACHE_TTL,
        };
        let hash = Some(hash_token(BOOTSTRAP_TOKEN));
        let mut state = AppState::new(pool.clone(), settings, metrics.clone(), hash, tuning);
        if let Some(aws) = aws {
            state = state.with_aws(aws);
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state.clone());
        let caches = state.tenants.clone();
        tokio::spawn(async move {
            http::serve_app(listener, app, &state, async {
                let _ = stopped.await;
            })
            .await
        });
        // As a server runs once it is up: hearing changes, so its caches are in use.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !caches.is_listening() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API never listened for changes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            base,
            client: reqwest::Client::new(),
            pool,
            admin,
            viewer,
            metrics,
            tenants: caches,
            _stop: stop,
        }
    }

    pub async fn create_key(pool: &PgPool, name: &str, role: Role) -> String {
        let token = generate_token();
        db::keys::create(pool, name, role, &hash_token(&token))
            .await
            .expect("create key");
        token
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request made with the admin key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin)
    }

    pub fn viewer(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.viewer)
    }

    pub async fn create(&self, body: Value) -> Response {
        self.admin(Method::POST, "/v1/tenants")
            .json(&body)
            .send()
            .await
            .expect("POST /v1/tenants")
    }

    pub async fn create_ok(&self, name: &str) -> Value {
        let response = self.create(json!({ "name": name })).await;
        assert_eq!(response.status(), 202, "creating {name}");
        response.json().await.expect("tenant JSON")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.admin(Method::GET, path).send().await.expect("GET")
    }

    /// A POST made with the admin key, with `body` as JSON when there is one.
    pub async fn post(&self, path: &str, body: Option<Value>) -> Response {
        let mut request = self.admin(Method::POST, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("POST")
    }

    /// The first page of the tenant's event history, newest first, as the admin sees it.
    pub async fn events(&self, name: &str) -> Value {
        let response = self.get(&format!("/v1/tenants/{name}/events")).await;
        assert_eq!(response.status(), 200, "events of {name}");
        response.json().await.expect("events JSON")
    }

    /// The actions of [`TestApp::events`], newest first.
    pub async fn event_actions(&self, name: &str) -> Vec<String> {
        self.events(name).await["items"]
            .as_array()
            .expect("an items array")
            .iter()
            .map(|e| e["action"].as_str().expect("an action").to_owned())
            .collect()
    }

    pub async fn etag(&self, name: &str) -> String {
        let response = self.get(&format!("/v1/tenants/{name}")).await;
        assert_eq!(response.status(), 200);
        header_value(&response, header::ETAG.as_str())
    }

    pub async fn patch(&self, name: &str, etag: Option<&str>, body: Value) -> Response {
        let mut request = self
            .admin(Method::PATCH, &format!("/v1/tenants/{name}"))
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .body(body.to_string());
        if let Some(tag) = etag {
            request = request.header(header::IF_MATCH, tag);
        }
        request.send().await.expect("PATCH")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.admin(Method::DELETE, path)
            .send()
            .await
            .expect("DELETE")
    }

    /// What the worker does once every resource is verified gone; returns once the API
    /// serves it, as it does as soon as the change's announcement reaches it.
    pub async fn finish_deletion(&self, name: &str) {
        let slug = statehouse::domain::state::StateSlug::parse(name).expect("state name");
        let tenant = db::tenants::find_latest(&self.pool, slug)
            .await
            .expect("query")
            .expect("tenant exists");
        let mut conn = self.pool.acquire().await.expect("connection");
        db::tenants::mark_deleted(&mut conn, tenant.id)
            .await
            .expect("mark deleted");
        let deadline = tokio::time::Instant::now() + CACHE_TTL / 2;
        loop {
            let served: Value = self
                .get(&format!("/v1/tenants/{name}"))
                .await
                .json()
                .await
                .expect("tenant JSON");
            if served["status"] == "deleted" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API never heard that {name} was deleted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn header_value(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("response has no {name} header"))
        .to_str()
        .expect("header text")
        .to_owned()
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        header_value(&response, "content-type"),
        "application/problem+json"
    );
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(
        body["type"],
        format!("urn:statehouse:problem:{kind}"),
        "problem type in {body}"
    );
    assert_eq!(body["status"], status);
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title in {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "detail in {body}"
    );
    body
}
