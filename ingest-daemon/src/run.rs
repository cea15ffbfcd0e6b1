//! `ingest-daemon run`: wire sources, rings, aggregator and spool, then supervise them until
//! a stop (see [`crate::shutdown`]).
//!
//! Order of work: check the configuration can run in this build, lock and open the spool
//! (before any task exists: opening may repair files), start a tokio runtime with two
//! worker threads, spawn one task per source plus the aggregator and the spool writer, and
//! wait for a stop. The drain then goes front to back: sources first (each hands over what
//! it has), then the aggregator (drains, flushes, closes the sample channel), then the spool
//! writer (appends, fsyncs). Every task is joined.
//!
//! # Operations
//! Beside the pipeline run the HTTP endpoint ([`crate::http`], on `[http] listen`; a port
//! that cannot be bound is logged and the daemon runs without it: data first) and the
//! systemd notifier ([`crate::notify`]): `READY=1` once every task is spawned, `STATUS=`
//! and `WATCHDOG=1` from then on, `STOPPING=1` when the drain starts. Both stop when the
//! drain starts. `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` are read from the
//! environment given to [`run`]. SIGHUP reloads the configuration file: see
//! [`crate::reload`] for what is applied live.
//!
//! # The spool directory
//! `--spool-dir` wins. Otherwise a configuration file's `spool.dir` is used (default
//! `/var/lib/ingest-daemon/spool`, which systemd's `StateDirectory=` creates on a box).
//! The built-in demo configuration is meant for a developer's machine, where that directory
//! usually does not exist or is not writable: with it, and without `INGEST__SPOOL__DIR`,
//! the spool is `./ingest-spool` under the current directory (see [`DEMO_SPOOL_DIR`]). The
//! choice is logged. The `spool` subcommands resolve the directory the same way, so
//! `ingest-daemon run` and `ingest-daemon spool stat` without options meet in one place.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use edge_config::{
    Config, ConfigError, DEFAULT_CONFIG, FileAccess, HostFiles, MqttSource, Node, SerialSource,
    SimulatedSource,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::aggregate::{Aggregator, AggregatorConfig, LaneMap};
use crate::clips::{CLIP_JOB_QUEUE, ClipJob, ClipWriter};
use crate::clock::{PipelineClock, wall_now};
use crate::counters::{PipelineCounters, SourceCounters};
use crate::http::ClipApi;
use crate::http::OpsState;
use crate::metrics::{SourceEntry, SourceList};
use crate::notify::Notifier;
use crate::pipeline::{
    AddInput, AggregatorTask, Input, RAW_CHANNEL_CAPACITY, RawAppend, SAMPLE_CHANNEL_CAPACITY,
    SamplePrinter, SpoolWriter, WriterSummary,
};
use crate::shutdown::{DRAIN_DEADLINE, Signals, StopReason, finish_drain};
use crate::sources::analytics;
use crate::sources::camera::health::CameraHealth;
use crate::sources::camera::{Camera, CameraParts};
use crate::sources::mqtt::{self, Mqtt};
use crate::sources::replay::Replay;
use crate::sources::serial::{self, Serial};
use crate::sources::simulated::{self, Simulated};
use crate::sources::{RING_CAPACITY, RingSender, Source, ring, run_source};
use crate::spool::{Spool, SpoolConfig};
use crate::spool_lock::SpoolLock;
use crate::uplink::{Uplink, UplinkSettings};

/// The spool directory of the built-in demo configuration, relative to the current directory.
pub const DEMO_SPOOL_DIR: &str = "ingest-spool";
/// The name the built-in configuration goes by in messages.
pub const BUILTIN_CONFIG_NAME: &str = "<built-in minimal.toml>";
/// The environment variable that overrides `spool.dir`.
const SPOOL_DIR_VAR: &str = "INGEST__SPOOL__DIR";
/// Worker threads of the runtime: the work is light, and the box has few cores.
const WORKER_THREADS: usize = 2;

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file name as given, or [`BUILTIN_CONFIG_NAME`].
    pub name: String,
    /// True for the built-in demo configuration.
    pub builtin: bool,
}

/// Loads `path`, or the built-in demo configuration when `None`, with environment overrides.
pub fn load_config(
    path: Option<&Path>,
    env: &[(String, String)],
    files: &dyn FileAccess,
) -> Result<LoadedConfig, ConfigError> {
    let env = env.iter().cloned();
    match path {
        Some(path) => {
            let name = path.display().to_string();
            let config = match std::fs::read_to_string(path) {
                Ok(text) => Config::from_str_with_files(&name, &text, env, files)?,
                // The loader words the read error the same way for every caller.
                Err(_) => Config::load(path, env)?,
            };
            Ok(LoadedConfig {
                config,
                name,
                builtin: false,
            })
        }
        None => Ok(LoadedConfig {
            config: Config::from_str_with_files(BUILTIN_CONFIG_NAME, DEFAULT_CONFIG, env, files)?,
            name: BUILTIN_CONFIG_NAME.to_owned(),
            builtin: true,
        }),
    }
}

/// Where the spool directory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolDirOrigin {
    Flag,
    Config,
    Demo,
}

/// The spool directory (absolute); see the module documentation.
pub fn spool_dir(
    loaded: &LoadedConfig,
    flag: Option<&Path>,
    env: &[(String, String)],
) -> std::io::Result<(PathBuf, SpoolDirOrigin)> {
    if let Some(dir) = flag {
        return Ok((std::path::absolute(dir)?, SpoolDirOrigin::Flag));
    }
    let env_sets_dir = env.iter().any(|(k, _)| k == SPOOL_DIR_VAR);
    if loaded.builtin && !env_sets_dir {
        return Ok((std::path::absolute(DEMO_SPOOL_DIR)?, SpoolDirOrigin::Demo));
    }
    Ok((loaded.config.spool.dir.clone(), SpoolDirOrigin::Config))
}

/// The spool's sizing from `[spool]`. The spool needs room for four segments (so that
/// eviction frees space in steps); the configuration allows two, so a larger segment size
/// is lowered to a quarter of `max_bytes`, with a warning.
pub fn spool_config(cfg: &edge_config::Spool) -> SpoolConfig {
    let max_total_bytes = cfg.max_bytes.bytes();
    let mut max_segment_bytes = cfg.segment_bytes.bytes();
    if max_segment_bytes > max_total_bytes / 4 {
        warn!(
            segment_bytes = max_segment_bytes,
            max_bytes = max_total_bytes,
            "spool.segment_bytes is above a quarter of spool.max_bytes; using a quarter"
        );
        max_segment_bytes = max_total_bytes / 4;
    }
    SpoolConfig {
        max_total_bytes,
        max_segment_bytes: max_segment_bytes.max(SpoolConfig::MIN_SEGMENT_BYTES),
        sync_interval: cfg.fsync_interval(),
    }
}

/// The aggregator's settings from the configuration; the rest at their defaults.
pub fn aggregator_config(config: &Config) -> AggregatorConfig {
    AggregatorConfig {
        edge_id: config.node.edge_id.clone(),
        interval_s: config.aggregation.interval_s,
        allowed_lateness_ms: config.aggregation.allowed_lateness_s.saturating_mul(1000),
        max_clock_skew_ms: config.aggregation.max_clock_skew_s.saturating_mul(1000),
        ..AggregatorConfig::default()
    }
}

/// Refuses sources this build cannot run, rather than silently ignoring them.
pub fn check_supported(config: &Config) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    for s in &config.serial {
        serial::check(s)?;
        serial::lane_map(s)?;
    }
    for (i, s) in config.mqtt.iter().enumerate() {
        if let Err(e) = mqtt::plan(s) {
            refused.push(format!("mqtt[{i}] {:?}: {e}", s.id));
        }
    }
    for (i, s) in config.camera.iter().enumerate() {
        analytics::plan(s)?;
        if s.url.scheme() != "rtsp" {
            refused.push(format!("camera[{i}] {:?}: rtsps:// (RTSP over TLS)", s.id));
        }
    }
    if !refused.is_empty() {
        bail!(
            "not supported yet by this build: {} (`check-config` still validates the whole file)",
            refused.join(", ")
        );
    }
    if let Some(up) = &config.uplink {
        crate::uplink::check(up)?;
    }
    if config.simulated.is_empty()
        && config.serial.is_empty()
        && config.mqtt.is_empty()
        && config.camera.is_empty()
    {
        bail!("the configuration has no source this build can run");
    }
    Ok(())
}

/// Options of `run` besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub spool_dir: Option<PathBuf>,
    /// Stop (drain, exit 0) after this much wall time.
    pub run_for: Option<Duration>,
    /// Simulated sources only: clock time per wall time. 1 = real time.
    pub time_scale: f64,
    /// Simulated sources only: the clock's start. Default: now.
    pub sim_start: Option<DateTime<Utc>>,
}

/// Runs the daemon until stopped; returns the process exit code (0 after a clean drain).
/// `printer` receives a line per spooled sample (`--print-samples`).
pub fn run(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    env: &[(String, String)],
    printer: Option<SamplePrinter>,
) -> anyhow::Result<u8> {
    let config = &loaded.config;
    check_supported(config)?;
    let (dir, origin) = spool_dir(loaded, opts.spool_dir.as_deref(), env)
        .context("cannot resolve the spool directory")?;
    match origin {
        SpoolDirOrigin::Demo => info!(
            spool = %dir.display(),
            "built-in demo configuration: spooling under the current directory \
             (pass --spool-dir to choose another place)"
        ),
        SpoolDirOrigin::Flag | SpoolDirOrigin::Config => {
            info!(spool = %dir.display(), "spool directory")
        }
    }
    let lock = SpoolLock::acquire(&dir)?;
    let spool_cfg = spool_config(&config.spool);
    let sync_interval = spool_cfg.sync_interval;
    let spool = Spool::open(&dir, spool_cfg)
        .with_context(|| format!("cannot open the spool in {}", dir.display()))?;
    let initial_spool_stat = spool.stat().ok();
    let replay = if config.mqtt.is_empty() {
        Replay::default()
    } else {
        let window = replay_window(config);
        Replay::from_spool(&spool, window).unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the spool's last moments; nothing replayed");
            Replay::default()
        })
    };

    let scale = if opts.time_scale > 0.0 {
        opts.time_scale
    } else {
        1.0
    };
    if scale != 1.0 || opts.sim_start.is_some() {
        warn!(
            time_scale = scale,
            sim_start = ?opts.sim_start,
            "demo mode: simulated time runs {scale}x the wall clock; samples carry simulated times"
        );
    }
    info!(
        config = %loaded.name,
        edge_id = %config.node.edge_id,
        sources = config.source_ids().len(),
        interval_s = config.aggregation.interval_s,
        "ingest-daemon starting"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("ingest-worker")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let parts = Parts {
        config: config.clone(),
        config_path: (!loaded.builtin).then(|| PathBuf::from(&loaded.name)),
        env: env.to_vec(),
        spool,
        initial_spool_stat,
        replay,
        sync_interval,
        printer,
        run_for: opts.run_for,
        scale,
        sim_start: opts.sim_start,
        notifier: Arc::new(Notifier::from_env(env)),
        watchdog: crate::notify::watchdog_interval(env),
    };
    let code = runtime.block_on(supervise(parts));
    // A second signal must not wait for blocking spool work still running.
    runtime.shutdown_background();
    drop(lock);
    Ok(code)
}

/// How far back before the spool's newest record the raw MQTT messages are replayed at
/// start: two bins and their lateness, plus the clock skew allowed (see
/// [`crate::sources::replay`]).
fn replay_window(config: &Config) -> chrono::TimeDelta {
    let a = &config.aggregation;
    let bin_s = i64::from(a.interval_s) + i64::from(a.allowed_lateness_s);
    chrono::TimeDelta::seconds(2 * bin_s + i64::from(a.max_clock_skew_s))
}

struct Parts {
    config: Config,
    /// The file to reload on SIGHUP; `None` for the built-in configuration.
    config_path: Option<PathBuf>,
    env: Vec<(String, String)>,
    spool: Spool,
    initial_spool_stat: Option<crate::spool::SpoolStat>,
    /// The raw MQTT messages of the bins open at the last stop (taken by each source).
    replay: Replay,
    sync_interval: Duration,
    printer: Option<SamplePrinter>,
    run_for: Option<Duration>,
    scale: f64,
    sim_start: Option<DateTime<Utc>>,
    notifier: Arc<Notifier>,
    watchdog: Option<Duration>,
}

/// The running sources: one task each, stoppable one by one.
struct SourceSet {
    tasks: JoinSet<()>,
    /// (source id, its own stop token: a child of `stop_all`).
    running: Vec<(String, CancellationToken)>,
    stop_all: CancellationToken,
    list: SourceList,
    add_input: mpsc::Sender<AddInput>,
    /// Raw records for the spool writer (MQTT sources); dropped once the sources have ended.
    raw: Option<mpsc::Sender<RawAppend>>,
    max_raw_record: u64,
    wake: Arc<Notify>,
    clock: PipelineClock,
    node: Node,
    interval_s: u32,
    /// Consumed by the MQTT sources at their first start (empty after a reload).
    replay: Replay,
    /// Clip jobs for the clip writer; dropped once the sources have ended.
    clip_jobs: Option<mpsc::Sender<ClipJob>>,
    clip_api: ClipApi,
}

impl SourceSet {
    /// Makes a ring for one detector of a source and registers its input with the aggregator
    /// through the control channel; `None` when the aggregator takes no more inputs.
    fn add_detector(
        &self,
        source_id: &str,
        detector_id: &str,
        lanes: LaneMap,
        counters: &Arc<SourceCounters>,
        resume: Vec<(u16, DateTime<Utc>)>,
    ) -> Option<RingSender> {
        let (tx, rx) = ring(RING_CAPACITY, Arc::clone(&self.wake), Arc::clone(counters));
        let site = self.node.site_id().to_owned();
        let detector = detector_id.to_owned();
        let id = source_id.to_owned();
        let add: AddInput = Box::new(move |agg, now| {
            let det = agg.add_detector(&site, &detector, &lanes);
            for (road_lane, at) in resume {
                agg.resume_series(det, road_lane, at);
            }
            agg.open_series(det, now);
            Input::new(id, det, rx)
        });
        if self.add_input.try_send(add).is_err() {
            error!(source = %source_id, "the aggregator does not take new sources; not started");
            return None;
        }
        Some(tx)
    }

    /// Spawns a source's task under its own stop token and lists it for `/metrics`.
    fn spawn<S: Source + Send + 'static>(
        &mut self,
        id: &str,
        kind: &'static str,
        source: S,
        counters: Arc<SourceCounters>,
        camera: Option<Arc<CameraHealth>>,
    ) {
        let stop = self.stop_all.child_token();
        self.tasks
            .spawn(run_source(source, Arc::clone(&counters), stop.clone()));
        self.running.push((id.to_owned(), stop));
        self.list_mut().push(SourceEntry {
            id: id.to_owned(),
            kind,
            counters,
            camera,
        });
    }

    fn start_simulated(&mut self, src: &SimulatedSource, counters: Arc<SourceCounters>) {
        let lanes = simulated::lane_map(src);
        let Some(tx) = self.add_detector(&src.id, src.detector_id(), lanes, &counters, Vec::new())
        else {
            return;
        };
        let source = Simulated::new(src, self.clock, tx);
        self.spawn(&src.id, "simulated", source, counters, None);
    }

    fn start_serial(&mut self, src: &SerialSource, counters: Arc<SourceCounters>) {
        // check_supported has vetted the lane map.
        let Ok(lanes) = serial::lane_map(src) else {
            return;
        };
        let Some(tx) = self.add_detector(&src.id, src.detector_id(), lanes, &counters, Vec::new())
        else {
            return;
        };
        let source = Serial::new(src, self.interval_s, self.clock, tx, Arc::clone(&counters));
        self.spawn(&src.id, "serial", source, counters, None);
    }

    fn start_mqtt(
        &mut self,
        src: &MqttSource,
        counters: Arc<SourceCounters>,
    ) -> anyhow::Result<()> {
        let plan = mqtt::plan(src)?;
        let raw = self
            .raw
            .clone()
            .context("the spool writer takes no more raw records")?;
        let replay = self.replay.take_source(&src.id);
        let mut rings = Vec::new();
        for (detector_id, lanes) in &plan.detectors {
            // Replayed events must reach bins before now: the series resume where the
            // spool left them.
            let resume = if replay.messages.is_empty() {
                Vec::new()
            } else {
                lanes
                    .road_lanes()
                    .into_iter()
                    .filter_map(|l| Some((l, self.replay.resume_at(detector_id, l)?)))
                    .collect()
            };
            match self.add_detector(&src.id, detector_id, lanes.clone(), &counters, resume) {
                Some(tx) => rings.push(tx),
                None => return Ok(()),
            }
        }
        let source = Mqtt::new(
            src,
            &self.node,
            plan,
            rings,
            raw,
            self.clock,
            Arc::clone(&counters),
            self.max_raw_record,
            replay,
        );
        self.spawn(&src.id, "mqtt", source, counters, None);
        Ok(())
    }

    fn start_camera(
        &mut self,
        src: &edge_config::CameraSource,
        counters: Arc<SourceCounters>,
    ) -> anyhow::Result<()> {
        let clip_jobs = self
            .clip_jobs
            .clone()
            .context("the clip writer takes no more jobs")?;
        let analytics = match analytics::plan(src)? {
            Some(plan) => {
                let mut rings = Vec::new();
                for (detector_id, pairs) in &plan.detectors {
                    let lanes = LaneMap::from_pairs(pairs.iter().copied())
                        .with_context(|| format!("camera {:?} lanes", src.id))?;
                    match self.add_detector(&src.id, detector_id, lanes, &counters, Vec::new()) {
                        Some(tx) => rings.push(tx),
                        None => return Ok(()),
                    }
                }
                Some((analytics::Analytics::new(plan.routes), rings))
            }
            None => None,
        };
        let health = Arc::new(CameraHealth::new(Duration::from_secs(u64::from(
            src.down_after_s,
        ))));
        let (clip_tx, clip_rx) = mpsc::channel(CLIP_REQUEST_QUEUE);
        self.clip_api
            .cameras
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(src.id.clone(), clip_tx);
        let parts = CameraParts {
            health: Arc::clone(&health),
            counters: Arc::clone(&counters),
            analytics,
            clock: self.clock,
            clip_rx,
            clip_jobs,
        };
        let source = Camera::new(src, parts);
        self.spawn(&src.id, "camera", source, counters, Some(health));
        Ok(())
    }

    /// Starts the source with this id from `config`, whatever its kind.
    fn start(&mut self, config: &Config, id: &str, counters: Arc<SourceCounters>) {
        if let Some(src) = config.simulated.iter().find(|s| s.id == id) {
            self.start_simulated(src, counters);
        } else if let Some(src) = config.serial.iter().find(|s| s.id == id) {
            self.start_serial(src, counters);
        } else if let Some(src) = config.mqtt.iter().find(|s| s.id == id) {
            if let Err(e) = self.start_mqtt(src, counters) {
                error!(source = %id, error = format!("{e:#}"), "cannot run an MQTT source");
            }
        } else if let Some(src) = config.camera.iter().find(|s| s.id == id)
            && let Err(e) = self.start_camera(src, counters)
        {
            error!(source = %id, error = format!("{e:#}"), "cannot run a camera");
        }
    }

    /// Stops one source (its task ends at its next await; its ring then closes).
    fn stop(&mut self, id: &str) {
        self.running.retain(|(i, token)| {
            if i == id {
                token.cancel();
            }
            i != id
        });
        self.list_mut().retain(|e| e.id != id);
        self.clip_api
            .cameras
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn list_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<SourceEntry>> {
        self.list.write().unwrap_or_else(|p| p.into_inner())
    }
}

enum CoreExit {
    Aggregator(anyhow::Result<()>),
    Writer(anyhow::Result<WriterSummary>),
}

async fn supervise(parts: Parts) -> u8 {
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return 1;
        }
    };
    let config = &parts.config;
    let counters = Arc::new(PipelineCounters::new(config.source_ids()));
    let clock = PipelineClock::new(parts.sim_start.unwrap_or_else(wall_now), parts.scale);
    let aggregator = match Aggregator::new(aggregator_config(config)) {
        Ok(a) => a,
        Err(e) => {
            error!(error = %e, "invalid aggregation settings");
            return 1;
        }
    };

    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install the SIGHUP handler");
            return 1;
        }
    };
    if let Some(stat) = parts.initial_spool_stat.clone() {
        counters.set_spool_stat(stat);
    }
    let mut config = parts.config.clone();

    let stop_aggregator = CancellationToken::new();
    let (add_tx, add_rx) = mpsc::channel(ADD_INPUT_CAPACITY);
    let (raw_tx, raw_rx) = mpsc::channel(RAW_CHANNEL_CAPACITY);
    let (clip_tx, clip_rx) = mpsc::channel(CLIP_JOB_QUEUE);
    let clip_api = ClipApi {
        dir: Some(config.clips.dir.clone()),
        ..ClipApi::default()
    };
    let mut sources = SourceSet {
        tasks: JoinSet::new(),
        running: Vec::new(),
        stop_all: CancellationToken::new(),
        list: Arc::new(RwLock::new(Vec::new())),
        add_input: add_tx,
        raw: Some(raw_tx),
        max_raw_record: parts.spool.config().max_payload_bytes(),
        wake: Arc::new(Notify::new()),
        clock,
        node: config.node.clone(),
        interval_s: config.aggregation.interval_s,
        replay: parts.replay,
        clip_jobs: Some(clip_tx),
        clip_api: clip_api.clone(),
    };
    for src in &config.simulated {
        let source_counters = counters.source(&src.id).unwrap_or_default();
        sources.start_simulated(src, source_counters);
    }
    for src in &config.serial {
        let source_counters = counters.source(&src.id).unwrap_or_default();
        sources.start_serial(src, source_counters);
    }
    for src in &config.mqtt {
        let source_counters = counters.source(&src.id).unwrap_or_default();
        if let Err(e) = sources.start_mqtt(src, source_counters) {
            error!(source = %src.id, error = format!("{e:#}"), "cannot run an MQTT source");
            return 1;
        }
    }

    for src in &config.camera {
        let source_counters = counters.source(&src.id).unwrap_or_default();
        if let Err(e) = sources.start_camera(src, source_counters) {
            error!(source = %src.id, error = format!("{e:#}"), "cannot run a camera");
            return 1;
        }
    }
    let mut clip_writer = JoinSet::new();
    clip_writer.spawn(
        ClipWriter {
            dir: config.clips.dir.clone(),
            max_bytes: config.clips.max_bytes.bytes(),
            jobs: clip_rx,
        }
        .run()
        .instrument(info_span!("clips")),
    );

    let (sample_tx, sample_rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
    let tick = clock
        .wall_duration(Duration::from_secs(1))
        .max(Duration::from_millis(10));
    let aggregator_task = AggregatorTask::new(
        aggregator,
        Vec::new(),
        Arc::clone(&sources.wake),
        sample_tx,
        clock,
        tick,
        Arc::clone(&counters),
    )
    .with_control(add_rx);
    let mut writer = SpoolWriter::new(
        parts.spool,
        sample_rx,
        parts.sync_interval,
        parts.printer,
        Arc::clone(&counters),
    )
    .with_raw(raw_rx);
    // The uplink runs beside the pipeline; it stops last, after the spool writer, so that
    // it can send what the drain flushed.
    let stop_uplink = CancellationToken::new();
    let drain_uplink = CancellationToken::new();
    let mut uplink_task = JoinSet::new();
    if let Some(up) = &config.uplink {
        let durable = Arc::new(Notify::new());
        writer = writer.with_durable_notify(Arc::clone(&durable));
        let settings = UplinkSettings::from_config(&config.node, up);
        match Uplink::new(
            settings,
            writer.spool(),
            Arc::clone(&counters),
            Arc::clone(&sources.list),
            durable,
        ) {
            Ok(uplink) => {
                info!(epoch = uplink.epoch(), database = %up.database_url, "uplink configured");
                uplink_task.spawn(uplink.run(stop_uplink.clone(), drain_uplink.clone()));
            }
            Err(e) => {
                error!(error = format!("{e:#}"), "cannot start the uplink");
                return 1;
            }
        }
    }
    let mut core = JoinSet::new();
    {
        let stop = stop_aggregator.clone();
        core.spawn(
            async move { CoreExit::Aggregator(aggregator_task.run(stop).await) }
                .instrument(info_span!("aggregator")),
        );
    }
    core.spawn(async move { CoreExit::Writer(writer.run().await) }.instrument(info_span!("spool")));

    let stop_ops = CancellationToken::new();
    let mut ops = JoinSet::new();
    let ops_state = OpsState {
        counters: Arc::clone(&counters),
        sources: Arc::clone(&sources.list),
        clips: clip_api,
    };
    match tokio::net::TcpListener::bind(config.http.listen).await {
        Ok(listener) => {
            info!(listen = %config.http.listen, "serving /metrics and /health");
            ops.spawn(
                crate::http::serve(listener, ops_state, stop_ops.clone())
                    .instrument(info_span!("http")),
            );
        }
        Err(e) => error!(
            listen = %config.http.listen,
            error = %e,
            "cannot listen for /metrics and /health; running without them"
        ),
    }
    let notifier = Arc::clone(&parts.notifier);
    ops.spawn(crate::notify::keep_alive(
        Arc::clone(&notifier),
        parts.watchdog,
        Arc::clone(&counters),
        Arc::clone(&sources.list),
        stop_ops.clone(),
    ));
    notifier.send(&[sd_notify::NotifyState::Ready]);
    info!(
        systemd_notify = notifier.is_enabled(),
        watchdog_ms = parts.watchdog.map(|w| w.as_millis()),
        "running"
    );

    // Until something asks us to stop.
    let mut failed = false;
    let reason = loop {
        tokio::select! {
            s = signals.recv() => break StopReason::Signal(s),
            () = sleep_opt(parts.run_for) => break StopReason::TimeUp,
            _ = hangup.recv() => {
                let path = parts.config_path.as_deref();
                if let Some(new) = reload(path, &parts.env, &config, &mut sources) {
                    config = new;
                }
            }
            Some(done) = sources.tasks.join_next() => {
                // Sources loop until told to stop; one that ends has panicked. Others go on.
                if let Err(e) = done {
                    error!(error = %e, "a source task died; the other sources go on");
                }
            }
            Some(done) = core.join_next() => {
                failed = true;
                break StopReason::Failure(describe_core_exit(done));
            }
        }
    };
    if failed {
        error!(%reason, "stopping");
    } else {
        info!(%reason, deadline_s = DRAIN_DEADLINE.as_secs(), "stopping: draining");
    }

    notifier.send(&[sd_notify::NotifyState::Stopping]);
    stop_ops.cancel();
    sources.stop_all.cancel();
    let drain = async {
        let mut ok = true;
        while ops.join_next().await.is_some() {}
        while let Some(done) = sources.tasks.join_next().await {
            if let Err(e) = done {
                error!(error = %e, "a source task died");
            }
        }
        // No source is left to send raw records or clips.
        sources.raw = None;
        sources.clip_jobs = None;
        while clip_writer.join_next().await.is_some() {}
        stop_aggregator.cancel();
        while let Some(done) = core.join_next().await {
            match done {
                Ok(CoreExit::Aggregator(Ok(()))) | Ok(CoreExit::Writer(Ok(_))) => {}
                other => {
                    error!(error = describe_core_exit(other), "drain failed");
                    ok = false;
                }
            }
        }
        // Every sample is in the spool now: send what the uplink can within its budget.
        drain_uplink.cancel();
        while uplink_task.join_next().await.is_some() {}
        ok
    };
    let clean = finish_drain(drain, signals.recv(), DRAIN_DEADLINE).await;
    stop_uplink.cancel();
    let code = if failed && clean == 0 { 1 } else { clean };
    log_totals(&counters);
    code
}

/// Clip triggers queued per camera.
const CLIP_REQUEST_QUEUE: usize = 4;

/// Control messages queued for the aggregator: more than any reload adds at once.
const ADD_INPUT_CAPACITY: usize = 256;

/// SIGHUP: loads the configuration file again and applies what [`crate::reload::plan`]
/// says. Returns the new configuration, or `None` when it is kept (invalid, unsupported).
fn reload(
    path: Option<&Path>,
    env: &[(String, String)],
    current: &Config,
    sources: &mut SourceSet,
) -> Option<Config> {
    let new = match load_config(path, env, &HostFiles) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            for p in &e.problems {
                error!(problem = %p, "SIGHUP: invalid configuration");
            }
            error!("SIGHUP: the configuration is not valid; keeping the running one");
            return None;
        }
    };
    if let Err(e) = check_supported(&new) {
        error!(
            error = format!("{e:#}"),
            "SIGHUP: keeping the running configuration"
        );
        return None;
    }
    let plan = crate::reload::plan(current, &new);
    info!(
        keep = ?plan.keep,
        restart = ?plan.restart,
        start = ?plan.start,
        stop = ?plan.stop,
        "SIGHUP: configuration reloaded"
    );
    if !plan.needs_restart.is_empty() {
        warn!(
            sections = ?plan.needs_restart,
            "SIGHUP: these sections changed and take effect at the next restart only"
        );
    }
    for id in plan.stop.iter().chain(&plan.restart) {
        sources.stop(id);
    }
    for id in plan.start.iter().chain(&plan.restart) {
        sources.start(&new, id, Arc::default());
    }
    Some(new)
}

fn describe_core_exit(done: Result<CoreExit, tokio::task::JoinError>) -> String {
    match done {
        Ok(CoreExit::Aggregator(Ok(()))) => "the aggregator stopped unexpectedly".to_owned(),
        Ok(CoreExit::Writer(Ok(_))) => "the spool writer stopped unexpectedly".to_owned(),
        Ok(CoreExit::Aggregator(Err(e))) => format!("aggregator: {e:#}"),
        Ok(CoreExit::Writer(Err(e))) => format!("spool writer: {e:#}"),
        Err(e) => format!("a task died: {e}"),
    }
}

fn log_totals(c: &PipelineCounters) {
    let agg = c.aggregator_stats();
    info!(
        events = c.sum(|s| &s.events_total),
        ring_dropped_events = c.sum(|s| &s.ring_dropped_events_total),
        source_errors = c.sum(|s| &s.errors_total),
        decode_errors = c.decode_errors(),
        skipped_bytes = c.sum(|s| &s.skipped_bytes_total),
        late_events = agg.late_dropped,
        samples_spooled = c.samples_spooled_total.load(Ordering::Relaxed),
        spool_bytes = c.spool_bytes.load(Ordering::Relaxed),
        durable_seq = c.spool_durable_seq.load(Ordering::Relaxed),
        "stopped"
    );
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_config::HostFiles;

    #[test]
    fn demo_spool_dir_unless_told_otherwise() {
        let builtin = load_config(None, &[], &HostFiles).unwrap();
        let (dir, origin) = spool_dir(&builtin, None, &[]).unwrap();
        assert_eq!(origin, SpoolDirOrigin::Demo);
        assert!(dir.is_absolute() && dir.ends_with(DEMO_SPOOL_DIR));

        let (dir, origin) = spool_dir(&builtin, Some(Path::new("x/y")), &[]).unwrap();
        assert_eq!(origin, SpoolDirOrigin::Flag);
        assert!(dir.is_absolute() && dir.ends_with("x/y"));

        let env = [(SPOOL_DIR_VAR.to_owned(), "/srv/spool".to_owned())];
        let with_env = load_config(None, &env, &HostFiles).unwrap();
        let (dir, origin) = spool_dir(&with_env, None, &env).unwrap();
        assert_eq!(origin, SpoolDirOrigin::Config);
        assert_eq!(dir, Path::new("/srv/spool"));
    }

    #[test]
    fn segment_size_is_kept_within_a_quarter_of_the_bound() {
        let cfg = edge_config::Spool {
            max_bytes: edge_config::ByteSize::mib(8),
            segment_bytes: edge_config::ByteSize::mib(4),
            ..edge_config::Spool::default()
        };
        let s = spool_config(&cfg);
        assert_eq!(s.max_segment_bytes, 2 << 20);
        s.validate().unwrap();
    }

    #[test]
    fn the_cameras_of_the_motorway_example_can_run() {
        let text = include_str!("../../edge-config/examples/motorway-site.toml");
        let files = AllFiles;
        let config =
            Config::from_str_with_files("motorway-site.toml", text, Vec::new(), &files).unwrap();
        // (The fake CA file makes the MQTT broker fail: this test is about the camera.)
        if let Err(e) = check_supported(&config) {
            assert!(!e.to_string().contains("camera"), "{e}");
        }
    }

    #[test]
    fn onvif_counter_payloads_over_mqtt_can_run() {
        let text = "[node]\nedge_id = \"e\"\n[[mqtt]]\nid = \"b\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
                    [[mqtt.topics]]\nfilter = \"a/b\"\nformat = \"onvif_counter\"\nlanes = { \"L1\" = 1 }\n";
        let config = Config::from_str_with_files("t.toml", text, Vec::new(), &AllFiles).unwrap();
        check_supported(&config).unwrap();
    }

    struct AllFiles;
    impl FileAccess for AllFiles {
        fn read_to_string(&self, _: &Path) -> std::io::Result<String> {
            Ok("x".into())
        }
        fn is_file(&self, _: &Path) -> bool {
            true
        }
    }
}
