//! `[[serial]]` sources: one detector on a serial line (DESIGN §4, §5).
//!
//! One task per port. A session opens the port with the configured baud rate, data bits,
//! parity and stop bits (`tokio-serial`, no libudev: ports are configured by path; a pty
//! path works too, ptys ignore the line settings), then reads into the protocol's
//! [`StreamDecoder`]. Every decoded frame becomes [`Observation`]s, pushed into the ring as
//! [`SourceItem::Vehicle`] or [`SourceItem::Interval`] with the box arrival time; every
//! resynchronisation is counted per source ([`SourceCounters::note_decode_error`], by
//! [`DecodeErrorKind::label`]) and handed to the aggregator as a
//! [`SourceItem::DecodeError`] so the bins of that time get CRC_ERRORS.
//!
//! Protocol specifics:
//! - `rtms_g4`: vehicle events stand alone; statistics messages go through
//!   [`StatAssembler`]. With `address` set, frames of other sensor ids are dropped.
//! - `ft12_tls`: the TLS payload of each FT1.2 user data frame ([`Ft12Frame::tls`]); user
//!   data that is not valid TLS counts as a decode error.
//! - `vlog`: one lane per port, the first numbered device lane of the lane map. Stamps carry
//!   no date: the box date of arrival is used (the previous day when the stamp is more than
//!   12 h ahead of the box), and [`VlogTimeline`] fills in unstamped lines from headways.
//! - `ss125`, `ss105`: the sensor's data interval is not in the frames; it is taken to be
//!   the aggregation interval (set the sensor so), which gives reports their device start
//!   time (`end − interval`). SS125 units are metric, SS105 speeds mph (codec defaults).
//!
//! **Polling.** For polled protocols (`ss125`, `ss105`, `ft12_tls`) the daemon is the master:
//! every `poll_period_ms` it writes one request: SS125 0x71 interval data read (packet 0,
//! interval 0 = the latest) to `address`; SS105 `XD` to the drop; FT1.2 "request class 2
//! data" as a fixed frame to the link address with FCV set and the FCB toggled on every
//! request. Replies are decoded like any frame; frames from another address are ignored.
//! Reading the same latest interval again is harmless: the aggregator drops duplicate
//! sub-intervals.
//!
//! **Times.** Arrival times come from the pipeline clock (the wall clock, except in demo mode
//! with `--sim-start`/`--time-scale`, where a `detector-sim` replaying from the same start
//! lines up with it). Device times are passed through untouched; the aggregator measures the
//! skew and decides which to bin by.
//!
//! **Line idle.** When no byte arrives for [`IDLE_GAP`] while a partial frame is buffered,
//! it is dropped ([`StreamDecoder::flush_partial`], counted as a decode error) so that half a
//! frame never glues to the next one.
//!
//! **Liveness and progress.** Per-vehicle protocols (`rtms_g4`, `vlog`) push
//! [`SourceItem::Alive`] every [`TICK`] while the port is open (an open, quiet line is an
//! empty road). Interval protocols must not (see the aggregator's notes on `mark_alive`):
//! they push [`SourceItem::Progress`] instead, so that a quiet device does not hold back the
//! pipeline's watermark.
//!
//! **Failures.** A port that cannot be opened, a read or write error, or end of file ends
//! the session with an error; [`super::run_source`] backs off and reopens. Other sources are
//! not affected.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use codecs::ft12::{Control, Ft12, Ft12Frame, function};
use codecs::pems::Pems;
use codecs::rtms::{Rtms, StatAssembler};
use codecs::ss105::{Ss105, Ss105Frame};
use codecs::ss125::{Ss125, Z1Body, Z1Frame, Z1Header};
use codecs::vlog::{Vlog, VlogFrame, VlogTimeline};
use codecs::{
    DecodeErrorKind, Decoded, FrameCodec, Observation, Observations, StreamDecoder, StreamStats,
};
use edge_config::{DeviceLane, Parity, Protocol, SerialSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{RingSender, Source, SourceItem};
use crate::clock::PipelineClock;
use crate::counters::SourceCounters;

/// A partial frame is dropped after the line has been quiet this long.
pub const IDLE_GAP: Duration = Duration::from_millis(500);
/// Liveness / progress marks and idle checks happen this often while the port is open.
pub const TICK: Duration = Duration::from_millis(250);
/// Bytes read per system call.
const READ_CHUNK: usize = 1024;

/// What one decoded chunk of the line gives.
#[derive(Debug, Clone, PartialEq)]
pub enum LineItem {
    Observation(Observation),
    /// A resynchronisation: the error kind's label and the bytes skipped.
    Error {
        label: &'static str,
        bytes: usize,
    },
}

/// The protocol state of one line: a stream decoder and what the protocol needs besides.
/// One per open port, so the variants' different sizes do not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Wire {
    Ss125(StreamDecoder<Ss125>),
    Ss105(StreamDecoder<Ss105>),
    RtmsG4(StreamDecoder<Rtms>, StatAssembler),
    Ft12Tls(StreamDecoder<Ft12>),
    Vlog(StreamDecoder<Vlog>, VlogTimeline),
    Pems(StreamDecoder<Pems>),
}

impl Wire {
    /// The decoder for `protocol`. `interval_s`: the device data interval assumed for
    /// SS125/SS105; `vlog_lane`, `date`: the lane and (initial) date of a `.vlog` line.
    pub fn new(protocol: Protocol, interval_s: u32, vlog_lane: u16, date: NaiveDate) -> Self {
        match protocol {
            Protocol::Ss125 => Self::Ss125(StreamDecoder::new(
                Ss125::metric().with_interval_s(interval_s),
            )),
            Protocol::Ss105 => Self::Ss105(StreamDecoder::new(
                Ss105::default().with_interval_s(interval_s),
            )),
            Protocol::RtmsG4 => Self::RtmsG4(StreamDecoder::new(Rtms), StatAssembler::new()),
            Protocol::Ft12Tls => Self::Ft12Tls(StreamDecoder::new(Ft12::new())),
            Protocol::Vlog => Self::Vlog(
                StreamDecoder::new(Vlog::new(date, vlog_lane)),
                VlogTimeline::new(),
            ),
            Protocol::Pems => Self::Pems(StreamDecoder::new(Pems::new())),
        }
    }

    /// Adds bytes read from the line.
    pub fn push(&mut self, data: &[u8]) {
        match self {
            Self::Ss125(d) => d.push(data),
            Self::Ss105(d) => d.push(data),
            Self::RtmsG4(d, _) => d.push(data),
            Self::Ft12Tls(d) => d.push(data),
            Self::Vlog(d, _) => d.push(data),
            Self::Pems(d) => d.push(data),
        }
    }

    /// Bytes buffered that are not a complete frame yet.
    pub fn buffered(&self) -> usize {
        match self {
            Self::Ss125(d) => d.buffered(),
            Self::Ss105(d) => d.buffered(),
            Self::RtmsG4(d, _) => d.buffered(),
            Self::Ft12Tls(d) => d.buffered(),
            Self::Vlog(d, _) => d.buffered(),
            Self::Pems(d) => d.buffered(),
        }
    }

    pub fn stats(&self) -> StreamStats {
        match self {
            Self::Ss125(d) => d.stats(),
            Self::Ss105(d) => d.stats(),
            Self::RtmsG4(d, _) => d.stats(),
            Self::Ft12Tls(d) => d.stats(),
            Self::Vlog(d, _) => d.stats(),
            Self::Pems(d) => d.stats(),
        }
    }

    /// Everything decodable so far. `address` filters frames of other devices where the
    /// frames carry one; `arrival` dates `.vlog` stamps.
    pub fn drain(&mut self, address: Option<u32>, arrival: DateTime<Utc>, out: &mut Vec<LineItem>) {
        match self {
            Self::Ss125(d) => drain(d, out, |f: Z1Frame, out| {
                if address.is_none_or(|a| u32::from(f.header.src_id) == a) {
                    f.observations(out);
                }
                Ok(())
            }),
            Self::Ss105(d) => drain(d, out, |f: Ss105Frame, out| {
                let ours = match &f {
                    Ss105Frame::Reply(r) => address.is_none_or(|a| u32::from(r.drop) == a),
                    Ss105Frame::Request(_) => false,
                };
                if ours {
                    f.observations(out);
                }
                Ok(())
            }),
            Self::RtmsG4(d, stats) => drain(d, out, |f, out| {
                if address.is_none_or(|a| u32::from(f.sensor_id) == a) {
                    f.observations(out);
                    if let Some(s) = stats.push(&f) {
                        s.observations(out);
                    }
                }
                Ok(())
            }),
            Self::Ft12Tls(d) => drain(d, out, |f: Ft12Frame, out| {
                if address.is_some_and(|a| f.address().is_some_and(|fa| u32::from(fa) != a)) {
                    return Ok(());
                }
                match f.tls() {
                    Some(Ok(tls)) => tls.observations(out),
                    Some(Err(e)) => return Err(e.kind),
                    None => {}
                }
                Ok(())
            }),
            Self::Vlog(d, timeline) => drain(d, out, |mut f: VlogFrame, out| {
                if let VlogFrame::Vehicle(v) = &mut f {
                    v.time = v.time.and_then(|t| on_arrival_date(t, arrival));
                }
                if let Some(e) = timeline.resolve(&f) {
                    out.push(Observation::Vehicle(e));
                }
                Ok(())
            }),
            Self::Pems(d) => drain(d, out, |f, out| {
                f.observations(out);
                Ok(())
            }),
        }
    }

    /// Drops a partial frame after the line went idle.
    pub fn flush_partial(&mut self, out: &mut Vec<LineItem>) {
        let skipped = match self {
            Self::Ss125(d) => skipped(d.flush_partial()),
            Self::Ss105(d) => skipped(d.flush_partial()),
            Self::RtmsG4(d, _) => skipped(d.flush_partial()),
            Self::Ft12Tls(d) => skipped(d.flush_partial()),
            Self::Vlog(d, timeline) => {
                // The headway chain is broken by a lost line.
                let s = skipped(d.flush_partial());
                if s.is_some() {
                    *timeline = VlogTimeline::new();
                }
                s
            }
            Self::Pems(d) => skipped(d.flush_partial()),
        };
        out.extend(skipped);
    }
}

fn skipped<F>(d: Option<Decoded<F>>) -> Option<LineItem> {
    match d? {
        Decoded::Frame(_) => None,
        Decoded::Skipped { bytes, error, .. } => Some(LineItem::Error {
            label: error.kind.label(),
            bytes,
        }),
    }
}

/// Decodes what `dec` holds; each frame goes through `on_frame`, which pushes observations
/// or rejects the frame's payload with an error kind.
fn drain<C: FrameCodec>(
    dec: &mut StreamDecoder<C>,
    out: &mut Vec<LineItem>,
    mut on_frame: impl FnMut(C::Frame, &mut Vec<Observation>) -> Result<(), DecodeErrorKind>,
) {
    let mut obs = Vec::new();
    while let Some(d) = dec.next() {
        match d {
            Decoded::Frame(f) => {
                obs.clear();
                match on_frame(f, &mut obs) {
                    Ok(()) => out.extend(obs.drain(..).map(LineItem::Observation)),
                    Err(kind) => out.push(LineItem::Error {
                        label: kind.label(),
                        bytes: 0,
                    }),
                }
            }
            Decoded::Skipped { bytes, error, .. } => out.push(LineItem::Error {
                label: error.kind.label(),
                bytes,
            }),
        }
    }
}

/// A `.vlog` stamp (time of day on the codec's date) moved to the arrival's date, or the day
/// before when the stamp would be more than 12 h ahead of the arrival.
fn on_arrival_date(stamp: DateTime<Utc>, arrival: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = arrival.date_naive().and_time(stamp.time()).and_utc();
    if t - arrival > TimeDelta::hours(12) {
        t.checked_sub_signed(TimeDelta::days(1))
    } else {
        Some(t)
    }
}

/// The request a polled protocol sends every poll period; `None` for protocols that send
/// on their own. `fcb`: the FT1.2 frame count bit to use (toggled by the caller).
pub fn poll_request(
    protocol: Protocol,
    address: u32,
    seq: u8,
    fcb: bool,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    match protocol {
        Protocol::Ss125 => {
            let frame = Z1Frame {
                header: Z1Header {
                    dst_sub: 0,
                    dst_id: u16::try_from(address).context("SS125 address")?,
                    src_sub: 0,
                    src_id: 0,
                    seq,
                },
                body: Z1Body::IntervalRequest {
                    packet: 0,
                    interval: 0,
                },
            };
            Ss125::metric().encode(&frame, &mut out)?;
        }
        Protocol::Ss105 => {
            let drop = u16::try_from(address).context("SS105 drop")?;
            let frame = Ss105Frame::Request(codecs::ss105::Request::interval_data(drop));
            Ss105::default().encode(&frame, &mut out)?;
        }
        Protocol::Ft12Tls => {
            let frame = Ft12Frame::Fixed {
                control: Control::primary(function::REQUEST_CLASS_2, fcb, true),
                address: u16::try_from(address).context("FT1.2 address")?,
            };
            Ft12::new().encode(&frame, &mut out)?;
        }
        Protocol::RtmsG4 | Protocol::Vlog | Protocol::Pems => return Ok(None),
    }
    Ok(Some(out))
}

/// Whether the protocol reports single vehicles (its source pushes liveness marks).
pub fn is_per_vehicle(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::RtmsG4 | Protocol::Vlog)
}

/// The `.vlog` lane of a source: the first numbered device lane of its lane map (1 if none).
pub fn vlog_lane(src: &SerialSource) -> u16 {
    src.lanes
        .iter()
        .flat_map(|m| m.entries())
        .find_map(|e| match e.device {
            DeviceLane::Number(n) => u16::try_from(n).ok(),
            DeviceLane::Name(_) => None,
        })
        .unwrap_or(1)
}

/// A running `[[serial]]` source.
#[derive(Debug)]
pub struct Serial {
    cfg: SerialSource,
    interval_s: u32,
    clock: PipelineClock,
    tx: RingSender,
    counters: Arc<SourceCounters>,
    seq: u8,
    fcb: bool,
}

impl Serial {
    /// `interval_s`: the aggregation interval (taken as SS125/SS105 data interval).
    pub fn new(
        cfg: &SerialSource,
        interval_s: u32,
        clock: PipelineClock,
        tx: RingSender,
        counters: Arc<SourceCounters>,
    ) -> Self {
        Self {
            cfg: cfg.clone(),
            interval_s,
            clock,
            tx,
            counters,
            seq: 0,
            fcb: false,
        }
    }

    fn open(&self) -> anyhow::Result<tokio_serial::SerialStream> {
        let c = &self.cfg;
        let data_bits = match c.data_bits {
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        };
        let stop_bits = match c.stop_bits {
            2 => tokio_serial::StopBits::Two,
            _ => tokio_serial::StopBits::One,
        };
        let parity = match c.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        let path = c.port.to_string_lossy();
        tokio_serial::new(path, c.baud)
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .parity(parity)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .with_context(|| format!("cannot open {}", c.port.display()))
    }

    /// Pushes what `out` holds with arrival time `now`.
    fn deliver(&mut self, out: &mut Vec<LineItem>, now: DateTime<Utc>) {
        for d in out.drain(..) {
            match d {
                LineItem::Observation(Observation::Vehicle(event)) => {
                    self.tx.push(SourceItem::Vehicle {
                        event,
                        arrival: now,
                    });
                }
                LineItem::Observation(Observation::Interval(report)) => {
                    self.tx.push(SourceItem::Interval {
                        report,
                        arrival: now,
                    });
                }
                LineItem::Error { label, .. } => {
                    self.counters.note_decode_error(label);
                    self.tx.push(SourceItem::DecodeError(now));
                }
            }
        }
    }

    fn mark(&mut self, now: DateTime<Utc>) {
        if is_per_vehicle(self.cfg.protocol) {
            self.tx.push(SourceItem::Alive(now));
        } else {
            self.tx.push(SourceItem::Progress(now));
        }
    }

    fn sync_stats(&self, wire: &Wire, reported: &mut StreamStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = wire.stats();
        let c = &self.counters;
        c.frames_total
            .fetch_add(s.frames - reported.frames, Relaxed);
        c.bytes_total
            .fetch_add(s.bytes_in - reported.bytes_in, Relaxed);
        c.skipped_bytes_total
            .fetch_add(s.skipped_bytes - reported.skipped_bytes, Relaxed);
        *reported = s;
    }
}

impl Source for Serial {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        // Say how far we got even when the port is missing, so others are not held back.
        let now = self.clock.now();
        self.tx.push(SourceItem::Progress(now));
        let mut port = self.open()?;
        info!(port = %self.cfg.port.display(), protocol = %self.cfg.protocol, "port open");
        let address = self.cfg.address;
        let mut wire = Wire::new(
            self.cfg.protocol,
            self.interval_s,
            vlog_lane(&self.cfg),
            now.date_naive(),
        );
        let mut reported = StreamStats::default();
        let mut out = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = self.cfg.poll_period().map(|p| {
            let mut i = tokio::time::interval(p);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        let mut last_byte = Instant::now();
        self.mark(now);
        let result = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                r = port.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => break Err(anyhow::anyhow!("the port was closed")),
                        Ok(n) => n,
                        Err(e) => break Err(anyhow::Error::new(e).context("read failed")),
                    };
                    last_byte = Instant::now();
                    let now = self.clock.now();
                    wire.push(buf.get(..n).unwrap_or_default());
                    wire.drain(address, now, &mut out);
                    self.deliver(&mut out, now);
                    self.sync_stats(&wire, &mut reported);
                }
                _ = tick.tick() => {
                    let now = self.clock.now();
                    if wire.buffered() > 0 && last_byte.elapsed() >= IDLE_GAP {
                        debug!(bytes = wire.buffered(), "line idle: dropping a partial frame");
                        wire.flush_partial(&mut out);
                        self.deliver(&mut out, now);
                        self.sync_stats(&wire, &mut reported);
                    }
                    self.mark(now);
                }
                _ = tick_opt(poll.as_mut()) => {
                    let Some(addr) = address else { continue };
                    self.seq = self.seq.wrapping_add(1);
                    self.fcb = !self.fcb;
                    let request = poll_request(self.cfg.protocol, addr, self.seq, self.fcb)?;
                    if let Some(req) = request
                        && let Err(e) = port.write_all(&req).await
                    {
                        break Err(anyhow::Error::new(e).context("write failed"));
                    }
                }
            }
        };
        let now = self.clock.now();
        if result.is_ok() {
            self.mark(now);
        }
        result
    }
}

async fn tick_opt(i: Option<&mut tokio::time::Interval>) -> Instant {
    match i {
        Some(i) => i.tick().await,
        None => std::future::pending().await,
    }
}

/// Refuses what a serial source cannot do in this build.
pub fn check(src: &SerialSource) -> anyhow::Result<()> {
    let own = src.detector_id();
    if let Some(e) = src
        .lanes
        .iter()
        .flat_map(|m| m.entries())
        .find(|e| e.detector_id.as_deref().is_some_and(|d| d != own))
    {
        bail!(
            "serial {:?}: lane {} maps to detector {:?}; one serial source feeds one detector \
             in this build",
            src.id,
            e.device,
            e.detector_id.as_deref().unwrap_or_default()
        );
    }
    if src.protocol.is_polled() && src.address.is_none() {
        bail!("serial {:?}: a polled protocol needs an address", src.id);
    }
    Ok(())
}

/// The aggregator's lane map of a serial source.
pub fn lane_map(src: &SerialSource) -> anyhow::Result<crate::aggregate::LaneMap> {
    let pairs = src
        .lanes
        .iter()
        .flat_map(|m| m.entries())
        .map(|e| match &e.device {
            DeviceLane::Number(n) => Ok((u16::try_from(*n)?, e.lane)),
            DeviceLane::Name(name) => bail!("serial {:?}: lane {name:?} is not a number", src.id),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(crate::aggregate::LaneMap::from_pairs(pairs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn poll_requests_decode_as_the_right_requests() {
        let req = poll_request(Protocol::Ss125, 101, 5, false)
            .unwrap()
            .unwrap();
        let (frame, n) = Ss125::metric().decode(&req).unwrap().unwrap();
        assert_eq!(n, req.len());
        assert_eq!(frame.header.dst_id, 101);
        assert!(matches!(
            frame.body,
            Z1Body::IntervalRequest {
                packet: 0,
                interval: 0
            }
        ));

        let a = poll_request(Protocol::Ft12Tls, 7, 0, true)
            .unwrap()
            .unwrap();
        let b = poll_request(Protocol::Ft12Tls, 7, 0, false)
            .unwrap()
            .unwrap();
        let (fa, _) = Ft12::new().decode(&a).unwrap().unwrap();
        let (fb, _) = Ft12::new().decode(&b).unwrap().unwrap();
        assert_eq!(fa.address(), Some(7));
        let (ca, cb) = (fa.control().unwrap(), fb.control().unwrap());
        assert_eq!(ca.function(), function::REQUEST_CLASS_2);
        assert!(ca.is_primary() && ca.fcv() && ca.fcb() && !cb.fcb());

        let x = poll_request(Protocol::Ss105, 12, 0, false)
            .unwrap()
            .unwrap();
        assert!(matches!(
            Ss105::default().decode(&x).unwrap().unwrap().0,
            Ss105Frame::Request(r) if r.drop == 12
        ));
        assert!(poll_request(Protocol::Pems, 0, 0, false).unwrap().is_none());
    }

    #[test]
    fn garbage_is_counted_and_a_partial_frame_flushed() {
        let now = at("2024-03-04T08:00:00Z");
        let mut wire = Wire::new(Protocol::Ss125, 30, 1, now.date_naive());
        let mut out = Vec::new();
        wire.push(b"\x01\x02garbage");
        wire.drain(None, now, &mut out);
        assert!(
            out.iter().all(|i| matches!(i, LineItem::Error { .. })),
            "{out:?}"
        );
        assert!(!out.is_empty());
        out.clear();
        let req = poll_request(Protocol::Ss125, 1, 0, false).unwrap().unwrap();
        wire.push(&req[..5]);
        wire.drain(None, now, &mut out);
        assert!(out.is_empty());
        assert!(wire.buffered() > 0);
        wire.flush_partial(&mut out);
        assert!(matches!(
            out.as_slice(),
            [LineItem::Error {
                label: "length",
                ..
            }]
        ));
        assert_eq!(wire.buffered(), 0);
    }

    #[test]
    fn vlog_stamps_take_the_arrival_date() {
        let stamp = at("2000-01-01T23:59:58Z");
        assert_eq!(
            on_arrival_date(stamp, at("2024-03-05T00:00:01Z")),
            Some(at("2024-03-04T23:59:58Z"))
        );
        let stamp = at("2000-01-01T08:00:00Z");
        assert_eq!(
            on_arrival_date(stamp, at("2024-03-04T08:00:03Z")),
            Some(at("2024-03-04T08:00:00Z"))
        );
    }
}
