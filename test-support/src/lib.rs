//! Dev-only test support: throwaway real services for tests, never the ones already
//! running on the machine.
//!
//! Everything here starts its own instance on a free loopback port, in its own temporary
//! directory, and stops it and removes the directory when dropped. Use this crate only as a
//! `[dev-dependencies]` entry: it shells out to Debian's server binaries and panics freely
//! (a test that cannot get its service should fail loudly, naming the package to install).
//!
//! A tour:
//! - [`PgServer`]: a PostgreSQL cluster (`initdb` + `postgres`, fsync off) with cheap
//!   per-test databases cloned from a migrated template ([`PgServer::template_database`],
//!   [`PgServer::fresh_database`]), `psql` helpers, and outage control
//!   ([`PgServer::stop_immediate`] then [`PgServer::start`] on the same port and data).
//!   [`PgServer::shared`] gives one server per test binary.
//! - [`Mosquitto`]: an MQTT broker with persistence in its temp dir (sessions survive
//!   [`Mosquitto::restart`]), optional password file, [`Mosquitto::publish`] and a
//!   [`Subscription`] that waits for the broker's SUBACK before returning.
//! - [`PtyPair`]: two linked pseudo-terminals (`socat`), to stand in for a serial line.
//! - [`free_port`]: a loopback port nobody listened on a moment ago.
//! - [`make_certs`]: a throwaway CA and a server certificate for 127.0.0.1 (`openssl`).
//!
//! Processes die with the test process even when it is killed: each service has a small
//! `sh` "reaper" child that blocks reading a pipe only this process holds; when the pipe
//! closes (process exit, however abrupt) it stops the service and removes its directory.
//! That is also how [`PgServer::shared`] (a `static`, never dropped) gets cleaned up.
//!
//! Environment:
//! - `TEST_SUPPORT_LOG=1`: keep the temporary directories and print each service's log
//!   when it is dropped (shown by the test harness for failing tests, or with
//!   `--nocapture`).
//! - `TEST_SUPPORT_TIMEOUT_SECS`: how long to wait for a service to come up (default 60).
//! - `TEST_SUPPORT_PG_BINDIR`: PostgreSQL server binaries to use instead of the ones found
//!   by `pg_config --bindir` or the newest `/usr/lib/postgresql/*/bin`.
//!
//! Running as root (as here and in CI): `initdb` and `postgres` refuse root, so they run as
//! the `postgres` system user (created by Debian's `postgresql` package) and their
//! temporary directory is handed to that user. Mosquitto stays root (`user root` in its
//! config) so it can write its own directory.
//!
//! Linux (and Debian paths) only.

mod mosquitto;
mod pg;
mod ports;
mod proc;
mod pty;
mod settings;
mod tls;

pub use mosquitto::{Message, Mosquitto, MosquittoBuilder, Subscription, SubscriptionBuilder};
pub use pg::PgServer;
pub use ports::free_port;
pub use pty::PtyPair;
pub use tls::{TestCerts, make_certs};
