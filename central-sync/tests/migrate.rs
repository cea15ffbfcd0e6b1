//! Migrations against a real, throwaway PostgreSQL.

use central_sync::migrate::{self, Flavour, MigrateError, Migration, MigrationSet};
use central_sync::schema::MIGRATIONS;
use test_support::PgServer;

async fn connect(pg: &PgServer, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.connection_string(db), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

fn schema_dump(pg: &PgServer, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' \
         ORDER BY table_name, ordinal_position) FROM information_schema.columns \
         WHERE table_schema = 'public'",
    )
}

#[tokio::test]
async fn applying_twice_is_a_no_op() {
    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let mut client = connect(pg, &db).await;

    let first = migrate::apply(&mut client, &MIGRATIONS)
        .await
        .expect("first run");
    assert_eq!(
        first.flavour,
        Flavour::Plain,
        "no timescaledb on this machine"
    );
    assert_eq!(first.versions.len(), MIGRATIONS.migrations.len());
    let before = schema_dump(pg, &db);
    assert!(
        before.contains("traffic_sample.bucket_start:timestamp with time zone"),
        "{before}"
    );

    let second = migrate::apply(&mut client, &MIGRATIONS)
        .await
        .expect("second run");
    assert!(
        second.versions.is_empty(),
        "nothing left to apply: {second:?}"
    );
    assert_eq!(schema_dump(pg, &db), before);
    let rows = pg.psql(
        &db,
        "SELECT count(*) FROM schema_migration WHERE set_name = 'central-sync'",
    );
    assert_eq!(rows, MIGRATIONS.migrations.len().to_string());
}

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let mut a = connect(pg, &db).await;
    let mut b = connect(pg, &db).await;
    let (ra, rb) = tokio::join!(
        migrate::apply(&mut a, &MIGRATIONS),
        migrate::apply(&mut b, &MIGRATIONS)
    );
    let (ra, rb) = (ra.expect("runner a"), rb.expect("runner b"));
    assert_eq!(
        ra.versions.len() + rb.versions.len(),
        MIGRATIONS.migrations.len()
    );
}

static EDITED_V1: &[Migration] = &[Migration::sql(1, "t", "CREATE TABLE t (id int)")];
static EDITED_V1_CHANGED: &[Migration] = &[Migration::sql(1, "t", "CREATE TABLE t (id bigint)")];
static BAD_ORDER: &[Migration] = &[Migration::sql(2, "t", "SELECT 1")];

#[tokio::test]
async fn an_edited_shipped_migration_is_refused() {
    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let mut client = connect(pg, &db).await;
    let set = MigrationSet {
        name: "probe",
        migrations: EDITED_V1,
    };
    migrate::apply(&mut client, &set).await.expect("apply v1");
    let edited = MigrationSet {
        name: "probe",
        migrations: EDITED_V1_CHANGED,
    };
    let err = migrate::apply(&mut client, &edited)
        .await
        .expect_err("edited");
    assert!(
        matches!(err, MigrateError::Edited { version: 1, .. }),
        "{err}"
    );

    let gap = MigrationSet {
        name: "gap",
        migrations: BAD_ORDER,
    };
    let err = migrate::apply(&mut client, &gap).await.expect_err("gap");
    assert!(
        matches!(err, MigrateError::BadOrder { found: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    static FAILING: &[Migration] = &[Migration::sql(
        1,
        "half",
        "CREATE TABLE half_done (id int); SELECT no_such_function();",
    )];
    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let mut client = connect(pg, &db).await;
    let set = MigrationSet {
        name: "failing",
        migrations: FAILING,
    };
    let err = migrate::apply(&mut client, &set).await.expect_err("fails");
    assert!(err.to_string().contains("failing v1 (half)"), "{err}");
    assert_eq!(pg.psql(&db, "SELECT to_regclass('half_done') IS NULL"), "t");
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM schema_migration WHERE set_name = 'failing'"
        ),
        "0"
    );
}

/// The group role `sync_edge` is per cluster, the migration lock per database: two
/// databases of a new cluster migrating at once must both succeed.
#[tokio::test]
async fn two_databases_of_a_new_cluster_migrate_at_once() {
    let pg = PgServer::new();
    let (d1, d2) = (pg.fresh_database(None), pg.fresh_database(None));
    let mut a = connect(&pg, &d1).await;
    let mut b = connect(&pg, &d2).await;
    let (ra, rb) = tokio::join!(central_sync::migrate(&mut a), central_sync::migrate(&mut b));
    ra.expect("database 1");
    rb.expect("database 2");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'sync_edge'"
        ),
        "1"
    );
}
