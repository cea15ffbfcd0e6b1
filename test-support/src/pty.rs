//! Two linked pseudo-terminals standing in for a serial line.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::proc::{self, Reaper, ScratchDir, log_tail, poll, require, sh_quote, stop_child};
use crate::settings;

/// A pair of pseudo-terminals joined by `socat`: bytes written to [`a`](Self::a) are read
/// at [`b`](Self::b) and the other way round, like the two ends of a null-modem cable.
/// Give one path to the code under test as its serial device and drive the other end
/// from the test. Both are raw (no echo, no line editing, no CR/LF mapping) as `socat`
/// sets them up.
///
/// Ptys ignore the baud rate and framing (setting them succeeds, changes nothing), do no
/// flow control and never lose bytes to line noise: timing and corruption have to be
/// simulated by the test itself. `socat` is killed and the links removed on drop.
#[derive(Debug)]
pub struct PtyPair {
    child: Child,
    a: PathBuf,
    b: PathBuf,
    log: PathBuf,
    reaper: Option<Reaper>,
    /// Last: removed after `Drop::drop` killed socat.
    dir: ScratchDir,
}

impl PtyPair {
    /// Starts `socat` and returns once both ends exist and it is relaying.
    pub fn new() -> Self {
        let socat = require("socat", "socat");
        let dir = ScratchDir::new("test-pty-");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let log = dir.path().join("socat.log");
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("test-support: open {}: {e}", log.display()));
        let mut child = Command::new(&socat)
            .args(["-d", "-d"])
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("test-support: cannot start {}: {e}", socat.display()));
        let cleanup = format!(
            "kill -s KILL {} 2>/dev/null; {}",
            child.id(),
            proc::reaper_rm(dir.path())
        );
        let reaper = Reaper::spawn(&cleanup, None, dir.path());
        let timeout = settings::start_timeout();
        let up = poll(timeout, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status.to_string()));
            }
            let relaying = a.exists()
                && b.exists()
                && proc::log_since(&log, 0).contains("starting data transfer loop");
            relaying.then_some(Ok(()))
        });
        if up != Some(Ok(())) {
            stop_child(&mut child, "KILL", Duration::from_secs(5));
            reaper.finish();
            panic!(
                "test-support: socat did not set up the pty pair within {timeout:?} ({}). \
                 Log {}:\n{}",
                match up {
                    Some(Err(status)) => format!("exited: {status}"),
                    _ => "timed out".to_owned(),
                },
                sh_quote(&log),
                log_tail(&log, 20)
            );
        }
        Self {
            child,
            a,
            b,
            log,
            reaper: Some(reaper),
            dir,
        }
    }

    /// One end (a symlink to `/dev/pts/N`).
    pub fn a(&self) -> &Path {
        &self.a
    }

    /// The other end.
    pub fn b(&self) -> &Path {
        &self.b
    }

    /// The temp dir holding the links and socat's log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens end a for reading and writing.
    pub fn open_a(&self) -> File {
        open_rw(&self.a)
    }

    /// Opens end b for reading and writing.
    pub fn open_b(&self) -> File {
        open_rw(&self.b)
    }
}

impl Default for PtyPair {
    fn default() -> Self {
        Self::new()
    }
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("test-support: open pty {}: {e}", path.display()))
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        stop_child(&mut self.child, "TERM", Duration::from_secs(5));
        if let Some(reaper) = self.reaper.take() {
            reaper.finish();
        }
        proc::print_log_if_asked("socat", &self.log);
    }
}
