//! The local operations endpoint on `[http] listen`: `GET /metrics` (Prometheus text) and
//! `GET /health` (JSON; 200 when ok or degraded, 503 when failing). See [`crate::metrics`]
//! for what they say. The server stops gracefully when its token is cancelled.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_now;
use crate::counters::PipelineCounters;
use crate::metrics::{self, SourceList, Status};

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct OpsState {
    pub counters: Arc<PipelineCounters>,
    pub sources: SourceList,
}

/// The router: `/metrics` and `/health`.
pub fn app(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/health", get(get_health))
        .with_state(state)
}

async fn get_metrics(State(s): State<OpsState>) -> Response {
    let sources = metrics::snapshot(&s.sources);
    let body = metrics::render(&s.counters, &sources, wall_now());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn get_health(State(s): State<OpsState>) -> Response {
    let sources = metrics::snapshot(&s.sources);
    let report = metrics::health(&s.counters, &sources, wall_now());
    let code = match report.status {
        Status::Ok | Status::Degraded => StatusCode::OK,
        Status::Failing => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, axum::Json(report)).into_response()
}

/// Serves until `stop` is cancelled, then lets requests in flight finish.
pub async fn serve(listener: TcpListener, state: OpsState, stop: CancellationToken) {
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the HTTP endpoint failed");
    }
}
