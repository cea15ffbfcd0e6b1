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
pub use crate::http_clips::ClipApi;
use crate::metrics::{self, SourceList, Status};

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct OpsState {
    pub counters: Arc<PipelineCounters>,
    pub sources: SourceList,
    /// Cameras' clip triggers and the clip directory.
    pub clips: ClipApi,
}

/// The router: `/metrics` and `/health`.
pub fn app(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/health", get(get_health))
        .merge(crate::http_clips::router())
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    async fn get(state: OpsState, path: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, stop.clone()));
        let response = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        stop.cancel();
        server.await.unwrap();
        response
    }

    #[tokio::test]
    async fn health_answers_503_when_failing_and_200_otherwise() {
        let state = OpsState {
            counters: Arc::default(),
            sources: SourceList::default(),
            clips: ClipApi::default(),
        };
        // Nothing has beaten: the pipeline counts as stalled.
        let r = get(state.clone(), "/health").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("\"status\":\"failing\""), "{r}");
        state.counters.aggregator_beat.beat();
        state.counters.spool_writer_beat.beat();
        let r = get(state.clone(), "/health").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let r = get(state, "/metrics").await;
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
    }
}
