//! API keys: random bearer tokens of which only a SHA-256 is kept.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every key starts with this, so a leaked one is easy to recognise in a scan.
pub const TOKEN_PREFIX: &str = "shk_";

/// The name the bootstrap admin token acts under.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, clap::ValueEnum,
)]
#[sqlx(type_name = "key_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May do everything.
    Admin,
    /// May only read.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// 256 random bits, URL-safe.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Key names appear in the audit trail, so they are kept short and plain.
pub fn check_key_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b));
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(format!(
            "key name `{name}` must be 1-63 lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        ));
    }
    if name == BOOTSTRAP_KEY_NAME {
        return Err(format!(
            "`{BOOTSTRAP_KEY_NAME}` is reserved for STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_to_32_bytes() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn key_names_are_plain_and_bootstrap_is_reserved() {
        assert!(check_key_name("ops").is_ok());
        assert!(check_key_name("ci-runner.2").is_ok());
        assert!(check_key_name("Ops").is_err());
        assert!(check_key_name("").is_err());
        assert!(check_key_name("bootstrap").is_err());
    }
}
