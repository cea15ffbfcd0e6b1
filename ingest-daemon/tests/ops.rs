//! The operations surface of a real `ingest-daemon run` process: `/metrics`, `/health`,
//! systemd notifications (on a datagram socket of our own) and SIGHUP reloads.

// Helpers outside #[test] fns panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{http_get, metric_value};

const TIMEOUT: Duration = Duration::from_secs(20);

fn source(id: &str, seed: u64) -> String {
    format!("[[simulated]]\nid = \"{id}\"\nlanes = 2\nseed = {seed}\nvehicles_per_hour = 3000\n")
}

fn config_text(port: u16, sources: &[&str]) -> String {
    let mut text =
        format!("[node]\nedge_id = \"box-1\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n");
    for s in sources {
        text.push_str(s);
    }
    text
}

/// A running daemon; killed when dropped. Its stderr is collected for failure messages.
struct Daemon {
    child: Child,
    port: u16,
    config: PathBuf,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(sources: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = test_support::free_port();
        let config = dir.path().join("box.toml");
        std::fs::write(&config, config_text(port, sources)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"));
        cmd.args([
            "--log-format",
            "text",
            "run",
            "--time-scale",
            "60",
            "--config",
        ])
        .arg(&config)
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            port,
            config,
            stderr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// Polls until `check` gives a value (or fails the test after [`TIMEOUT`]).
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out waiting for {what}; daemon log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (code, body) = self.get("/metrics")?;
        assert_eq!(code, 200);
        metric_value(&body, series)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < TIMEOUT, "the daemon did not exit");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn events(id: &str) -> String {
    format!("ingest_source_events_total{{source=\"{id}\",kind=\"simulated\"}}")
}

fn sessions(id: &str) -> String {
    format!("ingest_source_sessions_total{{source=\"{id}\",kind=\"simulated\"}}")
}

#[test]
fn metrics_move_and_health_is_ok() {
    let mut d = Daemon::start(&[&source("sim-a", 1)], &[]);
    let health: Value = d.wait_for("/health", || {
        let (code, body) = d.get("/health")?;
        assert_eq!(code, 200, "{body}");
        Some(serde_json::from_str(&body).unwrap())
    });
    assert!(
        ["ok", "degraded"].contains(&health["status"].as_str().unwrap()),
        "{health}"
    );
    assert_eq!(health["sources"][0]["id"], "sim-a");
    assert_eq!(health["sources"][0]["state"], "running");
    assert!(health["spool"].is_object(), "{health}");

    let first = d.wait_for("events", || d.metric(&events("sim-a")).filter(|&n| n > 0.0));
    d.wait_for("more events", || {
        d.metric(&events("sim-a")).filter(|&n| n > first)
    });
    d.wait_for("samples", || {
        d.metric("ingest_samples_produced_total")
            .filter(|&n| n > 0.0)
    });
    d.wait_for("spooled samples", || {
        d.metric("ingest_samples_spooled_total")
            .filter(|&n| n > 0.0)
    });

    let (code, body) = d.get("/metrics").unwrap();
    assert_eq!(code, 200);
    for series in [
        "# TYPE ingest_source_events_total counter",
        "ingest_source_frames_total{source=\"sim-a\",kind=\"simulated\"} 0",
        "ingest_source_bytes_total{source=\"sim-a\",kind=\"simulated\"} 0",
        "ingest_source_ring_dropped_total{source=\"sim-a\",kind=\"simulated\"} 0",
        "ingest_source_decode_errors_total{source=\"sim-a\",kind=\"simulated\",error_type=\"checksum\"} 0",
        "ingest_source_last_event_age_seconds{source=\"sim-a\",kind=\"simulated\"} ",
        "ingest_late_events_total ",
        "ingest_spool_bytes{class=\"sample\"} ",
        "ingest_spool_records{class=\"sample\"} ",
        "ingest_spool_evicted_unacked_records_total{class=\"sample\"} 0",
        "ingest_spool_oldest_age_seconds ",
        "ingest_detector_locked_on{site=\"box-1\",detector=\"sim-a\"} 0",
    ] {
        assert!(body.contains(series), "no {series:?} in:\n{body}");
    }
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(name.starts_with("ingest_"), "{line}");
        // Nothing pretends: the uplink does not run yet.
        assert!(!name.contains("uplink"), "{line}");
    }

    d.signal("TERM");
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
}

#[test]
fn systemd_hears_ready_watchdog_status_and_stopping() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let path = sock_path.display().to_string();
    let mut d = Daemon::start(
        &[&source("sim-a", 1)],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "1000000")],
    );
    let mut seen: Vec<String> = Vec::new();
    let recv_until = |want: &dyn Fn(&[String]) -> bool, seen: &mut Vec<String>| {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while !want(seen) {
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out; messages so far: {seen:?}; log:\n{}",
                d.log()
            );
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]);
                seen.extend(msg.lines().map(str::to_owned));
            }
        }
    };
    let has = |prefix: &str| {
        let prefix = prefix.to_owned();
        move |s: &[String]| s.iter().any(|m| m.starts_with(&prefix))
    };
    recv_until(&has("READY=1"), &mut seen);
    let ready_at = seen.iter().position(|m| m == "READY=1").unwrap();
    recv_until(
        &|s: &[String]| has("WATCHDOG=1")(s) && has("STATUS=")(s),
        &mut seen,
    );
    let first_ping = seen.iter().position(|m| m == "WATCHDOG=1").unwrap();
    assert!(ready_at < first_ping, "{seen:?}");
    let status = seen.iter().find(|m| m.starts_with("STATUS=")).unwrap();
    assert!(status.contains("sources up"), "{status}");
    // Pings keep coming while the pipeline moves.
    let pings = seen.iter().filter(|m| *m == "WATCHDOG=1").count();
    recv_until(
        &|s: &[String]| s.iter().filter(|m| *m == "WATCHDOG=1").count() >= pings + 2,
        &mut seen,
    );

    d.signal("TERM");
    recv_until(&has("STOPPING=1"), &mut seen);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
}

#[test]
fn sighup_adds_a_source_and_keeps_the_running_one() {
    let a = source("sim-a", 1);
    let d = Daemon::start(&[&a], &[]);
    let before = d.wait_for("events", || d.metric(&events("sim-a")).filter(|&n| n > 0.0));

    std::fs::write(&d.config, config_text(d.port, &[&a, &source("sim-b", 2)])).unwrap();
    d.signal("HUP");
    d.wait_for("the new source's events", || {
        d.metric(&events("sim-b")).filter(|&n| n > 0.0)
    });
    let after = d.metric(&events("sim-a")).unwrap();
    assert!(after >= before, "sim-a was reset: {before} then {after}");
    d.wait_for("sim-a going on", || {
        d.metric(&events("sim-a")).filter(|&n| n > after)
    });
    assert_eq!(d.metric(&sessions("sim-a")), Some(1.0), "sim-a restarted");

    // An invalid file is reported with its position and changes nothing.
    std::fs::write(
        &d.config,
        config_text(
            d.port,
            &[&a, "[[simulated]]\nid = \"sim-c\"\nlanes = \"many\"\n"],
        ),
    )
    .unwrap();
    d.signal("HUP");
    let name = d.config.display().to_string();
    d.wait_for("the reload error", || {
        d.log()
            .lines()
            .any(|l| l.contains("invalid configuration") && l.contains(&format!("{name}:")))
            .then_some(())
    });
    let now = d.metric(&events("sim-a")).unwrap();
    assert!(now >= after);
    assert!(d.metric(&events("sim-b")).is_some(), "sim-b was stopped");
    assert!(d.metric(&events("sim-c")).is_none());

    // Removing a source stops it.
    std::fs::write(&d.config, config_text(d.port, &[&a])).unwrap();
    d.signal("HUP");
    d.wait_for("sim-b gone", || {
        d.metric(&events("sim-a"))?;
        d.metric(&events("sim-b")).is_none().then_some(())
    });
}

#[test]
fn journald_lines_carry_priorities_and_no_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("box.toml");
    let port = test_support::free_port();
    std::fs::write(&config, config_text(port, &[&source("sim-a", 1)])).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
        .args([
            "--log-format",
            "journald",
            "run",
            "--for",
            "0.5",
            "--time-scale",
            "60",
            "--config",
        ])
        .arg(&config)
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{log}");
    assert!(lines.iter().any(|l| l.starts_with("<4>")), "{log}");
    for l in &lines {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| l.starts_with(p)),
            "{l}"
        );
        assert!(!l.contains("Z "), "a timestamp in {l}");
    }
}
