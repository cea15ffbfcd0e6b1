//! The two tasks behind the sources: the aggregator and the spool writer.
//!
//! ```text
//! source task ─ ring ─┐
//! source task ─ ring ─┼─► AggregatorTask ─ bounded channel ─► SpoolWriter ─► spool (disk)
//! source task ─ ring ─┘    (drains rings,      (samples)        (blocking I/O on the
//!                           advance, flush)                       blocking pool; fsync)
//! ```
//!
//! **Aggregator.** Wakes when a source pushes (a shared [`Notify`]) or on a tick, drains
//! every ring, feeds the [`Aggregator`] and calls `advance` with a watermark: the lowest
//! time up to which every live source has delivered (each ring is in time order: vehicles by
//! arrival, then a liveness mark), capped by the clock. Bins thus close by the sources'
//! progress, not by how promptly this task was scheduled, which keeps results exact at any
//! `--time-scale`. A ring whose source task has ended no longer holds the watermark back.
//! On stop it drains once more, emits what is due, then `flush_all` (see the aggregator's
//! shutdown notes) and closes the channel.
//!
//! **Spool writer.** Receives samples in batches, appends each batch on the blocking pool
//! (the spool is synchronous std I/O), prints each sample when asked to, and fsyncs within
//! `sync_interval` of the first unsynced append (every batch when it is zero). When the
//! channel closes it syncs a last time and returns a summary.
//!
//! **Raw records with a durability reply.** A source whose producer needs an
//! acknowledgement (MQTT PUBACK) sends [`RawAppend`]s on a second bounded channel
//! ([`SpoolWriter::with_raw`]). The writer appends them as `Raw` records and answers each
//! one's `durable` oneshot with its sequence number once an fsync covers it: within
//! [`RAW_SYNC_WITHIN`] of the first waiting record, or at once when [`RAW_SYNC_EVERY`] are
//! waiting, whichever comes first. Never before. No lock is held across an await: the
//! source only awaits the oneshot.
//!
//! A sample waiting for a full channel makes the aggregator wait; its sources do not: their
//! rings take the slack and drop (counted) once full.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow};
use central_sync::TrafficSample;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::aggregate::{Aggregator, DetectorId};
use crate::clock::{PipelineClock, wall_now};
use crate::counters::PipelineCounters;
use crate::display::sample_line;
use crate::sources::{RingReceiver, SourceItem};
use crate::spool::Spool;

/// Samples in flight between the aggregator and the spool writer.
pub const SAMPLE_CHANNEL_CAPACITY: usize = 1024;
/// Samples appended per trip to the blocking pool.
const MAX_BATCH: usize = 512;
/// Raw append requests in flight between the sources and the spool writer.
pub const RAW_CHANNEL_CAPACITY: usize = 256;
/// A raw record somebody waits for is fsynced at most this long after it was appended.
pub const RAW_SYNC_WITHIN: Duration = Duration::from_millis(50);
/// ... or as soon as this many raw records wait for their fsync.
pub const RAW_SYNC_EVERY: usize = 64;

/// A raw record to append on a source's behalf; `durable` receives its sequence number
/// once it is fsynced (dropped unanswered if the writer fails or stops first).
#[derive(Debug)]
pub struct RawAppend {
    pub appended_at: DateTime<Utc>,
    pub payload: Vec<u8>,
    pub durable: oneshot::Sender<u64>,
}
/// How often an idle spool writer marks itself alive.
const WRITER_BEAT: Duration = Duration::from_secs(1);

/// One source as the aggregator sees it.
#[derive(Debug)]
pub struct Input {
    pub source_id: String,
    pub detector: DetectorId,
    pub ring: RingReceiver,
    /// Every item up to this time has been drained.
    progress: Option<DateTime<Utc>>,
    drops_reported: u64,
}

impl Input {
    pub fn new(source_id: String, detector: DetectorId, ring: RingReceiver) -> Self {
        Self {
            source_id,
            detector,
            ring,
            progress: None,
            drops_reported: 0,
        }
    }
}

/// Registers a source with a running aggregator: interns its detector, opens its series at
/// the given time and returns its input (sent on the channel of [`AggregatorTask::with_control`]).
pub type AddInput = Box<dyn FnOnce(&mut Aggregator, DateTime<Utc>) -> Input + Send>;

/// The aggregator task; see the module documentation.
pub struct AggregatorTask {
    aggregator: Aggregator,
    inputs: Vec<Input>,
    wake: Arc<Notify>,
    out: mpsc::Sender<TrafficSample>,
    clock: PipelineClock,
    tick: Duration,
    counters: Arc<PipelineCounters>,
    closed: Vec<TrafficSample>,
    control: Option<mpsc::Receiver<AddInput>>,
}

impl std::fmt::Debug for AggregatorTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorTask")
            .field("inputs", &self.inputs)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl AggregatorTask {
    /// `tick`: how often bins are checked for closing even when nothing arrives (wall time).
    pub fn new(
        aggregator: Aggregator,
        inputs: Vec<Input>,
        wake: Arc<Notify>,
        out: mpsc::Sender<TrafficSample>,
        clock: PipelineClock,
        tick: Duration,
        counters: Arc<PipelineCounters>,
    ) -> Self {
        Self {
            aggregator,
            inputs,
            wake,
            out,
            clock,
            tick,
            counters,
            closed: Vec::new(),
            control: None,
        }
    }

    /// Sources started later (a configuration reload) arrive on `control`.
    pub fn with_control(mut self, control: mpsc::Receiver<AddInput>) -> Self {
        self.control = Some(control);
        self
    }

    /// Runs until `stop` fires, then drains, flushes every open bin and returns.
    /// Fails only when the spool writer is gone.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(add) = recv_opt(&mut self.control) => {
                    let input = add(&mut self.aggregator, self.clock.now());
                    self.inputs.push(input);
                }
                () = self.wake.notified() => {}
                _ = tick.tick() => {}
            }
            self.drain();
            self.advance();
            self.send().await?;
            self.counters.aggregator_beat.beat();
        }
        self.drain();
        self.advance();
        self.aggregator.flush_all(&mut self.closed);
        let flushed = self.closed.len();
        self.send().await?;
        let stats = self.aggregator.stats();
        info!(
            flushed_bins = flushed,
            events = stats.events_accepted,
            late = stats.late_dropped,
            samples = stats.bins_emitted,
            "aggregator stopped"
        );
        Ok(())
    }

    fn drain(&mut self) {
        let fallback = self.clock.now();
        for input in &mut self.inputs {
            while let Some(item) = input.ring.pop() {
                let time = item.time();
                match item {
                    SourceItem::Vehicle { event, arrival } => {
                        self.aggregator.vehicle(input.detector, &event, arrival);
                    }
                    SourceItem::Interval { report, arrival } => {
                        self.aggregator.interval(input.detector, &report, arrival);
                    }
                    SourceItem::Alive(t) => self.aggregator.mark_detector_alive(input.detector, t),
                    SourceItem::Progress(_) => {}
                    SourceItem::DecodeError(t) => {
                        self.aggregator.note_decode_error(input.detector, t)
                    }
                }
                input.progress = Some(input.progress.map_or(time, |p| p.max(time)));
            }
            let dropped = input.ring.dropped_events();
            if dropped > input.drops_reported {
                let at = input.progress.unwrap_or(fallback);
                self.aggregator
                    .note_ring_drops(input.detector, dropped - input.drops_reported, at);
                input.drops_reported = dropped;
            }
        }
        self.counters.set_aggregator_stats(self.aggregator.stats());
    }

    /// The time up to which every live source has delivered, capped by the clock; `None`
    /// while a live source has delivered nothing yet.
    fn watermark(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let mut mark = now;
        for input in &self.inputs {
            if input.ring.is_closed() && input.ring.is_empty() {
                continue;
            }
            mark = mark.min(input.progress?);
        }
        Some(mark)
    }

    fn advance(&mut self) {
        if let Some(mark) = self.watermark() {
            self.aggregator.advance(mark, &mut self.closed);
        }
        // Detector flags change when bins close: publish them then.
        if !self.closed.is_empty() {
            let health = self.aggregator.health(self.clock.now());
            self.counters.set_detector_health(health.detectors);
        }
    }

    async fn send(&mut self) -> anyhow::Result<()> {
        // The aggregator emits lane by lane; spool (and print) them bin by bin.
        self.closed.sort_by(|a, b| {
            (a.bucket_start, &a.site_id, &a.detector_id, a.lane).cmp(&(
                b.bucket_start,
                &b.site_id,
                &b.detector_id,
                b.lane,
            ))
        });
        for sample in self.closed.drain(..) {
            self.out
                .send(sample)
                .await
                .map_err(|_| anyhow!("the spool writer has stopped"))?;
        }
        Ok(())
    }
}

/// Where `--print-samples` lines go.
pub type SamplePrinter = Box<dyn Write + Send>;

/// What the spool writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterSummary {
    pub samples: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub durable_seq: u64,
    pub total_bytes: u64,
    /// fsyncs done.
    pub syncs: u64,
}

/// The spool, shared by the spool writer (appends, fsyncs) and the uplink (reads, acks).
/// Locked only inside blocking-pool jobs, never across an await.
pub type SharedSpool = Arc<std::sync::Mutex<Spool>>;

/// Locks the shared spool. A panic while it was held left the spool's own state as it
/// was (its operations are not atomic in memory anyway: a failed write poisons the spool
/// itself), so the lock's poison flag is not a reason to stop.
pub fn lock_spool(spool: &SharedSpool) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|p| p.into_inner())
}

/// The spool writer task; see the module documentation.
pub struct SpoolWriter {
    spool: SharedSpool,
    printer: Option<SamplePrinter>,
    rx: mpsc::Receiver<TrafficSample>,
    raw: Option<mpsc::Receiver<RawAppend>>,
    /// Appended raw records waiting for an fsync, in sequence order.
    waiting: Vec<(u64, oneshot::Sender<u64>)>,
    sync_interval: Duration,
    counters: Arc<PipelineCounters>,
    summary: WriterSummary,
    /// Told whenever more samples became durable (the uplink waits on it).
    durable: Option<Arc<Notify>>,
}

impl std::fmt::Debug for SpoolWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolWriter")
            .field("spool", &self.spool)
            .field("printing", &self.printer.is_some())
            .field("sync_interval", &self.sync_interval)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// One trip to the blocking pool.
enum Job {
    Append(Vec<TrafficSample>),
    AppendRaw(Vec<RawAppend>),
    Sync,
}

/// What woke the writer.
enum Wake {
    Sample(Option<TrafficSample>),
    Raw(Option<RawAppend>),
    SyncDue,
}

impl SpoolWriter {
    pub fn new(
        spool: Spool,
        rx: mpsc::Receiver<TrafficSample>,
        sync_interval: Duration,
        printer: Option<SamplePrinter>,
        counters: Arc<PipelineCounters>,
    ) -> Self {
        let summary = WriterSummary {
            durable_seq: spool.durable_seq(),
            total_bytes: spool.total_bytes(),
            ..WriterSummary::default()
        };
        Self {
            spool: Arc::new(std::sync::Mutex::new(spool)),
            printer,
            rx,
            raw: None,
            waiting: Vec::new(),
            sync_interval,
            counters,
            summary,
            durable: None,
        }
    }

    /// Notifies `durable` whenever an fsync made more samples durable.
    pub fn with_durable_notify(mut self, durable: Arc<Notify>) -> Self {
        self.durable = Some(durable);
        self
    }

    /// The spool, for the uplink.
    pub fn spool(&self) -> SharedSpool {
        Arc::clone(&self.spool)
    }

    /// Also appends raw records from `raw` and answers each once it is durable.
    pub fn with_raw(mut self, raw: mpsc::Receiver<RawAppend>) -> Self {
        self.raw = Some(raw);
        self
    }

    /// Runs until the channel closes, then syncs. Any spool error ends it.
    pub async fn run(mut self) -> anyhow::Result<WriterSummary> {
        let mut unsynced_since: Option<Instant> = None;
        let mut raw_waiting_since: Option<Instant> = None;
        // The writer idles between bins; beating while idle tells the watchdog it answers.
        let mut idle = tokio::time::interval(WRITER_BEAT);
        idle.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = [
                unsynced_since.map(|t| t + self.sync_interval),
                raw_waiting_since.map(|t| t + RAW_SYNC_WITHIN),
            ]
            .into_iter()
            .flatten()
            .min();
            let wake = tokio::select! {
                r = self.rx.recv() => Wake::Sample(r),
                r = recv_opt(&mut self.raw) => Wake::Raw(r),
                () = sleep_until_opt(deadline) => Wake::SyncDue,
                _ = idle.tick() => {
                    self.counters.spool_writer_beat.beat();
                    continue;
                }
            };
            match wake {
                Wake::Sample(Some(first)) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(s) => batch.push(s),
                            Err(_) => break,
                        }
                    }
                    self.job(Job::Append(batch)).await?;
                    if self.sync_interval.is_zero() {
                        self.job(Job::Sync).await?;
                        raw_waiting_since = None;
                    } else {
                        unsynced_since.get_or_insert_with(Instant::now);
                    }
                }
                Wake::Sample(None) => break,
                Wake::Raw(Some(first)) => {
                    let mut batch = vec![first];
                    while let Some(raw) = self.raw.as_mut().and_then(|r| r.try_recv().ok()) {
                        batch.push(raw);
                        if batch.len() >= MAX_BATCH {
                            break;
                        }
                    }
                    self.job(Job::AppendRaw(batch)).await?;
                    raw_waiting_since.get_or_insert_with(Instant::now);
                    if self.waiting.len() >= RAW_SYNC_EVERY || self.sync_interval.is_zero() {
                        self.job(Job::Sync).await?;
                        (unsynced_since, raw_waiting_since) = (None, None);
                    }
                }
                // Every raw sender is gone: samples only from now on.
                Wake::Raw(None) => self.raw = None,
                Wake::SyncDue => {
                    self.job(Job::Sync).await?;
                    (unsynced_since, raw_waiting_since) = (None, None);
                }
            }
        }
        self.job(Job::Sync).await?;
        let s = self.summary;
        info!(
            samples = s.samples,
            first_seq = s.first_seq,
            last_seq = s.last_seq,
            durable_seq = s.durable_seq,
            spool_bytes = s.total_bytes,
            "spool synced and closed"
        );
        Ok(s)
    }

    async fn job(&mut self, job: Job) -> anyhow::Result<()> {
        let spool = Arc::clone(&self.spool);
        let mut printer = self.printer.take();
        let mut summary = self.summary;
        let mut waiting = std::mem::take(&mut self.waiting);
        let (printer, summary, waiting, result, stat) = tokio::task::spawn_blocking(move || {
            let mut spool = lock_spool(&spool);
            let result = run_job(&mut spool, &mut printer, &mut summary, &mut waiting, job);
            let stat = spool.stat().ok();
            (printer, summary, waiting, result, stat)
        })
        .await
        .context("the spool write task panicked")?;
        self.printer = printer;
        self.waiting = waiting;
        let before = self.summary;
        let appended = summary.samples - before.samples;
        self.summary = summary;
        let c = &self.counters;
        c.samples_spooled_total
            .fetch_add(appended, Ordering::Relaxed);
        c.spool_bytes.store(summary.total_bytes, Ordering::Relaxed);
        c.spool_durable_seq
            .store(summary.durable_seq, Ordering::Relaxed);
        if summary.durable_seq > before.durable_seq
            && let Some(durable) = &self.durable
        {
            durable.notify_one();
        }
        c.spool_syncs_total
            .fetch_add(summary.syncs - before.syncs, Ordering::Relaxed);
        let done = self
            .waiting
            .partition_point(|(seq, _)| *seq <= summary.durable_seq);
        for (seq, reply) in self.waiting.drain(..done) {
            // The source may have gone (session ended): nothing to tell then.
            let _ = reply.send(seq);
        }
        if let Some(stat) = stat {
            c.set_spool_stat(stat);
        }
        if result.is_ok() {
            c.spool_writer_beat.beat();
        }
        result
    }
}

fn run_job(
    spool: &mut Spool,
    printer: &mut Option<SamplePrinter>,
    summary: &mut WriterSummary,
    waiting: &mut Vec<(u64, oneshot::Sender<u64>)>,
    job: Job,
) -> anyhow::Result<()> {
    match job {
        Job::Append(batch) => {
            let now = wall_now();
            for sample in &batch {
                let seq = spool
                    .append_sample(now, sample)
                    .context("cannot append a sample to the spool")?;
                summary.samples += 1;
                summary.first_seq.get_or_insert(seq);
                summary.last_seq = Some(seq);
                if let Some(out) = printer {
                    let line = sample_line(seq, sample);
                    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                        warn!(error = %e, "cannot print samples any more; they are still spooled");
                        *printer = None;
                    }
                }
            }
            debug!(samples = batch.len(), "appended to the spool");
        }
        Job::AppendRaw(batch) => {
            for raw in batch {
                let seq = spool
                    .append_raw(raw.appended_at, &raw.payload)
                    .context("cannot append a raw record to the spool")?;
                waiting.push((seq, raw.durable));
            }
        }
        Job::Sync => {
            summary.durable_seq = spool.sync().context("cannot fsync the spool")?;
            summary.syncs += 1;
        }
    }
    summary.total_bytes = spool.total_bytes();
    Ok(())
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregatorConfig, LaneMap};
    use crate::counters::SourceCounters;
    use crate::sources::{RingSender, ring};

    const START: i64 = 1_709_539_200; // 2024-03-04T08:00:00Z, a bin boundary

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(START + s, 0).unwrap()
    }

    struct Harness {
        senders: Vec<RingSender>,
        samples: mpsc::Receiver<TrafficSample>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    fn start(sources: usize) -> Harness {
        let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
        let wake = Arc::new(Notify::new());
        let mut senders = Vec::new();
        let mut inputs = Vec::new();
        for i in 0..sources {
            let det = agg.add_detector("site", &format!("d{i}"), &LaneMap::identity(1));
            let (tx, rx) = ring(64, Arc::clone(&wake), Arc::new(SourceCounters::default()));
            senders.push(tx);
            inputs.push(Input::new(format!("s{i}"), det, rx));
        }
        let (out, samples) = mpsc::channel(16);
        // The clock is far ahead: only the sources' progress may close bins.
        let clock = PipelineClock::new(t(3600), 1.0);
        let counters = Arc::new(PipelineCounters::default());
        let task = AggregatorTask::new(
            agg,
            inputs,
            wake,
            out,
            clock,
            Duration::from_millis(50),
            counters,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(task.run(stop.clone()));
        Harness {
            senders,
            samples,
            stop,
            task,
        }
    }

    /// Liveness every 5 s over `[from, to]` (marks ≤ 10 s apart cover the time between).
    fn alive(tx: &mut RingSender, from: i64, to: i64) {
        for s in (from..=to).step_by(5) {
            assert!(tx.push(SourceItem::Alive(t(s))));
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn bins_close_when_every_live_source_has_passed_them() {
        let mut h = start(2);
        alive(&mut h.senders[0], 0, 45);
        alive(&mut h.senders[1], 0, 0);
        settle().await;
        // Source 1 is still at 08:00:00: nothing may close yet.
        assert!(h.samples.try_recv().is_err());

        alive(&mut h.senders[1], 5, 40);
        settle().await;
        let mut closed = Vec::new();
        while let Ok(s) = h.samples.try_recv() {
            closed.push((s.detector_id, s.bucket_start, s.volume));
        }
        // [08:00:00, 08:00:30) closes at 08:00:40 (10 s lateness), for both detectors:
        // listened to, no vehicle, so volume 0 rather than missing.
        assert_eq!(
            closed,
            [("d0".into(), t(0), Some(0)), ("d1".into(), t(0), Some(0))]
        );

        // A source whose task ended no longer holds the others back.
        drop(h.senders.remove(1));
        alive(&mut h.senders[0], 50, 75);
        settle().await;
        let next: Vec<_> = std::iter::from_fn(|| h.samples.try_recv().ok()).collect();
        assert!(
            next.iter()
                .any(|s| s.detector_id == "d0" && s.bucket_start == t(30))
        );

        h.stop.cancel();
        h.task.await.unwrap().unwrap();
        // The flush emitted the open bins, then the channel closed.
        let rest: Vec<_> = std::iter::from_fn(|| h.samples.try_recv().ok()).collect();
        assert!(rest.iter().all(|s| s.bucket_start >= t(30)));
        assert!(h.samples.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_raw_append_is_answered_only_once_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path(),
            crate::spool::SpoolConfig::with_max_total_bytes(1 << 20),
        )
        .unwrap();
        let counters = Arc::new(PipelineCounters::default());
        let (sample_tx, sample_rx) = mpsc::channel(4);
        let (raw_tx, raw_rx) = mpsc::channel(4);
        // Samples alone would wait an hour for their fsync: the raw reply must not.
        let writer = SpoolWriter::new(
            spool,
            sample_rx,
            Duration::from_secs(3600),
            None,
            Arc::clone(&counters),
        )
        .with_raw(raw_rx);
        let task = tokio::spawn(writer.run());
        let mut seqs = Vec::new();
        for i in 0..3u8 {
            let (durable, rx) = oneshot::channel();
            let at = t(i64::from(i));
            let payload = vec![i; 10];
            raw_tx
                .send(RawAppend {
                    appended_at: at,
                    payload,
                    durable,
                })
                .await
                .unwrap();
            let seq = tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .unwrap()
                .unwrap();
            assert!(counters.spool_durable_seq.load(Ordering::Relaxed) >= seq);
            seqs.push(seq);
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        drop(raw_tx);
        drop(sample_tx);
        let summary = task.await.unwrap().unwrap();
        assert!(summary.durable_seq >= seqs[2]);
    }
}
