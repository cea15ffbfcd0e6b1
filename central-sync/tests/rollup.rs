//! The roll-up job agrees with a direct aggregate of the samples, and refreshing is
//! idempotent, late data included.
#![allow(clippy::unwrap_used)]

mod common;

use central_sync::rollup;
use central_sync::writer::{self, Batch};
use common::{connect_as_edge, connect_url, edge_id, migrated_db, sample};
use test_support::PgServer;

/// The roll-up recomputed straight from traffic_sample, with other SQL than the job's:
/// sums per bucket found by epoch arithmetic.
fn direct(pg: &PgServer, db: &str, seconds: i64) -> String {
    pg.psql(
        db,
        &format!(
            "SELECT edge_id, detector_id, lane, to_timestamp(floor(extract(epoch FROM bucket_start) / {seconds}) * {seconds}) AS b, \
               count(*), sum(CASE WHEN volume IS NULL THEN 0 ELSE interval_s END), \
               sum(volume), count(volume), round(sum(occupancy)::numeric, 3), count(occupancy), \
               round(sum(CASE WHEN speed_avg_kmh IS NULL THEN 0 ELSE speed_avg_kmh * speed_count END)::numeric, 2), \
               sum(CASE WHEN speed_avg_kmh IS NULL THEN 0 ELSE speed_count END), sum(class_short), \
               sum(samples_expected), sum(samples_received), \
               sum((los = 'A')::int), sum((los = 'C')::int), bit_or(quality) \
             FROM traffic_sample GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        ),
    )
}

fn rolled(pg: &PgServer, db: &str, table: &str) -> String {
    pg.psql(
        db,
        &format!(
            "SELECT edge_id, detector_id, lane, bucket, samples, observed_s, volume_sum, volume_n, \
               round(occupancy_sum::numeric, 3), occupancy_n, \
               round(coalesce(speed_sum, 0)::numeric, 2), speed_n, class_short, \
               samples_expected, samples_received, los_a, los_c, quality_any \
             FROM {table} ORDER BY 1, 2, 3, 4"
        ),
    )
}

#[tokio::test]
async fn roll_ups_agree_with_a_direct_aggregate() {
    let pg = PgServer::shared();
    let db = migrated_db(pg);
    let edge = edge_id("rollup");
    let mut c = connect_as_edge(pg, &db, &edge).await;
    let mut admin = connect_url(&pg.connection_string(&db)).await;

    // Three hours of 30 s bins on two lanes, in batches; then a late batch from the first hour.
    let mut seq = 0;
    for chunk in (0..360i64).collect::<Vec<_>>().chunks(60) {
        let samples = chunk
            .iter()
            .flat_map(|&bin| (1..=2).map(move |lane| (bin, lane)))
            .map(|(bin, lane)| sample(&edge, "d1", lane, bin, (bin * 3 + i64::from(lane)) as u32))
            .collect();
        seq += 120;
        writer::write_batch(&mut c, &Batch::new(&edge, 1, seq, samples).unwrap())
            .await
            .unwrap();
    }
    let first = rollup::refresh_pending(&mut admin).await.unwrap();
    assert_eq!(first.batches, 6);
    assert_eq!(rolled(pg, &db, "traffic_15m"), direct(pg, &db, 900));
    assert_eq!(rolled(pg, &db, "traffic_1h"), direct(pg, &db, 3600));
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM traffic_1h"),
        "6",
        "3 hours x 2 lanes"
    );

    let late: Vec<_> = (0..20)
        .map(|bin| sample(&edge, "d2", 1, bin, bin as u32))
        .collect();
    writer::write_batch(&mut c, &Batch::new(&edge, 1, seq + 20, late).unwrap())
        .await
        .unwrap();
    assert_ne!(rolled(pg, &db, "traffic_1h"), direct(pg, &db, 3600));
    let second = rollup::refresh_pending(&mut admin).await.unwrap();
    assert_eq!(second.batches, 1);
    assert_eq!(rolled(pg, &db, "traffic_15m"), direct(pg, &db, 900));
    assert_eq!(rolled(pg, &db, "traffic_1h"), direct(pg, &db, 3600));

    // Again, with nothing pending, and from an explicit time: nothing changes.
    let before = rolled(pg, &db, "traffic_15m");
    let idle = rollup::refresh_pending(&mut admin).await.unwrap();
    assert_eq!(idle.from, None);
    rollup::refresh(&mut admin, common::t(0)).await.unwrap();
    assert_eq!(rolled(pg, &db, "traffic_15m"), before);
}
