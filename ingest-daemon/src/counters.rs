//! Counters the pipeline keeps for operators: read by the shutdown summary today and by the
//! `/metrics` endpoint later. Monotonic counters are `*_total`; the rest are gauges.
//!
//! Everything is an atomic (or a short-held mutex for the aggregator's own statistics), so a
//! reader never waits on the pipeline and the pipeline never waits on a reader.

use std::collections::BTreeMap;
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
    /// Payloads that failed to decode, by error kind (`DecodeErrorKind::label`).
    pub decode_errors_total: Mutex<BTreeMap<&'static str, u64>>,
}

impl SourceCounters {
    /// Counts one decode error of the kind `label`.
    pub fn count_decode_error(&self, label: &'static str) {
        let mut map = self
            .decode_errors_total
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry(label).or_default() += 1;
    }

    /// A copy of the decode error counts by kind.
    pub fn decode_errors(&self) -> BTreeMap<&'static str, u64> {
        self.decode_errors_total
            .lock()
            .map(|m| m.clone())
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
