//! A throwaway Mosquitto MQTT broker, and `mosquitto_pub` / `mosquitto_sub` helpers.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::proc::{
    self, ChildSlot, Reaper, ScratchDir, log_since, log_tail, require, sh_quote, stop_child,
};
use crate::settings;

const HOST: &str = "127.0.0.1";
const BROKER_PACKAGE: &str = "mosquitto";
const CLIENTS_PACKAGE: &str = "mosquitto-clients";
/// Starts every `mosquitto_sub -F` output line that carries a message (no `@`, `%` or
/// `\\`: those are format escapes).
const MESSAGE_MARK: &str = "TEST-SUPPORT-MESSAGE";

/// Configures a [`Mosquitto`] before it starts: users (password-file mode) and extra
/// config lines.
#[derive(Debug, Default, Clone)]
pub struct MosquittoBuilder {
    users: Vec<(String, String)>,
    extra: Vec<String>,
}

impl MosquittoBuilder {
    /// Adds a user to the password file (made with `mosquitto_passwd -b`). With at least
    /// one user, anonymous clients are refused. The first user is the one
    /// [`Mosquitto::publish`] and [`Mosquitto::subscribe`] connect as.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Appends a line to the broker config (e.g. `"max_inflight_messages 1"`). Leave the
    /// logging alone: startup is detected by the log's "running" line.
    pub fn config_line(mut self, line: &str) -> Self {
        self.extra.push(line.to_owned());
        self
    }

    /// Writes the config and starts the broker; returns once it accepts TCP connections.
    pub fn start(self) -> Mosquitto {
        Mosquitto::start_with(self)
    }
}

/// A throwaway Mosquitto broker on a free port on 127.0.0.1, with its own config,
/// persistence database and log in a temp dir. Killed and removed on drop.
///
/// Persistence is on (`persistence_location` in the temp dir), so persistent sessions
/// (clean session false) and their queued QoS 1/2 messages survive
/// [`restart`](Self::restart) (SIGTERM makes the broker save its database;
/// [`kill`](Self::kill) does not). Up to 100 000 messages are queued per client.
///
/// ```no_run
/// use test_support::Mosquitto;
/// let broker = Mosquitto::new();
/// let sub = broker.subscribe("sites/+/events", 1); // returns after the SUBACK
/// broker.publish("sites/a/events", b"{}", 1);
/// let msg = sub.next_message();
/// assert_eq!(msg.payload, b"{}");
/// ```
#[derive(Debug)]
pub struct Mosquitto {
    broker_bin: PathBuf,
    pub_bin: PathBuf,
    sub_bin: PathBuf,
    port: AtomicU16,
    users: Vec<(String, String)>,
    extra: Vec<String>,
    conf: PathBuf,
    log: PathBuf,
    pidfile: PathBuf,
    passwd: Option<PathBuf>,
    child: ChildSlot,
    reaper: Mutex<Option<Reaper>>,
    /// Last: removed after `Drop::drop` has stopped the broker.
    dir: ScratchDir,
}

impl Mosquitto {
    /// Starts a broker that allows anonymous clients.
    pub fn new() -> Self {
        MosquittoBuilder::default().start()
    }

    /// A broker with users or extra config lines.
    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    fn start_with(b: MosquittoBuilder) -> Self {
        let broker_bin = require("mosquitto", BROKER_PACKAGE);
        let pub_bin = require("mosquitto_pub", CLIENTS_PACKAGE);
        let sub_bin = require("mosquitto_sub", CLIENTS_PACKAGE);
        let dir = ScratchDir::new("test-mosquitto-");
        let passwd = (!b.users.is_empty()).then(|| {
            let file = dir.path().join("passwd");
            write_password_file(&file, &b.users);
            file
        });
        let pidfile = dir.path().join("mosquitto.pid");
        let cleanup = format!(
            "[ -f {p} ] && kill -s KILL \"$(cat {p})\" 2>/dev/null; {}",
            proc::reaper_rm(dir.path()),
            p = sh_quote(&pidfile),
        );
        let reaper = Reaper::spawn(&cleanup, None, dir.path());
        let broker = Self {
            broker_bin,
            pub_bin,
            sub_bin,
            port: AtomicU16::new(0),
            users: b.users,
            extra: b.extra,
            conf: dir.path().join("mosquitto.conf"),
            log: dir.path().join("mosquitto.log"),
            pidfile,
            passwd,
            child: ChildSlot::default(),
            reaper: Mutex::new(Some(reaper)),
            dir,
        };
        let mut slot = broker.lock_child();
        broker.launch(&mut slot, true);
        drop(slot);
        broker
    }

    /// The TCP port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{HOST}:{}", self.port())
    }

    /// The first configured user and password, if the broker requires authentication.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.users.first().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The broker log (appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the broker log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// The broker's temp dir (config, persistence database, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the broker process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    /// Stops the broker gracefully (SIGTERM): it saves its persistence database, so
    /// sessions and queued messages survive a later [`start`](Self::start). No-op when
    /// stopped.
    pub fn stop(&self) {
        self.stop_with("TERM");
    }

    /// Kills the broker (SIGKILL): a crash; nothing since the last save is kept.
    pub fn kill(&self) {
        self.stop_with("KILL");
    }

    fn stop_with(&self, sig: &str) {
        if self.child.stop(sig, Duration::from_secs(10)) {
            let _ = fs::remove_file(&self.pidfile);
        }
    }

    /// Starts the broker again on the same port, config and persistence; no-op if it is
    /// running.
    pub fn start(&self) {
        let mut slot = self.lock_child();
        if let Some(child) = slot.as_mut() {
            if let Ok(None) = child.try_wait() {
                return;
            }
            *slot = None;
        }
        self.launch(&mut slot, false);
    }

    /// [`stop`](Self::stop) then [`start`](Self::start).
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    /// Publishes one message with `mosquitto_pub` (as the first configured user, if any),
    /// panicking on failure. The payload goes in whole (`-s` reads stdin as one message;
    /// empty payloads use `-n`), so any bytes work.
    ///
    /// One call is one connection and one message. Bulk input through
    /// `mosquitto_pub -l -q 1` (a message a line) has been reported to deliver only part of
    /// a large input on Debian; not reproduced here (50 000 lines of 300 bytes arrived
    /// whole), but a broker's default `max_queued_messages 1000` silently drops QoS 1
    /// messages queued for a slow subscriber, which looks the same. This broker queues
    /// 100 000. Prefer a loop over `publish`, or `mosquitto_pub --repeat N` for copies.
    pub fn publish(&self, topic: &str, payload: impl AsRef<[u8]>, qos: u8) {
        self.try_publish(topic, payload.as_ref(), qos, false)
            .unwrap_or_else(|e| panic!("test-support: {e}"));
    }

    /// [`publish`](Self::publish) with the retain flag set.
    pub fn publish_retained(&self, topic: &str, payload: impl AsRef<[u8]>, qos: u8) {
        self.try_publish(topic, payload.as_ref(), qos, true)
            .unwrap_or_else(|e| panic!("test-support: {e}"));
    }

    /// [`publish`](Self::publish) returning the client's error (e.g. broker down).
    pub fn try_publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
    ) -> Result<(), String> {
        assert!(qos <= 2, "test-support: MQTT QoS is 0, 1 or 2, not {qos}");
        let mut cmd = Command::new(&self.pub_bin);
        cmd.args(["-h", HOST, "-p", &self.port().to_string(), "-t", topic])
            .args(["-q", &qos.to_string()]);
        if retain {
            cmd.arg("-r");
        }
        if let Some((user, password)) = self.credentials() {
            cmd.args(["-u", user, "-P", password]);
        }
        cmd.arg(if payload.is_empty() { "-n" } else { "-s" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.pub_bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // The client reads all of stdin before it connects, so this cannot deadlock.
            let _ = stdin.write_all(payload);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for mosquitto_pub: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mosquitto_pub to {topic} on port {} failed ({}): {}",
                self.port(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    /// Subscribes to `topic` (wildcards allowed) with `qos` as a fresh clean-session
    /// client; returns once the broker has acknowledged the subscription, so anything
    /// published afterwards is delivered.
    pub fn subscribe(&self, topic: &str, qos: u8) -> Subscription {
        self.subscriber(topic).qos(qos).start()
    }

    /// A subscription with more options (client id, persistent session, more topics).
    pub fn subscriber(&self, topic: &str) -> SubscriptionBuilder<'_> {
        SubscriptionBuilder {
            broker: self,
            topics: vec![topic.to_owned()],
            qos: 0,
            client_id: None,
            persistent: false,
            credentials: self
                .credentials()
                .map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock()
    }

    fn write_config(&self, port: u16) {
        let mut conf = format!(
            "# Written by test-support for one throwaway broker.\n\
             listener {port} {HOST}\n\
             persistence true\n\
             persistence_location {dir}/\n\
             persistence_file mosquitto.db\n\
             max_queued_messages 100000\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             log_type subscribe\n\
             log_type unsubscribe\n\
             connection_messages true\n",
            dir = self.dir.path().display(),
            log = self.log.display(),
        );
        match &self.passwd {
            Some(file) => {
                conf.push_str("allow_anonymous false\n");
                conf.push_str(&format!("password_file {}\n", file.display()));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        if proc::euid() == 0 {
            // Otherwise it switches to the `mosquitto` user, who cannot write our dir.
            conf.push_str("user root\n");
        }
        for line in &self.extra {
            conf.push_str(line);
            conf.push('\n');
        }
        fs::write(&self.conf, conf)
            .unwrap_or_else(|e| panic!("test-support: write {}: {e}", self.conf.display()));
    }

    /// Starts the broker and waits until it accepts TCP. On the first start a taken port
    /// is replaced by another free one; on a restart the port is retried for a while.
    fn launch(&self, slot: &mut Option<Child>, first_start: bool) {
        let timeout = settings::start_timeout();
        let deadline = Instant::now() + timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = if first_start {
                let p = free_port();
                self.port.store(p, Ordering::SeqCst);
                p
            } else {
                self.port()
            };
            self.write_config(port);
            let log_start = proc::log_len(&self.log);
            let mut child = self.spawn_broker();
            let _ = fs::write(&self.pidfile, child.id().to_string());
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = fs::remove_file(&self.pidfile);
                    let in_use = proc::says_addr_in_use(&self.log, log_start);
                    if in_use && Instant::now() < deadline && attempts < 50 {
                        if !first_start {
                            sleep(Duration::from_millis(200));
                        }
                        break;
                    }
                    panic!(
                        "test-support: mosquitto exited during startup on port {port} \
                         ({status}). Log tail ({}):\n{}",
                        self.log.display(),
                        log_tail(&self.log, 30)
                    );
                }
                // "running" is logged once every listener is open, so a successful
                // connect is to our broker and not to a thief of the port.
                if log_since(&self.log, log_start).contains(" running")
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
                {
                    *slot = Some(child);
                    return;
                }
                if Instant::now() >= deadline {
                    stop_child(&mut child, "KILL", Duration::from_secs(5));
                    let _ = fs::remove_file(&self.pidfile);
                    panic!(
                        "test-support: mosquitto did not accept connections on {HOST}:{port} \
                         within {timeout:?} (TEST_SUPPORT_TIMEOUT_SECS). Log tail ({}):\n{}",
                        self.log.display(),
                        log_tail(&self.log, 30)
                    );
                }
                sleep(Duration::from_millis(20));
            }
        }
    }

    fn spawn_broker(&self) -> Child {
        // Early errors go to stderr before the log file is open: same file.
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap_or_else(|e| panic!("test-support: open {}: {e}", self.log.display()))
        };
        Command::new(&self.broker_bin)
            .arg("-c")
            .arg(&self.conf)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open())
            .stderr(open())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "test-support: cannot start {}: {e}",
                    self.broker_bin.display()
                )
            })
    }
}

impl Default for Mosquitto {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        if let Some(reaper) = self.reaper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            reaper.finish();
        }
        proc::print_log_if_asked("mosquitto", &self.log);
    }
}

fn write_password_file(file: &Path, users: &[(String, String)]) {
    let tool = require("mosquitto_passwd", BROKER_PACKAGE);
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(&tool);
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg(file)
            .args([user, password])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("test-support: cannot run {}: {e}", tool.display()));
        assert!(
            out.status.success(),
            "test-support: mosquitto_passwd for user {user} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Newer brokers warn about (and may refuse) a password file others can read.
    let _ = fs::set_permissions(file, fs::Permissions::from_mode(0o600));
}

/// Options for a [`Subscription`]; from [`Mosquitto::subscriber`].
#[derive(Debug, Clone)]
pub struct SubscriptionBuilder<'a> {
    broker: &'a Mosquitto,
    topics: Vec<String>,
    qos: u8,
    client_id: Option<String>,
    persistent: bool,
    credentials: Option<(String, String)>,
}

impl SubscriptionBuilder<'_> {
    /// Also subscribes to `topic`.
    pub fn topic(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_owned());
        self
    }

    /// Subscription QoS (default 0).
    pub fn qos(mut self, qos: u8) -> Self {
        assert!(qos <= 2, "test-support: MQTT QoS is 0, 1 or 2, not {qos}");
        self.qos = qos;
        self
    }

    /// The MQTT client id (default: chosen by the broker).
    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = Some(id.to_owned());
        self
    }

    /// Clean session false: the broker keeps the subscription and queues QoS ≥ 1
    /// messages while this client id is away. Needs a [`client_id`](Self::client_id).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Connects as this user instead of the broker's first user.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Starts `mosquitto_sub`; returns once the broker acknowledged the subscription.
    /// Panics (with the client's error output) if it does not within the start timeout.
    pub fn start(self) -> Subscription {
        Subscription::start(self)
    }
}

/// One received message.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .finish()
    }
}

/// A running `mosquitto_sub`; messages arrive on a channel. Dropping it kills the client
/// (an abrupt disconnect: a persistent session stays on the broker).
#[derive(Debug)]
pub struct Subscription {
    child: Child,
    stderr: Option<ChildStderr>,
    messages: Receiver<Message>,
    reader: Option<JoinHandle<()>>,
}

impl Subscription {
    fn start(b: SubscriptionBuilder<'_>) -> Self {
        assert!(
            !b.persistent || b.client_id.is_some(),
            "test-support: a persistent MQTT session needs a client_id"
        );
        let broker = b.broker;
        // Into a pipe, stdio would hold the debug lines (and so the SUBACK) back until the
        // first message; stdbuf makes them line-buffered.
        let mut cmd = Command::new(require("stdbuf", "coreutils"));
        cmd.arg("-oL")
            .arg(&broker.sub_bin)
            .args(["-h", HOST, "-p", &broker.port().to_string()])
            .args(["-q", &b.qos.to_string()])
            // -d prints the protocol exchange, which tells us when SUBACK arrived; the
            // format marks message lines and hex-encodes payloads so any bytes survive.
            .args(["-d", "-F", &format!("{MESSAGE_MARK} %t %x")]);
        for topic in &b.topics {
            cmd.args(["-t", topic]);
        }
        if let Some(id) = &b.client_id {
            cmd.args(["-i", id]);
        }
        if b.persistent {
            cmd.arg("-c");
        }
        if let Some((user, password)) = &b.credentials {
            cmd.args(["-u", user, "-P", password]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("test-support: cannot run {}: {e}", broker.sub_bin.display())
            });
        let stdout = child.stdout.take().expect("mosquitto_sub stdout is piped");
        let stderr = child.stderr.take();
        let (msg_tx, messages) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = Vec::new();
            let mut ready_tx = Some(ready_tx);
            let mut debug = String::new();
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if let Some(msg) = parse_message_line(text) {
                    if msg_tx.send(msg).is_err() {
                        break;
                    }
                } else if text.contains("received SUBACK") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                } else if ready_tx.is_some() {
                    debug.push_str(text);
                    debug.push('\n');
                }
            }
            if let Some(tx) = ready_tx.take() {
                let _ = tx.send(Err(debug));
            }
        });
        let mut sub = Self {
            child,
            stderr,
            messages,
            reader: Some(reader),
        };
        let timeout = settings::start_timeout();
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(())) => sub,
            outcome => {
                let _ = sub.child.kill();
                let _ = sub.child.wait();
                let mut err = String::new();
                if let Some(mut s) = sub.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                let stdout = match outcome {
                    Ok(Err(debug)) => debug,
                    _ => format!("(no SUBACK within {timeout:?})"),
                };
                panic!(
                    "test-support: mosquitto_sub {:?} on port {} got no SUBACK.\nstdout:\n\
                     {stdout}\nstderr:\n{err}\nbroker log tail:\n{}",
                    b.topics,
                    broker.port(),
                    broker.log_tail(10)
                );
            }
        }
    }

    /// The next message, or `None` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Message> {
        self.messages.recv_timeout(timeout).ok()
    }

    /// The next message; panics if none arrives within 30 s.
    pub fn next_message(&self) -> Message {
        self.recv_timeout(Duration::from_secs(30))
            .expect("test-support: no MQTT message within 30 s")
    }

    /// A message already received, if any (does not wait).
    pub fn try_next(&self) -> Option<Message> {
        self.messages.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// `MARK topic hexpayload` → message (the topic may contain spaces; the hex never does).
fn parse_message_line(line: &str) -> Option<Message> {
    let rest = line.strip_prefix(MESSAGE_MARK)?.strip_prefix(' ')?;
    let (topic, hex) = rest.rsplit_once(' ')?;
    Some(Message {
        topic: topic.to_owned(),
        payload: decode_hex(hex)?,
    })
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lines_parse() {
        let m = parse_message_line(&format!("{MESSAGE_MARK} a b/c 00ff41")).unwrap();
        assert_eq!(m.topic, "a b/c");
        assert_eq!(m.payload, vec![0, 0xff, b'A']);
        let empty = parse_message_line(&format!("{MESSAGE_MARK} t ")).unwrap();
        assert_eq!(empty.payload, Vec::<u8>::new());
        assert!(parse_message_line("Client null received SUBACK").is_none());
        assert!(parse_message_line(&format!("{MESSAGE_MARK} t 0")).is_none());
    }
}
