//! `/api/auth/`: log in (password → access + refresh token), refresh (rotating the refresh
//! token), log out (revoking it) and log out everywhere (revoking every token of the user).
//!
//! Refresh tokens rotate: each use revokes the token and issues a new one of the same
//! family. A revoked token presented again means it was copied: the whole family is
//! revoked, and the thief and the owner both have to log in again.
//!
//! Tokens are issued with the user's row locked ([`lock_for_tokens`]) and carry the token
//! generation read under that lock, so a concurrent revocation either comes first (and the
//! new tokens carry its generation) or waits and revokes them too.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor};
use crate::auth::{AuthUser, MAX_PASSWORD_BYTES, Role, refresh_token_hash};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::http::{RequestId, no_content};
use crate::routes::users::{TokenSubject, USER_COLUMNS, User, lock_for_tokens};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange at `POST /api/auth/refresh/` for new tokens; usable once.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub user: User,
}

const BAD_LOGIN: &str = "wrong username or password";
const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";

/// Issues tokens for `subject`, whose row `db`'s transaction has locked.
async fn issue(
    state: &AppState,
    db: &impl GenericClient,
    subject: TokenSubject,
    family: Option<i64>,
) -> ApiResult<TokenResponse> {
    let user = subject.user;
    let caller = AuthUser {
        id: user.id,
        role: user.role,
        patrol_id: user.patrol_id,
    };
    let access_token = state.tokens.access_token(&caller, subject.generation)?;
    let (refresh_token, hash) = state.tokens.refresh_token()?;
    let ttl = state.tokens.refresh_ttl;
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).map_err(ApiError::internal)?;
    // A new family per login: the first token's hash prefix is random enough.
    let family = family
        .unwrap_or_else(|| i64::from_be_bytes(hash[..8].try_into().unwrap_or([0; 8])) & i64::MAX);
    db.execute(
        "INSERT INTO refresh_token (user_id, family, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        &[&user.id, &family, &hash, &expires_at],
    )
    .await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_token,
        refresh_expires_in: ttl.as_secs(),
        user,
    })
}

/// Log in with a username and password.
#[utoipa::path(post, path = "/api/auth/login/", tag = "auth",
    request_body = LoginRequest,
    security(()),
    responses(
        (status = 200, description = "tokens", body = TokenResponse),
        (status = 401, description = "wrong username or password, or the account is disabled", body = crate::error::ErrorBody),
        (status = 422, description = "invalid fields", body = crate::error::ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    request_id: RequestId,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    if body.username.len() > 256 {
        return Err(ApiError::field("username", "is too long"));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::field("password", "is too long"));
    }
    let mut db = state.db().await?;
    let row = db
        .query_opt(
            &format!("SELECT {USER_COLUMNS}, password_hash FROM app_user WHERE lower(username) = lower($1)"),
            &[&body.username],
        )
        .await?;
    let hash = row.as_ref().map(|r| r.get::<_, String>(9));
    // Verified even for unknown users, so that timing does not tell who exists.
    let ok = state.passwords.verify(body.password, hash.clone()).await?;
    let user = match (ok, row) {
        (true, Some(row)) => User::from_row(&row)?,
        _ => return Err(ApiError::Unauthorized(BAD_LOGIN)),
    };
    let tx = db.transaction().await?;
    // Read again, locked: the account may have changed while the password was checked
    // (disabled, deleted, or the password reset because it leaked).
    let subject = match lock_for_tokens(&tx, user.id).await? {
        Some(s) if !s.user.disabled && Some(&s.password_hash) == hash.as_ref() => s,
        _ => return Err(ApiError::Unauthorized(BAD_LOGIN)),
    };
    let user = &subject.user;
    let caller = AuthUser {
        id: user.id,
        role: user.role,
        patrol_id: user.patrol_id,
    };
    audit::record(
        &tx,
        &Actor::user(&caller, &request_id),
        "auth.login",
        "user",
        user.id,
        None,
        None,
    )
    .await?;
    let tokens = issue(&state, &tx, subject, None).await?;
    tx.commit().await?;
    Ok(axum::Json(tokens))
}

/// Exchange a refresh token for new tokens (the old refresh token dies).
#[utoipa::path(post, path = "/api/auth/refresh/", tag = "auth",
    request_body = RefreshRequest,
    security(()),
    responses(
        (status = 200, description = "new tokens", body = TokenResponse),
        (status = 401, description = "invalid, expired or revoked refresh token", body = crate::error::ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    if body.refresh_token.len() > 256 {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    let hash = refresh_token_hash(&body.refresh_token);
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    // The user row is locked before the token's (the order of the revocation triggers):
    // a revocation in progress is waited for, and its revoking of this token seen below.
    let Some(user_id) = tx
        .query_opt(
            "SELECT user_id FROM refresh_token WHERE token_hash = $1",
            &[&hash],
        )
        .await?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    };
    let subject = lock_for_tokens(&tx, user_id).await?;
    let Some(row) = tx
        .query_opt(
            "SELECT id, family, revoked_at IS NOT NULL, expires_at < now(), rotated \
             FROM refresh_token WHERE token_hash = $1 FOR UPDATE",
            &[&hash],
        )
        .await?
    else {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    };
    let (id, family, revoked, expired, rotated): (i64, i64, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if revoked && !rotated {
        // Logged out, or revoked with its user: a stale client, not a theft.
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    if revoked {
        // A token already rotated, presented again: someone holds a copy.
        metrics::counter!("central_api_refresh_token_reuse_total").increment(1);
        tx.execute(
            "UPDATE refresh_token SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
            &[&family],
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(
            user_id,
            "a rotated refresh token was used again (a copy?); its family is revoked"
        );
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    if expired {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    let Some(subject) = subject.filter(|s| !s.user.disabled) else {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    };
    tx.execute(
        "UPDATE refresh_token SET revoked_at = now(), rotated = true WHERE id = $1",
        &[&id],
    )
    .await?;
    let tokens = issue(&state, &tx, subject, Some(family)).await?;
    tx.commit().await?;
    Ok(axum::Json(tokens))
}

/// Log out: revoke a refresh token (and the tokens it was rotated from). Access tokens
/// already issued stay valid until they expire (`POST /api/auth/logout-all/` revokes them
/// too). Unknown tokens are accepted silently.
#[utoipa::path(post, path = "/api/auth/logout/", tag = "auth",
    request_body = RefreshRequest,
    security(()),
    responses((status = 204, description = "logged out")))]
async fn logout(
    State(state): State<AppState>,
    request_id: RequestId,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Response> {
    let hash = refresh_token_hash(&body.refresh_token);
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let user: Option<(i64, String)> = tx
        .query_opt(
            "UPDATE refresh_token t SET revoked_at = coalesce(t.revoked_at, now()) \
             FROM app_user u WHERE t.token_hash = $1 AND u.id = t.user_id RETURNING u.id, u.role",
            &[&hash],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    if let Some((user_id, role)) = user {
        tx.execute(
            "UPDATE refresh_token SET revoked_at = now() \
             WHERE family = (SELECT family FROM refresh_token WHERE token_hash = $1) AND revoked_at IS NULL",
            &[&hash],
        )
        .await?;
        let actor = Actor {
            user_id: Some(user_id),
            role: Role::parse(&role).map(Role::as_str),
            request_id: Some(request_id.0),
        };
        audit::record(&tx, &actor, "auth.logout", "user", user_id, None, None).await?;
    }
    tx.commit().await?;
    Ok(no_content())
}

/// Log out everywhere: revoke every access and refresh token of the caller, on every
/// instance, from the next request on. Log in again for new ones.
#[utoipa::path(post, path = "/api/auth/logout-all/", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "every token of the caller is revoked"),
        (status = 401, description = "not logged in, or the token is already revoked", body = crate::error::ErrorBody)))]
async fn logout_all(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
) -> ApiResult<Response> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    // The trigger revokes the refresh tokens and announces the new generation at commit.
    let generation: Option<i64> = tx
        .query_opt(
            "UPDATE app_user SET token_generation = token_generation + 1 WHERE id = $1 \
             RETURNING token_generation",
            &[&caller.id],
        )
        .await?
        .map(|r| r.get(0));
    let Some(generation) = generation else {
        // Deleted between the token check and now.
        return Err(ApiError::TokenRevoked("the account no longer exists"));
    };
    audit::record(
        &tx,
        &Actor::user(&caller, &request_id),
        "auth.logout_all",
        "user",
        caller.id,
        None,
        Some(serde_json::json!({ "token_generation": generation })),
    )
    .await?;
    tx.commit().await?;
    // Forgotten here at once; other instances when the announcement reaches them.
    state.revocations.forget(caller.id);
    Ok(no_content())
}
