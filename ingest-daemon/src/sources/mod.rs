//! Sources: one task per device, each pushing into its own bounded lock-free ring.
//!
//! - [`SourceItem`] is what travels: a vehicle event or an interval report with its box
//!   arrival time, a liveness mark ("connected and listening up to this time"), a progress
//!   mark (no liveness claim), or a decode error.
//! - [`ring`] makes the single-producer single-consumer ring (`ringbuf`) between a source
//!   and the aggregator. [`RingSender::push`] never blocks: when the ring is full the new
//!   item is dropped and counted (DESIGN §5: a serial reader must never wait on us).
//! - [`Source`] is one device's session logic; [`run_source`] loops its `run_once` with a
//!   capped, jittered [`Backoff`] after failures and stops when the shutdown token fires.
//!   One source failing never stops another.
//!
//! The [`simulated`], [`serial`], [`mqtt`] and [`camera`] (RTSP) sources exist in this build.

pub mod analytics;
pub mod camera;
pub mod mqtt;
pub mod replay;
pub mod serial;
pub mod simulated;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use codecs::model::{IntervalReport, VehicleEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::clock::wall_now;
use crate::counters::SourceCounters;

/// Items a ring holds per source: at 3 000 veh/h on 8 lanes that is over 10 minutes of
/// traffic, far more than the aggregator ever lags.
pub const RING_CAPACITY: usize = 4096;

/// What a source hands the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A vehicle, as the device reported it (device lane), and when the box received it.
    Vehicle {
        event: VehicleEvent,
        arrival: DateTime<Utc>,
    },
    /// An interval report (device lane), and when the box received it.
    Interval {
        report: IntervalReport,
        arrival: DateTime<Utc>,
    },
    /// The source was connected and listening up to this time.
    Alive(DateTime<Utc>),
    /// Nothing older than this time will follow, and nothing is claimed about liveness
    /// (interval-report sources, which must not mark their lanes alive).
    Progress(DateTime<Utc>),
    /// The source's decoder skipped bytes (garbage, a bad checksum) at this time: the
    /// detector's bins of that time get CRC_ERRORS.
    DecodeError(DateTime<Utc>),
}

impl SourceItem {
    /// The box time of the item: arrival or liveness time.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Self::Vehicle { arrival, .. } | Self::Interval { arrival, .. } => *arrival,
            Self::Alive(t) | Self::Progress(t) | Self::DecodeError(t) => *t,
        }
    }
}

/// The producing end of a source's ring.
pub struct RingSender {
    prod: HeapProd<SourceItem>,
    wake: Arc<Notify>,
    counters: Arc<SourceCounters>,
}

/// The consuming end of a source's ring, held by the aggregator.
pub struct RingReceiver {
    cons: HeapCons<SourceItem>,
    counters: Arc<SourceCounters>,
}

impl fmt::Debug for RingSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingSender")
            .field("capacity", &self.prod.capacity())
            .field("occupied", &self.prod.occupied_len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RingReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingReceiver")
            .field("capacity", &self.cons.capacity())
            .field("occupied", &self.cons.occupied_len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// A ring of `capacity` items. Each successful push wakes `wake` (the aggregator).
pub fn ring(
    capacity: usize,
    wake: Arc<Notify>,
    counters: Arc<SourceCounters>,
) -> (RingSender, RingReceiver) {
    let (prod, cons) = HeapRb::<SourceItem>::new(capacity.max(1)).split();
    (
        RingSender {
            prod,
            wake,
            counters: Arc::clone(&counters),
        },
        RingReceiver { cons, counters },
    )
}

impl RingSender {
    /// How many items the ring can take now.
    pub fn vacant(&self) -> usize {
        self.prod.vacant_len()
    }

    /// Pushes without ever blocking. On a full ring the item is dropped and counted, and
    /// `false` is returned.
    pub fn push(&mut self, item: SourceItem) -> bool {
        let is_event = matches!(
            item,
            SourceItem::Vehicle { .. } | SourceItem::Interval { .. }
        );
        match self.prod.try_push(item) {
            Ok(()) => {
                if is_event {
                    self.counters.events_total.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .last_event_unix_ms
                        .store(wall_now().timestamp_millis(), Ordering::Relaxed);
                }
                self.wake.notify_one();
                true
            }
            Err(_dropped) => {
                let counter = if is_event {
                    &self.counters.ring_dropped_events_total
                } else {
                    &self.counters.ring_dropped_marks_total
                };
                counter.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Free slots: a producer that may wait (a replay at start) checks before pushing.
    pub fn vacant_len(&self) -> usize {
        self.prod.vacant_len()
    }
}

impl RingReceiver {
    /// The oldest item, if any.
    pub fn pop(&mut self) -> Option<SourceItem> {
        self.cons.try_pop()
    }

    /// True once the source has dropped its sender (its task ended).
    pub fn is_closed(&self) -> bool {
        !self.cons.write_is_held()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.cons.occupied_len()
    }

    pub fn is_empty(&self) -> bool {
        self.cons.is_empty()
    }

    /// Events dropped on this ring so far.
    pub fn dropped_events(&self) -> u64 {
        self.counters
            .ring_dropped_events_total
            .load(Ordering::Relaxed)
    }
}

/// One device's session logic.
pub trait Source: Send + 'static {
    /// The source id from the configuration (the task's span carries it).
    fn id(&self) -> &str;

    /// Runs one session: connect, read and push until the session ends or `shutdown`
    /// fires. Must race `shutdown` at every long await and return `Ok(())` promptly once it
    /// fires. An error ends the session and is retried after a backoff.
    fn run_once(
        &mut self,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Cap of the retry delay after failed sessions.
    fn backoff_max(&self) -> Duration {
        BACKOFF_MAX
    }
}

/// Capped exponential backoff with "equal jitter": each delay is uniformly drawn from
/// `[d/2, d]`, `d` doubling from `min` up to `max`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// A backoff from `min` to `max`. The jitter is seeded from `seed` (the source id, so
    /// that sources restarting together do not retry in step).
    pub fn new(min: Duration, max: Duration, seed: &str) -> Self {
        let seed = RandomState::new().hash_one(seed);
        Self {
            min,
            max: max.max(min),
            next: min,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        half + half.mul_f64(self.rng.random::<f64>())
    }

    /// After a healthy session: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// First retry delay of a failed source session.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Cap of the retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long was healthy: the next failure backs off from the start.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Runs `source` until `shutdown` fires: `run_once` in a loop, backing off after errors
/// (and after sessions that end by themselves, so a device that hangs up at once is not
/// hammered). Runs inside a span named `source` carrying the source id.
pub async fn run_source<S: Source>(
    mut source: S,
    counters: Arc<SourceCounters>,
    shutdown: CancellationToken,
) {
    let span = info_span!("source", id = %source.id());
    async move {
        let mut backoff = Backoff::new(BACKOFF_MIN, source.backoff_max(), source.id());
        info!("source started");
        while !shutdown.is_cancelled() {
            counters.sessions_total.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = source.run_once(&shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            if started.elapsed() >= HEALTHY_SESSION {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            match result {
                Ok(()) => {
                    counters.consecutive_errors.store(0, Ordering::Relaxed);
                    info!(retry_in_ms = delay.as_millis(), "source session ended");
                }
                Err(error) => {
                    counters.errors_total.fetch_add(1, Ordering::Relaxed);
                    counters.consecutive_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = delay.as_millis(),
                        "source session failed"
                    );
                }
            }
            counters.backing_off.store(true, Ordering::Relaxed);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            counters.backing_off.store(false, Ordering::Relaxed);
        }
        info!("source stopped");
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800), "x");
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        let caps = [100, 200, 400, 800, 800, 800];
        for (d, cap) in delays.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(*d >= cap / 2 && *d <= cap, "{d:?} vs {cap:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_full_ring_drops_the_newest_and_counts_it() {
        let counters = Arc::new(SourceCounters::default());
        let (mut tx, mut rx) = ring(2, Arc::new(Notify::new()), Arc::clone(&counters));
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        assert!(tx.push(SourceItem::Alive(t(1))));
        assert!(tx.push(SourceItem::Alive(t(2))));
        assert!(!tx.push(SourceItem::Alive(t(3))));
        assert_eq!(counters.ring_dropped_marks_total.load(Ordering::Relaxed), 1);
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.pop(), Some(SourceItem::Alive(t(1))));
        assert!(!rx.is_closed());
        drop(tx);
        assert!(rx.is_closed());
        assert_eq!(rx.pop(), Some(SourceItem::Alive(t(2))));
        assert!(rx.is_empty());
    }
}
