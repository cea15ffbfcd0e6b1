//! `[[simulated]]` sources: synthetic vehicles from [`crate::sim::Simulator`], delivered in
//! (scaled) real time, for demos and tests without hardware.
//!
//! The simulator starts at the pipeline clock's origin and yields vehicles in order of
//! their front time; each is delivered when the pipeline clock reaches its arrival time
//! (front + on-time, when the detector would report it), so the aggregator sees them as it
//! would see a real detector's. A liveness mark follows every [`ALIVE_EVERY`] of clock time
//! (a connected detector that sees no vehicle is an empty road, not a dead link).
//!
//! The configuration maps to the simulator as follows (see [`sim_config`]): a flat demand of
//! `vehicles_per_hour` per lane all day, every day; the free-flow speed chosen so that the
//! mean speed at that demand is `mean_speed_kmh`; everything else at the simulator's
//! defaults (radar-like: speeds and lengths measured).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::iter::Peekable;

use chrono::{DateTime, TimeDelta, Utc};
use edge_config::SimulatedSource;
use tokio_util::sync::CancellationToken;

use super::{RingSender, Source, SourceItem};
use crate::aggregate::LaneMap;
use crate::clock::PipelineClock;
use crate::sim::{DemandProfile, SimConfig, SimEvent, Simulator};

/// A liveness mark is pushed at least this often (clock time).
pub const ALIVE_EVERY: TimeDelta = TimeDelta::seconds(1);

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
    /// mark when one is due (or `force_alive`). Returns when something is next due.
    fn emit_due(&mut self, now: DateTime<Utc>, force_alive: bool) -> DateTime<Utc> {
        let now_ms = now.timestamp_millis();
        // A vehicle not yet pulled has its front, hence its arrival, after `now`.
        while let Some(event) = self.sim.next_if(|e| e.front_ms <= now_ms) {
            self.pulled += 1;
            self.pending.push(Pending {
                arrival_ms: event.arrival.timestamp_millis(),
                order: self.pulled,
                event,
            });
        }
        while self.pending.peek().is_some_and(|p| p.arrival_ms <= now_ms) {
            if let Some(p) = self.pending.pop() {
                self.tx.push(SourceItem::Vehicle {
                    event: p.event.event,
                    arrival: p.event.arrival,
                });
            }
        }
        if force_alive || now >= self.next_alive {
            self.tx.push(SourceItem::Alive(now));
            self.next_alive = now + ALIVE_EVERY;
        }
        let mut next = self.next_alive;
        if let Some(p) = self.pending.peek() {
            next = next.min(p.event.arrival);
        }
        if let Some(e) = self.sim.peek() {
            next = next.min(e.arrival);
        }
        next
    }
}

impl Source for Simulated {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        loop {
            let next = self.emit_due(self.clock.now(), false);
            tokio::select! {
                () = shutdown.cancelled() => {
                    // Hand over everything up to the stop, and say we listened until then.
                    self.emit_due(self.clock.now(), true);
                    return Ok(());
                }
                () = tokio::time::sleep_until(self.clock.instant_at(next)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
}
