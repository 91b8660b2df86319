//! The tenant's S3 bucket: public access blocked, encrypted by default, versioned, reachable
//! only over TLS, and tagged.

use aws_sdk_s3::{
    types::{
        BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete,
        ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
        Tag, Tagging, VersioningConfiguration,
    },
    Client,
};
use serde_json::{json, Value};

use super::{tenant_tags, Changes};
use crate::{
    aws::{AwsError, Retry},
    domain::state::StateSlug,
};

const S3: &str = "s3";
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

pub struct BucketSpec<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub tenant: StateSlug,
}

/// Which of the required settings the bucket has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub public_access_blocked: bool,
    pub encrypted: bool,
    pub versioned: bool,
    pub tls_only: bool,
    pub tagged: bool,
}

pub fn arn(name: &str) -> String {
    format!("arn:aws:s3:::{name}")
}

fn err<E>(operation: &'static str) -> impl FnOnce(aws_sdk_s3::error::SdkError<E>) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| AwsError::from_sdk(S3, operation, e)
}

/// Denies every request that does not use TLS.
pub fn tls_only_policy(name: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn(name), format!("{}/*", arn(name))],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
}

pub async fn exists(s3: &Client, name: &str) -> Result<bool, AwsError> {
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = AwsError::from_sdk(S3, "HeadBucket", e);
            if e.http_status == Some(404) || e.is(&["NotFound", "NoSuchBucket"]) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

pub async fn observe(s3: &Client, spec: &BucketSpec<'_>) -> Result<Option<Observed>, AwsError> {
    if !exists(s3, spec.name).await? {
        return Ok(None);
    }
    let b = spec.name;
    let pab = match s3.get_public_access_block().bucket(b).send().await {
        Ok(out) => out.public_access_block_configuration.is_some_and(|c| {
            c.block_public_acls == Some(true)
                && c.ignore_public_acls == Some(true)
                && c.block_public_policy == Some(true)
                && c.restrict_public_buckets == Some(true)
        }),
        Err(e) => absent(
            AwsError::from_sdk(S3, "GetPublicAccessBlock", e),
            "NoSuchPublicAccessBlockConfiguration",
        )?,
    };
    let encrypted = match s3.get_bucket_encryption().bucket(b).send().await {
        Ok(out) => out.server_side_encryption_configuration.is_some_and(|c| {
            c.rules
                .iter()
                .any(|r| r.apply_server_side_encryption_by_default.is_some())
        }),
        Err(e) => absent(
            AwsError::from_sdk(S3, "GetBucketEncryption", e),
            "ServerSideEncryptionConfigurationNotFoundError",
        )?,
    };
    let versioning = s3
        .get_bucket_versioning()
        .bucket(b)
        .send()
        .await
        .map_err(err("GetBucketVersioning"))?;
    let tls_only = match s3.get_bucket_policy().bucket(b).send().await {
        Ok(out) => {
            out.policy
                .and_then(|p| serde_json::from_str::<Value>(&p).ok())
                == Some(tls_only_policy(b))
        }
        Err(e) => absent(
            AwsError::from_sdk(S3, "GetBucketPolicy", e),
            "NoSuchBucketPolicy",
        )?,
    };
    let tagged = match s3.get_bucket_tagging().bucket(b).send().await {
        Ok(out) => tenant_tags(spec.tenant)
            .iter()
            .all(|(k, v)| out.tag_set.iter().any(|t| t.key == *k && t.value == *v)),
        Err(e) => absent(
            AwsError::from_sdk(S3, "GetBucketTagging", e),
            "NoSuchTagSet",
        )?,
    };
    Ok(Some(Observed {
        public_access_blocked: pab,
        encrypted,
        versioned: versioning.status == Some(BucketVersioningStatus::Enabled),
        tls_only,
        tagged,
    }))
}

/// A "not configured" answer reads as `false`; any other error is passed on.
fn absent(e: AwsError, not_configured: &str) -> Result<bool, AwsError> {
    e.tolerate(&[not_configured]).map(|()| false)
}

const UNSET: Observed = Observed {
    public_access_blocked: false,
    encrypted: false,
    versioned: false,
    tls_only: false,
    tagged: false,
};

/// Creates the bucket if it is missing (adopting one we already own) and repairs every
/// setting that differs; makes no mutating call when everything matches. When `known` is
/// false (no earlier pass recorded the bucket) it creates first and observes only if the
/// bucket turns out to exist, which saves the reads on a fresh tenant.
pub async fn ensure(s3: &Client, spec: &BucketSpec<'_>, known: bool) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    let fresh = !known && create(s3, spec).await?;
    let observed = if fresh {
        changes.push("CreateBucket");
        UNSET
    } else {
        match observe(s3, spec).await? {
            Some(o) => o,
            None => {
                create(s3, spec).await?;
                changes.push("CreateBucket");
                UNSET
            }
        }
    };
    let b = spec.name;
    if !observed.public_access_blocked {
        let config = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3.put_public_access_block()
            .bucket(b)
            .public_access_block_configuration(config)
            .send()
            .await
            .map_err(err("PutPublicAccessBlock"))?;
        changes.push("PutPublicAccessBlock");
    }
    if !observed.encrypted {
        put_encryption(s3, b).await?;
        changes.push("PutBucketEncryption");
    }
    if !observed.versioned {
        let config = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        s3.put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(config)
            .send()
            .await
            .map_err(err("PutBucketVersioning"))?;
        changes.push("PutBucketVersioning");
    }
    if !observed.tls_only {
        s3.put_bucket_policy()
            .bucket(b)
            .policy(tls_only_policy(b).to_string())
            .send()
            .await
            .map_err(err("PutBucketPolicy"))?;
        changes.push("PutBucketPolicy");
    }
    if !observed.tagged {
        put_tags(s3, spec).await?;
        changes.push("PutBucketTagging");
    }
    Ok(changes)
}

/// `false` when the bucket was ours already (a create whose answer was lost).
async fn create(s3: &Client, spec: &BucketSpec<'_>) -> Result<bool, AwsError> {
    let mut request = s3.create_bucket().bucket(spec.name);
    // us-east-1 is the one region that refuses an explicit location constraint.
    if spec.region != "us-east-1" {
        let location = BucketLocationConstraint::from(spec.region);
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(location)
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(true),
        Err(e) => AwsError::from_sdk(S3, "CreateBucket", e)
            .tolerate(&["BucketAlreadyOwnedByYou"])
            .map(|()| false),
    }
}

async fn put_encryption(s3: &Client, bucket: &str) -> Result<(), AwsError> {
    let build = |e| AwsError::build(S3, "PutBucketEncryption", e);
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(build)?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .build();
    let config = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .map_err(build)?;
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(config)
        .send()
        .await
        .map_err(err("PutBucketEncryption"))?;
    Ok(())
}

async fn put_tags(s3: &Client, spec: &BucketSpec<'_>) -> Result<(), AwsError> {
    let build = |e| AwsError::build(S3, "PutBucketTagging", e);
    let mut tagging = Tagging::builder();
    for (key, value) in tenant_tags(spec.tenant) {
        tagging = tagging.tag_set(
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(build)?,
        );
    }
    s3.put_bucket_tagging()
        .bucket(spec.name)
        .tagging(tagging.build().map_err(build)?)
        .send()
        .await
        .map_err(err("PutBucketTagging"))?;
    Ok(())
}

/// Deletes every object version and delete marker, then the bucket. A missing bucket
/// counts as deleted.
pub async fn delete(s3: &Client, name: &str) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    if !exists(s3, name).await? {
        return Ok(changes);
    }
    // The bucket is being destroyed: no policy may stand in the way of emptying it. The
    // public access block stays until the bucket is gone.
    match s3.delete_bucket_policy().bucket(name).send().await {
        Ok(_) => changes.push("DeleteBucketPolicy"),
        Err(e) => AwsError::from_sdk(S3, "DeleteBucketPolicy", e)
            .tolerate(&["NoSuchBucket", "NoSuchBucketPolicy"])?,
    }
    loop {
        let listing = s3
            .list_object_versions()
            .bucket(name)
            .send()
            .await
            .map_err(err("ListObjectVersions"))?;
        let versions = listing.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = listing
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let ids = versions
            .chain(markers)
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .set_key(key.map(str::to_owned))
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if ids.is_empty() {
            break;
        }
        for batch in ids.chunks(DELETE_BATCH) {
            let delete = Delete::builder()
                .set_objects(Some(batch.to_vec()))
                .quiet(true)
                .build()
                .map_err(|e| AwsError::build(S3, "DeleteObjects", e))?;
            let out = s3
                .delete_objects()
                .bucket(name)
                .delete(delete)
                .send()
                .await
                .map_err(err("DeleteObjects"))?;
            changes.push("DeleteObjects");
            // A refused object would otherwise be listed and retried forever.
            if let Some(refused) = out.errors().first() {
                let message = format!(
                    "{} object(s) could not be deleted, e.g. `{}`: {}",
                    out.errors().len(),
                    refused.key().unwrap_or_default(),
                    refused.message().unwrap_or_default()
                );
                let code = refused.code().unwrap_or("Unknown");
                return Err(AwsError::new(
                    S3,
                    "DeleteObjects",
                    code,
                    message,
                    Retry::Transient,
                ));
            }
        }
    }
    match s3.delete_bucket().bucket(name).send().await {
        Ok(_) => changes.push("DeleteBucket"),
        Err(e) => AwsError::from_sdk(S3, "DeleteBucket", e).tolerate(&["NoSuchBucket"])?,
    }
    Ok(changes)
}
