//! [`AppState`]: what every handler may use. Cheap to clone (shared pointers).

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::auth::{Passwords, Tokens};
use crate::config::Config;
use crate::ratelimit::RateLimiters;

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub tokens: Arc<Tokens>,
    pub passwords: Arc<Passwords>,
    pub config: Arc<Config>,
    /// `None` when `rate_limit.enabled = false`.
    pub limiters: Option<Arc<RateLimiters>>,
    /// This instance's live clients (chat, notifications); see [`crate::realtime`].
    pub hub: Arc<crate::realtime::Hub>,
    /// This instance's memory of which access tokens still stand; see
    /// [`crate::revocation`].
    pub revocations: Arc<crate::revocation::Revocations>,
}

impl AppState {
    /// Builds the state from a loaded config: the pool (connections open lazily), the
    /// token keys (reads `auth.jwt_secret_file`) and the password hasher.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let pool = crate::db::pool(&config)?;
        let secret = config.jwt_secret()?;
        let tokens = Tokens::new(secret.expose().as_bytes(), &config.auth);
        let passwords = Passwords::new(&config.auth)?;
        let limiters = config
            .rate_limit
            .enabled
            .then(|| Arc::new(RateLimiters::new(&config.rate_limit)));
        Ok(Self {
            pool,
            tokens: Arc::new(tokens),
            passwords: Arc::new(passwords),
            config: Arc::new(config),
            limiters,
            hub: Arc::default(),
            revocations: Arc::default(),
        })
    }

    /// A pooled connection; 503 when the database cannot be reached in time.
    pub async fn db(&self) -> Result<deadpool_postgres::Object, crate::error::ApiError> {
        Ok(self.pool.get().await?)
    }
}
