//! `detector-sim`: a simulated roadside detector that speaks the real wire protocols, with
//! the ground truth of what it sent, so that tests and demos can be checked against it.
//!
//! It drives the deterministic [`crate::sim::Simulator`] (constant demand of
//! `--vehicles-per-hour` per lane, seeded) and encodes what the vehicles did with the
//! [`codecs`] encoders:
//!
//! | `--protocol` | frames | lanes on the wire |
//! |---|---|---|
//! | `ss125` | one 0x71 interval data packet per lane and bin; with `--ss125-events` one 0x67 active event per vehicle instead (metric units) | 0-based packet / lane number |
//! | `ss105` | one `XD` reply per bin with every lane (speeds in mph) | 1-based |
//! | `rtms_g4` | one 0x5E vehicle event per vehicle (km/h, length in dm) | 0-based zone |
//! | `ft12_tls` | one FT1.2 user data frame per bin carrying a TLS FG 1 telegram: DE type 48 (the bin's start time, UTC, kind and length codes 0 as their meaning is not established) on channel 255, then an LVE result version 3 with 16-bit counts (type 116) per lane | DE channel = lane |
//! | `vlog` | one IRIS `.vlog` line per vehicle, one file per lane (`{lane}` in `--out`); the time stamp is written as IRIS does (first vehicle, new hour, headway above 90 s), otherwise time follows from the headways | one file per lane |
//! | `pems` | one PeMS line per bin with every lane (needs `--interval-s 30`) | column order |
//! | `vehicle_json` | one event of the project's MQTT schema per vehicle | 1-based |
//! | `fiware` | one FIWARE `TrafficFlowObserved` entity (keyValues) per lane and bin | 1-based `laneId` |
//!
//! Interval reports are computed from the simulated vehicles of each bin (bins aligned to the
//! wall clock, `--interval-s` long; a vehicle counts in the bin of its front time) and sent
//! when the bin ends. Per-vehicle frames are sent when the vehicle leaves the zone. Polled
//! protocols (SS125, SS105, TLS) are sent unsolicited at the end of each bin by default; a
//! real device answers the daemon's polls instead, and `--answer-polls` makes the simulator
//! such a device (frames wait for the receiver's polls; see [`PolledSink`]).
//!
//! # Output
//!
//! `--out PATH` writes to a file (created or truncated), an existing device such as a serial
//! port or a pty (opened as it is: ptys ignore the baud rate; set a real port up with `stty`
//! first), or stdout (`-`). JSON payloads go one per line. `--mqtt-url mqtt://host:port
//! --topic T --qos 0|1` publishes each frame as one message instead (plain TCP; `vehicle_json`
//! and `fiware` only) and, for QoS 1, waits for the broker's PUBACKs and fails unless every
//! message was acknowledged.
//!
//! `--pace realtime` sends each frame when the simulated time comes (wall clock follows
//! simulated time from the start), `--pace 10x` ten times faster, `--pace max` as fast as
//! possible.
//!
//! # Ground truth
//!
//! CSV `lane,bucket_start,volume,motorcycle,short,medium,long` to `--truth PATH` (`-` =
//! stdout; default stderr), one row per (road lane, bin) that a correct receiver learns
//! about, exactly as the frames encode it:
//! - interval protocols: the values in each intact frame (zero-volume bins included);
//! - per-vehicle protocols: every (lane, bin) of the run, with the tally of the intact
//!   frames' vehicles by the time the frame carries (`.vlog`: as reconstructed from stamp and
//!   headways, which may put a vehicle up to 1 s earlier than it passed);
//! - lanes are road lanes 1..=N even where the wire counts from 0 ([`Protocol::wire_lane`]);
//! - class columns are empty where the frames carry no length classes (`ss105`, `ft12_tls`,
//!   `vlog`, `pems`, `fiware`); for `rtms_g4` they are the class of the length in the frame.
//!
//! The truth is written at the end of the run, followed by a summary line on stderr.
//!
//! # Fault injection
//!
//! - `--garbage-every N`: after every Nth frame, a run of 1–16 random bytes none of which can
//!   start a frame of the protocol (for line formats a line of them; for JSON a payload that
//!   is not JSON).
//! - `--bad-checksum-every N`: the checksum of every Nth frame is corrupted (protocols with a
//!   checksum only). A correct receiver drops that frame, so its vehicles are not in the
//!   truth. Where the corrupted frame would contain something a decoder could take for a
//!   frame (an `E5` octet in FT1.2, say), or it is the last frame, the next frame is
//!   corrupted instead, so that every injected fault costs a decoder exactly one
//!   resynchronisation.
//!
//! The summary reports the garbage runs, bad-checksum frames, the vehicles in them, and the
//! resynchronisations a stream decoder reading the whole output must make (a garbage run
//! right next to a bad frame is one resynchronisation for both).
//!
//! # Examples
//!
//! ```text
//! # 5 minutes of SS125 interval data for 3 lanes into a file, as fast as possible
//! detector-sim --protocol ss125 --seed 7 --lanes 3 --vehicles-per-hour 1200 \
//!     --start 2024-03-04T08:00:00Z --duration 300 --out ss125.bin --pace max --truth truth.csv
//!
//! # a live RTMS G4 feed on a pty for the daemon, with line noise and corrupt frames
//! socat pty,raw,echo=0,link=/tmp/sim pty,raw,echo=0,link=/tmp/daemon &
//! detector-sim --protocol rtms_g4 --start now --duration 3600 --out /tmp/sim \
//!     --pace realtime --garbage-every 50 --bad-checksum-every 70 --truth truth.csv
//!
//! # one .vlog file per lane
//! detector-sim --protocol vlog --lanes 2 --start 2024-03-04T00:00:00Z --duration 86399 \
//!     --out 'lane{lane}.vlog' --pace max --truth -
//!
//! # vehicle events to MQTT at QoS 1, ten times faster than real time
//! detector-sim --protocol vehicle_json --start now --duration 600 --pace 10x \
//!     --mqtt-url mqtt://127.0.0.1:1883 --topic sites/demo/events --qos 1
//! ```
//!
//! From code: build a [`SimSpec`], pick a [`Sink`] ([`StreamSink`], [`MqttSink`]) and call
//! [`run`]; the [`Report`] holds the [`Truth`] and the [`Summary`].

mod frames;
mod polled;
mod sink;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use chrono::{DateTime, Datelike, SecondsFormat, TimeDelta, Utc};
use clap::{Parser, ValueEnum};
use codecs::ft12::Ft12;
use codecs::pems::Pems;
use codecs::rtms::Rtms;
use codecs::ss105::Ss105;
use codecs::ss125::Ss125;
use codecs::vlog::Vlog;
use codecs::{Decoded, FrameCodec, decode_all};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::{DemandProfile, SimConfig};
use frames::{Frame, FrameSource};
pub use polled::PolledSink;
pub use sink::{Delivery, MqttSink, Sink, StreamSink, Unit, parse_mqtt_url};

/// The wire formats the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Protocol {
    /// Wavetronix SmartSensor 125 "Z1" binary.
    #[value(name = "ss125")]
    Ss125,
    /// Wavetronix SmartSensor 105 ASCII.
    #[value(name = "ss105")]
    Ss105,
    /// RTMS G4 binary.
    #[value(name = "rtms_g4")]
    RtmsG4,
    /// IEC 60870-5 FT1.2 frames carrying German TLS traffic data.
    #[value(name = "ft12_tls")]
    Ft12Tls,
    /// IRIS `.vlog` per-vehicle lines.
    #[value(name = "vlog")]
    Vlog,
    /// PeMS 30-second CSV lines.
    #[value(name = "pems")]
    Pems,
    /// The project's per-vehicle JSON events (MQTT payloads).
    #[value(name = "vehicle_json")]
    VehicleJson,
    /// FIWARE `TrafficFlowObserved` JSON (MQTT payloads).
    #[value(name = "fiware")]
    Fiware,
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Self::Ss125,
        Self::Ss105,
        Self::RtmsG4,
        Self::Ft12Tls,
        Self::Vlog,
        Self::Pems,
        Self::VehicleJson,
        Self::Fiware,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ss125 => "ss125",
            Self::Ss105 => "ss105",
            Self::RtmsG4 => "rtms_g4",
            Self::Ft12Tls => "ft12_tls",
            Self::Vlog => "vlog",
            Self::Pems => "pems",
            Self::VehicleJson => "vehicle_json",
            Self::Fiware => "fiware",
        }
    }

    /// Payloads meant for MQTT (written one per line to streams).
    pub fn is_json(self) -> bool {
        matches!(self, Self::VehicleJson | Self::Fiware)
    }

    /// Whether frames carry a checksum that `--bad-checksum-every` can corrupt.
    pub fn has_checksum(self) -> bool {
        matches!(
            self,
            Self::Ss125 | Self::Ss105 | Self::RtmsG4 | Self::Ft12Tls
        )
    }

    /// The most lanes one run can have (what the frames can address or hold).
    pub fn max_lanes(self) -> u16 {
        match self {
            // One hex digit, and at most 16 lanes fit a reply.
            Self::Ss105 => 15,
            // PeMS lines hold 16 lanes; 16 LVE results fit one FT1.2 frame.
            Self::Pems | Self::Ft12Tls => 16,
            _ => 64,
        }
    }

    /// The lane number the wire (and a decoder's observations) carry for road lane
    /// `road_lane`: 0-based for SS125.
    pub fn wire_lane(self, road_lane: u16) -> u16 {
        match self {
            Self::Ss125 => road_lane.saturating_sub(1),
            _ => road_lane,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Wall clock follows simulated time.
    Realtime,
    /// This many times faster than real time.
    Times(f64),
    /// As fast as possible.
    Max,
}

impl Pace {
    fn factor(self) -> Option<f64> {
        match self {
            Self::Realtime => Some(1.0),
            Self::Times(f) => Some(f),
            Self::Max => None,
        }
    }
}

impl FromStr for Pace {
    type Err = String;

    /// `realtime`, `max`, or a factor: `10x`, `10×`, `2.5`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "realtime" => Ok(Self::Realtime),
            "max" => Ok(Self::Max),
            _ => {
                let n = s.trim_end_matches(['x', 'X', '×']);
                match n.parse::<f64>() {
                    Ok(f) if f.is_finite() && f > 0.0 => Ok(Self::Times(f)),
                    _ => Err(format!(
                        "{s}: expected realtime, max or a speed-up factor such as 10x"
                    )),
                }
            }
        }
    }
}

/// Everything that determines the frames of a run (and so its truth).
#[derive(Debug, Clone, PartialEq)]
pub struct SimSpec {
    pub protocol: Protocol,
    /// SS125 only: 0x67 active events per vehicle instead of 0x71 interval data.
    pub ss125_events: bool,
    pub seed: u64,
    /// Road lanes 1..=lanes.
    pub lanes: u16,
    /// Constant demand per lane, vehicles per hour.
    pub vehicles_per_hour: f32,
    pub start: DateTime<Utc>,
    pub duration_s: u32,
    /// Bin length, seconds; a divisor of a day.
    pub interval_s: u32,
    /// Garbage after every Nth frame; 0 = never.
    pub garbage_every: u32,
    /// Corrupt the checksum of every Nth frame; 0 = never.
    pub bad_checksum_every: u32,
}

impl SimSpec {
    /// Three lanes at 900 veh/h each, seed 1, 30 s bins, no faults.
    pub fn new(protocol: Protocol, start: DateTime<Utc>, duration_s: u32) -> Self {
        Self {
            protocol,
            ss125_events: false,
            seed: 1,
            lanes: 3,
            vehicles_per_hour: 900.0,
            start,
            duration_s,
            interval_s: 30,
            garbage_every: 0,
            bad_checksum_every: 0,
        }
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start + TimeDelta::seconds(i64::from(self.duration_s))
    }

    /// One frame per vehicle (else per-lane interval reports per bin).
    pub fn per_vehicle(&self) -> bool {
        match self.protocol {
            Protocol::Ss125 => self.ss125_events,
            Protocol::RtmsG4 | Protocol::Vlog | Protocol::VehicleJson => true,
            Protocol::Ss105 | Protocol::Ft12Tls | Protocol::Pems | Protocol::Fiware => false,
        }
    }

    /// Whether the frames carry length classes (else the truth's class columns are empty).
    pub fn carries_classes(&self) -> bool {
        matches!(
            self.protocol,
            Protocol::Ss125 | Protocol::RtmsG4 | Protocol::VehicleJson
        )
    }

    /// The generator's configuration: constant demand, the simulator's other defaults.
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            lanes: self.lanes,
            demand: DemandProfile {
                peak_vph: self.vehicles_per_hour,
                night_vph: self.vehicles_per_hour,
                multiplier: 1.0,
                ..DemandProfile::default()
            },
            ..SimConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let p = self.protocol;
        ensure!(
            (1..=p.max_lanes()).contains(&self.lanes),
            "{p} takes 1..={} lanes",
            p.max_lanes()
        );
        ensure!(
            self.vehicles_per_hour.is_finite()
                && (0.0..=20_000.0).contains(&self.vehicles_per_hour),
            "vehicles per hour must be 0..=20000"
        );
        ensure!(self.duration_s > 0, "the duration must be at least 1 s");
        ensure!(
            self.interval_s > 0 && 86_400 % self.interval_s == 0,
            "the interval must divide a day (30, 60, 300 s …)"
        );
        ensure!(
            p != Protocol::Pems || self.interval_s == codecs::pems::INTERVAL_S,
            "PeMS samples are 30 s: use --interval-s 30"
        );
        ensure!(
            !self.ss125_events || p == Protocol::Ss125,
            "--ss125-events is for --protocol ss125"
        );
        ensure!(
            self.bad_checksum_every == 0 || p.has_checksum(),
            "{p} frames carry no checksum to corrupt"
        );
        let last = self.end() - TimeDelta::milliseconds(1);
        match p {
            Protocol::Vlog => ensure!(
                self.start.date_naive() == last.date_naive(),
                "a .vlog file holds one day (UTC): split the run at midnight"
            ),
            Protocol::RtmsG4 => ensure!(
                self.start.year() >= 2000 && last.year() <= 2099,
                "RTMS G4 time stamps hold the years 2000–2099"
            ),
            Protocol::Ss105 | Protocol::Ss125 => ensure!(
                self.start.year() >= 2000 && last.year() <= 2135,
                "{p} time stamps start in 2000"
            ),
            _ => {}
        }
        Ok(())
    }
}

/// One (lane, bin) of the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TruthRow {
    pub volume: u32,
    /// Motorcycle, short, medium, long; `None` where the frames carry no classes.
    pub classes: Option<[u32; 4]>,
}

/// What a correct receiver of the run's output learns, per (road lane, bin start UTC ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    pub rows: BTreeMap<(u16, i64), TruthRow>,
}

impl Truth {
    pub const CSV_HEADER: &'static str = "lane,bucket_start,volume,motorcycle,short,medium,long";

    pub fn total_volume(&self) -> u64 {
        self.rows.values().map(|r| u64::from(r.volume)).sum()
    }

    fn add(&mut self, lane: u16, bin_ms: i64, volume: u32, classes: Option<[u32; 4]>) {
        let row = self.rows.entry((lane, bin_ms)).or_default();
        row.volume += volume;
        match (&mut row.classes, classes) {
            (Some(have), Some(add)) => {
                for (h, a) in have.iter_mut().zip(add) {
                    *h += a;
                }
            }
            (slot @ None, Some(add)) => *slot = Some(add),
            (_, None) => {}
        }
    }

    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", Self::CSV_HEADER)?;
        for ((lane, bin_ms), row) in &self.rows {
            let bucket = DateTime::from_timestamp_millis(*bin_ms)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default();
            let classes = match row.classes {
                Some([m, s, md, l]) => format!("{m},{s},{md},{l}"),
                None => ",,,".to_owned(),
            };
            writeln!(out, "{lane},{bucket},{},{classes}", row.volume)?;
        }
        Ok(())
    }

    /// Reads what [`Truth::write_csv`] wrote.
    pub fn from_csv(text: &str) -> Result<Self> {
        let mut lines = text.lines();
        ensure!(
            lines.next() == Some(Self::CSV_HEADER),
            "truth CSV: header is not {}",
            Self::CSV_HEADER
        );
        let mut truth = Self::default();
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
            let bad = || format!("truth CSV line {}: {line}", i + 2);
            let f: Vec<&str> = line.split(',').collect();
            let [lane, bucket, volume, classes @ ..] = f.as_slice() else {
                bail!("{}", bad());
            };
            ensure!(classes.len() == 4, "{}", bad());
            let bin_ms = DateTime::parse_from_rfc3339(bucket)
                .with_context(bad)?
                .timestamp_millis();
            let classes = if classes.iter().all(|c| c.is_empty()) {
                None
            } else {
                let mut counts = [0u32; 4];
                for (c, s) in counts.iter_mut().zip(classes) {
                    *c = s.parse().with_context(bad)?;
                }
                Some(counts)
            };
            let row = TruthRow {
                volume: volume.parse().with_context(bad)?,
                classes,
            };
            truth
                .rows
                .insert((lane.parse().with_context(bad)?, bin_ms), row);
        }
        Ok(truth)
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub protocol: Option<Protocol>,
    /// Vehicles the simulator generated.
    pub vehicles: u64,
    /// Frames sent, corrupted ones included.
    pub frames: u64,
    pub garbage_runs: u64,
    pub bad_checksum_frames: u64,
    /// Vehicles carried by the corrupted frames (not in the truth).
    pub vehicles_in_bad_frames: u64,
    /// Resynchronisations a stream decoder reading the whole output makes: garbage runs
    /// and bad frames, where adjacent ones count once.
    pub expected_resyncs: u64,
    /// Vehicles in the truth.
    pub truth_vehicles: u64,
    pub delivery: Delivery,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "detector-sim summary: protocol={} vehicles={} frames={} truth_vehicles={} \
             garbage_runs={} bad_checksum_frames={} vehicles_in_bad_frames={} \
             expected_resyncs={}",
            self.protocol.map_or("?", Protocol::name),
            self.vehicles,
            self.frames,
            self.truth_vehicles,
            self.garbage_runs,
            self.bad_checksum_frames,
            self.vehicles_in_bad_frames,
            self.expected_resyncs,
        )?;
        if let Some(acked) = self.delivery.acknowledged {
            write!(
                f,
                " mqtt_published={} mqtt_acknowledged={acked}",
                self.delivery.sent
            )?;
        }
        if let Some(polls) = self.delivery.polls_answered {
            write!(f, " polls_answered={polls}")?;
        }
        if self.bad_checksum_frames > 0 {
            write!(
                f,
                " (frames with a bad checksum are left out of the truth: a correct receiver \
                 drops them)"
            )?;
        }
        Ok(())
    }
}

/// The outcome of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub truth: Truth,
    pub summary: Summary,
}

/// Sleeps until simulated time `at_ms` is due on the wall clock.
#[derive(Debug)]
struct Pacer {
    factor: Option<f64>,
    wall0: Instant,
    sim0_ms: i64,
}

impl Pacer {
    fn wait(&self, at_ms: i64) {
        let Some(factor) = self.factor else { return };
        let secs = (at_ms - self.sim0_ms).max(0) as f64 / 1000.0 / factor;
        let due = self.wall0 + Duration::from_secs_f64(secs);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

fn no_frame_inside<C: FrameCodec>(codec: C, bytes: &[u8]) -> bool {
    !decode_all(codec, bytes)
        .iter()
        .any(|d| matches!(d, Decoded::Frame(_)))
}

/// The frame with its checksum corrupted, unless a decoder could find a frame inside it.
fn corrupt(protocol: Protocol, frame: &[u8]) -> Option<Vec<u8>> {
    let mut b = frame.to_vec();
    match protocol {
        // SS125: the body CRC is the last octet; RTMS: the checksum's low octet.
        Protocol::Ss125 | Protocol::RtmsG4 => *b.last_mut()? ^= 0xFF,
        // FT1.2: `CS 16` close the frame.
        Protocol::Ft12Tls => {
            let at = b.len().checked_sub(2)?;
            *b.get_mut(at)? ^= 0xFF;
        }
        // SS105: four hex digits before `~`.
        Protocol::Ss105 => {
            let tilde = b.iter().rposition(|c| *c == b'~')?;
            let at = tilde.checked_sub(4)?;
            let digits = std::str::from_utf8(b.get(at..tilde)?).ok()?;
            let sum = u16::from_str_radix(digits, 16).ok()?;
            b.splice(at..tilde, format!("{:04X}", sum.wrapping_add(1)).bytes());
        }
        Protocol::Vlog | Protocol::Pems | Protocol::VehicleJson | Protocol::Fiware => {
            return None;
        }
    }
    let clean = match protocol {
        Protocol::Ss125 => no_frame_inside(Ss125::metric(), &b),
        Protocol::Ss105 => no_frame_inside(Ss105::default(), &b),
        Protocol::RtmsG4 => no_frame_inside(Rtms, &b),
        Protocol::Ft12Tls => no_frame_inside(Ft12::new(), &b),
        _ => false,
    };
    clean.then_some(b)
}

/// Octets that cannot start a frame (nor a frame's first octets) of the codec.
fn non_starting<C: FrameCodec>(codec: &C, candidates: impl Iterator<Item = u8>) -> Vec<u8> {
    candidates
        .filter(|b| !codec.could_start(&[*b]) && codec.decode(&[*b]).is_err())
        .collect()
}

/// The octets garbage is drawn from, and whether it is a line of its own.
fn garbage_alphabet(spec: &SimSpec) -> (Vec<u8>, bool) {
    let printable = || 0x21..=0x7Eu8;
    match spec.protocol {
        Protocol::Ss125 => (non_starting(&Ss125::metric(), 0..=255), false),
        Protocol::Ss105 => (non_starting(&Ss105::default(), 0..=255), false),
        Protocol::RtmsG4 => (non_starting(&Rtms, 0..=255), false),
        Protocol::Ft12Tls => (non_starting(&Ft12::new(), 0..=255), false),
        Protocol::Vlog => {
            let codec = Vlog::new(spec.start.date_naive(), 1);
            (non_starting(&codec, printable()), true)
        }
        Protocol::Pems => (non_starting(&Pems::new(), printable()), true),
        // Neither an object nor an array: never a valid payload.
        Protocol::VehicleJson | Protocol::Fiware => (
            printable().filter(|b| !matches!(b, b'{' | b'[')).collect(),
            false,
        ),
    }
}

/// Sends frames with the faults asked for and keeps the truth.
struct Runner<'a> {
    spec: &'a SimSpec,
    sink: &'a mut dyn Sink,
    pacer: Pacer,
    flush: bool,
    truth: Truth,
    summary: Summary,
    rng: ChaCha8Rng,
    alphabet: Vec<u8>,
    garbage_line: bool,
    /// A corruption that could not be applied yet goes to the next frame.
    corruption_due: bool,
    /// The last unit sent was garbage or a corrupted frame.
    after_fault: bool,
}

impl Runner<'_> {
    fn fault(&mut self) {
        if !self.after_fault {
            self.summary.expected_resyncs += 1;
        }
        self.after_fault = true;
    }

    fn emit(&mut self, frame: Frame, last: bool) -> Result<()> {
        self.summary.frames += 1;
        let n = self.summary.frames;
        self.pacer.wait(frame.at_ms);
        let every = u64::from(self.spec.bad_checksum_every);
        let mut bytes = frame.bytes;
        let mut bad = false;
        if every > 0 && (n.is_multiple_of(every) || self.corruption_due) {
            match corrupt(self.spec.protocol, &bytes).filter(|_| !last) {
                Some(b) => {
                    bytes = b;
                    bad = true;
                    self.corruption_due = false;
                }
                None => self.corruption_due = true,
            }
        }
        if bad {
            self.summary.bad_checksum_frames += 1;
            self.summary.vehicles_in_bad_frames +=
                frame.truth.iter().map(|t| u64::from(t.volume)).sum::<u64>();
            self.fault();
        } else {
            for t in frame.truth {
                self.truth.add(t.lane, t.bin_ms, t.volume, t.classes);
            }
            self.after_fault = false;
        }
        let unit = Unit {
            bytes,
            lane: frame.lane,
            garbage: false,
        };
        self.sink.send(&unit, self.flush)?;
        let every = u64::from(self.spec.garbage_every);
        if every > 0 && n.is_multiple_of(every) {
            let len = self.rng.random_range(1..=16);
            let mut bytes: Vec<u8> = (0..len)
                .filter_map(|_| {
                    let i = self.rng.random_range(0..self.alphabet.len().max(1));
                    self.alphabet.get(i).copied()
                })
                .collect();
            if self.garbage_line {
                bytes.push(b'\n');
            }
            let unit = Unit {
                bytes,
                lane: frame.lane,
                garbage: true,
            };
            self.sink.send(&unit, self.flush)?;
            self.summary.garbage_runs += 1;
            self.fault();
        }
        Ok(())
    }
}

/// Runs the simulation described by `spec`, sending its frames to `sink` at `pace`.
pub fn run(spec: &SimSpec, pace: Pace, sink: &mut dyn Sink) -> Result<Report> {
    spec.validate()?;
    let interval_ms = i64::from(spec.interval_s) * 1000;
    let start_ms = spec.start.timestamp_millis();
    let end_ms = spec.end().timestamp_millis();
    let mut truth = Truth::default();
    if spec.per_vehicle() {
        // Every (lane, bin) of the run is known to a receiver of per-vehicle frames.
        let classes = spec.carries_classes().then_some([0; 4]);
        let mut bin = start_ms - start_ms.rem_euclid(interval_ms);
        while bin < end_ms {
            for lane in 1..=spec.lanes {
                truth.add(lane, bin, 0, classes);
            }
            bin += interval_ms;
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    // The simulator uses streams 1..=lanes.
    rng.set_stream(u64::MAX);
    let (alphabet, garbage_line) = garbage_alphabet(spec);
    ensure!(
        !alphabet.is_empty(),
        "no garbage octets for {}",
        spec.protocol
    );
    let mut runner = Runner {
        spec,
        sink,
        pacer: Pacer {
            factor: pace.factor(),
            wall0: Instant::now(),
            sim0_ms: start_ms,
        },
        flush: pace != Pace::Max,
        truth,
        summary: Summary {
            protocol: Some(spec.protocol),
            ..Summary::default()
        },
        rng,
        alphabet,
        garbage_line,
        corruption_due: false,
        after_fault: false,
    };
    let mut source = FrameSource::new(spec);
    let mut pending: Option<Frame> = None;
    for frame in source.by_ref() {
        if let Some(previous) = pending.replace(frame?) {
            runner.emit(previous, false)?;
        }
    }
    if let Some(last) = pending.take() {
        runner.emit(last, true)?;
    }
    runner.summary.delivery = runner.sink.finish()?;
    runner.summary.vehicles = source.vehicles;
    runner.summary.truth_vehicles = runner.truth.total_volume();
    Ok(Report {
        truth: runner.truth,
        summary: runner.summary,
    })
}

/// Command line of the `detector-sim` binary (see the module docs).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "detector-sim",
    about = "A simulated traffic detector: real frames of a detector protocol to a file, \
             serial port, pty, stdout or MQTT, with the ground truth per lane and bin."
)]
pub struct Args {
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// Seed of the traffic generator (same seed, same frames).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Road lanes 1..=N (at most 15 for ss105, 16 for pems and ft12_tls).
    #[arg(long, default_value_t = 3)]
    pub lanes: u16,
    /// Constant demand per lane.
    #[arg(long, default_value_t = 900.0)]
    pub vehicles_per_hour: f32,
    /// Start of the simulated time, RFC 3339 (`2024-03-04T08:00:00Z`), or `now` (rounded
    /// down to the interval).
    #[arg(long)]
    pub start: String,
    /// Simulated seconds.
    #[arg(long)]
    pub duration: u32,
    /// Bin length in seconds.
    #[arg(long, default_value_t = 30)]
    pub interval_s: u32,
    /// File, serial device or pty to write to, `-` for stdout. For vlog with several lanes
    /// `{lane}` in the path is replaced by the lane number.
    #[arg(
        long,
        required_unless_present = "mqtt_url",
        conflicts_with = "mqtt_url"
    )]
    pub out: Option<String>,
    /// realtime, a speed-up factor such as 10x, or max.
    #[arg(long, default_value = "realtime")]
    pub pace: Pace,
    /// Where the ground truth CSV goes: a file or `-` for stdout (default: stderr).
    #[arg(long)]
    pub truth: Option<String>,
    /// Insert a run of garbage octets after every Nth frame.
    #[arg(long, default_value_t = 0)]
    pub garbage_every: u32,
    /// Corrupt the checksum of every Nth frame.
    #[arg(long, default_value_t = 0)]
    pub bad_checksum_every: u32,
    /// SS125: send 0x67 active events per vehicle instead of 0x71 interval data.
    #[arg(long)]
    pub ss125_events: bool,
    /// Publish to this broker instead: `mqtt://host:port` (plain TCP).
    #[arg(long, requires = "topic")]
    pub mqtt_url: Option<String>,
    /// Topic to publish to (no wildcards).
    #[arg(long, requires = "mqtt_url")]
    pub topic: Option<String>,
    /// MQTT QoS: 0 (counted as written to the socket) or 1 (counted as acknowledged).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Act as a polled device (ss125, ss105, ft12_tls on a serial port or pty): frames wait
    /// until the receiver polls, and each poll is answered with what is due.
    #[arg(long, requires = "out")]
    pub answer_polls: bool,
    /// With --answer-polls: how long to wait at the end for the receiver to poll the last
    /// frames before failing.
    #[arg(long, default_value_t = 30)]
    pub poll_wait_s: u64,
}

impl Args {
    /// The run these arguments describe.
    pub fn spec(&self) -> Result<SimSpec> {
        let start = if self.start == "now" {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs();
            let now = i64::try_from(now)?;
            let interval = i64::from(self.interval_s.max(1));
            DateTime::from_timestamp(now - now.rem_euclid(interval), 0)
                .ok_or_else(|| anyhow!("the clock is out of range"))?
        } else {
            DateTime::parse_from_rfc3339(&self.start)
                .with_context(|| format!("--start {}: expected RFC 3339 or now", self.start))?
                .with_timezone(&Utc)
        };
        let spec = SimSpec {
            protocol: self.protocol,
            ss125_events: self.ss125_events,
            seed: self.seed,
            lanes: self.lanes,
            vehicles_per_hour: self.vehicles_per_hour,
            start,
            duration_s: self.duration,
            interval_s: self.interval_s,
            garbage_every: self.garbage_every,
            bad_checksum_every: self.bad_checksum_every,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// The `detector-sim` binary: runs, writes the truth, prints the summary on stderr.
pub fn main_with(args: &Args) -> Result<Summary> {
    let spec = args.spec()?;
    ensure!(
        !(args.out.as_deref() == Some("-") && args.truth.as_deref() == Some("-")),
        "--out - and --truth - would mix frames and truth on stdout"
    );
    let mut sink: Box<dyn Sink> = match (&args.mqtt_url, &args.out) {
        (Some(url), _) => {
            ensure!(
                spec.protocol.is_json(),
                "MQTT carries vehicle_json or fiware payloads"
            );
            let topic = args.topic.as_deref().unwrap_or_default();
            let client_id = format!("detector-sim-{}-{}", std::process::id(), spec.seed);
            Box::new(MqttSink::connect(url, topic, args.qos, &client_id)?)
        }
        (None, Some(out)) if args.answer_polls => Box::new(PolledSink::open(
            spec.protocol,
            out,
            Duration::from_secs(args.poll_wait_s),
        )?),
        (None, Some(out)) => Box::new(StreamSink::open(spec.protocol, out, spec.lanes)?),
        (None, None) => bail!("give --out or --mqtt-url"),
    };
    let report = run(&spec, args.pace, sink.as_mut())?;
    drop(sink);
    match args.truth.as_deref() {
        None => report.truth.write_csv(&mut io::stderr().lock()),
        Some("-") => report.truth.write_csv(&mut io::stdout().lock()),
        Some(path) => {
            let mut f = io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("creating {path}"))?,
            );
            report.truth.write_csv(&mut f).and_then(|()| f.flush())
        }
    }
    .context("writing the truth")?;
    eprintln!("{}", report.summary);
    if let Some(acked) = report.summary.delivery.acknowledged {
        ensure!(
            acked == report.summary.delivery.sent,
            "only {acked} of {} MQTT messages were acknowledged",
            report.summary.delivery.sent
        );
    }
    Ok(report.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn mqtt_urls() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".to_owned(), 1884)
        );
        assert_eq!(
            parse_mqtt_url("tcp://broker/").unwrap(),
            ("broker".to_owned(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:1885").unwrap(),
            ("::1".to_owned(), 1885)
        );
        assert!(parse_mqtt_url("mqtts://broker:8883").is_err());
        assert!(parse_mqtt_url("mqtt://:1883").is_err());
        assert!(parse_mqtt_url("mqtt://h:99999").is_err());
    }

    #[test]
    fn garbage_octets_never_start_a_frame() {
        for protocol in Protocol::ALL {
            let spec = SimSpec::new(protocol, at("2024-03-04T08:00:00Z"), 60);
            let (alphabet, line) = garbage_alphabet(&spec);
            assert!(alphabet.len() > 50, "{protocol}");
            assert_eq!(line, matches!(protocol, Protocol::Vlog | Protocol::Pems));
            if line || protocol.is_json() {
                assert!(!alphabet.contains(&b'\n'), "{protocol}");
            }
            let starts: &[u8] = match protocol {
                Protocol::Ss125 => b"Z",
                Protocol::Ss105 => b"Z\r\n",
                Protocol::RtmsG4 => &[0xFF],
                Protocol::Ft12Tls => &[0x68, 0x10, 0xE5],
                Protocol::Vlog => b"0123456789?*",
                Protocol::Pems => b"0123456789",
                Protocol::VehicleJson | Protocol::Fiware => b"{[",
            };
            assert!(starts.iter().all(|b| !alphabet.contains(b)), "{protocol}");
        }
    }

    #[test]
    fn corruption_changes_only_the_checksum() {
        let ss105 = b"Z00001XD00000000ABCD~\r";
        let bad = corrupt(Protocol::Ss105, ss105).unwrap();
        assert_eq!(bad, b"Z00001XD00000000ABCE~\r");
        let ft12 = [0x68, 0x03, 0x03, 0x68, 0x08, 0x01, 0x00, 0x09, 0x16];
        let bad = corrupt(Protocol::Ft12Tls, &ft12).unwrap();
        assert_eq!(bad[7], 0x09 ^ 0xFF);
        assert_eq!((bad.len(), bad[8]), (ft12.len(), 0x16));
        // An E5 inside would decode as an acknowledgement: not a clean corruption.
        let with_ack = [0x68, 0x03, 0x03, 0x68, 0x08, 0x01, 0xE5, 0xEE, 0x16];
        assert_eq!(corrupt(Protocol::Ft12Tls, &with_ack), None);
        assert_eq!(
            corrupt(Protocol::Pems, b"1,1,,,,01/01/2024 00:00:00\n"),
            None
        );
    }
}
