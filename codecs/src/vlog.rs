//! IRIS `.vlog` per-vehicle logs (text), for replay and fixtures.
//!
//! # Format
//!
//! One line per vehicle, `\n`-terminated (`\r\n` is tolerated on input):
//!
//! ```text
//! duration_ms,headway_ms,HH:MM:SS,speed_mph
//! ```
//!
//! - `duration_ms`: time the vehicle occupied the detector; `headway_ms`: time between the
//!   starts of this and the previous vehicle; `speed_mph`: integer mph.
//! - `?` marks a missing value; an empty field is missing too. The writer puts `?` for a
//!   missing duration or headway and leaves the time stamp and speed empty; trailing empty
//!   fields are dropped, so lines may have 2, 3 or 4 fields (`231,14069`, `240,453,,45`).
//! - The time stamp (24-hour, local time of the log's day) is written only when the headway
//!   is missing, on the first vehicle and when the hour changes; otherwise it is left empty
//!   and follows from the previous vehicle's time plus the headway.
//! - A line holding only `*` marks a gap: detector data missing or the detector reset.
//!   Headways do not run across a gap.
//!
//! Source: IRIS documentation `docs/vehicle_detection.md` ("Vehicle Logging", with an example
//! log of 11 vehicles that the fixture `testdata/vlog/example.vlog` reproduces), the IRIS
//! writer `server/VehicleEventLog.java` (`?` for duration/headway ≤ 0, headway > 90 s logged
//! as `?`, when the stamp is written, trailing commas trimmed, `*` for gaps) and the reader
//! in IRIS trafdat `VehicleEvent.java` (fields split on `,`, missing trailing fields allowed,
//! time parts 0–23 / 0–59 / 0–59).
//!
//! # What the codec adds
//!
//! A `.vlog` file belongs to one detector and one day, neither of which is in the lines, so
//! the codec carries them: [`Vlog::new`]`(date, lane)`, and [`Vlog::with_utc_offset`] for
//! the local time the stamps are written in (IRIS writes server-local time; a fixed offset
//! is applied for the whole file, so a file spanning a DST change needs two passes). Decoded
//! stamps become UTC instants.
//!
//! # Time reconstruction
//!
//! `decode` is stateless, so a frame holds only the stamp written on its own line. The
//! [`VlogTimeline`] walks frames in order and fills in missing stamps forward: previous time
//! plus headway (IRIS does the same, and also propagates backward and interpolates across runs
//! without stamps, which needs the whole file; a stream decoder cannot look ahead, so we do
//! not). A vehicle with neither stamp nor a known previous time, and every vehicle after a
//! gap until the next stamp, stays without time. Stamps are whole seconds, so reconstructed
//! times inherit up to 1 s of offset from the last written stamp.
//!
//! # Units in observations
//!
//! speed mph → km/h (a speed of 0 means not measured and becomes `None`), `occupancy_ms` =
//! duration, `headway_ms` = headway. Lines carry no length or class.
//!
//! # Resynchronisation
//!
//! A malformed line is an error at its first offending byte; the stream decoder then skips to
//! the next position that starts a well-formed line. Because the decoder cannot see line
//! boundaries behind it, the tail of a malformed line can occasionally pass for a line (a
//! lone number after a comma). Machine-written logs rarely contain malformed lines.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{KMH_PER_MPH, Observation, Observations, VehicleEvent};
use crate::stream::FrameCodec;

/// Longest value fields: u32 has 10 digits, the speed field allows 5 (u16).
const MAX_COUNT_DIGITS: usize = 10;
const MAX_SPEED_DIGITS: usize = 5;

/// The `.vlog` codec of one detector and day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vlog {
    date: NaiveDate,
    lane: u16,
    utc_offset: FixedOffset,
}

impl Vlog {
    /// Stamps are read as UTC; see [`Vlog::with_utc_offset`].
    pub fn new(date: NaiveDate, lane: u16) -> Self {
        Self {
            date,
            lane,
            utc_offset: Utc.fix(),
        }
    }

    /// The offset of the local time the stamps are written in (e.g. −6 h for CST).
    pub fn with_utc_offset(self, utc_offset: FixedOffset) -> Self {
        Self { utc_offset, ..self }
    }

    pub fn date(&self) -> NaiveDate {
        self.date
    }

    pub fn lane(&self) -> u16 {
        self.lane
    }

    fn instant(&self, t: NaiveTime) -> Option<DateTime<Utc>> {
        self.utc_offset
            .from_local_datetime(&self.date.and_time(t))
            .single()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// One vehicle line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlogVehicle {
    /// The codec's lane (not on the wire).
    pub lane: u16,
    pub duration_ms: Option<u32>,
    pub headway_ms: Option<u32>,
    /// The stamp written on this line (whole seconds), on the codec's date, as UTC.
    pub time: Option<DateTime<Utc>>,
    pub speed_mph: Option<u16>,
}

/// One line of a `.vlog` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlogFrame {
    Vehicle(VlogVehicle),
    /// `*`: data missing or detector reset here.
    Gap,
}

/// The line at the start of `buf`: its content without the line ending, and the length of
/// the whole line including the ending once a `\n` has arrived. A trailing `\r` of an
/// unfinished line is held back as the probable first half of `\r\n`.
pub(crate) fn split_line(buf: &[u8]) -> (&[u8], Option<usize>) {
    match buf.iter().position(|b| *b == b'\n') {
        Some(nl) => {
            let content = buf.get(..nl).unwrap_or_default();
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            (content, Some(nl + 1))
        }
        None => (buf.strip_suffix(b"\r").unwrap_or(buf), None),
    }
}

/// Fields of a line with their byte offsets.
pub(crate) fn fields(line: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0usize;
    line.split(|b| *b == b',').map(move |f| {
        let at = start;
        start += f.len() + 1;
        (at, f)
    })
}

/// A non-negative integer field: digits, `?` or empty. `done` = the field is complete.
pub(crate) fn parse_uint(
    field: &[u8],
    at: usize,
    done: bool,
    name: &'static str,
    max_digits: usize,
) -> Result<Option<u64>, DecodeError> {
    if field.first() == Some(&b'?') {
        return match field.len() {
            1 => Ok(None),
            _ => Err(DecodeError::field(at + 1, name, "`?` must stand alone")),
        };
    }
    if let Some(bad) = field.iter().position(|b| !b.is_ascii_digit()) {
        return Err(DecodeError::field(at + bad, name, "not a digit"));
    }
    if field.len() > max_digits {
        return Err(DecodeError::field(at + max_digits, name, "too many digits"));
    }
    if !done || field.is_empty() {
        return Ok(None);
    }
    let value = field
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(Some(value))
}

fn parse_u32(
    field: &[u8],
    at: usize,
    done: bool,
    name: &'static str,
) -> Result<Option<u32>, DecodeError> {
    parse_uint(field, at, done, name, MAX_COUNT_DIGITS)?
        .map(|v| u32::try_from(v).map_err(|_| DecodeError::field(at, name, "above 4294967295")))
        .transpose()
}

/// `HH:MM:SS` (1–2 digits each), `?` or empty.
fn parse_time(field: &[u8], at: usize, done: bool) -> Result<Option<NaiveTime>, DecodeError> {
    const NAME: &str = "time";
    if field.first() == Some(&b'?') {
        return match field.len() {
            1 => Ok(None),
            _ => Err(DecodeError::field(at + 1, NAME, "`?` must stand alone")),
        };
    }
    let mut parts = [0u32; 3];
    let mut part = 0usize;
    let mut digits = 0usize;
    for (i, b) in field.iter().enumerate() {
        match b {
            b'0'..=b'9' if digits < 2 => {
                if let Some(p) = parts.get_mut(part) {
                    *p = *p * 10 + u32::from(b - b'0');
                }
                digits += 1;
            }
            b':' if digits > 0 && part < 2 => {
                part += 1;
                digits = 0;
            }
            _ => return Err(DecodeError::field(at + i, NAME, "expected HH:MM:SS")),
        }
    }
    if !done || field.is_empty() {
        return Ok(None);
    }
    if part != 2 || digits == 0 {
        return Err(DecodeError::field(at, NAME, "expected HH:MM:SS"));
    }
    let [h, m, s] = parts;
    NaiveTime::from_hms_opt(h, m, s)
        .filter(|_| s < 60)
        .map(Some)
        .ok_or_else(|| DecodeError::field(at, NAME, "not a time of day"))
}

impl Vlog {
    /// Parses a line; `done` = the line is complete (its `\n` has arrived). An unfinished
    /// line that is a valid beginning gives `Ok(None)`.
    fn parse_line(&self, line: &[u8], done: bool) -> Result<Option<VlogFrame>, DecodeError> {
        match line.first() {
            None if done => return Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
            None => return Ok(None),
            Some(b'*') => {
                return match line.len() {
                    1 if done => Ok(Some(VlogFrame::Gap)),
                    1 => Ok(None),
                    _ => Err(DecodeError::field(1, "gap", "`*` must stand alone")),
                };
            }
            Some(b) if b.is_ascii_digit() || *b == b'?' => {}
            Some(_) => return Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
        }
        let mut v = VlogVehicle {
            lane: self.lane,
            duration_ms: None,
            headway_ms: None,
            time: None,
            speed_mph: None,
        };
        let n_fields = line.iter().filter(|b| **b == b',').count() + 1;
        for (i, (at, field)) in fields(line).enumerate() {
            // Only the last field of an unfinished line may still grow.
            let complete = done || i + 1 < n_fields;
            match i {
                0 => v.duration_ms = parse_u32(field, at, complete, "duration")?,
                1 => v.headway_ms = parse_u32(field, at, complete, "headway")?,
                2 => {
                    v.time = match parse_time(field, at, complete)? {
                        Some(t) => Some(self.instant(t).ok_or_else(|| {
                            DecodeError::field(at, "time", "not an instant at this offset")
                        })?),
                        None => None,
                    }
                }
                3 => {
                    v.speed_mph = parse_uint(field, at, complete, "speed", MAX_SPEED_DIGITS)?
                        .map(|s| {
                            u16::try_from(s)
                                .map_err(|_| DecodeError::field(at, "speed", "above 65535"))
                        })
                        .transpose()?
                }
                _ => {
                    return Err(DecodeError::field(
                        at.saturating_sub(1),
                        "line",
                        "more than 4 fields",
                    ));
                }
            }
        }
        Ok(done.then_some(VlogFrame::Vehicle(v)))
    }
}

impl FrameCodec for Vlog {
    const LINE_DELIMITER: Option<u8> = Some(b'\n');
    type Frame = VlogFrame;
    const NAME: &'static str = "iris_vlog";
    const MAX_FRAME_LEN: usize = 128;

    fn decode(&self, buf: &[u8]) -> Result<Option<(VlogFrame, usize)>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let (line, total) = split_line(buf);
        match (self.parse_line(line, total.is_some())?, total) {
            (Some(frame), Some(n)) => Ok(Some((frame, n))),
            _ => Ok(None),
        }
    }

    fn encode(&self, frame: &VlogFrame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v = match frame {
            VlogFrame::Gap => {
                out.extend(b"*\n");
                return Ok(());
            }
            VlogFrame::Vehicle(v) => v,
        };
        if v.lane != self.lane {
            return Err(EncodeError::new("lane", "not this log's lane"));
        }
        let count = |c: Option<u32>| c.map_or_else(|| "?".to_string(), |c| c.to_string());
        let time = match v.time {
            None => String::new(),
            Some(t) => {
                let local = t.with_timezone(&self.utc_offset);
                if local.date_naive() != self.date {
                    return Err(EncodeError::new("time", "not on this log's date"));
                }
                // The format holds whole seconds; finer parts are dropped.
                format!(
                    "{:02}:{:02}:{:02}",
                    local.hour(),
                    local.minute(),
                    local.second()
                )
            }
        };
        let speed = v.speed_mph.map(|s| s.to_string()).unwrap_or_default();
        let mut line = [count(v.duration_ms), count(v.headway_ms), time, speed].join(",");
        while line.ends_with(',') {
            line.pop();
        }
        out.extend(line.as_bytes());
        out.push(b'\n');
        Ok(())
    }

    fn could_start(&self, tail: &[u8]) -> bool {
        matches!(tail.first(), Some(b'0'..=b'9' | b'?' | b'*')) && self.decode(tail).is_ok()
    }
}

impl VlogVehicle {
    /// The model event, with `time` as given (see [`VlogTimeline`] to fill it).
    pub fn event(&self, time: Option<DateTime<Utc>>) -> VehicleEvent {
        let mut e = VehicleEvent::on_lane(self.lane);
        e.time = time;
        e.speed_kmh = self
            .speed_mph
            .filter(|s| *s > 0)
            .map(|s| f32::from(s) * KMH_PER_MPH);
        e.occupancy_ms = self.duration_ms;
        e.headway_ms = self.headway_ms;
        e
    }
}

impl Observations for VlogFrame {
    /// The vehicle with the stamp of its own line only; a [`VlogTimeline`] fills the rest.
    fn observations(&self, out: &mut Vec<Observation>) {
        if let VlogFrame::Vehicle(v) = self {
            out.push(Observation::Vehicle(v.event(v.time)));
        }
    }
}

/// Fills in missing vehicle times from the previous time plus the headway, in file order.
#[derive(Debug, Clone, Default)]
pub struct VlogTimeline {
    last: Option<DateTime<Utc>>,
}

impl VlogTimeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// The event of a vehicle line with its time reconstructed when possible; `None` for a
    /// gap (which also breaks the headway chain).
    pub fn resolve(&mut self, frame: &VlogFrame) -> Option<VehicleEvent> {
        let VlogFrame::Vehicle(v) = frame else {
            self.last = None;
            return None;
        };
        let time = v.time.or_else(|| {
            let headway = chrono::TimeDelta::milliseconds(v.headway_ms?.into());
            self.last?.checked_add_signed(headway)
        });
        self.last = time;
        Some(v.event(time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Vlog {
        Vlog::new(NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(), 3)
    }

    fn one(line: &str) -> Result<Option<(VlogFrame, usize)>, DecodeError> {
        codec().decode(line.as_bytes())
    }

    fn vehicle(line: &str) -> VlogVehicle {
        match one(line).unwrap().unwrap().0 {
            VlogFrame::Vehicle(v) => v,
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn short_lines_have_missing_trailing_fields() {
        let v = vehicle("231,14069\n");
        assert_eq!((v.duration_ms, v.headway_ms), (Some(231), Some(14069)));
        assert_eq!((v.time, v.speed_mph), (None, None));
        let v = vehicle("?,?\r\n");
        assert_eq!((v.duration_ms, v.headway_ms), (None, None));
        let v = vehicle("240,453,,45\n");
        assert_eq!((v.time, v.speed_mph), (None, Some(45)));
        assert_eq!(one("7\n").unwrap().unwrap().1, 2);
    }

    #[test]
    fn gap_and_blank_lines() {
        assert_eq!(one("*\n").unwrap(), Some((VlogFrame::Gap, 2)));
        assert_eq!(one("*\r\n").unwrap(), Some((VlogFrame::Gap, 3)));
        assert_eq!(one("*").unwrap(), None);
        assert_eq!(one("*,1\n").unwrap_err().offset, 1);
        assert_eq!(one("\n").unwrap_err().kind, DecodeErrorKind::BadStart);
    }

    #[test]
    fn errors_point_at_the_offending_byte() {
        assert_eq!(one("x\n").unwrap_err().kind, DecodeErrorKind::BadStart);
        assert_eq!(one("12,3x4").unwrap_err().offset, 4);
        assert_eq!(one("1,2,25:00:00\n").unwrap_err().offset, 4);
        assert_eq!(one("1,2,12:0a").unwrap_err().offset, 8);
        assert_eq!(one("1,2,,4,5\n").unwrap_err().offset, 6);
        assert_eq!(one("1,2,3,4\n").unwrap_err().offset, 4);
        assert_eq!(one("1,2,,4\r5\n").unwrap_err().offset, 6);
        assert_eq!(one("??").unwrap_err().offset, 1);
        assert_eq!(one("99999999999").unwrap_err().offset, 10);
        assert_eq!(one("4294967296\n").unwrap_err().offset, 0);
        assert_eq!(one("1,2,,65536\n").unwrap_err().offset, 5);
    }

    #[test]
    fn prefixes_wait_for_more() {
        for p in [
            "1",
            "12,",
            "12,3",
            "12,3,1",
            "12,3,17:",
            "12,3,17:4",
            "12,3,,",
            "1\r",
        ] {
            assert_eq!(one(p), Ok(None), "{p}");
        }
    }

    #[test]
    fn encode_trims_trailing_empty_fields() {
        let c = codec();
        let mut out = Vec::new();
        let v = VlogVehicle {
            lane: 3,
            duration_ms: None,
            headway_ms: Some(5),
            time: None,
            speed_mph: None,
        };
        c.encode(&VlogFrame::Vehicle(v.clone()), &mut out).unwrap();
        assert_eq!(out, b"?,5\n");
        let wrong_lane = VlogVehicle { lane: 1, ..v };
        assert!(c.encode(&VlogFrame::Vehicle(wrong_lane), &mut out).is_err());
    }

    #[test]
    fn stamps_follow_the_utc_offset() {
        let c = codec().with_utc_offset(FixedOffset::west_opt(6 * 3600).unwrap());
        let (f, _) = c.decode(b"1,?,23:30:00\n").unwrap().unwrap();
        let VlogFrame::Vehicle(v) = &f else { panic!() };
        assert_eq!(v.time.unwrap().to_rfc3339(), "2026-11-27T05:30:00+00:00");
        let mut out = Vec::new();
        c.encode(&f, &mut out).unwrap();
        assert_eq!(out, b"1,?,23:30:00\n");
    }
}
