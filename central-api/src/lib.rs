//! The control-room service: one stateless axum application over one PostgreSQL database.
//!
//! A tour:
//! - [`config`]: the TOML file and `CENTRAL_API__SECTION__KEY` overrides.
//! - [`migrate`]: central-api's tables, applied after central-sync's traffic schema.
//! - [`http::app`]: the router, built from one `router()` per resource in [`routes`], the
//!   OpenAPI document ([`http::openapi`]) and the middleware stack.
//! - [`error::ApiError`]: the one error type of the handlers and its JSON form;
//!   [`extract`]: body, query and path extractors whose errors name the field.
//! - [`auth`]: roles, access and refresh tokens, argon2id, the [`auth::AuthUser`] extractor;
//!   [`revocation`]: which access tokens still stand (per-user generations, remembered per
//!   instance, forgotten on the database's announcements).
//! - [`audit`]: the audit log row written with every change.
//! - [`query`]: paging and filter helpers for list endpoints; [`text_enum!`]: enums
//!   stored as text.
//! - [`ratelimit`], [`metrics`]: per-client and per-user limits; Prometheus metrics.
//! - [`serve`]: listening (plain or TLS), systemd readiness, graceful shutdown.
//! - [`bootstrap`]: the first admin account.
//! - [`realtime`]: live delivery (chat, notifications) and revocations across instances via
//!   LISTEN/NOTIFY.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod db;
#[macro_use]
pub mod enums;
pub mod error;
pub mod extract;
pub mod http;
pub mod ical;
pub mod metrics;
pub mod migrate;
pub mod query;
pub mod ratelimit;
pub mod realtime;
pub mod revocation;
pub mod routes;
pub mod serve;
pub mod state;

pub use config::Config;
pub use error::{ApiError, ApiResult};
pub use http::app;
pub use state::AppState;
