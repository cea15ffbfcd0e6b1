//! Keeping `traffic_15m` and `traffic_1h` on plain PostgreSQL.
//!
//! Both roll-ups are recomputed from scratch for every bucket from an hour boundary on, so
//! a refresh is exact and idempotent however late samples arrive. Which hours need it is
//! known from the batch ledger: [`refresh_pending`] starts at the earliest bin of the
//! batches not yet rolled up (`ingest_batch.rolled_up`) and marks them done in the same
//! transaction. Run it periodically: `central-sync rollup` from a systemd timer or cron
//! (every few minutes), or from the central service. Runs are serialised by an advisory
//! lock. On TimescaleDB the roll-ups are continuous aggregates kept by their policies;
//! these functions then ask TimescaleDB to refresh the range instead.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, IsolationLevel};

const LOCK_KEY: i64 = 0x726f_6c6c_7570_0000; // "rollup\0\0"

/// Refreshes 15 min buckets from `since` (rounded down to the hour), then hours.
const REFRESH_15M: &str = "
INSERT INTO traffic_15m (edge_id, site_id, detector_id, lane, bucket, samples, observed_s,
    volume_sum, volume_n, occupancy_sum, occupancy_n, speed_sum, speed_n, class_motorcycle,
    class_short, class_medium, class_long, samples_expected, samples_received,
    los_a, los_b, los_c, los_d, los_e, los_f, quality_any)
SELECT edge_id, site_id, detector_id, lane,
       date_bin('15 minutes', bucket_start, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       count(*),
       coalesce(sum(interval_s) FILTER (WHERE volume IS NOT NULL), 0),
       sum(volume), count(volume),
       sum(occupancy::double precision), count(occupancy),
       sum(speed_avg_kmh::double precision * speed_count) FILTER (WHERE speed_avg_kmh IS NOT NULL),
       coalesce(sum(speed_count) FILTER (WHERE speed_avg_kmh IS NOT NULL), 0),
       sum(class_motorcycle), sum(class_short), sum(class_medium), sum(class_long),
       sum(samples_expected), sum(samples_received),
       count(*) FILTER (WHERE los = 'A'), count(*) FILTER (WHERE los = 'B'),
       count(*) FILTER (WHERE los = 'C'), count(*) FILTER (WHERE los = 'D'),
       count(*) FILTER (WHERE los = 'E'), count(*) FILTER (WHERE los = 'F'),
       bit_or(quality)
FROM traffic_sample WHERE bucket_start >= $1
GROUP BY 1, 2, 3, 4, 5";

const REFRESH_1H: &str = "
INSERT INTO traffic_1h (edge_id, site_id, detector_id, lane, bucket, samples, observed_s,
    volume_sum, volume_n, occupancy_sum, occupancy_n, speed_sum, speed_n, class_motorcycle,
    class_short, class_medium, class_long, samples_expected, samples_received,
    los_a, los_b, los_c, los_d, los_e, los_f, quality_any)
SELECT edge_id, site_id, detector_id, lane, date_trunc('hour', bucket),
       sum(samples), sum(observed_s), sum(volume_sum), sum(volume_n), sum(occupancy_sum),
       sum(occupancy_n), sum(speed_sum), sum(speed_n), sum(class_motorcycle),
       sum(class_short), sum(class_medium), sum(class_long), sum(samples_expected),
       sum(samples_received), sum(los_a), sum(los_b), sum(los_c), sum(los_d), sum(los_e),
       sum(los_f), bit_or(quality_any)
FROM traffic_15m WHERE bucket >= $1
GROUP BY 1, 2, 3, 4, 5";

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refreshed {
    /// The hour the refresh started at; `None` when nothing was pending.
    pub from: Option<DateTime<Utc>>,
    pub rows_15m: u64,
    pub rows_1h: u64,
    /// Ledger batches marked rolled up.
    pub batches: u64,
}

async fn is_timescale(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let flavour: Option<String> = client
        .query_opt(
            "SELECT flavour FROM schema_migration WHERE set_name = 'central-sync' LIMIT 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    Ok(flavour.as_deref() == Some(crate::migrate::Flavour::Timescale.as_str()))
}

/// Recomputes every roll-up bucket from `since` (rounded down to the hour) on.
pub async fn refresh(
    client: &mut Client,
    since: DateTime<Utc>,
) -> Result<Refreshed, tokio_postgres::Error> {
    refresh_inner(client, Some(since)).await
}

/// Recomputes from the earliest bin of the batches committed since the last run, and marks
/// those batches rolled up. Nothing to do: returns `from: None`.
pub async fn refresh_pending(client: &mut Client) -> Result<Refreshed, tokio_postgres::Error> {
    refresh_inner(client, None).await
}

async fn refresh_inner(
    client: &mut Client,
    since: Option<DateTime<Utc>>,
) -> Result<Refreshed, tokio_postgres::Error> {
    let timescale = is_timescale(client).await?;
    // One snapshot for reading the ledger, the samples and marking the batches: a batch
    // committed meanwhile is not in it, so it stays pending for the next run.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let pending: Option<DateTime<Utc>> = tx
        .query_one(
            "SELECT min(first_bucket) FROM ingest_batch WHERE NOT rolled_up",
            &[],
        )
        .await?
        .get(0);
    let from = match (since, pending) {
        (Some(s), Some(p)) => Some(s.min(p)),
        (s, p) => s.or(p),
    };
    let Some(from) = from else {
        // Batches without samples only.
        let batches = tx
            .execute(
                "UPDATE ingest_batch SET rolled_up = true WHERE NOT rolled_up",
                &[],
            )
            .await?;
        tx.commit().await?;
        return Ok(Refreshed {
            batches,
            ..Refreshed::default()
        });
    };
    let hour: DateTime<Utc> = tx
        .query_one("SELECT date_trunc('hour', $1::timestamptz)", &[&from])
        .await?
        .get(0);
    let mut done = Refreshed {
        from: Some(hour),
        ..Refreshed::default()
    };
    if !timescale {
        tx.execute("DELETE FROM traffic_15m WHERE bucket >= $1", &[&hour])
            .await?;
        done.rows_15m = tx.execute(REFRESH_15M, &[&hour]).await?;
        tx.execute("DELETE FROM traffic_1h WHERE bucket >= $1", &[&hour])
            .await?;
        done.rows_1h = tx.execute(REFRESH_1H, &[&hour]).await?;
    }
    done.batches = tx
        .execute(
            "UPDATE ingest_batch SET rolled_up = true WHERE NOT rolled_up",
            &[],
        )
        .await?;
    tx.commit().await?;
    if timescale {
        // A procedure that refuses to run inside a transaction block.
        for view in ["traffic_15m", "traffic_1h"] {
            client
                .execute(
                    &format!("CALL refresh_continuous_aggregate('{view}', $1, NULL)"),
                    &[&hour],
                )
                .await?;
        }
    }
    Ok(done)
}
