//! `central-api`: the control room's service.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use central_api::config::{Config, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "central-api", version, about = "The control room's service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the database must be migrated).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Apply the database migrations (central-sync's, then central-api's) and exit.
    Migrate {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Create an admin account (to bootstrap the first one). The password is read from
    /// --password-file, or else from the first line of standard input.
    CreateAdmin {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        username: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// Load and validate the configuration, then exit.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the OpenAPI document (JSON) and exit.
    Openapi,
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(Some(path)).context("configuration")
}

fn init_logs(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = load(&config)?;
            init_logs(&config);
            central_api::serve::serve(config).await
        }
        Command::Migrate { config } => {
            let config = load(&config)?;
            init_logs(&config);
            let mut client = central_api::db::connect(&config).await?;
            for (set, applied) in central_api::migrate::apply_all(&mut client)
                .await
                .context("migrating")?
            {
                if applied.versions.is_empty() {
                    println!("{set}: up to date ({})", applied.flavour);
                } else {
                    println!(
                        "{set}: applied {:?} ({})",
                        applied.versions, applied.flavour
                    );
                }
            }
            Ok(())
        }
        Command::CreateAdmin {
            config,
            username,
            password_file,
            display_name,
        } => {
            let config = load(&config)?;
            init_logs(&config);
            let password = match password_file {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("--password-file: cannot read {}", p.display()))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line
                }
            };
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let id =
                central_api::bootstrap::create_admin(&config, &username, &display_name, password)
                    .await?;
            println!("created admin {username} (id {id})");
            Ok(())
        }
        Command::CheckConfig { config } => {
            let loaded = load(&config)?;
            loaded.jwt_secret().context("configuration")?;
            loaded.database_password().context("configuration")?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Openapi => {
            println!(
                "{}",
                central_api::http::openapi()
                    .to_pretty_json()
                    .context("rendering the OpenAPI document")?
            );
            Ok(())
        }
    }
}
