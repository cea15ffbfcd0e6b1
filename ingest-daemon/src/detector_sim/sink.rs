//! Where frames go: a byte stream (file, serial device, pty, stdout; one file per lane for
//! `.vlog`) or an MQTT broker.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS};

use super::Protocol;

/// One unit of output: a frame or an injected garbage run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub bytes: Vec<u8>,
    /// The lane the frame belongs to, for outputs split per lane.
    pub lane: Option<u16>,
    pub garbage: bool,
}

/// What an output confirms at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Units handed to the output (frames and garbage runs).
    pub sent: u64,
    /// MQTT QoS 1: PUBACKs received. `None` where nothing acknowledges (streams, QoS 0).
    pub acknowledged: Option<u64>,
    /// `--answer-polls`: polls answered. `None` where frames go out unsolicited.
    pub polls_answered: Option<u64>,
}

/// An output of the simulator.
pub trait Sink {
    /// Sends one unit; `flush` = push it out now (paced runs), not only at the end.
    fn send(&mut self, unit: &Unit, flush: bool) -> Result<()>;
    /// Flushes, waits for acknowledgements where the transport has them, and reports.
    fn finish(&mut self) -> Result<Delivery>;
}

type Writer = Box<dyn Write + Send>;

/// A byte stream: frames back to back. JSON payloads (`vehicle_json`, `fiware`) are written
/// one per line. `.vlog` output is one stream per lane (IRIS keeps one file per detector).
pub struct StreamSink {
    outputs: Vec<Writer>,
    per_lane: bool,
    json_lines: bool,
    sent: u64,
}

impl fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSink")
            .field("outputs", &self.outputs.len())
            .field("per_lane", &self.per_lane)
            .field("json_lines", &self.json_lines)
            .field("sent", &self.sent)
            .finish()
    }
}

/// Opens a path for writing: a regular file is created or truncated; a device (serial port,
/// pty) or FIFO is opened as it is.
fn open_path(path: &str) -> Result<Writer> {
    if path == "-" {
        return Ok(Box::new(io::stdout()));
    }
    let p = Path::new(path);
    let device = fs::metadata(p).is_ok_and(|m| !m.is_file());
    let file = if device {
        OpenOptions::new().write(true).open(p)
    } else {
        File::create(p)
    }
    .with_context(|| format!("opening {path}"))?;
    Ok(Box::new(BufWriter::new(file)))
}

impl StreamSink {
    /// One stream for every lane.
    pub fn to_writer(protocol: Protocol, writer: Writer) -> Self {
        Self {
            outputs: vec![writer],
            per_lane: false,
            json_lines: protocol.is_json(),
            sent: 0,
        }
    }

    /// Opens `out` (`-` = stdout). For `.vlog` with more than one lane, `out` must contain
    /// `{lane}`, replaced by each lane's number (one file per lane).
    pub fn open(protocol: Protocol, out: &str, lanes: u16) -> Result<Self> {
        if protocol == Protocol::Vlog && lanes > 1 {
            ensure!(
                out.contains("{lane}"),
                "vlog keeps one file per lane: put {{lane}} in --out (e.g. lane{{lane}}.vlog)"
            );
            let outputs = (1..=lanes)
                .map(|l| open_path(&out.replace("{lane}", &l.to_string())))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Self {
                outputs,
                per_lane: true,
                json_lines: false,
                sent: 0,
            });
        }
        let out = out.replace("{lane}", "1");
        Ok(Self::to_writer(protocol, open_path(&out)?))
    }
}

impl Sink for StreamSink {
    fn send(&mut self, unit: &Unit, flush: bool) -> Result<()> {
        let index = match (self.per_lane, unit.lane) {
            (true, Some(lane)) => usize::from(lane).saturating_sub(1),
            _ => 0,
        };
        let out = self
            .outputs
            .get_mut(index)
            .ok_or_else(|| anyhow!("no output for lane {index}"))?;
        out.write_all(&unit.bytes).context("writing a frame")?;
        if self.json_lines {
            out.write_all(b"\n").context("writing a frame")?;
        }
        if flush {
            out.flush().context("flushing a frame")?;
        }
        self.sent += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<Delivery> {
        for out in &mut self.outputs {
            out.flush().context("flushing the output")?;
        }
        Ok(Delivery {
            sent: self.sent,
            acknowledged: None,
            polls_answered: None,
        })
    }
}

/// Counters the connection thread keeps.
#[derive(Debug, Default)]
struct MqttProgress {
    connected: AtomicBool,
    /// PUBLISH packets written to the socket.
    written: AtomicU64,
    /// PUBACKs received.
    acknowledged: AtomicU64,
    /// The first connection error; the thread stops there.
    error: Mutex<Option<String>>,
    stopped: AtomicBool,
}

impl MqttProgress {
    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

/// Publishes each unit as one MQTT message on a topic, over plain TCP, and counts what the
/// broker acknowledged (QoS 1) or what was written to the socket (QoS 0).
pub struct MqttSink {
    client: Client,
    topic: String,
    qos: QoS,
    published: u64,
    progress: Arc<MqttProgress>,
    thread: Option<JoinHandle<()>>,
    /// How long `finish` waits for outstanding acknowledgements.
    pub ack_timeout: Duration,
}

impl fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSink")
            .field("topic", &self.topic)
            .field("qos", &self.qos)
            .field("published", &self.published)
            .field("progress", &self.progress)
            .finish()
    }
}

/// `mqtt://host:port` (or `tcp://`; port 1883 when left out) to host and port.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| anyhow!("{url}: expected mqtt://host:port (TLS is not supported)"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (
            h,
            p.parse::<u16>()
                .with_context(|| format!("{url}: bad port {p}"))?,
        ),
        _ => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ensure!(!host.is_empty(), "{url}: no host");
    Ok((host.to_owned(), port))
}

fn drive(mut connection: Connection, progress: Arc<MqttProgress>) {
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                progress.connected.store(true, Ordering::SeqCst);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                progress.acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                progress.written.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if let Ok(mut slot) = progress.error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
                break;
            }
        }
    }
    progress.stopped.store(true, Ordering::SeqCst);
}

/// Polls `done` every few milliseconds until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl MqttSink {
    /// Connects (waiting for the broker's CONNACK) to `url` = `mqtt://host:port`.
    pub fn connect(url: &str, topic: &str, qos: u8, client_id: &str) -> Result<Self> {
        let (host, port) = parse_mqtt_url(url)?;
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            q => bail!("QoS {q} is not supported (0 or 1)"),
        };
        ensure!(
            !topic.is_empty() && !topic.contains(['+', '#']),
            "the topic must be a plain topic name without wildcards"
        );
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, connection) = Client::new(options, 64);
        let progress = Arc::new(MqttProgress::default());
        let thread = {
            let progress = Arc::clone(&progress);
            std::thread::Builder::new()
                .name("detector-sim-mqtt".to_owned())
                .spawn(move || drive(connection, progress))
                .context("starting the MQTT connection thread")?
        };
        let mut sink = Self {
            client,
            topic: topic.to_owned(),
            qos,
            published: 0,
            progress,
            thread: Some(thread),
            ack_timeout: Duration::from_secs(30),
        };
        let p = Arc::clone(&sink.progress);
        let up = wait_for(Duration::from_secs(10), || {
            p.connected.load(Ordering::SeqCst) || p.stopped.load(Ordering::SeqCst)
        });
        if !p.connected.load(Ordering::SeqCst) {
            let why = p
                .error()
                .unwrap_or_else(|| if up { "closed" } else { "timed out" }.to_owned());
            sink.stop();
            bail!("cannot connect to {url}: {why}");
        }
        Ok(sink)
    }

    fn stop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            // The thread ends at the DISCONNECT or at the first error.
            let _ = t.join();
        }
    }
}

impl Sink for MqttSink {
    fn send(&mut self, unit: &Unit, _flush: bool) -> Result<()> {
        if let Some(e) = self.progress.error() {
            bail!("MQTT connection lost: {e}");
        }
        self.client
            .publish(self.topic.clone(), self.qos, false, unit.bytes.clone())
            .context("publishing")?;
        self.published += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<Delivery> {
        let p = Arc::clone(&self.progress);
        let target = self.published;
        let acks = self.qos == QoS::AtLeastOnce;
        wait_for(self.ack_timeout, || {
            let n = if acks {
                p.acknowledged.load(Ordering::SeqCst)
            } else {
                p.written.load(Ordering::SeqCst)
            };
            n >= target || p.stopped.load(Ordering::SeqCst)
        });
        self.stop();
        let acknowledged = acks.then(|| p.acknowledged.load(Ordering::SeqCst));
        if let Some(e) = p.error() {
            bail!(
                "MQTT connection lost: {e} ({} of {target} messages acknowledged)",
                acknowledged.unwrap_or(0)
            );
        }
        Ok(Delivery {
            sent: target,
            acknowledged,
            polls_answered: None,
        })
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.stop();
    }
}
