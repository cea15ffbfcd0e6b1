//! The uplink: drains the spool's samples into the central database (DESIGN §5).
//!
//! One task. A session connects (TLS per `[uplink.tls]`, the edge's own role), checks the
//! role matches `node.edge_id`, reconciles cursors, then loops: read up to
//! `batch_max_samples` durable samples after the spool's cursor, write them as one batch
//! ([`central_sync::writer::write_batch`]), and only after the commit acknowledge them in
//! the spool, which trims it. A partial batch waits until `batch_max_age` after the uplink
//! first saw it, so a quiet box still sends within that time. Any failure ends the session;
//! the next starts after a capped, jittered backoff, and at once when the database
//! answers again.
//!
//! # Batch identity
//! `(edge_id, epoch, batch_seq)`: `epoch` identifies this spool ([`load_epoch`], a file in
//! the spool directory, so a re-created spool gets a new one); `batch_seq` is the spool
//! sequence number of the batch's last sample. A crash between commit and acknowledgement
//! is healed at the next session: the centre's cursor for this epoch is ahead of the
//! spool's, so the spool is acknowledged up to it and nothing is sent twice. Were a batch
//! re-sent anyway, the ledger makes it a no-op.
//!
//! # Shutdown
//! `stop` ends the task at once (the spool keeps what was not sent). `drain` (cancelled
//! once the spool writer has finished) sends what is left without waiting for partial
//! batches to age, and gives up quietly after [`DRAIN_BUDGET`] or at the first failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use central_sync::TrafficSample;
use central_sync::connect::{self, ConnectOptions, Tls};
use central_sync::writer::{self, Batch, EdgeReport, Outcome};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock::wall_now;
use crate::counters::PipelineCounters;
use crate::metrics::{self, SourceList};
use crate::pipeline::{SharedSpool, lock_spool};
use crate::sources::Backoff;

/// The file in the spool directory holding the spool's epoch.
pub const EPOCH_FILE: &str = "uplink-epoch";
/// How long the uplink may go on sending at shutdown once the spool writer is done.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(5);
/// How often an idle session looks for new samples (the spool writer also wakes it).
const POLL: Duration = Duration::from_millis(500);
/// How often `edge_node` is refreshed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// The uplink's settings.
#[derive(Debug, Clone)]
pub struct UplinkSettings {
    pub edge_id: String,
    pub site_id: Option<String>,
    pub connect: ConnectOptions,
    pub batch_max_samples: usize,
    pub batch_max_age: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl UplinkSettings {
    /// From the configuration's `[node]` and `[uplink]`.
    pub fn from_config(node: &edge_config::Node, up: &edge_config::Uplink) -> Self {
        let mut connect = ConnectOptions::new(up.database_url.as_str());
        connect.password = up.password().map(|p| p.expose().to_owned());
        connect.tls = match (up.tls.mode, &up.tls.ca_file) {
            (edge_config::TlsMode::Disable, _) => Tls::Disable,
            (edge_config::TlsMode::Require, _) => Tls::Require,
            (edge_config::TlsMode::VerifyFull, None) => Tls::VerifyFull,
            (edge_config::TlsMode::VerifyFull, Some(ca)) => Tls::VerifyFullWith {
                ca_file: ca.clone(),
            },
        };
        connect.application_name = format!("ingest-daemon {}", node.edge_id);
        let (backoff_min, backoff_max) = up.retry_backoff();
        Self {
            edge_id: node.edge_id.clone(),
            site_id: node.site_id.clone(),
            connect,
            batch_max_samples: up.batch_max_samples as usize,
            batch_max_age: up.batch_max_age(),
            backoff_min,
            backoff_max,
        }
    }
}

/// The spool's epoch: read from [`EPOCH_FILE`], or made (microseconds since the Unix epoch,
/// so a later spool has a larger epoch) and stored durably.
pub fn load_epoch(spool_dir: &Path) -> anyhow::Result<i64> {
    let path = spool_dir.join(EPOCH_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold an epoch", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_epoch(spool_dir, 0),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Stores a new epoch above `above` and returns it.
fn new_epoch(spool_dir: &Path, above: i64) -> anyhow::Result<i64> {
    let epoch = wall_now().timestamp_micros().max(above.saturating_add(1));
    let path = spool_dir.join(EPOCH_FILE);
    let temp: PathBuf = spool_dir.join(format!("{EPOCH_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&temp)?;
        std::io::Write::write_all(&mut f, format!("{epoch}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(spool_dir)?.sync_all()
    };
    write().with_context(|| format!("cannot store {}", path.display()))?;
    Ok(epoch)
}

/// The uplink task.
#[derive(Debug)]
pub struct Uplink {
    settings: UplinkSettings,
    spool: SharedSpool,
    spool_dir: PathBuf,
    epoch: i64,
    counters: Arc<PipelineCounters>,
    sources: SourceList,
    /// Woken by the spool writer when samples become durable.
    wake: Arc<Notify>,
}

type ReadResult = Result<(Vec<(u64, TrafficSample)>, u64), crate::spool::SpoolError>;

async fn joined(
    read: tokio::task::JoinHandle<ReadResult>,
) -> anyhow::Result<(Vec<(u64, TrafficSample)>, u64)> {
    read.await
        .context("the spool read task panicked")?
        .context("cannot read the spool")
}

type AckResult = Result<(), crate::spool::SpoolError>;

async fn finish_ack(ack: Option<tokio::task::JoinHandle<AckResult>>) -> anyhow::Result<()> {
    let Some(ack) = ack else { return Ok(()) };
    ack.await
        .context("the spool ack task panicked")?
        .context("cannot acknowledge samples in the spool")
}

/// Why a session ended without an error.
enum SessionEnd {
    Stopped,
    Drained,
}

impl Uplink {
    pub fn new(
        settings: UplinkSettings,
        spool: SharedSpool,
        counters: Arc<PipelineCounters>,
        sources: SourceList,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let spool_dir = lock_spool(&spool).root().to_path_buf();
        let epoch = load_epoch(&spool_dir)?;
        Ok(Self {
            settings,
            spool,
            spool_dir,
            epoch,
            counters,
            sources,
            wake,
        })
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Runs until `stop`, or until `drain` and the spool is empty (or the drain budget is
    /// spent, or the database fails during the drain).
    pub async fn run(mut self, stop: CancellationToken, drain: CancellationToken) {
        let c = &Arc::clone(&self.counters);
        c.uplink.enabled.store(true, Ordering::Relaxed);
        let mut backoff = Backoff::new(
            self.settings.backoff_min,
            self.settings.backoff_max,
            &self.settings.edge_id,
        );
        let span = info_span!("uplink", epoch = self.epoch);
        async {
            info!(edge_id = %self.settings.edge_id, "uplink started");
            let mut drain_deadline: Option<Instant> = None;
            loop {
                if drain.is_cancelled() {
                    drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_BUDGET);
                }
                let result = tokio::select! {
                    r = self.session(&drain, &mut backoff) => r,
                    () = stop.cancelled() => Ok(SessionEnd::Stopped),
                    () = sleep_until_opt(drain_deadline) => {
                        warn!("uplink drain budget spent; the rest stays in the spool");
                        Ok(SessionEnd::Stopped)
                    }
                };
                c.uplink.connected.store(false, Ordering::Relaxed);
                match result {
                    Ok(SessionEnd::Stopped | SessionEnd::Drained) => break,
                    Err(e) => {
                        c.uplink.errors_total.fetch_add(1, Ordering::Relaxed);
                        let n = c.uplink.consecutive_errors.fetch_add(1, Ordering::Relaxed);
                        if drain.is_cancelled() {
                            warn!(
                                error = format!("{e:#}"),
                                "uplink failed while draining; the rest stays in the spool"
                            );
                            break;
                        }
                        let delay = backoff.next_delay();
                        // The first failure of a run of them is a warning, the rest quieter.
                        if n == 0 {
                            warn!(
                                error = format!("{e:#}"),
                                retry_in_ms = delay.as_millis(),
                                "uplink session failed"
                            );
                        } else {
                            debug!(
                                error = format!("{e:#}"),
                                retry_in_ms = delay.as_millis(),
                                failures = n + 1,
                                "uplink session failed"
                            );
                        }
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = drain.cancelled() => {}
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
            info!("uplink stopped");
        }
        .instrument(span)
        .await;
    }

    async fn session(
        &mut self,
        drain: &CancellationToken,
        backoff: &mut Backoff,
    ) -> anyhow::Result<SessionEnd> {
        let c = Arc::clone(&self.counters);
        let mut client = connect::connect(&self.settings.connect).await?;
        let edge = self.settings.edge_id.clone();
        writer::check_role(&client, &edge).await?;
        self.reconcile(&client).await?;
        c.uplink.connected.store(true, Ordering::Relaxed);
        if c.uplink.consecutive_errors.swap(0, Ordering::Relaxed) > 0 {
            info!("uplink connected again");
        }
        backoff.reset();
        self.heartbeat(&client).await?;
        let mut last_beat = Instant::now();
        let mut partial_since: Option<Instant> = None;
        // The next full batch, read while the previous one was being written.
        let mut prefetched: Option<(Vec<(u64, TrafficSample)>, u64)> = None;
        // The acknowledgement of the last commit (an fsync), done while the next batch
        // is written; awaited before anything reads the spool's cursor.
        let mut acking: Option<tokio::task::JoinHandle<AckResult>> = None;
        loop {
            if last_beat.elapsed() >= HEARTBEAT_EVERY {
                self.heartbeat(&client).await?;
                last_beat = Instant::now();
            }
            let draining = drain.is_cancelled();
            let max = self.settings.batch_max_samples;
            let (read, acked) = match prefetched.take() {
                Some(full) => full,
                None => {
                    finish_ack(acking.take()).await?;
                    joined(self.read(None, max)).await?
                }
            };
            let due = read.len() >= max
                || draining
                || partial_since.is_some_and(|t| t.elapsed() >= self.settings.batch_max_age);
            if read.is_empty() || !due {
                if read.is_empty() {
                    partial_since = None;
                    if draining {
                        return Ok(SessionEnd::Drained);
                    }
                } else {
                    partial_since.get_or_insert_with(Instant::now);
                }
                let wait = partial_since
                    .map_or(POLL, |t| {
                        (t + self.settings.batch_max_age).saturating_duration_since(Instant::now())
                    })
                    .min(POLL);
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    () = drain.cancelled(), if !draining => {}
                }
                continue;
            }
            partial_since = None;
            let Some(&(last_seq, _)) = read.last() else {
                continue;
            };
            let samples = self.usable(read);
            let batch_seq = i64::try_from(last_seq).context("spool sequence beyond i64")?;
            let batch =
                Batch::new(&edge, self.epoch, batch_seq, samples).context("cannot make a batch")?;
            let next = self.read(Some(last_seq), max);
            let outcome = writer::write_batch(&mut client, &batch).await;
            let next = joined(next).await?;
            let outcome = outcome?;
            if next.0.len() >= max {
                prefetched = Some(next);
            }
            debug!(
                after = acked,
                batch_seq,
                rows = batch.samples().len(),
                ?outcome,
                "batch committed"
            );
            finish_ack(acking.take()).await?;
            acking = Some(self.ack_task(last_seq));
            let u = &c.uplink;
            match outcome {
                Outcome::Fresh { .. } => &u.batches_fresh_total,
                Outcome::Merged { .. } => &u.batches_merged_total,
                Outcome::Replay => &u.batches_replayed_total,
            }
            .fetch_add(1, Ordering::Relaxed);
            u.rows_total
                .fetch_add(batch.samples().len() as u64, Ordering::Relaxed);
            u.last_commit_unix_ms
                .store(wall_now().timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// Keeps the samples the database can store; counts and logs the others.
    fn usable(&self, read: Vec<(u64, TrafficSample)>) -> Vec<TrafficSample> {
        let edge = &self.settings.edge_id;
        read.into_iter()
            .filter_map(|(seq, s)| {
                let why = if s.edge_id != *edge {
                    Some("the sample belongs to another edge id (node.edge_id changed?)")
                } else {
                    writer::check_sample(&s).err()
                };
                match why {
                    None => Some(s),
                    Some(why) => {
                        self.counters
                            .uplink
                            .rejected_samples_total
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(seq, why, "sample cannot be stored centrally; skipped");
                        None
                    }
                }
            })
            .collect()
    }

    /// Lines the spool's cursor up with the centre's: acknowledges what the centre has for
    /// this epoch but the spool does not know (a crash after a commit), and starts a new
    /// epoch when the centre has more than this spool ever held (the spool was re-created
    /// and the epoch file survived).
    async fn reconcile(&mut self, client: &tokio_postgres::Client) -> anyhow::Result<()> {
        let Some((epoch, seq)) = writer::read_cursor(client, &self.settings.edge_id).await? else {
            return Ok(());
        };
        if epoch != self.epoch {
            return Ok(());
        }
        let seq = u64::try_from(seq).unwrap_or(0);
        let spool = Arc::clone(&self.spool);
        let (acked, next) = tokio::task::spawn_blocking(move || {
            let s = lock_spool(&spool);
            (s.acked_seq(), s.next_seq())
        })
        .await?;
        if seq >= next {
            let old = self.epoch;
            self.epoch = new_epoch(&self.spool_dir, old)?;
            warn!(
                old,
                new = self.epoch,
                central_seq = seq,
                spool_next_seq = next,
                "the centre holds more of this epoch than the spool ever did: new epoch"
            );
        } else if seq > acked {
            info!(
                acked,
                central_seq = seq,
                "the centre already has these samples; acknowledging them"
            );
            self.ack(seq).await?;
        } else if seq < acked {
            warn!(
                acked,
                central_seq = seq,
                "the centre's cursor is behind the spool's (database restored?)"
            );
        }
        Ok(())
    }

    /// Reads up to `max` samples after `after` (`None`: after the spool's cursor) on the
    /// blocking pool; returns them and the seq they follow.
    fn read(&self, after: Option<u64>, max: usize) -> tokio::task::JoinHandle<ReadResult> {
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || {
            let mut s = lock_spool(&spool);
            let after = after.unwrap_or_else(|| s.acked_seq());
            let read = s.read_samples(after, max)?;
            Ok((read, after))
        })
    }

    async fn ack(&self, upto: u64) -> anyhow::Result<()> {
        finish_ack(Some(self.ack_task(upto))).await
    }

    /// Acknowledges every sample up to `upto` in the spool (persisting its cursor, trimming
    /// it) on the blocking pool.
    fn ack_task(&self, upto: u64) -> tokio::task::JoinHandle<AckResult> {
        let spool = Arc::clone(&self.spool);
        let counters = Arc::clone(&self.counters);
        tokio::task::spawn_blocking(move || {
            let mut s = lock_spool(&spool);
            s.ack_samples(upto)?;
            if let Ok(stat) = s.stat() {
                counters.set_spool_stat(stat);
            }
            Ok(())
        })
    }

    async fn heartbeat(&self, client: &tokio_postgres::Client) -> anyhow::Result<()> {
        let c = &self.counters;
        let now = wall_now();
        let sources = metrics::snapshot(&self.sources);
        let health = metrics::health(c, &sources, now);
        let source_health = serde_json::to_value(&health.sources).unwrap_or_default();
        let stat = c.spool_stat();
        let report = EdgeReport {
            edge_id: self.settings.edge_id.clone(),
            site_id: self.settings.site_id.clone(),
            software_version: env!("CARGO_PKG_VERSION").to_owned(),
            spool_bytes: stat
                .as_ref()
                .and_then(|s| i64::try_from(s.total_bytes).ok()),
            uplink_lag_s: Some(metrics::uplink_lag_s(c, now)),
            source_health,
        };
        writer::heartbeat(client, &report).await?;
        c.uplink.heartbeats_total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Refuses an `[uplink]` this build cannot use before anything starts.
pub fn check(up: &edge_config::Uplink) -> anyhow::Result<()> {
    if up.tls.mode == edge_config::TlsMode::VerifyFull {
        let tls = match &up.tls.ca_file {
            Some(ca) => Tls::VerifyFullWith {
                ca_file: ca.clone(),
            },
            None => Tls::VerifyFull,
        };
        if let Err(e) = connect::client_config(&tls) {
            bail!("[uplink.tls]: {e}");
        }
    }
    Ok(())
}
