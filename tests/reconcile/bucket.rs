use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use statehouse::{
    domain::state::StateSlug,
    reconcile::bucket::{self, BucketSpec, Observed},
};

use crate::{aws_for, moto::Moto, REGION};

fn spec(name: &str) -> BucketSpec<'_> {
    BucketSpec {
        name,
        region: REGION,
        tenant: StateSlug::parse("california").unwrap(),
    }
}

const ALL_SET: Observed = Observed {
    public_access_blocked: true,
    encrypted: true,
    versioned: true,
    tls_only: true,
    tagged: true,
};

#[tokio::test]
async fn a_new_bucket_has_every_security_setting_read_back_from_s3() {
    let moto = Moto::start(1).await;
    let aws = aws_for(&moto).await;
    let name = "humangov-california-123456789012-us-west-2";
    let changes = bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    assert_eq!(changes[0], "CreateBucket");

    let pab = aws
        .s3
        .get_public_access_block()
        .bucket(name)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration.unwrap();
    assert_eq!(
        (
            pab.block_public_acls,
            pab.ignore_public_acls,
            pab.block_public_policy,
            pab.restrict_public_buckets
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = aws
        .s3
        .get_bucket_encryption()
        .bucket(name)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration.unwrap().rules[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default
            .as_ref()
            .unwrap()
            .sse_algorithm
            .as_str(),
        "AES256"
    );
    let versioning = aws
        .s3
        .get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status.unwrap().as_str(), "Enabled");
    let policy: Value = serde_json::from_str(
        &aws.s3
            .get_bucket_policy()
            .bucket(name)
            .send()
            .await
            .unwrap()
            .policy
            .unwrap(),
    )
    .unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"]["Bool"]["aws:SecureTransport"],
        "false"
    );
    assert_eq!(statement["Resource"][1], format!("arn:aws:s3:::{name}/*"));
    let tags = aws
        .s3
        .get_bucket_tagging()
        .bucket(name)
        .send()
        .await
        .unwrap();
    let tag = |k: &str| {
        tags.tag_set
            .iter()
            .find(|t| t.key == k)
            .map(|t| t.value.clone())
    };
    assert_eq!(tag("statehouse:tenant").as_deref(), Some("california"));
    assert_eq!(tag("statehouse:managed-by").as_deref(), Some("statehouse"));
    assert_eq!(
        bucket::observe(&aws.s3, &spec(name)).await.unwrap(),
        Some(ALL_SET)
    );
}

#[tokio::test]
async fn ensuring_a_bucket_that_matches_makes_no_mutating_call() {
    let moto = Moto::start(1).await;
    let aws = aws_for(&moto).await;
    let name = "humangov-california-noop";
    bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    for _ in 0..10 {
        assert_eq!(
            bucket::ensure(&aws.s3, &spec(name), true).await.unwrap(),
            Vec::<&str>::new()
        );
    }
}

#[tokio::test]
async fn a_removed_public_access_block_and_policy_are_restored() {
    let moto = Moto::start(1).await;
    let aws = aws_for(&moto).await;
    let name = "humangov-california-drift";
    bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    aws.s3
        .delete_public_access_block()
        .bucket(name)
        .send()
        .await
        .unwrap();
    aws.s3
        .delete_bucket_policy()
        .bucket(name)
        .send()
        .await
        .unwrap();
    let observed = bucket::observe(&aws.s3, &spec(name))
        .await
        .unwrap()
        .unwrap();
    assert!(!observed.public_access_blocked && !observed.tls_only);
    let changes = bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    assert_eq!(changes, ["PutPublicAccessBlock", "PutBucketPolicy"]);
    assert_eq!(
        bucket::observe(&aws.s3, &spec(name)).await.unwrap(),
        Some(ALL_SET)
    );
}

#[tokio::test]
async fn a_bucket_created_before_a_crash_is_adopted_not_duplicated() {
    let moto = Moto::start(1).await;
    let aws = aws_for(&moto).await;
    let name = "humangov-california-adopt";
    let location = aws_sdk_s3::types::BucketLocationConstraint::from(REGION);
    let config = aws_sdk_s3::types::CreateBucketConfiguration::builder()
        .location_constraint(location)
        .build();
    aws.s3
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(config)
        .send()
        .await
        .unwrap();
    let changes = bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    assert!(!changes.contains(&"CreateBucket"), "{changes:?}");
    assert_eq!(
        bucket::observe(&aws.s3, &spec(name)).await.unwrap(),
        Some(ALL_SET)
    );
}

#[tokio::test]
async fn deleting_empties_every_version_and_delete_marker_and_is_idempotent() {
    let moto = Moto::start(1).await;
    let aws = aws_for(&moto).await;
    let name = "humangov-california-purge";
    bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    // The emulator applies the TLS-only Deny without its condition, so write while it is off.
    aws.s3
        .delete_bucket_policy()
        .bucket(name)
        .send()
        .await
        .unwrap();
    for round in 0..3 {
        for i in 0..5 {
            let body = ByteStream::from(format!("round {round}").into_bytes());
            aws.s3
                .put_object()
                .bucket(name)
                .key(format!("k{i}"))
                .body(body)
                .send()
                .await
                .unwrap();
        }
    }
    aws.s3
        .delete_object()
        .bucket(name)
        .key("k0")
        .send()
        .await
        .unwrap();
    bucket::ensure(&aws.s3, &spec(name), true).await.unwrap();
    let changes = bucket::delete(&aws.s3, name).await.unwrap();
    assert_eq!(changes.last(), Some(&"DeleteBucket"));
    assert!(!bucket::exists(&aws.s3, name).await.unwrap());
    assert!(
        bucket::delete(&aws.s3, name).await.unwrap().is_empty(),
        "deleting again is a no-op"
    );
}
