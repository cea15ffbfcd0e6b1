//! The `[[mqtt]]` source end to end: a real Mosquitto (test-support), the daemon binary
//! with a temporary configuration, and the spool read back after the daemon has exited.
//!
//! - QoS 1 messages published while the daemon is stopped arrive when it starts again
//!   (persistent session under the fixed client id) and show in the samples' volumes;
//! - vehicle events with a device time land in the bins of that time, volume per lane
//!   equal to what was published;
//! - `kill -9` while messages stream in: nothing is lost (every published message is in
//!   the raw records after a restart); duplicates may occur and are counted, not failed.

// Helpers outside #[test] fns panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use central_sync::TrafficSample;
use chrono::{DateTime, SecondsFormat, Utc};
use codecs::mqtt::{FiwareForm, TrafficFlowObserved, encode_fiware};
use ingest_daemon::clock::wall_now;
use ingest_daemon::sources::mqtt::RawMessage;
use ingest_daemon::spool::{RecordClass, Spool, SpoolConfig};

use common::wait_exit;
use test_support::Mosquitto;

const TOPIC: &str = "sensors/radar-1/vehicles";

struct Edge {
    dir: tempfile::TempDir,
}

impl Edge {
    fn new(broker: &Mosquitto) -> Self {
        Self::with_config(broker, "", VEHICLE_TOPIC)
    }

    /// An edge with one broker source: `aggregation` goes into `[aggregation]`, `topics`
    /// are the `[[mqtt.topics]]` tables.
    fn with_config(broker: &Mosquitto, aggregation: &str, topics: &str) -> Self {
        Self::with_broker_url(&broker.url(), "", aggregation, topics)
    }

    /// As [`Self::with_config`], for a broker at `url`; `broker_extra` goes into `[[mqtt]]`.
    fn with_broker_url(url: &str, broker_extra: &str, aggregation: &str, topics: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"
[node]
edge_id = "test-edge"

[spool]
fsync_interval_ms = 200

[aggregation]
{aggregation}

[[mqtt]]
id = "broker"
url = "{url}"
client_id = "test-edge-broker"
{broker_extra}
{topics}"#
        );
        std::fs::write(dir.path().join("edge.toml"), config).unwrap();
        Self { dir }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn start(&self) -> Child {
        let child = self.spawn(&[]);
        self.wait_log("MQTT connected", 1);
        child
    }

    /// Starts `run` (with `extra` arguments) without waiting for anything.
    fn spawn(&self, extra: &[&str]) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
            .current_dir(self.dir.path())
            .env_remove("INGEST__SPOOL__DIR")
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--config")
            .arg(self.dir.path().join("edge.toml"))
            .arg("--spool-dir")
            .arg(self.spool())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Waits until `needle` occurs `times` times in the daemon log.
    fn wait_log(&self, needle: &str, times: usize) {
        wait_for(Duration::from_secs(20), || {
            self.log_text().matches(needle).count() >= times
        })
        .unwrap_or_else(|()| panic!("no {needle:?} in the log:\n{}", self.log_text()));
    }

    /// Bytes of the raw segment files (read-only: the daemon may be running).
    fn raw_bytes(&self) -> u64 {
        std::fs::read_dir(self.spool().join("raw"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Waits until the raw records stop growing for a second.
    fn wait_raw_settled(&self) {
        let mut last = (self.raw_bytes(), Instant::now());
        wait_for(Duration::from_secs(30), || {
            let now = self.raw_bytes();
            if now != last.0 {
                last = (now, Instant::now());
            }
            now > 0 && last.1.elapsed() > Duration::from_secs(1)
        })
        .unwrap();
    }

    /// Stops a daemon with SIGTERM and checks it drained cleanly.
    fn stop(&self, mut child: Child) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = wait_exit(&mut child, Duration::from_secs(20));
        assert!(status.success(), "{status}\n{}", self.log_text());
    }

    fn open_spool(&self) -> Spool {
        Spool::open(self.spool(), SpoolConfig::with_max_total_bytes(64 << 20)).unwrap()
    }

    /// The raw MQTT messages in the spool, in order.
    fn raw_messages(&self) -> Vec<RawMessage> {
        self.open_spool()
            .iter(RecordClass::Raw, 0)
            .map(|r| RawMessage::decode(&r.unwrap().payload).unwrap())
            .collect()
    }

    /// Every spooled sample, in order.
    fn samples(&self) -> Vec<TrafficSample> {
        self.open_spool()
            .iter(RecordClass::Sample, 0)
            .map(|r| r.unwrap().sample().unwrap().unwrap())
            .collect()
    }

    /// (bin start, road lane) → volume of every spooled sample with a volume.
    fn volumes(&self) -> BTreeMap<(DateTime<Utc>, u16), u64> {
        let mut out = BTreeMap::new();
        for s in self.samples() {
            assert_eq!(s.detector_id, "radar-1");
            if let Some(v) = s.volume {
                *out.entry((s.bucket_start, s.lane)).or_default() += u64::from(v);
            }
        }
        out
    }

    fn lane_totals(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for ((_, lane), v) in self.volumes() {
            *out.entry(lane).or_default() += v;
        }
        out
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), ()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(())
}

/// One event; `tag` (as `headway_ms`) makes each message distinct.
fn event(lane: u16, tag: u32, ts: Option<DateTime<Utc>>) -> String {
    match ts {
        Some(ts) => format!(
            r#"{{"detector":"radar-1","lane":{lane},"ts":"{}","speed_kmh":90.0,"headway_ms":{tag}}}"#,
            ts.to_rfc3339_opts(SecondsFormat::Millis, true)
        ),
        None => format!(r#"{{"detector":"radar-1","lane":{lane},"headway_ms":{tag}}}"#),
    }
}

#[test]
fn messages_published_while_stopped_arrive_after_restart() {
    let broker = Mosquitto::new();
    let b = Edge::new(&broker);
    // The first run creates the persistent session (subscription under the client id).
    let child = b.start();
    thread::sleep(Duration::from_millis(500));
    b.stop(child);

    let mut published = BTreeMap::new();
    for i in 0..11u32 {
        let lane = if i % 3 == 0 { 2 } else { 1 };
        broker.publish(TOPIC, event(lane, i, None), 1);
        *published.entry(lane).or_insert(0u64) += 1;
    }
    // A payload that does not decode: counted, acknowledged, kept as raw, not redelivered.
    broker.publish(TOPIC, "{\"lane\":", 1);

    let child = b.start();
    b.wait_raw_settled();
    b.stop(child);
    assert!(
        b.log_text().contains("MQTT payload not decoded"),
        "{}",
        b.log_text()
    );

    let raw = b.raw_messages();
    assert_eq!(raw.len(), 12, "{raw:?}");
    assert!(
        raw.iter()
            .all(|m| m.topic == TOPIC && m.source_id == "broker")
    );
    assert_eq!(b.lane_totals(), published);

    // Everything was acknowledged: a third run receives nothing again.
    let child = b.start();
    thread::sleep(Duration::from_secs(1));
    b.stop(child);
    assert_eq!(b.raw_messages().len(), 12);
}

#[test]
fn vehicle_events_fill_the_bins_of_their_device_time() {
    let broker = Mosquitto::new();
    let b = Edge::new(&broker);
    let child = b.start();
    let mut expected: BTreeMap<(DateTime<Utc>, u16), u64> = BTreeMap::new();
    for i in 0..20u32 {
        let lane = 1 + (i % 2) as u16;
        let ts = wall_now();
        let bin = DateTime::from_timestamp(ts.timestamp() - ts.timestamp().rem_euclid(30), 0);
        *expected.entry((bin.unwrap(), lane)).or_default() += 1;
        broker.publish(TOPIC, event(lane, i, Some(ts)), 1);
    }
    b.wait_raw_settled();
    b.stop(child);
    let got: BTreeMap<_, _> = b.volumes().into_iter().filter(|(_, v)| *v > 0).collect();
    assert_eq!(got, expected);
}

#[test]
fn kill_9_loses_no_acknowledged_or_unacknowledged_message() {
    let broker = Mosquitto::new();
    let b = Edge::new(&broker);
    let child = b.start();
    let total = 150u32;
    let url_port = broker.port();
    let publisher = thread::spawn(move || {
        for i in 0..total {
            let lane = 1 + (i % 2);
            let out = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &url_port.to_string()])
                .args(["-t", TOPIC, "-q", "1", "-m", &event(lane as u16, i, None)])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    });
    // Kill as soon as some messages are in: others are in flight, not yet acknowledged.
    wait_for(Duration::from_secs(20), || b.raw_bytes() > 0).unwrap();
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();

    let child = b.start();
    publisher.join().unwrap();
    b.wait_raw_settled();
    b.stop(child);

    let raw = b.raw_messages();
    let distinct: BTreeSet<Vec<u8>> = raw.iter().map(|m| m.payload.clone()).collect();
    let published: BTreeSet<Vec<u8>> = (0..total)
        .map(|i| event(1 + (i % 2) as u16, i, None).into_bytes())
        .collect();
    assert_eq!(distinct, published, "lost messages");
    eprintln!(
        "{} raw records for {} messages: {} redelivered duplicates",
        raw.len(),
        total,
        raw.len() - distinct.len()
    );
    // The second run's samples count at least every message it received first-hand.
    let counted: u64 = b.lane_totals().values().sum();
    assert!(counted <= u64::from(total) + (raw.len() - distinct.len()) as u64);
}

/// FIWARE `TrafficFlowObserved` entities (keyValues and normalized, alone and in an array)
/// become the samples of their lanes and bins, with the figures they carry.
#[test]
fn fiware_entities_become_the_samples_of_their_bins() {
    let broker = Mosquitto::new();
    // Reports of the current bin and the next two: the series starts with the daemon, so
    // earlier bins would be late; the skew allowance covers device times up to 90 s ahead.
    let b = Edge::with_config(
        &broker,
        "allowed_lateness_s = 300\nmax_clock_skew_s = 600",
        r#"
[[mqtt.topics]]
filter = "sensors/+/flow"
format = "fiware"
qos = 1
detector_id = "loops-1"
lanes = { 11 = 1, 12 = 2 }
"#,
    );
    let child = b.start();
    let now = wall_now().timestamp();
    let current = now - now.rem_euclid(30);
    let mut expected = BTreeMap::new();
    for k in 1..=3i64 {
        let from = DateTime::from_timestamp(current + 30 * (k - 1), 0).unwrap();
        let entity = |lane: u16, volume: u32, occupancy: f32, speed: f32| {
            let mut e = TrafficFlowObserved::on_lane(lane);
            e.date_observed_from = Some(from);
            e.date_observed_to = Some(from + chrono::TimeDelta::seconds(30));
            e.intensity = Some(volume);
            e.occupancy = Some(occupancy);
            e.average_vehicle_speed = Some(speed);
            e
        };
        let volume = 3 + k as u32;
        let kv = encode_fiware(&entity(11, volume, 0.125, 80.0), FiwareForm::KeyValues).unwrap();
        let norm =
            encode_fiware(&entity(12, volume * 2, 0.25, 95.5), FiwareForm::Normalized).unwrap();
        expected.insert((from, 1u16), (volume, 0.125f32, 80.0f32));
        expected.insert((from, 2u16), (volume * 2, 0.25, 95.5));
        let topic = "sensors/loops-1/flow";
        if k == 3 {
            let batch = [b"[".as_slice(), &kv, b",", &norm, b"]"].concat();
            broker.publish(topic, batch, 1);
        } else {
            broker.publish(topic, kv, 1);
            broker.publish(topic, norm, 1);
        }
    }
    b.wait_raw_settled();
    b.stop(child);
    let mut got = BTreeMap::new();
    for s in b.samples() {
        assert_eq!(s.detector_id, "loops-1");
        if let Some(v) = s.volume.filter(|v| *v > 0) {
            got.insert(
                (s.bucket_start, s.lane),
                (v, s.occupancy.unwrap(), s.speed_avg_kmh.unwrap()),
            );
        }
    }
    assert_eq!(got, expected, "log:\n{}", b.log_text());
}

/// A throwaway CA (in `dir`) and a certificate for `localhost` / 127.0.0.1 signed by it:
/// (CA, certificate, key) paths.
fn make_certs(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let c = test_support::make_certs(dir, name);
    (c.ca, c.cert, c.key)
}

const VEHICLE_TOPIC: &str = r#"
[[mqtt.topics]]
filter = "sensors/+/vehicles"
format = "vehicle_json"
qos = 1
detector_id = "radar-1"
lanes = { 1 = 1, 2 = 2 }
"#;

/// `mqtts://`: the daemon verifies the broker against `ca_file` and receives over TLS; with
/// another CA it refuses the broker and receives nothing.
#[test]
fn a_tls_broker_is_trusted_only_through_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path(), "good");
    let (other_ca, _, _) = make_certs(certs.path(), "other");
    let tls_port = test_support::free_port();
    // A plain listener for the test's publisher, a TLS one for the daemon.
    let broker = Mosquitto::builder()
        .config_line(&format!("listener {tls_port} 127.0.0.1"))
        .config_line(&format!("certfile {}", cert.display()))
        .config_line(&format!("keyfile {}", key.display()))
        .start();
    let url = format!("mqtts://localhost:{tls_port}");

    let b = Edge::with_broker_url(
        &url,
        &format!("ca_file = {:?}", ca.display().to_string()),
        "",
        VEHICLE_TOPIC,
    );
    let child = b.start();
    for i in 0..10u32 {
        broker.publish(TOPIC, event(1 + (i % 2) as u16, i, None), 1);
    }
    b.wait_raw_settled();
    b.stop(child);
    assert_eq!(b.lane_totals(), BTreeMap::from([(1, 5), (2, 5)]));

    let wrong = Edge::with_broker_url(
        &url,
        &format!("ca_file = {:?}", other_ca.display().to_string()),
        "",
        VEHICLE_TOPIC,
    );
    let mut child = wrong.spawn(&["--for", "3"]);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    let log = wrong.log_text();
    assert!(!log.contains("MQTT connected"), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert!(wrong.raw_messages().is_empty());
}
