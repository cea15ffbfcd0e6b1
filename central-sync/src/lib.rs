//! The contract between the edge boxes and the control room.
//!
//! - [`sample`]: the [`TrafficSample`], the product's main record (DESIGN §3), with its
//!   [`Quality`] flags and [`Los`] level of service. The edge aggregator produces it, the
//!   spool keeps it, the uplink writes it, the centre queries it.
//! - [`migrate`]: the migration runner shared by every owner of the central database
//!   (plain PostgreSQL or TimescaleDB, detected at migration time); [`migrate()`] applies
//!   central-sync's own set.
//! - [`schema`]: central-sync's own tables ([`schema::MIGRATIONS`]).
//! - [`writer`]: the idempotent batch writer (ledger, binary COPY, merge on conflict,
//!   cursor) an edge's uplink calls, and the edge heartbeat.
//! - [`roles`]: one least-privileged login role per edge box.
//! - [`rollup`]: keeps the 15 min / 1 h roll-up tables on plain PostgreSQL.
//! - [`connect`]: connection options, password handling and TLS (rustls).
//!
//! The `central-sync` binary wraps these: `migrate`, `create-edge-role`, `rollup`.

pub mod connect;
pub mod migrate;
pub mod roles;
pub mod rollup;
pub mod sample;
pub mod schema;
pub mod writer;

pub use sample::{Los, Quality, SpeedSource, TrafficSample};

/// Applies central-sync's migrations ([`schema::MIGRATIONS`]).
pub async fn migrate(
    client: &mut tokio_postgres::Client,
) -> Result<migrate::Applied, migrate::MigrateError> {
    migrate::apply(client, &schema::MIGRATIONS).await
}
