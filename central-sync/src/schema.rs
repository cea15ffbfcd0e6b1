//! The schema central-sync owns: traffic samples and their roll-ups, the batch ledger, the
//! sync cursor and the edge registry (`migrations/*.sql`).
//!
//! Other owners of the same database (central-api) keep their own [`MigrationSet`] and
//! apply it after this one.

use crate::migrate::{Migration, MigrationSet};

/// central-sync's migrations, in order. Never edit a shipped entry: append a new one.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "central-sync",
    migrations: &[Migration::sql(
        1,
        "traffic tables, batch ledger, sync cursor, edge registry",
        include_str!("../migrations/0001_traffic.sql"),
    )],
};
