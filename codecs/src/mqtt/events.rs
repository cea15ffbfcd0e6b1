//! The project's per-vehicle event schema over MQTT (schema version 1).
//!
//! This is the public contract for sensor integrators. One MQTT message carries one event
//! object, or a JSON array of them (a batch, in the order the vehicles passed):
//!
//! ```json
//! {"detector":"d1","lane":1,"ts":"2026-11-26T01:02:03.456Z","speed_kmh":87.5,
//!  "length_m":4.3,"occupancy_ms":180,"headway_ms":2400,"class":"short"}
//! ```
//!
//! | member | type | required | meaning, unit, allowed range |
//! |---|---|---|---|
//! | `detector` | string | yes | the sensor's id as configured on the edge box; 1–64 bytes, no control characters |
//! | `lane` | integer | yes | the sensor's lane / zone number, ≥ 1 (≤ 65535); mapped to a road lane by the edge config |
//! | `ts` | string | no | when the vehicle's front crossed the detector: RFC 3339 with an offset (`Z` or `±hh:mm`), any sub-second precision. Absent: the edge stamps arrival time |
//! | `speed_kmh` | number | no | km/h, 0–300 |
//! | `length_m` | number | no | metres, > 0 and ≤ 50 |
//! | `occupancy_ms` | integer | no | time the vehicle occupied the detection zone, ms |
//! | `headway_ms` | integer | no | front-to-front time from the previous vehicle in the same lane, ms |
//! | `class` | string | no | `motorcycle` (< 2.1 m), `short` (2.1–6.1 m), `medium` (6.1–13.1 m), `long` (≥ 13.1 m) |
//!
//! A member that is absent or `null` means "not measured" (never send 0 for that).
//! Integers must be JSON integers (`180`, not `180.0`).
//!
//! Unknown members are ignored, on purpose: sensor firmware is updated on its own schedule,
//! and an edge box that rejected whole events because a newer firmware added a member would
//! lose traffic data over a cosmetic change. The cost is that a misspelt optional member
//! (`"speed_kph"`) is silently absent, so integrators should check their output against
//! [`decode_vehicle_events`] (or the edge's `field` error counters) once. Members this
//! schema knows are validated strictly. Duplicate members are an error.
//!
//! Errors name the member (`lane`, `ts`, …; `payload` for malformed JSON or a wrong shape) and
//! give the byte offset of its value; for a batch the reason starts with `event N:`
//! (0-based). One bad event fails the whole message, so a publisher learns of it instead
//! of losing vehicles silently.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{PAYLOAD, objects, offset_of, parse_raw, root};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{Observation, Observations, VehicleClass, VehicleEvent};

pub const MAX_DETECTOR_LEN: usize = 64;
pub const MAX_SPEED_KMH: f32 = 300.0;
pub const MAX_LENGTH_M: f32 = 50.0;

/// One vehicle event as published by a sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleEventMsg {
    pub detector: String,
    pub lane: u16,
    pub ts: Option<DateTime<Utc>>,
    pub speed_kmh: Option<f32>,
    pub length_m: Option<f32>,
    pub occupancy_ms: Option<u32>,
    pub headway_ms: Option<u32>,
    pub class: Option<VehicleClass>,
}

impl VehicleEventMsg {
    /// The protocol-free event (the detector id is the source's identity, kept by the caller).
    pub fn to_event(&self) -> VehicleEvent {
        VehicleEvent {
            lane: self.lane,
            time: self.ts,
            speed_kmh: self.speed_kmh,
            length_m: self.length_m,
            occupancy_ms: self.occupancy_ms,
            headway_ms: self.headway_ms,
            class: self.class,
        }
    }
}

impl Observations for VehicleEventMsg {
    fn observations(&self, out: &mut Vec<Observation>) {
        out.push(Observation::Vehicle(self.to_event()));
    }
}

/// The members, each kept as raw JSON text inside the payload so errors can point at it.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    detector: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lane: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    speed_kmh: Option<&'a RawValue>,
    #[serde(borrow, default)]
    length_m: Option<&'a RawValue>,
    #[serde(borrow, default)]
    occupancy_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headway_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    class: Option<&'a RawValue>,
}

/// Decodes one event object or an array of them.
pub fn decode_vehicle_events(payload: &[u8]) -> Result<Vec<VehicleEventMsg>, DecodeError> {
    let top = root(payload)?;
    let batch = top.get().starts_with('[');
    objects(payload, top)?
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            decode_one(payload, raw).map_err(|mut e| {
                if batch {
                    if let DecodeErrorKind::Field { reason, .. } = &mut e.kind {
                        *reason = Cow::Owned(format!("event {i}: {reason}"));
                    }
                }
                e
            })
        })
        .collect()
}

/// Parses an optional member; `None` for absent or `null`.
pub(crate) fn member<'a, T: Deserialize<'a>>(
    payload: &[u8],
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<(T, usize)>, DecodeError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => Ok(Some((
            parse_raw(payload, r, field)?,
            offset_of(payload, r.get()),
        ))),
    }
}

pub(crate) fn check_f32(
    value: Option<(f64, usize)>,
    field: &'static str,
    ok: impl Fn(f64) -> bool,
    rule: &'static str,
) -> Result<Option<f32>, DecodeError> {
    match value {
        None => Ok(None),
        Some((v, _)) if v.is_finite() && ok(v) => {
            // Narrowing to the model's f32 is intended.
            #[allow(clippy::cast_possible_truncation)]
            Ok(Some(v as f32))
        }
        Some((_, at)) => Err(DecodeError::field(at, field, rule)),
    }
}

pub(crate) fn parse_ts(
    payload: &[u8],
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, DecodeError> {
    let Some((text, at)) = member::<Cow<str>>(payload, raw, field)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| DecodeError::field(at, field, "expected an RFC 3339 time with offset"))
}

fn decode_one(payload: &[u8], raw: &RawValue) -> Result<VehicleEventMsg, DecodeError> {
    let at = offset_of(payload, raw.get());
    let ev: RawEvent = parse_raw(payload, raw, PAYLOAD)?;

    let (detector, d_at) = member::<Cow<str>>(payload, ev.detector, "detector")?
        .ok_or_else(|| DecodeError::field(at, "detector", "required"))?;
    if detector.is_empty()
        || detector.len() > MAX_DETECTOR_LEN
        || detector.chars().any(char::is_control)
    {
        return Err(DecodeError::field(
            d_at,
            "detector",
            "must be 1–64 bytes without control characters",
        ));
    }
    let (lane, l_at) = member::<u64>(payload, ev.lane, "lane")?
        .ok_or_else(|| DecodeError::field(at, "lane", "required"))?;
    let lane = u16::try_from(lane)
        .ok()
        .filter(|l| *l >= 1)
        .ok_or_else(|| DecodeError::field(l_at, "lane", "must be 1–65535"))?;

    Ok(VehicleEventMsg {
        detector: detector.into_owned(),
        lane,
        ts: parse_ts(payload, ev.ts, "ts")?,
        speed_kmh: check_f32(
            member(payload, ev.speed_kmh, "speed_kmh")?,
            "speed_kmh",
            |v| (0.0..=f64::from(MAX_SPEED_KMH)).contains(&v),
            "must be 0–300 km/h",
        )?,
        length_m: check_f32(
            member(payload, ev.length_m, "length_m")?,
            "length_m",
            |v| v > 0.0 && v <= f64::from(MAX_LENGTH_M),
            "must be above 0 and at most 50 m",
        )?,
        occupancy_ms: member(payload, ev.occupancy_ms, "occupancy_ms")?.map(|(v, _)| v),
        headway_ms: member(payload, ev.headway_ms, "headway_ms")?.map(|(v, _)| v),
        class: member(payload, ev.class, "class")?.map(|(v, _)| v),
    })
}

/// The wire shape, for encoding.
#[derive(Serialize)]
struct OutEvent<'a> {
    detector: &'a str,
    lane: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed_kmh: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length_m: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    occupancy_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headway_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<VehicleClass>,
}

impl<'a> OutEvent<'a> {
    fn new(m: &'a VehicleEventMsg) -> Result<Self, EncodeError> {
        if m.detector.is_empty()
            || m.detector.len() > MAX_DETECTOR_LEN
            || m.detector.chars().any(char::is_control)
        {
            return Err(EncodeError::new(
                "detector",
                "must be 1–64 bytes without control characters",
            ));
        }
        if m.lane == 0 {
            return Err(EncodeError::new("lane", "must be at least 1"));
        }
        if m.speed_kmh
            .is_some_and(|s| !(s.is_finite() && (0.0..=MAX_SPEED_KMH).contains(&s)))
        {
            return Err(EncodeError::new("speed_kmh", "must be 0–300 km/h"));
        }
        if m.length_m
            .is_some_and(|l| !(l.is_finite() && l > 0.0 && l <= MAX_LENGTH_M))
        {
            return Err(EncodeError::new(
                "length_m",
                "must be above 0 and at most 50 m",
            ));
        }
        Ok(Self {
            detector: &m.detector,
            lane: m.lane,
            ts: m.ts.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            speed_kmh: m.speed_kmh,
            length_m: m.length_m,
            occupancy_ms: m.occupancy_ms,
            headway_ms: m.headway_ms,
            class: m.class,
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(value).map_err(|e| EncodeError::new(PAYLOAD, e.to_string()))
}

/// One event as a JSON object.
pub fn encode_vehicle_event(event: &VehicleEventMsg) -> Result<Vec<u8>, EncodeError> {
    to_json(&OutEvent::new(event)?)
}

/// A batch as a JSON array.
pub fn encode_vehicle_events(events: &[VehicleEventMsg]) -> Result<Vec<u8>, EncodeError> {
    let out = events
        .iter()
        .map(OutEvent::new)
        .collect::<Result<Vec<_>, _>>()?;
    to_json(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(payload: &str) -> DecodeError {
        decode_vehicle_events(payload.as_bytes()).unwrap_err()
    }

    fn field(e: &DecodeError) -> &'static str {
        match e.kind {
            DecodeErrorKind::Field { field, .. } => field,
            _ => panic!("{e:?}"),
        }
    }

    #[test]
    fn the_documented_example_decodes() {
        let p = br#"{"detector":"d1","lane":1,"ts":"2026-11-26T01:02:03.456Z","speed_kmh":87.5,"length_m":4.3,"occupancy_ms":180,"headway_ms":2400,"class":"short"}"#;
        let [e] = decode_vehicle_events(p).unwrap().try_into().unwrap();
        assert_eq!(e.detector, "d1");
        assert_eq!(e.lane, 1);
        assert_eq!(
            e.ts.unwrap().to_rfc3339_opts(SecondsFormat::Millis, true),
            "2026-11-26T01:02:03.456Z"
        );
        assert_eq!((e.speed_kmh, e.length_m), (Some(87.5), Some(4.3)));
        assert_eq!((e.occupancy_ms, e.headway_ms), (Some(180), Some(2400)));
        assert_eq!(e.class, Some(VehicleClass::Short));
    }

    #[test]
    fn errors_name_the_member_and_point_at_its_value() {
        let e = err(r#"{"detector":"d1","lane":0}"#);
        assert_eq!((field(&e), e.offset), ("lane", 24));
        let e = err(r#"{"detector":"d1","lane":1,"speed_kmh":-3}"#);
        assert_eq!((field(&e), e.offset), ("speed_kmh", 38));
        let e = err(r#"{"lane":1}"#);
        assert_eq!((field(&e), e.offset), ("detector", 0));
        let e = err(r#"{"detector":"d1","lane":1,"occupancy_ms":1.5}"#);
        assert_eq!((field(&e), e.offset), ("occupancy_ms", 41));
        let e = err(r#"{"detector":"d1","lane":1,"class":"bus"}"#);
        assert_eq!(field(&e), "class");
        let e = err(r#"{"detector":"d1","lane":1,"ts":"2026-11-26T01:02:03"}"#);
        assert_eq!(field(&e), "ts");
        let e = err(r#"{"detector":"d1","lane":1,"lane":2}"#);
        assert_eq!(field(&e), "payload");
        let e = err("{\"detector\":\"d1\",\n\"lane\":x}");
        assert_eq!((field(&e), e.offset), ("payload", 25));
        let e = err("42");
        assert_eq!(field(&e), "payload");
    }

    #[test]
    fn batch_errors_say_which_event() {
        let e = err(r#"[{"detector":"d1","lane":1},{"detector":"d1","lane":0}]"#);
        assert!(e.to_string().contains("event 1:"), "{e}");
    }

    #[test]
    fn nulls_and_unknown_members_are_tolerated() {
        let p =
            br#"{"detector":"d1","lane":2,"speed_kmh":null,"firmware":"2.1","extra":{"a":[1]}}"#;
        let e = &decode_vehicle_events(p).unwrap()[0];
        assert_eq!((e.lane, e.speed_kmh), (2, None));
    }
}
