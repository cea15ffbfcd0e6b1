//! Counters the pipeline keeps for operators: read by the shutdown summary today and by the
//! `/metrics` endpoint later. Monotonic counters are `*_total`; the rest are gauges.
//!
//! Everything is an atomic (or a short-held mutex for the aggregator's own statistics), so a
//! reader never waits on the pipeline and the pipeline never waits on a reader.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codecs::DecodeErrorKind;

use crate::aggregate::{AggregatorStats, DetectorHealth};
use crate::spool::SpoolStat;

/// The `error_type` label of each [`DecodeErrorKind`] ([`DecodeErrorKind::label`]), in the
/// order of [`SourceCounters::decode_errors_total`].
pub const DECODE_ERROR_TYPES: [&str; 7] = DecodeErrorKind::LABELS;

/// Per-source counters.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Vehicle events (and interval reports) pushed into the source's ring.
    pub events_total: AtomicU64,
    /// Events dropped because the ring was full (newest dropped; their bins get RING_DROPS).
    pub ring_dropped_events_total: AtomicU64,
    /// Liveness marks dropped because the ring was full (harmless: the next one covers).
    pub ring_dropped_marks_total: AtomicU64,
    /// `run_once` failures (each followed by a backoff).
    pub errors_total: AtomicU64,
    /// Sessions started (the first one included).
    pub sessions_total: AtomicU64,
    /// Frames decoded (device sources; a simulated source has no frames).
    pub frames_total: AtomicU64,
    /// Bytes read from the device.
    pub bytes_total: AtomicU64,
    /// Bytes dropped while resynchronising after garbage or a bad frame.
    pub skipped_bytes_total: AtomicU64,
    /// Decode errors by kind, indexed as [`DECODE_ERROR_TYPES`]; see [`Self::decode_error`].
    pub decode_errors_total: [AtomicU64; DECODE_ERROR_TYPES.len()],
    /// Wall time of the last event pushed, ms since the Unix epoch (0: none yet).
    pub last_event_unix_ms: AtomicI64,
    /// True while the source waits out a backoff after a failed or ended session.
    pub backing_off: AtomicBool,
    /// Failed sessions in a row (0 after a session that did not fail).
    pub consecutive_errors: AtomicU64,
    /// Raw messages replayed from the spool at start (see [`crate::sources::replay`]).
    pub replayed_messages_total: AtomicU64,
    /// Redelivered (DUP) messages already counted before a restart: spooled and
    /// acknowledged, their events not counted again.
    pub redeliveries_skipped_total: AtomicU64,
}

impl SourceCounters {
    /// Counts one decode error under its kind's label.
    pub fn decode_error(&self, kind: &DecodeErrorKind) {
        self.note_decode_error(kind.label());
    }

    /// Counts one decode error under `label`, one of [`DECODE_ERROR_TYPES`] (others are
    /// not counted: labels stay bounded).
    pub fn note_decode_error(&self, label: &str) {
        if let Some(i) = DECODE_ERROR_TYPES.iter().position(|&l| l == label)
            && let Some(c) = self.decode_errors_total.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decode errors of every kind.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors_total
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// "Still alive" marks of a task: the watchdog and `/health` look at how long ago the last
/// one was. A task blocked (on a full channel, on a stuck disk) stops beating.
#[derive(Debug)]
pub struct Heartbeat {
    base: Instant,
    /// ms after `base` of the last beat; `u64::MAX`: never.
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let last = self.last_ms.load(Ordering::Relaxed);
        (last != u64::MAX).then(|| {
            self.base
                .elapsed()
                .saturating_sub(Duration::from_millis(last))
        })
    }
}

/// The uplink's counters (all zero, and not exported, while no uplink is configured).
#[derive(Debug, Default)]
pub struct UplinkCounters {
    /// True once an uplink task runs.
    pub enabled: AtomicBool,
    /// True while a database session is open.
    pub connected: AtomicBool,
    /// Batches committed by their outcome: new rows copied, merged after a conflict, or
    /// found already stored (a replay).
    pub batches_fresh_total: AtomicU64,
    pub batches_merged_total: AtomicU64,
    pub batches_replayed_total: AtomicU64,
    /// Samples sent in committed batches.
    pub rows_total: AtomicU64,
    /// Failed connections and batches (each followed by a backoff).
    pub errors_total: AtomicU64,
    /// Failures in a row (0 after a success).
    pub consecutive_errors: AtomicU64,
    /// Samples the database could never store (out-of-range values, another edge's id):
    /// skipped, logged.
    pub rejected_samples_total: AtomicU64,
    /// Wall time of the last commit, ms since the Unix epoch (0: none yet).
    pub last_commit_unix_ms: AtomicI64,
    /// Heartbeats written to `edge_node`.
    pub heartbeats_total: AtomicU64,
}

/// Counters of one `run`.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// (source id, counters), in configuration order.
    pub sources: Vec<(String, Arc<SourceCounters>)>,
    /// Traffic samples appended to the spool.
    pub samples_spooled_total: AtomicU64,
    /// Gauge: bytes of the spool's segment files.
    pub spool_bytes: AtomicU64,
    /// Gauge: every record up to this sequence number is fsynced.
    pub spool_durable_seq: AtomicU64,
    /// fsyncs of the spool.
    pub spool_syncs_total: AtomicU64,
    /// The aggregator's own counters, refreshed on every aggregator tick.
    pub aggregator: Mutex<AggregatorStats>,
    /// Beats on every aggregator loop (at least once per tick).
    pub aggregator_beat: Heartbeat,
    /// Beats whenever the spool writer finishes a job or idles without one pending.
    pub spool_writer_beat: Heartbeat,
    /// The spool's figures after the spool writer's last job (`None` before the first).
    pub spool_stat: Mutex<Option<SpoolStat>>,
    /// Each detector's health as of the last emitted bins.
    pub detectors: Mutex<Vec<DetectorHealth>>,
    pub uplink: UplinkCounters,
}

impl PipelineCounters {
    /// Counters for the given source ids.
    pub fn new<'a>(source_ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            sources: source_ids
                .into_iter()
                .map(|id| (id.to_owned(), Arc::new(SourceCounters::default())))
                .collect(),
            ..Self::default()
        }
    }

    /// The counters of one source.
    pub fn source(&self, id: &str) -> Option<Arc<SourceCounters>> {
        self.sources
            .iter()
            .find(|(s, _)| s == id)
            .map(|(_, c)| Arc::clone(c))
    }

    /// Decode errors of every kind over all sources.
    pub fn decode_errors(&self) -> u64 {
        self.sources.iter().map(|(_, c)| c.decode_errors()).sum()
    }

    /// Sum of a per-source counter over all sources.
    pub fn sum(&self, pick: impl Fn(&SourceCounters) -> &AtomicU64) -> u64 {
        self.sources
            .iter()
            .map(|(_, c)| pick(c).load(Ordering::Relaxed))
            .sum()
    }

    /// A copy of the aggregator's statistics.
    pub fn aggregator_stats(&self) -> AggregatorStats {
        self.aggregator
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// A copy of the spool's last figures.
    pub fn spool_stat(&self) -> Option<SpoolStat> {
        self.spool_stat
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// A copy of the detectors' health.
    pub fn detector_health(&self) -> Vec<DetectorHealth> {
        self.detectors
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub(crate) fn set_detector_health(&self, detectors: Vec<DetectorHealth>) {
        let mut guard = self
            .detectors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = detectors;
    }

    pub fn set_spool_stat(&self, stat: SpoolStat) {
        let mut guard = self
            .spool_stat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(stat);
    }

    pub(crate) fn set_aggregator_stats(&self, stats: &AggregatorStats) {
        let mut guard = self
            .aggregator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.clone_from(stats);
    }
}
