//! Prometheus metrics: `http_requests_total{route,status}`,
//! `http_request_duration_seconds{route}` (histogram), `http_errors_total{route,kind}`
//! (kind `client` for 4xx, `server` for 5xx), and business gauges refreshed at each scrape
//! from the database (`incidents_open{state}`, `appeals_pending`).
//!
//! Labels are bounded: `route` is the matched route template (`/api/incidents/{id}/`),
//! or `unmatched`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder, installed on first use. (One per process: tests that run
/// several apps in one process share it.)
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".to_owned()),
                DURATION_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// The middleware counting and timing every request.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let labels = [
        ("route", route.clone()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    let kind = if status.is_server_error() {
        Some("server")
    } else if status.is_client_error() {
        Some("client")
    } else {
        None
    };
    if let Some(kind) = kind {
        metrics::counter!("http_errors_total", "route" => route, "kind" => kind).increment(1);
    }
    response
}
