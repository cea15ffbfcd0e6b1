//! Rate limiting: a GCRA limiter (governor) keyed by client address for anonymous
//! requests and by user id for requests with a valid access token, and a stricter one per
//! client address for login attempts. An exceeded limit is a 429 with `Retry-After`.
//!
//! The state is per instance: behind a load balancer with N instances a client gets up to
//! N times the configured rate. That keeps the service stateless; a limit shared across
//! instances belongs in the load balancer.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::{self, AuthUser};
use crate::config::RateLimitConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// Every this many checks, forget keys that are back to a full burst, so the maps do not
/// grow with every address ever seen.
const PRUNE_EVERY: u64 = 10_000;

#[derive(Debug)]
pub struct RateLimiters {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    users: DefaultKeyedRateLimiter<i64>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

/// The route whose attempts `rate_limit.login_per_minute` limits.
const LOGIN_PATH: &str = "/api/auth/login/";

fn quota(per_s: u32, burst: u32) -> Quota {
    let per_s = NonZeroU32::new(per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_s).allow_burst(burst)
}

impl RateLimiters {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            clients: RateLimiter::keyed(quota(config.per_client_per_s, config.per_client_burst)),
            users: RateLimiter::keyed(quota(config.per_user_per_s, config.per_user_burst)),
            logins: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(config.login_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, user: Option<&AuthUser>, client: IpAddr, login: bool) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.clients.retain_recent();
            self.users.retain_recent();
            self.logins.retain_recent();
        }
        let result = match user {
            Some(u) => self.users.check_key(&u.id),
            None => self.clients.check_key(&client),
        };
        let result = match result {
            Ok(()) if login => self.logins.check_key(&client),
            other => other,
        };
        result.map_err(|not_until| ApiError::RateLimited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

/// The client's address: the TCP peer, or with `server.trust_forwarded_for` the last
/// `X-Forwarded-For` entry (the one the trusted proxy added).
pub fn client_addr(req: &Request, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// The middleware. Keys by the user a well-signed token names (revoked or not: checking
/// that is the [`AuthUser`] extractor's job, and a revoked token still counts against its
/// user), and leaves the token's claims in the request's extensions, so the extractor does
/// not verify the signature twice.
pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(limiters) = state.limiters.as_deref() else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let claims = auth::bearer(&parts).and_then(|t| state.tokens.verify(t).ok());
    if let Some(c) = claims {
        parts.extensions.insert(c);
    }
    let user = claims.map(|c| c.user);
    req = Request::from_parts(parts, body);
    let client = client_addr(&req, state.config.server.trust_forwarded_for);
    let login = req.uri().path() == LOGIN_PATH;
    match limiters.check(user.as_ref(), client, login) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}
