//! Who is asking: roles, access tokens (JWT, HS256, short-lived), refresh tokens (random,
//! stored hashed, revocable), argon2id password hashes, and the [`AuthUser`] extractor.
//!
//! An access token carries its user's token generation at issue (`gen`). The database
//! raises the generation when the user's role, patrol, password or disabled flag changes
//! or the user logs out everywhere (`POST /api/auth/logout-all/`), and a deleted user has
//! none: [`authenticate`] refuses such tokens with 401 `token_revoked` on the very next
//! request, on every instance. It does so without a database round trip in the common
//! case: each instance remembers its users' generations, and forgets one when the
//! database announces a change ([`crate::revocation`]). Refresh tokens are checked
//! against the database and are revoked together with the generation.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::AuthConfig;
use crate::error::{ApiError, ApiResult};
use crate::revocation::{Standing, Verdict};
use crate::state::AppState;

/// A user's role. What each may do is listed per route in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users and the registry.
    Admin,
    /// The control room: incidents, appeals, dispatch.
    Operator,
    /// Reads everything operational, changes nothing.
    Analyst,
    /// A patrol crew member: sees and advances the incidents assigned to their patrol.
    Patrol,
    /// A citizen: files appeals and reads their own.
    Public,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Analyst,
        Role::Patrol,
        Role::Public,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Analyst => "analyst",
            Role::Patrol => "patrol",
            Role::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller, from a valid `Authorization: Bearer` access token that is not
/// revoked ([`authenticate`]).
///
/// As an extractor it answers 401 when the token is missing, invalid or revoked; as
/// `Option<AuthUser>` a missing header is `None` (anonymous) and a bad token still 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: i64,
    pub role: Role,
    /// The patrol a `patrol` user crews.
    pub patrol_id: Option<i64>,
}

impl AuthUser {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("your role may not do this"))
        }
    }

    /// Admin or operator: the control room staff who change operational data.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator)
    }

    /// Staff or analyst: may read all operational data.
    pub fn can_read_all(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator | Role::Analyst)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, as a string (RFC 7519 `sub`).
    sub: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patrol: Option<i64>,
    /// The user's token generation at issue. Tokens from before generations existed
    /// carry none: generation 0, the generation every user started at.
    #[serde(default, rename = "gen")]
    generation: i64,
    iat: i64,
    exp: i64,
}

/// What a correctly signed, unexpired access token says; [`authenticate`] still has to
/// check that it is not revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessClaims {
    pub user: AuthUser,
    /// The user's token generation when the token was issued.
    pub generation: i64,
}

/// Signs and checks access tokens, and makes refresh tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(secret: &[u8], config: &AuthConfig) -> Self {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl: Duration::from_secs(config.access_ttl_s),
            refresh_ttl: Duration::from_secs(config.refresh_ttl_s),
            rng: SystemRandom::new(),
        }
    }

    /// A signed access token for `user`, whose token generation is `generation` (read in
    /// the transaction that issues the token, the user row locked).
    pub fn access_token(&self, user: &AuthUser, generation: i64) -> ApiResult<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.id.to_string(),
            role: user.role,
            patrol: user.patrol_id,
            generation,
            iat: now,
            exp: now + i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX / 2),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// What an access token says if its signature and expiry hold, or why it is refused.
    /// Says nothing about revocation: see [`authenticate`].
    pub fn verify(&self, token: &str) -> Result<AccessClaims, &'static str> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the access token has expired",
                _ => "the access token is invalid",
            })?;
        let id = data
            .claims
            .sub
            .parse()
            .map_err(|_| "the access token is invalid")?;
        Ok(AccessClaims {
            user: AuthUser {
                id,
                role: data.claims.role,
                patrol_id: data.claims.patrol,
            },
            generation: data.claims.generation,
        })
    }

    /// A new refresh token and the hash to store for it.
    pub fn refresh_token(&self) -> ApiResult<(String, Vec<u8>)> {
        let mut raw = [0u8; 32];
        self.rng
            .fill(&mut raw)
            .map_err(|_| ApiError::internal(anyhow::anyhow!("system randomness unavailable")))?;
        let token = URL_SAFE_NO_PAD.encode(raw);
        let hash = refresh_token_hash(&token);
        Ok((token, hash))
    }
}

/// What the database stores for a refresh token: its SHA-256. The tokens are 256 random
/// bits, so a fast hash is enough (no brute force), and a stolen table grants nothing.
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller `claims` name if their token is not revoked: the user exists, is not
/// disabled and is still at the token's generation. Answered from this instance's memory
/// when it can be trusted, else from one read of the user's row ([`crate::revocation`]).
pub async fn authenticate(state: &AppState, claims: &AccessClaims) -> ApiResult<AuthUser> {
    let user_id = claims.user.id;
    let (remembered, epoch) = state.revocations.recall(user_id, std::time::Instant::now());
    let verdict = match remembered.map(|s| s.judge(claims.generation)) {
        // A newer token than remembered: the memory is behind; read.
        Some(Verdict::Newer) | None => {
            metrics::counter!("central_api_token_checks_total", "source" => "database")
                .increment(1);
            let standing = read_standing(state, user_id).await?;
            state
                .revocations
                .remember(user_id, standing, epoch, std::time::Instant::now());
            standing.judge(claims.generation)
        }
        Some(verdict) => {
            metrics::counter!("central_api_token_checks_total", "source" => "memory").increment(1);
            verdict
        }
    };
    match verdict.refusal() {
        None => Ok(claims.user),
        Some(why) => {
            metrics::counter!("central_api_tokens_refused_total", "reason" => verdict.label())
                .increment(1);
            Err(ApiError::TokenRevoked(why))
        }
    }
}

async fn read_standing(state: &AppState, user_id: i64) -> ApiResult<Standing> {
    let db = state.db().await?;
    let row = db
        .query_opt(
            "SELECT token_generation, disabled FROM app_user WHERE id = $1",
            &[&user_id],
        )
        .await?;
    Ok(match row {
        None => Standing::Gone,
        Some(row) if row.get::<_, bool>(1) => Standing::Disabled,
        Some(row) => Standing::Active {
            generation: row.get(0),
        },
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        <AuthUser as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
            .await?
            .ok_or(ApiError::Unauthorized("authentication required"))
    }
}

impl OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        // Checked already by another extractor of this request.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(Some(*user));
        }
        // The rate limiter has already checked the signature of this request's token.
        let claims = match parts.extensions.get::<AccessClaims>() {
            Some(claims) => *claims,
            None => {
                if parts.headers.get(header::AUTHORIZATION).is_none() {
                    return Ok(None);
                }
                let token = bearer(parts).ok_or(ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ))?;
                state.tokens.verify(token).map_err(ApiError::Unauthorized)?
            }
        };
        let user = authenticate(state, &claims).await?;
        parts.extensions.insert(user);
        Ok(Some(user))
    }
}

/// argon2id hashing with the configured cost, off the async threads.
pub struct Passwords {
    params: Params,
    /// A hash of nothing in particular, verified when a login names no user, so that
    /// "no such user" and "wrong password" take the same time.
    dummy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Longest password accepted, in bytes (hashing cost does not depend on it much, but
/// there is no reason to accept megabytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

impl Passwords {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(config.argon2_memory_kib, config.argon2_iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("auth.argon2_memory_kib / argon2_iterations: {e}"))?;
        let dummy = hash_with(&params, "not a password")?;
        Ok(Self { params, dummy })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, &password))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Whether `password` matches `phc` (or, with `None`, burns the same time and says no).
    pub async fn verify(&self, password: String, phc: Option<String>) -> ApiResult<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.clone());
        let ok = tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            Ok::<_, anyhow::Error>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        Ok(ok && known)
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| anyhow::anyhow!("system randomness unavailable"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn passwords_round_trip() {
        let p = Passwords::new(&config()).unwrap();
        let h = p.hash("correct horse".to_owned()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(
            p.verify("correct horse".to_owned(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong".to_owned(), Some(h)).await.unwrap());
        assert!(!p.verify("not a password".to_owned(), None).await.unwrap());
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let t = Tokens::new(&[7u8; 32], &config());
        let user = AuthUser {
            id: 42,
            role: Role::Patrol,
            patrol_id: Some(3),
        };
        let token = t.access_token(&user, 5).unwrap();
        assert_eq!(
            t.verify(&token).unwrap(),
            AccessClaims {
                user,
                generation: 5
            }
        );
        let other = Tokens::new(&[8u8; 32], &config());
        assert!(other.verify(&token).is_err());
        assert!(t.verify("garbage").is_err());
        let (a, ha) = t.refresh_token().unwrap();
        let (b, _) = t.refresh_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(refresh_token_hash(&a), ha);
    }
}
