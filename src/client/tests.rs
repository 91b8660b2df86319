//! The client against a small stub of the API, for answers the real server cannot be made
//! to give on cue (a tenant changed between the client's GET and its PATCH).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use super::{Client, ClientError};

/// Counts requests; PATCH answers 412 to the first `stale_patches` attempts.
#[derive(Default)]
struct Stub {
    gets: AtomicUsize,
    patches: AtomicUsize,
    stale_patches: usize,
}

fn tenant() -> serde_json::Value {
    json!({
        "id": "0190a5e6-7c2b-7cc0-8000-000000000001",
        "name": "ohio", "display_name": "Ohio", "postal_code": "OH",
        "status": "ready", "generation": 2, "observed_generation": 1,
        "spec": {
            "app_image": "humangov/app:2.0.0", "nginx_image": "nginx:1.27-alpine",
            "cpu": 256, "memory": 512, "desired_count": 1, "min_count": 1, "max_count": 2,
            "env": {}
        },
        "resources": {}, "endpoint": null, "conditions": [], "last_error": null,
        "cell": "cell-1", "data_policy": null, "deletion_requested_at": null,
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
        "deleted_at": null
    })
}

async fn get_tenant(State(stub): State<Arc<Stub>>) -> Response {
    let n = stub.gets.fetch_add(1, Ordering::SeqCst);
    ([(header::ETAG, format!("\"v{n}\""))], Json(tenant())).into_response()
}

async fn patch_tenant(State(stub): State<Arc<Stub>>, headers: HeaderMap) -> Response {
    let n = stub.patches.fetch_add(1, Ordering::SeqCst);
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    if n < stub.stale_patches || if_match != Some(&format!("\"v{n}\"")) {
        let problem = json!({
            "type": "urn:statehouse:problem:precondition-failed", "title": "Stale ETag",
            "status": 412, "detail": "tenant ohio changed since that ETag was read"
        });
        return (StatusCode::PRECONDITION_FAILED, Json(problem)).into_response();
    }
    Json(tenant()).into_response()
}

async fn serve(stale_patches: usize) -> (Client, Arc<Stub>) {
    let stub = Arc::new(Stub {
        stale_patches,
        ..Stub::default()
    });
    let app = Router::new()
        .route("/v1/tenants/ohio", get(get_tenant).patch(patch_tenant))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Client::new(&base, "token").unwrap(), stub)
}

#[tokio::test]
async fn an_update_that_meets_a_stale_etag_reads_again_and_retries_once() {
    let (client, stub) = serve(1).await;
    let patch = json!({"spec": {"app_image": "humangov/app:2.0.0"}});
    let updated = client.update("ohio", &patch).await.unwrap();
    assert_eq!(updated.spec.app_image, "humangov/app:2.0.0");
    assert_eq!(stub.gets.load(Ordering::SeqCst), 2);
    assert_eq!(stub.patches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_update_that_stays_stale_gives_up_with_the_servers_problem() {
    let (client, stub) = serve(usize::MAX).await;
    let err = client
        .update("ohio", &json!({"display_name": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(412));
    assert!(matches!(&err, ClientError::Api(p) if p.title == "Stale ETag"));
    assert_eq!(stub.patches.load(Ordering::SeqCst), 2, "one retry, no more");
}

#[tokio::test]
async fn an_error_without_a_problem_document_still_carries_its_status() {
    let (client, _) = serve(0).await;
    let err = client.get("texas").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn a_closed_port_is_unreachable_not_an_api_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
    let err = client.get("ohio").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn a_create_the_server_was_not_ready_for_is_sent_again_with_the_same_key() {
    let keys = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = keys.clone();
    let app = Router::new().route(
        "/v1/tenants",
        axum::routing::post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                let mut keys = seen.lock().unwrap();
                keys.push(key);
                if keys.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    (StatusCode::ACCEPTED, Json(tenant())).into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(&base, "token").unwrap();
    let created = client
        .create(&json!({"name": "ohio"}), "key-1")
        .await
        .unwrap();
    assert_eq!(created.name, "ohio");
    assert_eq!(*keys.lock().unwrap(), ["key-1", "key-1"]);
}

#[tokio::test]
async fn a_request_the_server_was_too_busy_for_is_sent_again_after_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/v1/tenants/ohio",
        axum::routing::patch(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                    let problem = json!({
                        "type": "urn:statehouse:problem:too-busy", "title": "Too busy: retry shortly",
                        "status": 429, "detail": "every database connection stayed busy"
                    });
                    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], Json(problem))
                        .into_response()
                } else {
                    ([(header::ETAG, "\"v1\"")], Json(tenant())).into_response()
                }
            }
        })
        .get(|| async { ([(header::ETAG, "\"v0\"")], Json(tenant())).into_response() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(&base, "token").unwrap();
    let started = std::time::Instant::now();
    client
        .update("ohio", &json!({"display_name": "Ohio"}))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two 429s, then the answer");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "Retry-After was honoured"
    );
}
