//! The contract between the edge boxes and the control room.
//!
//! - [`sample`]: the [`TrafficSample`], the product's main record (DESIGN §3), with its
//!   [`Quality`] flags and [`Los`] level of service. The edge aggregator produces it, the
//!   spool keeps it, the uplink writes it, the centre queries it.
//!
//! The SQL schema, migrations, batch ledger and COPY writer come with issue #4.

pub mod sample;

pub use sample::{Los, Quality, SpeedSource, TrafficSample};
