//! The uplink writer: one batch of samples from one edge box, written exactly once however
//! often it is sent.
//!
//! A batch is named `(edge_id, epoch, batch_seq)`: `epoch` is the identity of the edge's
//! spool (a new spool, a new epoch), `batch_seq` the spool sequence number of the batch's
//! last sample, so batches of one epoch are ordered and the cursor says "everything up to
//! here is stored". One transaction per batch:
//!
//! 1. claim the batch in the ledger (`ingest_batch`). Already there with the same digest:
//!    a replay, nothing else happens. Already there with another digest: an error, never
//!    an overwrite.
//! 2. fast path: binary COPY straight into `traffic_sample` (inside a savepoint);
//! 3. only if that hits a unique violation (rows stored earlier under another batch id,
//!    e.g. after the spool cursor was lost): roll back to the savepoint, COPY into a
//!    staging table and merge, where a row replaces a stored one only when it comes from
//!    a later `(epoch, batch_seq)`: any order of replays ends with the same table.
//! 4. move the edge's cursor forward (never back), commit.
//!
//! The session must be the edge's own role (`edge_<edge_id>`, see [`crate::roles`]): the
//! edge id of the rows comes from the role, not from the client.

use std::collections::HashMap;
use std::pin::pin;

use chrono::{DateTime, Utc};
use ring::digest::{Context, SHA256};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient};

use crate::sample::TrafficSample;

/// The columns a batch writes, in COPY order (`edge_id` comes from the role).
pub const COPY_COLUMNS: &str = "site_id, detector_id, lane, bucket_start, interval_s, volume, \
     flow_vph, occupancy, speed_avg_kmh, speed_p85_kmh, speed_count, speed_source, \
     density_vpkm, headway_avg_s, gap_avg_s, length_avg_m, class_motorcycle, class_short, \
     class_medium, class_long, los, samples_expected, samples_received, pct_observed, \
     quality, epoch, batch_seq";

const COPY_TYPES: [Type; 27] = [
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::TIMESTAMPTZ,
    Type::INT4,
    Type::INT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::INT4,
    Type::TEXT,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::CHAR,
    Type::INT4,
    Type::INT4,
    Type::FLOAT4,
    Type::INT4,
    Type::INT8,
    Type::INT8,
];

/// Why a sample cannot be stored (the table's constraints would refuse the whole batch).
pub fn check_sample(s: &TrafficSample) -> Result<(), &'static str> {
    let int = |v: u32| i32::try_from(v).is_ok();
    if s.lane == 0 || i16::try_from(s.lane).is_err() {
        return Err("lane must be 1 ..= 32767");
    }
    if s.interval_s == 0 || !int(s.interval_s) {
        return Err("interval_s must be positive");
    }
    if s.occupancy.is_some_and(|o| !(0.0..=1.0).contains(&o)) {
        return Err("occupancy must be within 0 ..= 1");
    }
    let counts = [
        s.volume.unwrap_or(0),
        s.speed_count,
        s.samples_expected,
        s.samples_received,
    ];
    if !counts.into_iter().all(int) || !s.class_counts.unwrap_or_default().into_iter().all(int) {
        return Err("a count exceeds 2^31 - 1");
    }
    if i32::try_from(s.quality.bits()).is_err() {
        return Err("quality bits exceed 31");
    }
    Ok(())
}

/// One batch, checked and ready to send.
#[derive(Debug, Clone)]
pub struct Batch {
    edge_id: String,
    epoch: i64,
    batch_seq: i64,
    samples: Vec<TrafficSample>,
    digest: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("sample {index} belongs to edge {found:?}, not {expected:?}")]
    ForeignSample {
        index: usize,
        found: String,
        expected: String,
    },
    #[error("sample {index} cannot be stored: {why}")]
    BadSample { index: usize, why: &'static str },
}

impl Batch {
    /// A batch of `samples` (spool order). A later sample with the key of an earlier one
    /// (same detector, lane, interval and bin: a bin re-emitted after a restart) replaces
    /// it, as a later batch would.
    pub fn new(
        edge_id: &str,
        epoch: i64,
        batch_seq: i64,
        samples: Vec<TrafficSample>,
    ) -> Result<Self, BatchError> {
        for (index, s) in samples.iter().enumerate() {
            if s.edge_id != edge_id {
                return Err(BatchError::ForeignSample {
                    index,
                    found: s.edge_id.clone(),
                    expected: edge_id.to_owned(),
                });
            }
            check_sample(s).map_err(|why| BatchError::BadSample { index, why })?;
        }
        let samples = dedup_keep_last(samples);
        let digest = digest(&samples);
        Ok(Self {
            edge_id: edge_id.to_owned(),
            epoch,
            batch_seq,
            samples,
            digest,
        })
    }

    pub fn edge_id(&self) -> &str {
        &self.edge_id
    }
    pub fn epoch(&self) -> i64 {
        self.epoch
    }
    pub fn batch_seq(&self) -> i64 {
        self.batch_seq
    }
    pub fn samples(&self) -> &[TrafficSample] {
        &self.samples
    }
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn bucket_range(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let times = self.samples.iter().map(|s| s.bucket_start);
        (times.clone().min(), times.max())
    }
}

type Key<'a> = (&'a str, &'a str, u16, u32, DateTime<Utc>);

fn key(s: &TrafficSample) -> Key<'_> {
    (
        &s.site_id,
        &s.detector_id,
        s.lane,
        s.interval_s,
        s.bucket_start,
    )
}

fn dedup_keep_last(samples: Vec<TrafficSample>) -> Vec<TrafficSample> {
    let keep: Vec<bool> = {
        let mut last: HashMap<Key<'_>, usize> = HashMap::with_capacity(samples.len());
        for (i, s) in samples.iter().enumerate() {
            last.insert(key(s), i);
        }
        if last.len() == samples.len() {
            return samples;
        }
        samples
            .iter()
            .enumerate()
            .map(|(i, s)| last.get(&key(s)) == Some(&i))
            .collect()
    };
    samples
        .into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

/// SHA-256 over the stored columns of every sample, field by field in a fixed layout, so
/// the digest does not change with the spool's or serde's encoding.
fn digest(samples: &[TrafficSample]) -> [u8; 32] {
    let mut h = Context::new(&SHA256);
    let text = |h: &mut Context, s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let opt_u32 = |h: &mut Context, v: Option<u32>| match v {
        Some(v) => {
            h.update(&[1]);
            h.update(&v.to_le_bytes());
        }
        None => h.update(&[0]),
    };
    let opt_f32 = |h: &mut Context, v: Option<f32>| match v {
        Some(v) => {
            h.update(&[1]);
            h.update(&v.to_bits().to_le_bytes());
        }
        None => h.update(&[0]),
    };
    h.update(&(samples.len() as u64).to_le_bytes());
    for s in samples {
        text(&mut h, &s.site_id);
        text(&mut h, &s.detector_id);
        h.update(&s.lane.to_le_bytes());
        h.update(&s.bucket_start.timestamp_micros().to_le_bytes());
        h.update(&s.interval_s.to_le_bytes());
        opt_u32(&mut h, s.volume);
        for v in [s.flow_vph, s.occupancy, s.speed_avg_kmh, s.speed_p85_kmh] {
            opt_f32(&mut h, v);
        }
        h.update(&s.speed_count.to_le_bytes());
        text(&mut h, s.speed_source.as_str());
        for v in [s.density_vpkm, s.headway_avg_s, s.gap_avg_s, s.length_avg_m] {
            opt_f32(&mut h, v);
        }
        for i in 0..4 {
            opt_u32(&mut h, s.class_counts.map(|c| c[i]));
        }
        h.update(&[s.los.map_or(0, |l| l.as_char() as u8)]);
        h.update(&s.samples_expected.to_le_bytes());
        h.update(&s.samples_received.to_le_bytes());
        h.update(&s.pct_observed.to_bits().to_le_bytes());
        h.update(&s.quality.bits().to_le_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finish().as_ref());
    out
}

/// What [`write_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// New batch, rows copied straight in.
    Fresh { rows: u64 },
    /// New batch whose rows collided with stored ones: merged (rows inserted or replaced).
    Merged { rows: u64 },
    /// The ledger already holds this batch with the same content: nothing changed.
    Replay,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "batch ({edge_id}, epoch {epoch}, seq {batch_seq}) was stored before with other content \
         ({stored_rows} rows then, {rows} now); refusing to overwrite"
    )]
    DigestMismatch {
        edge_id: String,
        epoch: i64,
        batch_seq: i64,
        stored_rows: i32,
        rows: usize,
    },
    #[error(
        "the database session is role {role:?}, which is not the edge role of {edge_id:?} \
         (expected \"edge_{edge_id}\")"
    )]
    WrongRole { role: String, edge_id: String },
    #[error("batch too large for the ledger ({0} rows)")]
    TooLarge(usize),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl WriteError {
    /// True when retrying later may succeed (the database or the link failed), false when
    /// the batch itself is refused.
    pub fn is_transient(&self) -> bool {
        match self {
            WriteError::Db(e) => e.as_db_error().is_none_or(|db| {
                // Class 08 connection, 40 rollback (serialization, deadlock), 53 resources,
                // 57 operator intervention (shutdown), 58 system error.
                let class = &db.code().code()[..2];
                matches!(class, "08" | "40" | "53" | "57" | "58")
            }),
            _ => false,
        }
    }
}

/// Checks the session is the edge role of `edge_id`.
pub async fn check_role(client: &impl GenericClient, edge_id: &str) -> Result<(), WriteError> {
    let row = client
        .query_one("SELECT current_user::text, sync_current_edge()", &[])
        .await?;
    let (role, edge): (String, Option<String>) = (row.get(0), row.get(1));
    if edge.as_deref() == Some(edge_id) {
        Ok(())
    } else {
        Err(WriteError::WrongRole {
            role,
            edge_id: edge_id.to_owned(),
        })
    }
}

/// The edge's cursor, `(epoch, batch_seq)` of the latest batch stored.
pub async fn read_cursor(
    client: &impl GenericClient,
    edge_id: &str,
) -> Result<Option<(i64, i64)>, WriteError> {
    Ok(client
        .query_opt(
            "SELECT epoch, batch_seq FROM sync_cursor WHERE edge_id = $1",
            &[&edge_id],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Writes one batch; see the module documentation. An empty batch only moves the cursor.
pub async fn write_batch(client: &mut Client, batch: &Batch) -> Result<Outcome, WriteError> {
    let rows = i32::try_from(batch.samples.len())
        .map_err(|_| WriteError::TooLarge(batch.samples.len()))?;
    let (first, last) = batch.bucket_range();
    let mut tx = client.transaction().await?;
    let claimed = tx
        .execute(
            "INSERT INTO ingest_batch \
               (edge_id, epoch, batch_seq, row_count, digest, first_bucket, last_bucket) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (edge_id, epoch, batch_seq) DO NOTHING",
            &[
                &batch.edge_id,
                &batch.epoch,
                &batch.batch_seq,
                &rows,
                &&batch.digest[..],
                &first,
                &last,
            ],
        )
        .await?;
    if claimed == 0 {
        let stored = tx
            .query_one(
                "SELECT digest, row_count FROM ingest_batch \
                 WHERE edge_id = $1 AND epoch = $2 AND batch_seq = $3",
                &[&batch.edge_id, &batch.epoch, &batch.batch_seq],
            )
            .await?;
        let (digest, stored_rows): (Vec<u8>, i32) = (stored.get(0), stored.get(1));
        tx.rollback().await?;
        return if digest == batch.digest {
            Ok(Outcome::Replay)
        } else {
            Err(WriteError::DigestMismatch {
                edge_id: batch.edge_id.clone(),
                epoch: batch.epoch,
                batch_seq: batch.batch_seq,
                stored_rows,
                rows: batch.samples.len(),
            })
        };
    }

    let mut outcome = Outcome::Fresh { rows: 0 };
    if !batch.samples.is_empty() {
        let fast = tx.savepoint("fast_path").await?;
        match copy_rows(&fast, "traffic_sample", batch).await {
            Ok(rows) => {
                fast.commit().await?;
                outcome = Outcome::Fresh { rows };
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                fast.rollback().await?;
                tx.execute("SELECT sync_stage_open()", &[]).await?;
                copy_rows(&tx, "pg_temp.sync_staging", batch).await?;
                let merged: i64 = tx
                    .query_one("SELECT sync_merge_staged()", &[])
                    .await?
                    .get(0);
                outcome = Outcome::Merged {
                    rows: u64::try_from(merged).unwrap_or(0),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.execute(
        "INSERT INTO sync_cursor (edge_id, epoch, batch_seq, updated_at) \
         VALUES ($1, $2, $3, now()) \
         ON CONFLICT (edge_id) DO UPDATE \
           SET epoch = EXCLUDED.epoch, batch_seq = EXCLUDED.batch_seq, updated_at = now() \
         WHERE (sync_cursor.epoch, sync_cursor.batch_seq) < (EXCLUDED.epoch, EXCLUDED.batch_seq)",
        &[&batch.edge_id, &batch.epoch, &batch.batch_seq],
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn copy_rows(
    client: &tokio_postgres::Transaction<'_>,
    table: &str,
    batch: &Batch,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client
        .copy_in(&format!(
            "COPY {table} ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
    for s in &batch.samples {
        // check_sample vetted every conversion below.
        let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let lane = i16::try_from(s.lane).unwrap_or(i16::MAX);
        let interval = n(s.interval_s);
        let volume = s.volume.map(n);
        let speed_count = n(s.speed_count);
        let class = |i: usize| s.class_counts.map(|c| n(c[i]));
        let (c0, c1, c2, c3) = (class(0), class(1), class(2), class(3));
        let los = s.los.map(|l| l.as_char() as i8);
        let expected = n(s.samples_expected);
        let received = n(s.samples_received);
        let quality = i32::try_from(s.quality.bits()).unwrap_or(i32::MAX);
        let row: [&(dyn ToSql + Sync); 27] = [
            &s.site_id,
            &s.detector_id,
            &lane,
            &s.bucket_start,
            &interval,
            &volume,
            &s.flow_vph,
            &s.occupancy,
            &s.speed_avg_kmh,
            &s.speed_p85_kmh,
            &speed_count,
            &s.speed_source.as_str(),
            &s.density_vpkm,
            &s.headway_avg_s,
            &s.gap_avg_s,
            &s.length_avg_m,
            &c0,
            &c1,
            &c2,
            &c3,
            &los,
            &expected,
            &received,
            &s.pct_observed,
            &quality,
            &batch.epoch,
            &batch.batch_seq,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await
}

/// What an edge reports about itself with each heartbeat.
#[derive(Debug, Clone, Default)]
pub struct EdgeReport {
    pub edge_id: String,
    pub site_id: Option<String>,
    pub software_version: String,
    pub spool_bytes: Option<i64>,
    pub uplink_lag_s: Option<f64>,
    /// Per source: `{"state": "running", "last_event_age_s": 1.2, ...}`.
    pub source_health: serde_json::Value,
}

/// Records the edge's heartbeat in `edge_node` (`last_seen` = now).
pub async fn heartbeat(client: &impl GenericClient, r: &EdgeReport) -> Result<(), WriteError> {
    client
        .execute(
            "INSERT INTO edge_node (edge_id, site_id, software_version, last_seen, spool_bytes, \
                                    uplink_lag_s, source_health) \
             VALUES ($1, $2, $3, now(), $4, $5, $6) \
             ON CONFLICT (edge_id) DO UPDATE SET site_id = EXCLUDED.site_id, \
               software_version = EXCLUDED.software_version, last_seen = now(), \
               spool_bytes = EXCLUDED.spool_bytes, uplink_lag_s = EXCLUDED.uplink_lag_s, \
               source_health = EXCLUDED.source_health",
            &[
                &r.edge_id,
                &r.site_id,
                &r.software_version,
                &r.spool_bytes,
                &r.uplink_lag_s,
                &r.source_health,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Quality, SpeedSource};

    pub(crate) fn sample(edge: &str, lane: u16, minute: i64, volume: u32) -> TrafficSample {
        TrafficSample {
            site_id: "s1".into(),
            detector_id: "d1".into(),
            lane,
            bucket_start: DateTime::from_timestamp(1_700_000_000 + minute * 60, 0).unwrap(),
            interval_s: 60,
            volume: Some(volume),
            flow_vph: Some(volume as f32 * 60.0),
            occupancy: Some(0.1),
            speed_avg_kmh: Some(90.0),
            speed_p85_kmh: None,
            speed_count: volume,
            speed_source: SpeedSource::Measured,
            density_vpkm: None,
            headway_avg_s: None,
            gap_avg_s: None,
            length_avg_m: None,
            class_counts: None,
            los: None,
            samples_expected: 1,
            samples_received: 1,
            pct_observed: 100.0,
            quality: Quality::empty(),
            edge_id: edge.into(),
        }
    }

    #[test]
    fn a_later_sample_with_the_same_key_wins() {
        let samples = vec![
            sample("e", 1, 0, 5),
            sample("e", 2, 0, 6),
            sample("e", 1, 0, 7),
        ];
        let b = Batch::new("e", 1, 3, samples).unwrap();
        let got: Vec<_> = b.samples().iter().map(|s| (s.lane, s.volume)).collect();
        assert_eq!(got, [(2, Some(6)), (1, Some(7))]);
    }

    #[test]
    fn digest_depends_on_content_only() {
        let a = Batch::new("e", 1, 1, vec![sample("e", 1, 0, 5)]).unwrap();
        let b = Batch::new("e", 9, 9, vec![sample("e", 1, 0, 5)]).unwrap();
        let c = Batch::new("e", 1, 1, vec![sample("e", 1, 0, 6)]).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn unstorable_and_foreign_samples_are_refused() {
        let mut bad = sample("e", 1, 0, 5);
        bad.occupancy = Some(f32::NAN);
        let err = Batch::new("e", 1, 1, vec![sample("e", 1, 1, 1), bad]).unwrap_err();
        assert!(err.to_string().contains("sample 1"), "{err}");
        let err = Batch::new("e", 1, 1, vec![sample("f", 1, 1, 1)]).unwrap_err();
        assert!(matches!(err, BatchError::ForeignSample { .. }), "{err}");
    }
}
