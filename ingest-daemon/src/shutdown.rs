//! Stopping: what asks the daemon to stop, and the signals it listens to.
//!
//! The first SIGTERM or SIGINT (or the end of `run --for`) starts a drain: sources stop,
//! the aggregator drains their rings and flushes its open bins, the spool writer appends
//! and fsyncs, every task is joined, and the process exits 0. The drain has a deadline
//! ([`DRAIN_DEADLINE`]); a second signal during it exits at once with the shell's code for
//! that signal (130 for SIGINT, 143 for SIGTERM): what was appended but not yet fsynced is
//! still in the page cache and survives the exit, only not a power loss.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long a drain may take before the daemon gives up and exits with an error.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A signal that stops the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
}

impl StopSignal {
    /// The exit status of a process killed by this signal, as shells report it.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Int => 128 + 2,
            Self::Term => 128 + 15,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
        })
    }
}

/// Why a drain started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Signal(StopSignal),
    /// `run --for` elapsed.
    TimeUp,
    /// A core task (aggregator, spool writer) ended on its own: an error.
    Failure(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(s) => write!(f, "{s} received"),
            Self::TimeUp => f.write_str("--for time is up"),
            Self::Failure(what) => write!(f, "failure: {what}"),
        }
    }
}

/// SIGTERM and SIGINT, installed once (needs a tokio runtime).
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Term,
            _ = self.int.recv() => StopSignal::Int,
        }
    }
}
