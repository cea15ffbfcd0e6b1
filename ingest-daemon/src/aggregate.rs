//! The aggregator: [`codecs::Observation`]s in, [`TrafficSample`]s out (DESIGN §3, §5).
//!
//! Pure and synchronous: no tokio, no clock reads. Every call carries its time: the box
//! arrival time of an observation, `now` for [`Aggregator::advance`]. Internally time is
//! UTC milliseconds since the epoch.
//!
//! # Identity and lanes
//! [`Aggregator::add_detector`] interns a (site, detector) with its [`LaneMap`] and returns
//! a small [`DetectorId`]; lanes are interned to indices at the same time, so the per-event
//! path is two vector indexings and a binary search over a handful of lanes, with no string
//! keys and no hashing.
//!
//! # Time, skew and bins
//! Bins are `[t, t + interval)` with `t` a multiple of `interval_s` since the UTC epoch
//! (30 s default; 60 and 300 allowed), one series per (detector, road lane).
//!
//! * A vehicle's on-time is `[front, front + occupancy)`. The device time of a
//!   [`VehicleEvent`] is taken as the front (the moment it entered the zone); a device
//!   reports the vehicle when it has left, so the box expects it at `front + occupancy`.
//!   The **measured skew** is `arrival − (device time + occupancy)`.
//! * Interval reports are expected at the end of their interval: skew is
//!   `arrival − (start + device interval)`. Polled devices are legitimately read late, so a
//!   report is skewed only when its skew lies outside `[−max, max + device interval]`.
//! * **Choice:** when |skew| ≤ `max_clock_skew_ms` the device time is used (it is the more
//!   precise one: no serial, ring or polling latency). Beyond that the device clock is not
//!   trusted: the observation is binned by box time (`arrival − occupancy` as the front;
//!   `arrival − device interval`, rounded to the device interval, as a report's start), the
//!   bin is flagged CLOCK_SKEW and the skew is exposed in [`DetectorHealth`]. The decision is
//!   per observation, so a device whose clock drifts over the limit moves to box time at
//!   once. Without a device time the box time is used and no skew is measured.
//! * A vehicle counts (volume, speed, length, class, headway) in the bin of its front; its
//!   on-time is split between the bins it covers, so a vehicle straddling a boundary adds
//!   only its part inside each bin to that bin's occupancy.
//! * **Watermark:** bin `[t, t + I)` is emitted by [`Aggregator::advance`] once
//!   `now ≥ t + I + allowed_lateness`. An observation for an emitted bin is late: counted
//!   ([`AggregatorStats::late_dropped`]) and dropped; bins never re-open.
//! * Once a lane has shown any activity its series is continuous: every bin up to the
//!   watermark is emitted, NO_DATA when nothing at all was known about it.
//!
//! # Missing is never zero
//! Per-vehicle sources say nothing when no vehicle passes, so silence alone cannot tell an
//! empty road from a dead link. The daemon calls [`Aggregator::mark_alive`] (or
//! [`Aggregator::mark_detector_alive`]) while the source is connected; each event counts as
//! such a mark too. Two marks at most `liveness_max_gap_ms` apart cover the time between
//! them. A per-vehicle bin then has `samples_expected = interval_s` and
//! `samples_received` = seconds covered (**deviation:** the sample's doc says 1 for
//! per-vehicle sources; seconds make `pct_observed` and the PeMS roll-up normalisation work
//! the same way for both kinds of source). A bin with neither events nor coverage is
//! NO_DATA with `volume = None`; a covered bin without vehicles has `volume = Some(0)`; a bin
//! covered less than 60 % is INSUFFICIENT and its volume a lower bound.
//!
//! Interval-report lanes: `samples_expected = interval / device interval`, `samples_received`
//! the distinct sub-intervals that arrived (duplicates dropped when ≤ 64 slots). Volume sums
//! what arrived (not normalised: `pct_observed` says how much that is), occupancy is the
//! mean of the received sub-intervals, speeds (and p85, headway, gap) are volume-weighted
//! (Σ v·q / Σ q). The p85 of several sub-intervals is thus an approximation. A report
//! interval must divide the bin interval; others are counted and dropped.
//!
//! A report without `interval_s` is taken to cover one whole bin; one without `start` is
//! placed by box time. Polled devices deliver a report some time after its interval ended:
//! `allowed_lateness_ms` must cover the polling delay.
//!
//! A lane is fed either by vehicle events or by interval reports, whichever comes first;
//! the other kind is counted ([`AggregatorStats::kind_mismatch`]) and dropped. Liveness
//! marks are ignored on report lanes (but, before a lane's first report, a mark makes its
//! bin look like a listened-to empty per-vehicle bin: do not mark report sources alive).
//!
//! # Per-vehicle formulas (DESIGN §3)
//! * volume = vehicles whose front is in the bin; flow_vph = volume · 3600 / interval_s.
//! * occupancy = Σ on-time clipped to the bin / interval; `None` when any vehicle of the bin
//!   lacked an on-time, or the device never gives on-times.
//! * speed_avg = arithmetic (time-mean) speed of vehicles with a measured speed; p85 by the
//!   **nearest-rank** method (the value at rank ⌈0.85·n⌉ of the sorted speeds);
//!   speed_count = vehicles with a measured speed.
//! * No measured speed but volume and occupancy > 0: g-factor estimate
//!   `speed_kmh = flow_vph · g_m / (occupancy · 1000)`, g = effective vehicle length
//!   (`g_factor_m`, default 6.7 m for loops); speed_source estimated, EST_SPEED, no p85.
//! * density = flow / speed (veh/km/lane); 0 for a bin known to be empty; LOS from density.
//! * headway: the device's own headway when it gives one (its clock is finer), else the
//!   time between consecutive fronts in the lane (continuity breaks at a NO_DATA bin);
//!   gap = headway − the previous vehicle's on-time (≥ 0); length_avg over vehicles with a
//!   length; classes from the device's class, else from `VehicleClass::from_length_m`.
//!
//! # Quality flags
//! NO_DATA; INSUFFICIENT (< `min_observed_pct`); HIGH_VOLUME (> 20 per 30 s, scaled by the
//! interval); HIGH_OCC (> 0.7); ZERO_FLOW_POS_OCC; LOCKED_ON (occupancy ≥ 0.999 in
//! consecutive bins totalling ≥ `locked_on_ms`, 2 min by default: flagged from the bin
//! completing the run onwards; earlier bins are already gone); CONSTANT_OCC (the same
//! non-zero occupancy, ±1e-6, in `constant_occ_bins` consecutive bins, 10 by default = 5 min
//! of 30 s bins; flagged from the N-th on); CRC_ERRORS and RING_DROPS (from
//! [`Aggregator::note_decode_error`] / [`Aggregator::note_ring_drops`], box time, on every
//! lane of the detector); CLOCK_SKEW; EST_SPEED.
//!
//! # Memory
//! Each lane holds at most `max_open_bins_per_lane` open bins (8 by default; normal
//! operation needs 2–3). Opening one more force-closes the oldest (counted in
//! [`AggregatorStats::bins_forced_closed`]); its sample waits in an internal queue until the
//! next [`Aggregator::advance`] or [`Aggregator::flush_all`]. Bins are recycled with their
//! buffers, so steady-state ingestion allocates nothing per event.
//!
//! # Shutdown
//! [`Aggregator::flush_all`] emits every open bin now. A bin cut short is not given a
//! special flag: its coverage stops at the last liveness mark, so a bin flushed early shows
//! a low `pct_observed` and INSUFFICIENT like any bin the source did not fully cover. Call
//! `advance(now)` before it to emit the NO_DATA bins already due.

mod bin;
mod health;
mod lane_map;

use std::collections::VecDeque;

use central_sync::{Los, Quality, SpeedSource, TrafficSample};
use chrono::{DateTime, Utc};
use codecs::model::{IntervalReport, Observation, VehicleClass, VehicleEvent};
use thiserror::Error;

use bin::{Bin, Figures};
pub use health::{AggregatorStats, DetectorHealth, Health, LaneHealth};
pub use lane_map::{LaneMap, LaneMapError};

/// Tuning of the aggregator. Every field's default is given in its doc.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatorConfig {
    /// The box producing the samples (goes into every sample). Default: empty.
    pub edge_id: String,
    /// Bin length in seconds; must divide a day. Default 30 (60 and 300 are the others the
    /// product uses).
    pub interval_s: u32,
    /// How long after its end a bin stays open for stragglers. Default 10 000 ms.
    pub allowed_lateness_ms: u32,
    /// Device vs box clock difference beyond which the device time is not trusted.
    /// Default 2 000 ms.
    pub max_clock_skew_ms: u32,
    /// Effective vehicle length (vehicle + zone) of the g-factor speed estimate.
    /// Default 6.7 m (single loops).
    pub g_factor_m: f32,
    /// Below this share of the bin observed, INSUFFICIENT. Default 60 %.
    pub min_observed_pct: f32,
    /// HIGH_VOLUME above this many vehicles per 30 s per lane (scaled to the interval).
    /// Default 20.
    pub high_volume_per_30s: u32,
    /// HIGH_OCC above this occupancy. Default 0.7.
    pub high_occupancy: f32,
    /// LOCKED_ON once occupancy is 1.0 for this long. Default 120 000 ms.
    pub locked_on_ms: u32,
    /// CONSTANT_OCC once the same non-zero occupancy repeats in this many consecutive bins.
    /// Default 10.
    pub constant_occ_bins: u32,
    /// Headways shorter than this are chatter. Default 300 ms.
    pub chatter_headway_ms: u32,
    /// A lane is chattering when a bin has at least this many chatter headways. Default 3.
    pub chatter_per_bin: u32,
    /// No hits for this long on an active lane is unhealthy. Default 30 min.
    pub no_hits_ms: u32,
    /// Two liveness marks at most this far apart cover the time between them.
    /// Default 10 000 ms.
    pub liveness_max_gap_ms: u32,
    /// Open bins per lane before the oldest is force-closed. Default 8, minimum 2.
    pub max_open_bins_per_lane: usize,
    /// A gap of more NO_DATA bins than this (a clock jump) is skipped, not emitted.
    /// Default 2 880 (a day of 30 s bins).
    pub max_catchup_bins: u32,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            edge_id: String::new(),
            interval_s: 30,
            allowed_lateness_ms: 10_000,
            max_clock_skew_ms: 2_000,
            g_factor_m: 6.7,
            min_observed_pct: 60.0,
            high_volume_per_30s: 20,
            high_occupancy: 0.7,
            locked_on_ms: 120_000,
            constant_occ_bins: 10,
            chatter_headway_ms: 300,
            chatter_per_bin: 3,
            no_hits_ms: 30 * 60 * 1000,
            liveness_max_gap_ms: 10_000,
            max_open_bins_per_lane: 8,
            max_catchup_bins: 2_880,
        }
    }
}

/// A configuration the aggregator refuses.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    #[error("interval_s must be positive and divide 86400, got {0}")]
    Interval(u32),
    #[error("max_open_bins_per_lane must be at least 2, got {0}")]
    OpenBins(usize),
    #[error("g_factor_m must be a positive length in metres, got {0}")]
    GFactor(f32),
    #[error("constant_occ_bins must be at least 2, got {0}")]
    ConstantOccBins(u32),
}

impl AggregatorConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_s == 0 || 86_400 % self.interval_s != 0 {
            return Err(ConfigError::Interval(self.interval_s));
        }
        if self.max_open_bins_per_lane < 2 {
            return Err(ConfigError::OpenBins(self.max_open_bins_per_lane));
        }
        if !(self.g_factor_m.is_finite() && self.g_factor_m > 0.0) {
            return Err(ConfigError::GFactor(self.g_factor_m));
        }
        if self.constant_occ_bins < 2 {
            return Err(ConfigError::ConstantOccBins(self.constant_occ_bins));
        }
        Ok(())
    }
}

/// An interned detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DetectorId(u32);

impl DetectorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What became of one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Its bin was already emitted.
    Late,
    UnknownDetector,
    UnmappedLane,
    /// The lane is fed by the other kind of observation.
    KindMismatch,
    /// A report whose interval does not fit the bin interval.
    IntervalMismatch,
    /// A report for a sub-interval already received.
    Duplicate,
}

const LOCKED_OCC: f32 = 0.999;
const CONSTANT_OCC_EPS: f32 = 1e-6;
/// Detector-level marks (CRC errors, ring drops) remembered per detector, by bin.
const DETECTOR_MARKS: usize = 16;

/// Plausible ranges: anything outside is a decoding or device fault, not a vehicle.
const MAX_SPEED_KMH: f32 = 400.0;
const MAX_LENGTH_M: f32 = 60.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneKind {
    Unknown,
    Vehicles,
    Reports,
}

#[derive(Debug)]
struct Detector {
    site_id: String,
    detector_id: String,
    /// (device lane, lane index), sorted by device lane.
    device_lanes: Vec<(u16, u32)>,
    /// (road lane, lane index), sorted by road lane.
    road_lanes: Vec<(u16, u32)>,
    /// (bin start, decode errors, ring drops), oldest first.
    marks: Vec<(i64, u32, u32)>,
    observations: u64,
    unmapped: u64,
    decode_errors: u64,
    ring_drops: u64,
    last_observation: Option<i64>,
    last_skew: Option<i64>,
    max_abs_skew: i64,
    skewed: u64,
}

impl Detector {
    fn lane_index(&self, device_lane: u16) -> Option<usize> {
        let i = self
            .device_lanes
            .binary_search_by_key(&device_lane, |p| p.0)
            .ok()?;
        self.device_lanes.get(i).map(|p| p.1 as usize)
    }

    fn mark(&mut self, bin_start: i64) -> Option<&mut (i64, u32, u32)> {
        let pos = match self.marks.iter().position(|m| m.0 == bin_start) {
            Some(pos) => pos,
            None => {
                if self.marks.len() >= DETECTOR_MARKS {
                    self.marks.remove(0);
                }
                self.marks.push((bin_start, 0, 0));
                self.marks.len() - 1
            }
        };
        self.marks.get_mut(pos)
    }

    fn marks_at(&self, bin_start: i64) -> (u32, u32) {
        self.marks
            .iter()
            .find(|m| m.0 == bin_start)
            .map_or((0, 0), |m| (m.1, m.2))
    }

    fn record_skew(&mut self, skew: i64, skewed: bool) {
        self.last_skew = Some(skew);
        self.max_abs_skew = self.max_abs_skew.max(skew.saturating_abs());
        if skewed {
            self.skewed += 1;
        }
    }
}

/// Derived constants of the configuration, in ms.
#[derive(Debug)]
struct Settings {
    cfg: AggregatorConfig,
    interval_ms: i64,
    lateness_ms: i64,
    max_skew_ms: i64,
    liveness_gap_ms: i64,
}

impl Settings {
    fn bin_start(&self, t: i64) -> i64 {
        t - t.rem_euclid(self.interval_ms)
    }
}

/// Where emitted samples go, with what they need from outside the lane.
struct Sink<'a> {
    det: &'a Detector,
    out: &'a mut Vec<TrafficSample>,
    stats: &'a mut AggregatorStats,
}

#[derive(Debug)]
struct Lane {
    detector: u32,
    road_lane: u16,
    kind: LaneKind,
    /// Start of the first bin not yet emitted; `None` until the lane shows activity.
    next_emit: Option<i64>,
    /// Open bins, ascending by start, all ≥ `next_emit`.
    bins: VecDeque<Bin>,
    /// Closed bins kept for reuse.
    pool: Vec<Bin>,
    last_mark: Option<i64>,
    prev_front: Option<i64>,
    prev_occ_ms: Option<u32>,
    reports_occupancy: bool,
    locked_run_ms: i64,
    const_occ: Option<f32>,
    const_run: u32,
    // health
    events: u64,
    late: u64,
    chatter: u64,
    chattering: bool,
    locked_on: bool,
    constant_occ: bool,
    first_activity: Option<i64>,
    last_hit: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
enum Spread {
    Occupancy,
    Alive,
}

impl Lane {
    fn new(detector: u32, road_lane: u16) -> Self {
        Self {
            detector,
            road_lane,
            kind: LaneKind::Unknown,
            next_emit: None,
            bins: VecDeque::new(),
            pool: Vec::new(),
            last_mark: None,
            prev_front: None,
            prev_occ_ms: None,
            reports_occupancy: false,
            locked_run_ms: 0,
            const_occ: None,
            const_run: 0,
            events: 0,
            late: 0,
            chatter: 0,
            chattering: false,
            locked_on: false,
            constant_occ: false,
            first_activity: None,
            last_hit: None,
        }
    }

    /// The position of the open bin starting at `start`, opening it if needed; `None` when
    /// that bin was already emitted.
    fn open_bin(&mut self, s: &Settings, start: i64, sink: &mut Sink<'_>) -> Option<usize> {
        let next = *self.next_emit.get_or_insert(start);
        if start < next {
            return None;
        }
        let mut pos = 0;
        for (i, b) in self.bins.iter().enumerate().rev() {
            if b.start == start {
                return Some(i);
            }
            if b.start < start {
                pos = i + 1;
                break;
            }
        }
        if self.bins.len() >= s.cfg.max_open_bins_per_lane {
            let oldest_end = self.bins.front().map_or(start, |b| b.start + s.interval_ms);
            sink.stats.bins_forced_closed += 1;
            self.emit_until(s, oldest_end, sink);
            if self.next_emit.is_some_and(|n| start < n) {
                return None;
            }
            pos = pos.saturating_sub(1);
        }
        let mut bin = self.pool.pop().unwrap_or_default();
        bin.reset(start);
        self.bins.insert(pos, bin);
        sink.stats.open_bins += 1;
        Some(pos)
    }

    /// Adds the span `[a, b)` to the bins it covers; returns the ms that found no open bin.
    fn spread(&mut self, s: &Settings, a: i64, b: i64, what: Spread, sink: &mut Sink<'_>) -> i64 {
        let mut lost = 0;
        let mut start = s.bin_start(a);
        let mut bins_touched = 0;
        while start < b {
            let part = b.min(start + s.interval_ms) - a.max(start);
            if bins_touched >= s.cfg.max_open_bins_per_lane {
                lost += part;
            } else if let Some(bin) = self
                .open_bin(s, start, sink)
                .and_then(|i| self.bins.get_mut(i))
            {
                match what {
                    Spread::Occupancy => {
                        bin.veh.occ_ms += part;
                        bin.touched = true;
                    }
                    Spread::Alive => bin.alive_ms += part,
                }
            } else {
                lost += part;
            }
            bins_touched += 1;
            start += s.interval_ms;
        }
        lost
    }

    /// The source was listening at `t`; with the previous mark close enough, all along.
    fn mark(&mut self, s: &Settings, t: i64, sink: &mut Sink<'_>) {
        // A report lane's coverage is the reports themselves.
        if self.kind == LaneKind::Reports {
            return;
        }
        self.first_activity.get_or_insert(t);
        match self.last_mark {
            Some(p) if t <= p => return,
            Some(p) if t - p <= s.liveness_gap_ms => {
                self.spread(s, p, t, Spread::Alive, sink);
            }
            // The first mark after a silence covers only an instant, but it opens the bin so
            // that the lane's series starts.
            _ => {
                self.open_bin(s, s.bin_start(t), sink);
            }
        }
        self.last_mark = Some(t);
    }

    /// Emits every bin starting before `end`.
    fn emit_until(&mut self, s: &Settings, end: i64, sink: &mut Sink<'_>) {
        let Some(mut next) = self.next_emit else {
            return;
        };
        while next < end {
            let first_open = self.bins.front().map(|b| b.start);
            if first_open == Some(next) {
                if let Some(mut bin) = self.bins.pop_front() {
                    sink.stats.open_bins = sink.stats.open_bins.saturating_sub(1);
                    let sample = self.finish(s, next, Some(&mut bin), sink);
                    sink.out.push(sample);
                    self.pool.push(bin);
                }
            } else {
                // A run of bins nobody said anything about, up to the next open bin or `end`.
                let upto = first_open.map_or(end, |f| f.min(end));
                let missing = (upto - next) / s.interval_ms;
                let max = i64::from(s.cfg.max_catchup_bins);
                if missing > max {
                    let skipped = missing - max;
                    sink.stats.bins_skipped += skipped.unsigned_abs();
                    next += skipped * s.interval_ms;
                    continue;
                }
                let sample = self.finish(s, next, None, sink);
                sink.out.push(sample);
            }
            next += s.interval_ms;
        }
        self.next_emit = Some(next);
    }

    /// The sample of bin `start`; updates the lane's run state (locked-on, constant
    /// occupancy, chatter, headway continuity).
    fn finish(
        &mut self,
        s: &Settings,
        start: i64,
        bin: Option<&mut Bin>,
        sink: &mut Sink<'_>,
    ) -> TrafficSample {
        let cfg = &s.cfg;
        let mut quality = Quality::empty();
        let fig = match bin {
            Some(bin) => {
                if bin.skewed {
                    quality |= Quality::CLOCK_SKEW;
                }
                self.chattering = bin.chatter >= cfg.chatter_per_bin;
                match self.kind {
                    LaneKind::Reports => bin::report_figures(bin),
                    _ => bin::vehicle_figures(bin, s.interval_ms, self.reports_occupancy),
                }
            }
            None => Figures {
                expected: match self.kind {
                    LaneKind::Reports => 1,
                    _ => cfg.interval_s,
                },
                ..Figures::default()
            },
        };
        let (errors, drops) = sink.det.marks_at(start);
        if errors > 0 {
            quality |= Quality::CRC_ERRORS;
        }
        if drops > 0 {
            quality |= Quality::RING_DROPS;
        }
        sink.stats.bins_emitted += 1;

        if !fig.has_data {
            quality |= Quality::NO_DATA;
            sink.stats.no_data_bins += 1;
            self.prev_front = None;
            self.prev_occ_ms = None;
            self.locked_run_ms = 0;
            self.const_occ = None;
            self.const_run = 0;
            self.locked_on = false;
            self.constant_occ = false;
            self.chattering = false;
        }
        if fig.has_data && fig.pct < cfg.min_observed_pct {
            quality |= Quality::INSUFFICIENT;
        }

        let flow = fig
            .volume
            .map(|v| v as f32 * 3600.0 / cfg.interval_s as f32);
        let occ = fig.occupancy;

        let (speed_avg, speed_p85, speed_source) = if let Some(v) = fig.speed_avg {
            (Some(v), fig.speed_p85, SpeedSource::Measured)
        } else if let (Some(q), Some(o)) = (flow, occ)
            && q > 0.0
            && o > 0.0
        {
            quality |= Quality::EST_SPEED;
            (
                Some(q * cfg.g_factor_m / (o * 1000.0)),
                None,
                SpeedSource::Estimated,
            )
        } else {
            (None, None, SpeedSource::None)
        };
        let density = match (flow, speed_avg) {
            (Some(q), Some(v)) if v > 0.0 => Some(q / v),
            _ if fig.volume == Some(0) && occ.is_none_or(|o| o <= 0.0) => Some(0.0),
            _ => None,
        };

        if let Some(v) = fig.volume
            && u64::from(v) * 30 > u64::from(cfg.high_volume_per_30s) * u64::from(cfg.interval_s)
        {
            quality |= Quality::HIGH_VOLUME;
        }
        if let Some(o) = occ {
            if o > cfg.high_occupancy {
                quality |= Quality::HIGH_OCC;
            }
            if fig.volume == Some(0) && o > 0.0 {
                quality |= Quality::ZERO_FLOW_POS_OCC;
            }
        }

        // Run state across consecutive bins.
        if fig.has_data {
            match occ {
                Some(o) if o >= LOCKED_OCC => self.locked_run_ms += s.interval_ms,
                _ => self.locked_run_ms = 0,
            }
            self.locked_on = self.locked_run_ms >= i64::from(cfg.locked_on_ms);
            match (occ, self.const_occ) {
                (Some(o), Some(prev)) if o > 0.0 && (o - prev).abs() <= CONSTANT_OCC_EPS => {
                    self.const_run += 1;
                }
                (Some(o), _) if o > 0.0 => {
                    self.const_occ = Some(o);
                    self.const_run = 1;
                }
                _ => {
                    self.const_occ = None;
                    self.const_run = 0;
                }
            }
            self.constant_occ = self.const_run >= cfg.constant_occ_bins;
        }
        if self.locked_on {
            quality |= Quality::LOCKED_ON;
        }
        if self.constant_occ {
            quality |= Quality::CONSTANT_OCC;
        }

        TrafficSample {
            site_id: sink.det.site_id.clone(),
            detector_id: sink.det.detector_id.clone(),
            lane: self.road_lane,
            bucket_start: to_datetime(start),
            interval_s: cfg.interval_s,
            volume: fig.volume,
            flow_vph: flow,
            occupancy: occ,
            speed_avg_kmh: speed_avg,
            speed_p85_kmh: speed_p85,
            speed_count: fig.speed_count,
            speed_source,
            density_vpkm: density,
            headway_avg_s: fig.headway_s,
            gap_avg_s: fig.gap_s,
            length_avg_m: fig.length_m,
            class_counts: fig.classes,
            los: density.map(Los::from_density_vpkm),
            samples_expected: fig.expected,
            samples_received: fig.received,
            pct_observed: fig.pct.clamp(0.0, 100.0),
            quality,
            edge_id: cfg.edge_id.clone(),
        }
    }
}

fn to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn valid(v: Option<f32>, max: f32, invalid: &mut u64) -> Option<f32> {
    match v {
        Some(x) if x.is_finite() && (0.0..=max).contains(&x) => Some(x),
        Some(_) => {
            *invalid += 1;
            None
        }
        None => None,
    }
}

/// Turns observations into traffic samples; see the module documentation.
#[derive(Debug)]
pub struct Aggregator {
    s: Settings,
    detectors: Vec<Detector>,
    lanes: Vec<Lane>,
    /// Samples of force-closed bins, handed out by the next `advance` / `flush_all`.
    ready: Vec<TrafficSample>,
    stats: AggregatorStats,
}

impl Aggregator {
    pub fn new(cfg: AggregatorConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let s = Settings {
            interval_ms: i64::from(cfg.interval_s) * 1000,
            lateness_ms: i64::from(cfg.allowed_lateness_ms),
            max_skew_ms: i64::from(cfg.max_clock_skew_ms),
            liveness_gap_ms: i64::from(cfg.liveness_max_gap_ms),
            cfg,
        };
        Ok(Self {
            s,
            detectors: Vec::new(),
            lanes: Vec::new(),
            ready: Vec::new(),
            stats: AggregatorStats::default(),
        })
    }

    pub fn config(&self) -> &AggregatorConfig {
        &self.s.cfg
    }

    /// Interns a detector with its lane map. Adding the same (site, detector) again returns
    /// the same id and keeps the first lane map.
    pub fn add_detector(
        &mut self,
        site_id: &str,
        detector_id: &str,
        lanes: &LaneMap,
    ) -> DetectorId {
        if let Some(i) = self
            .detectors
            .iter()
            .position(|d| d.site_id == site_id && d.detector_id == detector_id)
        {
            return DetectorId(u32::try_from(i).unwrap_or(u32::MAX));
        }
        let det = u32::try_from(self.detectors.len()).unwrap_or(u32::MAX);
        let mut road_lanes = Vec::new();
        for road in lanes.road_lanes() {
            let idx = u32::try_from(self.lanes.len()).unwrap_or(u32::MAX);
            self.lanes.push(Lane::new(det, road));
            road_lanes.push((road, idx));
        }
        let device_lanes = lanes
            .pairs()
            .iter()
            .filter_map(|&(dev, road)| {
                road_lanes
                    .iter()
                    .find(|r| r.0 == road)
                    .map(|&(_, idx)| (dev, idx))
            })
            .collect();
        self.detectors.push(Detector {
            site_id: site_id.to_owned(),
            detector_id: detector_id.to_owned(),
            device_lanes,
            road_lanes,
            marks: Vec::new(),
            observations: 0,
            unmapped: 0,
            decode_errors: 0,
            ring_drops: 0,
            last_observation: None,
            last_skew: None,
            max_abs_skew: 0,
            skewed: 0,
        });
        DetectorId(det)
    }

    /// Starts the series of every lane of the detector at `now`'s bin even before anything
    /// arrives, so that a detector that never connects still yields NO_DATA rows.
    pub fn open_series(&mut self, det: DetectorId, now: DateTime<Utc>) {
        let start = self.s.bin_start(now.timestamp_millis());
        if let Some(d) = self.detectors.get(det.index()) {
            for &(_, idx) in &d.road_lanes {
                if let Some(lane) = self.lanes.get_mut(idx as usize) {
                    lane.next_emit.get_or_insert(start);
                    lane.first_activity.get_or_insert(start);
                }
            }
        }
    }

    /// Resumes a lane's series where an earlier run left it: the next bin to emit is the
    /// one holding `at`. Called before [`Self::open_series`] when a restart replays
    /// observations: events of bins before `at` (already spooled) are then late and
    /// dropped, and bins between the crash and now are emitted (NO_DATA when nothing
    /// covers them) rather than skipped. Does nothing once the lane's series has started.
    pub fn resume_series(&mut self, det: DetectorId, road_lane: u16, at: DateTime<Utc>) {
        let start = self.s.bin_start(at.timestamp_millis());
        let Some(d) = self.detectors.get(det.index()) else {
            return;
        };
        for &(road, idx) in &d.road_lanes {
            if road == road_lane
                && let Some(lane) = self.lanes.get_mut(idx as usize)
            {
                lane.next_emit.get_or_insert(start);
                lane.first_activity.get_or_insert(start);
            }
        }
    }

    /// Feeds one observation of a detector, with its box arrival time.
    pub fn observe(
        &mut self,
        det: DetectorId,
        obs: &Observation,
        arrival: DateTime<Utc>,
    ) -> Outcome {
        match obs {
            Observation::Vehicle(ev) => self.vehicle(det, ev, arrival),
            Observation::Interval(rep) => self.interval(det, rep, arrival),
        }
    }

    /// Feeds one vehicle event (its `lane` is the device lane), with its box arrival time.
    pub fn vehicle(
        &mut self,
        det: DetectorId,
        ev: &VehicleEvent,
        arrival: DateTime<Utc>,
    ) -> Outcome {
        let s = &self.s;
        let stats = &mut self.stats;
        let Some(d) = self.detectors.get_mut(det.index()) else {
            stats.unknown_detector += 1;
            return Outcome::UnknownDetector;
        };
        let Some(lane) = d.lane_index(ev.lane).and_then(|i| self.lanes.get_mut(i)) else {
            d.unmapped += 1;
            stats.unmapped_lane += 1;
            return Outcome::UnmappedLane;
        };
        if lane.kind == LaneKind::Reports {
            stats.kind_mismatch += 1;
            return Outcome::KindMismatch;
        }
        let arrival_ms = arrival.timestamp_millis();
        let occ = ev.occupancy_ms;
        let occ_ms = i64::from(occ.unwrap_or(0));
        let (front, skewed) = match ev.time {
            Some(t) => {
                let t = t.timestamp_millis();
                let skew = arrival_ms - (t + occ_ms);
                let skewed = skew.saturating_abs() > s.max_skew_ms;
                d.record_skew(skew, skewed);
                if skewed {
                    stats.skewed_observations += 1;
                    (arrival_ms - occ_ms, true)
                } else {
                    (t, false)
                }
            }
            None => (arrival_ms - occ_ms, false),
        };
        d.observations += 1;
        d.last_observation = Some(arrival_ms);
        lane.events += 1;

        // A lane's series starts with its first activity; the front may be in the bin before
        // the arrival's, so the series must start there rather than at the liveness mark.
        lane.next_emit
            .get_or_insert(s.bin_start(front.min(arrival_ms)));
        let d = &*d;
        let mut sink = Sink {
            det: d,
            out: &mut self.ready,
            stats,
        };
        lane.mark(s, arrival_ms, &mut sink);
        let start = s.bin_start(front);
        let Some(idx) = lane.open_bin(s, start, &mut sink) else {
            lane.late += 1;
            sink.stats.late_dropped += 1;
            return Outcome::Late;
        };
        lane.kind = LaneKind::Vehicles;

        let mut invalid = 0;
        let speed = valid(ev.speed_kmh, MAX_SPEED_KMH, &mut invalid);
        let length = valid(ev.length_m, MAX_LENGTH_M, &mut invalid);
        sink.stats.invalid_values += invalid;

        // Headway: the device's own when given, else from consecutive fronts in order.
        let headway = ev
            .headway_ms
            .map(i64::from)
            .or_else(|| lane.prev_front.filter(|&p| front >= p).map(|p| front - p));
        let gap = headway.and_then(|h| lane.prev_occ_ms.map(|o| (h - i64::from(o)).max(0)));
        if lane.prev_front.is_none_or(|p| front >= p) {
            lane.prev_front = Some(front);
            lane.prev_occ_ms = occ;
        }
        let chatter = headway.is_some_and(|h| h < i64::from(s.cfg.chatter_headway_ms));
        if chatter {
            lane.chatter += 1;
        }
        lane.reports_occupancy |= occ.is_some();
        lane.last_hit = Some(arrival_ms);

        let class = ev.class.or_else(|| length.map(VehicleClass::from_length_m));
        let Some(bin) = lane.bins.get_mut(idx) else {
            return Outcome::Late;
        };
        bin.touched = true;
        bin.skewed |= skewed;
        bin.chatter += u32::from(chatter);
        let v = &mut bin.veh;
        v.volume += 1;
        if let Some(sp) = speed {
            v.speeds.push(sp);
            v.speed_sum += f64::from(sp);
        }
        if let Some(l) = length {
            v.length_sum += f64::from(l);
            v.length_n += 1;
        }
        if let Some(c) = class
            && let Some(n) = v.classes.get_mut(c.index())
        {
            *n += 1;
            v.classified += 1;
        }
        if let Some(h) = headway {
            v.headway_sum_ms += h as f64;
            v.headway_n += 1;
        }
        if let Some(g) = gap {
            v.gap_sum_ms += g as f64;
            v.gap_n += 1;
        }
        if occ.is_none() {
            v.occ_missing += 1;
        }
        if occ_ms > 0 {
            let lost = lane.spread(s, front, front + occ_ms, Spread::Occupancy, &mut sink);
            sink.stats.occupancy_clipped_ms += lost.unsigned_abs();
        }
        sink.stats.events_accepted += 1;
        Outcome::Accepted
    }

    /// Feeds one interval report (its `lane` is the device lane), with its box arrival time.
    pub fn interval(
        &mut self,
        det: DetectorId,
        rep: &IntervalReport,
        arrival: DateTime<Utc>,
    ) -> Outcome {
        let s = &self.s;
        let stats = &mut self.stats;
        let Some(d) = self.detectors.get_mut(det.index()) else {
            stats.unknown_detector += 1;
            return Outcome::UnknownDetector;
        };
        let Some(lane) = d.lane_index(rep.lane).and_then(|i| self.lanes.get_mut(i)) else {
            d.unmapped += 1;
            stats.unmapped_lane += 1;
            return Outcome::UnmappedLane;
        };
        if lane.kind == LaneKind::Vehicles {
            stats.kind_mismatch += 1;
            return Outcome::KindMismatch;
        }
        let dev_ms = i64::from(rep.interval_s.unwrap_or(s.cfg.interval_s)) * 1000;
        if dev_ms <= 0 || dev_ms > s.interval_ms || s.interval_ms % dev_ms != 0 {
            stats.interval_mismatch += 1;
            return Outcome::IntervalMismatch;
        }
        let arrival_ms = arrival.timestamp_millis();
        // By box time: the interval that just ended, snapped to the device interval so that
        // jittery arrivals do not land two reports in one slot.
        let by_box = || {
            let t = arrival_ms - dev_ms;
            (t + dev_ms / 2).div_euclid(dev_ms) * dev_ms
        };
        let (start, skewed) = match rep.start {
            Some(t) => {
                let t = t.timestamp_millis();
                let skew = arrival_ms - (t + dev_ms);
                let skewed = skew < -s.max_skew_ms || skew > s.max_skew_ms + dev_ms;
                d.record_skew(skew, skewed);
                if skewed {
                    stats.skewed_observations += 1;
                    (by_box(), true)
                } else {
                    (t, false)
                }
            }
            None => (by_box(), false),
        };
        d.observations += 1;
        d.last_observation = Some(arrival_ms);
        lane.events += 1;
        lane.first_activity.get_or_insert(arrival_ms);

        let d = &*d;
        let mut sink = Sink {
            det: d,
            out: &mut self.ready,
            stats,
        };
        let bin_start = s.bin_start(start);
        let Some(bin) = lane
            .open_bin(s, bin_start, &mut sink)
            .and_then(|i| lane.bins.get_mut(i))
        else {
            lane.late += 1;
            sink.stats.late_dropped += 1;
            return Outcome::Late;
        };
        let r = &mut bin.rep;
        if r.received == 0 {
            r.device_interval_ms = dev_ms;
            r.expected = u32::try_from(s.interval_ms / dev_ms).unwrap_or(1);
        } else if r.device_interval_ms != dev_ms {
            sink.stats.interval_mismatch += 1;
            return Outcome::IntervalMismatch;
        }
        let slot = (start - bin_start) / dev_ms;
        if r.expected <= 64 {
            let bit = 1u64 << slot.clamp(0, 63);
            if r.slots & bit != 0 {
                sink.stats.duplicate_reports += 1;
                return Outcome::Duplicate;
            }
            r.slots |= bit;
        }
        r.received = (r.received + 1).min(r.expected);
        bin.skewed |= skewed;
        lane.kind = LaneKind::Reports;

        let mut invalid = 0;
        let volume = rep.volume;
        if let Some(v) = volume {
            r.volume += u64::from(v);
            r.volume_n += 1;
            if v > 0 {
                lane.last_hit = Some(arrival_ms);
            }
        }
        // Devices round: up to 100.5 % is read as full occupancy.
        if let Some(o) = valid(rep.occupancy, 1.005, &mut invalid) {
            r.occ_sum += f64::from(o.min(1.0));
            r.occ_n += 1;
        }
        if let Some(v) = valid(rep.speed_avg_kmh, MAX_SPEED_KMH, &mut invalid) {
            r.speed.add(v, volume);
        }
        if let Some(v) = valid(rep.speed_p85_kmh, MAX_SPEED_KMH, &mut invalid) {
            r.p85.add(v, volume);
        }
        if let Some(v) = valid(rep.headway_avg_s, f32::MAX, &mut invalid) {
            r.headway.add(v, volume);
        }
        if let Some(v) = valid(rep.gap_avg_s, f32::MAX, &mut invalid) {
            r.gap.add(v, volume);
        }
        if let Some(c) = rep.class_counts {
            for (acc, n) in r.classes.iter_mut().zip(c) {
                *acc += n;
            }
            r.classes_n += 1;
        }
        sink.stats.invalid_values += invalid;
        sink.stats.reports_accepted += 1;
        Outcome::Accepted
    }

    /// The source of this road lane was connected and listening at `until`.
    pub fn mark_alive(&mut self, det: DetectorId, road_lane: u16, until: DateTime<Utc>) {
        let Some(d) = self.detectors.get(det.index()) else {
            return;
        };
        let Some(&(_, idx)) = d.road_lanes.iter().find(|r| r.0 == road_lane) else {
            return;
        };
        if let Some(lane) = self.lanes.get_mut(idx as usize) {
            let mut sink = Sink {
                det: d,
                out: &mut self.ready,
                stats: &mut self.stats,
            };
            lane.mark(&self.s, until.timestamp_millis(), &mut sink);
        }
    }

    /// Every lane of the detector was listening at `until` (the usual call: a serial port or
    /// MQTT session is per detector).
    pub fn mark_detector_alive(&mut self, det: DetectorId, until: DateTime<Utc>) {
        let Some(d) = self.detectors.get(det.index()) else {
            return;
        };
        let t = until.timestamp_millis();
        let mut sink = Sink {
            det: d,
            out: &mut self.ready,
            stats: &mut self.stats,
        };
        for &(_, idx) in &d.road_lanes {
            if let Some(lane) = self.lanes.get_mut(idx as usize) {
                lane.mark(&self.s, t, &mut sink);
            }
        }
    }

    /// Frames of this detector failed to decode at `time` (box time): its bins get
    /// CRC_ERRORS.
    pub fn note_decode_error(&mut self, det: DetectorId, time: DateTime<Utc>) {
        let start = self.s.bin_start(time.timestamp_millis());
        if let Some(d) = self.detectors.get_mut(det.index()) {
            d.decode_errors += 1;
            if let Some(m) = d.mark(start) {
                m.1 = m.1.saturating_add(1);
            }
        }
    }

    /// `n` events of this detector were dropped on a full ring at `time` (box time): its bins
    /// get RING_DROPS (their volume is a lower bound).
    pub fn note_ring_drops(&mut self, det: DetectorId, n: u64, time: DateTime<Utc>) {
        if n == 0 {
            return;
        }
        let start = self.s.bin_start(time.timestamp_millis());
        if let Some(d) = self.detectors.get_mut(det.index()) {
            d.ring_drops += n;
            if let Some(m) = d.mark(start) {
                m.2 = m.2.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }

    /// Emits, into `out`, every bin whose watermark `now` has passed
    /// (`now ≥ start + interval + allowed_lateness`), plus any force-closed ones.
    pub fn advance(&mut self, now: DateTime<Utc>, out: &mut Vec<TrafficSample>) {
        out.append(&mut self.ready);
        let s = &self.s;
        let horizon = now.timestamp_millis() - s.interval_ms - s.lateness_ms;
        let end = s.bin_start(horizon) + s.interval_ms;
        for lane in &mut self.lanes {
            let Some(d) = self.detectors.get(lane.detector as usize) else {
                continue;
            };
            let mut sink = Sink {
                det: d,
                out,
                stats: &mut self.stats,
            };
            lane.emit_until(s, end, &mut sink);
        }
    }

    /// Emits every open bin now, complete or not (shutdown). See the module documentation.
    pub fn flush_all(&mut self, out: &mut Vec<TrafficSample>) {
        out.append(&mut self.ready);
        let s = &self.s;
        for lane in &mut self.lanes {
            let Some(end) = lane.bins.back().map(|b| b.start + s.interval_ms) else {
                continue;
            };
            let Some(d) = self.detectors.get(lane.detector as usize) else {
                continue;
            };
            let mut sink = Sink {
                det: d,
                out,
                stats: &mut self.stats,
            };
            lane.emit_until(s, end, &mut sink);
        }
    }

    pub fn stats(&self) -> &AggregatorStats {
        &self.stats
    }

    /// A snapshot for `/metrics`; `now` decides the no-hits state.
    pub fn health(&self, now: DateTime<Utc>) -> Health {
        let now = now.timestamp_millis();
        let no_hits_ms = i64::from(self.s.cfg.no_hits_ms);
        let detectors = self
            .detectors
            .iter()
            .map(|d| DetectorHealth {
                site_id: d.site_id.clone(),
                detector_id: d.detector_id.clone(),
                observations_total: d.observations,
                unmapped_lane_total: d.unmapped,
                decode_errors_total: d.decode_errors,
                ring_drops_total: d.ring_drops,
                last_observation: d.last_observation.map(to_datetime),
                clock_skew_ms: d.last_skew,
                max_abs_clock_skew_ms: d.max_abs_skew,
                skewed_total: d.skewed,
                lanes: d
                    .road_lanes
                    .iter()
                    .filter_map(|&(_, idx)| self.lanes.get(idx as usize))
                    .map(|l| LaneHealth {
                        lane: l.road_lane,
                        events_total: l.events,
                        late_total: l.late,
                        chatter_total: l.chatter,
                        chattering: l.chattering,
                        locked_on: l.locked_on,
                        constant_occupancy: l.constant_occ,
                        no_hits: l
                            .last_hit
                            .or(l.first_activity)
                            .is_some_and(|t| now - t >= no_hits_ms),
                        last_hit: l.last_hit.map(to_datetime),
                        open_bins: l.bins.len(),
                    })
                    .collect(),
            })
            .collect();
        Health {
            stats: self.stats.clone(),
            detectors,
        }
    }
}
