//! FIWARE `TrafficFlowObserved` (smart-data-models `dataModel.Transportation`), NGSI-v2.
//!
//! An entity is one aggregated observation for one lane and period. Both NGSI-v2
//! representations are read, per attribute:
//!
//! - keyValues: `"intensity": 197`
//! - normalized: `"intensity": {"type": "Number", "value": 197, "metadata": {}}` (the
//!   attribute `type` and `metadata` are ignored; the data model's own example puts
//!   `"type": "DateTime"` on numbers)
//!
//! The payload may be one entity, an array of entities, or an Orion notification
//! `{"subscriptionId": …, "data": [entities…]}`.
//!
//! Attributes read (source: the data model specification `TrafficFlowObserved/doc/spec.md`
//! and `examples/example.json`, `example-normalized.json` of smart-data-models):
//!
//! | attribute | unit / type | here |
//! |---|---|---|
//! | `id` | text | optional |
//! | `type` | must be `TrafficFlowObserved` | required |
//! | `laneId` | integer ≥ 1 | required (a per-lane report needs a lane) |
//! | `dateObservedFrom`, `dateObservedTo` | ISO 8601 date-time | period start / end |
//! | `dateObserved` | ISO 8601 instant or interval `from/to` | used when From/To are absent; an instant is taken as the period end |
//! | `intensity` | vehicles in the period, integral number ≥ 0 | `volume` |
//! | `occupancy` | fraction 0–1 | `occupancy` |
//! | `averageVehicleSpeed` | km/h | `speed_avg_kmh` |
//! | `averageVehicleLength` | m | kept, not in the report |
//! | `averageHeadwayTime` | s | `headway_avg_s` |
//! | `averageGapDistance` | m | kept; not `gap_avg_s`, which is a time |
//! | `congested`, `reversedLane` | boolean | kept |
//! | `laneDirection` | `forward` / `backward` | kept |
//! | `vehicleType`, `refRoadSegment` | text | kept |
//!
//! Other attributes (`location`, `address`, `dateModified`, …) are ignored. Date-times without
//! an offset are read as UTC, as the data model specifies UTC.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::events::check_f32;
use super::{PAYLOAD, objects, offset_of, parse_raw, root};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{IntervalReport, Observation, Observations};

pub const ENTITY_TYPE: &str = "TrafficFlowObserved";

/// One `TrafficFlowObserved` entity.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficFlowObserved {
    pub id: Option<String>,
    pub lane_id: u16,
    pub date_observed_from: Option<DateTime<Utc>>,
    pub date_observed_to: Option<DateTime<Utc>>,
    /// Vehicles in the period.
    pub intensity: Option<u32>,
    /// Fraction 0–1.
    pub occupancy: Option<f32>,
    /// km/h.
    pub average_vehicle_speed: Option<f32>,
    /// m.
    pub average_vehicle_length: Option<f32>,
    /// s.
    pub average_headway_time: Option<f32>,
    /// m.
    pub average_gap_distance: Option<f32>,
    pub congested: Option<bool>,
    pub reversed_lane: Option<bool>,
    /// `forward` or `backward`.
    pub lane_direction: Option<String>,
    pub vehicle_type: Option<String>,
    pub ref_road_segment: Option<String>,
}

impl TrafficFlowObserved {
    /// An entity with only the lane known.
    pub fn on_lane(lane_id: u16) -> Self {
        Self {
            id: None,
            lane_id,
            date_observed_from: None,
            date_observed_to: None,
            intensity: None,
            occupancy: None,
            average_vehicle_speed: None,
            average_vehicle_length: None,
            average_headway_time: None,
            average_gap_distance: None,
            congested: None,
            reversed_lane: None,
            lane_direction: None,
            vehicle_type: None,
            ref_road_segment: None,
        }
    }

    pub fn to_report(&self) -> IntervalReport {
        let mut r = IntervalReport::on_lane(self.lane_id);
        r.start = self.date_observed_from;
        r.interval_s = match (self.date_observed_from, self.date_observed_to) {
            (Some(from), Some(to)) => u32::try_from((to - from).num_seconds())
                .ok()
                .filter(|s| *s > 0),
            _ => None,
        };
        r.volume = self.intensity;
        r.occupancy = self.occupancy;
        r.speed_avg_kmh = self.average_vehicle_speed;
        r.headway_avg_s = self.average_headway_time;
        r
    }
}

impl Observations for TrafficFlowObserved {
    fn observations(&self, out: &mut Vec<Observation>) {
        out.push(Observation::Interval(self.to_report()));
    }
}

/// Which NGSI-v2 representation to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiwareForm {
    KeyValues,
    Normalized,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntity<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lane_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    date_observed: Option<&'a RawValue>,
    #[serde(borrow, default)]
    date_observed_from: Option<&'a RawValue>,
    #[serde(borrow, default)]
    date_observed_to: Option<&'a RawValue>,
    #[serde(borrow, default)]
    intensity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    occupancy: Option<&'a RawValue>,
    #[serde(borrow, default)]
    average_vehicle_speed: Option<&'a RawValue>,
    #[serde(borrow, default)]
    average_vehicle_length: Option<&'a RawValue>,
    #[serde(borrow, default)]
    average_headway_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    average_gap_distance: Option<&'a RawValue>,
    #[serde(borrow, default)]
    congested: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reversed_lane: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lane_direction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    vehicle_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ref_road_segment: Option<&'a RawValue>,
}

/// A normalized attribute; only its value matters here.
#[derive(Deserialize)]
struct Normalized<'a> {
    /// `Some("null")` for `"value": null`, `None` when the member is absent.
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// An Orion notification wraps entities in `data`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
}

/// Decodes a payload of one entity, an array of entities or an Orion notification.
pub fn decode_fiware(payload: &[u8]) -> Result<Vec<TrafficFlowObserved>, DecodeError> {
    let top = root(payload)?;
    let mut list = top;
    if top.get().starts_with('{') {
        let env: Envelope = parse_raw(payload, top, PAYLOAD)?;
        if let (Some(data), None) = (env.data, env.kind) {
            list = data;
        }
    }
    let batch = list.get().starts_with('[');
    objects(payload, list)?
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            decode_entity(payload, raw).map_err(|mut e| {
                if batch {
                    if let DecodeErrorKind::Field { reason, .. } = &mut e.kind {
                        *reason = Cow::Owned(format!("entity {i}: {reason}"));
                    }
                }
                e
            })
        })
        .collect()
}

/// The value of an attribute in either form, with its offset; `None` if absent or null.
fn attr<'a, T: Deserialize<'a>>(
    payload: &[u8],
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<(T, usize)>, DecodeError> {
    let Some(mut raw) = raw else {
        return Ok(None);
    };
    if raw.get().starts_with('{') {
        let n: Normalized = parse_raw(payload, raw, field)?;
        raw = n.value.ok_or_else(|| {
            DecodeError::field(
                offset_of(payload, raw.get()),
                field,
                "normalized attribute without `value`",
            )
        })?;
    }
    if raw.get() == "null" {
        return Ok(None);
    }
    Ok(Some((
        parse_raw(payload, raw, field)?,
        offset_of(payload, raw.get()),
    )))
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

fn date_attr(
    payload: &[u8],
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, DecodeError> {
    match attr::<Cow<str>>(payload, raw, field)? {
        None => Ok(None),
        Some((text, at)) => parse_instant(&text)
            .map(Some)
            .ok_or_else(|| DecodeError::field(at, field, "expected an ISO 8601 date-time")),
    }
}

fn text_attr(
    payload: &[u8],
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<String>, DecodeError> {
    Ok(attr::<Cow<str>>(payload, raw, field)?.map(|(t, _)| t.into_owned()))
}

fn non_negative(
    payload: &[u8],
    raw: Option<&RawValue>,
    field: &'static str,
    max: f64,
    rule: &'static str,
) -> Result<Option<f32>, DecodeError> {
    check_f32(
        attr(payload, raw, field)?,
        field,
        |v| (0.0..=max).contains(&v),
        rule,
    )
}

fn decode_entity(payload: &[u8], raw: &RawValue) -> Result<TrafficFlowObserved, DecodeError> {
    let at = offset_of(payload, raw.get());
    let e: RawEntity = parse_raw(payload, raw, PAYLOAD)?;

    let (kind, k_at) = attr::<Cow<str>>(payload, e.kind, "type")?
        .ok_or_else(|| DecodeError::field(at, "type", "required"))?;
    if kind != ENTITY_TYPE {
        return Err(DecodeError::field(
            k_at,
            "type",
            "must be TrafficFlowObserved",
        ));
    }
    let (lane, l_at) = attr::<u64>(payload, e.lane_id, "laneId")?
        .ok_or_else(|| DecodeError::field(at, "laneId", "required"))?;
    let lane_id = u16::try_from(lane)
        .ok()
        .filter(|l| *l >= 1)
        .ok_or_else(|| DecodeError::field(l_at, "laneId", "must be 1–65535"))?;

    let mut from = date_attr(payload, e.date_observed_from, "dateObservedFrom")?;
    let mut to = date_attr(payload, e.date_observed_to, "dateObservedTo")?;
    if from.is_none() && to.is_none() {
        if let Some((text, d_at)) = attr::<Cow<str>>(payload, e.date_observed, "dateObserved")? {
            let bad = || {
                DecodeError::field(
                    d_at,
                    "dateObserved",
                    "expected an ISO 8601 instant or interval",
                )
            };
            match text.split_once('/') {
                Some((a, b)) => {
                    from = Some(parse_instant(a).ok_or_else(bad)?);
                    to = Some(parse_instant(b).ok_or_else(bad)?);
                }
                None => to = Some(parse_instant(&text).ok_or_else(bad)?),
            }
        }
    }

    let intensity = match attr::<f64>(payload, e.intensity, "intensity")? {
        None => None,
        Some((v, i_at)) => {
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX)) {
                return Err(DecodeError::field(
                    i_at,
                    "intensity",
                    "must be a whole number of vehicles ≥ 0",
                ));
            }
            // Integral and in range, checked above.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(v as u32)
        }
    };
    let lane_direction = text_attr(payload, e.lane_direction, "laneDirection")?;
    if let Some(d) = &lane_direction {
        if d != "forward" && d != "backward" {
            let d_at = e.lane_direction.map_or(at, |r| offset_of(payload, r.get()));
            return Err(DecodeError::field(
                d_at,
                "laneDirection",
                "must be forward or backward",
            ));
        }
    }

    Ok(TrafficFlowObserved {
        id: text_attr(payload, e.id, "id")?,
        lane_id,
        date_observed_from: from,
        date_observed_to: to,
        intensity,
        occupancy: non_negative(
            payload,
            e.occupancy,
            "occupancy",
            1.0,
            "must be a fraction 0–1",
        )?,
        average_vehicle_speed: non_negative(
            payload,
            e.average_vehicle_speed,
            "averageVehicleSpeed",
            300.0,
            "must be 0–300 km/h",
        )?,
        average_vehicle_length: non_negative(
            payload,
            e.average_vehicle_length,
            "averageVehicleLength",
            50.0,
            "must be 0–50 m",
        )?,
        average_headway_time: non_negative(
            payload,
            e.average_headway_time,
            "averageHeadwayTime",
            86_400.0,
            "must be 0–86400 s",
        )?,
        average_gap_distance: non_negative(
            payload,
            e.average_gap_distance,
            "averageGapDistance",
            1.0e6,
            "must be 0–1000000 m",
        )?,
        congested: attr(payload, e.congested, "congested")?.map(|(v, _)| v),
        reversed_lane: attr(payload, e.reversed_lane, "reversedLane")?.map(|(v, _)| v),
        lane_direction,
        vehicle_type: text_attr(payload, e.vehicle_type, "vehicleType")?,
        ref_road_segment: text_attr(payload, e.ref_road_segment, "refRoadSegment")?,
    })
}

/// An attribute as written: bare (keyValues) or wrapped with its NGSI type (normalized).
#[derive(Serialize)]
#[serde(untagged)]
enum Attr<T> {
    Bare(T),
    Typed {
        #[serde(rename = "type")]
        kind: &'static str,
        value: T,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutEntity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    lane_id: Attr<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_observed: Option<Attr<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_observed_from: Option<Attr<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_observed_to: Option<Attr<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    intensity: Option<Attr<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    occupancy: Option<Attr<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_vehicle_speed: Option<Attr<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_vehicle_length: Option<Attr<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_headway_time: Option<Attr<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_gap_distance: Option<Attr<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    congested: Option<Attr<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reversed_lane: Option<Attr<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lane_direction: Option<Attr<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vehicle_type: Option<Attr<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ref_road_segment: Option<Attr<&'a str>>,
}

/// Writes one entity in the chosen form.
pub fn encode_fiware(e: &TrafficFlowObserved, form: FiwareForm) -> Result<Vec<u8>, EncodeError> {
    fn wrap<T>(form: FiwareForm, kind: &'static str, v: T) -> Attr<T> {
        match form {
            FiwareForm::KeyValues => Attr::Bare(v),
            FiwareForm::Normalized => Attr::Typed { kind, value: v },
        }
    }
    let num =
        |v: Option<f32>, field: &'static str, max: f32| -> Result<Option<Attr<f32>>, EncodeError> {
            match v {
                None => Ok(None),
                Some(x) if x.is_finite() && (0.0..=max).contains(&x) => {
                    Ok(Some(wrap(form, "Number", x)))
                }
                Some(_) => Err(EncodeError::new(field, "out of range")),
            }
        };
    if e.lane_id == 0 {
        return Err(EncodeError::new("laneId", "must be at least 1"));
    }
    if let Some(d) = &e.lane_direction {
        if d != "forward" && d != "backward" {
            return Err(EncodeError::new(
                "laneDirection",
                "must be forward or backward",
            ));
        }
    }
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let date_observed = match (e.date_observed_from, e.date_observed_to) {
        (Some(f), Some(t)) => Some(format!("{}/{}", stamp(f), stamp(t))),
        (None, Some(t)) => Some(stamp(t)),
        _ => None,
    };
    let out = OutEntity {
        id: e.id.as_deref(),
        kind: ENTITY_TYPE,
        lane_id: wrap(form, "Number", e.lane_id),
        date_observed: date_observed.map(|d| wrap(form, "Text", d)),
        date_observed_from: e
            .date_observed_from
            .map(|t| wrap(form, "DateTime", stamp(t))),
        date_observed_to: e.date_observed_to.map(|t| wrap(form, "DateTime", stamp(t))),
        intensity: e.intensity.map(|v| wrap(form, "Number", v)),
        occupancy: num(e.occupancy, "occupancy", 1.0)?,
        average_vehicle_speed: num(e.average_vehicle_speed, "averageVehicleSpeed", 300.0)?,
        average_vehicle_length: num(e.average_vehicle_length, "averageVehicleLength", 50.0)?,
        average_headway_time: num(e.average_headway_time, "averageHeadwayTime", 86_400.0)?,
        average_gap_distance: num(e.average_gap_distance, "averageGapDistance", 1.0e6)?,
        congested: e.congested.map(|v| wrap(form, "Boolean", v)),
        reversed_lane: e.reversed_lane.map(|v| wrap(form, "Boolean", v)),
        lane_direction: e.lane_direction.as_deref().map(|v| wrap(form, "Text", v)),
        vehicle_type: e.vehicle_type.as_deref().map(|v| wrap(form, "Text", v)),
        ref_road_segment: e
            .ref_road_segment
            .as_deref()
            .map(|v| wrap(form, "Relationship", v)),
    };
    serde_json::to_vec(&out).map_err(|err| EncodeError::new(PAYLOAD, err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_one_attribute_decode_alike() {
        let kv = br#"{"type":"TrafficFlowObserved","laneId":2,"intensity":7}"#;
        let norm = br#"{"type":"TrafficFlowObserved","laneId":{"type":"Number","value":2},"intensity":{"type":"Number","value":7,"metadata":{}}}"#;
        assert_eq!(decode_fiware(kv).unwrap(), decode_fiware(norm).unwrap());
    }

    #[test]
    fn date_observed_interval_is_used_without_from_and_to() {
        let p = br#"{"type":"TrafficFlowObserved","laneId":1,"dateObserved":"2016-12-07T11:10:00/2016-12-07T11:15:00"}"#;
        let e = &decode_fiware(p).unwrap()[0];
        assert_eq!(e.to_report().interval_s, Some(300));
    }

    #[test]
    fn errors_name_the_attribute() {
        let e = decode_fiware(br#"{"type":"TrafficFlowObserved","laneId":1,"occupancy":76}"#)
            .unwrap_err();
        assert!(matches!(
            e.kind,
            DecodeErrorKind::Field {
                field: "occupancy",
                ..
            }
        ));
        assert_eq!(e.offset, 53);
        let e = decode_fiware(br#"{"type":"RoadSegment","laneId":1}"#).unwrap_err();
        assert!(matches!(
            e.kind,
            DecodeErrorKind::Field { field: "type", .. }
        ));
        let e = decode_fiware(br#"{"type":"TrafficFlowObserved","laneId":{"type":"Number"}}"#)
            .unwrap_err();
        assert!(matches!(
            e.kind,
            DecodeErrorKind::Field {
                field: "laneId",
                ..
            }
        ));
    }
}
