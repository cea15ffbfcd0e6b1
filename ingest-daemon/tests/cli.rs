//! The `ingest-daemon` binary, run as a real process: `check-config`, `run` (with `--for`
//! and with SIGTERM), the spool lock, and `spool stat|tail|export` afterwards. The samples a
//! run spools are checked against the simulator's ground truth for the same seed and start.

// Helpers outside #[test] fns panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use edge_config::{Config, DEFAULT_CONFIG};
use ingest_daemon::sim::GroundTruth;
use ingest_daemon::sources::simulated::sim_config;
use serde_json::Value;

use common::{run_ok, wait_exit};

/// (bin start, volume) of one lane, in spool order.
type LaneBins = Vec<(DateTime<Utc>, Option<u64>)>;

const SIM_START: &str = "2024-03-04T08:00:00Z";

fn daemon(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"));
    cmd.current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("INGEST__SPOOL__DIR")
        .stdin(Stdio::null());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `#seq` of each printed sample line.
fn printed_seqs(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn spool_stat(cwd: &Path, spool: &Path) -> Value {
    let out = run_ok(
        daemon(cwd)
            .args(["spool", "stat", "--json", "--spool-dir"])
            .arg(spool),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn spool_export_json(cwd: &Path, spool: &Path) -> Vec<Value> {
    let out = run_ok(
        daemon(cwd)
            .args(["spool", "export", "--format", "json", "--spool-dir"])
            .arg(spool),
    );
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A running `run` whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: thread::JoinHandle<()>,
}

fn spawn_run(cwd: &Path, spool: &Path, extra: &[&str]) -> Running {
    let mut child = daemon(cwd)
        .args([
            "run",
            "--time-scale",
            "60",
            "--print-samples",
            "--sim-start",
            SIM_START,
        ])
        .arg("--spool-dir")
        .arg(spool)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        lines,
        reader,
    }
}

impl Running {
    /// Waits for `n` sample lines and returns them.
    fn wait_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            got.push(
                self.lines
                    .recv_timeout(left)
                    .expect("sample lines from the daemon"),
            );
        }
        got
    }

    /// Waits for the exit and returns the status and every remaining line.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        self.reader.join().unwrap();
        (status, self.lines.try_iter().collect())
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn check_config_accepts_the_examples() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-config/examples");
    let tmp = tempfile::tempdir().unwrap();

    let out = run_ok(
        daemon(tmp.path())
            .arg("check-config")
            .arg(examples.join("minimal.toml")),
    );
    let summary = text(&out.stdout);
    assert!(summary.contains("minimal.toml: OK"), "{summary}");
    assert!(summary.contains("1 source, 2 lanes"), "{summary}");
    assert!(summary.contains("sim-1: simulated"), "{summary}");

    // Without a path: the built-in configuration, which is the same file.
    let out = run_ok(daemon(tmp.path()).arg("check-config"));
    assert!(text(&out.stdout).contains("<built-in minimal.toml>: OK"));

    // The motorway example names the box's secret files; elsewhere they are skipped.
    let motorway = examples.join("motorway-site.toml");
    let out = run_ok(
        daemon(tmp.path())
            .args(["check-config", "--skip-files", "--config"])
            .arg(&motorway),
    );
    let summary = text(&out.stdout);
    assert!(summary.contains("4 sources, 13 lanes"), "{summary}");
    assert!(summary.contains("note: `run` would refuse it"), "{summary}");
    if !Path::new("/etc/ingest-daemon/control-room-ca.pem").exists() {
        let out = daemon(tmp.path())
            .arg("check-config")
            .arg(&motorway)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains("motorway-site.toml:58:11: uplink.tls.ca_file: cannot read"),
            "{err}"
        );
        assert!(err.contains("--skip-files"), "{err}");
    }
}

#[test]
fn check_config_prints_every_problem_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("broken.toml"),
        "[node]\nedge_id = \"Bad_ID\"\n\n[spool]\nfsync_interval_ms = 99999\n\n\
         [[simulated]]\nid = \"sim-1\"\nlanes = 0\n",
    )
    .unwrap();
    let out = daemon(tmp.path())
        .args(["check-config", "broken.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        "broken.toml:2:11: node.edge_id: invalid edge id \"Bad_ID\"",
        "broken.toml:5:21: spool.fsync_interval_ms: 99999 is above the maximum of 10000",
        "broken.toml:9:9: simulated[0].lanes: 0 lanes is outside 1 to 8",
        "3 problems found",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(out.stdout.is_empty());

    // `run` refuses the same file before touching any spool.
    let out = daemon(tmp.path())
        .args(["run", "--config", "broken.toml", "--spool-dir", "spool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("broken.toml:2:11"));
    assert!(!tmp.path().join("spool").exists());

    let out = daemon(tmp.path())
        .args(["check-config", "missing.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.toml: cannot read the configuration file"));
}

#[test]
fn a_serial_port_that_is_missing_is_retried_and_the_run_still_drains() {
    // (MQTT and camera sources are still refused: see run::tests.)
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("serial.toml"),
        "[node]\nedge_id = \"t\"\n\n[[serial]]\nid = \"radar\"\nport = \"/dev/ttyUSB9\"\n\
         protocol = \"rtms_g4\"\nlanes = { 1 = 1 }\n",
    )
    .unwrap();
    run_ok(daemon(tmp.path()).args(["check-config", "serial.toml"]));
    let out = daemon(tmp.path())
        .args([
            "run",
            "-c",
            "serial.toml",
            "--spool-dir",
            "spool",
            "--for",
            "1",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("source session failed"), "{err}");
    assert!(err.contains("/dev/ttyUSB9"), "{err}");
}

#[test]
fn run_for_spools_what_the_simulator_produced() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let out = run_ok(
        daemon(tmp.path())
            .args(["run", "--for", "3", "--time-scale", "60", "--print-samples"])
            .args(["--sim-start", SIM_START, "--spool-dir"])
            .arg(&spool),
    );
    let stdout = text(&out.stdout);
    let seqs = printed_seqs(&stdout);
    // 3 s at 60x = 3 min of traffic: about 6 bins on 2 lanes.
    assert!(seqs.len() >= 8, "{stdout}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        stdout.lines().all(|l| l.contains(" sim-1 lane ")),
        "{stdout}"
    );

    let stat = spool_stat(tmp.path(), &spool);
    assert_eq!(stat["samples"]["records"], seqs.len());
    assert_eq!(stat["durable_seq"], seqs.len());
    assert_eq!(stat["acked_seq"], 0);

    let rows = spool_export_json(tmp.path(), &spool);
    assert_eq!(rows.len(), seqs.len());
    let config = Config::from_str_named("minimal.toml", DEFAULT_CONFIG, Vec::new()).unwrap();
    let src = &config.simulated[0];
    let start = at(SIM_START);
    let mut by_lane: BTreeMap<u64, LaneBins> = BTreeMap::new();
    for row in &rows {
        assert_eq!(row["edge_id"], "demo-edge");
        assert_eq!(row["site_id"], "demo-edge");
        assert_eq!(row["detector_id"], "sim-1");
        assert_eq!(row["interval_s"], 30);
        let bucket = at(row["bucket_start"].as_str().unwrap());
        by_lane
            .entry(row["lane"].as_u64().unwrap())
            .or_default()
            .push((bucket, row["volume"].as_u64()));
    }
    assert_eq!(by_lane.keys().copied().collect::<Vec<_>>(), [1, 2]);
    let last = rows
        .iter()
        .map(|r| at(r["bucket_start"].as_str().unwrap()))
        .max()
        .unwrap();
    let truth = GroundTruth::generate(&sim_config(src), start, last + TimeDelta::seconds(30), 30);
    let mut compared = 0;
    for (lane, bins) in &by_lane {
        // Consecutive bins from the start, one sample each.
        for (i, (bucket, _)) in bins.iter().enumerate() {
            assert_eq!(
                *bucket,
                start + TimeDelta::seconds(30 * i as i64),
                "lane {lane}"
            );
        }
        // Every bin but the last (cut short by the stop) holds exactly what passed.
        for (bucket, volume) in &bins[..bins.len() - 1] {
            let expected = truth.volume(*lane as u16, *bucket);
            assert_eq!(
                *volume,
                Some(u64::from(expected)),
                "lane {lane} bin {bucket}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 6, "{compared} bins compared");
    assert!(truth.total_volume() > 50);

    // tail shows the newest samples as printed.
    let out = run_ok(
        daemon(tmp.path())
            .args(["spool", "tail", "-n", "2", "--spool-dir"])
            .arg(&spool),
    );
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        printed[printed.len() - 2..]
    );

    // CSV: a header and one line per sample.
    let out = run_ok(
        daemon(tmp.path())
            .args([
                "spool",
                "export",
                "--format",
                "csv",
                "--after",
                "2",
                "--spool-dir",
            ])
            .arg(&spool),
    );
    let csv = text(&out.stdout);
    assert!(csv.starts_with("seq,appended_at,site_id,detector_id,lane,bucket_start"));
    assert_eq!(csv.lines().count(), seqs.len() - 2 + 1);
    assert!(csv.lines().nth(1).unwrap().starts_with("3,"));
}

#[test]
fn sigterm_drains_and_syncs_and_the_spool_is_locked_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let running = spawn_run(tmp.path(), &spool, &[]);
    let first = running.wait_lines(2);

    // The daemon holds the spool: the CLI says so instead of opening it under its feet.
    let out = daemon(tmp.path())
        .args(["spool", "stat", "--spool-dir"])
        .arg(&spool)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let expected = format!(
        "spool {} is in use by process {} (an ingest-daemon `run` or `spool` command)",
        spool.display(),
        running.child.id()
    );
    assert!(err.contains(&expected), "{err}");

    signal(&running.child, "TERM");
    let (status, rest) = running.finish();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let all: Vec<String> = first.into_iter().chain(rest).collect();
    let seqs = printed_seqs(&all.join("\n"));
    assert!(seqs.len() >= 2);

    // Everything printed was spooled and synced before the exit.
    let stat = spool_stat(tmp.path(), &spool);
    assert_eq!(stat["samples"]["records"], seqs.len());
    assert_eq!(stat["durable_seq"], *seqs.last().unwrap());
}

#[test]
fn a_second_run_continues_the_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let run = |secs: &str| {
        let out = run_ok(
            daemon(tmp.path())
                .args([
                    "run",
                    "--time-scale",
                    "60",
                    "--print-samples",
                    "--for",
                    secs,
                ])
                .args(["--sim-start", SIM_START, "--spool-dir"])
                .arg(&spool),
        );
        printed_seqs(&text(&out.stdout))
    };
    let first = run("2");
    let second = run("2");
    assert!(!first.is_empty() && !second.is_empty());
    assert_eq!(second[0], first.last().unwrap() + 1);
    let rows = spool_export_json(tmp.path(), &spool);
    let exported: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let printed: Vec<u64> = first.into_iter().chain(second).collect();
    assert_eq!(exported, printed);
}

#[test]
fn the_built_in_demo_spools_under_the_current_directory() {
    let tmp = tempfile::tempdir().unwrap();
    run_ok(daemon(tmp.path()).args(["run", "--for", "0.5"]));
    assert!(tmp.path().join("ingest-spool/samples").is_dir());
    assert!(tmp.path().join("ingest-spool/LOCK").is_file());
    // ... and the spool commands find it there without options.
    let out = run_ok(daemon(tmp.path()).args(["spool", "stat"]));
    assert!(text(&out.stdout).contains("ingest-spool"));

    let out = daemon(tmp.path())
        .args(["spool", "stat", "--spool-dir", "elsewhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no spool in"));
}
