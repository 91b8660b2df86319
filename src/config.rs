//! Configuration, from flags or the environment (see `.env.sample`).

use std::{collections::BTreeMap, net::SocketAddr};

use anyhow::{bail, Context};
use clap::Args;

use crate::{
    domain::spec::{SpecDoc, SpecLimits, TenantSpec},
    http::ApiSettings,
};

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "STATEHOUSE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address the API listens on.
    #[arg(long, env = "STATEHOUSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A token that works as an admin key named `bootstrap` (first boot, dev, CI).
    #[arg(long, env = "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
    pub bootstrap_admin_token: Option<String>,
    #[command(flatten)]
    pub tenants: TenantDefaults,
}

/// Minimum length of the bootstrap token, so a guessable one is refused at start.
const MIN_BOOTSTRAP_TOKEN_LEN: usize = 16;

impl ServeArgs {
    pub fn bootstrap_token_hash(&self) -> anyhow::Result<Option<[u8; 32]>> {
        match self.bootstrap_admin_token.as_deref() {
            None | Some("") => Ok(None),
            Some(token) if token.len() < MIN_BOOTSTRAP_TOKEN_LEN => bail!(
                "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN must be at least {MIN_BOOTSTRAP_TOKEN_LEN} characters"
            ),
            Some(token) => Ok(Some(crate::auth::hash_token(token))),
        }
    }
}

/// Defaults for every spec field a client leaves out, and the platform's limits.
#[derive(Args, Debug, Clone)]
pub struct TenantDefaults {
    #[arg(
        long,
        env = "STATEHOUSE_DEFAULT_APP_IMAGE",
        default_value = "humangov/app:latest"
    )]
    pub default_app_image: String,
    #[arg(
        long,
        env = "STATEHOUSE_DEFAULT_NGINX_IMAGE",
        default_value = "nginx:1.27-alpine"
    )]
    pub default_nginx_image: String,
    #[arg(long, env = "STATEHOUSE_DEFAULT_CPU", default_value_t = 256)]
    pub default_cpu: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_MEMORY", default_value_t = 512)]
    pub default_memory: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_DESIRED_COUNT", default_value_t = 1)]
    pub default_desired_count: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_MIN_COUNT", default_value_t = 1)]
    pub default_min_count: u32,
    #[arg(long, env = "STATEHOUSE_DEFAULT_MAX_COUNT", default_value_t = 2)]
    pub default_max_count: u32,
    /// No tenant may ask for more tasks than this.
    #[arg(long, env = "STATEHOUSE_MAX_TASK_COUNT", default_value_t = 10)]
    pub max_task_count: u32,
    /// The cell (shared load balancer and cluster) new tenants are placed in.
    #[arg(long, env = "STATEHOUSE_CELL", default_value = "cell-1")]
    pub cell: String,
}

impl TenantDefaults {
    /// Checks the defaults like any client's spec, so a bad configuration fails at start.
    pub fn settings(&self) -> anyhow::Result<ApiSettings> {
        let spec_limits = SpecLimits {
            max_task_count: self.max_task_count,
        };
        let doc = SpecDoc {
            app_image: self.default_app_image.clone(),
            nginx_image: self.default_nginx_image.clone(),
            cpu: self.default_cpu,
            memory: self.default_memory,
            desired_count: self.default_desired_count,
            min_count: self.default_min_count,
            max_count: self.default_max_count,
            env: BTreeMap::new(),
        };
        let spec_defaults = TenantSpec::validate(doc, Some(spec_limits))
            .context("the STATEHOUSE_DEFAULT_* settings do not make a valid spec")?
            .to_doc();
        if self.cell.trim().is_empty() {
            bail!("STATEHOUSE_CELL must not be empty");
        }
        Ok(ApiSettings {
            spec_defaults,
            spec_limits,
            cell: self.cell.clone(),
        })
    }
}
