//! What an edge role can and cannot do, against a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use central_sync::writer::{self, Batch};
use common::{connect_as_edge, connect_url, edge_id, migrated_db, sample};
use test_support::PgServer;
use tokio_postgres::Client;

async fn denied(c: &Client, sql: &str) -> String {
    match c.batch_execute(sql).await {
        Ok(()) => panic!("allowed: {sql}"),
        Err(e) => e
            .as_db_error()
            .map_or(e.to_string(), |d| d.message().to_owned()),
    }
}

#[tokio::test]
async fn an_edge_writes_only_its_own_rows_and_reads_nothing_else() {
    let pg = PgServer::shared();
    let db = migrated_db(pg);
    let (a, b) = (edge_id("a"), edge_id("b"));
    let mut ca = connect_as_edge(pg, &db, &a).await;
    let mut cb = connect_as_edge(pg, &db, &b).await;
    let batch_b = Batch::new(&b, 1, 10, vec![sample(&b, "d1", 1, 0, 5)]).unwrap();
    writer::write_batch(&mut cb, &batch_b).await.unwrap();
    let batch_a = Batch::new(&a, 1, 10, vec![sample(&a, "d1", 1, 0, 5)]).unwrap();
    writer::write_batch(&mut ca, &batch_a).await.unwrap();

    // Rows claiming B: the edge_id column is not A's to set, by INSERT or by COPY.
    let cols = "(edge_id, site_id, detector_id, lane, bucket_start, interval_s, speed_source, \
                samples_expected, samples_received, pct_observed, quality, epoch, batch_seq)";
    let msg = denied(
        &ca,
        &format!(
            "INSERT INTO traffic_sample {cols} VALUES ('{b}', 's', 'd', 1, now(), 30, 'none', \
             1, 1, 100, 0, 1, 99)"
        ),
    )
    .await;
    assert!(msg.contains("permission denied"), "{msg}");
    let msg = denied(&ca, &format!("COPY traffic_sample {cols} FROM STDIN")).await;
    assert!(msg.contains("permission denied"), "{msg}");
    // Without edge_id the row is A's, whatever A would like.
    ca.batch_execute(
        "INSERT INTO traffic_sample (site_id, detector_id, lane, bucket_start, interval_s, \
         speed_source, samples_expected, samples_received, pct_observed, quality, epoch, \
         batch_seq) VALUES ('s', 'd', 1, now(), 30, 'none', 1, 1, 100, 0, 1, 99)",
    )
    .await
    .unwrap();
    assert_eq!(
        pg.psql(
            &db,
            "SELECT edge_id FROM traffic_sample WHERE batch_seq = 99"
        ),
        a
    );

    // No reads of samples, roll-ups, migrations; no updates or deletes of samples.
    for sql in [
        "SELECT count(*) FROM traffic_sample",
        "SELECT * FROM traffic_15m",
        "SELECT * FROM traffic_1h",
        "SELECT * FROM schema_migration",
        "UPDATE traffic_sample SET volume = 0",
        "DELETE FROM traffic_sample",
        "TRUNCATE traffic_sample",
        "COPY traffic_sample TO STDOUT",
        "DELETE FROM ingest_batch",
        "DELETE FROM sync_cursor",
    ] {
        let msg = denied(&ca, sql).await;
        assert!(msg.contains("permission denied"), "{sql}: {msg}");
    }

    // B's cursor, ledger and registry row: invisible, and not A's to move or write.
    let cursor_b = pg.psql(
        &db,
        &format!("SELECT epoch, batch_seq FROM sync_cursor WHERE edge_id = '{b}'"),
    );
    let n = ca
        .execute(
            "UPDATE sync_cursor SET batch_seq = 1000000 WHERE edge_id = $1",
            &[&b],
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
    let msg = denied(
        &ca,
        &format!(
            "INSERT INTO sync_cursor (edge_id, epoch, batch_seq) VALUES ('{b}', 9, 9) \
             ON CONFLICT (edge_id) DO UPDATE SET epoch = 9"
        ),
    )
    .await;
    assert!(msg.contains("row-level security"), "{msg}");
    assert_eq!(
        pg.psql(
            &db,
            &format!("SELECT epoch, batch_seq FROM sync_cursor WHERE edge_id = '{b}'")
        ),
        cursor_b
    );
    assert_eq!(writer::read_cursor(&ca, &b).await.unwrap(), None);
    assert_eq!(writer::read_cursor(&ca, &a).await.unwrap(), Some((1, 10)));
    let seen: i64 = ca
        .query_one("SELECT count(*) FROM ingest_batch", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1, "only A's own ledger row");
    let msg = denied(
        &ca,
        &format!(
            "INSERT INTO ingest_batch (edge_id, epoch, batch_seq, row_count, digest) \
             VALUES ('{b}', 1, 11, 0, '')"
        ),
    )
    .await;
    assert!(msg.contains("row-level security"), "{msg}");
    let msg = denied(
        &ca,
        &format!("INSERT INTO edge_node (edge_id) VALUES ('{b}')"),
    )
    .await;
    assert!(msg.contains("row-level security"), "{msg}");

    // The merge path cannot be fed a staging table of A's own making.
    ca.batch_execute(
        "CREATE TEMP TABLE sync_staging (edge_id text); \
         INSERT INTO sync_staging VALUES ('someone-else')",
    )
    .await
    .unwrap();
    let msg = denied(&ca, "SELECT sync_merge_staged()").await;
    assert!(msg.contains("not made by sync_stage_open"), "{msg}");
    let msg = denied(&ca, "SELECT sync_stage_open()").await;
    assert!(msg.contains("not made by sync_stage_open"), "{msg}");
}

/// Why traffic_sample has no row-level security: PostgreSQL refuses COPY FROM into a
/// table whose policies apply to the session, and COPY is the fast path.
#[tokio::test]
async fn copy_from_is_refused_under_row_level_security() {
    let pg = PgServer::shared();
    let db = migrated_db(pg);
    let a = edge_id("rls");
    let admin = connect_url(&pg.connection_string(&db)).await;
    admin
        .batch_execute(
            "CREATE TABLE rls_probe (edge_id text DEFAULT sync_current_edge(), v int); \
             ALTER TABLE rls_probe ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY p ON rls_probe FOR INSERT TO sync_edge \
               WITH CHECK (edge_id = sync_current_edge()); \
             GRANT INSERT ON rls_probe TO sync_edge;",
        )
        .await
        .unwrap();
    let ca = connect_as_edge(pg, &db, &a).await;
    ca.batch_execute("INSERT INTO rls_probe (v) VALUES (1)")
        .await
        .unwrap();
    let msg = denied(&ca, "COPY rls_probe (v) FROM STDIN").await;
    assert!(
        msg.contains("COPY FROM not supported with row-level security"),
        "{msg}"
    );
}
