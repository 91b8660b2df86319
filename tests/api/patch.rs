//! Changing a tenant: a JSON merge patch with If-Match, checked before and after it is
//! applied.

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{header_value, problem, TestApp};

#[sqlx::test]
async fn patch_needs_if_match_and_refuses_a_stale_etag(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("florida").await;
    problem(
        app.patch("florida", None, json!({"spec": {"desired_count": 2}}))
            .await,
        428,
        "precondition-required",
    )
    .await;
    let tag = app.etag("florida").await;
    assert_eq!(
        app.patch("florida", Some(&tag), json!({"spec": {"desired_count": 2}}))
            .await
            .status(),
        200
    );
    // The first change made the tag stale.
    problem(
        app.patch("florida", Some(&tag), json!({"spec": {"desired_count": 1}}))
            .await,
        412,
        "precondition-failed",
    )
    .await;
    problem(
        app.patch("georgia", Some(&tag), json!({})).await,
        404,
        "not-found",
    )
    .await;
}

#[sqlx::test]
async fn a_spec_change_bumps_generation_and_is_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create(json!({"name": "vermont", "spec": {"env": {"A": "1", "B": "2"}}}))
        .await;
    let tag = app.etag("vermont").await;
    let response = app
        .patch(
            "vermont",
            Some(&tag),
            json!({"spec": {"app_image": "humangov/app:1.1.0", "env": {"A": null, "C": "3"}}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let new_tag = header_value(&response, "etag");
    assert_ne!(new_tag, tag);
    let t: Value = response.json().await.unwrap();
    assert_eq!(t["generation"], 2);
    assert_eq!(t["spec"]["app_image"], "humangov/app:1.1.0");
    assert_eq!(t["spec"]["env"], json!({"B": "2", "C": "3"}));

    let events = app.events("vermont").await;
    let latest = &events["items"][0];
    assert_eq!(latest["action"], "tenant.updated");
    assert_eq!(latest["actor"], "key:ops");
    assert_eq!(latest["generation"], 2);
}

#[sqlx::test]
async fn a_display_name_change_or_a_no_op_leaves_generation_alone(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("montana").await;
    let tag = app.etag("montana").await;
    let t: Value = app
        .patch(
            "montana",
            Some(&tag),
            json!({"display_name": "Montana OPI"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (t["generation"].as_i64(), t["display_name"].as_str()),
        (Some(1), Some("Montana OPI"))
    );
    let tag = app.etag("montana").await;
    let same = app
        .patch("montana", Some(&tag), json!({"spec": {"cpu": 256}}))
        .await;
    assert_eq!(same.status(), 200);
    assert_eq!(same.json::<Value>().await.unwrap()["generation"], 1);
    // null resets the display name to the state's official name.
    let t: Value = app
        .patch("montana", Some(&tag), json!({"display_name": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["display_name"], "Montana");
}

#[sqlx::test]
async fn patching_a_spec_member_to_null_restores_its_default(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create(json!({"name": "kentucky", "spec": {"cpu": 512, "memory": 2048}}))
        .await;
    let tag = app.etag("kentucky").await;
    let t: Value = app
        .patch(
            "kentucky",
            Some(&tag),
            json!({"spec": {"cpu": null, "memory": null}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (t["spec"]["cpu"].as_u64(), t["spec"]["memory"].as_u64()),
        (Some(256), Some(512))
    );
}

#[sqlx::test]
async fn an_invalid_patch_changes_nothing_and_says_what_is_wrong(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("arizona").await;
    let tag = app.etag("arizona").await;
    let body = problem(
        app.patch("arizona", Some(&tag), json!({"spec": {"memory": 16384}}))
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "spec.memory");
    problem(
        app.patch("arizona", Some(&tag), json!({"spec": {"replicas": 3}}))
            .await,
        422,
        "validation",
    )
    .await;
    problem(
        app.patch("arizona", Some(&tag), json!({"owner": "me"}))
            .await,
        422,
        "validation",
    )
    .await;
    assert_eq!(app.etag("arizona").await, tag, "nothing changed");
}

#[sqlx::test]
async fn what_is_wrong_with_a_patch_body_is_said_before_its_preconditions(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_ok("arizona").await;
    let stale = "\"not-the-current-tag\"";
    for (body, field) in [
        (json!({"spec": {"memory": true}}), "spec.memory"),
        (json!({"spec": {"env": {"A": 5}}}), "spec.env.A"),
        (json!({"spec": {"cpu": 300}}), "spec.cpu"),
        (
            json!({"spec": {"app_image": "Not An Image"}}),
            "spec.app_image",
        ),
        (json!({"spec": {"max_count": 11}}), "spec.max_count"),
        (
            json!({"spec": {"env": {"US_STATE": "x"}}}),
            "spec.env.US_STATE",
        ),
        (json!({"display_name": " "}), "display_name"),
    ] {
        for etag in [Some(stale), None] {
            let p = problem(
                app.patch("arizona", etag, body.clone()).await,
                422,
                "validation",
            )
            .await;
            assert_eq!(
                p["errors"][0]["field"], field,
                "{body} with If-Match {etag:?}"
            );
        }
        let p = problem(
            app.patch("nevada", Some(stale), body.clone()).await,
            422,
            "validation",
        )
        .await;
        assert_eq!(
            p["errors"][0]["field"], field,
            "before the tenant is looked up"
        );
    }
    // A rule between members needs the current spec, so it comes after the preconditions.
    let cross = json!({"spec": {"memory": 8192}});
    problem(
        app.patch("arizona", Some(stale), cross.clone()).await,
        412,
        "precondition-failed",
    )
    .await;
    let tag = app.etag("arizona").await;
    let p = problem(
        app.patch("arizona", Some(&tag), cross).await,
        422,
        "validation",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "spec.memory");
}

#[sqlx::test]
async fn a_merge_patch_of_the_environment_sets_and_removes_single_variables(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create(json!({"name": "oregon", "spec": {"env": {"A": "1", "B": "2"}}}))
        .await;
    let tag = app.etag("oregon").await;
    let patched: Value = app
        .patch(
            "oregon",
            Some(&tag),
            json!({"spec": {"env": {"A": null, "C": "3"}}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["spec"]["env"], json!({"B": "2", "C": "3"}));
}
