//! A throwaway RTSP server: GStreamer's gst-rtsp-server driven by `scripts/rtsp-server.py`
//! under Debian's `/usr/bin/python3` (the GStreamer bindings load only there; another
//! python3 may come first on `PATH`). Live test video (x264/x265, IDR keyframes) at a set
//! frame rate, bitrate and keyframe interval on several mounts, and a mount with an ONVIF
//! metadata track whose RTP payload the script builds itself (see the script for mounts and
//! the scripted analytics documents).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use crate::proc::{self, ChildSlot, Reaper, ScratchDir, log_tail, sh_quote};
use crate::{free_port, settings};

const PYTHON: &str = "/usr/bin/python3";
const PACKAGES: &str = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base \
                        gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad";

/// Stream settings of an [`RtspServer`].
#[derive(Debug, Clone)]
pub struct RtspServerBuilder {
    pub fps: u32,
    /// Frames between keyframes.
    pub gop: u32,
    pub kbps: u32,
    /// Basic authentication (user, password).
    pub credentials: Option<(String, String)>,
    /// A pre-encoded H.264 elementary stream served in a loop on `/file`.
    pub loop_file: Option<PathBuf>,
}

impl Default for RtspServerBuilder {
    fn default() -> Self {
        Self {
            fps: 25,
            gop: 25,
            kbps: 500,
            credentials: None,
            loop_file: None,
        }
    }
}

impl RtspServerBuilder {
    /// Requires basic authentication with this user and password.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    pub fn start(self) -> RtspServer {
        RtspServer::start_with(self)
    }
}

/// A running test RTSP server on a free loopback port (the same across restarts).
#[derive(Debug)]
pub struct RtspServer {
    settings: RtspServerBuilder,
    port: AtomicU16,
    log: PathBuf,
    pidfile: PathBuf,
    child: ChildSlot,
    reaper: Mutex<Option<Reaper>>,
    dir: ScratchDir,
}

impl RtspServer {
    /// 25 fps, a keyframe a second, 500 kbit/s.
    pub fn new() -> Self {
        RtspServerBuilder::default().start()
    }

    pub fn builder() -> RtspServerBuilder {
        RtspServerBuilder::default()
    }

    /// The path of the server script (for benchmarks that run it themselves).
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rtsp-server.py")
    }

    fn start_with(settings: RtspServerBuilder) -> Self {
        assert!(
            Path::new(PYTHON).exists(),
            "test-support: {PYTHON} not found: install python3-gi and {PACKAGES}"
        );
        let dir = ScratchDir::new("test-rtsp-");
        let pidfile = dir.path().join("server.pid");
        let cleanup = format!(
            "[ -f {p} ] && kill -s KILL \"$(cat {p})\" 2>/dev/null; {}",
            proc::reaper_rm(dir.path()),
            p = sh_quote(&pidfile),
        );
        let reaper = Reaper::spawn(&cleanup, None, dir.path());
        let server = Self {
            settings,
            port: AtomicU16::new(free_port()),
            log: dir.path().join("server.log"),
            pidfile,
            child: ChildSlot::default(),
            reaper: Mutex::new(Some(reaper)),
            dir,
        };
        server.start();
        server
    }

    /// `rtsp://127.0.0.1:PORT/MOUNT`.
    pub fn url(&self, mount: &str) -> String {
        format!(
            "rtsp://127.0.0.1:{}/{}",
            self.port(),
            mount.trim_start_matches('/')
        )
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    pub fn settings(&self) -> &RtspServerBuilder {
        &self.settings
    }

    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    /// The server's log (appended across restarts).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Kills the server (SIGKILL): every session dies with it.
    pub fn kill(&self) {
        if self.child.stop("KILL", Duration::from_secs(5)) {
            let _ = fs::remove_file(&self.pidfile);
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing flows, as with a hung
    /// camera. [`resume`](Self::resume) lets it go on.
    pub fn pause(&self) {
        if let Some(child) = self.child.lock().as_ref() {
            proc::signal(child.id(), "STOP");
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = self.child.lock().as_ref() {
            proc::signal(child.id(), "CONT");
        }
    }

    /// Starts the server (again) on the same port; waits until it listens. No-op if running.
    pub fn start(&self) {
        let mut slot = self.child.lock();
        if let Some(child) = slot.as_mut() {
            if let Ok(None) = child.try_wait() {
                return;
            }
            *slot = None;
        }
        let s = &self.settings;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("test-support: cannot open {}: {e}", self.log.display()));
        let mut cmd = Command::new(PYTHON);
        cmd.arg(Self::script())
            .args(["--port", &self.port().to_string()])
            .args(["--fps", &s.fps.to_string()])
            .args(["--gop", &s.gop.to_string()])
            .args(["--kbps", &s.kbps.to_string()])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some((u, p)) = &s.credentials {
            cmd.args(["--user", u, "--password", p]);
        }
        if let Some(f) = &s.loop_file {
            cmd.arg("--loop-file").arg(f);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("test-support: cannot run {PYTHON}: {e}"));
        let _ = fs::write(&self.pidfile, child.id().to_string());
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.starts_with("READY") {
                        let _ = tx.send(());
                    }
                }
            }
        });
        if rx.recv_timeout(settings::start_timeout()).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "test-support: the RTSP server did not come up (needs {PACKAGES}):\n{}",
                self.log_tail(30)
            );
        }
        *slot = Some(child);
    }
}

impl Default for RtspServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
        proc::print_log_if_asked("rtsp server", &self.log);
        if let Some(reaper) = self.reaper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            reaper.finish();
        }
    }
}
