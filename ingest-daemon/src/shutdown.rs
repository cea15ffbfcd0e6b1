//! Stopping: what asks the daemon to stop, and the signals it listens to.
//!
//! The first SIGTERM or SIGINT (or the end of `run --for`) starts a drain: sources stop,
//! the aggregator drains their rings and flushes its open bins, the spool writer appends
//! and fsyncs, every task is joined, and the process exits 0. The drain has a deadline
//! ([`DRAIN_DEADLINE`]); a second signal during it exits at once with the shell's code for
//! that signal (130 for SIGINT, 143 for SIGTERM): what was appended but not yet fsynced is
//! still in the page cache and survives the exit, only not a power loss.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, warn};

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

/// Waits for `drain` (true = every task finished cleanly), cut short by `second` (another
/// stop signal) or by `deadline`. Returns the process exit code: 0 after a clean drain, 1
/// after a failed or overdue one, 130 / 143 after a second SIGINT / SIGTERM.
pub async fn finish_drain(
    drain: impl Future<Output = bool>,
    second: impl Future<Output = StopSignal>,
    deadline: Duration,
) -> u8 {
    tokio::select! {
        ok = drain => if ok { 0 } else { 1 },
        s = second => {
            warn!("{s} again: exiting now without waiting for the drain");
            s.exit_code()
        }
        () = tokio::time::sleep(deadline) => {
            error!(deadline_s = deadline.as_secs(), "the drain did not finish in time; exiting");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::{pending, ready};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_clean_drain_exits_0_a_failed_one_1() {
        assert_eq!(
            finish_drain(ready(true), pending(), DRAIN_DEADLINE).await,
            0
        );
        assert_eq!(
            finish_drain(ready(false), pending(), DRAIN_DEADLINE).await,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_signal_cuts_the_drain_short() {
        let stuck = pending::<bool>();
        assert_eq!(
            finish_drain(stuck, ready(StopSignal::Term), DRAIN_DEADLINE).await,
            143
        );
        let stuck = pending::<bool>();
        assert_eq!(
            finish_drain(stuck, ready(StopSignal::Int), DRAIN_DEADLINE).await,
            130
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_overdue_drain_gives_up_at_the_deadline() {
        let started = tokio::time::Instant::now();
        assert_eq!(finish_drain(pending(), pending(), DRAIN_DEADLINE).await, 1);
        assert_eq!(started.elapsed(), DRAIN_DEADLINE);
    }
}
