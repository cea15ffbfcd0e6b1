//! `ingest-daemon status`: what the running daemon says about itself, for a person at the box.
//!
//! It asks the daemon's own `GET /health` on `[http] listen` (plain HTTP/1.1 over a
//! [`TcpStream`] with short timeouts: one request does not justify an HTTP client crate) and
//! prints the report as text, or passes the JSON through with `--json`. When nothing
//! answers, the caller falls back to the spool's own `spool stat` figures.
//!
//! Exit codes (see [`EXIT_NOT_RUNNING`]): 0 the daemon answers `ok` or `degraded`; 1 it
//! answers `failing` (or answers something that is not its health report); 3 no daemon
//! answers on the address.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;

/// Exit code of `status` when no daemon answers (as in LSB `status` actions: "not running").
pub const EXIT_NOT_RUNNING: u8 = 3;
/// How long `status` waits to connect, and then for the answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest `/health` answer read (a box has a handful of sources).
const MAX_RESPONSE: u64 = 1 << 20;

/// What came back from `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub code: u16,
    pub body: String,
}

/// `GET path` on `addr`. `Ok(None)` when nothing accepts the connection in time (no daemon);
/// `Err` when something accepts but the exchange fails or is not HTTP.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<Option<HttpAnswer>> {
    http_request(addr, "GET", path, None)
}

/// `method path` on `addr` with an optional JSON body; as [`http_get`].
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> io::Result<Option<HttpAnswer>> {
    let mut stream = match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let body = json.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("the answer is not HTTP"))?;
    let mut status_line = head.lines().next().unwrap_or_default().split_whitespace();
    if !status_line.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("the answer is not HTTP"));
    }
    let code = status_line
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("the answer has no status code"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(bad("a chunked answer (not the daemon's /health)"));
    }
    Ok(Some(HttpAnswer {
        code,
        body: body.to_owned(),
    }))
}

/// The `/health` body as `status` reads it (see [`crate::metrics::HealthReport`]); fields
/// a newer or older daemon leaves out read as absent.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub sources: Vec<SourceView>,
    pub aggregator: Option<TaskView>,
    pub spool: Option<SpoolView>,
    /// Absent when the daemon has no uplink (or predates it).
    pub uplink: Option<UplinkView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UplinkView {
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub lag_s: f64,
    #[serde(default)]
    pub rows_total: u64,
    #[serde(default)]
    pub batches_total: u64,
    #[serde(default)]
    pub errors_total: u64,
    #[serde(default)]
    pub consecutive_errors: u64,
    pub last_commit_age_s: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SourceView {
    pub id: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub state: String,
    pub last_event_age_s: Option<f64>,
    #[serde(default)]
    pub consecutive_errors: u64,
    #[serde(default)]
    pub errors_total: u64,
    #[serde(default)]
    pub events_total: u64,
    /// Stream health, for cameras.
    #[serde(default)]
    pub camera: Option<CameraStatus>,
}

/// A camera's stream health as `/health` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct CameraStatus {
    pub up: bool,
    #[serde(default)]
    pub fps: f64,
    #[serde(default)]
    pub bitrate_kbps: f64,
    pub keyframe_interval_s: Option<f64>,
    pub last_frame_age_s: Option<f64>,
    #[serde(default)]
    pub reconnects: u64,
    #[serde(default)]
    pub rtp_lost_total: u64,
    #[serde(default)]
    pub timestamp_jumps_total: u64,
    #[serde(default)]
    pub ring_seconds: f64,
    #[serde(default)]
    pub clips_total: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskView {
    pub alive: bool,
    pub last_beat_age_s: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpoolView {
    pub writer: Option<TaskView>,
    pub bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub sample_records: Option<u64>,
    #[serde(default)]
    pub durable_seq: u64,
    pub acked_seq: Option<u64>,
    pub oldest_sample_age_s: Option<f64>,
    pub evicted_unacked_records: Option<u64>,
}

impl Health {
    /// The exit code `status` gives for this report.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.status == "failing")
    }
}

/// An age for people: `4.2 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub fn age(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = secs as u64;
    match s {
        0..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

fn ago(secs: Option<f64>, none: &str) -> String {
    secs.map_or_else(|| none.to_owned(), |s| format!("{} ago", age(s)))
}

/// The text summary of a health report from the daemon on `addr`. `uplink` is the
/// configured uplink host, if any.
pub fn summary(addr: SocketAddr, h: &Health, uplink: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ingest-daemon on {addr}: {}", h.status);
    for r in &h.reasons {
        let _ = writeln!(out, "  - {r}");
    }
    if let Some(a) = &h.aggregator {
        let _ = writeln!(out, "aggregator:     {}", task(a));
    }
    if h.sources.is_empty() {
        let _ = writeln!(out, "sources:        none");
    }
    for s in &h.sources {
        let mut line = format!(
            "source {}: {} {}, last event {}, {} events",
            s.id,
            s.kind,
            s.state,
            ago(s.last_event_age_s, "never"),
            s.events_total
        );
        if s.errors_total > 0 || s.consecutive_errors > 0 {
            let _ = write!(
                line,
                ", {} errors ({} in a row)",
                s.errors_total, s.consecutive_errors
            );
        }
        if s.state == "backoff" {
            line.push_str(", backing off before reconnecting");
        }
        let _ = writeln!(out, "{line}");
        if let Some(c) = &s.camera {
            let _ = writeln!(
                out,
                "  video: {}, {:.1} fps, {:.0} kbit/s, keyframe every {}, last frame {}, \
                 {} reconnects, {} RTP packets lost, {} timestamp jumps, {:.0} s in the ring, {} clips",
                if c.up { "up" } else { "DOWN" },
                c.fps,
                c.bitrate_kbps,
                c.keyframe_interval_s
                    .map_or_else(|| "-".to_owned(), |k| format!("{k:.1} s")),
                ago(c.last_frame_age_s, "never"),
                c.reconnects,
                c.rtp_lost_total,
                c.timestamp_jumps_total,
                c.ring_seconds,
                c.clips_total
            );
        }
    }
    match &h.spool {
        Some(sp) => {
            if let Some(w) = &sp.writer {
                let _ = writeln!(out, "spool writer:   {}", task(w));
            }
            let size = match (sp.bytes, sp.max_bytes) {
                (Some(b), Some(m)) => format!(
                    "{} of {} ({:.1}%)",
                    crate::display::bytes(b),
                    crate::display::bytes(m),
                    b as f64 * 100.0 / m.max(1) as f64
                ),
                (Some(b), None) => crate::display::bytes(b),
                _ => "not measured yet".to_owned(),
            };
            let records = sp
                .sample_records
                .map_or_else(|| "-".to_owned(), |n| n.to_string());
            let _ = writeln!(
                out,
                "spool:          {size}, {records} sample records, durable up to #{}",
                sp.durable_seq
            );
            let oldest = match sp.acked_seq {
                // Nothing was ever acknowledged: the oldest sample on disk is unsent.
                Some(0) | None => ago(sp.oldest_sample_age_s, "none"),
                Some(seq) => format!(
                    "unknown (acknowledged up to #{seq}; oldest sample on disk {})",
                    ago(sp.oldest_sample_age_s, "none")
                ),
            };
            let _ = writeln!(out, "oldest unsent:  {oldest}");
            if let Some(n) = sp.evicted_unacked_records.filter(|&n| n > 0) {
                let _ = writeln!(
                    out,
                    "                {n} samples evicted before they were sent: lost"
                );
            }
        }
        None => {
            let _ = writeln!(out, "spool:          not reported");
        }
    }
    let uplink = match (uplink, &h.uplink) {
        (host, Some(u)) => format!(
            "{} {}, lag {}, last commit {}; {} samples in {} batches, {} errors{}",
            host.unwrap_or("database"),
            if u.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            age(u.lag_s),
            ago(u.last_commit_age_s, "never"),
            u.rows_total,
            u.batches_total,
            u.errors_total,
            if u.consecutive_errors > 0 {
                format!(" ({} in a row)", u.consecutive_errors)
            } else {
                String::new()
            }
        ),
        (Some(host), None) => {
            format!("{host} is configured, but the daemon reports no uplink: no lag to report")
        }
        (None, None) => {
            "no uplink configured: no lag to report; samples stay in the spool".to_owned()
        }
    };
    let _ = writeln!(out, "uplink:         {uplink}");
    out
}

fn task(t: &TaskView) -> String {
    format!(
        "{}, last beat {}",
        if t.alive { "alive" } else { "STALLED" },
        ago(t.last_beat_age_s, "never")
    )
}

/// The message when no daemon answers on `addr`.
pub fn not_running(addr: SocketAddr) -> String {
    format!("no ingest-daemon answers on {addr} — is it running? `systemctl status ingest-daemon`")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"status":"degraded","reasons":["source b failing"],
        "sources":[{"id":"a","kind":"simulated","state":"running","last_event_age_s":0.4,
        "consecutive_errors":0,"errors_total":0,"events_total":12},
        {"id":"b","kind":"serial","state":"backoff","last_event_age_s":null,
        "consecutive_errors":3,"errors_total":5,"events_total":0}],
        "aggregator":{"alive":true,"last_beat_age_s":0.1},
        "spool":{"writer":{"alive":true,"last_beat_age_s":0.2},"bytes":2048,
        "max_bytes":1048576,"sample_records":7,"durable_seq":9,"acked_seq":0,
        "oldest_sample_age_s":125.0,"evicted_unacked_records":0}}"#;

    #[test]
    fn summary_lists_sources_spool_and_uplink() {
        let h: Health = serde_json::from_str(BODY).unwrap();
        assert_eq!(h.exit_code(), 0);
        let addr: SocketAddr = "127.0.0.1:9108".parse().unwrap();
        let text = summary(addr, &h, None);
        assert!(text.starts_with("ingest-daemon on 127.0.0.1:9108: degraded\n"));
        assert!(text.contains("  - source b failing\n"), "{text}");
        assert!(
            text.contains("source a: simulated running, last event 0.4 s ago, 12 events\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "source b: serial backoff, last event never, 0 events, 5 errors (3 in a row), \
                 backing off"
            ),
            "{text}"
        );
        assert!(
            text.contains("spool:          2.0 KiB of 1.0 MiB (0.2%), 7 sample records"),
            "{text}"
        );
        assert!(text.contains("oldest unsent:  2 min 5 s ago\n"), "{text}");
        assert!(
            text.contains("uplink:         no uplink configured"),
            "{text}"
        );
    }

    #[test]
    fn failing_exits_1() {
        let h: Health = serde_json::from_str(r#"{"status":"failing"}"#).unwrap();
        assert_eq!(h.exit_code(), 1);
    }

    #[test]
    fn ages_for_people() {
        assert_eq!(age(4.24), "4.2 s");
        assert_eq!(age(185.0), "3 min 5 s");
        assert_eq!(age(7800.0), "2 h 10 min");
        assert_eq!(age(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
    }

    #[test]
    fn nothing_listening_is_none() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(http_get(addr, "/health").unwrap().is_none());
    }
}
