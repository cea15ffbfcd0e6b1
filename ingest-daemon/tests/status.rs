//! `ingest-daemon status` against a real `run` process, and `run --log-format json`.

// Helpers outside #[test] fns panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{http_get, run_ok, wait_exit};

const TIMEOUT: Duration = Duration::from_secs(20);

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"));
    cmd.env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    cmd
}

/// A configuration listening on `port` with its spool in `dir/spool`.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("box.toml");
    let text = format!(
        "[node]\nedge_id = \"box-1\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [spool]\ndir = {:?}\n\n\
         [[simulated]]\nid = \"sim-a\"\nlanes = 2\nseed = 7\nvehicles_per_hour = 3000\n",
        dir.join("spool")
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path, stderr: Stdio, log_format: &str) -> Child {
    bin()
        .args([
            "--log-format",
            log_format,
            "run",
            "--time-scale",
            "60",
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits until `/health` says ok (the pipeline beats and the source has sent events).
fn wait_healthy(port: u16) {
    let start = Instant::now();
    loop {
        if let Some((200, body)) = http_get(port, "/health") {
            let v: Value = serde_json::from_str(&body).unwrap();
            let events = v["sources"][0]["events_total"].as_u64().unwrap_or(0);
            if v["status"] == "ok" && events > 0 {
                return;
            }
        }
        assert!(start.elapsed() < TIMEOUT, "the daemon never became healthy");
        thread::sleep(Duration::from_millis(100));
    }
}

fn status(config: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("status")
        .args(extra)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn status_summarises_a_running_daemon_then_reports_it_gone() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    let config = write_config(dir.path(), port);
    let mut daemon = start(&config, Stdio::null(), "text");
    wait_healthy(port);

    let out = status(&config, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with(&format!("ingest-daemon on 127.0.0.1:{port}: ok\n")),
        "{text}"
    );
    assert!(
        text.contains("source sim-a: simulated running, last event "),
        "{text}"
    );
    assert!(text.contains("\nspool:          "), "{text}");
    assert!(text.contains(" sample records, durable up to #"), "{text}");
    assert!(text.contains("\noldest unsent:  "), "{text}");
    assert!(
        text.contains("uplink:         no uplink configured"),
        "{text}"
    );

    let out = run_ok(bin().args(["status", "--json", "--config"]).arg(&config));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["sources"][0]["id"], "sim-a");
    assert_eq!(v["sources"][0]["kind"], "simulated");
    assert!(v["spool"]["bytes"].is_u64(), "{v}");

    sigterm(&daemon);
    assert!(wait_exit(&mut daemon, TIMEOUT).success());

    let out = status(&config, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "no ingest-daemon answers on 127.0.0.1:{port} — is it running? \
             `systemctl status ingest-daemon`"
        )),
        "{stderr}"
    );
    assert!(stdout.contains("the spool, read directly:"), "{stdout}");
    assert!(stdout.contains("samples:"), "{stdout}");
    assert!(stdout.contains("sequence:       next "), "{stdout}");
}

#[test]
fn status_without_a_spool_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), test_support::free_port());
    let out = status(&config, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no ingest-daemon answers on"), "{stderr}");
    assert!(stderr.contains("no spool in"), "{stderr}");
}

#[test]
fn json_log_lines_parse_with_a_level() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    let config = write_config(dir.path(), port);
    let out = run_ok(
        bin()
            .args([
                "--log-format",
                "json",
                "run",
                "--for",
                "2",
                "--time-scale",
                "60",
            ])
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null()),
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{stderr}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("serving /metrics and /health")),
        "{stderr}"
    );
}
