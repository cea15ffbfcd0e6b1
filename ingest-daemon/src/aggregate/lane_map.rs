//! Device lane → road lane.
//!
//! Devices number their lanes, zones or channels their own way (from 0, from 1, by zone
//! id, right to left …). A traffic sample carries the road lane, numbered from 1 by the
//! site's stated convention, so every detector comes with a map.

use thiserror::Error;

/// Why a lane map was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LaneMapError {
    #[error("road lanes are numbered from 1; device lane {device} maps to 0")]
    RoadLaneZero { device: u16 },
    #[error("device lane {device} is mapped twice")]
    DuplicateDeviceLane { device: u16 },
    #[error("a lane map needs at least one lane")]
    Empty,
}

/// Maps a device's own lane numbers to road lanes (≥ 1).
///
/// Two device lanes may feed the same road lane (two zones over one lane): their events
/// then count together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneMap {
    /// (device lane, road lane), sorted by device lane, device lanes unique.
    pairs: Vec<(u16, u16)>,
}

impl LaneMap {
    /// Device lanes 1..=lanes are road lanes 1..=lanes.
    pub fn identity(lanes: u16) -> Self {
        Self {
            pairs: (1..=lanes).map(|l| (l, l)).collect(),
        }
    }

    /// Device lanes 0..lanes are road lanes 1..=lanes.
    pub fn zero_based(lanes: u16) -> Self {
        Self {
            pairs: (0..lanes).map(|l| (l, l + 1)).collect(),
        }
    }

    /// An explicit map of (device lane, road lane) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u16, u16)>) -> Result<Self, LaneMapError> {
        let mut pairs: Vec<(u16, u16)> = pairs.into_iter().collect();
        if pairs.is_empty() {
            return Err(LaneMapError::Empty);
        }
        if let Some(&(device, _)) = pairs.iter().find(|(_, road)| *road == 0) {
            return Err(LaneMapError::RoadLaneZero { device });
        }
        pairs.sort_unstable();
        if let Some(w) = pairs.windows(2).find(|w| matches!(w, [a, b] if a.0 == b.0)) {
            let device = w.first().map_or(0, |p| p.0);
            return Err(LaneMapError::DuplicateDeviceLane { device });
        }
        Ok(Self { pairs })
    }

    /// The road lane of a device lane, `None` when the device lane is not mapped.
    pub fn road_lane(&self, device_lane: u16) -> Option<u16> {
        self.pairs
            .binary_search_by_key(&device_lane, |p| p.0)
            .ok()
            .and_then(|i| self.pairs.get(i))
            .map(|p| p.1)
    }

    /// The (device lane, road lane) pairs, by device lane.
    pub fn pairs(&self) -> &[(u16, u16)] {
        &self.pairs
    }

    /// The distinct road lanes, ascending.
    pub fn road_lanes(&self) -> Vec<u16> {
        let mut lanes: Vec<u16> = self.pairs.iter().map(|p| p.1).collect();
        lanes.sort_unstable();
        lanes.dedup();
        lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_refuses() {
        assert_eq!(LaneMap::identity(3).road_lane(2), Some(2));
        assert_eq!(LaneMap::identity(3).road_lane(0), None);
        assert_eq!(LaneMap::zero_based(2).road_lane(0), Some(1));
        assert_eq!(LaneMap::zero_based(2).road_lane(2), None);
        let m = LaneMap::from_pairs([(12, 1), (10, 2), (11, 2)]).unwrap();
        assert_eq!(m.road_lane(10), Some(2));
        assert_eq!(m.road_lanes(), vec![1, 2]);
        assert_eq!(
            LaneMap::from_pairs([(1, 0)]),
            Err(LaneMapError::RoadLaneZero { device: 1 })
        );
        assert_eq!(
            LaneMap::from_pairs([(1, 1), (1, 2)]),
            Err(LaneMapError::DuplicateDeviceLane { device: 1 })
        );
        assert_eq!(LaneMap::from_pairs([]), Err(LaneMapError::Empty));
    }
}
