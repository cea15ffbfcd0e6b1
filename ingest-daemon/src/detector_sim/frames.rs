//! Simulated vehicles to wire frames: one frame per vehicle, or per-lane interval reports
//! per bin, each frame with the truth it carries.

use std::collections::{BTreeMap, VecDeque};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use codecs::ft12::{Control, Ft12, Ft12Frame, function};
use codecs::model::{KMH_PER_MPH, VehicleClass};
use codecs::mqtt::{FiwareForm, TrafficFlowObserved, VehicleEventMsg};
use codecs::pems::{Pems, PemsLane, PemsSample};
use codecs::rtms::{G4Frame, G4Message, G4Stamp, G4VehicleEvent, Rtms};
use codecs::ss105::{self, LaneSample, Reply, ReplyBody, Ss105, Ss105Frame};
use codecs::ss125::{self, ActiveEvent, Ss125, Z1Body, Z1Frame, Z1Header};
use codecs::tls::{
    self, DeBlock, Fg1Block, IntervalHeader, LveExtra, LveResult, Osi3Header, Osi7Container,
    Telegram, TlsUserData,
};
use codecs::vlog::{Vlog, VlogFrame, VlogVehicle};
use codecs::{FrameCodec, mqtt};

use super::{Protocol, SimSpec};
use crate::sim::{SimEvent, Simulator};

/// Identity the simulated device gives itself where a wire format carries one.
pub(crate) const DEVICE_ID: u16 = 1;
/// Detector name in `vehicle_json` events and FIWARE entity ids.
pub(crate) const DETECTOR_NAME: &str = "detector-sim";
/// PeMS station (VDS) id of the simulated station.
pub(crate) const PEMS_STATION: u32 = 400_001;
/// Headways above this are written as `?` by IRIS, with a time stamp instead.
const VLOG_MAX_HEADWAY_MS: i64 = 90_000;

/// What one frame adds to the truth when it arrives intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TruthAdd {
    pub lane: u16,
    pub bin_ms: i64,
    pub volume: u32,
    pub classes: Option<[u32; 4]>,
}

/// One frame as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Simulated time at which the device sends it, UTC ms (non-decreasing).
    pub at_ms: i64,
    pub bytes: Vec<u8>,
    /// The lane a per-lane output (a `.vlog` file per lane) routes it to.
    pub lane: Option<u16>,
    pub truth: Vec<TruthAdd>,
}

/// One lane's figures for one bin, computed from the simulated vehicles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LaneStats {
    pub lane: u16,
    pub volume: u32,
    pub classes: [u32; 4],
    /// Fraction 0–1: on-time clipped to the bin over the bin's length.
    pub occupancy: f32,
    pub speed_avg_kmh: Option<f32>,
    pub speed_p85_kmh: Option<f32>,
    pub length_avg_m: Option<f32>,
}

#[derive(Debug, Clone, Default)]
struct LaneAcc {
    volume: u32,
    classes: [u32; 4],
    speeds: Vec<f32>,
    length_sum: f64,
    lengths: u32,
}

/// Per-lane memory of per-vehicle encoders.
#[derive(Debug, Clone, Copy)]
struct LastVehicle {
    front_ms: i64,
    /// The time a receiver reconstructs for it (`.vlog`: stamp + headways).
    encoded_ms: i64,
    hour: u32,
}

fn bin_of(t_ms: i64, interval_ms: i64) -> i64 {
    t_ms - t_ms.rem_euclid(interval_ms)
}

fn time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| anyhow!("time {ms} ms out of range"))
}

fn p85(speeds: &mut [f32]) -> Option<f32> {
    speeds.sort_by(f32::total_cmp);
    // Nearest rank: the smallest value with at least 85 % of the speeds at or below it.
    let rank = (speeds.len() * 85).div_ceil(100);
    speeds.get(rank.checked_sub(1)?).copied()
}

/// Rounds to one decimal, the precision the simulator draws speeds with.
fn tenth(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}

/// The stream of frames of one run, in sending order.
#[derive(Debug)]
pub(crate) struct FrameSource {
    spec: SimSpec,
    sim: Simulator,
    interval_ms: i64,
    end_ms: i64,
    queue: VecDeque<Frame>,
    done: bool,
    /// Simulated vehicles seen so far.
    pub vehicles: u64,
    last_at: i64,
    // interval protocols
    bin_ms: i64,
    acc: Vec<LaneAcc>,
    occupancy_ms: BTreeMap<(u16, i64), u64>,
    bin_number: u32,
    // per-vehicle protocols
    last: Vec<Option<LastVehicle>>,
    seq: u8,
    vlog_date: NaiveDate,
}

impl FrameSource {
    pub(crate) fn new(spec: &SimSpec) -> Self {
        let interval_ms = i64::from(spec.interval_s) * 1000;
        let start_ms = spec.start.timestamp_millis();
        let lanes = usize::from(spec.lanes);
        Self {
            spec: spec.clone(),
            sim: Simulator::new(spec.sim_config(), spec.start, spec.end()),
            interval_ms,
            end_ms: spec.end().timestamp_millis(),
            queue: VecDeque::new(),
            done: false,
            vehicles: 0,
            last_at: i64::MIN,
            bin_ms: bin_of(start_ms, interval_ms),
            acc: vec![LaneAcc::default(); lanes],
            occupancy_ms: BTreeMap::new(),
            bin_number: 0,
            last: vec![None; lanes],
            seq: 0,
            vlog_date: spec.start.date_naive(),
        }
    }

    fn push(&mut self, at_ms: i64, bytes: Vec<u8>, lane: Option<u16>, truth: Vec<TruthAdd>) {
        // A device sends in order; vehicles leaving out of order go out when the later leaves.
        let at_ms = at_ms.max(self.last_at);
        self.last_at = at_ms;
        self.queue.push_back(Frame {
            at_ms,
            bytes,
            lane,
            truth,
        });
    }

    fn next_seq(&mut self) -> u8 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    // ---- interval protocols ----

    fn add_to_bin(&mut self, e: &SimEvent) {
        let lane = e.event.lane;
        if let Some(acc) = self.acc.get_mut(usize::from(lane).wrapping_sub(1)) {
            acc.volume += 1;
            if let Some(n) = acc.classes.get_mut(e.class.index()) {
                *n += 1;
            }
            if let Some(v) = e.event.speed_kmh {
                acc.speeds.push(v);
            }
            if let Some(l) = e.event.length_m {
                acc.length_sum += f64::from(l);
                acc.lengths += 1;
            }
        }
        // On-time split over the bins it covers (a slow vehicle spills into the next bin).
        let (a, z) = (e.front_ms, e.front_ms + i64::from(e.occupancy_ms));
        let mut s = bin_of(a, self.interval_ms);
        while s < z {
            let part = z.min(s + self.interval_ms) - a.max(s);
            *self.occupancy_ms.entry((lane, s)).or_default() += part.unsigned_abs();
            s += self.interval_ms;
        }
    }

    fn close_bin(&mut self) -> Result<()> {
        let bin = self.bin_ms;
        let mut stats = Vec::with_capacity(self.acc.len());
        for (i, acc) in std::mem::take(&mut self.acc).into_iter().enumerate() {
            let lane = u16::try_from(i + 1)?;
            let occ_ms = self.occupancy_ms.remove(&(lane, bin)).unwrap_or(0);
            let mut speeds = acc.speeds;
            let speed_avg_kmh = (!speeds.is_empty())
                .then(|| tenth(speeds.iter().sum::<f32>() / speeds.len() as f32));
            stats.push(LaneStats {
                lane,
                volume: acc.volume,
                classes: acc.classes,
                occupancy: (occ_ms as f64 / self.interval_ms as f64).min(1.0) as f32,
                speed_avg_kmh,
                speed_p85_kmh: p85(&mut speeds),
                length_avg_m: (acc.lengths > 0)
                    .then(|| (acc.length_sum / f64::from(acc.lengths)) as f32),
            });
        }
        self.acc = vec![LaneAcc::default(); stats.len()];
        self.interval_frames(bin, &stats)?;
        self.bin_ms += self.interval_ms;
        self.bin_number = self.bin_number.wrapping_add(1);
        Ok(())
    }

    fn interval_frames(&mut self, bin: i64, stats: &[LaneStats]) -> Result<()> {
        let at = bin + self.interval_ms;
        let start = time(bin)?;
        let end = time(at)?;
        let interval_s = self.spec.interval_s;
        let add = |s: &LaneStats, classes: bool| TruthAdd {
            lane: s.lane,
            bin_ms: bin,
            volume: s.volume,
            classes: classes.then_some(s.classes),
        };
        match self.spec.protocol {
            Protocol::Ss125 => {
                let codec = Ss125::metric();
                let lane_count = u8::try_from(stats.len())?;
                for s in stats {
                    let frame = Z1Frame {
                        header: self.z1_header(),
                        body: Z1Body::IntervalData(ss125::IntervalData {
                            packet: u8::try_from(s.lane - 1)?,
                            interval: self.bin_number & 0x00FF_FFFF,
                            end,
                            speed_avg_kmh: s.speed_avg_kmh,
                            volume: s.volume,
                            occupancy: Some(s.occupancy),
                            class_counts: s.classes,
                            speed_p85_kmh: s.speed_p85_kmh,
                            headway: 0,
                            gap: 0,
                            lane_count,
                            approach_count: 0,
                            interval_s: Some(interval_s),
                        }),
                    };
                    let bytes = encode(&codec, &frame)?;
                    self.push(at, bytes, None, vec![add(s, true)]);
                }
            }
            Protocol::Ss105 => {
                let lanes = stats
                    .iter()
                    .map(|s| {
                        let share = |n: u32| {
                            if s.volume == 0 {
                                0.0
                            } else {
                                n as f32 / s.volume as f32
                            }
                        };
                        let [moto, short, medium, long] = s.classes;
                        Ok(LaneSample {
                            lane: u8::try_from(s.lane)?,
                            volume: s.volume,
                            // 0 = not measured, as the sensor sends it.
                            speed_kmh: s.speed_avg_kmh.unwrap_or(0.0),
                            occupancy: s.occupancy,
                            class_share: [share(moto + short), share(medium), share(long)],
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let frame = Ss105Frame::Reply(Reply {
                    drop: DEVICE_ID,
                    command: "XD".to_owned(),
                    body: ReplyBody::IntervalData(ss105::IntervalData {
                        end,
                        lanes,
                        interval_s: Some(interval_s),
                    }),
                });
                let bytes = encode(&Ss105::default(), &frame)?;
                let truth = stats.iter().map(|s| add(s, false)).collect();
                self.push(at, bytes, None, truth);
            }
            Protocol::Ft12Tls => {
                let frame = tls_frame(start, stats)?;
                let bytes = encode(&Ft12::new(), &frame)?;
                let truth = stats.iter().map(|s| add(s, false)).collect();
                self.push(at, bytes, None, truth);
            }
            Protocol::Pems => {
                let lanes = stats
                    .iter()
                    .map(|s| PemsLane {
                        flow: Some(s.volume),
                        speed_mph: s.speed_avg_kmh.map(|v| tenth(v / KMH_PER_MPH)),
                        occupancy_permille: Some((s.occupancy * 1000.0).round().min(1000.0) as u16),
                    })
                    .collect();
                let frame = PemsSample {
                    station: PEMS_STATION,
                    time: start,
                    lanes,
                };
                let bytes = encode(&Pems::new(), &frame)?;
                let truth = stats.iter().map(|s| add(s, false)).collect();
                self.push(at, bytes, None, truth);
            }
            Protocol::Fiware => {
                for s in stats {
                    let mut e = TrafficFlowObserved::on_lane(s.lane);
                    e.id = Some(format!(
                        "urn:ngsi-ld:TrafficFlowObserved:{DETECTOR_NAME}-{}-lane{}",
                        bin / 1000,
                        s.lane
                    ));
                    e.date_observed_from = Some(start);
                    e.date_observed_to = Some(end);
                    e.intensity = Some(s.volume);
                    e.occupancy = Some(s.occupancy);
                    e.average_vehicle_speed = s.speed_avg_kmh;
                    e.average_vehicle_length = s.length_avg_m;
                    let bytes = mqtt::encode_fiware(&e, FiwareForm::KeyValues)
                        .context("encoding a FIWARE entity")?;
                    self.push(at, bytes, None, vec![add(s, false)]);
                }
            }
            Protocol::RtmsG4 | Protocol::Vlog | Protocol::VehicleJson => {
                return Err(anyhow!(
                    "{} has no interval frames here",
                    self.spec.protocol
                ));
            }
        }
        Ok(())
    }

    fn z1_header(&mut self) -> Z1Header {
        Z1Header {
            dst_sub: 0,
            dst_id: 0,
            src_sub: 0,
            src_id: DEVICE_ID,
            seq: self.next_seq(),
        }
    }

    // ---- per-vehicle protocols ----

    fn vehicle_frame(&mut self, e: &SimEvent) -> Result<()> {
        let lane = e.event.lane;
        let front = time(e.front_ms)?;
        let at = e.front_ms + i64::from(e.occupancy_ms);
        let speed = e.event.speed_kmh;
        let length = e.event.length_m;
        let slot = usize::from(lane).saturating_sub(1);
        let last = self.last.get(slot).copied().flatten();
        let headway_ms = last.map(|l| e.front_ms - l.front_ms);
        let one = |bin_ms: i64, class: Option<VehicleClass>| {
            vec![TruthAdd {
                lane,
                bin_ms,
                volume: 1,
                classes: class.map(|c| {
                    let mut counts = [0; 4];
                    if let Some(n) = counts.get_mut(c.index()) {
                        *n = 1;
                    }
                    counts
                }),
            }]
        };
        let bin = bin_of(e.front_ms, self.interval_ms);
        let mut encoded_ms = e.front_ms;
        match self.spec.protocol {
            Protocol::Ss125 => {
                let frame = Z1Frame {
                    header: self.z1_header(),
                    body: Z1Body::ActiveEvent(ActiveEvent {
                        time: front,
                        lane: u8::try_from(lane - 1)?,
                        // Lanes 3.7 m wide, the first one 3 m from the sensor.
                        range_m: 3.0 + 3.7 * f32::from(lane - 1),
                        duration_ms: e.occupancy_ms,
                        speed_kmh: speed,
                        class: u8::try_from(e.class.index())?,
                        length_m: length.unwrap_or(0.0),
                    }),
                };
                let bytes = encode(&Ss125::metric(), &frame)?;
                self.push(at, bytes, None, one(bin, Some(e.class)));
            }
            Protocol::RtmsG4 => {
                let length_dm = length.map_or(0, |l| (l * 10.0).round().clamp(1.0, 255.0) as u8);
                let stamp = G4Stamp::from_datetime(front)
                    .ok_or_else(|| anyhow!("RTMS G4 time stamps hold the years 2000–2099 only"))?;
                let frame = G4Frame {
                    sensor_id: DEVICE_ID,
                    message: G4Message::Vehicle(G4VehicleEvent {
                        zone: u8::try_from(lane - 1)?,
                        // G4 classes C1..C5 are the sensor's own bins; ours map to C1..C4.
                        class: u8::try_from(e.class.index() + 1)?,
                        length_dm,
                        speed: speed.map_or(0, |v| v.round().clamp(1.0, 255.0) as u8),
                        duration_ms: u16::try_from(e.occupancy_ms).unwrap_or(u16::MAX),
                        stamp_sub: 0,
                        stamp,
                        mph: false,
                    }),
                };
                let bytes = encode(&Rtms, &frame)?;
                // Receivers class by the length the frame carries (in decimetres).
                let class = (length_dm > 0)
                    .then(|| VehicleClass::from_length_m(f32::from(length_dm) / 10.0));
                // The stamp holds whole seconds; bins are whole seconds, so the bin is kept.
                self.push(at, bytes, None, one(bin, class));
            }
            Protocol::Vlog => {
                let hour = front.hour();
                let headway = headway_ms.filter(|h| *h <= VLOG_MAX_HEADWAY_MS);
                // IRIS writes the stamp on the first vehicle, after a headway it cannot log
                // and when the hour changes; otherwise time follows from the headways.
                let stamp = match (last, headway) {
                    (Some(l), Some(h)) if l.hour == hour => {
                        encoded_ms = l.encoded_ms + h;
                        None
                    }
                    _ => {
                        encoded_ms = e.front_ms - e.front_ms.rem_euclid(1000);
                        Some(time(encoded_ms)?)
                    }
                };
                let frame = VlogFrame::Vehicle(VlogVehicle {
                    lane,
                    duration_ms: Some(e.occupancy_ms),
                    headway_ms: headway.map(u32::try_from).transpose()?,
                    time: stamp,
                    speed_mph: speed.map(|v| (v / KMH_PER_MPH).round() as u16),
                });
                let bytes = encode(&Vlog::new(self.vlog_date, lane), &frame)?;
                let bin = bin_of(encoded_ms, self.interval_ms);
                self.push(at, bytes, Some(lane), one(bin, None));
            }
            Protocol::VehicleJson => {
                let msg = VehicleEventMsg {
                    detector: DETECTOR_NAME.to_owned(),
                    lane,
                    ts: Some(front),
                    speed_kmh: speed,
                    length_m: length,
                    occupancy_ms: Some(e.occupancy_ms),
                    headway_ms: headway_ms.map(u32::try_from).transpose()?,
                    class: Some(e.class),
                };
                let bytes = mqtt::encode_vehicle_event(&msg).context("encoding a vehicle event")?;
                self.push(at, bytes, None, one(bin, Some(e.class)));
            }
            Protocol::Ss105 | Protocol::Ft12Tls | Protocol::Pems | Protocol::Fiware => {
                return Err(anyhow!("{} has no per-vehicle frames", self.spec.protocol));
            }
        }
        if let Some(slot) = self.last.get_mut(slot) {
            *slot = Some(LastVehicle {
                front_ms: e.front_ms,
                encoded_ms,
                hour: front.hour(),
            });
        }
        Ok(())
    }

    /// Fills the queue; `false` once everything has been generated.
    fn step(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let per_vehicle = self.spec.per_vehicle();
        match self.sim.next() {
            Some(e) => {
                self.vehicles += 1;
                if per_vehicle {
                    self.vehicle_frame(&e)?;
                } else {
                    while e.front_ms >= self.bin_ms + self.interval_ms {
                        self.close_bin()?;
                    }
                    self.add_to_bin(&e);
                }
            }
            None => {
                if !per_vehicle {
                    while self.bin_ms < self.end_ms {
                        self.close_bin()?;
                    }
                }
                self.done = true;
            }
        }
        Ok(true)
    }
}

impl Iterator for FrameSource {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        loop {
            if let Some(f) = self.queue.pop_front() {
                return Some(Ok(f));
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn encode<C: FrameCodec>(codec: &C, frame: &C::Frame) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    codec
        .encode(frame, &mut out)
        .with_context(|| format!("encoding a {} frame", C::NAME))?;
    Ok(out)
}

/// One FT1.2 user data frame with a TLS FG 1 telegram: the interval header (DE type 48 on
/// channel 255) and one LVE result version 3 with 16-bit counts per lane (channel = lane).
fn tls_frame(start: DateTime<Utc>, stats: &[LaneStats]) -> Result<Ft12Frame> {
    let mut blocks = vec![
        Fg1Block::Interval(IntervalHeader {
            hour: u8::try_from(start.hour())?,
            summer_time: false,
            minute: u8::try_from(start.minute())?,
            second: u8::try_from(start.second())?,
            kind: 0,
            length: 0,
        })
        .to_block(255)?,
    ];
    for s in stats {
        let [moto, short, medium, long] = s.classes;
        let q_lkw = medium + long;
        let mean = |speeds: Option<f32>| speeds.map_or(0xFF, |v| v.round().clamp(0.0, 254.0) as u8);
        let result = LveResult {
            wide_counts: true,
            // u16::MAX is "not said"; no simulated lane gets near it in one interval.
            q_kfz: u16::try_from(s.volume)?.min(u16::MAX - 1),
            q_lkw: u16::try_from(q_lkw)?.min(u16::MAX - 1),
            // Per-class speeds are not tallied separately: both get the lane's mean.
            v_pkw: if moto + short > 0 {
                mean(s.speed_avg_kmh)
            } else {
                0xFF
            },
            v_lkw: if q_lkw > 0 {
                mean(s.speed_avg_kmh)
            } else {
                0xFF
            },
            extra: LveExtra::V3 {
                net_gap_ds: 0xFF,
                occupancy_pct: (s.occupancy * 100.0).round().min(100.0) as u8,
                s_kfz: 0xFF,
                v_kfz: mean(s.speed_avg_kmh),
            },
        };
        blocks.push(Fg1Block::Result(result).to_block(u8::try_from(s.lane)?)?);
    }
    let user_data = TlsUserData {
        osi3: Osi3Header::default(),
        osi7: Osi7Container {
            node: u32::from(DEVICE_ID),
            telegrams: vec![Telegram {
                fg: tls::fg1::FG,
                id: 0,
                job: 0,
                blocks: blocks.into_iter().collect::<Vec<DeBlock>>(),
            }],
        },
    };
    let mut data = Vec::new();
    tls::encode_user_data(&user_data, &mut data)?;
    Ok(Ft12Frame::Variable {
        control: Control::secondary(function::USER_DATA, false, false),
        address: DEVICE_ID,
        data,
    })
}
