//! `/api/incidents/`: incidents and their lifecycle.

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The states of an incident still being handled.
pub const OPEN_STATES: [&str; 6] = [
    "reported",
    "verified",
    "dispatched",
    "on_scene",
    "lanes_cleared",
    "scene_cleared",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
