//! The tenant's DynamoDB table: on-demand, hash key `id` (S), encrypted, with point-in-time
//! recovery, and tagged.

use aws_sdk_dynamodb::{
    types::{
        AttributeDefinition, BackupStatus, BillingMode, KeySchemaElement, KeyType,
        PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, ScalarAttributeType,
        SseSpecification, SseStatus, TableStatus, Tag,
    },
    Client,
};

use super::{tenant_tags, Changes};
use crate::{
    aws::{error::sdk, AwsError, Retry},
    domain::state::StateSlug,
};

const DDB: &str = "dynamodb";
const HASH_KEY: &str = "id";

pub struct TableSpec<'a> {
    pub name: &'a str,
    pub arn: &'a str,
    pub tenant: StateSlug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub status: Option<TableStatusKind>,
    pub on_demand: bool,
    pub encrypted: bool,
    pub right_key: bool,
    pub pitr: bool,
    pub tagged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatusKind {
    Active,
    Busy,
}

pub async fn describe(
    ddb: &Client,
    name: &str,
) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, AwsError> {
    match ddb.describe_table().table_name(name).send().await {
        Ok(out) => Ok(out.table),
        Err(e) => {
            let e = AwsError::from_sdk(DDB, "DescribeTable", e);
            e.tolerate(&["ResourceNotFoundException"]).map(|()| None)
        }
    }
}

pub async fn observe(ddb: &Client, spec: &TableSpec<'_>) -> Result<Option<Observed>, AwsError> {
    let Some(table) = describe(ddb, spec.name).await? else {
        return Ok(None);
    };
    let status = match table.table_status() {
        Some(TableStatus::Active) => Some(TableStatusKind::Active),
        Some(_) => Some(TableStatusKind::Busy),
        None => None,
    };
    let on_demand = table
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .is_some_and(|m| *m == BillingMode::PayPerRequest);
    let encrypted = table
        .sse_description()
        .and_then(|d| d.status())
        .is_some_and(|s| matches!(s, SseStatus::Enabled | SseStatus::Enabling));
    let right_key = table.key_schema().len() == 1
        && table.key_schema()[0].attribute_name() == HASH_KEY
        && table.key_schema()[0].key_type() == &KeyType::Hash;
    let backups = ddb
        .describe_continuous_backups()
        .table_name(spec.name)
        .send()
        .await
        .map_err(sdk(DDB, "DescribeContinuousBackups"))?;
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .is_some_and(|s| *s == PointInTimeRecoveryStatus::Enabled);
    let tags = ddb
        .list_tags_of_resource()
        .resource_arn(table.table_arn().unwrap_or(spec.arn))
        .send()
        .await
        .map_err(sdk(DDB, "ListTagsOfResource"))?;
    let tagged = tenant_tags(spec.tenant).iter().all(|(k, v)| {
        tags.tags()
            .iter()
            .any(|t| t.key() == *k && t.value() == v.as_str())
    });
    Ok(Some(Observed {
        status,
        on_demand,
        encrypted,
        right_key,
        pitr,
        tagged,
    }))
}

/// Creates the table when `known` says none was recorded (adopting one that exists after
/// all), otherwise observes it and repairs what differs.
pub async fn ensure(ddb: &Client, spec: &TableSpec<'_>, known: bool) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    if !known && create(ddb, spec).await? {
        changes.push("CreateTable");
        enable_pitr(ddb, spec.name).await?;
        changes.push("UpdateContinuousBackups");
        return Ok(changes);
    }
    let observed = match observe(ddb, spec).await? {
        Some(o) => o,
        None => {
            create(ddb, spec).await?;
            changes.push("CreateTable");
            enable_pitr(ddb, spec.name).await?;
            changes.push("UpdateContinuousBackups");
            return Ok(changes);
        }
    };
    if !observed.right_key {
        return Err(AwsError::new(
            DDB,
            "DescribeTable",
            "IncompatibleTable",
            format!(
                "table {} exists with a key schema other than `{HASH_KEY}` (S); it cannot be changed in place",
                spec.name
            ),
            Retry::Permanent,
        ));
    }
    if observed.status != Some(TableStatusKind::Active) {
        return Err(busy(spec.name));
    }
    if !observed.on_demand || !observed.encrypted {
        let mut update = ddb.update_table().table_name(spec.name);
        if !observed.on_demand {
            update = update.billing_mode(BillingMode::PayPerRequest);
        }
        if !observed.encrypted {
            update = update.sse_specification(SseSpecification::builder().enabled(true).build());
        }
        update.send().await.map_err(sdk(DDB, "UpdateTable"))?;
        changes.push("UpdateTable");
    }
    if !observed.pitr {
        enable_pitr(ddb, spec.name).await?;
        changes.push("UpdateContinuousBackups");
    }
    if !observed.tagged {
        ddb.tag_resource()
            .resource_arn(spec.arn)
            .set_tags(Some(tags(spec.tenant)?))
            .send()
            .await
            .map_err(sdk(DDB, "TagResource"))?;
        changes.push("TagResource");
    }
    Ok(changes)
}

fn busy(name: &str) -> AwsError {
    AwsError::new(
        DDB,
        "DescribeTable",
        "TableNotActive",
        format!("table {name} is not ACTIVE yet"),
        Retry::Transient,
    )
}

fn tags(tenant: StateSlug) -> Result<Vec<Tag>, AwsError> {
    tenant_tags(tenant)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::build(DDB, "TagResource", e))
        })
        .collect()
}

/// `false` when the table existed already.
async fn create(ddb: &Client, spec: &TableSpec<'_>) -> Result<bool, AwsError> {
    let build = |e| AwsError::build(DDB, "CreateTable", e);
    let attribute = AttributeDefinition::builder()
        .attribute_name(HASH_KEY)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build)?;
    let key = KeySchemaElement::builder()
        .attribute_name(HASH_KEY)
        .key_type(KeyType::Hash)
        .build()
        .map_err(build)?;
    let sent = ddb
        .create_table()
        .table_name(spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute)
        .key_schema(key)
        .sse_specification(SseSpecification::builder().enabled(true).build())
        .set_tags(Some(tags(spec.tenant)?))
        .send()
        .await;
    match sent {
        Ok(out) => {
            let active = out
                .table_description()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == TableStatus::Active);
            if !active {
                wait_active(ddb, spec.name).await?;
            }
            Ok(true)
        }
        Err(e) => AwsError::from_sdk(DDB, "CreateTable", e)
            .tolerate(&["ResourceInUseException"])
            .map(|()| false),
    }
}

/// A new table takes seconds to become ACTIVE; point-in-time recovery can only be turned
/// on after that.
async fn wait_active(ddb: &Client, name: &str) -> Result<(), AwsError> {
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if describe(ddb, name)
            .await?
            .and_then(|t| t.table_status().cloned())
            == Some(TableStatus::Active)
        {
            return Ok(());
        }
    }
    Err(busy(name))
}

async fn enable_pitr(ddb: &Client, name: &str) -> Result<(), AwsError> {
    let pitr = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build()
        .map_err(|e| AwsError::build(DDB, "UpdateContinuousBackups", e))?;
    ddb.update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(pitr)
        .send()
        .await
        .map_err(sdk(DDB, "UpdateContinuousBackups"))?;
    Ok(())
}

/// Takes the final backup named `backup_name` unless it exists already (a pass that
/// crashed after taking it); returns its ARN.
pub async fn final_backup(
    ddb: &Client,
    table: &str,
    backup_name: &str,
) -> Result<Option<String>, AwsError> {
    if describe(ddb, table).await?.is_none() {
        return Ok(None);
    }
    let listed = ddb
        .list_backups()
        .table_name(table)
        .send()
        .await
        .map_err(sdk(DDB, "ListBackups"))?;
    let existing = listed.backup_summaries().iter().find(|b| {
        b.backup_name() == Some(backup_name)
            && !matches!(b.backup_status(), Some(BackupStatus::Deleted))
    });
    if let Some(b) = existing {
        return Ok(b.backup_arn().map(str::to_owned));
    }
    let out = ddb
        .create_backup()
        .table_name(table)
        .backup_name(backup_name)
        .send()
        .await
        .map_err(sdk(DDB, "CreateBackup"))?;
    Ok(out.backup_details().map(|d| d.backup_arn().to_owned()))
}

/// Deletes the table; done once DynamoDB no longer knows it.
pub async fn delete(ddb: &Client, name: &str) -> Result<Changes, AwsError> {
    let mut changes = Changes::new();
    let Some(table) = describe(ddb, name).await? else {
        return Ok(changes);
    };
    if table.table_status() != Some(&TableStatus::Deleting) {
        match ddb.delete_table().table_name(name).send().await {
            Ok(_) => changes.push("DeleteTable"),
            Err(e) => {
                let mut e = AwsError::from_sdk(DDB, "DeleteTable", e);
                // Busy, e.g. with the final backup: try again shortly.
                if e.is(&["ResourceInUseException"]) {
                    e.retry = Retry::Transient;
                }
                e.tolerate(&["ResourceNotFoundException"])?
            }
        }
    }
    if describe(ddb, name).await?.is_some() {
        return Err(AwsError::new(
            DDB,
            "DescribeTable",
            "StillDeleting",
            format!("table {name} is still being deleted"),
            Retry::Transient,
        ));
    }
    Ok(changes)
}
