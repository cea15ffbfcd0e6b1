//! The `ingest-daemon` binary killed and starved, as a real process on a temp spool:
//!
//! - `kill -9` during steady ingest, repeated on one spool, with a torn write (the last
//!   segment cut short by a few bytes) between two rounds: every open recovers, nothing
//!   that was on disk before a kill is lost afterwards, nothing is duplicated or
//!   renumbered, and every sample the daemon printed (printed only after its `write`)
//!   survives the kill.
//! - The spool full (`[spool] max_bytes = "8MiB"`, the minimum): pre-filled with raw
//!   records through the library, then run: raw segments are evicted and samples are not,
//!   the bound holds, the daemon runs on and exits 0, the log has the eviction warning.
//!   Then pre-filled with samples only: sample segments are evicted (counted as unacked
//!   loss), the bound still holds and the daemon still exits 0.
//!
//! Every daemon gets `INGEST__HTTP__LISTEN` with a port just found free (the configuration
//! refuses port 0); a daemon that then cannot bind it runs on without `/metrics`.

// Helpers outside #[test] fns panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use ingest_daemon::run::spool_config;
use ingest_daemon::spool::{RecordClass, Spool};
use serde_json::Value;
use test_support::free_port;

use common::{http_get, metric_value, run_ok, wait_exit};

const SIM_START: &str = "2024-03-04T08:00:00Z";
/// Simulated seconds per wall second in the kill test (the maximum): a 30 s bin closes
/// every 8 ms; a round (at most ~3 s of wall time with start-up) covers a few hours.
const KILL_TIME_SCALE: &str = "3600";

fn daemon(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"));
    cmd.current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("INGEST__SPOOL__DIR")
        .env("INGEST__HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn spool_stat(cwd: &Path, spool: &Path, config: Option<&Path>) -> Value {
    let mut cmd = daemon(cwd);
    cmd.args(["spool", "stat", "--json", "--spool-dir"])
        .arg(spool);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap()
}

/// One spooled sample as exported or printed: (seq, detector, lane, bucket start).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    seq: u64,
    detector: String,
    lane: u64,
    bucket: DateTime<Utc>,
}

fn spool_export(cwd: &Path, spool: &Path) -> Vec<Row> {
    let out = run_ok(
        daemon(cwd)
            .args(["spool", "export", "--format", "json", "--spool-dir"])
            .arg(spool),
    );
    text(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Row {
                seq: v["seq"].as_u64().unwrap(),
                detector: v["detector_id"].as_str().unwrap().to_owned(),
                lane: v["lane"].as_u64().unwrap(),
                bucket: at(v["bucket_start"].as_str().unwrap()),
            }
        })
        .collect()
}

/// Parses a `--print-samples` line: `#7 2024-03-04T08:00:30Z 30s sim-1 lane 1  vol ...`.
fn printed_row(line: &str) -> Row {
    let mut words = line.split_whitespace();
    let seq = words.next().unwrap().strip_prefix('#').unwrap();
    let bucket = words.next().unwrap();
    let _interval = words.next().unwrap();
    let detector = words.next().unwrap();
    assert_eq!(words.next(), Some("lane"), "{line}");
    let lane = words.next().unwrap();
    Row {
        seq: seq.parse().unwrap(),
        detector: detector.to_owned(),
        lane: lane.parse().unwrap(),
        bucket: at(bucket),
    }
}

/// A running daemon whose stdout lines are collected by a thread and whose stderr goes to
/// a file. Killed on drop, so a failing test leaves no process behind.
struct Daemon {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
    stderr: PathBuf,
}

impl Daemon {
    fn spawn(mut cmd: Command, stderr: PathBuf) -> Self {
        let log = std::fs::File::create(&stderr).unwrap();
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
            reader: Some(reader),
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, then every line the daemon wrote to stdout before it died.
    fn kill9(mut self) -> Vec<String> {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
        self.reader.take().unwrap().join().unwrap();
        self.lines.try_iter().collect()
    }

    /// Waits for the exit; returns the status, every stdout line and the log.
    fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<String>, String) {
        let mut child = self.child.take().unwrap();
        let status = wait_exit(&mut child, limit);
        self.reader.take().unwrap().join().unwrap();
        let log = std::fs::read_to_string(&self.stderr).unwrap();
        (status, self.lines.try_iter().collect(), log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small deterministic generator for the kill moments (xorshift), seeded per run so that
/// repeated runs kill at different moments; the seed is printed for reproduction.
struct Jitter(u64);

impl Jitter {
    fn from_env_or_clock() -> Self {
        let seed = std::env::var("CRASH_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos() as u64
            });
        eprintln!("kill moments: CRASH_TEST_SEED={seed}");
        Self(seed | 1)
    }

    /// A duration in `[lo, hi)` ms.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo))
    }
}

/// The newest segment file of `class` (`samples` or `raw`) that holds data.
fn newest_segment(spool: &Path, class: &str) -> Option<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(spool.join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.into_iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
}

/// Checks what one export says against the previous one and the round's printed lines.
fn check_export(
    round: usize,
    rows: &[Row],
    before: &[Row],
    printed: &[Row],
    round_start: DateTime<Utc>,
) {
    // In seq order, no seq twice.
    assert!(
        rows.windows(2).all(|w| w[0].seq < w[1].seq),
        "round {round}: seqs not strictly increasing"
    );
    // No bin spooled twice (each round simulates its own day, so this holds across rounds).
    let mut bins = BTreeSet::new();
    for r in rows {
        assert!(
            bins.insert((r.detector.clone(), r.lane, r.bucket)),
            "round {round}: bin spooled twice: {r:?}"
        );
    }
    // Nothing that was on disk before this round is lost or renumbered.
    assert!(
        rows.len() >= before.len() && rows[..before.len()] == *before,
        "round {round}: the previous export is not a prefix of this one \
         ({} rows before, {} now)",
        before.len(),
        rows.len()
    );
    // Every printed sample (printed after its write) survived the kill, as printed.
    let by_seq: BTreeMap<u64, &Row> = rows.iter().map(|r| (r.seq, r)).collect();
    for p in printed {
        assert_eq!(
            by_seq.get(&p.seq).copied(),
            Some(p),
            "round {round}: printed sample missing or different after the kill"
        );
    }
    // The new samples continue the sequence and belong to this round's hour.
    let new = &rows[before.len()..];
    if let (Some(last), Some(first)) = (before.last(), new.first()) {
        assert!(first.seq > last.seq, "round {round}");
    }
    for r in new {
        assert!(
            r.bucket >= round_start && r.bucket < round_start + TimeDelta::days(1),
            "round {round}: bin outside the round's day: {r:?}"
        );
    }
}

#[test]
fn kill_9_during_ingest_loses_nothing_that_was_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut jitter = Jitter::from_env_or_clock();
    let base = at(SIM_START);
    let mut before: Vec<Row> = Vec::new();
    let mut printed_total = 0;
    const ROUNDS: usize = 5;
    // After this round's kill the last segment is cut short (a torn write); the next round
    // runs to its `--for` end instead of being killed, to check the start is not blocked.
    const TORN_AFTER: usize = 2;

    for round in 0..ROUNDS {
        // The simulated clock restarts at --sim-start on every start: each round simulates
        // its own day (base + round days), so bins never repeat across restarts.
        let round_start = base + TimeDelta::days(round as i64);
        let mut cmd = daemon(tmp.path());
        cmd.args(["run", "--print-samples", "--time-scale", KILL_TIME_SCALE])
            .arg("--sim-start")
            .arg(round_start.to_rfc3339())
            .arg("--spool-dir")
            .arg(&spool);
        let after_torn = round == TORN_AFTER + 1;
        if after_torn {
            cmd.args(["--for", "1"]);
        }
        let d = Daemon::spawn(cmd, tmp.path().join(format!("stderr-{round}.log")));
        let lines = if after_torn {
            let (status, lines, log) = d.finish(Duration::from_secs(20));
            assert_eq!(status.code(), Some(0), "round {round}: {status}\n{log}");
            assert!(
                log.contains("spool repaired at open") && log.contains("torn_tails=1"),
                "round {round}: no repair logged:\n{log}"
            );
            lines
        } else {
            // Wait for the first printed sample so every round appends something, then
            // kill at a random-ish moment while samples keep coming.
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut first = Vec::new();
            while first.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                first.push(d.lines.recv_timeout(left).unwrap_or_else(|_| {
                    panic!("round {round}: no sample from daemon {}", d.pid())
                }));
            }
            thread::sleep(jitter.ms(500, 2000));
            first.into_iter().chain(d.kill9()).collect()
        };
        let printed: Vec<Row> = lines.iter().map(|l| printed_row(l)).collect();
        assert!(!printed.is_empty(), "round {round}: nothing printed");
        printed_total += printed.len();

        // Recovery: the spool opens (the LOCK of the dead process does not block it).
        let stat = spool_stat(tmp.path(), &spool, None);
        let rows = spool_export(tmp.path(), &spool);
        check_export(round, &rows, &before, &printed, round_start);
        assert_eq!(stat["samples"]["records"], rows.len(), "round {round}");
        assert_eq!(
            stat["samples"]["last_seq"],
            rows.last().unwrap().seq,
            "round {round}"
        );
        assert_eq!(stat["recovery"]["quarantined"], Value::Array(Vec::new()));
        eprintln!(
            "round {round}: {} printed, {} on disk, {} new",
            printed.len(),
            rows.len(),
            rows.len() - before.len()
        );
        before = rows;

        if round == TORN_AFTER {
            // A torn write: the newest sample segment loses its last 3 bytes.
            let seg = newest_segment(&spool, "samples").unwrap();
            let len = std::fs::metadata(&seg).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(len - 3)
                .unwrap();
            // The next open (the daemon's own) cuts the torn record: exactly one sample
            // goes, the last one; everything before it stays.
            before.pop();
        }
    }
    assert!(
        printed_total >= 5 * ROUNDS,
        "{printed_total} samples printed"
    );
    let stat = spool_stat(tmp.path(), &spool, None);
    assert_eq!(stat["samples"]["records"], before.len());
}

// ---------------------------------------------------------------- spool full

/// Two simulated sources of 8 lanes each, a spool at the 8 MiB minimum with the smallest
/// segments (64 KiB, so eviction frees space in small steps).
fn full_config(dir: &Path, spool: &Path) -> PathBuf {
    let path = dir.join("full.toml");
    let mut toml = format!(
        "[node]\nedge_id = \"full-edge\"\n\n[spool]\ndir = {:?}\nmax_bytes = \"8MiB\"\n\
         segment_bytes = \"64KiB\"\nfsync_interval_ms = 100\n",
        spool.display().to_string()
    );
    for id in ["sim-a", "sim-b"] {
        toml.push_str(&format!(
            "\n[[simulated]]\nid = \"{id}\"\nlanes = 8\nvehicles_per_hour = 600\n"
        ));
    }
    std::fs::write(&path, toml).unwrap();
    path
}

/// The library spool with the sizes the daemon derives from `config`.
fn open_like_the_daemon(config: &Path, spool: &Path) -> Spool {
    let loaded = edge_config::Config::load(config, Vec::new()).unwrap();
    let cfg = spool_config(&loaded.spool);
    assert_eq!(cfg.max_total_bytes, 8 * 1024 * 1024);
    assert_eq!(cfg.max_segment_bytes, 64 * 1024);
    Spool::open(spool, cfg).unwrap()
}

/// Sum of the segment files' sizes on disk, both classes.
fn bytes_on_disk(spool: &Path) -> u64 {
    ["samples", "raw"]
        .iter()
        .flat_map(|c| std::fs::read_dir(spool.join(c)).unwrap())
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// The value of `name{class="<class>"}` in a Prometheus text body.
fn metric(body: &str, name: &str, class: &str) -> Option<u64> {
    metric_value(body, &format!("{name}{{class=\"{class}\"}}")).map(|v| v as u64)
}

/// Runs the daemon on the full spool for `secs` at 3600x, reading `/metrics` meanwhile.
/// Returns the printed samples, the log and the last `/metrics` body.
fn run_full(tmp: &Path, config: &Path, spool: &Path, secs: &str) -> (Vec<Row>, String, String) {
    let port = free_port();
    let mut cmd = daemon(tmp);
    cmd.env("INGEST__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .args([
            "run",
            "--print-samples",
            "--time-scale",
            "3600",
            "--for",
            secs,
        ])
        .args(["--sim-start", SIM_START, "--config"])
        .arg(config)
        .arg("--spool-dir")
        .arg(spool);
    let mut d = Daemon::spawn(cmd, tmp.join("stderr-full.log"));
    let mut last_metrics = None;
    while d.child.as_mut().unwrap().try_wait().unwrap().is_none() {
        if let Some(body) = metrics_body(port) {
            last_metrics = Some(body);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let (status, lines, log) = d.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status}\n{log}");
    let printed: Vec<Row> = lines.iter().map(|l| printed_row(l)).collect();
    assert!(printed.len() > 100, "{} samples printed", printed.len());
    let metrics = last_metrics.expect("/metrics answered while the daemon ran");
    for class in ["raw", "sample"] {
        eprintln!(
            "{class}: {:?} segments / {:?} records evicted, {} samples printed",
            metric(&metrics, "ingest_spool_evicted_segments_total", class),
            metric(&metrics, "ingest_spool_evicted_records_total", class),
            printed.len()
        );
    }
    (printed, log, metrics)
}

fn eviction_lines<'a>(log: &'a str, class: &str) -> Vec<&'a str> {
    let class = format!("class={class} ");
    log.lines()
        .filter(|l| l.contains("spool full: evicted oldest segment") && l.contains(&class))
        .collect()
}

#[test]
fn a_full_spool_evicts_raw_data_before_samples_and_keeps_running() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let config = full_config(tmp.path(), &spool);

    // Pre-fill with raw records to the bound (the library evicts its own oldest raw).
    let now = at(SIM_START);
    let mut lib = open_like_the_daemon(&config, &spool);
    let payload = vec![0xA5u8; 2000];
    // 4300 x 2 KiB is more than 8 MiB: the spool ends full of raw data.
    for _ in 0..4300 {
        lib.append_raw(now, &payload).unwrap();
    }
    assert!(lib.class_bytes(RecordClass::Raw) > 8 * 1024 * 1024 - 70 * 1024);
    lib.sync().unwrap();
    let raw_last_seq = lib.next_seq() - 1;
    drop(lib);
    let before = spool_stat(tmp.path(), &spool, Some(&config));
    let raw_before = before["raw"]["records"].as_u64().unwrap();
    assert_eq!(before["samples"]["records"], 0);

    let (printed, log, metrics) = run_full(tmp.path(), &config, &spool, "2");

    // The log says what went: raw segments, never samples.
    assert!(!eviction_lines(&log, "raw").is_empty(), "{log}");
    assert!(eviction_lines(&log, "sample").is_empty(), "{log}");
    // So do the eviction counters (in memory: read from /metrics while running).
    assert!(metric(&metrics, "ingest_spool_evicted_segments_total", "raw").unwrap() > 0);
    assert!(metric(&metrics, "ingest_spool_evicted_records_total", "raw").unwrap() > 0);
    assert_eq!(
        metric(&metrics, "ingest_spool_evicted_segments_total", "sample"),
        Some(0)
    );
    assert_eq!(
        metric(
            &metrics,
            "ingest_spool_evicted_unacked_records_total",
            "sample"
        ),
        Some(0)
    );

    // The bound holds, by the spool's account and on disk.
    let stat = spool_stat(tmp.path(), &spool, Some(&config));
    let max = 8 * 1024 * 1024;
    assert_eq!(stat["max_total_bytes"], max);
    assert!(stat["total_bytes"].as_u64().unwrap() <= max, "{stat}");
    assert!(
        bytes_on_disk(&spool) <= max,
        "{} bytes",
        bytes_on_disk(&spool)
    );
    // Raw data made room: fewer raw records, the newest still there.
    let raw_after = stat["raw"]["records"].as_u64().unwrap();
    assert!(raw_after < raw_before, "{raw_after} >= {raw_before}");
    assert_eq!(stat["raw"]["last_seq"], raw_last_seq);
    // Every sample the daemon spooled is there, after the raw data.
    let rows = spool_export(tmp.path(), &spool);
    assert_eq!(rows, printed);
    assert!(rows[0].seq > raw_last_seq);
    assert_eq!(stat["samples"]["records"], rows.len());
}

#[test]
fn a_spool_full_of_samples_evicts_the_oldest_samples_and_keeps_running() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let config = full_config(tmp.path(), &spool);

    // Pre-fill with samples only: copies of a real one, to the bound.
    let (first_run, _, _) = run_full(tmp.path(), &config, &spool, "0.5");
    let mut lib = open_like_the_daemon(&config, &spool);
    let (_, template) = lib.read_samples(0, 1).unwrap().pop().unwrap();
    let now = at(SIM_START);
    for _ in 0..200_000 {
        if lib.total_bytes() + 4096 >= 8 * 1024 * 1024 {
            break;
        }
        lib.append_sample(now, &template).unwrap();
    }
    assert!(lib.total_bytes() + 4096 >= 8 * 1024 * 1024);
    lib.sync().unwrap();
    let last_prefill = lib.next_seq() - 1;
    drop(lib);
    assert!(first_run.iter().all(|r| r.seq < last_prefill));

    let (printed, log, metrics) = run_full(tmp.path(), &config, &spool, "2");

    let lines = eviction_lines(&log, "sample");
    assert!(!lines.is_empty(), "{log}");
    // Nothing was acknowledged upstream (no uplink): every evicted sample is a loss.
    assert!(
        lines.iter().all(|l| !l.contains("unacked_samples_lost=0 ")),
        "{log}"
    );
    // The totals as persisted in the spool (evictions.json) count every eviction, those
    // of the final drain too; the last /metrics scrape may have come before some of them
    // (on a slow or emulated CPU it often does), so it may only show fewer.
    let stat = spool_stat(tmp.path(), &spool, Some(&config));
    let persisted = &stat["samples"]["eviction"];
    let evicted = persisted["evicted_records"].as_u64().unwrap();
    assert!(evicted > 0, "{stat}");
    assert_eq!(persisted["evicted_unacked_records"].as_u64(), Some(evicted));
    let scraped = metric(&metrics, "ingest_spool_evicted_records_total", "sample").unwrap();
    assert!(scraped <= evicted, "{scraped} > {evicted}");
    assert_eq!(
        metric(
            &metrics,
            "ingest_spool_evicted_unacked_records_total",
            "sample"
        ),
        Some(scraped)
    );

    let max = 8 * 1024 * 1024;
    assert!(stat["total_bytes"].as_u64().unwrap() <= max, "{stat}");
    assert!(bytes_on_disk(&spool) <= max);
    // The oldest went, the newest (everything this run printed) stayed, in order.
    let rows = spool_export(tmp.path(), &spool);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    // The first run's samples were the oldest: eviction began with them (how many of them
    // went depends on how much this run wrote, which a slow CPU makes less).
    assert!(rows[0].seq > first_run[0].seq);
    assert_eq!(rows[rows.len() - printed.len()..], printed[..]);
    assert!(printed[0].seq > last_prefill);
}

/// `GET /metrics`, or None while the endpoint is not up (yet, or any more).
fn metrics_body(port: u16) -> Option<String> {
    http_get(port, "/metrics").and_then(|(code, body)| (code == 200).then_some(body))
}
