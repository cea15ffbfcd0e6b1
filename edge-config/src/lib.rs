//! Configuration of the roadside edge box, as read by the ingest daemon.
//!
//! The configuration is one TOML file (default location chosen by the daemon;
//! every key is described in `CONFIG.md`). A quick tour:
//!
//! - [`Config`] and the section structs in [`schema`]: `[node]`, `[spool]`,
//!   `[uplink]`, `[aggregation]`, `[http]` and the sources `[[serial]]`,
//!   `[[mqtt]]` (with `[[mqtt.topics]]`), `[[camera]]`, `[[simulated]]`.
//!   Every struct rejects unknown keys; every field's doc says its default.
//! - [`Config::load`] reads a file, applies `INGEST__*` environment overrides
//!   ([`env`]), reads `*_file` secrets (relative paths under systemd's
//!   `$CREDENTIALS_DIRECTORY`), and validates. It returns either a usable
//!   [`Config`] or a [`ConfigError`] listing **every** problem found, each as
//!   `file:line:column: key: reason`, so an installer fixes them in one go
//!   before the daemon starts. The environment is passed in, never read here.
//! - [`Config::validate`] is the pure semantic check (no files, no network).
//! - [`Secret`] holds passwords; it prints as `<redacted>` and never appears
//!   in errors. [`ByteSize`] reads `"512MiB"`. [`LaneMap`] maps device lanes
//!   (numbers, or ONVIF rule names) to road lanes ≥ 1.
//! - [`DEFAULT_CONFIG`] is `examples/minimal.toml`: a simulated source and
//!   no uplink, the daemon's built-in demo configuration.
//!
//! ```
//! let env = [("INGEST__HTTP__LISTEN".to_owned(), "0.0.0.0:9108".to_owned())];
//! let config = edge_config::Config::from_str_named("minimal.toml", edge_config::DEFAULT_CONFIG, env)?;
//! assert_eq!(config.http.listen.port(), 9108);
//! assert!(config.uplink.is_none());
//! # Ok::<(), edge_config::ConfigError>(())
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod env;
mod error;
mod lanes;
mod load;
mod path;
pub mod schema;
mod secret;
mod size;
mod suggest;
mod validate;

pub use error::{ConfigError, Problem};
pub use lanes::{DeviceLane, LaneMap, LaneMapping, MAX_ROAD_LANE};
pub use load::{FileAccess, HostFiles};
pub use path::{KeyPath, Segment};
pub use schema::{
    Aggregation, CameraSource, Clips, Config, Http, LaneNumbering, Location, MqttSource, MqttTopic,
    Node, Parity, PayloadFormat, Protocol, SerialSource, SimulatedSource, Spool, TlsMode,
    Transport, Uplink, UplinkTls,
};
pub use secret::{REDACTED, Secret};
pub use size::ByteSize;
pub use validate::{Issue, LaneAssignment};

/// The built-in configuration (`examples/minimal.toml`): one simulated source,
/// no uplink. The daemon uses it for its demo mode.
pub const DEFAULT_CONFIG: &str = include_str!("../examples/minimal.toml");
