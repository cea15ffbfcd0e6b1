//! A deterministic traffic generator for demos, soak tests and benchmarks.
//!
//! Pure and synchronous. Given a [`SimConfig`] (with its seed) and a time span it yields the
//! [`VehicleEvent`]s a loop-and-speed detector would report, in order of device time, and it
//! can tally the [`GroundTruth`] per (lane, bin) the aggregator must reproduce.
//!
//! The model, per lane:
//! * arrivals are a non-homogeneous Poisson process drawn by thinning: candidates at the
//!   profile's maximum rate, each kept with probability rate(t) / max. The rate is the
//!   [`DemandProfile`] (a two-peak weekday, a single midday hump at weekends) times the
//!   lane's weight, and 0 × `blocked_flow_factor` on a lane blocked by an [`Incident`].
//!   A vehicle never enters the zone before the previous one has left it plus `min_gap_ms`;
//! * speed: normal around a mean that falls with demand,
//!   `free_flow · max(0.3, 1 − 0.25·(rate / capacity)²)`, lower for long vehicles, times the
//!   incident's `speed_factor` on every lane while an incident lasts (the detector is
//!   upstream, in the queue);
//! * class by `class_mix`, length uniform inside the class's DESIGN §3 bin;
//! * on-time = (length + loop length) / speed.
//!
//! Reproducible: each lane draws from its own ChaCha8 stream (`seed`, stream = lane), a
//! portable generator, so the same seed gives the same events on every platform. The
//! normal variates use the Irwin–Hall sum of 12 uniforms (additions only); exponential
//! gaps use `ln`, whose last-bit differences between C libraries only matter in the rare
//! case they move a rounded millisecond.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use codecs::model::{VehicleClass, VehicleEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: i64 = 86_400_000;

/// Vehicles per hour per lane over the week.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandProfile {
    /// Flow at the morning peak of a weekday, veh/h/lane. Default 1 500.
    pub peak_vph: f32,
    /// Floor at night, veh/h/lane. Default 60.
    pub night_vph: f32,
    /// Scales the whole profile. Default 1.0.
    pub multiplier: f32,
    /// Local time of the road = UTC + this. Default 0.
    pub utc_offset_min: i32,
    /// Weekend midday hump as a share of `peak_vph`. Default 0.6.
    pub weekend_factor: f32,
}

impl Default for DemandProfile {
    fn default() -> Self {
        Self {
            peak_vph: 1_500.0,
            night_vph: 60.0,
            multiplier: 1.0,
            utc_offset_min: 0,
            weekend_factor: 0.6,
        }
    }
}

fn bump(hour: f64, centre: f64, sigma: f64) -> f64 {
    let x = (hour - centre) / sigma;
    (-0.5 * x * x).exp()
}

impl DemandProfile {
    /// The demand at `t_ms` (UTC ms), veh/h/lane.
    pub fn vph(&self, t_ms: i64) -> f32 {
        let local = t_ms + i64::from(self.utc_offset_min) * 60_000;
        let day = local.div_euclid(DAY_MS);
        let hour = local.rem_euclid(DAY_MS) as f64 / HOUR_MS;
        // 1970-01-01 was a Thursday: Monday = 0.
        let weekday = (day + 3).rem_euclid(7);
        let peak = f64::from(self.peak_vph);
        let shape = if weekday >= 5 {
            f64::from(self.weekend_factor) * bump(hour, 13.0, 3.0)
        } else {
            // Morning peak 07:45, evening peak 17:00, a midday plateau between them.
            (bump(hour, 7.75, 1.1) + 0.9 * bump(hour, 17.0, 1.4) + 0.45 * bump(hour, 12.5, 2.5))
                .min(1.0)
        };
        let vph = f64::from(self.night_vph) + (peak - f64::from(self.night_vph)).max(0.0) * shape;
        (vph * f64::from(self.multiplier)).max(0.0) as f32
    }

    /// An upper bound of [`DemandProfile::vph`] (for thinning).
    fn max_vph(&self) -> f32 {
        (self.peak_vph.max(self.night_vph) * self.multiplier).max(0.0)
    }
}

/// A lane blocked between `start` and `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Road lane (1-based) blocked.
    pub lane: u16,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Share of the demand that still passes the blocked lane. Default 0.
    pub blocked_flow_factor: f32,
    /// Speeds on every lane are multiplied by this while the incident lasts. Default 0.35.
    pub speed_factor: f32,
}

impl Incident {
    pub fn new(lane: u16, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            lane,
            start,
            end,
            blocked_flow_factor: 0.0,
            speed_factor: 0.35,
        }
    }

    fn active(&self, t_ms: i64) -> bool {
        (self.start.timestamp_millis()..self.end.timestamp_millis()).contains(&t_ms)
    }
}

/// Everything the generator needs; defaults give a plausible three-lane motorway.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// Road lanes 1..=lanes (device lanes are numbered the same). Default 3.
    pub lanes: u16,
    /// Demand weight per lane (lane 1 first); missing lanes weigh 1. Default empty.
    pub lane_weights: Vec<f32>,
    pub demand: DemandProfile,
    /// Default 110 km/h.
    pub free_flow_kmh: f32,
    /// Default 8 km/h.
    pub speed_sd_kmh: f32,
    /// Per lane, for the speed–flow drop. Default 2 000 veh/h.
    pub capacity_vph: f32,
    /// Length of the detection zone. Default 1.8 m (a 6 ft loop).
    pub loop_length_m: f32,
    /// Shares of motorcycle, short, medium, long. Default 2 / 82 / 8 / 8 %.
    pub class_mix: [f32; 4],
    /// Least time between one vehicle leaving the zone and the next entering. Default 300 ms.
    pub min_gap_ms: u32,
    pub incidents: Vec<Incident>,
    /// Report speeds (dual loop / radar); false = single loop. Default true.
    pub measure_speed: bool,
    /// Report lengths. Default true.
    pub measure_length: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            lanes: 3,
            lane_weights: Vec::new(),
            demand: DemandProfile::default(),
            free_flow_kmh: 110.0,
            speed_sd_kmh: 8.0,
            capacity_vph: 2_000.0,
            loop_length_m: 1.8,
            class_mix: [0.02, 0.82, 0.08, 0.08],
            min_gap_ms: 300,
            incidents: Vec::new(),
            measure_speed: true,
            measure_length: true,
        }
    }
}

/// One generated vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// What the detector reports (device lane = road lane, device time = front).
    pub event: VehicleEvent,
    /// When the box receives it: as the vehicle leaves the zone (front + on-time).
    pub arrival: DateTime<Utc>,
    /// Front time, UTC ms.
    pub front_ms: i64,
    /// On-time, ms.
    pub occupancy_ms: u32,
    /// The true class (also reported through `length_m` when lengths are measured).
    pub class: VehicleClass,
}

#[derive(Debug)]
struct LaneGen {
    lane: u16,
    weight: f32,
    rng: ChaCha8Rng,
    /// Time of the last candidate arrival (thinning clock).
    clock: i64,
    /// The earliest the next front may enter (previous vehicle left + gap).
    free_at: i64,
    pending: Option<SimEvent>,
}

/// The generator: an iterator of [`SimEvent`]s ordered by front time (ties by lane) from
/// `start` up to, not including, `end`.
#[derive(Debug)]
pub struct Simulator {
    cfg: SimConfig,
    lanes: Vec<LaneGen>,
    end_ms: i64,
    max_vph: f32,
}

/// The standard normal by Irwin–Hall (sum of 12 uniforms − 6): additions only.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0
}

fn length_range(class: VehicleClass) -> (f32, f32) {
    match class {
        VehicleClass::Motorcycle => (1.6, 2.05),
        VehicleClass::Short => (3.4, 6.0),
        VehicleClass::Medium => (6.5, 12.5),
        VehicleClass::Long => (14.0, 22.0),
    }
}

impl Simulator {
    pub fn new(cfg: SimConfig, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        let start_ms = start.timestamp_millis();
        let max_weight = cfg
            .lane_weights
            .iter()
            .copied()
            .fold(1.0_f32, f32::max)
            .max(0.0);
        let max_vph = cfg.demand.max_vph() * max_weight;
        let mut lanes: Vec<LaneGen> = (1..=cfg.lanes)
            .map(|lane| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(u64::from(lane));
                LaneGen {
                    lane,
                    weight: cfg
                        .lane_weights
                        .get(usize::from(lane) - 1)
                        .copied()
                        .unwrap_or(1.0)
                        .max(0.0),
                    rng,
                    clock: start_ms,
                    free_at: start_ms,
                    pending: None,
                }
            })
            .collect();
        let end_ms = end.timestamp_millis();
        for lane in &mut lanes {
            lane.pending = Self::generate(&cfg, lane, max_vph, end_ms);
        }
        Self {
            cfg,
            lanes,
            end_ms,
            max_vph,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The demand on a lane at `t_ms` including incidents, veh/h.
    fn rate(cfg: &SimConfig, lane: &LaneGen, t_ms: i64) -> f32 {
        let mut vph = cfg.demand.vph(t_ms) * lane.weight;
        for inc in &cfg.incidents {
            if inc.lane == lane.lane && inc.active(t_ms) {
                vph *= inc.blocked_flow_factor.clamp(0.0, 1.0);
            }
        }
        vph
    }

    fn generate(cfg: &SimConfig, g: &mut LaneGen, max_vph: f32, end_ms: i64) -> Option<SimEvent> {
        if max_vph <= 0.0 {
            return None;
        }
        let mean_gap_ms = HOUR_MS / f64::from(max_vph);
        // Thinning: candidates at the maximum rate, kept with probability rate / max.
        let front = loop {
            let u: f64 = g.rng.random();
            let gap = -(1.0 - u).ln() * mean_gap_ms;
            g.clock += (gap.round() as i64).max(1);
            if g.clock >= end_ms {
                return None;
            }
            let keep: f32 = g.rng.random();
            if keep * max_vph < Self::rate(cfg, g, g.clock) {
                break g.clock.max(g.free_at);
            }
        };
        if front >= end_ms {
            return None;
        }
        let demand = Self::rate(cfg, g, front);

        let r: f32 = g.rng.random();
        let total: f32 = cfg.class_mix.iter().sum();
        let mut acc = 0.0;
        let mut class = VehicleClass::Short;
        for (c, share) in VehicleClass::ALL.iter().zip(cfg.class_mix) {
            acc += share / total.max(f32::MIN_POSITIVE);
            if r < acc {
                class = *c;
                break;
            }
        }
        let (lo, hi) = length_range(class);
        let length = lo + (hi - lo) * g.rng.random::<f32>();

        let ratio = f64::from(demand / cfg.capacity_vph.max(1.0));
        let mut mean = f64::from(cfg.free_flow_kmh) * (1.0 - 0.25 * ratio * ratio).max(0.3);
        if class == VehicleClass::Long {
            mean *= 0.9;
        }
        for inc in &cfg.incidents {
            if inc.active(front) {
                mean *= f64::from(inc.speed_factor.clamp(0.01, 1.0));
            }
        }
        let speed = (mean + f64::from(cfg.speed_sd_kmh) * normal(&mut g.rng)).clamp(5.0, 200.0);
        let speed = (speed * 10.0).round() / 10.0;
        let occ_ms = (f64::from(length + cfg.loop_length_m) / (speed / 3.6) * 1000.0)
            .round()
            .max(1.0) as u32;

        g.clock = front;
        g.free_at = front + i64::from(occ_ms) + i64::from(cfg.min_gap_ms);
        let time = DateTime::from_timestamp_millis(front)?;
        let arrival = DateTime::from_timestamp_millis(front + i64::from(occ_ms))?;
        Some(SimEvent {
            event: VehicleEvent {
                lane: g.lane,
                time: Some(time),
                speed_kmh: cfg.measure_speed.then_some(speed as f32),
                length_m: cfg.measure_length.then_some(length),
                occupancy_ms: Some(occ_ms),
                headway_ms: None,
                class: None,
            },
            arrival,
            front_ms: front,
            occupancy_ms: occ_ms,
            class,
        })
    }
}

impl Iterator for Simulator {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        let (i, _) = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.pending.as_ref().map(|e| (i, e.front_ms)))
            .min_by_key(|&(i, front)| (front, i))?;
        let lane = self.lanes.get_mut(i)?;
        let next = Self::generate(&self.cfg, lane, self.max_vph, self.end_ms);
        std::mem::replace(&mut lane.pending, next)
    }
}

/// What really passed in one (lane, bin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TruthBin {
    pub volume: u32,
    pub class_counts: [u32; 4],
    /// Σ on-time clipped to the bin, ms.
    pub occupancy_ms: u64,
}

/// Ground truth per (road lane, bin start in UTC ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroundTruth {
    pub interval_s: u32,
    pub bins: BTreeMap<(u16, i64), TruthBin>,
}

impl GroundTruth {
    /// Tallies events by the bin of their front (volume, classes) and splits their on-time
    /// over the bins it covers.
    pub fn tally<'a>(interval_s: u32, events: impl IntoIterator<Item = &'a SimEvent>) -> Self {
        let interval_ms = i64::from(interval_s.max(1)) * 1000;
        let mut bins: BTreeMap<(u16, i64), TruthBin> = BTreeMap::new();
        for e in events {
            let lane = e.event.lane;
            let start = e.front_ms - e.front_ms.rem_euclid(interval_ms);
            let b = bins.entry((lane, start)).or_default();
            b.volume += 1;
            if let Some(n) = b.class_counts.get_mut(e.class.index()) {
                *n += 1;
            }
            let (a, z) = (e.front_ms, e.front_ms + i64::from(e.occupancy_ms));
            let mut s = start;
            while s < z {
                let part = z.min(s + interval_ms) - a.max(s);
                bins.entry((lane, s)).or_default().occupancy_ms += part.unsigned_abs();
                s += interval_ms;
            }
        }
        Self {
            interval_s: interval_s.max(1),
            bins,
        }
    }

    /// Generates the events of `cfg` over `[start, end)` and tallies them.
    pub fn generate(
        cfg: &SimConfig,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval_s: u32,
    ) -> Self {
        let events: Vec<SimEvent> = Simulator::new(cfg.clone(), start, end).collect();
        Self::tally(interval_s, &events)
    }

    /// The volume of a (lane, bin); 0 where nothing passed.
    pub fn volume(&self, lane: u16, bucket_start: DateTime<Utc>) -> u32 {
        self.bins
            .get(&(lane, bucket_start.timestamp_millis()))
            .map_or(0, |b| b.volume)
    }

    pub fn total_volume(&self) -> u64 {
        self.bins.values().map(|b| u64::from(b.volume)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        // 2024-03-04 is a Monday.
        DateTime::parse_from_rfc3339(&format!("2024-03-04T{h:02}:{m:02}:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn weekday_profile_has_two_peaks_and_a_quiet_night() {
        let p = DemandProfile::default();
        let v = |h| p.vph(at(h, 0).timestamp_millis());
        assert!(v(3) < 100.0, "night {}", v(3));
        assert!(v(8) > 1_300.0, "am {}", v(8));
        assert!(v(17) > 1_200.0, "pm {}", v(17));
        assert!(v(12) < v(8) && v(12) > v(3));
        assert!(v(22) < v(17));
        // Saturday is quieter in the morning.
        let sat = at(8, 0).timestamp_millis() + 5 * DAY_MS;
        assert!(p.vph(sat) < v(8));
    }

    #[test]
    fn events_are_ordered_plausible_and_classed_by_length() {
        let cfg = SimConfig::default();
        let evs: Vec<SimEvent> = Simulator::new(cfg, at(7, 30), at(7, 40)).collect();
        assert!(evs.len() > 500, "{}", evs.len());
        for w in evs.windows(2) {
            assert!(w[0].front_ms <= w[1].front_ms);
        }
        for e in &evs {
            assert_eq!(
                VehicleClass::from_length_m(e.event.length_m.unwrap()),
                e.class
            );
            let v = e.event.speed_kmh.unwrap();
            assert!((5.0..=200.0).contains(&v));
            assert!(e.occupancy_ms > 0 && e.occupancy_ms < 20_000);
        }
        // Per lane the zone is never occupied by two vehicles at once.
        for lane in 1..=3 {
            let l: Vec<_> = evs.iter().filter(|e| e.event.lane == lane).collect();
            for w in l.windows(2) {
                assert!(w[0].front_ms + i64::from(w[0].occupancy_ms) < w[1].front_ms);
            }
        }
    }

    #[test]
    fn an_incident_empties_its_lane_and_slows_the_others() {
        let mut cfg = SimConfig::default();
        cfg.incidents.push(Incident::new(2, at(8, 0), at(8, 30)));
        let during: Vec<SimEvent> = Simulator::new(cfg.clone(), at(8, 0), at(8, 30)).collect();
        assert!(during.iter().all(|e| e.event.lane != 2));
        let before: Vec<SimEvent> = Simulator::new(cfg, at(7, 30), at(8, 0)).collect();
        let mean = |v: &[SimEvent]| {
            v.iter().map(|e| e.event.speed_kmh.unwrap()).sum::<f32>() / v.len() as f32
        };
        assert!(mean(&during) < 0.5 * mean(&before));
    }
}
