//! Operations endpoints: `/health`, `/ready`, `/metrics` (no rate limit), the OpenAPI
//! document `/api/openapi.json` and its browser view `/api/docs` (a self-contained page:
//! nothing is fetched from elsewhere, at build time or at run time).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// `/api/openapi.json` and `/api/docs`.
pub fn docs_router(doc: utoipa::openapi::OpenApi) -> Router<AppState> {
    let json = doc.to_json().unwrap_or_else(|_| "{}".to_owned());
    Router::new()
        .route(
            "/api/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route("/api/docs", get(|| async { Html(DOCS_PAGE) }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: the process answers. Does not touch the database.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "alive", body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Whether a database round trip succeeded.
    pub database: bool,
}

/// Readiness: the database answers. A load balancer should route only to ready instances.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses(
        (status = 200, description = "ready", body = Ready),
        (status = 503, description = "the database is unreachable", body = Ready)))]
async fn ready(State(state): State<AppState>) -> Response {
    let ok = match state.pool.get().await {
        Ok(db) => db.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let body = Ready {
        status: if ok { "ready" } else { "not_ready" },
        database: ok,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(e) = refresh_gauges(&state).await {
        tracing::warn!(error = %e, "business gauges not refreshed");
    }
    let handle = crate::metrics::handle();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Business gauges, read from the database at scrape time so that every instance reports
/// the same truth.
async fn refresh_gauges(state: &AppState) -> ApiResult<()> {
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT s.state, count(i.id) \
             FROM unnest($1::text[]) AS s(state) LEFT JOIN incident i ON i.state = s.state \
             GROUP BY s.state",
            &[&&crate::routes::incidents::OPEN_STATES[..]],
        )
        .await?;
    for row in rows {
        let state: String = row.get(0);
        let n: i64 = row.get(1);
        metrics::gauge!("incidents_open", "state" => state).set(n as f64);
    }
    let pending: i64 = db
        .query_one(
            "SELECT count(*) FROM appeal WHERE status IN ('received', 'acknowledged', 'in_progress')",
            &[],
        )
        .await?
        .get(0);
    metrics::gauge!("appeals_pending").set(pending as f64);
    Ok(())
}

/// A small, self-contained reader for the OpenAPI document.
const DOCS_PAGE: &str = include_str!("docs.html");
