//! `detector-sim` against the codecs' own decoders: what the decoders read from the output
//! must be exactly the truth the simulator printed, with and without injected faults.
// Test helpers may unwrap like the tests themselves (clippy.toml allows it in #[test] fns).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};
use clap::Parser as _;
use codecs::ft12::Ft12;
use codecs::model::{Observation, Observations, VehicleClass};
use codecs::pems::Pems;
use codecs::rtms::Rtms;
use codecs::ss105::Ss105;
use codecs::ss125::Ss125;
use codecs::tls::Fg1Block;
use codecs::vlog::{Vlog, VlogTimeline};
use codecs::{Decoded, FrameCodec, StreamDecoder, mqtt};
use ingest_daemon::detector_sim::{
    Args, MqttSink, Pace, Protocol, Report, SimSpec, StreamSink, Truth, TruthRow, run,
};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn spec(protocol: Protocol) -> SimSpec {
    let mut s = SimSpec::new(protocol, at("2024-03-04T08:00:00Z"), 600);
    s.lanes = 3;
    s.vehicles_per_hour = 1500.0;
    s.seed = 42;
    s
}

/// Every protocol variant: SS125 twice (interval data and active events).
fn all_specs() -> Vec<SimSpec> {
    let mut v: Vec<SimSpec> = Protocol::ALL.iter().map(|p| spec(*p)).collect();
    let mut events = spec(Protocol::Ss125);
    events.ss125_events = true;
    v.push(events);
    v
}

/// Runs `spec` at full speed into files in `dir`; returns the report and each output file
/// (one per lane for `.vlog`).
fn run_to_files(spec: &SimSpec, dir: &Path) -> (Report, Vec<Vec<u8>>) {
    let out = dir.join("out{lane}");
    let mut sink = StreamSink::open(spec.protocol, out.to_str().unwrap(), spec.lanes).unwrap();
    let report = run(spec, Pace::Max, &mut sink).unwrap();
    drop(sink);
    let files = if spec.protocol == Protocol::Vlog && spec.lanes > 1 {
        (1..=spec.lanes)
            .map(|l| std::fs::read(dir.join(format!("out{l}"))).unwrap())
            .collect()
    } else {
        vec![std::fs::read(dir.join("out1")).unwrap()]
    };
    (report, files)
}

/// What a receiver read: per (road lane, bin) rows, and the errors it had to skip.
#[derive(Debug, Default)]
struct Received {
    rows: BTreeMap<(u16, i64), TruthRow>,
    frames: u64,
    errors: u64,
}

impl Received {
    fn add(&mut self, lane: u16, bin_ms: i64, volume: u32, classes: Option<[u32; 4]>) {
        let row = self.rows.entry((lane, bin_ms)).or_default();
        row.volume += volume;
        if let Some(c) = classes {
            let have = row.classes.get_or_insert([0; 4]);
            for (h, a) in have.iter_mut().zip(c) {
                *h += a;
            }
        }
    }

    fn vehicle(&mut self, lane: u16, time: DateTime<Utc>, class: Option<VehicleClass>, iv: i64) {
        let ms = time.timestamp_millis();
        let classes = class.map(|c| {
            let mut counts = [0; 4];
            counts[c.index()] = 1;
            counts
        });
        self.add(lane, ms - ms.rem_euclid(iv), 1, classes);
    }

    /// Road lane of an observation (SS125 counts from 0).
    fn observations(&mut self, protocol: Protocol, obs: &[Observation], iv: i64) {
        let road = |lane: u16| {
            if protocol == Protocol::Ss125 {
                lane + 1
            } else {
                lane
            }
        };
        for o in obs {
            match o {
                Observation::Interval(r) => {
                    let start = r.start.expect("interval reports carry their start here");
                    assert_eq!(r.interval_s, Some((iv / 1000) as u32));
                    self.add(
                        road(r.lane),
                        start.timestamp_millis(),
                        r.volume.unwrap(),
                        r.class_counts,
                    );
                }
                Observation::Vehicle(e) => {
                    let class = e
                        .class
                        .or_else(|| e.length_m.map(VehicleClass::from_length_m));
                    self.vehicle(road(e.lane), e.time.unwrap(), class, iv);
                }
            }
        }
    }
}

/// Decodes a whole output with a `StreamDecoder`; calls `each` per frame.
fn decode_stream<C: FrameCodec>(
    codec: C,
    bytes: &[u8],
    rx: &mut Received,
    mut each: impl FnMut(C::Frame, &mut Received),
) {
    let mut d = StreamDecoder::new(codec);
    d.push(bytes);
    while let Some(item) = d.next() {
        if let Decoded::Frame(f) = item {
            rx.frames += 1;
            each(f, rx);
        }
    }
    assert!(d.flush_partial().is_none(), "a partial frame at the end");
    rx.errors += d.stats().errors;
}

fn receive(spec: &SimSpec, files: &[Vec<u8>]) -> Received {
    let iv = i64::from(spec.interval_s) * 1000;
    let p = spec.protocol;
    let mut rx = Received::default();
    let mut obs = Vec::new();
    let mut observe = |f: &dyn Observations, rx: &mut Received| {
        obs.clear();
        f.observations(&mut obs);
        rx.observations(p, &obs, iv);
    };
    let bytes = &files[0];
    match p {
        Protocol::Ss125 => decode_stream(
            Ss125::metric().with_interval_s(spec.interval_s),
            bytes,
            &mut rx,
            |f, rx| observe(&f, rx),
        ),
        Protocol::Ss105 => decode_stream(
            Ss105::default().with_interval_s(spec.interval_s),
            bytes,
            &mut rx,
            |f, rx| observe(&f, rx),
        ),
        Protocol::RtmsG4 => decode_stream(Rtms, bytes, &mut rx, |f, rx| observe(&f, rx)),
        Protocol::Pems => decode_stream(Pems::new(), bytes, &mut rx, |f, rx| observe(&f, rx)),
        Protocol::Ft12Tls => {
            let day = spec.start.date_naive();
            decode_stream(Ft12::new(), bytes, &mut rx, |f, rx| {
                let tls = f.tls().unwrap().unwrap();
                let mut bin = None;
                for (channel, block) in tls.osi7.fg1_blocks() {
                    match block.unwrap() {
                        Fg1Block::Interval(h) => {
                            let t = NaiveTime::from_hms_opt(
                                h.hour.into(),
                                h.minute.into(),
                                h.second.into(),
                            )
                            .unwrap();
                            bin = Some(day.and_time(t).and_utc().timestamp_millis());
                        }
                        Fg1Block::Result(r) => {
                            let report = r.interval_report(channel.into());
                            rx.add(report.lane, bin.unwrap(), report.volume.unwrap(), None);
                        }
                    }
                }
            })
        }
        Protocol::Vlog => {
            for (i, bytes) in files.iter().enumerate() {
                let lane = u16::try_from(i + 1).unwrap();
                let mut timeline = VlogTimeline::new();
                let codec = Vlog::new(spec.start.date_naive(), lane);
                decode_stream(codec, bytes, &mut rx, |f, rx| {
                    let e = timeline.resolve(&f).unwrap();
                    rx.vehicle(e.lane, e.time.unwrap(), None, iv);
                });
            }
        }
        Protocol::VehicleJson | Protocol::Fiware => {
            let text = std::str::from_utf8(bytes).unwrap();
            assert!(text.ends_with('\n'));
            for line in text.lines() {
                let decoded = if p == Protocol::Fiware {
                    mqtt::decode_fiware(line.as_bytes()).map(|es| {
                        obs.clear();
                        for e in es {
                            e.observations(&mut obs);
                        }
                    })
                } else {
                    mqtt::decode_vehicle_events(line.as_bytes()).map(|es| {
                        obs.clear();
                        for e in es {
                            e.observations(&mut obs);
                        }
                    })
                };
                match decoded {
                    Ok(()) => {
                        rx.frames += 1;
                        rx.observations(p, &obs, iv);
                    }
                    Err(_) => rx.errors += 1,
                }
            }
        }
    }
    rx
}

/// The receiver's rows equal the truth; per-vehicle protocols have no frame for a (lane,
/// bin) without vehicles, where the truth has a zero row.
fn assert_received_truth(spec: &SimSpec, truth: &Truth, rx: &Received) {
    let expected: BTreeMap<(u16, i64), TruthRow> = if spec.per_vehicle() {
        truth
            .rows
            .iter()
            .filter(|(_, r)| r.volume > 0)
            .map(|(k, r)| (*k, *r))
            .collect()
    } else {
        truth.rows.clone()
    };
    assert_eq!(
        rx.rows, expected,
        "{} (events: {}): decoded ≠ truth",
        spec.protocol, spec.ss125_events
    );
    assert_eq!(
        spec.carries_classes(),
        truth.rows.values().all(|r| r.classes.is_some())
    );
}

fn bins(spec: &SimSpec) -> usize {
    usize::try_from(spec.duration_s / spec.interval_s).unwrap()
}

#[test]
fn every_protocol_decodes_to_the_truth() {
    for spec in all_specs() {
        let dir = tempfile::tempdir().unwrap();
        let (report, files) = run_to_files(&spec, dir.path());
        let s = &report.summary;
        assert!(
            s.vehicles > 400,
            "{}: {} vehicles",
            spec.protocol,
            s.vehicles
        );
        assert_eq!(s.truth_vehicles, s.vehicles, "{}", spec.protocol);
        assert_eq!(
            (s.garbage_runs, s.bad_checksum_frames, s.expected_resyncs),
            (0, 0, 0)
        );
        assert_eq!(
            report.truth.rows.len(),
            bins(&spec) * 3,
            "{}",
            spec.protocol
        );
        let rx = receive(&spec, &files);
        assert_eq!(rx.errors, 0, "{}", spec.protocol);
        assert_eq!(rx.frames, s.frames, "{}", spec.protocol);
        assert_received_truth(&spec, &report.truth, &rx);
    }
}

#[test]
fn injected_faults_cost_one_resync_each_and_the_truth_still_holds() {
    for mut spec in all_specs() {
        spec.garbage_every = 7;
        if spec.protocol.has_checksum() {
            spec.bad_checksum_every = 5;
        }
        let dir = tempfile::tempdir().unwrap();
        let (report, files) = run_to_files(&spec, dir.path());
        let s = &report.summary;
        let name = format!("{} (events: {})", spec.protocol, spec.ss125_events);
        assert_eq!(s.garbage_runs, s.frames / 7, "{name}");
        assert!(s.garbage_runs > 0, "{name}");
        if spec.protocol.has_checksum() {
            // Every 5th frame, or the next one where a decoder could mistake the corruption.
            assert!(s.bad_checksum_frames >= s.frames / 5 - 3, "{name}: {s:?}");
            assert!(s.bad_checksum_frames <= s.frames / 5, "{name}: {s:?}");
        } else {
            assert_eq!(s.bad_checksum_frames, 0);
        }
        assert!(s.expected_resyncs <= s.garbage_runs + s.bad_checksum_frames);
        assert!(s.expected_resyncs >= s.garbage_runs.max(s.bad_checksum_frames));
        assert_eq!(
            s.truth_vehicles + s.vehicles_in_bad_frames,
            s.vehicles,
            "{name}"
        );
        let rx = receive(&spec, &files);
        assert_eq!(rx.errors, s.expected_resyncs, "{name}: {s:?}");
        assert_eq!(rx.frames, s.frames - s.bad_checksum_frames, "{name}");
        assert_received_truth(&spec, &report.truth, &rx);
    }
}

#[test]
fn bad_checksums_alone_are_one_resync_each() {
    for protocol in [
        Protocol::Ss125,
        Protocol::Ss105,
        Protocol::RtmsG4,
        Protocol::Ft12Tls,
    ] {
        let mut spec = spec(protocol);
        spec.duration_s = 1800;
        spec.bad_checksum_every = 3;
        let dir = tempfile::tempdir().unwrap();
        let (report, files) = run_to_files(&spec, dir.path());
        let s = &report.summary;
        assert!(s.bad_checksum_frames >= 5, "{protocol}: {s:?}");
        assert!(s.vehicles_in_bad_frames > 0, "{protocol}");
        assert_eq!(s.expected_resyncs, s.bad_checksum_frames, "{protocol}");
        let rx = receive(&spec, &files);
        assert_eq!(rx.errors, s.bad_checksum_frames, "{protocol}");
        assert_received_truth(&spec, &report.truth, &rx);
        assert!(s.to_string().contains("left out of the truth"));
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let mut a = spec(Protocol::RtmsG4);
    a.garbage_every = 4;
    a.bad_checksum_every = 9;
    let dir = tempfile::tempdir().unwrap();
    let (ra, fa) = run_to_files(&a, dir.path());
    let (rb, fb) = run_to_files(&a, dir.path());
    assert_eq!((ra, fa.clone()), (rb, fb));
    a.seed += 1;
    let (_, fc) = run_to_files(&a, dir.path());
    assert_ne!(fa, fc);
}

#[test]
fn truth_csv_round_trips_and_leaves_unencoded_classes_empty() {
    let dir = tempfile::tempdir().unwrap();
    for protocol in [Protocol::Ss125, Protocol::Pems] {
        let (report, _) = run_to_files(&spec(protocol), dir.path());
        let mut csv = Vec::new();
        report.truth.write_csv(&mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert!(text.starts_with("lane,bucket_start,volume,motorcycle,short,medium,long\n"));
        let row = text.lines().nth(1).unwrap();
        assert!(row.starts_with("1,2024-03-04T08:00:00Z,"), "{row}");
        assert_eq!(row.ends_with(",,,"), protocol == Protocol::Pems, "{row}");
        assert_eq!(Truth::from_csv(&text).unwrap(), report.truth);
    }
}

#[test]
fn specs_the_wire_cannot_carry_are_refused() {
    let bad = |f: &dyn Fn(&mut SimSpec), protocol| {
        let mut s = spec(protocol);
        f(&mut s);
        s.validate().unwrap_err().to_string()
    };
    assert!(bad(&|s| s.interval_s = 60, Protocol::Pems).contains("30 s"));
    assert!(bad(&|s| s.bad_checksum_every = 2, Protocol::Vlog).contains("checksum"));
    assert!(bad(&|s| s.lanes = 16, Protocol::Ss105).contains("lanes"));
    assert!(bad(&|s| s.duration_s = 86_400, Protocol::Vlog).contains("one day"));
    assert!(bad(&|s| s.interval_s = 7, Protocol::Ss125).contains("divide a day"));
    assert!(bad(&|s| s.ss125_events = true, Protocol::RtmsG4).contains("ss125"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.vlog");
    let err = StreamSink::open(Protocol::Vlog, out.to_str().unwrap(), 2).unwrap_err();
    assert!(err.to_string().contains("{lane}"));
}

#[test]
fn pace_parses_and_paces() {
    assert_eq!("realtime".parse::<Pace>(), Ok(Pace::Realtime));
    assert_eq!("max".parse::<Pace>(), Ok(Pace::Max));
    assert_eq!("10x".parse::<Pace>(), Ok(Pace::Times(10.0)));
    assert_eq!("2.5×".parse::<Pace>(), Ok(Pace::Times(2.5)));
    assert!("0x".parse::<Pace>().is_err());
    assert!("fast".parse::<Pace>().is_err());

    // 60 simulated seconds at 300× take at least 0.2 s (the last bin ends at 60 s).
    let mut s = spec(Protocol::Pems);
    s.duration_s = 60;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pems.csv");
    let mut sink = StreamSink::open(s.protocol, out.to_str().unwrap(), s.lanes).unwrap();
    let t0 = Instant::now();
    run(&s, Pace::Times(300.0), &mut sink).unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn the_binary_writes_the_same_frames_and_truth_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frames.bin");
    let truth = dir.path().join("truth.csv");
    let args = [
        "--protocol",
        "ss125",
        "--seed",
        "42",
        "--lanes",
        "3",
        "--vehicles-per-hour",
        "1500",
        "--start",
        "2024-03-04T08:00:00Z",
        "--duration",
        "600",
        "--pace",
        "max",
        "--garbage-every",
        "7",
        "--bad-checksum-every",
        "5",
    ];
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_detector-sim"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--truth")
        .arg(&truth)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    assert!(
        stderr.contains("detector-sim summary: protocol=ss125"),
        "{stderr}"
    );
    assert!(stderr.contains("bad_checksum_frames="), "{stderr}");

    let parsed = Args::try_parse_from(
        std::iter::once("detector-sim")
            .chain(args)
            .chain(["--out", "unused"]),
    )
    .unwrap();
    let mut spec = parsed.spec().unwrap();
    assert_eq!(spec.garbage_every, 7);
    let lib_dir = tempfile::tempdir().unwrap();
    let (report, files) = run_to_files(&spec, lib_dir.path());
    assert_eq!(std::fs::read(&out).unwrap(), files[0]);
    let printed = Truth::from_csv(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    assert_eq!(printed, report.truth);
    assert!(stderr.contains(&report.summary.to_string()), "{stderr}");

    // And a decoder agrees with the printed truth.
    spec.protocol = Protocol::Ss125;
    let rx = receive(&spec, &[std::fs::read(&out).unwrap()]);
    assert_eq!(rx.errors, report.summary.expected_resyncs);
    assert_received_truth(&spec, &printed, &rx);
}

#[test]
fn the_binary_refuses_mixing_frames_and_truth_on_stdout() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_detector-sim"))
        .args(["--protocol", "pems", "--start", "2024-03-04T08:00:00Z"])
        .args([
            "--duration",
            "60",
            "--out",
            "-",
            "--truth",
            "-",
            "--pace",
            "max",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdout"));
}

#[test]
fn frames_cross_a_pty_intact() {
    let pair = test_support::PtyPair::new();
    let mut reader = pair.open_b();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut s = spec(Protocol::Ss125);
    s.ss125_events = true;
    s.duration_s = 120;
    s.lanes = 2;
    let mut sink = StreamSink::open(s.protocol, pair.a().to_str().unwrap(), s.lanes).unwrap();
    // Fast but paced, so the frames go out one by one as from a device.
    let report = run(&s, Pace::Times(2000.0), &mut sink).unwrap();
    drop(sink);
    assert!(report.summary.frames > 20);

    let mut decoder = StreamDecoder::new(Ss125::metric());
    let mut got = Received::default();
    let mut obs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.frames < report.summary.frames {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{} of {} frames", got.frames, report.summary.frames));
        decoder.push(&chunk);
        while let Some(item) = decoder.next() {
            match item {
                Decoded::Frame(f) => {
                    got.frames += 1;
                    obs.clear();
                    f.observations(&mut obs);
                    got.observations(Protocol::Ss125, &obs, 30_000);
                }
                Decoded::Skipped { .. } => panic!("skipped bytes on a clean pty"),
            }
        }
    }
    assert_received_truth(&s, &report.truth, &got);
    drop(pair);
    let _ = reading.join();
}

#[test]
fn mqtt_qos1_messages_are_all_acknowledged_and_arrive() {
    let broker = test_support::Mosquitto::new();
    let topic = "sites/sim/events";
    let sub = broker.subscribe(topic, 1);
    let mut s = spec(Protocol::VehicleJson);
    s.duration_s = 120;
    let mut sink = MqttSink::connect(&broker.url(), topic, 1, "detector-sim-test").unwrap();
    let report = run(&s, Pace::Max, &mut sink).unwrap();
    drop(sink);
    let n = report.summary.frames;
    assert!(n > 50, "{n}");
    assert_eq!(report.summary.delivery.sent, n);
    assert_eq!(report.summary.delivery.acknowledged, Some(n));
    assert!(
        report
            .summary
            .to_string()
            .contains(&format!("mqtt_acknowledged={n}"))
    );

    let mut lines = Vec::new();
    for i in 0..n {
        let msg = sub
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("message {i} of {n} did not arrive"));
        assert_eq!(msg.topic, topic);
        lines.extend(msg.payload);
        lines.push(b'\n');
    }
    assert!(sub.recv_timeout(Duration::from_millis(200)).is_none());
    let rx = receive(&s, &[lines]);
    assert_eq!(rx.errors, 0);
    assert_received_truth(&s, &report.truth, &rx);
}

#[test]
fn mqtt_connection_failures_are_reported() {
    let port = test_support::free_port();
    let err = MqttSink::connect(&format!("mqtt://127.0.0.1:{port}"), "t", 1, "x").unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err:#}");
    assert!(MqttSink::connect("http://x", "t", 1, "x").is_err());
    assert!(MqttSink::connect("mqtt://127.0.0.1:1", "a/#", 1, "x").is_err());
}

#[test]
fn mqtt_qos0_with_garbage_payloads() {
    let broker = test_support::Mosquitto::new();
    let topic = "sites/sim/fiware";
    let sub = broker.subscribe(topic, 0);
    let mut s = spec(Protocol::Fiware);
    s.duration_s = 300;
    s.garbage_every = 4;
    let mut sink = MqttSink::connect(&broker.url(), topic, 0, "detector-sim-qos0").unwrap();
    let report = run(&s, Pace::Max, &mut sink).unwrap();
    drop(sink);
    let sum = &report.summary;
    let n = sum.frames + sum.garbage_runs;
    assert_eq!(sum.delivery.sent, n);
    assert_eq!(
        sum.delivery.acknowledged, None,
        "QoS 0 has no acknowledgements"
    );
    let mut lines = Vec::new();
    for i in 0..n {
        let msg = sub
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("message {i} of {n} did not arrive"));
        lines.extend(msg.payload);
        lines.push(b'\n');
    }
    let rx = receive(&s, &[lines]);
    assert_eq!(rx.errors, sum.garbage_runs);
    assert_received_truth(&s, &report.truth, &rx);
}
