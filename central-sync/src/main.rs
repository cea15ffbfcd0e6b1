//! `central-sync`: schema migrations, edge roles and roll-ups for the central database.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use central_sync::connect::{self, ConnectOptions, Tls};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

/// The environment variable holding the administrator's password (like libpq's PGPASSWORD).
const PASSWORD_VAR: &str = "CENTRAL_SYNC_PASSWORD";

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// `postgres://USER@HOST[:PORT]/DATABASE` (no password in it). Else
    /// $CENTRAL_SYNC_DATABASE_URL.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// File holding the password (trailing newline ignored). Else $CENTRAL_SYNC_PASSWORD.
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = TlsArg::VerifyFull, global = true)]
    tls: TlsArg,
    /// PEM CA certificate for `--tls verify-full` (default: the system's CAs).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TlsArg {
    Disable,
    Require,
    VerifyFull,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Applies central-sync's schema migrations (idempotent; safe to run concurrently).
    Migrate,
    /// Creates the login role of an edge box (or gives it a new password) and prints the
    /// password once, or writes it to --output (mode 0600, must not exist yet).
    CreateEdgeRole {
        edge_id: String,
        /// Write the password here instead of to standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Drops an edge box's role (its rows stay).
    DropEdgeRole { edge_id: String },
    /// Refreshes the 15 min / 1 h roll-ups for batches committed since the last run (plain
    /// PostgreSQL; on TimescaleDB asks the continuous aggregates to refresh).
    Rollup {
        /// Also recompute everything from this time (RFC 3339) on.
        #[arg(long)]
        since: Option<DateTime<Utc>>,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("central-sync: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("central-sync: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn options(db: &DbArgs) -> anyhow::Result<ConnectOptions> {
    let url = db
        .database_url
        .clone()
        .or_else(|| std::env::var("CENTRAL_SYNC_DATABASE_URL").ok())
        .context("--database-url (or CENTRAL_SYNC_DATABASE_URL) is required")?;
    let mut opts = ConnectOptions::new(url);
    opts.password = match &db.password_file {
        Some(path) => Some(read_password(path)?),
        None => std::env::var(PASSWORD_VAR).ok(),
    };
    opts.tls = match (db.tls, &db.ca_file) {
        (TlsArg::VerifyFull, Some(ca)) => Tls::VerifyFullWith {
            ca_file: ca.clone(),
        },
        (TlsArg::VerifyFull, None) => Tls::VerifyFull,
        (_, Some(_)) => bail!("--ca-file is only used with --tls verify-full"),
        (TlsArg::Require, None) => Tls::Require,
        (TlsArg::Disable, None) => Tls::Disable,
    };
    Ok(opts)
}

fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = options(&cli.db)?;
    let mut client = connect::connect(&opts).await?;
    match cli.command {
        Command::Migrate => {
            let applied = central_sync::migrate(&mut client).await?;
            if applied.versions.is_empty() {
                println!("schema up to date ({})", applied.flavour);
            } else {
                println!(
                    "applied migrations {:?} ({})",
                    applied.versions, applied.flavour
                );
            }
        }
        Command::CreateEdgeRole { edge_id, output } => {
            // Refuse an unusable output before the role changes.
            let mut file = match &output {
                Some(path) => Some(create_secret_file(path)?),
                None => None,
            };
            let password = central_sync::roles::generate_password();
            let role = central_sync::roles::create_edge_role(&client, &edge_id, &password)
                .await
                .context("cannot create the edge role")?;
            match (&mut file, &output) {
                (Some(f), Some(path)) => {
                    writeln!(f, "{password}")
                        .and_then(|()| f.sync_all())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "role {role} ready; its password is in {} (give it to the box as \
                         uplink.password_file)",
                        path.display()
                    );
                }
                _ => {
                    eprintln!("role {role} ready; its password follows (shown once):");
                    println!("{password}");
                }
            }
        }
        Command::DropEdgeRole { edge_id } => {
            central_sync::roles::drop_edge_role(&client, &edge_id).await?;
            eprintln!("role of edge {edge_id} dropped");
        }
        Command::Rollup { since } => {
            let done = match since {
                Some(since) => central_sync::rollup::refresh(&mut client, since).await?,
                None => central_sync::rollup::refresh_pending(&mut client).await?,
            };
            match done.from {
                Some(from) => println!(
                    "roll-ups refreshed from {from}: {} quarter-hour rows, {} hour rows, {} batches",
                    done.rows_15m, done.rows_1h, done.batches
                ),
                None => println!("nothing to roll up ({} empty batches)", done.batches),
            }
        }
    }
    Ok(())
}

fn create_secret_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))
}
