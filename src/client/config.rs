//! Where the client finds the API and its key: a flag, else the environment, else the
//! config file, else the local default. The file is TOML:
//!
//! ```toml
//! api_url = "https://statehouse.example.com"
//! token = "shk_…"
//!
//! [profiles.staging]
//! api_url = "https://statehouse.staging.example.com"
//! token = "shk_…"
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub api_url: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub api_url: Option<String>,
    pub token: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The API to talk to and the key to use.
#[derive(Debug)]
pub struct Endpoint {
    pub api_url: String,
    pub token: Option<String>,
}

/// `STATEHOUSE_CONFIG`, else `$XDG_CONFIG_HOME/statehouse/config.toml`, else
/// `~/.config/statehouse/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = non_empty("STATEHOUSE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = non_empty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("statehouse").join("config.toml"))
}

/// Reads the config file; a missing file is an empty one.
pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("cannot read the config file {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(err) => {
            Err(err).with_context(|| format!("cannot read the config file {}", path.display()))
        }
    }
}

/// Flags (and the environment, which clap has already folded into them) win over the file.
pub fn resolve(
    api_url: Option<String>,
    token: Option<String>,
    profile: Option<&str>,
    file: ConfigFile,
) -> anyhow::Result<Endpoint> {
    let mut file = file;
    let from_file = match profile {
        None => Profile {
            api_url: file.api_url,
            token: file.token,
        },
        Some(name) => file.profiles.remove(name).with_context(|| {
            let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
            format!(
                "there is no profile `{name}` in the config file (profiles: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?,
    };
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Ok(Endpoint {
        api_url: non_empty(api_url)
            .or(non_empty(from_file.api_url))
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        token: non_empty(token).or(non_empty(from_file.token)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn flags_win_over_the_file_and_the_default_is_local() {
        let f = || file("api_url = \"https://file\"\ntoken = \"from-file\"");
        let e = resolve(Some("https://flag".into()), None, None, f()).unwrap();
        assert_eq!(e.api_url, "https://flag");
        assert_eq!(e.token.as_deref(), Some("from-file"));
        let e = resolve(None, Some("flag-token".into()), None, f()).unwrap();
        assert_eq!(
            (e.api_url.as_str(), e.token.as_deref()),
            ("https://file", Some("flag-token"))
        );
        let e = resolve(None, None, None, ConfigFile::default()).unwrap();
        assert_eq!((e.api_url.as_str(), e.token), (DEFAULT_API_URL, None));
    }

    #[test]
    fn a_profile_is_chosen_by_name_and_an_unknown_one_is_named() {
        let f = || {
            file(
                "token = \"top\"\n[profiles.staging]\napi_url = \"https://staging\"\ntoken = \"s\"",
            )
        };
        let e = resolve(None, None, Some("staging"), f()).unwrap();
        assert_eq!(
            (e.api_url.as_str(), e.token.as_deref()),
            ("https://staging", Some("s"))
        );
        let err = resolve(None, None, Some("prod"), f()).unwrap_err();
        assert!(err.to_string().contains("no profile `prod`"), "{err}");
        assert!(err.to_string().contains("staging"), "{err}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<ConfigFile>("tokne = \"x\"").is_err());
    }
}
