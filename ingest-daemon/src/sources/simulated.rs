//! `[[simulated]]` sources: synthetic vehicles from [`crate::sim::Simulator`], delivered in
//! (scaled) real time, for demos and tests without hardware.
//!
//! The simulator starts at the pipeline clock's origin and yields vehicles in order of
//! their front time; each is delivered when the pipeline clock reaches its arrival time
//! (front + on-time, when the detector would report it), so the aggregator sees them as it
//! would see a real detector's. A liveness mark follows every [`ALIVE_EVERY`] of clock time
//! (a connected detector that sees no vehicle is an empty road, not a dead link).
//!
//! A source that falls behind the clock (a slow or emulated CPU at a high time scale)
//! catches up in batches of at most [`BATCH`] vehicles, and never more than its ring can
//! take, yielding in between: the simulator waits for the aggregator rather than dropping
//! vehicles, and the hand-over at shutdown is one bounded batch. Its liveness marks then
//! say how far it has delivered, not the clock's time.
//!
//! The configuration maps to the simulator as follows (see [`sim_config`]): a flat demand of
//! `vehicles_per_hour` per lane all day, every day; the free-flow speed chosen so that the
//! mean speed at that demand is `mean_speed_kmh`; everything else at the simulator's
//! defaults (radar-like: speeds and lengths measured).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::iter::Peekable;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use edge_config::SimulatedSource;
use tokio_util::sync::CancellationToken;

use super::{RingSender, Source, SourceItem};
use crate::aggregate::LaneMap;
use crate::clock::PipelineClock;
use crate::sim::{DemandProfile, SimConfig, SimEvent, Simulator};

/// A liveness mark is pushed at least this often (clock time).
pub const ALIVE_EVERY: TimeDelta = TimeDelta::seconds(1);

/// How long a source whose ring is full waits before it tries again.
const RING_FULL_PAUSE: Duration = Duration::from_millis(5);

/// Most vehicles pulled from the simulator, or handed over, in one go.
const BATCH: usize = 4096;

/// How far ahead the simulator is set up to run: far beyond any daemon's uptime.
const HORIZON: TimeDelta = TimeDelta::days(100 * 365);

/// The simulator configuration of a `[[simulated]]` table. Tests use it to compute the
/// ground truth of what a `run` produced.
pub fn sim_config(src: &SimulatedSource) -> SimConfig {
    let defaults = SimConfig::default();
    let vph = src.vehicles_per_hour as f32;
    // The simulator lowers the mean speed with demand: free_flow · max(0.3, 1 − 0.25·r²)
    // with r = demand / capacity. Invert that so the configured mean holds at this demand.
    let ratio = vph / defaults.capacity_vph.max(1.0);
    let drop = (1.0 - 0.25 * ratio * ratio).max(0.3);
    SimConfig {
        seed: src.seed,
        lanes: src.lanes,
        demand: DemandProfile {
            peak_vph: vph,
            night_vph: vph,
            multiplier: 1.0,
            utc_offset_min: 0,
            weekend_factor: 1.0,
        },
        free_flow_kmh: src.mean_speed_kmh as f32 / drop,
        ..defaults
    }
}

/// The lane map of a simulated source: device lanes 1..=lanes are road lanes 1..=lanes.
pub fn lane_map(src: &SimulatedSource) -> LaneMap {
    LaneMap::identity(src.lanes)
}

/// A vehicle waiting for its arrival time.
#[derive(Debug)]
struct Pending {
    arrival_ms: i64,
    order: u64,
    event: SimEvent,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so that `BinaryHeap` pops the earliest arrival first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.arrival_ms, other.order).cmp(&(self.arrival_ms, self.order))
    }
}

/// A running `[[simulated]]` source.
#[derive(Debug)]
pub struct Simulated {
    id: String,
    clock: PipelineClock,
    sim: Peekable<Simulator>,
    pending: BinaryHeap<Pending>,
    pulled: u64,
    next_alive: DateTime<Utc>,
    tx: RingSender,
}

impl Simulated {
    /// A source whose traffic starts at the clock's origin.
    pub fn new(src: &SimulatedSource, clock: PipelineClock, tx: RingSender) -> Self {
        let start = clock.origin();
        let sim = Simulator::new(sim_config(src), start, start + HORIZON);
        Self {
            id: src.id.clone(),
            clock,
            sim: sim.peekable(),
            pending: BinaryHeap::new(),
            pulled: 0,
            next_alive: start,
            tx,
        }
    }

    /// Pushes every vehicle that has arrived by `now`, in arrival order, then a liveness
    /// mark when one is due (or `force_alive`), all within one bounded batch (see the
    /// module's notes). Returns when something is next due, or `None` when the batch
    /// ended before `now` (the source is behind: call again soon).
    fn emit_due(&mut self, now: DateTime<Utc>, force_alive: bool) -> Option<DateTime<Utc>> {
        let now_ms = now.timestamp_millis();
        // Room for the vehicles and the liveness mark.
        let room = self.tx.vacant().saturating_sub(1).min(BATCH);
        // Every vehicle arriving by `through_ms` is handed over in this call.
        let mut through_ms = now_ms;
        // A vehicle not yet pulled has its front, hence its arrival, after `now`.
        let mut pulled = 0;
        while pulled < room {
            let Some(event) = self.sim.next_if(|e| e.front_ms <= now_ms) else {
                break;
            };
            pulled += 1;
            self.pulled += 1;
            self.pending.push(Pending {
                arrival_ms: event.arrival.timestamp_millis(),
                order: self.pulled,
                event,
            });
        }
        if let Some(e) = self.sim.peek().filter(|e| e.front_ms <= now_ms) {
            // Out of room: vehicles from this front on wait for the next call.
            through_ms = e.front_ms - 1;
        }
        let mut sent = 0;
        let mut last_sent_ms = i64::MIN;
        while let Some(p) = self.pending.peek().filter(|p| p.arrival_ms <= through_ms) {
            // Vehicles arriving in the same millisecond go together, so that the mark
            // below never precedes a vehicle already handed over.
            if sent >= room && p.arrival_ms > last_sent_ms {
                through_ms = p.arrival_ms - 1;
                break;
            }
            if let Some(p) = self.pending.pop() {
                last_sent_ms = p.arrival_ms;
                sent += 1;
                self.tx.push(SourceItem::Vehicle {
                    event: p.event.event,
                    arrival: p.event.arrival,
                });
            }
        }
        let through = if through_ms == now_ms {
            now
        } else {
            DateTime::from_timestamp_millis(through_ms).unwrap_or(now)
        };
        if force_alive || through >= self.next_alive {
            self.tx.push(SourceItem::Alive(through));
            self.next_alive = through + ALIVE_EVERY;
        }
        if through_ms < now_ms {
            return None;
        }
        let mut next = self.next_alive;
        if let Some(p) = self.pending.peek() {
            next = next.min(p.event.arrival);
        }
        if let Some(e) = self.sim.peek() {
            next = next.min(e.arrival);
        }
        Some(next)
    }
}

impl Source for Simulated {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        loop {
            let wait = match self.emit_due(self.clock.now(), false) {
                Some(next) => tokio::time::sleep_until(self.clock.instant_at(next)),
                // Behind the clock: go on at once, or shortly when the ring is full.
                None if self.tx.vacant() > 1 => tokio::time::sleep(Duration::ZERO),
                None => tokio::time::sleep(RING_FULL_PAUSE),
            };
            tokio::select! {
                () = shutdown.cancelled() => {
                    // Hand over (one batch of) what is due, and say how far we listened.
                    self.emit_due(self.clock.now(), true);
                    return Ok(());
                }
                () = wait => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use tokio::sync::Notify;

    use super::*;
    use crate::counters::SourceCounters;
    use crate::sources::ring;

    fn source() -> SimulatedSource {
        let config = edge_config::Config::from_str_named(
            "minimal.toml",
            edge_config::DEFAULT_CONFIG,
            Vec::new(),
        )
        .unwrap();
        config.simulated[0].clone()
    }

    #[test]
    fn configured_flow_and_speed_come_out_on_average() {
        let src = source();
        let start = DateTime::parse_from_rfc3339("2024-03-04T02:00:00Z")
            .unwrap()
            .to_utc();
        let events: Vec<SimEvent> =
            Simulator::new(sim_config(&src), start, start + TimeDelta::hours(1)).collect();
        let per_lane = events.len() as f64 / f64::from(src.lanes);
        let vph = f64::from(src.vehicles_per_hour);
        assert!((per_lane - vph).abs() < 0.1 * vph, "{per_lane} veh/h/lane");
        let mean = events
            .iter()
            .map(|e| f64::from(e.event.speed_kmh.unwrap()))
            .sum::<f64>()
            / events.len() as f64;
        assert!((mean - src.mean_speed_kmh).abs() < 3.0, "mean {mean} km/h");
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_vehicles_in_arrival_order_with_liveness_marks() {
        let src = source();
        let origin = DateTime::parse_from_rfc3339("2024-03-04T08:00:00Z")
            .unwrap()
            .to_utc();
        let clock = PipelineClock::new(origin, 60.0);
        let (tx, mut rx) = ring(
            4096,
            Arc::new(Notify::new()),
            Arc::new(SourceCounters::default()),
        );
        let mut sim = Simulated::new(&src, clock, tx);
        let stop = CancellationToken::new();
        let run = {
            let stop = stop.clone();
            async move {
                sim.run_once(&stop).await.unwrap();
                sim
            }
        };
        let handle = tokio::spawn(run);
        // One minute of simulated time.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        stop.cancel();
        drop(handle.await.unwrap());
        let mut items = Vec::new();
        while let Some(i) = rx.pop() {
            items.push(i);
        }
        assert!(matches!(items.first(), Some(SourceItem::Alive(t)) if *t == origin));
        assert!(items.windows(2).all(|w| w[0].time() <= w[1].time()));
        let vehicles: Vec<&SourceItem> = items
            .iter()
            .filter(|i| matches!(i, SourceItem::Vehicle { .. }))
            .collect();
        let expected: Vec<SimEvent> =
            Simulator::new(sim_config(&src), origin, origin + TimeDelta::seconds(60))
                .filter(|e| e.arrival <= origin + TimeDelta::seconds(60))
                .collect();
        assert_eq!(vehicles.len(), expected.len());
        let marks = items.len() - vehicles.len();
        assert!(marks >= 60, "{marks} liveness marks");
    }

    /// Drains a ring into `items`.
    fn drain(rx: &mut crate::sources::RingReceiver, items: &mut Vec<SourceItem>) {
        while let Some(i) = rx.pop() {
            items.push(i);
        }
    }

    fn vehicle_arrivals(items: &[SourceItem]) -> Vec<DateTime<Utc>> {
        items
            .iter()
            .filter(|i| matches!(i, SourceItem::Vehicle { .. }))
            .map(SourceItem::time)
            .collect()
    }

    /// The arrivals the simulator yields up to `through`, in arrival order.
    fn truth(
        src: &SimulatedSource,
        origin: DateTime<Utc>,
        through: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut t: Vec<DateTime<Utc>> = Simulator::new(sim_config(src), origin, through)
            .map(|e| e.arrival)
            .filter(|a| *a <= through)
            .collect();
        t.sort();
        t
    }

    #[test]
    fn a_source_far_behind_the_clock_catches_up_in_bounded_batches_and_drops_nothing() {
        let src = source();
        let origin = DateTime::parse_from_rfc3339("2024-03-04T08:00:00Z")
            .unwrap()
            .to_utc();
        let counters = Arc::new(SourceCounters::default());
        let capacity = 500;
        let (tx, mut rx) = ring(capacity, Arc::new(Notify::new()), Arc::clone(&counters));
        let mut sim = Simulated::new(&src, PipelineClock::new(origin, 1.0), tx);
        // The clock is three hours on and nothing was handed over yet.
        let now = origin + TimeDelta::hours(3);
        let expected = truth(&src, origin, now);
        assert!(
            expected.len() > 10 * capacity,
            "{} vehicles",
            expected.len()
        );

        let mut items = Vec::new();
        let mut calls = 0;
        let mut marks = Vec::new();
        let next = loop {
            calls += 1;
            assert!(calls < 1000, "no progress");
            let next = sim.emit_due(now, false);
            let before = items.len();
            drain(&mut rx, &mut items);
            assert!(
                items.len() - before <= capacity,
                "one call filled more than the ring"
            );
            marks.extend(items[before..].iter().filter_map(|i| match i {
                SourceItem::Alive(t) => Some(*t),
                _ => None,
            }));
            if let Some(next) = next {
                break next;
            }
        };
        assert!(calls > 10, "caught up in {calls} calls");
        assert!(next > now);
        assert_eq!(
            counters.ring_dropped_events_total.load(Ordering::Relaxed),
            0
        );
        assert_eq!(counters.ring_dropped_marks_total.load(Ordering::Relaxed), 0);
        // Every vehicle, once, in order; the marks say how far delivery had got, never
        // beyond it, and reach the clock's time once caught up.
        assert_eq!(vehicle_arrivals(&items), expected);
        assert!(items.windows(2).all(|w| w[0].time() <= w[1].time()));
        assert!(marks.len() > 10, "{} marks", marks.len());
        assert!(marks.iter().all(|m| *m <= now));
        assert_eq!(marks.last(), Some(&now));
    }

    #[test]
    fn the_hand_over_at_shutdown_is_one_bounded_batch_marked_where_it_ends() {
        let src = source();
        let origin = DateTime::parse_from_rfc3339("2024-03-04T08:00:00Z")
            .unwrap()
            .to_utc();
        let (tx, mut rx) = ring(
            100_000,
            Arc::new(Notify::new()),
            Arc::new(SourceCounters::default()),
        );
        let mut sim = Simulated::new(&src, PipelineClock::new(origin, 3600.0), tx);
        // Ten simulated hours behind when the stop comes.
        let now = origin + TimeDelta::hours(10);
        assert_eq!(sim.emit_due(now, true), None);
        let mut items = Vec::new();
        drain(&mut rx, &mut items);
        let vehicles = vehicle_arrivals(&items);
        assert!(
            vehicles.len() >= BATCH && vehicles.len() < BATCH + 16,
            "{} vehicles in the last batch",
            vehicles.len()
        );
        let Some(SourceItem::Alive(mark)) = items.last() else {
            panic!(
                "the batch does not end with a liveness mark: {:?}",
                items.last()
            );
        };
        assert!(*mark < now);
        // Exactly the vehicles that arrived by the mark.
        assert_eq!(vehicles, truth(&src, origin, *mark));
    }
}
