//! The batch writer against a real PostgreSQL: replays, conflicts, digests, cursor.
#![allow(clippy::unwrap_used)]

mod common;

use central_sync::TrafficSample;
use central_sync::writer::{self, Batch, Outcome, WriteError};
use common::{connect_as_edge, dump, edge_id, migrated_db, sample};
use test_support::PgServer;

const EPOCH: i64 = 1_700_000_000_000_000;

/// 12 batches of 40 samples, distinct keys; batch_seq = the last "spool seq" of the batch.
fn batches(edge: &str) -> Vec<Batch> {
    (0..12)
        .map(|b| {
            let samples: Vec<TrafficSample> = (0..40)
                .map(|i| {
                    let n = b * 40 + i;
                    sample(edge, "d1", 1 + (n % 2) as u16, i64::from(n / 2), n)
                })
                .collect();
            Batch::new(edge, EPOCH, i64::from((b + 1) * 40), samples).unwrap()
        })
        .collect()
}

/// Batch 2's keys with other values, sent under a new id (as after a lost spool cursor).
fn rewrite(edge: &str, of: &Batch, seq: i64, bump: u32) -> Batch {
    let samples = of
        .samples()
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.volume = Some(s.volume.unwrap_or(0) + bump);
            s
        })
        .collect();
    Batch::new(edge, EPOCH, seq, samples).unwrap()
}

#[tokio::test]
async fn replays_in_any_order_leave_the_table_identical() {
    let pg = PgServer::shared();
    let edge = edge_id("replay");
    let (db1, db2) = (migrated_db(pg), migrated_db(pg));
    let mut c1 = connect_as_edge(pg, &db1, &edge).await;
    let mut c2 = connect_as_edge(pg, &db2, &edge).await;
    let all = batches(&edge);
    let late = rewrite(&edge, &all[2], 10_000, 1);
    let older = rewrite(&edge, &all[2], 5_000, 2);

    // Reference: every batch once, in order, then the two rewrites in order.
    for b in &all {
        assert!(matches!(
            writer::write_batch(&mut c1, b).await.unwrap(),
            Outcome::Fresh { rows: 40 }
        ));
    }
    assert_eq!(
        writer::write_batch(&mut c1, &older).await.unwrap(),
        Outcome::Merged { rows: 40 }
    );
    assert_eq!(
        writer::write_batch(&mut c1, &late).await.unwrap(),
        Outcome::Merged { rows: 40 }
    );

    // The other database: rewrites first (the later one first), everything twice,
    // backwards, and a batch re-sent on a new connection as after a lost commit reply.
    assert!(matches!(
        writer::write_batch(&mut c2, &late).await.unwrap(),
        Outcome::Fresh { .. }
    ));
    assert_eq!(
        writer::write_batch(&mut c2, &older).await.unwrap(),
        Outcome::Merged { rows: 0 },
        "an older batch never replaces a later one"
    );
    for b in all.iter().rev() {
        writer::write_batch(&mut c2, b).await.unwrap();
        assert_eq!(
            writer::write_batch(&mut c2, b).await.unwrap(),
            Outcome::Replay
        );
    }
    drop(c2);
    let mut c2 = connect_as_edge(pg, &db2, &edge).await;
    for b in [&all[5], &late, &older, &all[0]] {
        assert_eq!(
            writer::write_batch(&mut c2, b).await.unwrap(),
            Outcome::Replay
        );
    }

    let (d1, d2) = (dump(pg, &db1, &edge), dump(pg, &db2, &edge));
    assert_eq!(d1.len(), 12 * 40, "one row per key, no duplicates");
    assert_eq!(d1, d2);
    // Ground truth: the latest batch's values for batch 2's keys, the originals elsewhere.
    let volume = |b: &Batch| -> i64 {
        b.samples()
            .iter()
            .map(|s| i64::from(s.volume.unwrap_or(0)))
            .sum()
    };
    let expected_volume: i64 = all
        .iter()
        .enumerate()
        .map(|(i, b)| if i == 2 { volume(&late) } else { volume(b) })
        .sum();
    let stored: i64 = pg
        .psql(&db1, "SELECT sum(coalesce(volume, 0)) FROM traffic_sample")
        .parse()
        .unwrap();
    assert_eq!(stored, expected_volume);
    let provenance = pg.psql(
        &db2,
        "SELECT count(*) FROM traffic_sample WHERE batch_seq = 10000",
    );
    assert_eq!(provenance, "40");
    assert_eq!(
        writer::read_cursor(&c1, &edge).await.unwrap(),
        Some((EPOCH, 10_000))
    );
    assert_eq!(
        writer::read_cursor(&c2, &edge).await.unwrap(),
        Some((EPOCH, 10_000)),
        "the cursor never moves back"
    );
}

#[tokio::test]
async fn the_same_batch_id_with_other_content_is_refused() {
    let pg = PgServer::shared();
    let edge = edge_id("digest");
    let db = migrated_db(pg);
    let mut c = connect_as_edge(pg, &db, &edge).await;
    let b = &batches(&edge)[0];
    writer::write_batch(&mut c, b).await.unwrap();
    let before = dump(pg, &db, &edge);
    let forged = rewrite(&edge, b, b.batch_seq(), 3);
    let err = writer::write_batch(&mut c, &forged).await.unwrap_err();
    assert!(matches!(err, WriteError::DigestMismatch { .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(dump(pg, &db, &edge), before);
    // The session is still usable.
    assert_eq!(
        writer::write_batch(&mut c, b).await.unwrap(),
        Outcome::Replay
    );
}

#[tokio::test]
async fn a_session_of_another_role_is_named_in_the_error() {
    let pg = PgServer::shared();
    let (a, b) = (edge_id("role-a"), edge_id("role-b"));
    let db = migrated_db(pg);
    let c = connect_as_edge(pg, &db, &a).await;
    writer::check_role(&c, &a).await.unwrap();
    let err = writer::check_role(&c, &b).await.unwrap_err();
    assert!(err.to_string().contains(&format!("edge_{a}")), "{err}");
}

#[tokio::test]
async fn heartbeats_update_the_edge_registry() {
    let pg = PgServer::shared();
    let edge = edge_id("beat");
    let db = migrated_db(pg);
    let c = connect_as_edge(pg, &db, &edge).await;
    for spool in [100, 200] {
        writer::heartbeat(
            &c,
            &writer::EdgeReport {
                edge_id: edge.clone(),
                site_id: Some("site-1".into()),
                software_version: "9.9.9".into(),
                spool_bytes: Some(spool),
                uplink_lag_s: Some(1.5),
                source_health: serde_json::json!({"loop-1": {"state": "running"}}),
            },
        )
        .await
        .unwrap();
    }
    let row = pg.psql(
        &db,
        &format!(
            "SELECT software_version, spool_bytes, uplink_lag_s, source_health->'loop-1'->>'state' \
             FROM edge_node WHERE edge_id = '{edge}'"
        ),
    );
    assert_eq!(row, "9.9.9|200|1.5|running");
}
