//! Serial sources end to end, with real components: `socat` joins two ptys, the
//! `ingest-daemon` binary reads one end as a `[[serial]]` port, the `detector-sim` binary
//! writes real frames (with line noise and corrupt frames) to the other, and the spooled
//! samples (`spool export --format json`) must equal the simulator's ground truth per
//! (lane, bin).
//!
//! Determinism: detector-sim replays a fixed past start `S` as fast as it can
//! (`--pace max`), and the daemon runs with `--sim-start S`, so its clock (which stamps the
//! serial arrivals) starts at `S` too. Device times then lie within the run's duration
//! (300 s) of the arrival times, so `aggregation.max_clock_skew_s = 3600` makes the
//! aggregator bin every observation by its device time. The daemon runs only a few seconds,
//! so its watermark never closes a bin: bins come out when a lane opens too many
//! (the oldest is force-closed, after all its frames have arrived: frames come in device
//! time order) or at the final flush. Nothing is ever late, so the volumes are exact.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest_daemon::detector_sim::Truth;
use serde_json::Value;

use common::run_ok;
use test_support::PtyPair;

const START: &str = "2024-03-04T08:00:00Z";
const DURATION_S: &str = "300";

struct Case<'a> {
    protocol: &'a str,
    /// The `[[serial]]` lines besides id, port and protocol.
    serial_extra: &'a str,
    sim_args: &'a [&'a str],
    /// How long the daemon runs (`--for`).
    run_for_s: u32,
    /// detector-sim's `--pace`.
    pace: &'a str,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Self {
            protocol: "",
            serial_extra: "",
            sim_args: &[],
            run_for_s: 6,
            pace: "max",
        }
    }
}

/// Runs the daemon on one pty end and detector-sim on the other; returns the exported
/// samples, the truth and the daemon's stderr.
fn run_case(case: &Case<'_>) -> (Vec<Value>, Truth, String) {
    let pty = PtyPair::new();
    // Hold the sim's end open, so that detector-sim closing it does not hang up the line.
    let _hold = File::options()
        .read(true)
        .write(true)
        .open(pty.b())
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nedge_id = \"test-edge\"\n\n[aggregation]\nmax_clock_skew_s = 3600\n\n\
             [[serial]]\nid = \"det\"\nport = {:?}\nprotocol = \"{}\"\n{}\n",
            pty.a().display().to_string(),
            case.protocol,
            case.serial_extra
        ),
    )
    .unwrap();
    let spool = tmp.path().join("spool");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
        .env_remove("RUST_LOG")
        .args([
            "run",
            "--for",
            &case.run_for_s.to_string(),
            "--sim-start",
            START,
            "--config",
        ])
        .arg(&config)
        .arg("--spool-dir")
        .arg(&spool)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bytes written before the daemon opens the port are lost: wait for its "port open"
    // line (seconds on an emulated CPU), keeping the rest of the log for the assertions.
    let stderr = daemon.stderr.take().unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let log_reader = thread::spawn(move || {
        let mut opened = Some(opened_tx);
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("port open")
                && let Some(tx) = opened.take()
            {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    if opened_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = daemon.kill();
        let _ = daemon.wait();
        panic!(
            "the daemon never opened the port:\n{}",
            log_reader.join().unwrap()
        );
    }
    let truth_path = tmp.path().join("truth.csv");
    let sim = run_ok(
        Command::new(env!("CARGO_BIN_EXE_detector-sim"))
            .args([
                "--protocol",
                case.protocol,
                "--start",
                START,
                "--duration",
                DURATION_S,
                "--pace",
                case.pace,
                "--seed",
                "7",
                "--vehicles-per-hour",
                "1200",
                "--out",
            ])
            .arg(pty.b())
            .arg("--truth")
            .arg(&truth_path)
            .args(case.sim_args),
    );
    let out = daemon.wait_with_output().unwrap();
    // The daemon's log, then the simulator's summary.
    let stderr = log_reader.join().unwrap() + &String::from_utf8_lossy(&sim.stderr);
    assert!(out.status.success(), "daemon failed:\n{stderr}");
    let export = run_ok(
        Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
            .args(["spool", "export", "--format", "json", "--spool-dir"])
            .arg(&spool),
    );
    let rows = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let truth = Truth::from_csv(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    (rows, truth, stderr)
}

/// Every truth row has a sample with the same volume (a missing volume counts as 0 only
/// where the truth says 0), and there is no spooled volume outside the truth.
fn assert_matches(rows: &[Value], truth: &Truth, stderr: &str) {
    assert!(truth.total_volume() > 50, "too little traffic: {truth:?}");
    let start: DateTime<Utc> = START.parse().unwrap();
    let end = start + chrono::TimeDelta::seconds(DURATION_S.parse().unwrap());
    for (&(lane, bin_ms), row) in &truth.rows {
        let bin = DateTime::from_timestamp_millis(bin_ms).unwrap();
        if bin < start || bin + chrono::TimeDelta::seconds(30) > end {
            continue;
        }
        let found: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                r["lane"].as_u64() == Some(u64::from(lane))
                    && r["bucket_start"]
                        .as_str()
                        .unwrap()
                        .parse::<DateTime<Utc>>()
                        .unwrap()
                        == bin
            })
            .collect();
        assert_eq!(found.len(), 1, "lane {lane} bin {bin}: {found:?}\n{stderr}");
        let volume = found[0]["volume"].as_u64().unwrap_or(0);
        assert_eq!(
            volume,
            u64::from(row.volume),
            "lane {lane} bin {bin}: {}\n{stderr}",
            found[0]
        );
    }
    let spooled: u64 = rows.iter().filter_map(|r| r["volume"].as_u64()).sum();
    assert_eq!(spooled, truth.total_volume(), "{stderr}");
}

fn decode_errors(stderr: &str) -> u64 {
    number_after(stderr, "decode_errors=")
}

/// The number after the last `key` in `text` (the daemon's and detector-sim's summaries).
fn number_after(text: &str, key: &str) -> u64 {
    let tail = text
        .rsplit(key)
        .next()
        .filter(|_| text.contains(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    tail.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn ss125_interval_data_with_noise_matches_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "ss125",
        serial_extra: "address = 1\nlanes = { 0 = 1, 1 = 2 }",
        sim_args: &[
            "--lanes",
            "2",
            "--garbage-every",
            "4",
            "--bad-checksum-every",
            "7",
        ],
        ..Case::default()
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(decode_errors(&stderr) > 0, "{stderr}");
}

#[test]
fn ss125_active_events_match_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "ss125",
        serial_extra: "address = 1\nlanes = { 0 = 1, 1 = 2 }",
        sim_args: &["--lanes", "2", "--ss125-events", "--garbage-every", "25"],
        ..Case::default()
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(decode_errors(&stderr) > 0, "{stderr}");
}

#[test]
fn rtms_g4_vehicle_events_with_noise_match_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "rtms_g4",
        serial_extra: "lanes = { 1 = 1, 2 = 2 }",
        sim_args: &[
            "--lanes",
            "2",
            "--garbage-every",
            "20",
            "--bad-checksum-every",
            "30",
        ],
        ..Case::default()
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(decode_errors(&stderr) > 0, "{stderr}");
}

#[test]
fn pems_lines_match_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "pems",
        serial_extra: "lanes = { 1 = 1, 2 = 2 }",
        sim_args: &["--lanes", "2", "--garbage-every", "3"],
        ..Case::default()
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(decode_errors(&stderr) > 0, "{stderr}");
}

#[test]
fn vlog_lines_match_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "vlog",
        serial_extra: "lanes = { 1 = 1 }",
        sim_args: &["--lanes", "1"],
        ..Case::default()
    });
    assert_matches(&rows, &truth, &stderr);
}

#[test]
fn ss105_interval_replies_with_noise_match_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "ss105",
        serial_extra: "address = 1\nlanes = { 1 = 1, 2 = 2 }",
        sim_args: &[
            "--lanes",
            "2",
            "--garbage-every",
            "4",
            "--bad-checksum-every",
            "5",
        ],
        ..Case::default()
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(decode_errors(&stderr) > 0, "{stderr}");
}

/// The daemon as the poller: detector-sim answers each SS125 interval read with the frames
/// due since the last poll, and repeats its latest interval when nothing is new; the
/// repeats must not count twice.
#[test]
fn ss125_polled_by_the_daemon_matches_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "ss125",
        serial_extra: "address = 1\npoll_period_ms = 100\nlanes = { 0 = 1, 1 = 2 }",
        sim_args: &["--lanes", "2", "--answer-polls", "--garbage-every", "9"],
        run_for_s: 8,
        pace: "100x",
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(number_after(&stderr, "polls_answered=") > 10, "{stderr}");
}

/// As above for SS105 `XD` polls.
#[test]
fn ss105_polled_by_the_daemon_matches_the_truth() {
    let (rows, truth, stderr) = run_case(&Case {
        protocol: "ss105",
        serial_extra: "address = 1\npoll_period_ms = 100\nlanes = { 1 = 1, 2 = 2 }",
        sim_args: &[
            "--lanes",
            "2",
            "--answer-polls",
            "--bad-checksum-every",
            "6",
        ],
        run_for_s: 8,
        pace: "100x",
    });
    assert_matches(&rows, &truth, &stderr);
    assert!(number_after(&stderr, "polls_answered=") > 10, "{stderr}");
}
