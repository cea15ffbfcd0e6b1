//! The roadside ingest daemon's library: everything the binary wires together.
//!
//! - [`aggregate`]: per-lane bins aligned to the wall clock that turn vehicle events and
//!   interval reports into [`central_sync::TrafficSample`]s.
//! - [`sim`]: a deterministic traffic generator for demos, soak tests and benchmarks.
//! - [`spool`]: the crash-safe, bounded, append-only local store of samples and raw data.

pub mod aggregate;
pub mod detector_sim;
pub mod sim;
pub mod spool;
