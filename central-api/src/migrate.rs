//! central-api's own tables ([`MIGRATIONS`]), applied after central-sync's traffic schema.

use central_sync::migrate::{self, Applied, MigrateError, Migration, MigrationSet};
use tokio_postgres::Client;

/// central-api's migrations, in order. Never edit a shipped entry: append a new one.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "central-api",
    migrations: &[
        Migration::sql(
            1,
            "users, refresh tokens, patrols, incidents and their history, appeals, audit log",
            include_str!("../migrations/0001_core.sql"),
        ),
        Migration::sql(
            2,
            "registry, news, chat, notifications and site watches, shifts and road works",
            include_str!("../migrations/0002_ops.sql"),
        ),
        Migration::sql(
            3,
            "access-token generation per user, bumped and announced by triggers",
            include_str!("../migrations/0003_token_generation.sql"),
        ),
        Migration::sql(
            4,
            "refresh tokens retired by rotation told apart from revoked ones",
            include_str!("../migrations/0004_refresh_rotation.sql"),
        ),
    ],
};

/// Every set the service needs, in the order they must be applied.
pub const ALL: [&MigrationSet; 2] = [&central_sync::schema::MIGRATIONS, &MIGRATIONS];

/// Applies central-sync's schema, then central-api's. Returns what each set applied.
pub async fn apply_all(client: &mut Client) -> Result<Vec<(&'static str, Applied)>, MigrateError> {
    let mut done = Vec::new();
    for set in ALL {
        done.push((set.name, migrate::apply(client, set).await?));
    }
    Ok(done)
}

/// The sets whose latest version is not applied yet (empty: the schema is current).
pub async fn pending(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migration') IS NOT NULL", &[])
        .await?
        .get(0);
    let mut missing = Vec::new();
    for set in ALL {
        let latest = set.migrations.last().map_or(0, |m| m.version);
        let applied: i32 = if exists {
            client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migration WHERE set_name = $1",
                    &[&set.name],
                )
                .await?
                .get(0)
        } else {
            0
        };
        if applied < latest {
            missing.push(format!("{} (at v{applied}, needs v{latest})", set.name));
        }
    }
    Ok(missing)
}
