//! The service's configuration: a TOML file, then environment overrides
//! `CENTRAL_API__<SECTION>__<KEY>=value` (`server.listen` → `CENTRAL_API__SERVER__LISTEN`).
//!
//! Every section and key is optional except where [`Config::validate`] says otherwise; each
//! field's doc comment states its default. Unknown keys are errors (a typo must not go
//! unnoticed), and every error names the key and where its value came from (the file or
//! the variable). Secrets (`database.password`, `auth.jwt_secret`) are better given as
//! files (`*_file` keys); a relative `*_file` path is looked up in systemd's
//! `$CREDENTIALS_DIRECTORY` when that is set (`LoadCredential=`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edge_config::Secret;
use serde::Deserialize;

/// Prefix of override variables.
pub const ENV_PREFIX: &str = "CENTRAL_API__";

/// The variable systemd sets to the directory of `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}` ({origin}): {message}")]
    Key {
        key: String,
        origin: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: cannot read {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
}

/// `[server]`: the listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key_file`, the service speaks HTTPS only. Default: none.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Default: none.
    pub tls_key_file: Option<PathBuf>,
    /// A request taking longer is answered 503. Default 30.
    pub request_timeout_s: u64,
    /// Largest request body accepted, in bytes. Default 1 MiB.
    pub body_limit_bytes: usize,
    /// How long open requests may finish after SIGTERM. Default 20.
    pub shutdown_grace_s: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a load
    /// balancer that sets it). Default false: the TCP peer address.
    pub trust_forwarded_for: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert_file: None,
            tls_key_file: None,
            request_timeout_s: 30,
            body_limit_bytes: 1 << 20,
            shutdown_grace_s: 20,
            trust_forwarded_for: false,
        }
    }
}

/// `[database]`: the PostgreSQL (or TimescaleDB) database shared with central-sync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Host name, IP address or Unix socket directory. Default `127.0.0.1`.
    pub host: String,
    /// Default 5432.
    pub port: u16,
    /// Default `central_api`.
    pub user: String,
    /// Database name. Default `traffic`.
    pub dbname: String,
    /// The password; prefer `password_file`. Default: none.
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored). Default: none.
    pub password_file: Option<PathBuf>,
    /// `disable` or `require` (TLS, server verified against `ca_file` or the system CAs).
    /// Default `disable`.
    pub tls: DbTls,
    /// PEM CA certificates for `tls = "require"`. Default: the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool. Default 16.
    pub pool_size: usize,
    /// How long a request waits for a free connection before it gets 503. Default 5.
    pub pool_timeout_s: u64,
    /// Default 5.
    pub connect_timeout_s: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 5432,
            user: "central_api".to_owned(),
            dbname: "traffic".to_owned(),
            password: None,
            password_file: None,
            tls: DbTls::Disable,
            ca_file: None,
            pool_size: 16,
            pool_timeout_s: 5,
            connect_timeout_s: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbTls {
    Disable,
    Require,
}

/// `[auth]`: tokens and password hashing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The HMAC key signing access tokens (at least 32 bytes); prefer `jwt_secret_file`.
    /// Every instance behind one load balancer needs the same key. Required (one of the two).
    pub jwt_secret: Option<Secret>,
    /// A file holding the key (trailing newline ignored).
    pub jwt_secret_file: Option<PathBuf>,
    /// Access token lifetime. Default 900 (15 minutes).
    pub access_ttl_s: u64,
    /// Refresh token lifetime. Default 2592000 (30 days).
    pub refresh_ttl_s: u64,
    /// Anyone may create a `public` account with `POST /api/users/`. Default true.
    pub public_signup: bool,
    /// argon2id memory cost in KiB. Default 19456 (OWASP's minimum recommendation).
    pub argon2_memory_kib: u32,
    /// argon2id passes. Default 2.
    pub argon2_iterations: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secret_file: None,
            access_ttl_s: 900,
            refresh_ttl_s: 30 * 24 * 3600,
            public_signup: true,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
        }
    }
}

/// `[rate_limit]`: requests per client address (anonymous requests) and per user
/// (requests with a valid access token). `/health`, `/ready` and `/metrics` are exempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Default true.
    pub enabled: bool,
    /// Sustained requests per second per client address. Default 20.
    pub per_client_per_s: u32,
    /// Requests a client address may send at once. Default 100.
    pub per_client_burst: u32,
    /// Sustained requests per second per user. Default 50.
    pub per_user_per_s: u32,
    /// Default 200.
    pub per_user_burst: u32,
    /// Login attempts per minute per client address, on top of the limits above (password
    /// guessing). Default 30.
    pub login_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_client_per_s: 20,
            per_client_burst: 100,
            per_user_per_s: 50,
            per_user_burst: 200,
            login_per_minute: 30,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (one object a line) or `text`. Default `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `central_api=debug,info`); `RUST_LOG` wins. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Config {
    /// Reads `path` (if any), applies the `CENTRAL_API__` variables of this process's
    /// environment and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let origin_file = path.map_or_else(|| "<none>".to_owned(), |p| p.display().to_string());
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.map(Path::to_owned).unwrap_or_default(),
                    message: e.to_string(),
                })?;
        let overrides = parse_overrides(env)?;
        for o in &overrides {
            insert(&mut table, &o.path, o.typed.clone(), &o.var)?;
        }
        // A value like `1234` is an integer to TOML; where the key wants a string
        // (a password), take the variable's text verbatim and try again.
        let mut as_string: Vec<usize> = Vec::new();
        let mut config = loop {
            match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table.clone())) {
                Ok(c) => break c,
                Err(e) => {
                    let key = e.path().to_string();
                    let retry = overrides.iter().position(|o| {
                        o.path.join(".") == key && !matches!(o.typed, toml::Value::String(_))
                    });
                    match retry {
                        Some(i) if !as_string.contains(&i) => {
                            as_string.push(i);
                            let o = &overrides[i];
                            insert(
                                &mut table,
                                &o.path,
                                toml::Value::String(o.raw.clone()),
                                &o.var,
                            )?;
                        }
                        _ => {
                            let origin = overrides
                                .iter()
                                .find(|o| key.starts_with(&o.path.join(".")))
                                .map_or_else(
                                    || format!("file {origin_file}"),
                                    |o| format!("environment variable {}", o.var),
                                );
                            return Err(ConfigError::Key {
                                key,
                                origin,
                                message: e.into_inner().to_string(),
                            });
                        }
                    }
                }
            }
        };
        config.resolve_files(env);
        config.validate()?;
        Ok(config)
    }

    /// Relative `*_file` paths under `$CREDENTIALS_DIRECTORY`.
    fn resolve_files(&mut self, env: &[(String, String)]) {
        let Some(dir) = env
            .iter()
            .rev()
            .find(|(k, v)| k == CREDENTIALS_DIRECTORY && !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
        else {
            return;
        };
        for file in [
            &mut self.database.password_file,
            &mut self.auth.jwt_secret_file,
        ] {
            if let Some(p) = file.as_mut().filter(|p| p.is_relative()) {
                *p = dir.join(&*p);
            }
        }
    }

    /// Checks that touch no file and no network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Key {
            key: key.to_owned(),
            origin: "validation".to_owned(),
            message: message.to_owned(),
        };
        let s = &self.server;
        if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
            return Err(bad(
                "server.tls_key_file",
                "tls_cert_file and tls_key_file go together: set both or neither",
            ));
        }
        if s.body_limit_bytes == 0 {
            return Err(bad("server.body_limit_bytes", "must be at least 1"));
        }
        if s.request_timeout_s == 0 {
            return Err(bad("server.request_timeout_s", "must be at least 1"));
        }
        let d = &self.database;
        if d.password.is_some() && d.password_file.is_some() {
            return Err(bad(
                "database.password_file",
                "set password or password_file, not both",
            ));
        }
        if d.pool_size == 0 {
            return Err(bad("database.pool_size", "must be at least 1"));
        }
        let a = &self.auth;
        if a.jwt_secret.is_some() && a.jwt_secret_file.is_some() {
            return Err(bad(
                "auth.jwt_secret_file",
                "set jwt_secret or jwt_secret_file, not both",
            ));
        }
        if a.access_ttl_s == 0 || a.refresh_ttl_s == 0 {
            return Err(bad(
                "auth.access_ttl_s",
                "token lifetimes must be at least 1 s",
            ));
        }
        if a.argon2_memory_kib < 8 || a.argon2_iterations == 0 {
            return Err(bad(
                "auth.argon2_memory_kib",
                "argon2 needs at least 8 KiB and 1 iteration",
            ));
        }
        let r = &self.rate_limit;
        if r.enabled
            && [
                r.per_client_per_s,
                r.per_client_burst,
                r.per_user_per_s,
                r.per_user_burst,
            ]
            .contains(&0)
        {
            return Err(bad(
                "rate_limit",
                "rates and bursts must be at least 1 when enabled",
            ));
        }
        Ok(())
    }

    /// The database password: `password`, else the contents of `password_file`, else none.
    pub fn database_password(&self) -> Result<Option<Secret>, ConfigError> {
        read_secret(
            "database.password_file",
            self.database.password.as_ref(),
            self.database.password_file.as_deref(),
        )
    }

    /// The JWT signing key; required by `serve`.
    pub fn jwt_secret(&self) -> Result<Secret, ConfigError> {
        let secret = read_secret(
            "auth.jwt_secret_file",
            self.auth.jwt_secret.as_ref(),
            self.auth.jwt_secret_file.as_deref(),
        )?
        .ok_or_else(|| ConfigError::Key {
            key: "auth.jwt_secret_file".to_owned(),
            origin: "validation".to_owned(),
            message: "required: set auth.jwt_secret_file (or auth.jwt_secret)".to_owned(),
        })?;
        if secret.expose().len() < 32 {
            return Err(ConfigError::Key {
                key: "auth.jwt_secret_file".to_owned(),
                origin: "validation".to_owned(),
                message: "the key must be at least 32 bytes".to_owned(),
            });
        }
        Ok(secret)
    }
}

fn read_secret(
    key: &'static str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    let Some(path) = file else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.to_owned(),
        source,
    })?;
    Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']))))
}

struct Override {
    var: String,
    path: Vec<String>,
    raw: String,
    typed: toml::Value,
}

fn parse_overrides(env: &[(String, String)]) -> Result<Vec<Override>, ConfigError> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Later duplicates win, as in a process environment; then a stable order.
    let mut seen = std::collections::HashSet::new();
    vars.reverse();
    vars.retain(|(name, _)| seen.insert(name.clone()));
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter()
        .map(|(var, raw)| {
            let rest = &var[ENV_PREFIX.len()..];
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.len() != 2 || path.iter().any(String::is_empty) {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!("expected {ENV_PREFIX}<SECTION>__<KEY>"),
                });
            }
            let typed = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .filter(|v| !v.is_table() && !v.is_array())
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            Ok(Override {
                var: var.clone(),
                path,
                raw: raw.clone(),
                typed,
            })
        })
        .collect()
}

fn insert(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
    var: &str,
) -> Result<(), ConfigError> {
    let (section, key) = (&path[0], &path[1]);
    let entry = table
        .entry(section.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(section_table) = entry.as_table_mut() else {
        return Err(ConfigError::Env {
            var: var.to_owned(),
            message: format!("`{section}` is not a section"),
        });
    };
    section_table.insert(key.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(toml_text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml_text).unwrap();
        Config::load_with_env(Some(&path), &env(vars))
    }

    #[test]
    fn defaults() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.port, 5432);
        assert!(c.rate_limit.enabled);
    }

    #[test]
    fn env_overrides_file_and_adds_keys() {
        let c = load(
            "[server]\nlisten = \"0.0.0.0:1\"\n",
            &[
                ("CENTRAL_API__SERVER__LISTEN", "127.0.0.1:9000"),
                ("CENTRAL_API__DATABASE__PORT", "6543"),
                ("CENTRAL_API__DATABASE__PASSWORD", "1234"),
                ("CENTRAL_API__RATE_LIMIT__ENABLED", "false"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.database.port, 6543);
        assert_eq!(c.database.password.as_ref().unwrap().expose(), "1234");
        assert!(!c.rate_limit.enabled);
    }

    #[test]
    fn errors_name_the_key_and_origin() {
        let e = load("[server]\nlisten = 5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("c.toml"), "{e}");
        let e = load("[server]\nlisten_addr = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_addr"), "{e}");
        let e = load("", &[("CENTRAL_API__DATABASE__PORT", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("database.port") && e.contains("CENTRAL_API__DATABASE__PORT"),
            "{e}"
        );
        let e = load("", &[("CENTRAL_API__DATABASE", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CENTRAL_API__DATABASE"), "{e}");
        let e = load("[server]\ntls_cert_file = \"/c\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.tls_key_file"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dbpw"), "s3cret-value\n").unwrap();
        let c = load(
            "",
            &[
                ("CENTRAL_API__DATABASE__PASSWORD_FILE", "dbpw"),
                (CREDENTIALS_DIRECTORY, dir.path().to_str().unwrap()),
            ],
        )
        .unwrap();
        let pw = c.database_password().unwrap().unwrap();
        assert_eq!(pw.expose(), "s3cret-value");
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = c.jwt_secret().unwrap_err().to_string();
        assert!(e.contains("auth.jwt_secret_file"), "{e}");
        let e = load("[database]\npassword = 12\n", &[])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("12"), "{e}");
    }
}
