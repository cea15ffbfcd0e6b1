//! The contract between the edge boxes and the control room.
//!
//! - [`sample`]: the [`TrafficSample`], the product's main record (DESIGN §3), with its
//!   [`Quality`] flags and [`Los`] level of service. The edge aggregator produces it, the
//!   spool keeps it, the uplink writes it, the centre queries it.
//! - [`migrate`]: the migration runner shared by every owner of the central database
//!   (plain PostgreSQL or TimescaleDB, detected at migration time).
//! - [`schema`]: central-sync's own tables ([`schema::MIGRATIONS`]).
//!
//! The batch ledger writer and edge roles come with issue #4.

pub mod migrate;
pub mod sample;
pub mod schema;

pub use sample::{Los, Quality, SpeedSource, TrafficSample};
