//! systemd's notification protocol (`sd_notify(3)`): `READY=1` once sources and the spool
//! are up, `STATUS=` lines, `WATCHDOG=1` while the pipeline really moves, `STOPPING=1` when
//! the drain starts.
//!
//! The messages are the `sd-notify` crate's [`NotifyState`]s. They are sent on a socket
//! connected once from the `NOTIFY_SOCKET` value that `run` reads with the rest of the
//! environment (the crate's own `notify` would read the process environment on every call).
//! Without `NOTIFY_SOCKET` every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::counters::PipelineCounters;
use crate::metrics::{self, SourceList};

/// How often `STATUS=` is refreshed when no watchdog asks for more.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// A connection to the service manager, or nothing.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<UnixDatagram>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` in `env` (a path, or `@name` for an abstract socket).
    pub fn from_env(env: &[(String, String)]) -> Self {
        let Some((_, path)) = env.iter().find(|(k, _)| k == "NOTIFY_SOCKET") else {
            return Self::default();
        };
        match connect(path) {
            Ok(socket) => Self {
                socket: Some(socket),
            },
            Err(e) => {
                warn!(error = %e, socket = %path, "cannot reach systemd's notify socket");
                Self::default()
            }
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `states`; a failure is logged at debug level (the daemon goes on).
    pub fn send(&self, states: &[NotifyState<'_>]) {
        let Some(socket) = &self.socket else { return };
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(e) = socket.send(msg.as_bytes()) {
            debug!(error = %e, "sd_notify failed");
        }
    }
}

fn connect(path: &str) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.connect_addr(&addr)?;
    } else {
        socket.connect(path)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The watchdog interval systemd expects (`WATCHDOG_USEC`), when meant for this process
/// (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval(env: &[(String, String)]) -> Option<Duration> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(pid) = get("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = get("WATCHDOG_USEC")?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Refreshes `STATUS=` and, with a watchdog, pings `WATCHDOG=1` at half its interval, but
/// only while [`metrics::pipeline_moving`]: a wedged pipeline stops the pings and systemd
/// restarts the daemon. Returns when `stop` is cancelled.
pub async fn keep_alive(
    notifier: Arc<Notifier>,
    watchdog: Option<Duration>,
    counters: Arc<PipelineCounters>,
    sources: SourceList,
    stop: CancellationToken,
) {
    if !notifier.is_enabled() {
        return;
    }
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_moving = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let list = metrics::snapshot(&sources);
        let line = metrics::status_line(&counters, &list);
        notifier.send(&[NotifyState::Status(&line)]);
        if watchdog.is_some() {
            let moving = metrics::pipeline_moving(&counters);
            if moving {
                notifier.send(&[NotifyState::Watchdog]);
            } else if was_moving {
                warn!("the pipeline is not moving: no more watchdog pings");
            }
            was_moving = moving;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_needs_usec_and_our_pid() {
        let env = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(watchdog_interval(&env(&[])), None);
        assert_eq!(
            watchdog_interval(&env(&[("WATCHDOG_USEC", "2000000")])),
            Some(Duration::from_secs(2))
        );
        let pid = std::process::id().to_string();
        assert!(
            watchdog_interval(&env(&[("WATCHDOG_USEC", "10"), ("WATCHDOG_PID", &pid)])).is_some()
        );
        assert_eq!(
            watchdog_interval(&env(&[("WATCHDOG_USEC", "10"), ("WATCHDOG_PID", "1")])),
            None
        );
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&[("NOTIFY_SOCKET".into(), path.display().to_string())]);
        n.send(&[NotifyState::Ready, NotifyState::Status("x")]);
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=x\n");
        Notifier::default().send(&[NotifyState::Ready]);
    }

    /// Runs `keep_alive` for a while with a 100 ms watchdog; returns the messages sent.
    async fn messages_while(counters: Arc<PipelineCounters>, beating: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let n = Notifier::from_env(&[("NOTIFY_SOCKET".into(), path.display().to_string())]);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_alive(
            Arc::new(n),
            Some(Duration::from_millis(100)),
            Arc::clone(&counters),
            SourceList::default(),
            stop.clone(),
        ));
        for _ in 0..10 {
            if beating {
                counters.aggregator_beat.beat();
                counters.spool_writer_beat.beat();
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(len) = server.recv(&mut buf) {
            out.extend(
                String::from_utf8_lossy(&buf[..len])
                    .lines()
                    .map(str::to_owned),
            );
        }
        out
    }

    #[tokio::test]
    async fn the_watchdog_is_pinged_only_while_the_pipeline_moves() {
        let moving = messages_while(Arc::default(), true).await;
        assert!(moving.iter().any(|m| m == "WATCHDOG=1"), "{moving:?}");
        assert!(
            moving.iter().any(|m| m.starts_with("STATUS=")),
            "{moving:?}"
        );
        // Never beaten: as good as wedged.
        let wedged = messages_while(Arc::default(), false).await;
        assert!(!wedged.iter().any(|m| m == "WATCHDOG=1"), "{wedged:?}");
        assert!(
            wedged.iter().any(|m| m.starts_with("STATUS=")),
            "{wedged:?}"
        );
    }
}
