//! The traffic sample: one row per (site, detector, lane, interval). Units are SI as the
//! product reports them (km/h, metres, seconds, fractions); names follow FIWARE
//! `TrafficFlowObserved` where one exists. `None` means "not observed", never zero.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

bitflags::bitflags! {
    /// Quality flags of a sample (DESIGN §3). Stored as an integer bitmask.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
    pub struct Quality: u32 {
        /// Nothing was received for the bin.
        const NO_DATA = 1 << 0;
        /// Less than 60 % of the expected sub-samples arrived.
        const INSUFFICIENT = 1 << 1;
        /// More than 20 vehicles per 30 s per lane: implausible.
        const HIGH_VOLUME = 1 << 2;
        /// Occupancy above 0.7.
        const HIGH_OCC = 1 << 3;
        /// No vehicles counted but the zone was occupied.
        const ZERO_FLOW_POS_OCC = 1 << 4;
        /// Occupancy 1.0 for two minutes or more: the detector is stuck on.
        const LOCKED_ON = 1 << 5;
        /// The same non-zero occupancy bin after bin: a stuck value.
        const CONSTANT_OCC = 1 << 6;
        /// Frames with checksum errors arrived from this source during the bin.
        const CRC_ERRORS = 1 << 7;
        /// The device clock differs from the box clock beyond the allowed skew.
        const CLOCK_SKEW = 1 << 8;
        /// Speeds were estimated from occupancy and volume (g-factor), not measured.
        const EST_SPEED = 1 << 9;
        /// Events were dropped on a full ring during the bin: volume is a lower bound.
        const RING_DROPS = 1 << 10;
    }
}

/// Where the speed figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeedSource {
    Measured,
    /// g-factor method from occupancy and volume.
    Estimated,
    None,
}

impl SpeedSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Measured => "measured",
            Self::Estimated => "estimated",
            Self::None => "none",
        }
    }
}

/// Level of service, HCM basic freeway segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Los {
    A,
    B,
    C,
    D,
    E,
    F,
}

impl Los {
    /// HCM thresholds 11/18/26/35/45 pc/mi/ln, converted to vehicles per km per lane.
    const UPPER_VPKM: [f32; 5] = [
        11.0 / 1.609_344,
        18.0 / 1.609_344,
        26.0 / 1.609_344,
        35.0 / 1.609_344,
        45.0 / 1.609_344,
    ];

    /// The level of service for a density in vehicles per km per lane.
    pub fn from_density_vpkm(density: f32) -> Self {
        let [a, b, c, d, e] = Self::UPPER_VPKM;
        if density <= a {
            Self::A
        } else if density <= b {
            Self::B
        } else if density <= c {
            Self::C
        } else if density <= d {
            Self::D
        } else if density <= e {
            Self::E
        } else {
            Self::F
        }
    }

    pub fn as_char(self) -> char {
        match self {
            Self::A => 'A',
            Self::B => 'B',
            Self::C => 'C',
            Self::D => 'D',
            Self::E => 'E',
            Self::F => 'F',
        }
    }
}

/// One aggregated traffic sample (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSample {
    pub site_id: String,
    pub detector_id: String,
    /// Road lane, ≥ 1, numbered by the site's stated convention.
    pub lane: u16,
    /// Start of the bin, aligned to the wall clock (UTC).
    pub bucket_start: DateTime<Utc>,
    pub interval_s: u32,
    /// Vehicles counted (FIWARE `intensity`). `None` = not observed.
    pub volume: Option<u32>,
    /// volume · 3600 / interval_s.
    pub flow_vph: Option<f32>,
    /// Fraction 0–1 of the bin the zone was occupied.
    pub occupancy: Option<f32>,
    /// Time-mean speed of the vehicles whose speed was measured (or estimated, see
    /// `speed_source`).
    pub speed_avg_kmh: Option<f32>,
    pub speed_p85_kmh: Option<f32>,
    /// Vehicles with a measured speed: the weight for volume-weighted roll-ups.
    pub speed_count: u32,
    pub speed_source: SpeedSource,
    /// flow / speed, vehicles per km per lane.
    pub density_vpkm: Option<f32>,
    pub headway_avg_s: Option<f32>,
    pub gap_avg_s: Option<f32>,
    pub length_avg_m: Option<f32>,
    /// Vehicles per length class: motorcycle, short, medium, long.
    pub class_counts: Option<[u32; 4]>,
    pub los: Option<Los>,
    /// Sub-samples the source should have delivered in the bin (1 for per-vehicle sources).
    pub samples_expected: u32,
    pub samples_received: u32,
    /// samples_received / samples_expected, in percent.
    pub pct_observed: f32,
    pub quality: Quality,
    /// The box that produced the sample.
    pub edge_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn los_uses_hcm_thresholds_per_km() {
        // 11 pc/mi/ln = 6.835 veh/km/ln is the A/B boundary.
        assert_eq!(Los::from_density_vpkm(6.8), Los::A);
        assert_eq!(Los::from_density_vpkm(6.9), Los::B);
        assert_eq!(Los::from_density_vpkm(16.0), Los::C);
        assert_eq!(Los::from_density_vpkm(16.2), Los::D);
        assert_eq!(Los::from_density_vpkm(27.9), Los::E);
        assert_eq!(Los::from_density_vpkm(28.0), Los::F);
    }

    #[test]
    fn quality_flags_are_distinct_bits() {
        let all = Quality::all();
        assert_eq!(all.bits().count_ones() as usize, all.iter().count());
    }
}
