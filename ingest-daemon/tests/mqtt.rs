//! The `[[mqtt]]` source end to end: a real Mosquitto (test-support), the daemon binary
//! with a temporary configuration, and the spool read back after the daemon has exited.
//!
//! - QoS 1 messages published while the daemon is stopped arrive when it starts again
//!   (persistent session under the fixed client id) and show in the samples' volumes;
//! - vehicle events with a device time land in the bins of that time, volume per lane
//!   equal to what was published;
//! - `kill -9` while messages stream in: nothing is lost (every published message is in
//!   the raw records after a restart) and every message counts once in the samples;
//! - `kill -9` before the bins close: the next start rebuilds them from the raw records;
//! - ONVIF event notifications (`onvif_counter`): line crossings and running counters of the
//!   rules the lane map names become the volumes of their lanes; a counter's baseline
//!   survives a `kill -9` through the replay.

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
        // Subscribed, not only connected: a message published before the SUBACK is
        // not delivered (and slow or emulated CPUs widen that gap to seconds).
        let before = self.log_text().matches("MQTT subscribed").count();
        let child = self.spawn(&[]);
        self.wait_log("MQTT subscribed", before + 1);
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

    /// Runs the daemon while `n` untagged events (lanes 1, 2, 1, …) are published; returns
    /// the volume per lane it spooled.
    fn receive_untagged(&self, broker: &Mosquitto, n: u32) -> BTreeMap<u16, u64> {
        let child = self.start();
        for i in 0..n {
            broker.publish(TOPIC, event(1 + (i % 2) as u16, i, None), 1);
        }
        self.wait_raw_settled();
        self.stop(child);
        self.lane_totals()
    }

    /// Road lane → volume of every spooled sample, all of `detector`.
    fn lane_totals_of(&self, detector: &str) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for s in self.samples() {
            assert_eq!(s.detector_id, detector, "{s:?}");
            if let Some(v) = s.volume {
                *out.entry(s.lane).or_default() += u64::from(v);
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

/// Publishes `n` QoS 1 events stamped with the current time on lanes 1 and 2; returns the
/// volume expected per (30 s bin, lane).
fn publish_timed_events(broker: &Mosquitto, n: u32) -> BTreeMap<(DateTime<Utc>, u16), u64> {
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let lane = 1 + (i % 2) as u16;
        let ts = wall_now();
        let bin = DateTime::from_timestamp(ts.timestamp() - ts.timestamp().rem_euclid(30), 0);
        *expected.entry((bin.unwrap(), lane)).or_default() += 1;
        broker.publish(TOPIC, event(lane, i, Some(ts)), 1);
    }
    expected
}

#[test]
fn messages_published_while_stopped_arrive_after_restart() {
    let broker = Mosquitto::new();
    let b = Edge::new(&broker);
    // The first run creates the persistent session (subscription under the client id).
    let child = b.start();
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
    let expected = publish_timed_events(&broker, 20);
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
    // Every message counts once: the bins open at the kill are rebuilt from the raw records,
    // and a redelivered copy of a message spooled before the kill is not counted again.
    let counted: u64 = b.lane_totals().values().sum();
    assert_eq!(counted, u64::from(total), "{}", b.log_text());
    assert_no_duplicate_samples(&b.samples());
}

/// No two samples share (detector, lane, interval, bin).
fn assert_no_duplicate_samples(samples: &[TrafficSample]) {
    let mut keys = BTreeSet::new();
    for s in samples {
        let key = (s.detector_id.clone(), s.lane, s.interval_s, s.bucket_start);
        assert!(keys.insert(key.clone()), "duplicate sample {key:?}");
    }
}

/// The bins still open at a `kill -9` are rebuilt at the next start from the raw records:
/// every acknowledged event is in a sample, once.
#[test]
fn kill_9_before_the_bins_close_loses_no_event_from_the_samples() {
    let broker = Mosquitto::new();
    let b = Edge::new(&broker);
    let mut child = b.start();
    let first_ts = wall_now();
    let expected = publish_timed_events(&broker, 30);
    b.wait_raw_settled();
    child.kill().unwrap();
    child.wait().unwrap();
    // The bins of those events close 10 s (allowed lateness) after their end at the
    // earliest: the kill came before, so no sample holds them yet.
    assert!(
        (wall_now() - first_ts).num_seconds() < 10,
        "too slow to kill before the bins closed"
    );
    let before: u64 = b.volumes().values().sum();
    assert_eq!(before, 0, "samples spooled before the kill");

    let child = b.start();
    b.wait_log("replayed the spooled messages", 1);
    b.stop(child);
    let got: BTreeMap<_, _> = b.volumes().into_iter().filter(|(_, v)| *v > 0).collect();
    assert_eq!(got, expected, "{}", b.log_text());
    assert_no_duplicate_samples(&b.samples());
    // A third run replays the same raw records again, but every bin they fall in is
    // spooled now: nothing is counted twice.
    let child = b.start();
    thread::sleep(Duration::from_millis(500));
    b.stop(child);
    let again: BTreeMap<_, _> = b.volumes().into_iter().filter(|(_, v)| *v > 0).collect();
    assert_eq!(again, expected);
    assert_no_duplicate_samples(&b.samples());
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
    let c = test_support::TestCerts::new(dir, name);
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
    assert_eq!(
        b.receive_untagged(&broker, 10),
        BTreeMap::from([(1, 5), (2, 5)])
    );

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

/// A broker that requires client certificates: the daemon presents the configured one and
/// receives; without one the broker refuses the handshake and nothing is spooled.
#[test]
fn a_broker_requiring_client_certificates_gets_the_configured_one() {
    let certs = tempfile::tempdir().unwrap();
    let tls = test_support::TestCerts::new(certs.path(), "mtls");
    let (client_cert, client_key) = tls.client();
    let (ca, cert, key) = (tls.ca.clone(), tls.cert.clone(), tls.key.clone());
    let tls_port = test_support::free_port();
    let broker = Mosquitto::builder()
        .config_line(&format!("listener {tls_port} 127.0.0.1"))
        .config_line(&format!("certfile {}", cert.display()))
        .config_line(&format!("keyfile {}", key.display()))
        .config_line(&format!("cafile {}", ca.display()))
        .config_line("require_certificate true")
        .start();
    let url = format!("mqtts://localhost:{tls_port}");
    let ca_line = format!("ca_file = {:?}", ca.display().to_string());

    let b = Edge::with_broker_url(
        &url,
        &format!(
            "{ca_line}\nclient_cert_file = {:?}\nclient_key_file = {:?}",
            client_cert.display().to_string(),
            client_key.display().to_string()
        ),
        "",
        VEHICLE_TOPIC,
    );
    assert_eq!(
        b.receive_untagged(&broker, 6),
        BTreeMap::from([(1, 3), (2, 3)])
    );
    let key_text = std::fs::read_to_string(&client_key).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();
    assert!(!b.log_text().contains(key_line), "key material in the log");

    let without = Edge::with_broker_url(&url, &ca_line, "", VEHICLE_TOPIC);
    let mut child = without.spawn(&["--for", "3"]);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    let log = without.log_text();
    assert!(!log.contains("MQTT connected"), "{log}");
    assert!(without.raw_messages().is_empty());
}

// ------------------------------------------------------------------ onvif_counter

const ONVIF_TOPIC: &str = r#"
[[mqtt.topics]]
filter = "cameras/+/events"
format = "onvif_counter"
qos = 1
detector_id = "cam-7"
lanes = { "Lane1Crossing" = 1, "Lane2Crossing" = 2, "Lane3Count" = 3 }
"#;

const ONVIF_NS: &str = r#"xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tns1="http://www.onvif.org/ver10/topics""#;

/// One `wsnt:NotificationMessage` (namespaces declared by the root it goes in).
fn onvif_note(topic: &str, rule: &str, at: DateTime<Utc>, op: &str, data: &str) -> String {
    let op = if op.is_empty() {
        String::new()
    } else {
        format!(r#" PropertyOperation="{op}""#)
    };
    format!(
        r#"<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:RuleEngine/{topic}</wsnt:Topic><wsnt:Message><tt:Message UtcTime="{}"{op}><tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSourceConfig_1"/><tt:SimpleItem Name="VideoAnalyticsConfigurationToken" Value="VideoAnalyticsConfig_1"/><tt:SimpleItem Name="Rule" Value="{rule}"/></tt:Source><tt:Data>{data}</tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>"#,
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

fn crossing(rule: &str, object: u32, at: DateTime<Utc>) -> String {
    let data = format!(r#"<tt:SimpleItem Name="ObjectId" Value="{object}"/>"#);
    onvif_note("LineDetector/Crossed", rule, at, "", &data)
}

fn count(rule: &str, n: u64, op: &str, at: DateTime<Utc>) -> String {
    let data = format!(r#"<tt:SimpleItem Name="Count" Value="{n}"/>"#);
    onvif_note("CountAggregation/Counter", rule, at, op, &data)
}

/// A notification published on its own: the namespaces go on the message.
fn bare(note: &str) -> String {
    let open = "<wsnt:NotificationMessage>";
    note.replacen(open, &format!("<wsnt:NotificationMessage {ONVIF_NS}>"), 1)
}

fn notify(notes: &[String]) -> String {
    format!("<wsnt:Notify {ONVIF_NS}>{}</wsnt:Notify>", notes.concat())
}

/// The daemon's summary at exit: the number after `key` on its "stopped" line.
fn stopped_figure(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(" stopped "))
        .unwrap_or_else(|| panic!("no summary line in:\n{log}"));
    let (_, tail) = line
        .split_once(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    tail.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Crossings (bare, in a `Notify`, in a metadata stream with object tracks) and running
/// counters of two cameras on one wildcard topic become exactly the volumes of their
/// rules' lanes; a corrupt payload is counted and skipped; rules the map does not name are
/// counted as unmapped, never in a sample.
#[test]
fn onvif_notifications_become_volumes_per_rule_lane() {
    let broker = Mosquitto::new();
    let b = Edge::with_config(&broker, "", ONVIF_TOPIC);
    let child = b.start();
    let cam7 = "cameras/cam-7/events";
    let cam8 = "cameras/cam-8/events";
    let mut published = 0;
    let mut publish = |topic: &str, payload: String| {
        broker.publish(topic, payload, 1);
        published += 1;
    };
    // Lane 1: five crossings on their own, one in a Notify.
    for i in 0..5 {
        publish(cam7, bare(&crossing("Lane1Crossing", 100 + i, wall_now())));
    }
    // A Notify: two crossings of lane 2, one of lane 1, one of a rule not in the map.
    publish(
        cam7,
        notify(&[
            crossing("Lane2Crossing", 200, wall_now()),
            crossing("Lane1Crossing", 105, wall_now()),
            crossing("WrongWayLine", 300, wall_now()),
            crossing("Lane2Crossing", 201, wall_now()),
        ]),
    );
    // A metadata stream: two vehicle crossings of lane 2 and one by a person, whom the
    // stream's own track classes as such (not counted).
    let at = wall_now();
    let frame = format!(
        r#"<tt:VideoAnalytics><tt:Frame UtcTime="{}"><tt:Object ObjectId="77"><tt:Appearance><tt:Class><tt:Type Likelihood="0.9">Human</tt:Type></tt:Class></tt:Appearance></tt:Object></tt:Frame></tt:VideoAnalytics>"#,
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    publish(
        cam7,
        format!(
            "<tt:MetadataStream {ONVIF_NS}>{frame}<tt:Event>{}{}{}</tt:Event></tt:MetadataStream>",
            crossing("Lane2Crossing", 202, at),
            crossing("Lane2Crossing", 77, at),
            crossing("Lane2Crossing", 203, at),
        ),
    );
    // Lane 3: camera 7's counter. Its first count is its history, not traffic; then +3, +0,
    // +4; a stale copy (older time) counts nothing and leaves the baseline, so the next
    // count adds +2; a reset counts nothing; then +2.
    let stale = wall_now() - chrono::TimeDelta::seconds(20);
    for (n, op, at) in [
        (400, "Initialized", wall_now()),
        (403, "Changed", wall_now()),
        (403, "Changed", wall_now()),
        (407, "Changed", wall_now()),
        (401, "Changed", stale),
        (409, "Changed", wall_now()),
        (1, "Changed", wall_now()),
        (3, "Changed", wall_now()),
    ] {
        publish(cam7, bare(&count("Lane3Count", n, op, at)));
    }
    // Camera 8 has a rule of the same name under the same filter: its own baseline, +3.
    publish(
        cam8,
        bare(&count("Lane3Count", 5, "Initialized", wall_now())),
    );
    publish(cam8, bare(&count("Lane3Count", 8, "Changed", wall_now())));
    // Another rule not in the map, and a payload cut short.
    publish(cam7, bare(&crossing("WrongWayLine", 301, wall_now())));
    let corrupt = notify(&[crossing("Lane1Crossing", 999, wall_now())]);
    publish(cam7, corrupt[..corrupt.len() / 2].to_owned());

    b.wait_raw_settled();
    b.stop(child);
    let log = b.log_text();
    assert_eq!(
        b.lane_totals_of("cam-7"),
        BTreeMap::from([(1, 6), (2, 4), (3, (3 + 4 + 2 + 2) + 3)]),
        "{log}"
    );
    // Every message is spooled as raw, the corrupt one too; it alone failed to decode.
    let raw = b.raw_messages();
    assert_eq!(raw.len(), published, "{raw:?}");
    assert!(log.contains("MQTT payload not decoded"), "{log}");
    assert_eq!(stopped_figure(&log, "decode_errors"), 1, "{log}");
    // 24 vehicles and the two events of the unmapped rule went to the aggregator, which
    // counts the latter as unmapped and keeps them out of the samples.
    assert_eq!(stopped_figure(&log, "events"), 24 + 2, "{log}");
}

/// A running counter keeps its baseline through a `kill -9`: the replay at the next start
/// feeds the spooled notifications through the same counting, so the first count after the
/// restart adds only its rise, and the vehicles of the bins still open at the kill are in
/// the samples once.
#[test]
fn an_onvif_counter_resumes_its_baseline_after_kill_9() {
    let broker = Mosquitto::new();
    let b = Edge::with_config(&broker, "", ONVIF_TOPIC);
    let topic = "cameras/cam-7/events";
    let mut child = b.start();
    let first = wall_now();
    broker.publish(
        topic,
        bare(&count("Lane3Count", 5120, "Initialized", wall_now())),
        1,
    );
    broker.publish(
        topic,
        bare(&count("Lane3Count", 5125, "Changed", wall_now())),
        1,
    );
    broker.publish(topic, bare(&crossing("Lane1Crossing", 1, wall_now())), 1);
    b.wait_raw_settled();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        (wall_now() - first).num_seconds() < 10,
        "too slow to kill before the bins closed"
    );
    assert_eq!(b.lane_totals_of("cam-7").values().sum::<u64>(), 0);

    let child = b.start();
    b.wait_log("replayed the spooled messages", 1);
    broker.publish(
        topic,
        bare(&count("Lane3Count", 5128, "Changed", wall_now())),
        1,
    );
    broker.publish(topic, bare(&crossing("Lane1Crossing", 2, wall_now())), 1);
    b.wait_raw_settled();
    b.stop(child);
    let totals: BTreeMap<u16, u64> = b
        .lane_totals_of("cam-7")
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .collect();
    assert_eq!(
        totals,
        BTreeMap::from([(1, 2), (3, 5 + 3)]),
        "{}",
        b.log_text()
    );
    assert_no_duplicate_samples(&b.samples());
}
