//! Lane maps: which road lane a device's lane, zone or detection rule feeds.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::path::KeyPath;

/// Highest road lane number accepted (per carriageway).
pub const MAX_ROAD_LANE: u16 = 16;

/// How the device names a lane.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceLane {
    /// A lane or zone number as the device reports it (serial detectors,
    /// `vehicle_json` and `fiware` MQTT payloads). Some devices count from 0.
    Number(u32),
    /// A name: the ONVIF analytics rule or line name of a camera or of an
    /// `onvif_counter` MQTT payload.
    Name(String),
}

impl DeviceLane {
    fn from_text(text: &str) -> Self {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = text.parse() {
                return Self::Number(n);
            }
        }
        Self::Name(text.to_owned())
    }
}

impl fmt::Display for DeviceLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => write!(f, "{name:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceLane {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DeviceLane;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device lane number or a rule name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeviceLane, E> {
                u32::try_from(v).map(DeviceLane::Number).map_err(|_| {
                    E::custom(format!(
                        "device lane {v} is out of range (0 to {})",
                        u32::MAX
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeviceLane, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("device lane {v} must not be negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeviceLane, E> {
                Ok(DeviceLane::from_text(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One row of a lane map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneMapping {
    /// The lane as the device names it.
    pub device: DeviceLane,
    /// The road lane (1 ..= 16), counted as `node.lane_numbering` says.
    pub lane: u16,
    /// The detector id that this lane's samples are stored under; `None` means
    /// the source's `detector_id` (itself defaulting to the source `id`).
    pub detector_id: Option<String>,
}

/// Where an entry was written, so that a problem can name the exact key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum EntryOrigin {
    /// `lanes = [{ device = 1, lane = 1 }, ...]`: the entry's index.
    Array(usize),
    /// `lanes = { 1 = 1 }` (`inline == false`) or
    /// `lanes = { 1 = { lane = 1, detector_id = "x" } }` (`inline == true`).
    Table { key: String, inline: bool },
}

/// A lane map, written either as an array of tables
///
/// ```toml
/// lanes = [{ device = 1, lane = 1 }, { device = 2, lane = 2, detector_id = "k12-b" }]
/// ```
///
/// or as a table from device lane to road lane (TOML keys are strings, so a
/// key of digits is a device lane number; a value may also be an inline table
/// with `lane` and `detector_id`):
///
/// ```toml
/// lanes = { 1 = 1, 2 = 2, 3 = { lane = 3, detector_id = "k12-b" } }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaneMap {
    entries: Vec<LaneMapping>,
    origins: Vec<EntryOrigin>,
}

impl LaneMap {
    /// A map from entries, as if written in array form.
    pub fn new(entries: Vec<LaneMapping>) -> Self {
        let origins = (0..entries.len()).map(EntryOrigin::Array).collect();
        Self { entries, origins }
    }

    /// The entries in the order they were written.
    pub fn entries(&self) -> &[LaneMapping] {
        &self.entries
    }

    /// True when the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn origin(&self, i: usize) -> EntryOrigin {
        self.origins
            .get(i)
            .cloned()
            .unwrap_or(EntryOrigin::Array(i))
    }

    /// Path of entry `i` itself, under the map's path `base`.
    pub(crate) fn entry_path(&self, base: &KeyPath, i: usize) -> KeyPath {
        match self.origin(i) {
            EntryOrigin::Array(n) => base.index(n),
            EntryOrigin::Table { key, .. } => base.key(&key),
        }
    }

    /// Path of the road lane number of entry `i`.
    pub(crate) fn lane_path(&self, base: &KeyPath, i: usize) -> KeyPath {
        match self.origin(i) {
            EntryOrigin::Array(n) => base.index(n).key("lane"),
            EntryOrigin::Table { key, inline: true } => base.key(&key).key("lane"),
            EntryOrigin::Table { key, inline: false } => base.key(&key),
        }
    }

    /// Path of the device lane of entry `i` (the key, in table form).
    pub(crate) fn device_path(&self, base: &KeyPath, i: usize) -> KeyPath {
        match self.origin(i) {
            EntryOrigin::Array(n) => base.index(n).key("device"),
            EntryOrigin::Table { key, .. } => base.key(&key),
        }
    }

    /// Path of the detector id of entry `i`.
    pub(crate) fn detector_path(&self, base: &KeyPath, i: usize) -> KeyPath {
        match self.origin(i) {
            EntryOrigin::Array(n) => base.index(n).key("detector_id"),
            EntryOrigin::Table { key, inline: true } => base.key(&key).key("detector_id"),
            EntryOrigin::Table { key, inline: false } => base.key(&key),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrayEntry {
    device: DeviceLane,
    lane: u16,
    #[serde(default)]
    detector_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineEntry {
    lane: u16,
    #[serde(default)]
    detector_id: Option<String>,
}

/// The value side of the table form: a lane number or an inline table.
enum TableValue {
    Lane(u16),
    Inline(InlineEntry),
}

impl<'de> Deserialize<'de> for TableValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TableValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a road lane number or a table { lane, detector_id }")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TableValue, E> {
                u16::try_from(v).map(TableValue::Lane).map_err(|_| {
                    E::custom(format!(
                        "road lane {v} is out of range (lanes are numbered 1 to {MAX_ROAD_LANE})"
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TableValue, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!(
                            "road lane {v} is out of range (lanes are numbered 1 to {MAX_ROAD_LANE})"
                        ))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TableValue, A::Error> {
                InlineEntry::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TableValue::Inline)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LaneMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LaneMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a lane map: an array of { device, lane } tables or a table of device = lane",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LaneMap, A::Error> {
                let mut map = LaneMap::default();
                while let Some(entry) = seq.next_element::<ArrayEntry>()? {
                    map.origins.push(EntryOrigin::Array(map.entries.len()));
                    map.entries.push(LaneMapping {
                        device: entry.device,
                        lane: entry.lane,
                        detector_id: entry.detector_id,
                    });
                }
                Ok(map)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<LaneMap, A::Error> {
                let mut map = LaneMap::default();
                while let Some(key) = access.next_key::<String>()? {
                    let device = DeviceLane::from_text(&key);
                    let (entry, inline) = match access.next_value::<TableValue>()? {
                        TableValue::Lane(lane) => (
                            LaneMapping {
                                device,
                                lane,
                                detector_id: None,
                            },
                            false,
                        ),
                        TableValue::Inline(e) => (
                            LaneMapping {
                                device,
                                lane: e.lane,
                                detector_id: e.detector_id,
                            },
                            true,
                        ),
                    };
                    map.origins.push(EntryOrigin::Table { key, inline });
                    map.entries.push(entry);
                }
                Ok(map)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        lanes: LaneMap,
    }

    #[test]
    fn both_forms_parse_to_the_same_entries() {
        let a: T = toml::from_str(
            "lanes = [{ device = 1, lane = 1 }, { device = 2, lane = 2, detector_id = \"d\" }]",
        )
        .unwrap();
        let t: T =
            toml::from_str("lanes = { 1 = 1, 2 = { lane = 2, detector_id = \"d\" } }").unwrap();
        assert_eq!(a.lanes.entries(), t.lanes.entries());
        let base = KeyPath::root().key("lanes");
        assert_eq!(a.lanes.lane_path(&base, 1).to_string(), "lanes[1].lane");
        assert_eq!(t.lanes.lane_path(&base, 0).to_string(), "lanes.1");
        assert_eq!(t.lanes.lane_path(&base, 1).to_string(), "lanes.2.lane");
    }

    #[test]
    fn names_and_numbers() {
        let t: T = toml::from_str("lanes = { \"Line 1\" = 1, \"07\" = 2 }").unwrap();
        let devices: Vec<_> = t.lanes.entries().iter().map(|e| e.device.clone()).collect();
        assert!(devices.contains(&DeviceLane::Name("Line 1".into())));
        assert!(devices.contains(&DeviceLane::Number(7)));
    }
}
