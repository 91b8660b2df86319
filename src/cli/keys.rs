use anyhow::{bail, Context};
use clap::Subcommand;

use crate::{
    auth::{self, Role},
    config::DatabaseArgs,
    db,
};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it once; only its hash is kept.
    #[command(after_help = "Example:\n  statehouse keys create --name ops --role admin")]
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List keys (never their secrets).
    #[command(after_help = "Example:\n  statehouse keys list --all")]
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke the active key of that name; it stops working at once.
    #[command(after_help = "Example:\n  statehouse keys revoke ops")]
    Revoke {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            role,
            database,
        } => {
            auth::check_key_name(&name).map_err(anyhow::Error::msg)?;
            let pool = connect(&database).await?;
            let token = auth::generate_token();
            match db::keys::create(&pool, &name, role, &auth::hash_token(&token)).await {
                Err(err) if db::is_unique_violation(&err) => {
                    bail!("an active key named `{name}` already exists; revoke it first or pick another name")
                }
                other => other?,
            };
            eprintln!(
                "Created {} key `{name}`. Store it now: it cannot be shown again.",
                role.as_str()
            );
            println!("{token}");
            Ok(())
        }
        KeysCommand::List {
            all,
            json,
            database,
        } => {
            let keys = db::keys::list(&connect(&database).await?, all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_table(&keys);
            }
            Ok(())
        }
        KeysCommand::Revoke { name, database } => {
            if db::keys::revoke(&connect(&database).await?, &name).await? {
                eprintln!("Revoked key `{name}`.");
                Ok(())
            } else {
                bail!("there is no active key named `{name}`")
            }
        }
    }
}

async fn connect(database: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    let pool = db::connect(&database.database_url, 1)
        .await
        .context("cannot connect to the database at DATABASE_URL")?;
    db::MIGRATOR
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(pool)
}

fn print_table(keys: &[db::keys::ApiKey]) {
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    let width = keys.iter().map(|k| k.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{:width$}  {:6}  {:16}  {:16}  STATE",
        "NAME", "ROLE", "CREATED", "LAST USED"
    );
    for k in keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{:width$}  {:6}  {:16}  {:16}  {state}",
            k.name,
            k.role.as_str(),
            when(Some(k.created_at)),
            when(k.last_used_at)
        );
    }
}
