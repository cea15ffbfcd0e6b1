//! The few environment variables this crate reads, in one place.

use std::time::Duration;

/// `TEST_SUPPORT_LOG=1` (or `true`/`yes`): keep temp dirs and print service logs.
pub(crate) fn keep_logs() -> bool {
    std::env::var("TEST_SUPPORT_LOG")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// How long a service may take to accept connections. Generous by default: CI runs many
/// test binaries at once on two cores.
pub(crate) fn start_timeout() -> Duration {
    let secs = std::env::var("TEST_SUPPORT_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// `TEST_SUPPORT_PG_BINDIR`: explicit PostgreSQL server binary directory.
pub(crate) fn pg_bindir() -> Option<std::path::PathBuf> {
    std::env::var_os("TEST_SUPPORT_PG_BINDIR")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}
