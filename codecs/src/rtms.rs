//! RTMS G4 (Image Sensing Systems / EIS radar) binary frames.
//!
//! # Wire format
//!
//! ```text
//! FF AA  qual  len  sensor_id(u16 BE)  data…  checksum(u16 BE)
//! ```
//!
//! - `FF AA` is the frame sentinel; `qual` (qualifier) names the message type.
//! - `len` counts the sensor id and the data: `len = 2 + data.len()`, so `len >= 2` and a
//!   frame is `len + 6` bytes long (at most 261).
//! - `checksum` is the 16-bit sum of the sensor-id and data bytes (the bytes `len` covers).
//!
//! Source: DESIGN §4 (spec facts), confirmed against the public IRIS G4 driver
//! (`mnit-rtmc/iris`, `server/comm/g4/G4Property.java`: sentinel `0xFFAA`, offsets
//! qual 2 / length 3 / sensor id 4 / data 6, minimum length 2, checksum = byte sum over
//! sensor id + data, written as u16). Qualifier codes come from the same driver
//! (`QualCode.java`); the codec rejects codes outside that list so a false `FF AA` in the
//! stream is dropped at its third byte instead of waiting for a bogus length.
//!
//! # Typed messages (layouts from IRIS `StatProperty.java`, `StatusFlags.java`,
//! `StatComposition.java`, `VehicleEventProperty.java`, `G4Rec.java`)
//!
//! Statistical data for one period arrives as a sequence of frames: a header (0x80), then
//! per-zone frames, then a footer (0x81). Use [`StatAssembler`] to gather them into one
//! [`G4Stats`], which yields one [`IntervalReport`] per zone.
//!
//! - Header 0x80, 22 data bytes: `msg_num u8, page u16, status flags u8, stamp (7 BCD
//!   bytes), zones u8 (low nibble = zone count, bit 6 = forward mounted), composition u8,
//!   period_s u16, voltage u8 (0.1 V), health u8, 5 spare bytes`.
//!   Status flag bit 0 set = speeds in mph, else km/h.
//! - Per-zone frames carry one u16 BE per zone: 0x10 volume (vehicles; > 0xFE00 invalid),
//!   0x11 occupancy (0–1000 = per-mille of the period), 0x12 speed (≤ 200 valid, 240 =
//!   unknown), 0x13 gap (0.1 s, ≤ 36000), 0x14–0x18 class C1–C5 counts, 0x1E headway
//!   (0.1 s, ≤ 36000), 0x1F 85th-percentile speed.
//! - Footer 0x81, 1 data byte: the header's `msg_num`.
//! - Vehicle event 0x5E (sent unpolled per vehicle in event mode), 15 data bytes:
//!   `zone u8 (0-based), class u8, length u8 (dm), speed u8, duration u16 (ms), sub-second
//!   stamp byte, stamp (7 BCD bytes), unit u8 (1 = mph, 0 = km/h)`. The encoding of the
//!   sub-second byte is not public; it is kept raw and not applied to the time.
//!
//! Time stamps are 7 BCD bytes: second, minute, hour, weekday, day, month, year − 2000,
//! treated as UTC as IRIS does.
//!
//! Every other known qualifier (ACK, NAK, setup, RTC, …) is kept raw as
//! [`G4Message::Other`].
//!
//! # Units in observations
//!
//! Zone `z` (0-based on the wire in vehicle events, array index in statistics) is reported
//! as lane `z + 1`. Speeds are converted to km/h per the unit flag, lengths dm → m,
//! occupancy per-mille → fraction, gap/headway 0.1 s → s. Out-of-range values (the ones
//! IRIS also discards) become `None`; a vehicle speed or length of 0 means "not measured"
//! and becomes `None`. G4 classes C1–C5 are length bins configured in the sensor, not the
//! project's bins, so `class_counts` stays `None` (the raw counts remain in [`G4Stats`]).
//! Whether the header stamp marks the start or the end of the period is not public, so
//! `IntervalReport::start` is `None`; the raw stamp is in [`StatHeader::stamp`].

use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{IntervalReport, KMH_PER_MPH, Observation, Observations, VehicleEvent};
use crate::stream::FrameCodec;

/// The two bytes that open every frame.
pub const SENTINEL: [u8; 2] = [0xFF, 0xAA];
/// Offset of the first data byte (after sentinel, qualifier, length and sensor id).
const DATA_OFFSET: usize = 6;
/// The smallest `len`: the sensor id alone.
const MIN_LEN: u8 = 2;
/// Data bytes of a statistical header.
pub const STAT_HEADER_LEN: usize = 22;
/// Data bytes of a vehicle event.
pub const VEHICLE_EVENT_LEN: usize = 15;

/// Largest per-zone volume IRIS accepts.
const MAX_VOLUME: u16 = 0xFE00;
const MAX_OCCUPANCY_PERMILLE: u16 = 1000;
const MAX_SPEED: u16 = 200;
const MAX_TENTHS_S: u16 = 36000;

/// Message types (the `qual` byte). Codes from the IRIS G4 driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Qualifier {
    VehicleCount = 0x10,
    Occupancy = 0x11,
    Speed = 0x12,
    Gap = 0x13,
    C1 = 0x14,
    C2 = 0x15,
    C3 = 0x16,
    C4 = 0x17,
    C5 = 0x18,
    Nak = 0x1A,
    Ack = 0x1C,
    Headway = 0x1E,
    Speed85 = 0x1F,
    Information = 0x40,
    Setup = 0x41,
    Rtc = 0x49,
    TestPoll = 0x4C,
    Synchronize = 0x4E,
    MemoryDownload = 0x4F,
    MemoryRead = 0x50,
    MemoryClear = 0x51,
    AbortDownload = 0x52,
    StatPoll = 0x53,
    ClearBuffer = 0x54,
    Classification = 0x57,
    VehicleEvent = 0x5E,
    NormalMode = 0x5F,
    MemoryTime = 0x68,
    StatHeader = 0x80,
    StatFooter = 0x81,
    InfoQuery = 0xC0,
    SetupQuery = 0xC1,
    TestResult = 0xCC,
    Memory = 0xD0,
    ClassQuery = 0xD7,
    RtcQuery = 0xF9,
}

impl Qualifier {
    pub const ALL: [Qualifier; 36] = [
        Self::VehicleCount,
        Self::Occupancy,
        Self::Speed,
        Self::Gap,
        Self::C1,
        Self::C2,
        Self::C3,
        Self::C4,
        Self::C5,
        Self::Nak,
        Self::Ack,
        Self::Headway,
        Self::Speed85,
        Self::Information,
        Self::Setup,
        Self::Rtc,
        Self::TestPoll,
        Self::Synchronize,
        Self::MemoryDownload,
        Self::MemoryRead,
        Self::MemoryClear,
        Self::AbortDownload,
        Self::StatPoll,
        Self::ClearBuffer,
        Self::Classification,
        Self::VehicleEvent,
        Self::NormalMode,
        Self::MemoryTime,
        Self::StatHeader,
        Self::StatFooter,
        Self::InfoQuery,
        Self::SetupQuery,
        Self::TestResult,
        Self::Memory,
        Self::ClassQuery,
        Self::RtcQuery,
    ];

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|q| q.code() == code)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether frames of this qualifier decode into a typed [`G4Message`] variant rather
    /// than [`G4Message::Other`].
    pub fn is_typed(self) -> bool {
        matches!(
            self,
            Self::StatHeader | Self::StatFooter | Self::VehicleEvent
        ) || ZoneQuantity::from_qualifier(self).is_some()
    }
}

/// What a per-zone statistical frame measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneQuantity {
    /// Vehicles in the period.
    Volume,
    /// Per-mille of the period (0–1000).
    Occupancy,
    /// Mean speed, mph or km/h per [`StatHeader::is_mph`]; 240 = unknown.
    Speed,
    /// Mean gap, 0.1 s.
    Gap,
    /// Vehicles of G4 class C1..=C5 (the sensor's configured length bins).
    Class(u8),
    /// Mean headway, 0.1 s.
    Headway,
    /// 85th-percentile speed, units as [`ZoneQuantity::Speed`].
    Speed85,
}

impl ZoneQuantity {
    pub fn from_qualifier(q: Qualifier) -> Option<Self> {
        Some(match q {
            Qualifier::VehicleCount => Self::Volume,
            Qualifier::Occupancy => Self::Occupancy,
            Qualifier::Speed => Self::Speed,
            Qualifier::Gap => Self::Gap,
            Qualifier::C1 => Self::Class(1),
            Qualifier::C2 => Self::Class(2),
            Qualifier::C3 => Self::Class(3),
            Qualifier::C4 => Self::Class(4),
            Qualifier::C5 => Self::Class(5),
            Qualifier::Headway => Self::Headway,
            Qualifier::Speed85 => Self::Speed85,
            _ => return None,
        })
    }

    /// The qualifier of this quantity, `None` for a class outside 1..=5.
    pub fn qualifier(self) -> Option<Qualifier> {
        Some(match self {
            Self::Volume => Qualifier::VehicleCount,
            Self::Occupancy => Qualifier::Occupancy,
            Self::Speed => Qualifier::Speed,
            Self::Gap => Qualifier::Gap,
            Self::Class(1) => Qualifier::C1,
            Self::Class(2) => Qualifier::C2,
            Self::Class(3) => Qualifier::C3,
            Self::Class(4) => Qualifier::C4,
            Self::Class(5) => Qualifier::C5,
            Self::Class(_) => return None,
            Self::Headway => Qualifier::Headway,
            Self::Speed85 => Qualifier::Speed85,
        })
    }
}

/// A G4 time stamp as on the wire (BCD decoded, not validated as a calendar date: a sensor
/// with an unset clock still sends its data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct G4Stamp {
    pub second: u8,
    pub minute: u8,
    pub hour: u8,
    /// Day of week as the sensor counts it (not used for the date).
    pub weekday: u8,
    pub day: u8,
    pub month: u8,
    /// Years since 2000.
    pub year: u8,
}

impl G4Stamp {
    pub const LEN: usize = 7;

    /// The instant, when the fields form a valid UTC date and time.
    pub fn to_datetime(&self) -> Option<DateTime<Utc>> {
        NaiveDate::from_ymd_opt(
            2000 + i32::from(self.year),
            self.month.into(),
            self.day.into(),
        )?
        .and_hms_opt(self.hour.into(), self.minute.into(), self.second.into())
        .map(|t| t.and_utc())
    }

    /// The stamp of an instant in 2000–2099 (sub-seconds dropped; weekday 1 = Sunday as
    /// `java.util.Calendar` counts, which is what IRIS writes).
    pub fn from_datetime(t: DateTime<Utc>) -> Option<Self> {
        use chrono::{Datelike, Timelike};
        let year = u8::try_from(t.year().checked_sub(2000)?)
            .ok()
            .filter(|y| *y <= 99)?;
        Some(Self {
            second: u8::try_from(t.second().min(59)).ok()?,
            minute: u8::try_from(t.minute()).ok()?,
            hour: u8::try_from(t.hour()).ok()?,
            weekday: u8::try_from(t.weekday().number_from_sunday()).ok()?,
            day: u8::try_from(t.day()).ok()?,
            month: u8::try_from(t.month()).ok()?,
            year,
        })
    }

    fn decode(bytes: &[u8], offset: usize) -> Result<Self, DecodeError> {
        let mut v = [0u8; Self::LEN];
        for (i, slot) in v.iter_mut().enumerate() {
            let b = bytes.get(i).copied().unwrap_or(0);
            *slot = from_bcd(b).ok_or_else(|| {
                DecodeError::field(offset + i, "stamp", format!("{b:#04x} is not BCD"))
            })?;
        }
        let [second, minute, hour, weekday, day, month, year] = v;
        Ok(Self {
            second,
            minute,
            hour,
            weekday,
            day,
            month,
            year,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for v in [
            self.second,
            self.minute,
            self.hour,
            self.weekday,
            self.day,
            self.month,
            self.year,
        ] {
            out.push(to_bcd(v).ok_or_else(|| EncodeError::new("stamp", "field above 99"))?);
        }
        Ok(())
    }
}

fn from_bcd(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

fn to_bcd(v: u8) -> Option<u8> {
    (v <= 99).then_some(((v / 10) << 4) | (v % 10))
}

/// Data of a statistical header frame (0x80).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatHeader {
    /// Message number 0–255, repeated by the footer.
    pub msg_num: u8,
    /// Memory page where the sensor stored the data.
    pub page: u16,
    /// Status flags: bit 7 FIFO, 6 dual loop, 5 six-foot emulation, 4 high-Z, 3 memory,
    /// 2 time stamp, 1 contact closure, 0 mph.
    pub flags: u8,
    pub stamp: G4Stamp,
    /// Low nibble: zone count; bit 6: forward (not side-fired) mounting.
    pub zones: u8,
    /// Which optional frames follow: bit 7 gap, bit 6 headway, bit 2 speed85, bits
    /// 5,4,3,1,0 the class count (0b0000_1000 = 2, 0b0011_1000 = 4, 0b0011_1011 = 6).
    pub composition: u8,
    /// Binning period in seconds.
    pub period_s: u16,
    /// Supply voltage in 0.1 V.
    pub voltage_dv: u8,
    pub health: u8,
    pub spare: [u8; 5],
}

impl StatHeader {
    /// Speeds of this message are in mph (else km/h).
    pub fn is_mph(&self) -> bool {
        self.flags & 0x01 != 0
    }

    pub fn zone_count(&self) -> usize {
        usize::from(self.zones & 0x0F)
    }

    pub fn forward_mounted(&self) -> bool {
        self.zones & 0x40 != 0
    }
}

/// Data of a per-vehicle event frame (0x5E).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G4VehicleEvent {
    /// Detection zone, 0-based.
    pub zone: u8,
    /// The sensor's own classification.
    pub class: u8,
    /// Vehicle length in decimetres, 0 = not measured.
    pub length_dm: u8,
    /// Speed in mph or km/h per `mph`, 0 = not measured.
    pub speed: u8,
    /// Time the vehicle occupied the zone, ms.
    pub duration_ms: u16,
    /// First stamp byte (sub-second part); its encoding is not public, kept raw.
    pub stamp_sub: u8,
    pub stamp: G4Stamp,
    pub mph: bool,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum G4Message {
    StatHeader(StatHeader),
    /// One u16 per zone.
    PerZone {
        quantity: ZoneQuantity,
        values: Vec<u16>,
    },
    StatFooter {
        msg_num: u8,
    },
    Vehicle(G4VehicleEvent),
    /// Any other known qualifier (ACK, NAK, setup, …), data kept raw. Encoding a typed
    /// qualifier here is refused, so that decode(encode(x)) == x.
    Other {
        qualifier: Qualifier,
        data: Vec<u8>,
    },
}

/// One G4 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G4Frame {
    pub sensor_id: u16,
    pub message: G4Message,
}

/// The RTMS G4 codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rtms;

fn be16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// The 16-bit sum G4 uses.
pub fn checksum(bytes: &[u8]) -> u16 {
    bytes
        .iter()
        .fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)))
}

fn parse_message(qualifier: Qualifier, data: &[u8]) -> Result<G4Message, DecodeError> {
    let wrong_len = || DecodeError::new(3, DecodeErrorKind::Length(data.len() + 2));
    if let Some(quantity) = ZoneQuantity::from_qualifier(qualifier) {
        if data.len() % 2 != 0 {
            return Err(wrong_len());
        }
        let values = data.chunks_exact(2).map(|c| be16(c, 0)).collect::<Vec<_>>();
        return Ok(G4Message::PerZone { quantity, values });
    }
    match qualifier {
        Qualifier::StatHeader => {
            if data.len() != STAT_HEADER_LEN {
                return Err(wrong_len());
            }
            let stamp = G4Stamp::decode(data.get(4..11).unwrap_or_default(), DATA_OFFSET + 4)?;
            let mut spare = [0u8; 5];
            if let Some(s) = data.get(17..22) {
                spare.copy_from_slice(s);
            }
            Ok(G4Message::StatHeader(StatHeader {
                msg_num: byte(data, 0),
                page: be16(data, 1),
                flags: byte(data, 3),
                stamp,
                zones: byte(data, 11),
                composition: byte(data, 12),
                period_s: be16(data, 13),
                voltage_dv: byte(data, 15),
                health: byte(data, 16),
                spare,
            }))
        }
        Qualifier::StatFooter => {
            if data.len() != 1 {
                return Err(wrong_len());
            }
            Ok(G4Message::StatFooter {
                msg_num: byte(data, 0),
            })
        }
        Qualifier::VehicleEvent => {
            if data.len() != VEHICLE_EVENT_LEN {
                return Err(wrong_len());
            }
            let stamp = G4Stamp::decode(data.get(7..14).unwrap_or_default(), DATA_OFFSET + 7)?;
            let mph = match byte(data, 14) {
                0 => false,
                1 => true,
                u => {
                    return Err(DecodeError::field(
                        DATA_OFFSET + 14,
                        "unit",
                        format!("{u} is neither 0 (km/h) nor 1 (mph)"),
                    ));
                }
            };
            Ok(G4Message::Vehicle(G4VehicleEvent {
                zone: byte(data, 0),
                class: byte(data, 1),
                length_dm: byte(data, 2),
                speed: byte(data, 3),
                duration_ms: be16(data, 4),
                stamp_sub: byte(data, 6),
                stamp,
                mph,
            }))
        }
        other => Ok(G4Message::Other {
            qualifier: other,
            data: data.to_vec(),
        }),
    }
}

impl G4Message {
    pub fn qualifier(&self) -> Option<Qualifier> {
        match self {
            Self::StatHeader(_) => Some(Qualifier::StatHeader),
            Self::PerZone { quantity, .. } => quantity.qualifier(),
            Self::StatFooter { .. } => Some(Qualifier::StatFooter),
            Self::Vehicle(_) => Some(Qualifier::VehicleEvent),
            Self::Other { qualifier, .. } => Some(*qualifier),
        }
    }

    fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::StatHeader(h) => {
                out.push(h.msg_num);
                out.extend(h.page.to_be_bytes());
                out.push(h.flags);
                h.stamp.encode(out)?;
                out.extend([h.zones, h.composition]);
                out.extend(h.period_s.to_be_bytes());
                out.extend([h.voltage_dv, h.health]);
                out.extend(h.spare);
            }
            Self::PerZone { values, .. } => {
                for v in values {
                    out.extend(v.to_be_bytes());
                }
            }
            Self::StatFooter { msg_num } => out.push(*msg_num),
            Self::Vehicle(v) => {
                out.extend([v.zone, v.class, v.length_dm, v.speed]);
                out.extend(v.duration_ms.to_be_bytes());
                out.push(v.stamp_sub);
                v.stamp.encode(out)?;
                out.push(u8::from(v.mph));
            }
            Self::Other { qualifier, data } => {
                if qualifier.is_typed() {
                    return Err(EncodeError::new(
                        "qualifier",
                        "has a typed message variant; use it",
                    ));
                }
                out.extend(data);
            }
        }
        Ok(())
    }
}

impl FrameCodec for Rtms {
    type Frame = G4Frame;
    const NAME: &'static str = "rtms_g4";
    const MAX_FRAME_LEN: usize = 255 + 6;

    fn decode(&self, buf: &[u8]) -> Result<Option<(G4Frame, usize)>, DecodeError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        if b0 != SENTINEL[0] {
            return Err(DecodeError::new(0, DecodeErrorKind::BadStart));
        }
        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        if b1 != SENTINEL[1] {
            return Err(DecodeError::new(1, DecodeErrorKind::BadStart));
        }
        let Some(&qual) = buf.get(2) else {
            return Ok(None);
        };
        let qualifier = Qualifier::from_code(qual).ok_or_else(|| {
            DecodeError::field(2, "qualifier", format!("unknown code {qual:#04x}"))
        })?;
        let Some(&len) = buf.get(3) else {
            return Ok(None);
        };
        if len < MIN_LEN {
            return Err(DecodeError::new(3, DecodeErrorKind::Length(len.into())));
        }
        let len = usize::from(len);
        let total = len + 6;
        let (Some(body), Some(carried)) = (buf.get(4..4 + len), buf.get(4 + len..total)) else {
            return Ok(None);
        };
        let carried = be16(carried, 0);
        let computed = checksum(body);
        if carried != computed {
            return Err(DecodeError::new(
                4 + len,
                DecodeErrorKind::Checksum {
                    carried: carried.into(),
                    computed: computed.into(),
                },
            ));
        }
        let sensor_id = be16(body, 0);
        let data = body.get(2..).unwrap_or_default();
        let message = parse_message(qualifier, data)?;
        Ok(Some((G4Frame { sensor_id, message }, total)))
    }

    fn encode(&self, frame: &G4Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let qualifier = frame
            .message
            .qualifier()
            .ok_or_else(|| EncodeError::new("quantity", "class outside C1..=C5"))?;
        let mut body = Vec::with_capacity(64);
        body.extend(frame.sensor_id.to_be_bytes());
        frame.message.encode_data(&mut body)?;
        let len = u8::try_from(body.len())
            .map_err(|_| EncodeError::new("data", "longer than 253 bytes"))?;
        out.extend(SENTINEL);
        out.extend([qualifier.code(), len]);
        out.extend(&body);
        out.extend(checksum(&body).to_be_bytes());
        Ok(())
    }

    fn could_start(&self, tail: &[u8]) -> bool {
        let header_ok = |i: usize, ok: fn(u8) -> bool| tail.get(i).is_none_or(|b| ok(*b));
        tail.first() == Some(&SENTINEL[0])
            && header_ok(1, |b| b == SENTINEL[1])
            && header_ok(2, |b| Qualifier::from_code(b).is_some())
            && header_ok(3, |b| b >= MIN_LEN)
    }
}

fn speed_kmh(value: u16, mph: bool) -> Option<f32> {
    (value <= MAX_SPEED).then(|| {
        let v = f32::from(value);
        if mph { v * KMH_PER_MPH } else { v }
    })
}

impl Observations for G4Frame {
    /// Only vehicle events stand alone; statistics need [`StatAssembler`].
    fn observations(&self, out: &mut Vec<Observation>) {
        if let G4Message::Vehicle(v) = &self.message {
            let mut e = VehicleEvent::on_lane(u16::from(v.zone) + 1);
            e.time = v.stamp.to_datetime();
            e.speed_kmh = (v.speed > 0)
                .then(|| speed_kmh(v.speed.into(), v.mph))
                .flatten();
            e.length_m = (v.length_dm > 0).then(|| f32::from(v.length_dm) / 10.0);
            e.occupancy_ms = Some(v.duration_ms.into());
            out.push(Observation::Vehicle(e));
        }
    }
}

/// One statistical message (header, per-zone frames, footer) put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G4Stats {
    pub sensor_id: u16,
    pub header: StatHeader,
    pub volume: Option<Vec<u16>>,
    pub occupancy: Option<Vec<u16>>,
    pub speed: Option<Vec<u16>>,
    pub gap: Option<Vec<u16>>,
    pub headway: Option<Vec<u16>>,
    pub speed85: Option<Vec<u16>>,
    /// Counts of G4 classes C1..=C5 (index 0 = C1).
    pub classes: [Option<Vec<u16>>; 5],
}

impl G4Stats {
    fn new(sensor_id: u16, header: StatHeader) -> Self {
        Self {
            sensor_id,
            header,
            volume: None,
            occupancy: None,
            speed: None,
            gap: None,
            headway: None,
            speed85: None,
            classes: Default::default(),
        }
    }

    fn slot(&mut self, q: ZoneQuantity) -> Option<&mut Option<Vec<u16>>> {
        Some(match q {
            ZoneQuantity::Volume => &mut self.volume,
            ZoneQuantity::Occupancy => &mut self.occupancy,
            ZoneQuantity::Speed => &mut self.speed,
            ZoneQuantity::Gap => &mut self.gap,
            ZoneQuantity::Headway => &mut self.headway,
            ZoneQuantity::Speed85 => &mut self.speed85,
            ZoneQuantity::Class(c) => self.classes.get_mut(usize::from(c).checked_sub(1)?)?,
        })
    }
}

fn at(values: &Option<Vec<u16>>, zone: usize) -> Option<u16> {
    values.as_ref()?.get(zone).copied()
}

impl Observations for G4Stats {
    fn observations(&self, out: &mut Vec<Observation>) {
        let mph = self.header.is_mph();
        let tenths = |v: u16| (v <= MAX_TENTHS_S).then(|| f32::from(v) / 10.0);
        for zone in 0..self.header.zone_count() {
            let Ok(lane) = u16::try_from(zone + 1) else {
                break;
            };
            let mut r = IntervalReport::on_lane(lane);
            r.interval_s = Some(self.header.period_s.into());
            r.volume = at(&self.volume, zone)
                .filter(|v| *v <= MAX_VOLUME)
                .map(u32::from);
            r.occupancy = at(&self.occupancy, zone)
                .filter(|v| *v <= MAX_OCCUPANCY_PERMILLE)
                .map(|v| f32::from(v) / 1000.0);
            r.speed_avg_kmh = at(&self.speed, zone).and_then(|v| speed_kmh(v, mph));
            r.speed_p85_kmh = at(&self.speed85, zone).and_then(|v| speed_kmh(v, mph));
            r.headway_avg_s = at(&self.headway, zone).and_then(tenths);
            r.gap_avg_s = at(&self.gap, zone).and_then(tenths);
            out.push(Observation::Interval(r));
        }
    }
}

/// Gathers the frames of statistical messages into [`G4Stats`].
///
/// A message is complete at its footer. Frames outside a header…footer sequence, a
/// per-zone frame whose length disagrees with the header's zone count, a different sensor
/// id or a footer with another message number abandon the message and count it in
/// [`StatAssembler::abandoned`]. Vehicle events and other frames pass by untouched.
#[derive(Debug, Default)]
pub struct StatAssembler {
    current: Option<G4Stats>,
    abandoned: u64,
}

impl StatAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages (or stray frames) given up so far.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Feeds one frame; returns a complete message at its footer.
    pub fn push(&mut self, frame: &G4Frame) -> Option<G4Stats> {
        match &frame.message {
            G4Message::StatHeader(h) => {
                if self.current.is_some() {
                    self.abandoned += 1;
                }
                self.current = Some(G4Stats::new(frame.sensor_id, h.clone()));
                None
            }
            G4Message::PerZone { quantity, values } => {
                let fits = self.current.as_ref().is_some_and(|s| {
                    s.sensor_id == frame.sensor_id && s.header.zone_count() == values.len()
                });
                match self.current.as_mut().filter(|_| fits) {
                    Some(stats) => {
                        if let Some(slot) = stats.slot(*quantity) {
                            *slot = Some(values.clone());
                        }
                    }
                    None => self.abandon(),
                }
                None
            }
            G4Message::StatFooter { msg_num } => {
                let done = self.current.take();
                match done {
                    Some(s) if s.sensor_id == frame.sensor_id && s.header.msg_num == *msg_num => {
                        Some(s)
                    }
                    _ => {
                        self.abandoned += 1;
                        None
                    }
                }
            }
            G4Message::Vehicle(_) | G4Message::Other { .. } => None,
        }
    }

    fn abandon(&mut self) {
        self.current = None;
        self.abandoned += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(qual: u8, sensor: u16, data: &[u8]) -> Vec<u8> {
        let mut body = sensor.to_be_bytes().to_vec();
        body.extend(data);
        let mut w = vec![0xFF, 0xAA, qual, body.len() as u8];
        w.extend(&body);
        w.extend(checksum(&body).to_be_bytes());
        w
    }

    #[test]
    fn ack_with_no_data_is_the_shortest_frame() {
        let w = wire(0x1C, 0x0102, &[]);
        assert_eq!(w, [0xFF, 0xAA, 0x1C, 0x02, 0x01, 0x02, 0x00, 0x03]);
        let (f, n) = Rtms.decode(&w).unwrap().unwrap();
        assert_eq!(n, 8);
        assert_eq!(
            f,
            G4Frame {
                sensor_id: 0x0102,
                message: G4Message::Other {
                    qualifier: Qualifier::Ack,
                    data: vec![]
                }
            }
        );
    }

    #[test]
    fn header_errors_come_at_the_offending_byte() {
        assert_eq!(Rtms.decode(&[0x00]).unwrap_err().offset, 0);
        let e = Rtms.decode(&[0xFF, 0x00]).unwrap_err();
        assert_eq!((e.offset, e.kind), (1, DecodeErrorKind::BadStart));
        let e = Rtms.decode(&[0xFF, 0xAA, 0x99]).unwrap_err();
        assert_eq!(e.offset, 2);
        assert_eq!(e.kind.label(), "field");
        let e = Rtms.decode(&[0xFF, 0xAA, 0x1C, 0x01]).unwrap_err();
        assert_eq!((e.offset, e.kind), (3, DecodeErrorKind::Length(1)));
    }

    #[test]
    fn typed_frames_of_the_wrong_length_are_rejected() {
        let e = Rtms.decode(&wire(0x81, 1, &[1, 2])).unwrap_err();
        assert_eq!((e.offset, e.kind), (3, DecodeErrorKind::Length(4)));
        let e = Rtms.decode(&wire(0x10, 1, &[0, 1, 2])).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Length(5));
        let e = Rtms.decode(&wire(0x5E, 1, &[0; 14])).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Length(16));
    }

    #[test]
    fn bad_bcd_and_bad_unit_name_their_byte() {
        let mut data = [0u8; 15];
        data[9] = 0x1A; // hour
        let e = Rtms.decode(&wire(0x5E, 1, &data)).unwrap_err();
        assert_eq!(e.offset, 6 + 9);
        data[9] = 0x12;
        data[14] = 2;
        let e = Rtms.decode(&wire(0x5E, 1, &data)).unwrap_err();
        assert_eq!(e.offset, 6 + 14);
    }

    #[test]
    fn bcd_round_trips() {
        for v in 0..=99u8 {
            assert_eq!(from_bcd(to_bcd(v).unwrap()), Some(v));
        }
        assert_eq!(to_bcd(100), None);
        assert_eq!(from_bcd(0x9A), None);
    }

    #[test]
    fn other_with_typed_qualifier_is_refused() {
        let f = G4Frame {
            sensor_id: 1,
            message: G4Message::Other {
                qualifier: Qualifier::StatFooter,
                data: vec![1],
            },
        };
        assert!(Rtms.encode(&f, &mut Vec::new()).is_err());
    }

    #[test]
    fn assembler_abandons_out_of_sequence_frames() {
        let mut a = StatAssembler::new();
        let zone = G4Frame {
            sensor_id: 1,
            message: G4Message::PerZone {
                quantity: ZoneQuantity::Volume,
                values: vec![1],
            },
        };
        assert_eq!(a.push(&zone), None);
        assert_eq!(a.abandoned(), 1);
        let footer = G4Frame {
            sensor_id: 1,
            message: G4Message::StatFooter { msg_num: 0 },
        };
        assert_eq!(a.push(&footer), None);
        assert_eq!(a.abandoned(), 2);
    }
}
