//! The schema central-sync owns: traffic samples and their roll-ups, the batch ledger, the
//! sync cursor and the edge registry (`migrations/*.sql`).
//!
//! Other owners of the same database (central-api) keep their own [`MigrationSet`] and
//! apply it after this one.
//!
//! | version | plain PostgreSQL | TimescaleDB |
//! |---|---|---|
//! | 1 | tables, BRIN on time, roll-up tables | the same, `traffic_sample` a hypertable, no roll-up tables |
//! | 2 | edge roles: grants, RLS, merge functions, roll-up dirty flag | the same |
//! | 3 | nothing (the roll-up tables came with v1) | continuous aggregates, compression, retention |

use crate::migrate::{Migration, MigrationSet};

/// central-sync's migrations, in order. Never edit a shipped entry: append a new one.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "central-sync",
    migrations: &[
        Migration {
            timescale_sql: Some(concat!(
                include_str!("../migrations/0001_traffic.sql"),
                include_str!("../migrations/0001_traffic.timescale.sql")
            )),
            ..Migration::sql(
                1,
                "traffic tables, batch ledger, sync cursor, edge registry",
                include_str!("../migrations/0001_traffic.sql"),
            )
        },
        Migration::sql(
            2,
            "edge roles, merge path, roll-up dirty flag",
            include_str!("../migrations/0002_edge_roles.sql"),
        ),
        Migration {
            version: 3,
            name: "timescaledb roll-ups, compression, retention",
            // Plain PostgreSQL: the roll-up tables of v1 are kept by `rollup::refresh`.
            sql: "SELECT 1",
            timescale_sql: Some(include_str!("../migrations/0003_rollups.timescale.sql")),
            no_transaction: true,
        },
    ],
};
