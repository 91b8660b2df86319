//! Deterministic names for a tenant's resources. Observing by name first is what makes a
//! create that crashed before its result was recorded adoptable instead of duplicated.

use crate::domain::state::StateSlug;

/// AWS's limits on the names below.
const MAX_BUCKET: usize = 63;
const MAX_TARGET_GROUP: usize = 32;
/// Longest account id plus the longest region name, with their separators.
const BUCKET_SUFFIX_MAX: usize = 1 + 12 + 1 + 15;
/// The longest slug, `northern-mariana-islands`.
const LONGEST_SLUG: usize = 24;

/// Names every resource of one tenant has, given the platform's prefix and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNames {
    pub slug: StateSlug,
    pub bucket: String,
    pub table: String,
    pub task_role: String,
    pub role_policy: String,
    pub log_group: String,
    pub task_family: String,
    pub target_group: String,
    pub service: String,
    pub scaling_policy: String,
    /// `{p}-{s}-`: each of the tenant's alarms is this followed by its kind.
    pub alarm_prefix: String,
}

/// A resource name prefix short enough for every state's bucket name to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(prefix: &str) -> Result<Self, String> {
        let max = MAX_BUCKET - BUCKET_SUFFIX_MAX - LONGEST_SLUG - 1;
        let ok_chars = prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_ends = prefix
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
            && !prefix.ends_with('-');
        if ok_chars && ok_ends && prefix.len() <= max {
            Ok(Self(prefix.to_owned()))
        } else {
            Err(format!(
                "resource prefix `{prefix}` must be 1-{max} lowercase letters, digits or `-`, starting with a letter \
                 (so every state's bucket name fits in {MAX_BUCKET} characters)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TenantNames {
    pub fn new(prefix: &Prefix, slug: StateSlug, account: &str, region: &str) -> Self {
        let (p, s) = (prefix.as_str(), slug.as_str());
        let base = format!("{p}-{s}");
        Self {
            slug,
            bucket: format!("{base}-{account}-{region}"),
            table: base.clone(),
            task_role: format!("{base}-task"),
            role_policy: format!("{base}-data"),
            log_group: format!("/{p}/{s}"),
            task_family: base.clone(),
            target_group: target_group_name(p, slug),
            scaling_policy: scaling_policy_name(&base),
            alarm_prefix: format!("{base}-"),
            service: base,
        }
    }
}

impl TenantNames {
    /// Every alarm of the tenant, in [`super::alarms::KINDS`] order.
    pub fn alarms(&self) -> Vec<String> {
        super::alarms::KINDS
            .iter()
            .map(|kind| format!("{}{kind}", self.alarm_prefix))
            .collect()
    }
}

/// The CPU target-tracking policy of the service called `service`.
pub fn scaling_policy_name(service: &str) -> String {
    format!("{service}-cpu")
}

/// `{p}-{s}`, or `{p}-{postal code}` for the few slugs too long for ELB's 32 characters.
fn target_group_name(prefix: &str, slug: StateSlug) -> String {
    let full = format!("{prefix}-{slug}");
    if full.len() <= MAX_TARGET_GROUP {
        full
    } else {
        format!("{prefix}-{}", slug.postal_code().to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_gets_names_within_aws_limits_and_distinct_target_groups() {
        let prefix = Prefix::parse("humangov").unwrap();
        let mut target_groups = std::collections::HashSet::new();
        for slug in StateSlug::all() {
            let n = TenantNames::new(&prefix, slug, "123456789012", "ap-southeast-5");
            assert!(n.bucket.len() <= MAX_BUCKET, "{}", n.bucket);
            assert!(
                n.target_group.len() <= MAX_TARGET_GROUP,
                "{}",
                n.target_group
            );
            assert!(target_groups.insert(n.target_group.clone()));
        }
        let ny = TenantNames::new(
            &prefix,
            StateSlug::parse("ny").unwrap(),
            "123456789012",
            "us-east-1",
        );
        assert_eq!(ny.bucket, "humangov-new-york-123456789012-us-east-1");
        assert_eq!(
            (ny.table.as_str(), ny.log_group.as_str()),
            ("humangov-new-york", "/humangov/new-york")
        );
        assert_eq!(ny.task_role, "humangov-new-york-task");
    }

    #[test]
    fn prefixes_that_would_overflow_a_bucket_name_are_refused() {
        assert!(Prefix::parse("humangov").is_ok());
        assert!(Prefix::parse("much-too-long-prefix").is_err());
        assert!(Prefix::parse("Upper").is_err());
        assert!(Prefix::parse("").is_err());
        assert!(Prefix::parse("trailing-").is_err());
    }
}
