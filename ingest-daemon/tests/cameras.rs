//! `[[camera]]` sources end to end against a real RTSP server (GStreamer's gst-rtsp-server
//! from Debian, through test-support's `RtspServer`), the daemon binary and its local API.
//!
//! - several cameras at once, over TCP and UDP, H.264 and H.265: frames arrive at the rate
//!   the server sends, with its keyframe interval;
//! - the server is killed and restarted again and again: its cameras are back within 10 s
//!   with one RTSP connection each, and a camera on another server never stops;
//! - a clip with 10 s pre-roll and 5 s post-roll is a playable MP4 (ffprobe, ffmpeg);
//! - the ONVIF metadata track's scripted documents become the expected volumes per lane.

// Helpers outside #[test] fns panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ingest_daemon::spool::{RecordClass, Spool, SpoolConfig};
use test_support::{RtspServer, free_port};

use common::{http_get, metric_value, wait_exit};

/// A daemon with a temporary configuration of cameras.
struct Edge {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Edge {
    /// Starts a daemon whose `[[camera]]` tables are `cameras`.
    fn start(cameras: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            r#"
[node]
edge_id = "test-edge"

[http]
listen = "127.0.0.1:{port}"

[clips]
dir = "{clips}"
max_bytes = "64MiB"

{cameras}"#,
            clips = dir.path().join("clips").display()
        );
        std::fs::write(dir.path().join("edge.toml"), config).unwrap();
        let mut edge = Self {
            dir,
            port,
            child: None,
        };
        edge.spawn();
        edge
    }

    /// Starts `run` on the edge's configuration (again).
    fn spawn(&mut self) {
        let dir = self.dir.path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
            .current_dir(dir)
            .env_remove("INGEST__SPOOL__DIR")
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--config")
            .arg(dir.join("edge.toml"))
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn clips_dir(&self) -> PathBuf {
        self.dir.path().join("clips")
    }

    fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    }

    fn camera(&self, metric: &str, camera: &str) -> Option<f64> {
        metric_value(&self.metrics(), &format!("{metric}{{source=\"{camera}\"}}"))
    }

    fn frames(&self, camera: &str) -> f64 {
        let series = format!("ingest_source_frames_total{{source=\"{camera}\",kind=\"camera\"}}");
        metric_value(&self.metrics(), &series).unwrap_or(0.0)
    }

    fn wait(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if cond() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{what} not within {limit:?}\nmetrics:\n{}\nlog:\n{}",
            self.metrics(),
            self.log()
        );
    }

    fn wait_up(&self, camera: &str) {
        self.wait(
            &format!("camera {camera} up"),
            Duration::from_secs(30),
            || self.camera("ingest_camera_up", camera) == Some(1.0),
        );
    }

    /// SIGTERM, then a clean exit.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(20));
        assert!(status.success(), "{status}\n{}", self.log());
    }

    /// Road lane → total volume of the spooled samples.
    fn lane_volumes(&self) -> BTreeMap<u16, u64> {
        let spool = Spool::open(
            self.dir.path().join("spool"),
            SpoolConfig::with_max_total_bytes(64 << 20),
        )
        .unwrap();
        let mut out = BTreeMap::new();
        for r in spool.iter(RecordClass::Sample, 0) {
            let s = r.unwrap().sample().unwrap().unwrap();
            assert_eq!(s.detector_id, "cam-onvif");
            *out.entry(s.lane).or_default() += u64::from(s.volume.unwrap_or(0));
        }
        out
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn camera(id: &str, url: &str, extra: &str) -> String {
    format!("[[camera]]\nid = \"{id}\"\nurl = \"{url}\"\ndown_after_s = 3\n{extra}\n")
}

/// Established TCP connections from this host to `port` (the RTSP connections of the
/// daemon's sessions: with TCP and with UDP transport alike, one per live session).
fn connections_to(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f
                .get(2)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && f.get(3) == Some(&"01") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn several_cameras_over_tcp_and_udp_arrive_at_the_served_rate() {
    let server = RtspServer::new();
    let fps = f64::from(server.settings().fps);
    let cameras = [
        camera("cam-tcp", &server.url("h264"), ""),
        camera("cam-udp", &server.url("h264b"), "transport = \"udp\""),
        camera("cam-h265", &server.url("h265"), ""),
    ]
    .concat();
    let edge = Edge::start(&cameras);
    let ids = ["cam-tcp", "cam-udp", "cam-h265"];
    for id in ids {
        edge.wait_up(id);
    }
    // Let the first rate window and keyframe interval settle.
    edge.wait("rates measured", Duration::from_secs(15), || {
        ids.iter().all(|id| {
            edge.camera("ingest_camera_fps", id)
                .is_some_and(|f| f > 0.0)
                && edge
                    .camera("ingest_camera_keyframe_interval_seconds", id)
                    .is_some_and(|k| k > 0.0)
        })
    });
    let before: Vec<f64> = ids.iter().map(|id| edge.frames(id)).collect();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(6));
    let secs = t0.elapsed().as_secs_f64();
    for (id, before) in ids.iter().zip(before) {
        let got = edge.frames(id) - before;
        let want = fps * secs;
        assert!(
            (got - want).abs() <= want * 0.1,
            "{id}: {got} frames in {secs:.1} s, the server sends {want:.0}\n{}",
            edge.metrics()
        );
        let measured = edge.camera("ingest_camera_fps", id).unwrap();
        assert!((measured - fps).abs() <= 2.5, "{id}: fps {measured}");
        let kf = edge
            .camera("ingest_camera_keyframe_interval_seconds", id)
            .unwrap();
        let gop_s = f64::from(server.settings().gop) / fps;
        assert!((kf - gop_s).abs() <= 0.25, "{id}: keyframe interval {kf}");
        let kbps = edge
            .camera("ingest_camera_bitrate_bits_per_second", id)
            .unwrap()
            / 1000.0;
        assert!(kbps > 50.0, "{id}: {kbps} kbit/s");
        assert_eq!(edge.camera("ingest_camera_live_sessions", id), Some(1.0));
    }
    // `status` shows the cameras' health.
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
        .args(["status", "--config"])
        .arg(edge.dir.path().join("edge.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ids {
        assert!(text.contains(id), "{text}");
    }
    assert!(text.contains("fps"), "{text}");
}

#[test]
fn cameras_come_back_after_their_server_is_killed_and_the_others_never_stop() {
    let flaky = RtspServer::new();
    let steady = RtspServer::new();
    let cameras = [
        camera("cam-a", &flaky.url("h264"), ""),
        camera("cam-b", &flaky.url("h264b"), "transport = \"udp\""),
        camera("cam-steady", &steady.url("h264"), ""),
    ]
    .concat();
    let edge = Edge::start(&cameras);
    for id in ["cam-a", "cam-b", "cam-steady"] {
        edge.wait_up(id);
    }
    for round in 0..3 {
        flaky.kill();
        let steady_before = edge.frames("cam-steady");
        edge.wait("cam-a and cam-b down", Duration::from_secs(15), || {
            edge.camera("ingest_camera_up", "cam-a") == Some(0.0)
                && edge.camera("ingest_camera_up", "cam-b") == Some(0.0)
        });
        let (code, health) = http_get(edge.port, "/health").unwrap();
        assert_eq!(code, 200, "{health}");
        assert!(health.contains("camera cam-a down"), "{health}");
        assert!(health.contains(r#""status":"degraded""#), "{health}");
        flaky.start();
        let restarted = Instant::now();
        edge.wait("cam-a and cam-b back", Duration::from_secs(10), || {
            edge.camera("ingest_camera_live_sessions", "cam-a") == Some(1.0)
                && edge.camera("ingest_camera_live_sessions", "cam-b") == Some(1.0)
                && edge.camera("ingest_camera_up", "cam-a") == Some(1.0)
                && edge.camera("ingest_camera_up", "cam-b") == Some(1.0)
        });
        let back = restarted.elapsed();
        eprintln!(
            "round {round}: back {:.1} s after the restart",
            back.as_secs_f64()
        );
        assert!(
            edge.frames("cam-steady") > steady_before,
            "round {round}: the camera on the other server stopped"
        );
        assert_eq!(edge.camera("ingest_camera_up", "cam-steady"), Some(1.0));
        // One RTSP connection per camera of the restarted server, none left over.
        edge.wait("one connection per camera", Duration::from_secs(5), || {
            connections_to(flaky.port()) == 2
        });
    }
    assert_eq!(connections_to(steady.port()), 1);
    let reconnects = edge
        .camera("ingest_camera_reconnects_total", "cam-steady")
        .unwrap();
    assert_eq!(reconnects, 0.0, "the steady camera never reconnected");
}

fn ffprobe(path: &Path, entry: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            entry,
        ])
        .args(["-of", "default=noprint_wrappers=1:nokey=1"])
        .arg(path)
        .output()
        .expect("ffprobe (Debian package ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `ffmpeg -v error -i CLIP -f null -` succeeds and prints nothing.
fn assert_decodes_cleanly(path: &Path) {
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && errors.trim().is_empty(),
        "{}: decode errors: {errors}",
        path.display()
    );
}

#[test]
fn a_clip_with_pre_and_post_roll_is_a_playable_mp4() {
    let server = RtspServer::new();
    let gop_s = f64::from(server.settings().gop) / f64::from(server.settings().fps);
    let cameras = [
        camera(
            "cam-clip",
            &server.url("h264"),
            "pre_event_s = 10\npost_event_s = 5\nmax_bitrate_kbps = 2000",
        ),
        camera(
            "cam-hevc",
            &server.url("h265"),
            "pre_event_s = 3\npost_event_s = 1",
        ),
    ]
    .concat();
    let edge = Edge::start(&cameras);
    edge.wait_up("cam-clip");
    edge.wait("10 s of video in the ring", Duration::from_secs(30), || {
        edge.camera("ingest_camera_ring_seconds", "cam-clip")
            .is_some_and(|s| s >= 10.5)
    });
    let body = r#"{"camera":"cam-clip","pre_s":10,"post_s":5}"#;
    let (code, answer) = common::http_post(edge.port, "/clips", body).unwrap();
    assert_eq!(code, 202, "{answer}");
    let triggered = Instant::now();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let name = answer["clip"].as_str().unwrap().to_owned();
    let path = edge.clips_dir().join(&name);
    edge.wait("the clip", Duration::from_secs(15), || path.exists());
    let finalised = triggered.elapsed().as_secs_f64();
    assert!(
        finalised <= 5.0 + 2.0 + 0.5,
        "finalised {finalised:.1} s after the trigger"
    );
    // No temporary file is left beside it.
    let files: Vec<_> = std::fs::read_dir(edge.clips_dir()).unwrap().collect();
    assert_eq!(files.len(), 1);

    assert_eq!(ffprobe(&path, "stream=codec_name"), "h264");
    let duration: f64 = ffprobe(&path, "format=duration").parse().unwrap();
    assert!(
        (duration - 15.0).abs() <= gop_s + 0.1,
        "duration {duration} s, want 15 s within a keyframe interval ({gop_s} s)"
    );
    eprintln!("clip {name}: {duration:.2} s, finalised {finalised:.2} s after the trigger");
    assert_decodes_cleanly(&path);

    // Listed and downloadable over the local API.
    let (code, list) = http_get(edge.port, "/clips").unwrap();
    assert_eq!(code, 200);
    assert!(list.contains(&name), "{list}");
    let (code, _) = http_get(edge.port, "/clips/..%2Fedge.toml").unwrap();
    assert_eq!(code, 400);
    let bytes = common::http_get_bytes(edge.port, &format!("/clips/{name}")).unwrap();
    assert_eq!(bytes, std::fs::read(&path).unwrap());
    // H.265 clips too.
    let (code, answer) =
        common::http_post(edge.port, "/clips", r#"{"camera":"cam-hevc"}"#).unwrap();
    assert_eq!(code, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let hevc = edge.clips_dir().join(answer["clip"].as_str().unwrap());
    edge.wait("the H.265 clip", Duration::from_secs(10), || hevc.exists());
    assert_eq!(ffprobe(&hevc, "stream=codec_name"), "hevc");
    let hevc_s: f64 = ffprobe(&hevc, "format=duration").parse().unwrap();
    assert!(
        (hevc_s - 4.0).abs() <= gop_s + 0.1,
        "H.265 clip of {hevc_s} s"
    );
    assert_decodes_cleanly(&hevc);

    // Bad requests are refused, naming the field.
    let (code, answer) =
        common::http_post(edge.port, "/clips", r#"{"camera":"cam-clip","post_s":"x"}"#).unwrap();
    assert_eq!(code, 400);
    assert!(answer.contains("post_s"), "{answer}");
    let (code, answer) = common::http_post(
        edge.port,
        "/clips",
        r#"{"camera":"cam-clip","at":"2999-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(code, 400);
    assert!(answer.contains("at:"), "{answer}");
    // An unknown camera is refused, naming the field.
    let (code, answer) = common::http_post(edge.port, "/clips", r#"{"camera":"nope"}"#).unwrap();
    assert_eq!(code, 404);
    assert!(answer.contains("camera"), "{answer}");

    // The CLI asks the same API and waits for the file.
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
        .args([
            "clip", "cam-clip", "--pre", "2", "--post", "1", "--wait", "--config",
        ])
        .arg(edge.dir.path().join("edge.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(printed.exists(), "{}", printed.display());
    let short: f64 = ffprobe(&printed, "format=duration").parse().unwrap();
    assert!((short - 3.0).abs() <= gop_s + 0.1, "duration {short}");
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
        .args(["clip", "no-such-camera", "--config"])
        .arg(edge.dir.path().join("edge.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn onvif_metadata_becomes_volumes_per_lane() {
    let server = RtspServer::new();
    let mut edge = Edge::start(&camera(
        "cam-onvif",
        &server.url("onvif"),
        "metadata = true\n\
         lanes = { \"Lane1Crossing\" = 1, \"Lane2Crossing\" = 2, \"Lane3Count\" = 3 }",
    ));
    edge.wait_up("cam-onvif");
    // 12 + 7 + 5 vehicles in the script; the garbage document is refused and counted.
    edge.wait("every scripted vehicle", Duration::from_secs(30), || {
        metric_value(
            &edge.metrics(),
            "ingest_source_events_total{source=\"cam-onvif\",kind=\"camera\"}",
        ) == Some(24.0)
    });
    assert_eq!(
        edge.camera("ingest_camera_metadata_errors_total", "cam-onvif"),
        Some(1.0)
    );
    // The Human crossing is not counted; every crossing document describes its object.
    assert_eq!(
        edge.camera("ingest_camera_non_vehicle_crossings_total", "cam-onvif"),
        Some(1.0)
    );
    assert_eq!(
        edge.camera("ingest_camera_vehicle_objects_total", "cam-onvif"),
        Some(19.0)
    );
    edge.stop();
    let volumes = edge.lane_volumes();
    eprintln!("volumes per lane: {volumes:?}");
    assert_eq!(
        volumes,
        BTreeMap::from([(1, 12), (2, 7), (3, 5)]),
        "{}",
        edge.log()
    );
}

#[test]
fn credentials_open_the_stream_and_never_reach_the_log() {
    let server = RtspServer::builder()
        .credentials("ingest", "s3cret-camera-pw")
        .start();
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("camera-password");
    std::fs::write(&pw_file, "s3cret-camera-pw\n").unwrap();
    let cameras = [
        camera(
            "cam-auth",
            &server.url("h264"),
            &format!(
                "username = \"ingest\"\npassword_file = \"{}\"",
                pw_file.display()
            ),
        ),
        camera(
            "cam-wrong",
            &server.url("h264b"),
            "username = \"ingest\"\npassword = \"wrong-pw-123\"",
        ),
    ]
    .concat();
    let edge = Edge::start(&cameras);
    edge.wait_up("cam-auth");
    edge.wait("cam-wrong refused twice", Duration::from_secs(20), || {
        metric_value(
            &edge.metrics(),
            "ingest_source_session_errors_total{source=\"cam-wrong\",kind=\"camera\"}",
        )
        .is_some_and(|n| n >= 2.0)
    });
    assert_eq!(edge.camera("ingest_camera_up", "cam-wrong"), Some(0.0));
    let log = edge.log();
    assert!(log.contains("cam-wrong"), "{log}");
    assert!(!log.contains("s3cret-camera-pw"), "{log}");
    assert!(!log.contains("wrong-pw-123"), "{log}");
}

#[test]
fn a_hung_camera_is_reported_down_by_its_silence_and_comes_back() {
    let server = RtspServer::new();
    let edge = Edge::start(&camera("cam-hung", &server.url("h264"), ""));
    edge.wait_up("cam-hung");
    server.pause();
    // down_after_s = 3: the connection stays open, only the frames stop.
    edge.wait("cam-hung down", Duration::from_secs(8), || {
        edge.camera("ingest_camera_up", "cam-hung") == Some(0.0)
            && edge.camera("ingest_camera_live_sessions", "cam-hung") == Some(0.0)
    });
    let (_, health) = http_get(edge.port, "/health").unwrap();
    // (Its only source failing, the daemon reports failing rather than degraded.)
    assert!(health.contains(r#""camera":{"up":false"#), "{health}");
    assert!(health.contains("every source is failing"), "{health}");
    server.resume();
    edge.wait("cam-hung back", Duration::from_secs(15), || {
        edge.camera("ingest_camera_up", "cam-hung") == Some(1.0)
    });
    edge.wait("one connection", Duration::from_secs(10), || {
        connections_to(server.port()) == 1
    });
}

#[test]
fn rtp_timestamp_jumps_start_a_new_timeline_without_dropping_the_session() {
    let server = RtspServer::new();
    let gop_s = f64::from(server.settings().gop) / f64::from(server.settings().fps);
    let edge = Edge::start(&camera(
        "cam-jumpy",
        &server.url("jumpy"),
        "pre_event_s = 10\npost_event_s = 2\nmax_bitrate_kbps = 2000",
    ));
    edge.wait_up("cam-jumpy");
    // An hour forward at 4 s, two hours back at 8 s.
    edge.wait("two timestamp jumps", Duration::from_secs(20), || {
        edge.camera("ingest_camera_timestamp_jumps_total", "cam-jumpy")
            .is_some_and(|n| n >= 2.0)
    });
    edge.wait("10 s in the ring", Duration::from_secs(10), || {
        edge.camera("ingest_camera_ring_seconds", "cam-jumpy")
            .is_some_and(|s| s >= 10.0)
    });
    assert_eq!(
        edge.camera("ingest_camera_reconnects_total", "cam-jumpy"),
        Some(0.0),
        "a jump must not end the session\n{}",
        edge.log()
    );
    // A clip across both jumps has continuous timestamps: it plays, at its real length.
    let (code, answer) =
        common::http_post(edge.port, "/clips", r#"{"camera":"cam-jumpy"}"#).unwrap();
    assert_eq!(code, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let path = edge.clips_dir().join(answer["clip"].as_str().unwrap());
    edge.wait("the clip", Duration::from_secs(10), || path.exists());
    let duration: f64 = ffprobe(&path, "format=duration").parse().unwrap();
    assert!(
        (duration - 12.0).abs() <= gop_s + 0.2,
        "duration {duration} s, want 12 s"
    );
    assert_decodes_cleanly(&path);
}

#[test]
fn a_clip_cut_short_by_a_crash_is_absent_not_broken() {
    let server = RtspServer::new();
    let mut edge = Edge::start(&camera(
        "cam-crash",
        &server.url("h264"),
        "pre_event_s = 3\npost_event_s = 30",
    ));
    edge.wait_up("cam-crash");
    edge.wait("3 s in the ring", Duration::from_secs(15), || {
        edge.camera("ingest_camera_ring_seconds", "cam-crash")
            .is_some_and(|s| s >= 3.0)
    });
    let (code, answer) =
        common::http_post(edge.port, "/clips", r#"{"camera":"cam-crash"}"#).unwrap();
    assert_eq!(code, 202, "{answer}");
    // The writer has the pre-roll on disk under a temporary name.
    let tmp_exists = || {
        std::fs::read_dir(edge.clips_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .unwrap_or(false)
    };
    edge.wait("the temporary clip", Duration::from_secs(5), tmp_exists);
    edge.kill();
    let clips = |edge: &Edge| {
        std::fs::read_dir(edge.clips_dir())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        clips(&edge).iter().all(|n| !n.ends_with(".mp4")),
        "{:?}",
        clips(&edge)
    );
    // The next start removes the remains.
    edge.spawn();
    edge.wait_up("cam-crash");
    assert!(clips(&edge).is_empty(), "{:?}", clips(&edge));
    let (code, list) = http_get(edge.port, "/clips").unwrap();
    assert_eq!((code, list.as_str()), (200, "[]"));
}
