//! Environment overrides: `INGEST__<SECTION>__<KEY>=value`.
//!
//! The variable name is `INGEST__`, then the key path upper-cased with `__`
//! between its parts: `uplink.database_url` → `INGEST__UPLINK__DATABASE_URL`,
//! `uplink.tls.mode` → `INGEST__UPLINK__TLS__MODE`. Only the scalar keys of the
//! singleton sections in [`OVERRIDABLE_KEYS`] can be overridden; the source
//! arrays (`[[serial]]`, ...) cannot. An override replaces the file's value or
//! adds the key (and its table: `INGEST__UPLINK__DATABASE_URL` alone turns the
//! uplink on; a credential alone, `INGEST__UPLINK__PASSWORD` or
//! `INGEST__UPLINK__PASSWORD_FILE`, does not and is then ignored). A variable that starts with `INGEST__` but names no overridable
//! key is an error, so that a typo does not go unnoticed. Other variables are
//! ignored, except `CREDENTIALS_DIRECTORY` (see `*_file` keys).

use std::borrow::Cow;

use toml::de::DeValue;

/// Prefix of override variables.
pub const ENV_PREFIX: &str = "INGEST__";

/// The variable systemd sets to the directory of `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// How an override's text becomes a TOML value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Taken as a string, verbatim.
    String,
    /// Must be a TOML integer (`5000`, `1_000`).
    Integer,
    /// An integer (bytes) or a human size string (`512MiB`).
    Size,
}

/// Every key that an environment variable can override.
pub const OVERRIDABLE_KEYS: &[(&str, ValueKind)] = &[
    ("node.edge_id", ValueKind::String),
    ("node.site_id", ValueKind::String),
    ("node.description", ValueKind::String),
    ("node.lane_numbering", ValueKind::String),
    ("spool.dir", ValueKind::String),
    ("spool.max_bytes", ValueKind::Size),
    ("spool.segment_bytes", ValueKind::Size),
    ("spool.fsync_interval_ms", ValueKind::Integer),
    ("uplink.database_url", ValueKind::String),
    ("uplink.password", ValueKind::String),
    ("uplink.password_file", ValueKind::String),
    ("uplink.tls.mode", ValueKind::String),
    ("uplink.tls.ca_file", ValueKind::String),
    ("uplink.batch_max_samples", ValueKind::Integer),
    ("uplink.batch_max_age_ms", ValueKind::Integer),
    ("uplink.retry_backoff_min_ms", ValueKind::Integer),
    ("uplink.retry_backoff_max_ms", ValueKind::Integer),
    ("aggregation.interval_s", ValueKind::Integer),
    ("aggregation.allowed_lateness_s", ValueKind::Integer),
    ("aggregation.max_clock_skew_s", ValueKind::Integer),
    ("http.listen", ValueKind::String),
    ("clips.dir", ValueKind::String),
    ("clips.max_bytes", ValueKind::Size),
];

/// Overridable keys that only supply the uplink's credential: without an
/// `[uplink]` table in the file or another `INGEST__UPLINK__*` override they are
/// ignored rather than adding the table.
pub const UPLINK_CREDENTIAL_KEYS: &[&str] = &["uplink.password", "uplink.password_file"];

/// The variable name that overrides a dotted key: `http.listen` → `INGEST__HTTP__LISTEN`.
pub fn variable_for_key(key: &str) -> String {
    let parts: Vec<String> = key.split('.').map(str::to_ascii_uppercase).collect();
    format!("{ENV_PREFIX}{}", parts.join("__"))
}

/// A parsed override, ready to be put into the document.
pub(crate) struct Override<'e> {
    pub var: &'e str,
    pub key: &'static str,
    pub value: DeValue<'e>,
}

/// A variable that could not be used.
pub(crate) struct EnvProblem<'e> {
    pub var: &'e str,
    pub key: String,
    pub reason: String,
}

/// Picks the `INGEST__` variables out of `env`, in name order.
pub(crate) fn parse_overrides(
    env: &[(String, String)],
) -> (Vec<Override<'_>>, Vec<EnvProblem<'_>>) {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    // With duplicates the later one in `env` wins, as in a process environment.
    vars.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
    let mut overrides = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in vars {
        let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
        let key = rest
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        let Some(&(key, kind)) = OVERRIDABLE_KEYS.iter().find(|(k, _)| *k == key) else {
            let names: Vec<String> = OVERRIDABLE_KEYS
                .iter()
                .map(|(k, _)| variable_for_key(k))
                .collect();
            let hint = match crate::suggest::closest(name, names.iter().map(String::as_str)) {
                Some(best) => format!(" (did you mean {best}?)"),
                None => " (the overridable keys are listed in CONFIG.md)".to_owned(),
            };
            problems.push(EnvProblem {
                var: name,
                key,
                reason: format!("not a key that can be overridden{hint}"),
            });
            continue;
        };
        let parsed = match kind {
            ValueKind::String => Ok(DeValue::String(Cow::Borrowed(value.as_str()))),
            ValueKind::Integer => match DeValue::parse(value) {
                Ok(v) if v.get_ref().is_integer() => Ok(v.into_inner()),
                _ => Err(format!("expected an integer, found {value:?}")),
            },
            ValueKind::Size => match DeValue::parse(value) {
                Ok(v) if v.get_ref().is_integer() => Ok(v.into_inner()),
                _ => Ok(DeValue::String(Cow::Borrowed(value.as_str()))),
            },
        };
        match parsed {
            Ok(value) => overrides.push(Override {
                var: name,
                key,
                value,
            }),
            Err(reason) => problems.push(EnvProblem {
                var: name,
                key: key.to_owned(),
                reason,
            }),
        }
    }
    (overrides, problems)
}

/// `CREDENTIALS_DIRECTORY` from `env`, if set and not empty.
pub(crate) fn credentials_directory(env: &[(String, String)]) -> Option<&str> {
    env.iter()
        .rev()
        .find(|(k, v)| k == CREDENTIALS_DIRECTORY && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            variable_for_key("uplink.tls.mode"),
            "INGEST__UPLINK__TLS__MODE"
        );
        for (key, _) in OVERRIDABLE_KEYS {
            let env = vec![(variable_for_key(key), "5".to_owned())];
            let (o, p) = parse_overrides(&env);
            assert!(p.is_empty(), "{key}");
            assert_eq!(o.len(), 1);
        }
    }

    #[test]
    fn the_last_duplicate_wins() {
        let env = vec![
            ("INGEST__HTTP__LISTEN".to_owned(), "first".to_owned()),
            ("INGEST__NODE__EDGE_ID".to_owned(), "a".to_owned()),
            ("INGEST__HTTP__LISTEN".to_owned(), "second".to_owned()),
        ];
        let (o, p) = parse_overrides(&env);
        assert!(p.is_empty());
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].var, "INGEST__HTTP__LISTEN");
        assert_eq!(o[0].value.as_str(), Some("second"));
    }

    #[test]
    fn bad_values_and_unknown_names() {
        let env = vec![
            (
                "INGEST__SPOOL__FSYNC_INTERVAL_MS".to_owned(),
                "soon".to_owned(),
            ),
            ("INGEST__HTTP__LISTN".to_owned(), "x".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let (o, p) = parse_overrides(&env);
        assert!(o.is_empty());
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].reason,
            "not a key that can be overridden (did you mean INGEST__HTTP__LISTEN?)"
        );
        assert_eq!(p[1].reason, "expected an integer, found \"soon\"");
    }
}
