//! Counters the pipeline keeps for operators: read by the shutdown summary today and by the
//! `/metrics` endpoint later. Monotonic counters are `*_total`; the rest are gauges.
//!
//! Everything is an atomic (or a short-held mutex for the aggregator's own statistics), so a
//! reader never waits on the pipeline and the pipeline never waits on a reader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::aggregate::AggregatorStats;

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
    /// Byte-stream sources: frames decoded.
    pub frames_total: AtomicU64,
    /// Byte-stream sources: bytes read.
    pub bytes_total: AtomicU64,
    /// Byte-stream sources: bytes dropped while resynchronising.
    pub skipped_bytes_total: AtomicU64,
    /// Byte-stream sources: resynchronisations (and rejected payloads).
    pub decode_errors_total: AtomicU64,
    /// The same by [`codecs::DecodeErrorKind::label`] (a handful of fixed labels).
    pub decode_errors_by_kind: Mutex<Vec<(&'static str, u64)>>,
}

impl SourceCounters {
    /// Counts one decode error of the given kind label.
    pub fn note_decode_error(&self, label: &'static str) {
        self.decode_errors_total.fetch_add(1, Ordering::Relaxed);
        let mut kinds = self
            .decode_errors_by_kind
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match kinds.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => kinds.push((label, 1)),
        }
    }

    /// A copy of the decode errors by kind label.
    pub fn decode_errors_by_kind(&self) -> Vec<(&'static str, u64)> {
        self.decode_errors_by_kind
            .lock()
            .map(|k| k.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
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

    pub(crate) fn set_aggregator_stats(&self, stats: &AggregatorStats) {
        let mut guard = self
            .aggregator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.clone_from(stats);
    }
}
