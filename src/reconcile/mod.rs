//! Making AWS match each tenant's row: one module per resource kind, each with observe,
//! ensure (create or repair) and delete, all safe to repeat.

pub mod alarms;
pub mod bucket;
pub mod inventory;
pub mod log_group;
pub mod names;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod resync;
pub mod role;
pub mod rule;
pub mod scaling;
pub mod service;
pub mod sweep;
pub mod table;
pub mod target_group;
pub mod task_def;
pub mod tenant;

use crate::domain::state::StateSlug;

pub const TAG_TENANT: &str = "statehouse:tenant";
pub const TAG_MANAGED_BY: &str = "statehouse:managed-by";
pub const MANAGED_BY: &str = "statehouse";

/// The tags on every resource of a tenant; the orphan sweep and audits find them by these.
pub fn tenant_tags(slug: StateSlug) -> [(&'static str, String); 2] {
    [
        (TAG_TENANT, slug.as_str().to_owned()),
        (TAG_MANAGED_BY, MANAGED_BY.to_owned()),
    ]
}

/// The mutating calls one ensure or delete made; empty when AWS already matched.
pub type Changes = Vec<&'static str>;
