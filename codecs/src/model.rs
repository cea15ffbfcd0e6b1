//! The protocol-free model every format decodes into, so the aggregator never sees a protocol.
//!
//! Units are SI-ish as the product reports them: km/h, metres, milliseconds, fractions.
//! `None` always means "the device did not say", never zero.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Length classes of DESIGN §3 (7/20/43 ft boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleClass {
    /// shorter than 2.1 m
    Motorcycle,
    /// 2.1 m up to 6.1 m
    Short,
    /// 6.1 m up to 13.1 m
    Medium,
    /// 13.1 m and longer
    Long,
}

impl VehicleClass {
    pub const ALL: [VehicleClass; 4] = [Self::Motorcycle, Self::Short, Self::Medium, Self::Long];

    /// The class of a vehicle of the given length in metres.
    pub fn from_length_m(length_m: f32) -> Self {
        if length_m < 2.1 {
            Self::Motorcycle
        } else if length_m < 6.1 {
            Self::Short
        } else if length_m < 13.1 {
            Self::Medium
        } else {
            Self::Long
        }
    }

    /// Position in [`VehicleClass::ALL`] and in [`ClassCounts`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Vehicles per length class, indexed by [`VehicleClass::index`].
pub type ClassCounts = [u32; 4];

/// One vehicle seen by a detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleEvent {
    /// The device's own lane / zone / channel number, as on the wire. The daemon maps it to a
    /// road lane through the configured lane map.
    pub lane: u16,
    /// When the vehicle passed, by the device's clock, if the wire carries it (the daemon
    /// stamps arrival time otherwise and measures the skew between the two).
    pub time: Option<DateTime<Utc>>,
    pub speed_kmh: Option<f32>,
    pub length_m: Option<f32>,
    /// How long the vehicle occupied the detection zone.
    pub occupancy_ms: Option<u32>,
    /// Time from the previous vehicle's front to this one's front, as the device measured it.
    pub headway_ms: Option<u32>,
    /// The device's own class when it reports one; else derived from `length_m` downstream.
    pub class: Option<VehicleClass>,
}

impl VehicleEvent {
    /// An event with only the lane known.
    pub fn on_lane(lane: u16) -> Self {
        Self {
            lane,
            time: None,
            speed_kmh: None,
            length_m: None,
            occupancy_ms: None,
            headway_ms: None,
            class: None,
        }
    }
}

/// Aggregated figures one device reports for one lane and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    /// The device's own lane / zone number, as on the wire.
    pub lane: u16,
    /// Start of the interval by the device's clock, when known.
    pub start: Option<DateTime<Utc>>,
    /// Length of the interval in seconds, when known.
    pub interval_s: Option<u32>,
    pub volume: Option<u32>,
    /// Fraction of the interval the zone was occupied, 0–1.
    pub occupancy: Option<f32>,
    pub speed_avg_kmh: Option<f32>,
    pub speed_p85_kmh: Option<f32>,
    pub class_counts: Option<ClassCounts>,
    pub headway_avg_s: Option<f32>,
    pub gap_avg_s: Option<f32>,
}

impl IntervalReport {
    /// A report with only the lane known.
    pub fn on_lane(lane: u16) -> Self {
        Self {
            lane,
            start: None,
            interval_s: None,
            volume: None,
            occupancy: None,
            speed_avg_kmh: None,
            speed_p85_kmh: None,
            class_counts: None,
            headway_avg_s: None,
            gap_avg_s: None,
        }
    }
}

/// What a decoded frame tells about the road.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    Vehicle(VehicleEvent),
    Interval(IntervalReport),
}

/// Frames that carry traffic observations. Frames that carry none (acks, polls, status)
/// add nothing.
pub trait Observations {
    fn observations(&self, out: &mut Vec<Observation>);
}

/// Speed conversions used by several formats.
pub const KMH_PER_MPH: f32 = 1.609_344;
pub const M_PER_FT: f32 = 0.3048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_classes_follow_the_design_boundaries() {
        assert_eq!(VehicleClass::from_length_m(0.0), VehicleClass::Motorcycle);
        assert_eq!(VehicleClass::from_length_m(2.09), VehicleClass::Motorcycle);
        assert_eq!(VehicleClass::from_length_m(2.1), VehicleClass::Short);
        assert_eq!(VehicleClass::from_length_m(6.09), VehicleClass::Short);
        assert_eq!(VehicleClass::from_length_m(6.1), VehicleClass::Medium);
        assert_eq!(VehicleClass::from_length_m(13.1), VehicleClass::Long);
        assert_eq!(VehicleClass::Long.index(), 3);
    }
}
