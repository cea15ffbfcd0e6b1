//! One module per resource, each with a `router()` of documented routes.

pub mod appeals;
pub mod audit;
pub mod auth;
pub mod incidents;
pub mod ops;
pub mod params;
pub mod traffic;
pub mod users;
