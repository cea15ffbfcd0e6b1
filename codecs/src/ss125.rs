//! Wavetronix SmartSensor 125 / SmartSensor HD native binary protocol ("Z1").
//!
//! # Wire format
//!
//! ```text
//! 'Z' '1' dst_sub dst_id(u16 BE) src_sub src_id(u16 BE) seq body_len   header, 10 bytes
//! crc8(header)                                                          1 byte
//! body (body_len bytes, 3 ≤ body_len ≤ 244)
//! crc8(body)                                                            1 byte
//! ```
//!
//! `body_len` counts the body without its CRC. CRC-8: polynomial 0x1C, initial value 0, MSB
//! first, no reflection, no final xor (check value of ASCII `123456789`: 0xBC). The body starts
//! `[msg_id][sub_id][type]` with type 0 = read, 1 = write, 2 = result. All integers are big
//! endian.
//!
//! Sources: DESIGN §4 (header layout, CRC, `body_len` ≤ 244, 0x71 and 0x67 sizes, date/time
//! and fixed24 encodings), checked against the IRIS `ss125` driver (mnit-rtmc/iris,
//! `comm/ss125/SS125Property.java`: header offsets, `MAX_BODY_OCTETS = 244`, CRC
//! `(8, 0x1C, 0x00, no reflection)`, body length read as `body_len + 1` with the CRC last,
//! message types read/write/result = 0/1/2, result body `[id][sub][2][code u16]`) and its
//! unit test `SS125PropertyTest.java`, which publishes two 0x67 bodies captured from a
//! sensor: their CRC bytes (0xBC, 0xFC) match this CRC over 23 body bytes, which confirms
//! both the CRC parameters and that `body_len` excludes the CRC (they are fixtures in
//! `testdata/ss125/`).
//!
//! The generator 0x11C = x²·(x⁶ + x² + x + 1) lacks the +1 term: every single-bit error is
//! caught, but a byte xored with 0x47, 0x8E or 0xC9 passes the CRC at any position. That is
//! the protocol's weakness; the codec cannot do better than check what the wire carries.
//!
//! # Messages interpreted
//!
//! Offsets are from the start of the body (IRIS `IntervalDataProperty.java`,
//! `ActiveEventProperty.java`):
//!
//! **0x71 interval data**, read request `[71][packet][0][interval u24]` (6 bytes; IRIS asks
//! for interval 0 = the latest, packet 0), response 45 bytes, one per lane then per approach
//! (`sub_id` = packet number, 0-based):
//!
//! | off | size | field |
//! |---|---|---|
//! | 3 | u24 | interval number |
//! | 6 | u32+u32 | timestamp (IRIS: end of the interval) |
//! | 14 | fixed24 | average speed |
//! | 17 | u24 | vehicle count |
//! | 20 | u16 | occupancy, 8.8 fixed point percent |
//! | 22 | 4 × u24 | counts of the sensor's length classes 0–3 |
//! | 34 | fixed24 | 85th percentile speed |
//! | 37 | u24 | headway (unit not confirmed, kept raw) |
//! | 40 | u24 | gap (unit not confirmed, kept raw) |
//! | 43 | u8 | number of lanes |
//! | 44 | u8 | number of approaches |
//!
//! **0x67 active events**, read request `[67][0][0]` (3 bytes), response 23 bytes; `sub_id` 1
//! means "an event follows", 0 "no event" (decoded as [`Z1Body::Raw`]):
//!
//! | off | size | field |
//! |---|---|---|
//! | 3 | u32+u32 | timestamp |
//! | 11 | u8 | lane, 0-based (0 = the lane nearest the sensor) |
//! | 12 | u16 | range to the vehicle, 8.8 fixed point |
//! | 14 | u24 | duration the vehicle occupied the zone, ms |
//! | 17 | fixed24 | speed (negative = wrong way) |
//! | 20 | u8 | the sensor's length class 0–3 |
//! | 21 | u16 | vehicle length, 8.8 fixed point |
//!
//! Encodings: date u32 = `year << 9 | month << 5 | day`, time u32 = `hour << 22 | minute << 16
//! | second << 10 | millisecond`, UTC. fixed24: bit 23 = valid (clear → no value), bits 22..8 a
//! 15-bit two's complement integer part, bits 7..0 a fraction in 1/256 that carries the integer's
//! sign (`FF ED 40` = −19.25, `80 37 5E` = 55.367; values in (−1, 0) cannot be represented).
//!
//! # Units
//!
//! Speeds, ranges and lengths are in the units the sensor is configured for (its "metric" flag,
//! message 0x00): km/h and metres, or mph and feet. The wire does not say which, so the codec
//! takes them as settings ([`Ss125::speed_unit`], [`Ss125::length_unit`]; default metric).
//! The two bodies published by IRIS are imperial: 67.75 mph with 22.0 ft over 281 ms is
//! consistent, 67.75 km/h with 22 m is not. Typed frames hold km/h and metres; encoding
//! converts back and rounds to the wire's 1/256 steps.
//!
//! The lane is the sensor's own 0-based number (the daemon's lane map turns it into a road
//! lane). Class counts map classes 0–3 to motorcycle/short/medium/long as IRIS does
//! (`SS125VehClass`), which holds when the sensor's length bins are configured to DESIGN §3's
//! 7/20/43 ft bounds (IRIS's sample bodies: 24.3 ft and 22.0 ft vehicles in class 2). Occupancy
//! above 100 % is an undocumented error value (IRIS treats such values as missing): `None`.
//!
//! Not confirmed, left out of [`Observation`]s: the unit of headway and gap (kept raw in
//! [`IntervalData`]), and whether the interval timestamp is its end (IRIS says so; the report's
//! `start` is `end − interval_s` only when [`Ss125::interval_s`] is configured, else `None`).
//!
//! Every other message id / shape is decoded as [`Z1Body::Raw`] with the typed header, and
//! encodes back byte for byte. Typed bodies do too, except that a fixed24 flagged invalid is
//! written back as `00 00 00` whatever other bits the sensor set (IRIS's first sample body
//! has `00 51 23`), and timestamps drop sub-millisecond precision.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{
    IntervalReport, KMH_PER_MPH, M_PER_FT, Observation, Observations, VehicleClass, VehicleEvent,
};
use crate::stream::FrameCodec;

/// Header bytes before the header CRC.
pub const HEADER_LEN: usize = 10;
/// Longest body the protocol allows (without its CRC).
pub const MAX_BODY_LEN: usize = 244;
/// Shortest body: `[msg_id][sub_id][type]`.
pub const MIN_BODY_LEN: usize = 3;

/// Message id of interval data.
pub const MSG_INTERVAL: u8 = 0x71;
/// Message id of active (per-vehicle) events.
pub const MSG_ACTIVE_EVENT: u8 = 0x67;

const INTERVAL_REQUEST_LEN: usize = 6;
const INTERVAL_DATA_LEN: usize = 45;
const ACTIVE_EVENT_REQUEST_LEN: usize = 3;
const ACTIVE_EVENT_LEN: usize = 23;
const RESULT_LEN: usize = 5;

/// Occupancy 100 % in 8.8 fixed point.
const OCC_FULL: u16 = 100 << 8;

/// CRC-8 of the Z1 protocol: polynomial 0x1C, init 0, MSB first, no reflection, no xorout.
pub fn crc8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |crc, &b| {
        let mut c = crc ^ b;
        for _ in 0..8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x1C
            } else {
                c << 1
            };
        }
        c
    })
}

/// Speed unit the sensor is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpeedUnit {
    #[default]
    Kmh,
    Mph,
}

impl SpeedUnit {
    fn to_kmh(self, v: f64) -> f64 {
        match self {
            Self::Kmh => v,
            Self::Mph => v * f64::from(KMH_PER_MPH),
        }
    }

    fn kmh_to_wire(self, kmh: f64) -> f64 {
        match self {
            Self::Kmh => kmh,
            Self::Mph => kmh / f64::from(KMH_PER_MPH),
        }
    }
}

/// Length unit the sensor is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LengthUnit {
    #[default]
    Metre,
    Foot,
}

impl LengthUnit {
    fn to_m(self, v: f64) -> f64 {
        match self {
            Self::Metre => v,
            Self::Foot => v * f64::from(M_PER_FT),
        }
    }

    fn m_to_wire(self, m: f64) -> f64 {
        match self {
            Self::Metre => m,
            Self::Foot => m / f64::from(M_PER_FT),
        }
    }
}

/// The Z1 codec, with the sensor settings the wire does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ss125 {
    /// Unit of speeds on the wire. Default km/h.
    pub speed_unit: SpeedUnit,
    /// Unit of lengths and ranges on the wire. Default metres.
    pub length_unit: LengthUnit,
    /// The sensor's configured data interval in seconds (message 0x03), when known. Copied
    /// into [`IntervalData::interval_s`]; default `None`.
    pub interval_s: Option<u32>,
}

impl Ss125 {
    /// A sensor set to metric units (km/h, m).
    pub fn metric() -> Self {
        Self::default()
    }

    /// A sensor set to "standard" units (mph, ft).
    pub fn imperial() -> Self {
        Self {
            speed_unit: SpeedUnit::Mph,
            length_unit: LengthUnit::Foot,
            interval_s: None,
        }
    }

    pub fn with_interval_s(self, interval_s: u32) -> Self {
        Self {
            interval_s: Some(interval_s),
            ..self
        }
    }
}

/// Addressing of one frame. `body_len` is not kept: it follows from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Z1Header {
    pub dst_sub: u8,
    pub dst_id: u16,
    pub src_sub: u8,
    pub src_id: u16,
    pub seq: u8,
}

/// The body's third byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Read,
    Write,
    Result,
    Other(u8),
}

impl MessageType {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Read,
            1 => Self::Write,
            2 => Self::Result,
            b => Self::Other(b),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Self::Read => 0,
            Self::Write => 1,
            Self::Result => 2,
            Self::Other(b) => b,
        }
    }
}

/// One Z1 frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Z1Frame {
    pub header: Z1Header,
    pub body: Z1Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Z1Body {
    /// 0x71 read request: `interval` 0 = the latest.
    IntervalRequest { packet: u8, interval: u32 },
    /// 0x71 response: one lane's (or approach's) figures.
    IntervalData(IntervalData),
    /// 0x67 read request (sub id 0).
    ActiveEventRequest,
    /// 0x67 response carrying an event (sub id 1). One event per message.
    ActiveEvent(ActiveEvent),
    /// Result of a request (type 2): `code` 0 = no error.
    Result { msg_id: u8, sub_id: u8, code: u16 },
    /// Any other body, verbatim after the first three bytes.
    Raw {
        msg_id: u8,
        sub_id: u8,
        msg_type: MessageType,
        data: Vec<u8>,
    },
}

/// One packet of a 0x71 interval data response.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalData {
    /// Packet number (the body's sub id): lanes `0..lane_count`, then approaches.
    pub packet: u8,
    /// The sensor's interval number.
    pub interval: u32,
    /// Timestamp the sensor gives the interval (its end, per IRIS), millisecond precision.
    pub end: DateTime<Utc>,
    pub speed_avg_kmh: Option<f32>,
    pub volume: u32,
    /// Fraction 0–1 of the interval the zone was occupied; `None` for values above 100 %.
    pub occupancy: Option<f32>,
    /// Counts of the sensor's length classes 0–3.
    pub class_counts: [u32; 4],
    pub speed_p85_kmh: Option<f32>,
    /// Raw u24; unit not confirmed.
    pub headway: u32,
    /// Raw u24; unit not confirmed.
    pub gap: u32,
    pub lane_count: u8,
    pub approach_count: u8,
    /// Not on the wire: the codec's configured interval length, seconds.
    pub interval_s: Option<u32>,
}

impl IntervalData {
    /// Whether this packet is a lane (not an approach).
    pub fn is_lane(&self) -> bool {
        self.packet < self.lane_count
    }

    /// Start of the interval, when its length is known.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.end
            .checked_sub_signed(TimeDelta::try_seconds(i64::from(self.interval_s?))?)
    }
}

/// One vehicle from a 0x67 response.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveEvent {
    /// Millisecond precision.
    pub time: DateTime<Utc>,
    /// The sensor's lane, 0-based.
    pub lane: u8,
    pub range_m: f32,
    pub duration_ms: u32,
    /// Negative for a wrong-way vehicle; `None` when the sensor flags it invalid.
    pub speed_kmh: Option<f32>,
    /// The sensor's length class (0–3 = motorcycle/short/medium/long, see the module doc).
    pub class: u8,
    pub length_m: f32,
}

impl Z1Body {
    fn msg_id_and_type(&self) -> (u8, u8, MessageType) {
        match self {
            Self::IntervalRequest { packet, .. } => (MSG_INTERVAL, *packet, MessageType::Read),
            Self::IntervalData(d) => (MSG_INTERVAL, d.packet, MessageType::Read),
            Self::ActiveEventRequest => (MSG_ACTIVE_EVENT, 0, MessageType::Read),
            Self::ActiveEvent(_) => (MSG_ACTIVE_EVENT, 1, MessageType::Read),
            Self::Result { msg_id, sub_id, .. } => (*msg_id, *sub_id, MessageType::Result),
            Self::Raw {
                msg_id,
                sub_id,
                msg_type,
                ..
            } => (*msg_id, *sub_id, *msg_type),
        }
    }
}

/// Which typed body a body of this shape decodes to, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    IntervalRequest,
    IntervalData,
    ActiveEventRequest,
    ActiveEvent,
    Result,
    Raw,
}

fn shape(msg_id: u8, sub_id: u8, msg_type: MessageType, len: usize) -> Shape {
    match (msg_id, msg_type, len) {
        (MSG_INTERVAL, MessageType::Read, INTERVAL_REQUEST_LEN) => Shape::IntervalRequest,
        (MSG_INTERVAL, MessageType::Read, INTERVAL_DATA_LEN) => Shape::IntervalData,
        (MSG_ACTIVE_EVENT, MessageType::Read, ACTIVE_EVENT_REQUEST_LEN) if sub_id == 0 => {
            Shape::ActiveEventRequest
        }
        (MSG_ACTIVE_EVENT, MessageType::Read, ACTIVE_EVENT_LEN) if sub_id == 1 => {
            Shape::ActiveEvent
        }
        (_, MessageType::Result, RESULT_LEN) => Shape::Result,
        _ => Shape::Raw,
    }
}

// ---- field readers: `at` is the offset in the body, `base` the body's offset in the input ----

struct BodyReader<'a> {
    body: &'a [u8],
    base: usize,
}

impl BodyReader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], DecodeError> {
        self.body
            .get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| DecodeError::new(self.base + at, DecodeErrorKind::Length(at + N)))
    }

    fn u8(&self, at: usize) -> Result<u8, DecodeError> {
        Ok(self.bytes::<1>(at)?[0])
    }

    fn u16(&self, at: usize) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.bytes(at)?))
    }

    fn u24(&self, at: usize) -> Result<u32, DecodeError> {
        let [a, b, c] = self.bytes(at)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    fn u32(&self, at: usize) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.bytes(at)?))
    }

    fn timestamp(&self, at: usize) -> Result<DateTime<Utc>, DecodeError> {
        let date = self.u32(at)?;
        let time = self.u32(at + 4)?;
        decode_timestamp(date, time).ok_or_else(|| {
            DecodeError::field(self.base + at, "timestamp", "not a valid date and time")
        })
    }
}

/// Date and time words to a UTC instant. Bits outside the fields are ignored, as IRIS does.
pub fn decode_timestamp(date: u32, time: u32) -> Option<DateTime<Utc>> {
    let year = (date >> 9) & 0x0FFF;
    let month = (date >> 5) & 0x0F;
    let day = date & 0x1F;
    let hour = (time >> 22) & 0x1F;
    let minute = (time >> 16) & 0x3F;
    let second = (time >> 10) & 0x3F;
    let ms = time & 0x3FF;
    if ms > 999 {
        return None;
    }
    let naive = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
        .and_hms_milli_opt(hour, minute, second, ms)?;
    Some(naive.and_utc())
}

/// A UTC instant to the date and time words. Sub-millisecond precision is dropped.
pub fn encode_timestamp(t: &DateTime<Utc>) -> Result<(u32, u32), EncodeError> {
    let year = u32::try_from(t.year())
        .ok()
        .filter(|y| *y <= 0x0FFF)
        .ok_or_else(|| EncodeError::new("timestamp", "year outside 0..=4095"))?;
    let ms = t.timestamp_subsec_millis();
    if ms > 999 {
        return Err(EncodeError::new("timestamp", "leap second"));
    }
    let date = year << 9 | t.month() << 5 | t.day();
    let time = t.hour() << 22 | t.minute() << 16 | t.second() << 10 | ms;
    Ok((date, time))
}

/// A fixed24 value in 1/256 units, `None` when the valid bit is clear.
pub fn decode_fixed24(raw: u32) -> Option<f64> {
    if raw & 0x80_0000 == 0 {
        return None;
    }
    let int15 = ((raw >> 8) & 0x7FFF) as i32;
    let int = if int15 & 0x4000 != 0 {
        int15 - 0x8000
    } else {
        int15
    };
    let frac = f64::from(raw & 0xFF) / 256.0;
    let int = f64::from(int);
    Some(if int < 0.0 { int - frac } else { int + frac })
}

/// A value to fixed24, rounded to 1/256; `None` encodes as "invalid" (all zero).
pub fn encode_fixed24(field: &'static str, v: Option<f64>) -> Result<u32, EncodeError> {
    let Some(v) = v else { return Ok(0) };
    if !v.is_finite() {
        return Err(EncodeError::new(field, "not a finite number"));
    }
    let steps = (v.abs() * 256.0).round();
    if steps >= f64::from(0x4001u32 << 8) {
        return Err(EncodeError::new(field, "out of the fixed24 range"));
    }
    // Below 2^23 and non-negative: the cast is exact.
    let steps = steps as u32;
    let (int, frac) = (steps >> 8, steps & 0xFF);
    if v < 0.0 && steps > 0 {
        if int == 0 {
            return Err(EncodeError::new(
                field,
                "values in (-1, 0) have no fixed24 form",
            ));
        }
        if int > 0x4000 {
            return Err(EncodeError::new(field, "out of the fixed24 range"));
        }
        let int15 = (0x8000 - int) & 0x7FFF;
        return Ok(0x80_0000 | int15 << 8 | frac);
    }
    if int > 0x3FFF {
        return Err(EncodeError::new(field, "out of the fixed24 range"));
    }
    Ok(0x80_0000 | int << 8 | frac)
}

/// 8.8 unsigned fixed point to a value.
fn decode_fixed16(raw: u16) -> f64 {
    f64::from(raw) / 256.0
}

fn encode_fixed16(field: &'static str, v: f64) -> Result<u16, EncodeError> {
    let steps = (v * 256.0).round();
    if !(0.0..=65535.0).contains(&steps) {
        return Err(EncodeError::new(field, "outside the 8.8 fixed point range"));
    }
    Ok(steps as u16)
}

impl Ss125 {
    fn speed(&self, raw: u32) -> Option<f32> {
        decode_fixed24(raw).map(|v| self.speed_unit.to_kmh(v) as f32)
    }

    fn length(&self, raw: u16) -> f32 {
        self.length_unit.to_m(decode_fixed16(raw)) as f32
    }

    fn parse_body(&self, body: &[u8], base: usize) -> Result<Z1Body, DecodeError> {
        let r = BodyReader { body, base };
        let msg_id = r.u8(0)?;
        let sub_id = r.u8(1)?;
        let msg_type = MessageType::from_byte(r.u8(2)?);
        Ok(match shape(msg_id, sub_id, msg_type, body.len()) {
            Shape::IntervalRequest => Z1Body::IntervalRequest {
                packet: sub_id,
                interval: r.u24(3)?,
            },
            Shape::IntervalData => {
                let occ = r.u16(20)?;
                Z1Body::IntervalData(IntervalData {
                    packet: sub_id,
                    interval: r.u24(3)?,
                    end: r.timestamp(6)?,
                    speed_avg_kmh: self.speed(r.u24(14)?),
                    volume: r.u24(17)?,
                    occupancy: (occ <= OCC_FULL).then(|| f32::from(occ) / f32::from(OCC_FULL)),
                    class_counts: [r.u24(22)?, r.u24(25)?, r.u24(28)?, r.u24(31)?],
                    speed_p85_kmh: self.speed(r.u24(34)?),
                    headway: r.u24(37)?,
                    gap: r.u24(40)?,
                    lane_count: r.u8(43)?,
                    approach_count: r.u8(44)?,
                    interval_s: self.interval_s,
                })
            }
            Shape::ActiveEventRequest => Z1Body::ActiveEventRequest,
            Shape::ActiveEvent => Z1Body::ActiveEvent(ActiveEvent {
                time: r.timestamp(3)?,
                lane: r.u8(11)?,
                range_m: self.length(r.u16(12)?),
                duration_ms: r.u24(14)?,
                speed_kmh: self.speed(r.u24(17)?),
                class: r.u8(20)?,
                length_m: self.length(r.u16(21)?),
            }),
            Shape::Result => Z1Body::Result {
                msg_id,
                sub_id,
                code: r.u16(3)?,
            },
            Shape::Raw => Z1Body::Raw {
                msg_id,
                sub_id,
                msg_type,
                data: body.get(3..).unwrap_or_default().to_vec(),
            },
        })
    }

    fn speed_raw(&self, field: &'static str, kmh: Option<f32>) -> Result<u32, EncodeError> {
        encode_fixed24(
            field,
            kmh.map(|v| self.speed_unit.kmh_to_wire(f64::from(v))),
        )
    }

    fn length_raw(&self, field: &'static str, m: f32) -> Result<u16, EncodeError> {
        encode_fixed16(field, self.length_unit.m_to_wire(f64::from(m)))
    }

    fn write_body(&self, body: &Z1Body, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (msg_id, sub_id, msg_type) = body.msg_id_and_type();
        out.extend([msg_id, sub_id, msg_type.byte()]);
        match body {
            Z1Body::IntervalRequest { interval, .. } => put_u24(out, "interval", *interval)?,
            Z1Body::IntervalData(d) => {
                put_u24(out, "interval", d.interval)?;
                let (date, time) = encode_timestamp(&d.end)?;
                out.extend(date.to_be_bytes());
                out.extend(time.to_be_bytes());
                put_u24(
                    out,
                    "speed_avg",
                    self.speed_raw("speed_avg", d.speed_avg_kmh)?,
                )?;
                put_u24(out, "volume", d.volume)?;
                let occ = match d.occupancy {
                    None => u16::MAX,
                    Some(f) if (0.0..=1.0).contains(&f) => {
                        (f64::from(f) * f64::from(OCC_FULL)).round() as u16
                    }
                    Some(_) => return Err(EncodeError::new("occupancy", "outside 0..=1")),
                };
                out.extend(occ.to_be_bytes());
                for c in d.class_counts {
                    put_u24(out, "class_counts", c)?;
                }
                put_u24(
                    out,
                    "speed_p85",
                    self.speed_raw("speed_p85", d.speed_p85_kmh)?,
                )?;
                put_u24(out, "headway", d.headway)?;
                put_u24(out, "gap", d.gap)?;
                out.extend([d.lane_count, d.approach_count]);
            }
            Z1Body::ActiveEventRequest => {}
            Z1Body::ActiveEvent(e) => {
                let (date, time) = encode_timestamp(&e.time)?;
                out.extend(date.to_be_bytes());
                out.extend(time.to_be_bytes());
                out.push(e.lane);
                out.extend(self.length_raw("range", e.range_m)?.to_be_bytes());
                put_u24(out, "duration_ms", e.duration_ms)?;
                put_u24(out, "speed", self.speed_raw("speed", e.speed_kmh)?)?;
                out.push(e.class);
                out.extend(self.length_raw("length", e.length_m)?.to_be_bytes());
            }
            Z1Body::Result { code, .. } => out.extend(code.to_be_bytes()),
            Z1Body::Raw { data, .. } => {
                let len = MIN_BODY_LEN + data.len();
                if len > MAX_BODY_LEN {
                    return Err(EncodeError::new("body", "longer than 244 bytes"));
                }
                if shape(msg_id, sub_id, msg_type, len) != Shape::Raw {
                    return Err(EncodeError::new(
                        "body",
                        "a raw body of a typed message's shape: use the typed variant",
                    ));
                }
                out.extend(data);
            }
        }
        Ok(())
    }
}

fn put_u24(out: &mut Vec<u8>, field: &'static str, v: u32) -> Result<(), EncodeError> {
    let [hi, a, b, c] = v.to_be_bytes();
    if hi != 0 {
        return Err(EncodeError::new(field, "does not fit in 24 bits"));
    }
    out.extend([a, b, c]);
    Ok(())
}

impl FrameCodec for Ss125 {
    type Frame = Z1Frame;
    const NAME: &'static str = "ss125";
    const MAX_FRAME_LEN: usize = HEADER_LEN + 1 + MAX_BODY_LEN + 1;

    fn decode(&self, buf: &[u8]) -> Result<Option<(Z1Frame, usize)>, DecodeError> {
        match buf.first() {
            None => return Ok(None),
            Some(b'Z') => {}
            Some(_) => return Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
        }
        match buf.get(1) {
            None => return Ok(None),
            Some(b'1') => {}
            Some(_) => return Err(DecodeError::new(1, DecodeErrorKind::BadStart)),
        }
        let Some(&body_len) = buf.get(HEADER_LEN - 1) else {
            return Ok(None);
        };
        let body_len = usize::from(body_len);
        if !(MIN_BODY_LEN..=MAX_BODY_LEN).contains(&body_len) {
            return Err(DecodeError::new(
                HEADER_LEN - 1,
                DecodeErrorKind::Length(body_len),
            ));
        }
        let (Some(header), Some(&header_crc)) = (buf.get(..HEADER_LEN), buf.get(HEADER_LEN)) else {
            return Ok(None);
        };
        let computed = crc8(header);
        if computed != header_crc {
            return Err(DecodeError::new(
                HEADER_LEN,
                DecodeErrorKind::Checksum {
                    carried: header_crc.into(),
                    computed: computed.into(),
                },
            ));
        }
        let body_at = HEADER_LEN + 1;
        let crc_at = body_at + body_len;
        let (Some(body), Some(&body_crc)) = (buf.get(body_at..crc_at), buf.get(crc_at)) else {
            return Ok(None);
        };
        let computed = crc8(body);
        if computed != body_crc {
            return Err(DecodeError::new(
                crc_at,
                DecodeErrorKind::Checksum {
                    carried: body_crc.into(),
                    computed: computed.into(),
                },
            ));
        }
        let hdr = BodyReader {
            body: header,
            base: 0,
        };
        let header = Z1Header {
            dst_sub: hdr.u8(2)?,
            dst_id: hdr.u16(3)?,
            src_sub: hdr.u8(5)?,
            src_id: hdr.u16(6)?,
            seq: hdr.u8(8)?,
        };
        let body = self.parse_body(body, body_at)?;
        Ok(Some((Z1Frame { header, body }, crc_at + 1)))
    }

    fn encode(&self, frame: &Z1Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut body = Vec::with_capacity(INTERVAL_DATA_LEN);
        self.write_body(&frame.body, &mut body)?;
        let body_len = u8::try_from(body.len())
            .ok()
            .filter(|n| usize::from(*n) <= MAX_BODY_LEN)
            .ok_or_else(|| EncodeError::new("body", "longer than 244 bytes"))?;
        let h = &frame.header;
        let [dst_hi, dst_lo] = h.dst_id.to_be_bytes();
        let [src_hi, src_lo] = h.src_id.to_be_bytes();
        let header = [
            b'Z', b'1', h.dst_sub, dst_hi, dst_lo, h.src_sub, src_hi, src_lo, h.seq, body_len,
        ];
        out.extend(header);
        out.push(crc8(&header));
        out.extend(&body);
        out.push(crc8(&body));
        Ok(())
    }

    fn could_start(&self, tail: &[u8]) -> bool {
        match tail {
            [b'Z'] => true,
            [b'Z', second, ..] => *second == b'1',
            _ => false,
        }
    }
}

impl Observations for Z1Frame {
    fn observations(&self, out: &mut Vec<Observation>) {
        match &self.body {
            // Approach packets aggregate lanes already reported; leaving them out avoids
            // counting vehicles twice.
            Z1Body::IntervalData(d) if d.is_lane() => {
                out.push(Observation::Interval(IntervalReport {
                    lane: u16::from(d.packet),
                    start: d.start(),
                    interval_s: d.interval_s,
                    volume: Some(d.volume),
                    occupancy: d.occupancy,
                    speed_avg_kmh: d.speed_avg_kmh,
                    speed_p85_kmh: d.speed_p85_kmh,
                    class_counts: Some(d.class_counts),
                    headway_avg_s: None,
                    gap_avg_s: None,
                }));
            }
            Z1Body::ActiveEvent(e) => out.push(Observation::Vehicle(VehicleEvent {
                lane: u16::from(e.lane),
                time: Some(e.time),
                speed_kmh: e.speed_kmh,
                length_m: Some(e.length_m),
                occupancy_ms: Some(e.duration_ms),
                headway_ms: None,
                class: VehicleClass::ALL.get(usize::from(e.class)).copied(),
            })),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc8_check_value() {
        assert_eq!(crc8(b"123456789"), 0xBC);
        assert_eq!(crc8(b""), 0);
    }

    #[test]
    fn fixed24_examples() {
        assert_eq!(decode_fixed24(0xFF_ED_40), Some(-19.25));
        assert_eq!(decode_fixed24(0x80_37_5E), Some(55.367_187_5));
        assert_eq!(decode_fixed24(0x80_43_C0), Some(67.75));
        assert_eq!(decode_fixed24(0x00_51_23), None, "valid bit clear");
        assert_eq!(decode_fixed24(0x80_00_00), Some(0.0));
        assert_eq!(decode_fixed24(0xFF_FF_00), Some(-1.0));
        assert_eq!(decode_fixed24(0xC0_00_00), Some(-16384.0));
        assert_eq!(decode_fixed24(0xBF_FF_FF), Some(16383.0 + 255.0 / 256.0));
    }

    #[test]
    fn fixed24_encoding_inverts_decoding() {
        assert_eq!(encode_fixed24("s", Some(-19.25)), Ok(0xFF_ED_40));
        assert_eq!(encode_fixed24("s", Some(55.367_187_5)), Ok(0x80_37_5E));
        assert_eq!(encode_fixed24("s", None), Ok(0));
        assert_eq!(encode_fixed24("s", Some(-0.0)), Ok(0x80_00_00));
        assert_eq!(encode_fixed24("s", Some(-16384.0)), Ok(0xC0_00_00));
        assert!(encode_fixed24("s", Some(-0.5)).is_err());
        assert!(encode_fixed24("s", Some(16384.0)).is_err());
        assert!(encode_fixed24("s", Some(-16385.0)).is_err());
        assert!(encode_fixed24("s", Some(f64::NAN)).is_err());
        for raw in (0x80_0000u32..=0xFF_FFFF).step_by(97) {
            let v = decode_fixed24(raw).unwrap();
            if (-1.0..0.0).contains(&v) {
                continue;
            }
            let back = encode_fixed24("s", Some(v)).unwrap();
            assert_eq!(decode_fixed24(back), Some(v), "raw {raw:#x}");
        }
    }

    #[test]
    fn timestamp_words() {
        // From IRIS's published 0x67 body: 2016-12-18 22:17:32.718 UTC.
        let t = decode_timestamp(0x000F_C192, 0x0591_82CE).unwrap();
        assert_eq!(t.to_rfc3339(), "2016-12-18T22:17:32.718+00:00");
        assert_eq!(encode_timestamp(&t), Ok((0x000F_C192, 0x0591_82CE)));
        assert_eq!(decode_timestamp(0, 0), None, "month 0");
        assert_eq!(
            decode_timestamp(2016 << 9 | 2 << 5 | 30, 0),
            None,
            "30 February"
        );
        assert_eq!(
            decode_timestamp(2016 << 9 | 1 << 5 | 1, 1000),
            None,
            "1000 ms"
        );
        assert_eq!(decode_timestamp(2016 << 9 | 1 << 5 | 1, 24 << 22), None);
    }

    #[test]
    fn body_len_is_checked_before_waiting_for_the_body() {
        let mut wire = b"Z1\x00\x00\x01\x00\x00\x00\x00".to_vec();
        assert_eq!(Ss125::default().decode(&wire), Ok(None));
        wire.push(245);
        let err = Ss125::default().decode(&wire).unwrap_err();
        assert_eq!((err.offset, err.kind), (9, DecodeErrorKind::Length(245)));
        wire[9] = 2;
        let err = Ss125::default().decode(&wire).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Length(2));
    }

    #[test]
    fn a_false_start_is_rejected_on_its_second_byte() {
        let err = Ss125::default().decode(b"Z2").unwrap_err();
        assert_eq!((err.offset, err.kind), (1, DecodeErrorKind::BadStart));
        assert!(!Ss125::default().could_start(b"Z2"));
        assert!(Ss125::default().could_start(b"Z"));
    }

    #[test]
    fn raw_bodies_of_typed_shape_are_refused() {
        let frame = Z1Frame {
            header: Z1Header::default(),
            body: Z1Body::Raw {
                msg_id: MSG_INTERVAL,
                sub_id: 0,
                msg_type: MessageType::Read,
                data: vec![0, 0, 0],
            },
        };
        assert!(Ss125::default().encode(&frame, &mut Vec::new()).is_err());
        let frame = Z1Frame {
            body: Z1Body::Raw {
                msg_id: 0x0E,
                sub_id: 0,
                msg_type: MessageType::Read,
                data: vec![0; 242],
            },
            ..frame
        };
        assert!(Ss125::default().encode(&frame, &mut Vec::new()).is_err());
    }

    #[test]
    fn no_event_reply_is_raw_and_observes_nothing() {
        let mut body = vec![MSG_ACTIVE_EVENT, 0, 0];
        body.resize(ACTIVE_EVENT_LEN, 0);
        let parsed = Ss125::default().parse_body(&body, 11).unwrap();
        assert!(matches!(parsed, Z1Body::Raw { sub_id: 0, .. }));
        let mut obs = Vec::new();
        Z1Frame {
            header: Z1Header::default(),
            body: parsed,
        }
        .observations(&mut obs);
        assert!(obs.is_empty());
    }

    #[test]
    fn an_invalid_timestamp_is_a_field_error_at_its_offset() {
        let mut body = vec![MSG_ACTIVE_EVENT, 1, 0];
        body.resize(ACTIVE_EVENT_LEN, 0);
        let err = Ss125::default().parse_body(&body, 11).unwrap_err();
        assert_eq!(err.offset, 14);
        assert!(matches!(
            err.kind,
            DecodeErrorKind::Field {
                field: "timestamp",
                ..
            }
        ));
    }
}
