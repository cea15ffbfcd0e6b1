//! One module per resource, each with a `router()` of documented routes.

pub mod analytics;
pub mod appeals;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod incidents;
pub mod news;
pub mod notifications;
pub mod ops;
pub mod params;
pub mod registry;
pub mod schedules;
pub mod traffic;
pub mod users;
