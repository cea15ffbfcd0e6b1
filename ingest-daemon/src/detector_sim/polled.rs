//! `--answer-polls`: the simulator as a polled device. Frames are not written when they are
//! due but queued, and every poll the daemon sends (SS125 0x71 interval read, SS105 `XD`,
//! FT1.2 "request class 2 data") is answered with everything queued since the last one.
//! With nothing new a real device still answers: SS125 and SS105 repeat their latest
//! interval data (the receiver must drop the duplicate sub-interval), FT1.2 answers `E5`
//! ("no class 2 data").
//!
//! One thread owns the port: it reads polls (with a short timeout, so that it can stop) and
//! writes the answers. [`Sink::finish`] waits until every queued frame has been fetched by a
//! poll, then stops the thread; frames nobody polled for within the wait are an error.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use codecs::ft12::{Ft12, Ft12Frame, SingleChar, function};
use codecs::ss105::{Ss105, Ss105Frame};
use codecs::ss125::{Ss125, Z1Body};
use codecs::{Decoded, StreamDecoder};

use super::{Delivery, Protocol, Sink, Unit};

/// How long a read waits for a poll before checking whether to stop.
const READ_TIMEOUT: Duration = Duration::from_millis(50);

/// Recognises the polls of one protocol in the bytes the receiver sends.
enum PollReader {
    Ss125(StreamDecoder<Ss125>),
    Ss105(StreamDecoder<Ss105>),
    Ft12(StreamDecoder<Ft12>),
}

impl PollReader {
    fn new(protocol: Protocol) -> Result<Self> {
        Ok(match protocol {
            Protocol::Ss125 => Self::Ss125(StreamDecoder::new(Ss125::metric())),
            Protocol::Ss105 => Self::Ss105(StreamDecoder::new(Ss105::default())),
            Protocol::Ft12Tls => Self::Ft12(StreamDecoder::new(Ft12::new())),
            other => bail!(
                "{other} is not a polled protocol: --answer-polls needs ss125, ss105 or ft12_tls"
            ),
        })
    }

    /// Feeds received bytes; returns how many polls they completed.
    fn polls(&mut self, data: &[u8]) -> usize {
        fn count<C: codecs::FrameCodec>(
            dec: &mut StreamDecoder<C>,
            data: &[u8],
            is_poll: impl Fn(&C::Frame) -> bool,
        ) -> usize {
            dec.push(data);
            let mut n = 0;
            while let Some(item) = dec.next() {
                if matches!(&item, Decoded::Frame(f) if is_poll(f)) {
                    n += 1;
                }
            }
            n
        }
        match self {
            Self::Ss125(d) => count(d, data, |f| {
                matches!(f.body, Z1Body::IntervalRequest { .. })
            }),
            Self::Ss105(d) => count(d, data, |f| matches!(f, Ss105Frame::Request(_))),
            Self::Ft12(d) => count(d, data, |f| {
                matches!(f, Ft12Frame::Fixed { control, .. }
                    if control.is_primary() && control.function() == function::REQUEST_CLASS_2)
            }),
        }
    }

    /// The answer to a poll when nothing new is queued.
    fn idle_answer(&self, latest: &[Vec<u8>]) -> Vec<u8> {
        match self {
            Self::Ft12(_) => vec![SingleChar::Ack.byte()],
            Self::Ss125(_) | Self::Ss105(_) => latest.concat(),
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    units: VecDeque<Unit>,
    /// The frames of the latest answer that carried data (repeated when idle).
    latest: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    stop: AtomicBool,
    polls: AtomicU64,
}

/// A serial device or pty on which the simulator answers polls; see the module docs.
pub struct PolledSink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
    queued: u64,
    /// How long [`Sink::finish`] waits for the receiver to poll the last frames.
    drain_wait: Duration,
}

impl std::fmt::Debug for PolledSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledSink")
            .field("queued", &self.queued)
            .field("polls", &self.shared.polls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PolledSink {
    /// Opens the device at `path` (a serial port or a pty) and starts answering polls.
    pub fn open(protocol: Protocol, path: &str, drain_wait: Duration) -> Result<Self> {
        let mut reader = PollReader::new(protocol)?;
        let mut port = tokio_serial::new(path, 9600)
            .timeout(READ_TIMEOUT)
            .open()
            .with_context(|| format!("opening {path} to answer polls"))?;
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("answer-polls".into())
            .spawn(move || -> Result<()> {
                let mut buf = [0u8; 512];
                while !thread_shared.stop.load(Ordering::Relaxed) {
                    let n = match port.read(&mut buf) {
                        Ok(n) => n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::TimedOut
                                    | ErrorKind::WouldBlock
                                    | ErrorKind::Interrupted
                            ) =>
                        {
                            continue;
                        }
                        Err(e) => return Err(e).context("reading polls"),
                    };
                    let polls = reader.polls(buf.get(..n).unwrap_or_default());
                    for _ in 0..polls {
                        let answer = {
                            let mut q =
                                thread_shared.queue.lock().map_err(|_| anyhow!("poison"))?;
                            if q.units.is_empty() {
                                reader.idle_answer(&q.latest)
                            } else {
                                let units: Vec<Unit> = q.units.drain(..).collect();
                                let frames: Vec<Vec<u8>> = units
                                    .iter()
                                    .filter(|u| !u.garbage)
                                    .map(|u| u.bytes.clone())
                                    .collect();
                                if !frames.is_empty() {
                                    q.latest = frames;
                                }
                                units.into_iter().flat_map(|u| u.bytes).collect()
                            }
                        };
                        port.write_all(&answer).context("answering a poll")?;
                        port.flush().context("answering a poll")?;
                        thread_shared.polls.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
            .context("starting the poll thread")?;
        Ok(Self {
            shared,
            thread: Some(thread),
            queued: 0,
            drain_wait,
        })
    }

    fn queue_len(&self) -> usize {
        self.shared.queue.lock().map_or(0, |q| q.units.len())
    }

    fn stop_thread(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the poll thread panicked"),
            None => Ok(()),
        }
    }
}

impl Sink for PolledSink {
    fn send(&mut self, unit: &Unit, _flush: bool) -> Result<()> {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            // Report the thread's own error rather than queueing into the void.
            self.stop_thread()?;
            bail!("the poll thread stopped");
        }
        self.shared
            .queue
            .lock()
            .map_err(|_| anyhow!("poison"))?
            .units
            .push_back(unit.clone());
        self.queued += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<Delivery> {
        let deadline = Instant::now() + self.drain_wait;
        while self.queue_len() > 0 && Instant::now() < deadline {
            if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let left = self.queue_len();
        self.stop_thread()?;
        if left > 0 {
            bail!(
                "{left} frames were never polled for within {:?} ({} polls answered)",
                self.drain_wait,
                self.shared.polls.load(Ordering::Relaxed)
            );
        }
        Ok(Delivery {
            sent: self.queued,
            acknowledged: None,
            polls_answered: Some(self.shared.polls.load(Ordering::Relaxed)),
        })
    }
}

impl Drop for PolledSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
