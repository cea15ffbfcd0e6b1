//! Edge roles: one login role per edge box, `edge_<edge_id>`, a member of the group role
//! `sync_edge` made by migration v2. The group holds the grants; the role's name tells the
//! database which edge's rows the session may write (see `migrations/0002_edge_roles.sql`).

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio_postgres::GenericClient;

/// Prefix of every edge role; `sync_current_edge()` in SQL strips it.
pub const ROLE_PREFIX: &str = "edge_";
/// PostgreSQL truncates identifiers at 63 bytes; two long edge ids must never share a role.
pub const MAX_EDGE_ID_LEN: usize = 63 - ROLE_PREFIX.len();

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(
        "invalid edge id {0:?}: use 1–{MAX_EDGE_ID_LEN} characters a-z, 0-9 and '-', \
         starting and ending with a letter or digit"
    )]
    BadEdgeId(String),
    #[error("group role sync_edge is missing: run `central-sync migrate` first")]
    NotMigrated,
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// The role name of an edge, after checking the edge id.
pub fn role_name(edge_id: &str) -> Result<String, RoleError> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !edge_id.is_empty()
        && edge_id.len() <= MAX_EDGE_ID_LEN
        && edge_id.starts_with(ok)
        && edge_id.ends_with(ok)
        && edge_id.chars().all(|c| ok(c) || c == '-');
    if valid {
        Ok(format!("{ROLE_PREFIX}{edge_id}"))
    } else {
        Err(RoleError::BadEdgeId(edge_id.to_owned()))
    }
}

/// A new random password: 32 characters from a CSPRNG (about 190 bits).
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Creates the edge's role, or resets its password when it exists, and lets it connect to
/// the current database. Only a SCRAM-SHA-256 verifier is sent, so the password itself
/// appears in no statement and no server log. Returns the role name.
pub async fn create_edge_role(
    client: &impl GenericClient,
    edge_id: &str,
    password: &str,
) -> Result<String, RoleError> {
    let role = role_name(edge_id)?;
    let group: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sync_edge')",
            &[],
        )
        .await?
        .get(0);
    if !group {
        return Err(RoleError::NotMigrated);
    }
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await?
        .get(0);
    let ident = quote_ident(&role);
    // The role name is checked above (a-z, 0-9, '-', '_'); the verifier is base64 and '$'.
    let attrs = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
                 CONNECTION LIMIT 8";
    let ddl = if exists {
        format!("ALTER ROLE {ident} {attrs} PASSWORD '{verifier}'")
    } else {
        format!("CREATE ROLE {ident} {attrs} PASSWORD '{verifier}'")
    };
    client.batch_execute(&ddl).await?;
    client
        .batch_execute(&format!(
            "GRANT sync_edge TO {ident}; \
             DO $$ BEGIN EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO sync_edge', \
             current_database()); END $$;"
        ))
        .await?;
    Ok(role)
}

/// Removes an edge's role (its rows stay). Sessions still open keep running until they end.
pub async fn drop_edge_role(client: &impl GenericClient, edge_id: &str) -> Result<(), RoleError> {
    let role = role_name(edge_id)?;
    client
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
        .await?;
    Ok(())
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_ids_map_to_role_names_that_postgres_keeps_whole() {
        assert_eq!(role_name("box-17").unwrap(), "edge_box-17");
        let longest = "a".repeat(MAX_EDGE_ID_LEN);
        assert_eq!(role_name(&longest).unwrap().len(), 63);
        for bad in [
            "",
            "Box",
            "-a",
            "a-",
            "a b",
            "a\"b",
            &"a".repeat(MAX_EDGE_ID_LEN + 1),
        ] {
            assert!(role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_long_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
