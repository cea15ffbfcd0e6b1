//! Counters and the detector-health snapshot the daemon exposes on `/metrics`.

use chrono::{DateTime, Utc};

/// Aggregator-wide counters (monotonic, `*_total` in Prometheus terms) and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Vehicle events counted into a bin.
    pub events_accepted: u64,
    /// Interval reports counted into a bin.
    pub reports_accepted: u64,
    /// Observations whose bin had already been emitted: dropped, never re-opening a bin.
    pub late_dropped: u64,
    /// Observations for a detector id the aggregator does not know.
    pub unknown_detector: u64,
    /// Observations on a device lane the detector's lane map does not map.
    pub unmapped_lane: u64,
    /// A vehicle event on a lane fed by interval reports, or the other way round.
    pub kind_mismatch: u64,
    /// Reports whose interval does not divide the bin interval (or differs within a bin).
    pub interval_mismatch: u64,
    /// Reports for a sub-interval already received.
    pub duplicate_reports: u64,
    /// Figures ignored as impossible (negative, not finite, out of physical range).
    pub invalid_values: u64,
    /// Observations binned by box time because the device clock was off.
    pub skewed_observations: u64,
    /// Samples produced.
    pub bins_emitted: u64,
    /// Of which flagged NO_DATA.
    pub no_data_bins: u64,
    /// Bins closed before their watermark because a lane hit `max_open_bins_per_lane`.
    pub bins_forced_closed: u64,
    /// NO_DATA bins not emitted because a gap exceeded `max_catchup_bins` (clock jump).
    pub bins_skipped: u64,
    /// On-time (ms) that fell into already-emitted bins or beyond the open-bin cap.
    pub occupancy_clipped_ms: u64,
    /// Gauge: bins currently open over all lanes.
    pub open_bins: u64,
}

/// Health of one lane of one detector.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneHealth {
    /// Road lane.
    pub lane: u16,
    pub events_total: u64,
    pub late_total: u64,
    /// Headways shorter than `chatter_headway_ms` seen so far.
    pub chatter_total: u64,
    /// The last emitted bin had at least `chatter_per_bin` such headways.
    pub chattering: bool,
    /// Occupancy 1.0 for at least `locked_on_ms` up to the last emitted bin.
    pub locked_on: bool,
    /// The same non-zero occupancy for at least `constant_occ_bins` bins up to the last one.
    pub constant_occupancy: bool,
    /// No vehicle (or no non-zero report) for `no_hits_ms` while the lane was active.
    pub no_hits: bool,
    /// When the last vehicle (or non-zero report) was seen, box time.
    pub last_hit: Option<DateTime<Utc>>,
    pub open_bins: usize,
}

/// Health of one detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorHealth {
    pub site_id: String,
    pub detector_id: String,
    /// Observations (vehicles and reports) accepted or late, on mapped lanes.
    pub observations_total: u64,
    pub unmapped_lane_total: u64,
    pub decode_errors_total: u64,
    pub ring_drops_total: u64,
    /// Last observation's arrival, box time.
    pub last_observation: Option<DateTime<Utc>>,
    /// Last measured skew, box time minus device time, in ms (positive: device behind).
    pub clock_skew_ms: Option<i64>,
    /// Largest |skew| measured so far.
    pub max_abs_clock_skew_ms: i64,
    /// Observations whose skew exceeded `max_clock_skew_ms`.
    pub skewed_total: u64,
    pub lanes: Vec<LaneHealth>,
}

impl DetectorHealth {
    /// Any lane chattering.
    pub fn chatter(&self) -> bool {
        self.lanes.iter().any(|l| l.chattering)
    }

    pub fn locked_on(&self) -> bool {
        self.lanes.iter().any(|l| l.locked_on)
    }

    pub fn constant_occupancy(&self) -> bool {
        self.lanes.iter().any(|l| l.constant_occupancy)
    }

    pub fn no_hits(&self) -> bool {
        self.lanes.iter().any(|l| l.no_hits)
    }
}

/// A snapshot of everything the aggregator knows about its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub stats: AggregatorStats,
    pub detectors: Vec<DetectorHealth>,
}
