//! Schema migrations: an ordered list of SQL steps per *set*, applied once each, tracked
//! in `schema_migration`.
//!
//! Several owners share one database (central-sync's traffic tables, central-api's own
//! tables), so each owns a named [`MigrationSet`] and they never renumber each other.
//! Applying is idempotent and safe to run from several processes at once: a session-level
//! advisory lock serialises runners, and each migration commits with its tracking row.
//!
//! TimescaleDB is optional. The runner detects it once per database ([`Flavour`]) and a
//! migration may carry a TimescaleDB variant of its SQL; the flavour is recorded, and a
//! database migrated under one flavour refuses to continue under the other (the objects
//! differ: a roll-up is a table on plain PostgreSQL, a continuous aggregate on TimescaleDB).
//!
//! Continuous aggregates cannot be created inside a transaction block, so a migration may
//! ask to run outside one; such SQL must be idempotent (`IF NOT EXISTS`), because a crash
//! between the statements and the tracking row replays it.

use std::fmt;

use tokio_postgres::Client;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing within its set, starting at 1.
    pub version: i32,
    /// Short description, recorded in `schema_migration`.
    pub name: &'static str,
    /// The SQL on plain PostgreSQL, and on TimescaleDB when `timescale_sql` is `None`.
    pub sql: &'static str,
    /// The SQL used instead where the `timescaledb` extension is available.
    pub timescale_sql: Option<&'static str>,
    /// Run outside a transaction block. The SQL must then be idempotent.
    pub no_transaction: bool,
}

impl Migration {
    /// A migration whose SQL is the same on both flavours, run in a transaction.
    pub const fn sql(version: i32, name: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            name,
            sql,
            timescale_sql: None,
            no_transaction: false,
        }
    }

    fn sql_for(&self, flavour: Flavour) -> &'static str {
        match (flavour, self.timescale_sql) {
            (Flavour::Timescale, Some(sql)) => sql,
            _ => self.sql,
        }
    }
}

/// The migrations of one owner.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    /// The owner's name, e.g. `central-sync`.
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

/// Which storage features the database offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Plain PostgreSQL (≥ 14): BRIN indexes and roll-up tables kept by a job.
    Plain,
    /// The `timescaledb` extension: hypertables, compression, continuous aggregates.
    Timescale,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Plain => "plain",
            Flavour::Timescale => "timescaledb",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub flavour: Flavour,
    /// Versions applied by this call, in order; empty when the schema was up to date.
    pub versions: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database error during migration {set} v{version} ({name}): {source}")]
    Step {
        set: &'static str,
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database error while preparing migrations: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "migration {set} v{version} was applied with different SQL (checksum {recorded:08x}, \
         now {current:08x}): shipped migrations must never be edited; add a new one"
    )]
    Edited {
        set: &'static str,
        version: i32,
        recorded: u32,
        current: u32,
    },
    #[error(
        "the database was migrated as {recorded} but now looks like {current}; \
         refusing to mix schema flavours"
    )]
    FlavourChanged { recorded: String, current: Flavour },
    #[error(
        "migration set {set}: versions must increase from 1 without gaps (found v{found} at position {position})"
    )]
    BadOrder {
        set: &'static str,
        found: i32,
        position: usize,
    },
}

const TRACKING_DDL: &str = "
CREATE TABLE IF NOT EXISTS schema_migration (
    set_name   text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   bigint      NOT NULL,
    flavour    text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, version)
)";

/// Key of the advisory lock that serialises migration runners on one database.
const LOCK_KEY: i64 = 0x7472_6166_6669_6300; // "traffic\0"

/// Detects the flavour: TimescaleDB when the extension is installed in this database, or
/// is available and can be created by this session (it needs `shared_preload_libraries`).
pub async fn detect_flavour(client: &Client) -> Result<Flavour, tokio_postgres::Error> {
    let installed: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await?
        .get(0);
    if installed {
        return Ok(Flavour::Timescale);
    }
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await?
        .get(0);
    if !available {
        return Ok(Flavour::Plain);
    }
    // Available but not loaded, or not ours to create: stay plain rather than fail.
    match client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        Ok(()) => Ok(Flavour::Timescale),
        Err(e) => {
            tracing::warn!(error = %e, "timescaledb is available but could not be created; using plain PostgreSQL");
            Ok(Flavour::Plain)
        }
    }
}

/// Applies every migration of `set` not yet applied, in order.
pub async fn apply(client: &mut Client, set: &MigrationSet) -> Result<Applied, MigrateError> {
    check_order(set)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_locked(client, set).await;
    // The lock is per session: a dropped connection releases it anyway.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

fn check_order(set: &MigrationSet) -> Result<(), MigrateError> {
    for (position, m) in set.migrations.iter().enumerate() {
        if i64::from(m.version) != position as i64 + 1 {
            return Err(MigrateError::BadOrder {
                set: set.name,
                found: m.version,
                position,
            });
        }
    }
    Ok(())
}

async fn apply_locked(client: &mut Client, set: &MigrationSet) -> Result<Applied, MigrateError> {
    client.batch_execute(TRACKING_DDL).await?;
    let flavour = detect_flavour(client).await?;
    let recorded_flavour: Option<String> = client
        .query_opt("SELECT flavour FROM schema_migration LIMIT 1", &[])
        .await?
        .map(|row| row.get(0));
    match recorded_flavour {
        Some(recorded) if recorded != flavour.as_str() => {
            return Err(MigrateError::FlavourChanged {
                recorded,
                current: flavour,
            });
        }
        _ => {}
    }
    let done: Vec<(i32, i64)> = client
        .query(
            "SELECT version, checksum FROM schema_migration WHERE set_name = $1 ORDER BY version",
            &[&set.name],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    let mut versions = Vec::new();
    for m in set.migrations {
        let sql = m.sql_for(flavour);
        let checksum = crc32fast::hash(sql.as_bytes());
        if let Some(&(_, recorded)) = done.iter().find(|(v, _)| *v == m.version) {
            if recorded != i64::from(checksum) {
                return Err(MigrateError::Edited {
                    set: set.name,
                    version: m.version,
                    recorded: u32::try_from(recorded).unwrap_or(u32::MAX),
                    current: checksum,
                });
            }
            continue;
        }
        let step_err = |source| MigrateError::Step {
            set: set.name,
            version: m.version,
            name: m.name,
            source,
        };
        let record = "INSERT INTO schema_migration (set_name, version, name, checksum, flavour) \
                      VALUES ($1, $2, $3, $4, $5)";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &set.name,
            &m.version,
            &m.name,
            &i64::from(checksum),
            &flavour.as_str(),
        ];
        if m.no_transaction {
            client.batch_execute(sql).await.map_err(step_err)?;
            client.execute(record, &params).await.map_err(step_err)?;
        } else {
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await.map_err(step_err)?;
            tx.execute(record, &params).await.map_err(step_err)?;
            tx.commit().await.map_err(step_err)?;
        }
        tracing::info!(set = set.name, version = m.version, name = m.name, %flavour, "migration applied");
        versions.push(m.version);
    }
    Ok(Applied { flavour, versions })
}
