//! PeMS-style 30-second station samples (CSV text), for replay and fixtures.
//!
//! # Format
//!
//! One line per station and 30-second sample, `\n`-terminated (`\r\n` tolerated):
//!
//! ```text
//! station,n_lanes,flow_1,speed_1,occ_1,…,flow_n,speed_n,occ_n,timestamp
//! ```
//!
//! - `station`: numeric station (VDS) id, u32. `n_lanes`: 1–16.
//! - Per lane, in lane order: `flow` = vehicles counted in the 30 s (integer); `speed` =
//!   mean speed in mph (decimal, e.g. `64.5`); `occ` = occupancy in per-mille of the 30 s,
//!   0–1000 (integer). An empty field means the value is missing (never 0).
//! - `timestamp`: start of the 30-second interval. Written as `MM/DD/YYYY HH:MM:SS`, the
//!   timestamp format of the PeMS clearinghouse text files; read in that form or as ISO
//!   8601 (`2026-11-26T13:45:30Z`, `…+01:00`, or without offset, with `T` or a space, with
//!   optional fractional seconds). Times without an offset are local to the codec's
//!   [`Pems::with_utc_offset`] (PeMS publishes Pacific time; the default is UTC).
//!
//! Source: the column layout, units and the empty-is-missing rule are the project's replay
//! format (DESIGN §4), modelled on PeMS raw 30-second detector samples (flow per 30 s,
//! occupancy, speed in mph). The real clearinghouse files order their columns differently
//! (timestamp first) and give occupancy as a fraction; convert them before replay. The
//! timestamp format `MM/DD/YYYY HH24:MI:SS` is the one the PeMS clearinghouse documents
//! for its station files.
//!
//! # Units in observations
//!
//! One [`IntervalReport`] per lane: lane = column position 1..=n, `start` = timestamp,
//! `interval_s` = 30, `volume` = flow, `occupancy` = occ / 1000, `speed_avg_kmh` = speed ×
//! 1.609344. The station id is the detector identity and left to configuration.
//!
//! # Resynchronisation
//!
//! As for [`crate::vlog`]: a malformed line fails at its first offending byte and the stream
//! decoder skips to the next position that begins a well-formed line; the lane count and the
//! closing timestamp make a false match inside a malformed line unlikely.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike, Utc};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{IntervalReport, KMH_PER_MPH, Observation, Observations};
use crate::stream::FrameCodec;
use crate::vlog::{fields, parse_uint, split_line};

/// Seconds in one PeMS sample.
pub const INTERVAL_S: u32 = 30;
/// Most lanes a line may carry.
pub const MAX_LANES: usize = 16;
/// Highest plausible speed in mph; faster values are malformed input.
pub const MAX_SPEED_MPH: f32 = 250.0;
const MAX_OCC_PERMILLE: u64 = 1000;
const MAX_SPEED_CHARS: usize = 16;
const MAX_TIMESTAMP_CHARS: usize = 40;
const CLEARINGHOUSE_FORMAT: &str = "%m/%d/%Y %H:%M:%S";

/// The PeMS line codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pems {
    utc_offset: FixedOffset,
}

impl Default for Pems {
    fn default() -> Self {
        Self::new()
    }
}

impl Pems {
    /// Timestamps without an offset are read (and written) as UTC.
    pub fn new() -> Self {
        Self {
            utc_offset: Utc.fix(),
        }
    }

    /// The offset of local timestamps (PeMS: −8 h PST / −7 h PDT).
    pub fn with_utc_offset(utc_offset: FixedOffset) -> Self {
        Self { utc_offset }
    }
}

/// One lane's figures for the 30 s.
#[derive(Debug, Clone, PartialEq)]
pub struct PemsLane {
    /// Vehicles in the 30 s.
    pub flow: Option<u32>,
    /// Mean speed, mph.
    pub speed_mph: Option<f32>,
    /// Occupancy, per-mille (0–1000).
    pub occupancy_permille: Option<u16>,
}

/// One line: a station's 30-second sample.
#[derive(Debug, Clone, PartialEq)]
pub struct PemsSample {
    pub station: u32,
    /// Start of the 30 s.
    pub time: DateTime<Utc>,
    pub lanes: Vec<PemsLane>,
}

fn parse_speed(field: &[u8], at: usize, done: bool) -> Result<Option<f32>, DecodeError> {
    const NAME: &str = "speed";
    let mut dot = false;
    for (i, b) in field.iter().enumerate() {
        match b {
            b'0'..=b'9' => {}
            b'.' if !dot && i > 0 => dot = true,
            _ => return Err(DecodeError::field(at + i, NAME, "not a decimal number")),
        }
    }
    if field.len() > MAX_SPEED_CHARS {
        return Err(DecodeError::field(at + MAX_SPEED_CHARS, NAME, "too long"));
    }
    if !done || field.is_empty() {
        return Ok(None);
    }
    let speed = std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse::<f32>().ok())
        .filter(|s| s.is_finite())
        .ok_or_else(|| DecodeError::field(at, NAME, "not a decimal number"))?;
    if speed > MAX_SPEED_MPH {
        return Err(DecodeError::field(at, NAME, "above 250 mph"));
    }
    Ok(Some(speed))
}

impl Pems {
    fn parse_time(
        &self,
        field: &[u8],
        at: usize,
        done: bool,
    ) -> Result<Option<DateTime<Utc>>, DecodeError> {
        const NAME: &str = "timestamp";
        if let Some(bad) = field
            .iter()
            .position(|b| !(b.is_ascii_digit() || b"/:-+. TZ".contains(b)))
        {
            return Err(DecodeError::field(at + bad, NAME, "unexpected character"));
        }
        if field.len() > MAX_TIMESTAMP_CHARS {
            return Err(DecodeError::field(
                at + MAX_TIMESTAMP_CHARS,
                NAME,
                "too long",
            ));
        }
        if !done {
            return Ok(None);
        }
        let bad = || DecodeError::field(at, NAME, "expected MM/DD/YYYY HH:MM:SS or ISO 8601");
        let text = std::str::from_utf8(field).map_err(|_| bad())?;
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        let naive = [
            CLEARINGHOUSE_FORMAT,
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .ok_or_else(bad)?;
        self.utc_offset
            .from_local_datetime(&naive)
            .single()
            .map(|t| Some(t.with_timezone(&Utc)))
            .ok_or_else(bad)
    }

    fn parse_line(&self, line: &[u8], done: bool) -> Result<Option<PemsSample>, DecodeError> {
        match line.first() {
            None if done => return Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => {}
            Some(_) => return Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
        }
        let n_fields = line.iter().filter(|b| **b == b',').count() + 1;
        let mut station = None;
        let mut n_lanes: Option<usize> = None;
        let mut lanes: Vec<PemsLane> = Vec::new();
        let mut time = None;
        let mut end_at = line.len();
        for (i, (at, field)) in fields(line).enumerate() {
            let complete = done || i + 1 < n_fields;
            match (i, n_lanes) {
                (0, _) => {
                    if field.is_empty() && complete {
                        return Err(DecodeError::field(at, "station", "missing"));
                    }
                    station = parse_uint(field, at, complete, "station", 10)?
                        .map(|s| {
                            u32::try_from(s)
                                .map_err(|_| DecodeError::field(at, "station", "above 4294967295"))
                        })
                        .transpose()?;
                }
                (1, _) => {
                    if field.first() == Some(&b'?') || (field.is_empty() && complete) {
                        return Err(DecodeError::field(at, "n_lanes", "missing"));
                    }
                    let n = parse_uint(field, at, complete, "n_lanes", 2)?;
                    if let Some(n) = n {
                        if n == 0 || n > MAX_LANES as u64 {
                            return Err(DecodeError::field(at, "n_lanes", "outside 1..=16"));
                        }
                        n_lanes = usize::try_from(n).ok();
                    }
                }
                (_, None) => {
                    // Unreachable: field 1 is complete once field 2 exists.
                    return Err(DecodeError::field(at, "n_lanes", "missing"));
                }
                (i, Some(n)) if i < 2 + 3 * n => {
                    let lane_field = (i - 2) % 3;
                    if lane_field == 0 {
                        lanes.push(PemsLane {
                            flow: None,
                            speed_mph: None,
                            occupancy_permille: None,
                        });
                    }
                    let Some(lane) = lanes.last_mut() else {
                        continue;
                    };
                    let no_question = |name: &'static str| {
                        if field.first() == Some(&b'?') {
                            Err(DecodeError::field(
                                at,
                                name,
                                "missing values are empty fields",
                            ))
                        } else {
                            Ok(())
                        }
                    };
                    match lane_field {
                        0 => {
                            no_question("flow")?;
                            lane.flow = parse_uint(field, at, complete, "flow", 10)?
                                .map(|f| {
                                    u32::try_from(f).map_err(|_| {
                                        DecodeError::field(at, "flow", "above 4294967295")
                                    })
                                })
                                .transpose()?;
                        }
                        1 => lane.speed_mph = parse_speed(field, at, complete)?,
                        _ => {
                            no_question("occupancy")?;
                            let occ = parse_uint(field, at, complete, "occupancy", 4)?;
                            if occ.is_some_and(|o| o > MAX_OCC_PERMILLE) {
                                return Err(DecodeError::field(at, "occupancy", "above 1000"));
                            }
                            lane.occupancy_permille = occ.and_then(|o| u16::try_from(o).ok());
                        }
                    }
                }
                (i, Some(n)) if i == 2 + 3 * n => {
                    if field.is_empty() && complete {
                        return Err(DecodeError::field(at, "timestamp", "missing"));
                    }
                    time = self.parse_time(field, at, complete)?;
                    end_at = at;
                }
                _ => {
                    return Err(DecodeError::field(
                        at.saturating_sub(1),
                        "line",
                        "more fields than n_lanes announces",
                    ));
                }
            }
        }
        if !done {
            return Ok(None);
        }
        match (station, time) {
            (Some(station), Some(time)) => Ok(Some(PemsSample {
                station,
                time,
                lanes,
            })),
            _ => Err(DecodeError::field(
                end_at.min(line.len()),
                "line",
                "fewer fields than n_lanes announces",
            )),
        }
    }
}

impl FrameCodec for Pems {
    const LINE_DELIMITER: Option<u8> = Some(b'\n');
    type Frame = PemsSample;
    const NAME: &'static str = "pems_csv";
    const MAX_FRAME_LEN: usize = 1024;

    fn decode(&self, buf: &[u8]) -> Result<Option<(PemsSample, usize)>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let (line, total) = split_line(buf);
        match (self.parse_line(line, total.is_some())?, total) {
            (Some(sample), Some(n)) => Ok(Some((sample, n))),
            _ => Ok(None),
        }
    }

    fn encode(&self, frame: &PemsSample, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if frame.lanes.is_empty() || frame.lanes.len() > MAX_LANES {
            return Err(EncodeError::new("lanes", "need 1..=16 lanes"));
        }
        if frame.time.nanosecond() != 0 {
            return Err(EncodeError::new("time", "the format holds whole seconds"));
        }
        let mut line = format!("{},{}", frame.station, frame.lanes.len());
        for lane in &frame.lanes {
            let flow = lane.flow.map(|f| f.to_string()).unwrap_or_default();
            let speed = match lane.speed_mph {
                None => String::new(),
                Some(s) if s.is_finite() && (0.0..=MAX_SPEED_MPH).contains(&s) => s.to_string(),
                Some(_) => return Err(EncodeError::new("speed_mph", "outside 0..=250")),
            };
            let occ = match lane.occupancy_permille {
                None => String::new(),
                Some(o) if u64::from(o) <= MAX_OCC_PERMILLE => o.to_string(),
                Some(_) => return Err(EncodeError::new("occupancy_permille", "above 1000")),
            };
            line.push_str(&format!(",{flow},{speed},{occ}"));
        }
        let local = frame.time.with_timezone(&self.utc_offset);
        line.push_str(&format!(",{}\n", local.format(CLEARINGHOUSE_FORMAT)));
        out.extend(line.as_bytes());
        Ok(())
    }

    fn could_start(&self, tail: &[u8]) -> bool {
        tail.first().is_some_and(u8::is_ascii_digit) && self.decode(tail).is_ok()
    }
}

impl Observations for PemsSample {
    fn observations(&self, out: &mut Vec<Observation>) {
        for (i, lane) in self.lanes.iter().enumerate() {
            let Ok(n) = u16::try_from(i + 1) else {
                break;
            };
            let mut r = IntervalReport::on_lane(n);
            r.start = Some(self.time);
            r.interval_s = Some(INTERVAL_S);
            r.volume = lane.flow;
            r.occupancy = lane.occupancy_permille.map(|o| f32::from(o) / 1000.0);
            r.speed_avg_kmh = lane.speed_mph.map(|s| s * KMH_PER_MPH);
            out.push(Observation::Interval(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Option<(PemsSample, usize)>, DecodeError> {
        Pems::new().decode(line.as_bytes())
    }

    #[test]
    fn a_two_lane_line_with_a_missing_speed() {
        let (s, n) = one("400001,2,7,64.5,83,5,,61,11/26/2026 13:45:30\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(n, 46);
        assert_eq!(s.station, 400001);
        assert_eq!(s.time.to_rfc3339(), "2026-11-26T13:45:30+00:00");
        assert_eq!(
            s.lanes[1],
            PemsLane {
                flow: Some(5),
                speed_mph: None,
                occupancy_permille: Some(61)
            }
        );
    }

    #[test]
    fn iso_timestamps_are_accepted() {
        let t = |ts: &str| one(&format!("1,1,,,,{ts}\n")).unwrap().unwrap().0.time;
        let want = "2026-11-26T13:45:30+00:00";
        assert_eq!(t("2026-11-26T13:45:30Z").to_rfc3339(), want);
        assert_eq!(t("2026-11-26T14:45:30+01:00").to_rfc3339(), want);
        assert_eq!(t("2026-11-26 13:45:30").to_rfc3339(), want);
        assert_eq!(t("2026-11-26T13:45:30.000").to_rfc3339(), want);
        let pst = Pems::with_utc_offset(FixedOffset::west_opt(8 * 3600).unwrap());
        let (s, _) = pst
            .decode(b"1,1,,,,11/26/2026 05:45:30\n")
            .unwrap()
            .unwrap();
        assert_eq!(s.time.to_rfc3339(), want);
        let mut out = Vec::new();
        pst.encode(&s, &mut out).unwrap();
        assert_eq!(out, b"1,1,,,,11/26/2026 05:45:30\n");
    }

    #[test]
    fn errors_point_at_the_offending_byte() {
        let e = |l: &str| one(l).unwrap_err();
        assert_eq!(e("x").kind, DecodeErrorKind::BadStart);
        assert_eq!(e("1,0,").offset, 2);
        assert_eq!(e("1,17,").offset, 2);
        assert_eq!(e("1,1,5,6x").offset, 7);
        assert_eq!(e("1,1,5,6,1001,").offset, 8);
        assert_eq!(e("1,1,5,300,1,").offset, 6);
        assert_eq!(e("1,1,?").offset, 4);
        assert_eq!(e("1,1,1,2,3,11/26/2026 13:45:30,9").offset, 29);
        assert_eq!(e("1,1,1,2,3,13/26/2026 13:45:30\n").offset, 10);
        assert_eq!(e("1,2,1,2,3,11/26/2026 13:45:30\n").offset, 12);
        assert_eq!(e("1,1,1,2,3\n").offset, 9);
        assert_eq!(e("1,1,1,2.5.,").offset, 9);
        assert_eq!(e("1,1,1,.5,").offset, 6);
    }

    #[test]
    fn prefixes_wait_for_more() {
        for p in [
            "4",
            "40,",
            "40,1",
            "40,1,",
            "40,1,3,6",
            "40,1,3,6.",
            "40,1,3,6.5,1",
            "40,1,,,,11/2",
        ] {
            assert_eq!(one(p), Ok(None), "{p}");
        }
    }

    #[test]
    fn encode_rejects_what_the_format_cannot_hold() {
        let mut s = PemsSample {
            station: 1,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            lanes: vec![],
        };
        assert!(Pems::new().encode(&s, &mut Vec::new()).is_err());
        s.lanes.push(PemsLane {
            flow: None,
            speed_mph: Some(f32::NAN),
            occupancy_permille: None,
        });
        assert!(Pems::new().encode(&s, &mut Vec::new()).is_err());
    }
}
