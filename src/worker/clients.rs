//! The clients a worker reaches its cells with, and the call budget they share.

use std::{collections::HashMap, sync::Arc};

use crate::{
    aws::{
        budget::{Budget, BudgetSettings},
        Aws,
    },
    metrics::Metrics,
    reconcile::platform::Cell,
};

/// Clients for each cell in another account or region than the process's own: in the
/// cell's region, with credentials from AssumeRole on the cell's role (the SDK's provider,
/// which refreshes them before they expire), counted like every other call, and with the
/// call budget of the cell's account and region (shared by the cells there).
///
/// `account` and `region` are the process's own (those of `home`).
pub async fn cell_clients(
    home: &Aws,
    account: &str,
    region: &str,
    cells: &[Cell],
    settings: &BudgetSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<HashMap<String, Aws>> {
    use aws_config::{sts::AssumeRoleProvider, Region};
    use aws_sdk_sts::config::SharedCredentialsProvider;
    let Some((base, counter, home_budget)) = home.origin() else {
        return Ok(HashMap::new());
    };
    let mut budgets: HashMap<(String, String), Arc<Budget>> = HashMap::new();
    budgets.insert((account.to_owned(), region.to_owned()), home_budget.clone());
    let mut clients = HashMap::new();
    for cell in cells {
        if cell.role_arn.is_none() {
            if cell.account != account {
                anyhow::bail!(
                    "cell `{}` is in account {}, but this process's credentials are for {account}: give the cell a `role_arn` to assume",
                    cell.name, cell.account
                );
            }
            if cell.region == region {
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

/// The process's own clients: calls counted by `counter`, within a budget of `settings`,
/// and remembering what they were made from, so [`cell_clients`] can derive the cells'.
pub fn home_clients(
    config: aws_config::SdkConfig,
    counter: crate::aws::CallCounter,
    settings: &BudgetSettings,
    metrics: Arc<Metrics>,
) -> Aws {
    let budget = budgeted(settings, metrics);
    Aws::with_budget(&config, counter.clone(), Some(budget.clone()))
        .with_origin(config, counter, budget)
}

/// The call budget of the account and region, with every wait counted into `metrics`.
fn budgeted(settings: &BudgetSettings, metrics: Arc<Metrics>) -> Arc<Budget> {
    let on_wait: crate::aws::budget::OnWait =
        Arc::new(move |bucket, waited| metrics.aws_budget_wait(bucket.as_str(), waited));
    Arc::new(Budget::new(settings, Some(on_wait)))
}
