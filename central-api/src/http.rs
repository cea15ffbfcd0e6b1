//! The HTTP application: [`app`] assembles the per-resource routers, the OpenAPI document
//! and the middleware every request goes through (request id, logs, metrics, panics,
//! timeout, rate limit, body limit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::routes;
use crate::state::AppState;

/// The header carrying the request id, taken from the client (or a proxy) when present.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "central-api",
        description = "The control room's service: users, incidents, appeals and more. \
                       Authenticate with `POST /api/auth/login/` and send the access token \
                       as `Authorization: Bearer <token>`. Errors are `ErrorBody` objects."
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorBody, crate::error::FieldError, crate::auth::Role))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// Every API route with its documentation, before middleware.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::users::router())
        .merge(routes::auth::router())
        .merge(routes::incidents::router())
        .merge(routes::appeals::router())
        .merge(routes::audit::router())
        .merge(routes::traffic::router())
        .merge(routes::registry::router())
        .merge(routes::chat::router())
        .merge(routes::notifications::router())
        .merge(routes::news::router())
        .merge(routes::schedules::router())
        .merge(routes::analytics::router())
}

/// The OpenAPI document of [`app`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = api_routes().merge(routes::ops::router()).split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The whole service.
pub fn app(state: AppState) -> Router {
    let config = &state.config.server;
    let (api, _) = api_routes().split_for_parts();
    let api = api.layer(middleware::from_fn_with_state(
        state.clone(),
        crate::ratelimit::limit,
    ));
    let (ops, _) = routes::ops::router().split_for_parts();
    let doc = openapi();
    crate::metrics::handle();
    // Router::layer wraps every route after routing (so `MatchedPath` is known); the last
    // layer added is the outermost.
    api.merge(ops)
        .merge(routes::ops::docs_router(doc))
        .fallback(|| async { ApiError::NotFound })
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(config.request_timeout_s),
        ))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId::default()))
        .layer(middleware::map_request(drop_odd_request_id))
        .with_state(state)
}

fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path(), MatchedPath::as_str);
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), route, request_id = id)
}

/// A client's request id is kept only when it is short printable ASCII; otherwise the
/// service makes its own (ids go into every log line and audit row).
async fn drop_odd_request_id(mut req: Request) -> Request {
    let odd = req.headers().get(REQUEST_ID).is_some_and(|v| {
        v.len() > MAX_REQUEST_ID || !v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    });
    if odd {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// Longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Request ids: a random per-process prefix and a counter, unique across instances.
#[derive(Debug, Clone)]
struct NewRequestId {
    prefix: u32,
    next: std::sync::Arc<AtomicU64>,
}

impl Default for NewRequestId {
    fn default() -> Self {
        let mut b = [0u8; 4];
        // Without randomness ids are still unique per instance; good enough.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        Self {
            prefix: u32::from_be_bytes(b),
            next: Default::default(),
        }
    }
}

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-{n:010}", self.prefix);
        HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The request's id (for audit rows and logs).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(MAX_REQUEST_ID).collect())
            .unwrap_or_default();
        Ok(RequestId(id))
    }
}

/// A response with no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
