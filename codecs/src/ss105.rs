//! Wavetronix SmartSensor 105 ASCII protocol, multidrop form (also spoken by SmartSensor HD
//! units set to "SS105 Multidrop" emulation).
//!
//! # Wire format
//!
//! ```text
//! request:  'Z' '0' drop(4 decimal digits) command                 CR
//! reply:    'Z' '0' drop(4 decimal digits) echo(2) body      '~'   [CR][LF]
//! ```
//!
//! The reply echoes the header and the first two characters of the command. `body` is
//! `Failure`, `Invalid` or `Empty` when the sensor refuses the request; otherwise it depends
//! on the command. For `XD` (interval data, "binned samples") it is a payload followed by a
//! checksum of 4 uppercase hex digits: the sum of the payload's character codes mod 65536 (the
//! payload excludes the echoed header and command).
//!
//! `XD` asks for the latest interval, `XD` + 4 hex digits for an older one (that many intervals
//! back). Its payload: 8 hex digits of timestamp, seconds since 2000-01-01 00:00:00 UTC (IRIS:
//! the end of the interval), then 29 characters per lane, all hex:
//!
//! | chars | field |
//! |---|---|
//! | 1 | lane number (IRIS treats it as 1-based) |
//! | 8 | volume, vehicles |
//! | 4 | average speed, mph (see Units) |
//! | 4 | occupancy, 1024 = 100 % |
//! | 4 | share of small vehicles, 1024 = 100 % |
//! | 4 | share of medium vehicles, 1024 = 100 % |
//! | 4 | share of large vehicles, 1024 = 100 % |
//!
//! Sources: DESIGN §4 (request/reply shape, error words, checksum as the sum of payload
//! characters, 8 + 29·n payload) and the IRIS `ss105` driver (mnit-rtmc/iris,
//! `comm/ss105/SS105Property.java`: `Z0` + drop padded to 4 decimal digits, CR after the
//! request, reply checked to start with the header and the command's first two characters
//! and to end with `~`, error words, checksum = sum of characters formatted as 4 uppercase
//! hex digits and compared with the reply's last 4 characters, reply read as one line of at
//! most 256 characters; `BinnedSampleProperty.java`: the `XD`/`XDhhhh` request and the
//! 29-character lane layout, speed "Miles per Hour", occupancy and class shares in 1/1024;
//! `TimeStamp.java`: the 2000-01-01 UTC epoch). The mod 65536 is this codec's reading: IRIS
//! formats the sum without truncating it, which only differs for payloads longer than IRIS's
//! 256-character line allows.
//!
//! The line break after `~` is not documented beyond IRIS reading replies as lines; the decoder
//! takes CR, LF or CR LF there (and at most two stray line-break bytes before a frame, e.g. the
//! LF of a CR LF split across reads), and the encoder writes a CR. A reply without a line break
//! is also accepted once the next byte shows it is not one.
//!
//! # One codec for both directions
//!
//! Requests end at a CR before any `~`, replies at a `~`, so a single [`Ss105`] decodes either,
//! and a capture of both directions of a serial line decodes into [`Ss105Frame::Request`]s and
//! [`Ss105Frame::Reply`]s. The daemon polls: it encodes requests and decodes the reply stream
//! with the same codec. Two codecs would only duplicate the header handling.
//!
//! # Units
//!
//! Speeds are converted to km/h with [`Ss105::speed_unit`] (default mph, as IRIS documents).
//! A speed of 0, or any speed in an interval without vehicles, means "not measured": `None` in
//! the [`IntervalReport`]. Occupancy above 100 % is reported as `None`. The lane number is the
//! sensor's own. The sensor's three length classes have thresholds of its own configuration
//! and are given as shares, not counts: they stay in [`LaneSample::class_share`] and the
//! report's `class_counts` is `None`.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::model::{IntervalReport, Observation, Observations};
use crate::ss125::SpeedUnit;
use crate::stream::FrameCodec;

/// Characters of one lane in an `XD` payload.
pub const LANE_CHARS: usize = 29;
/// Characters of the `XD` timestamp.
pub const TIMESTAMP_CHARS: usize = 8;
/// Highest drop address (4 decimal digits).
pub const MAX_DROP: u16 = 9999;

const HEADER_LEN: usize = 6;
const CHECKSUM_CHARS: usize = 4;
/// Line-break bytes tolerated before a frame.
const MAX_LEAD: usize = 2;
/// Longest text between the header and the terminator. IRIS reads whole replies within 256
/// characters; twice that leaves room for longer lane lists.
const MAX_TEXT: usize = 500;
const XD: &str = "XD";

/// The SS105 codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ss105 {
    /// Unit of speeds on the wire. Default mph.
    pub speed_unit: SpeedUnit,
    /// The sensor's configured interval in seconds, when known; copied into
    /// [`IntervalData::interval_s`]. Default `None`.
    pub interval_s: Option<u32>,
}

impl Default for Ss105 {
    fn default() -> Self {
        Self {
            speed_unit: SpeedUnit::Mph,
            interval_s: None,
        }
    }
}

impl Ss105 {
    pub fn with_interval_s(self, interval_s: u32) -> Self {
        Self {
            interval_s: Some(interval_s),
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ss105Frame {
    Request(Request),
    Reply(Reply),
}

/// A poll from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Drop address, 0–9999.
    pub drop: u16,
    pub command: Command,
}

impl Request {
    /// `XD`: the latest interval.
    pub fn interval_data(drop: u16) -> Self {
        Self {
            drop,
            command: Command::IntervalData { age: None },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `XD` (`age` `None`) or `XD` + 4 hex digits: the interval `age` intervals back.
    IntervalData { age: Option<u16> },
    /// Any other command text, printable ASCII without `~`.
    Other(String),
}

/// A sensor's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub drop: u16,
    /// The echoed first two characters of the command.
    pub command: String,
    pub body: ReplyBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    IntervalData(IntervalData),
    Error(DeviceError),
    /// The body of any other reply, verbatim (checksum, if any, not checked).
    Raw(String),
}

/// The sensor's refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    Failure,
    Invalid,
    Empty,
}

impl DeviceError {
    pub fn word(self) -> &'static str {
        match self {
            Self::Failure => "Failure",
            Self::Invalid => "Invalid",
            Self::Empty => "Empty",
        }
    }

    fn from_word(s: &str) -> Option<Self> {
        [Self::Failure, Self::Invalid, Self::Empty]
            .into_iter()
            .find(|e| e.word() == s)
    }
}

/// An `XD` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalData {
    /// The sensor's timestamp of the interval (its end, per IRIS), whole seconds.
    pub end: DateTime<Utc>,
    pub lanes: Vec<LaneSample>,
    /// Not on the wire: the codec's configured interval length, seconds.
    pub interval_s: Option<u32>,
}

impl IntervalData {
    /// Start of the interval, when its length is known.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.end
            .checked_sub_signed(TimeDelta::try_seconds(i64::from(self.interval_s?))?)
    }
}

/// One lane of an `XD` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneSample {
    /// The sensor's lane number, one hex digit.
    pub lane: u8,
    pub volume: u32,
    /// Average speed as sent (0 = not measured), converted to km/h.
    pub speed_kmh: f32,
    /// Fraction of the interval occupied (wire value / 1024; above 1 is not valid).
    pub occupancy: f32,
    /// Shares of small, medium and large vehicles (wire value / 1024).
    pub class_share: [f32; 3],
}

/// The `XD` checksum: sum of the payload's bytes mod 65536.
pub fn checksum(payload: &[u8]) -> u16 {
    payload
        .iter()
        .fold(0u16, |sum, b| sum.wrapping_add(u16::from(*b)))
}

fn epoch() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or_default()
}

fn is_text(b: u8) -> bool {
    (0x20..=0x7E).contains(&b) && b != b'~'
}

fn is_line_break(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Hex digits of `s` (offset `at` in the input) as a number.
fn hex(s: &[u8], at: usize, field: &'static str) -> Result<u32, DecodeError> {
    s.iter().enumerate().try_fold(0u32, |acc, (i, b)| {
        let d = char::from(*b)
            .to_digit(16)
            .ok_or_else(|| DecodeError::field(at + i, field, "not a hex digit"))?;
        Ok(acc << 4 | d)
    })
}

/// Consecutive fields of a slice, each with its offset in the input.
struct Fields<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> (&'a [u8], usize) {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        let at = self.at;
        self.rest = tail;
        self.at += head.len();
        (head, at)
    }

    fn hex(&mut self, n: usize, field: &'static str) -> Result<u32, DecodeError> {
        let (s, at) = self.take(n);
        hex(s, at, field)
    }
}

impl Ss105 {
    fn speed_kmh(&self, raw: u32) -> f32 {
        match self.speed_unit {
            SpeedUnit::Mph => (f64::from(raw) * f64::from(crate::model::KMH_PER_MPH)) as f32,
            SpeedUnit::Kmh => raw as f32,
        }
    }

    fn speed_raw(&self, kmh: f32) -> Result<u16, EncodeError> {
        let v = match self.speed_unit {
            SpeedUnit::Mph => f64::from(kmh) / f64::from(crate::model::KMH_PER_MPH),
            SpeedUnit::Kmh => f64::from(kmh),
        };
        to_u16("speed", v)
    }

    /// `body` starts at offset `at` in the input.
    fn parse_xd(&self, body: &[u8], at: usize) -> Result<IntervalData, DecodeError> {
        let n = body.len();
        if n < TIMESTAMP_CHARS + CHECKSUM_CHARS
            || (n - TIMESTAMP_CHARS - CHECKSUM_CHARS) % LANE_CHARS != 0
        {
            return Err(DecodeError::new(at + n, DecodeErrorKind::Length(n)));
        }
        let (payload, sum) = body.split_at(n - CHECKSUM_CHARS);
        let sum_at = at + payload.len();
        let carried = hex(sum, sum_at, "checksum")?;
        let computed = u32::from(checksum(payload));
        if carried != computed {
            return Err(DecodeError::new(
                sum_at,
                DecodeErrorKind::Checksum { carried, computed },
            ));
        }
        let mut f = Fields { rest: payload, at };
        let secs = f.hex(TIMESTAMP_CHARS, "timestamp")?;
        let end = epoch()
            .checked_add_signed(TimeDelta::try_seconds(i64::from(secs)).unwrap_or_default())
            .ok_or_else(|| DecodeError::field(at, "timestamp", "out of range"))?;
        let mut lanes = Vec::with_capacity(f.rest.len() / LANE_CHARS);
        while !f.rest.is_empty() {
            let lane = f.hex(1, "lane")? as u8;
            let volume = f.hex(8, "volume")?;
            let speed = f.hex(4, "speed")?;
            let occupancy = f.hex(4, "occupancy")?;
            let mut class_share = [0.0f32; 3];
            for share in &mut class_share {
                *share = f.hex(4, "class share")? as f32 / 1024.0;
            }
            lanes.push(LaneSample {
                lane,
                volume,
                speed_kmh: self.speed_kmh(speed),
                occupancy: occupancy as f32 / 1024.0,
                class_share,
            });
        }
        Ok(IntervalData {
            end,
            lanes,
            interval_s: self.interval_s,
        })
    }

    fn write_xd(&self, d: &IntervalData, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if d.lanes.len() * LANE_CHARS + TIMESTAMP_CHARS + CHECKSUM_CHARS + 2 > MAX_TEXT {
            return Err(EncodeError::new("lanes", "too many for one reply"));
        }
        let secs = d.end.signed_duration_since(epoch()).num_seconds();
        let secs = u32::try_from(secs)
            .map_err(|_| EncodeError::new("end", "outside 2000-01-01 .. 2136-02-07"))?;
        let start = out.len();
        out.extend(format!("{secs:08X}").bytes());
        for l in &d.lanes {
            if l.lane > 0xF {
                return Err(EncodeError::new("lane", "above 15 (one hex digit)"));
            }
            let speed = self.speed_raw(l.speed_kmh)?;
            let occ = to_u16("occupancy", f64::from(l.occupancy) * 1024.0)?;
            out.extend(format!("{:X}{:08X}{speed:04X}{occ:04X}", l.lane, l.volume).bytes());
            for s in l.class_share {
                let s = to_u16("class_share", f64::from(s) * 1024.0)?;
                out.extend(format!("{s:04X}").bytes());
            }
        }
        let sum = checksum(out.get(start..).unwrap_or_default());
        out.extend(format!("{sum:04X}").bytes());
        Ok(())
    }
}

fn to_u16(field: &'static str, v: f64) -> Result<u16, EncodeError> {
    let r = v.round();
    if (0.0..=65535.0).contains(&r) {
        Ok(r as u16)
    } else {
        Err(EncodeError::new(field, "outside 0..=65535 on the wire"))
    }
}

/// What a request's command text decodes to.
fn classify_command(text: &str) -> Command {
    if text == XD {
        return Command::IntervalData { age: None };
    }
    if let Some(age) = text.strip_prefix(XD) {
        if age.len() == 4 && age.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(age) = u16::from_str_radix(age, 16) {
                return Command::IntervalData { age: Some(age) };
            }
        }
    }
    Command::Other(text.to_owned())
}

fn check_text(field: &'static str, s: &str) -> Result<(), EncodeError> {
    if s.bytes().all(is_text) {
        Ok(())
    } else {
        Err(EncodeError::new(field, "printable ASCII without '~' only"))
    }
}

fn write_header(out: &mut Vec<u8>, drop: u16) -> Result<(), EncodeError> {
    if drop > MAX_DROP {
        return Err(EncodeError::new("drop", "above 9999"));
    }
    out.extend(format!("Z0{drop:04}").bytes());
    Ok(())
}

impl FrameCodec for Ss105 {
    type Frame = Ss105Frame;
    const NAME: &'static str = "ss105";
    const MAX_FRAME_LEN: usize = MAX_LEAD + HEADER_LEN + MAX_TEXT + 3;

    fn decode(&self, buf: &[u8]) -> Result<Option<(Ss105Frame, usize)>, DecodeError> {
        let lead = buf.iter().take_while(|b| is_line_break(**b)).count();
        if lead > MAX_LEAD {
            return Err(DecodeError::new(MAX_LEAD, DecodeErrorKind::BadStart));
        }
        let Some(rest) = buf.get(lead..) else {
            return Ok(None);
        };
        // Header, checked byte by byte as it arrives.
        for (i, b) in rest.iter().take(HEADER_LEN).enumerate() {
            let ok = match i {
                0 => *b == b'Z',
                1 => *b == b'0',
                _ => b.is_ascii_digit(),
            };
            if !ok {
                return Err(if i < 2 {
                    DecodeError::new(lead + i, DecodeErrorKind::BadStart)
                } else {
                    DecodeError::field(lead + i, "drop", "not a decimal digit")
                });
            }
        }
        let Some(digits) = rest.get(2..HEADER_LEN) else {
            return Ok(None);
        };
        let drop = digits
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        let text_at = lead + HEADER_LEN;
        let tail = rest.get(HEADER_LEN..).unwrap_or_default();
        let Some(end) = tail.iter().position(|b| !is_text(*b)) else {
            if tail.len() > MAX_TEXT {
                return Err(DecodeError::new(
                    text_at + MAX_TEXT,
                    DecodeErrorKind::TooLong(MAX_TEXT),
                ));
            }
            return Ok(None);
        };
        if end > MAX_TEXT {
            return Err(DecodeError::new(
                text_at + MAX_TEXT,
                DecodeErrorKind::TooLong(MAX_TEXT),
            ));
        }
        let (text, after) = tail.split_at(end);
        // `is_text` admits only ASCII, so this cannot fail.
        let text_str = std::str::from_utf8(text)
            .map_err(|_| DecodeError::field(text_at, "text", "not ASCII"))?;
        let end_at = text_at + end;
        let (frame, used) = match after.first() {
            Some(b'~') => {
                let used = match (after.get(1), after.get(2)) {
                    (None, _) => return Ok(None),
                    (Some(b'\r'), Some(b'\n')) => 3,
                    (Some(b'\r' | b'\n'), _) => 2,
                    (Some(_), _) => 1,
                };
                (self.parse_reply(drop, text_str, text_at)?, used)
            }
            Some(b'\r') => {
                let used = if after.get(1) == Some(&b'\n') { 2 } else { 1 };
                let command = classify_command(text_str);
                (Ss105Frame::Request(Request { drop, command }), used)
            }
            Some(b'\n') => {
                let command = classify_command(text_str);
                (Ss105Frame::Request(Request { drop, command }), 1)
            }
            _ => {
                return Err(DecodeError::field(
                    end_at,
                    "text",
                    "not printable ASCII, '~' or a line break",
                ));
            }
        };
        Ok(Some((frame, end_at + used)))
    }

    fn encode(&self, frame: &Ss105Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut line = Vec::new();
        match frame {
            Ss105Frame::Request(r) => {
                write_header(&mut line, r.drop)?;
                match &r.command {
                    Command::IntervalData { age: None } => line.extend(XD.bytes()),
                    Command::IntervalData { age: Some(a) } => {
                        line.extend(format!("{XD}{a:04X}").bytes());
                    }
                    Command::Other(text) => {
                        check_text("command", text)?;
                        if classify_command(text) != r.command {
                            return Err(EncodeError::new(
                                "command",
                                "reads as an interval data request: use the typed variant",
                            ));
                        }
                        line.extend(text.bytes());
                    }
                }
                if line.len() - HEADER_LEN > MAX_TEXT {
                    return Err(EncodeError::new("command", "too long"));
                }
                line.push(b'\r');
            }
            Ss105Frame::Reply(r) => {
                write_header(&mut line, r.drop)?;
                if r.command.len() != 2 {
                    return Err(EncodeError::new("command", "the echo is two characters"));
                }
                check_text("command", &r.command)?;
                line.extend(r.command.bytes());
                match &r.body {
                    ReplyBody::IntervalData(d) => {
                        if r.command != XD {
                            return Err(EncodeError::new("command", "interval data echoes XD"));
                        }
                        self.write_xd(d, &mut line)?;
                    }
                    ReplyBody::Error(e) => line.extend(e.word().bytes()),
                    ReplyBody::Raw(text) => {
                        check_text("body", text)?;
                        if r.command == XD || DeviceError::from_word(text).is_some() {
                            return Err(EncodeError::new(
                                "body",
                                "reads as a typed reply: use the typed variant",
                            ));
                        }
                        line.extend(text.bytes());
                    }
                }
                if line.len() - HEADER_LEN > MAX_TEXT {
                    return Err(EncodeError::new("body", "too long"));
                }
                line.extend(b"~\r");
            }
        }
        out.extend(line);
        Ok(())
    }

    fn could_start(&self, tail: &[u8]) -> bool {
        match tail {
            [b'Z'] => true,
            [b'Z', second, ..] => *second == b'0',
            [first, ..] => is_line_break(*first),
            [] => false,
        }
    }
}

impl Ss105 {
    fn parse_reply(&self, drop: u16, text: &str, at: usize) -> Result<Ss105Frame, DecodeError> {
        let (Some(command), Some(body)) = (text.get(..2), text.get(2..)) else {
            return Err(DecodeError::field(
                at + text.len(),
                "command",
                "reply shorter than its echo",
            ));
        };
        let body = if let Some(e) = DeviceError::from_word(body) {
            ReplyBody::Error(e)
        } else if command == XD {
            ReplyBody::IntervalData(self.parse_xd(body.as_bytes(), at + 2)?)
        } else {
            ReplyBody::Raw(body.to_owned())
        };
        Ok(Ss105Frame::Reply(Reply {
            drop,
            command: command.to_owned(),
            body,
        }))
    }
}

impl Observations for Ss105Frame {
    fn observations(&self, out: &mut Vec<Observation>) {
        let Ss105Frame::Reply(Reply {
            body: ReplyBody::IntervalData(d),
            ..
        }) = self
        else {
            return;
        };
        let start = d.start();
        for l in &d.lanes {
            out.push(Observation::Interval(IntervalReport {
                lane: u16::from(l.lane),
                start,
                interval_s: d.interval_s,
                volume: Some(l.volume),
                occupancy: (l.occupancy <= 1.0).then_some(l.occupancy),
                speed_avg_kmh: (l.volume > 0 && l.speed_kmh > 0.0).then_some(l.speed_kmh),
                speed_p85_kmh: None,
                class_counts: None,
                headway_avg_s: None,
                gap_avg_s: None,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Vec<u8> {
        format!("Z00012{text}~\r").into_bytes()
    }

    #[test]
    fn checksum_sums_characters() {
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(b"0"), 0x30);
        assert_eq!(checksum(b"00000000"), 8 * 0x30);
        assert_eq!(checksum(&[0xFF; 300]), (300 * 0xFF % 65536) as u16);
    }

    #[test]
    fn requests_are_told_from_replies_by_their_terminator() {
        let codec = Ss105::default();
        let (f, n) = codec.decode(b"Z00012XD\r").unwrap().unwrap();
        assert_eq!(f, Ss105Frame::Request(Request::interval_data(12)));
        assert_eq!(n, 9);
        let (f, _) = codec.decode(b"Z00012XD000a\r").unwrap().unwrap();
        assert_eq!(
            f,
            Ss105Frame::Request(Request {
                drop: 12,
                command: Command::IntervalData { age: Some(10) }
            })
        );
        let (f, n) = codec.decode(&reply("XDEmpty")).unwrap().unwrap();
        assert_eq!(n, 15);
        assert!(matches!(
            f,
            Ss105Frame::Reply(Reply {
                body: ReplyBody::Error(DeviceError::Empty),
                ..
            })
        ));
    }

    #[test]
    fn line_breaks_around_a_reply() {
        let codec = Ss105::default();
        assert_eq!(
            codec.decode(b"Z00012XDEmpty~"),
            Ok(None),
            "waits for the line break"
        );
        assert_eq!(codec.decode(b"Z00012XDEmpty~\r\n").unwrap().unwrap().1, 16);
        assert_eq!(codec.decode(b"Z00012XDEmpty~\n").unwrap().unwrap().1, 15);
        assert_eq!(codec.decode(b"Z00012XDEmpty~Z").unwrap().unwrap().1, 14);
        assert_eq!(codec.decode(b"\nZ00012XDEmpty~\r").unwrap().unwrap().1, 16);
        assert_eq!(codec.decode(b"\r\n"), Ok(None));
        let err = codec.decode(b"\r\n\r").unwrap_err();
        assert_eq!((err.offset, err.kind), (2, DecodeErrorKind::BadStart));
    }

    #[test]
    fn header_errors_point_at_the_byte() {
        let codec = Ss105::default();
        assert_eq!(codec.decode(b"A").unwrap_err().offset, 0);
        assert_eq!(codec.decode(b"Z1").unwrap_err().offset, 1);
        let err = codec.decode(b"Z00x").unwrap_err();
        assert_eq!(err.offset, 3);
        assert!(matches!(
            err.kind,
            DecodeErrorKind::Field { field: "drop", .. }
        ));
        let err = codec.decode(b"Z00012X\x01").unwrap_err();
        assert_eq!(err.offset, 7);
    }

    #[test]
    fn a_runaway_line_is_refused_before_the_buffer_limit() {
        let mut wire = b"Z00012".to_vec();
        wire.extend([b'A'; MAX_TEXT + 1]);
        let err = Ss105::default().decode(&wire).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TooLong(MAX_TEXT));
        assert!(wire.len() <= Ss105::MAX_FRAME_LEN);
    }

    #[test]
    fn xd_payload_length_must_be_whole_lanes() {
        // 8 + 1 characters of payload: not a whole lane.
        let mut payload = b"000000000".to_vec();
        let sum = checksum(&payload);
        payload.extend(format!("{sum:04X}").bytes());
        let wire = reply(&format!("XD{}", String::from_utf8(payload).unwrap()));
        let err = Ss105::default().decode(&wire).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Length(13));
        assert_eq!(err.offset, 8 + 13, "points at the '~'");
    }

    #[test]
    fn typed_shapes_cannot_be_sent_raw() {
        let codec = Ss105::default();
        let raw = |command: &str, body: &str| {
            Ss105Frame::Reply(Reply {
                drop: 1,
                command: command.into(),
                body: ReplyBody::Raw(body.into()),
            })
        };
        assert!(codec.encode(&raw("XD", "0000"), &mut Vec::new()).is_err());
        assert!(
            codec
                .encode(&raw("XV", "Failure"), &mut Vec::new())
                .is_err()
        );
        assert!(codec.encode(&raw("XV", "a~b"), &mut Vec::new()).is_err());
        assert!(codec.encode(&raw("XV", "1.0"), &mut Vec::new()).is_ok());
        let other = Ss105Frame::Request(Request {
            drop: 1,
            command: Command::Other("XD0001".into()),
        });
        assert!(codec.encode(&other, &mut Vec::new()).is_err());
    }

    #[test]
    fn zero_speed_or_volume_means_no_speed() {
        let frame = Ss105Frame::Reply(Reply {
            drop: 1,
            command: XD.into(),
            body: ReplyBody::IntervalData(IntervalData {
                end: epoch(),
                lanes: vec![
                    LaneSample {
                        lane: 1,
                        volume: 0,
                        speed_kmh: 50.0,
                        occupancy: 0.0,
                        class_share: [0.0; 3],
                    },
                    LaneSample {
                        lane: 2,
                        volume: 3,
                        speed_kmh: 0.0,
                        occupancy: 2.0,
                        class_share: [0.0; 3],
                    },
                ],
                interval_s: None,
            }),
        });
        let mut obs = Vec::new();
        frame.observations(&mut obs);
        for o in &obs {
            let Observation::Interval(r) = o else {
                panic!("interval expected")
            };
            assert_eq!(r.speed_avg_kmh, None);
            assert_eq!(r.start, None);
        }
        let Observation::Interval(r) = &obs[1] else {
            unreachable!()
        };
        assert_eq!(r.occupancy, None, "above 100 %");
    }
}
