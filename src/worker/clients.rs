//! The clients a worker reaches its cells with, and the call budget they share.

use std::{collections::HashMap, sync::Arc};

use crate::{
    aws::{
        budget::{Budget, BudgetSettings},
        Aws,
    },
    metrics::Metrics,
    reconcile::platform::Platform,
};

/// Clients for each cell in another account or region than the process's own: in the
/// cell's region, with credentials from AssumeRole on the cell's role (the SDK's provider,
/// which refreshes them before they expire), counted like every other call, and with the
/// call budget of the cell's account and region (shared by the cells there).
pub async fn cell_clients(
    home: &Aws,
    platform: &Platform,
    settings: &BudgetSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<HashMap<String, Aws>> {
    use aws_config::{sts::AssumeRoleProvider, Region};
    use aws_sdk_sts::config::SharedCredentialsProvider;
    let Some((base, counter, home_budget)) = home.origin() else {
        return Ok(HashMap::new());
    };
    let mut budgets: HashMap<(String, String), Arc<Budget>> = HashMap::new();
    budgets.insert(
        (platform.account.clone(), platform.region.clone()),
        home_budget.clone(),
    );
    let mut clients = HashMap::new();
    for cell in &platform.cells {
        if cell.role_arn.is_none() {
            if cell.account != platform.account {
                anyhow::bail!(
                    "cell `{}` is in account {}, but this process's credentials are for {}: give the cell a `role_arn` to assume",
                    cell.name, cell.account, platform.account
                );
            }
            if cell.region == platform.region {
                continue;
            }
        }
        let region = Region::new(cell.region.clone());
        let mut config = base.to_builder().region(region.clone());
        if let Some(role) = &cell.role_arn {
            let provider = AssumeRoleProvider::builder(role.clone())
                .session_name(format!("statehouse-{}", cell.name))
                .region(region)
                .configure(base)
                .build()
                .await;
            config = config.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        let budget = budgets
            .entry((cell.account.clone(), cell.region.clone()))
            .or_insert_with(|| budgeted(settings, metrics.clone()))
            .clone();
        clients.insert(
            cell.name.clone(),
            Aws::with_budget(&config.build(), counter.clone(), Some(budget)),
        );
    }
    Ok(clients)
}

/// The call budget of the account and region, with every wait counted into `metrics`.
pub fn budgeted(settings: &BudgetSettings, metrics: Arc<Metrics>) -> Arc<Budget> {
    let on_wait: crate::aws::budget::OnWait =
        Arc::new(move |bucket, waited| metrics.aws_budget_wait(bucket.as_str(), waited));
    Arc::new(Budget::new(settings, Some(on_wait)))
}
