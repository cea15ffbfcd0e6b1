//! The roadside ingest daemon's library: everything the binary wires together.
//!
//! Data path (DESIGN §5): [`sources`] (one task per device) → a lock-free ring per source →
//! the [`pipeline`]'s aggregator task ([`aggregate`]) → a bounded channel → the spool writer
//! ([`spool`], on disk, fsynced).
//!
//! - [`cli`]: the command line (`run`, `status`, `check-config`, `spool stat|tail|export`).
//! - [`status`]: `status`: the running daemon's `/health` as text for people.
//! - [`run`]: `run` itself: configuration to running tasks, supervision, drain.
//! - [`sources`]: the source loop with backoff, the rings, the [`sources::simulated`]
//!   source, the [`sources::serial`] source (serial-line detectors) and the [`sources::mqtt`]
//!   source (PUBACK only once durable in the spool).
//! - [`clips`]: incident clips of the cameras (MP4, crash-safe, disk-bounded).
//! - [`pipeline`]: the aggregator task and the spool writer task.
//! - [`shutdown`]: signals, stop reasons, the drain deadline.
//! - [`clock`]: the pipeline clock (scaled for demos).
//! - [`counters`]: what `/metrics` reads.
//! - [`metrics`], [`http`]: `/metrics` and `/health` on `[http] listen`.
//! - [`notify`]: systemd readiness, status and watchdog.
//! - [`reload`]: what a SIGHUP changes.
//! - [`spool_lock`]: one process per spool directory.
//! - [`display`]: sample lines and the `spool stat` text.
//! - [`aggregate`]: per-lane bins aligned to the wall clock that turn vehicle events and
//!   interval reports into [`central_sync::TrafficSample`]s.
//! - [`sim`]: a deterministic traffic generator for demos, soak tests and benchmarks.
//! - [`detector_sim`]: the `detector-sim` tool: real frames of any protocol from the
//!   simulator to a file, pty or MQTT broker, with the ground truth they encode.
//! - [`spool`]: the crash-safe, bounded, append-only local store of samples and raw data.
//! - [`uplink`]: drains the spool into the central database (central-sync's writer).

pub mod aggregate;
pub mod cli;
pub mod clips;
pub mod clock;
pub mod counters;
pub mod detector_sim;
pub mod display;
pub mod http;
pub mod http_clips;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod reload;
pub mod run;
pub mod shutdown;
pub mod sim;
pub mod sources;
pub mod spool;
pub mod spool_lock;
pub mod status;
pub mod uplink;
