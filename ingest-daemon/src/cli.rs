//! The command line: `run`, `status`, `check-config` and `spool stat|tail|export`.
//!
//! `main.rs` parses [`Cli`], collects the process environment once and calls [`main`];
//! nothing below reads the environment itself. Exit codes: 0 success; 1 an error (invalid
//! configuration, busy or missing spool, failed drain; for `status`, a daemon that answers
//! `failing`); 2 bad command-line usage (clap); 3 `status` found no daemon answering;
//! 130 / 143 when a second SIGINT / SIGTERM cut a drain short.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use edge_config::{Config, FileAccess, HostFiles};
use tracing_subscriber::EnvFilter;

use crate::clock::MAX_TIME_SCALE;
use crate::display;
use crate::run::{self, LoadedConfig, RunOptions};
use crate::spool::{RecordClass, Spool, export_samples_csv, export_samples_json};
use crate::spool_lock::SpoolLock;

/// The roadside ingest daemon: detectors in, traffic samples out, never lost.
#[derive(Debug, Parser)]
#[command(name = "ingest-daemon", version)]
pub struct Cli {
    /// Log line format: `text` (timestamps, for a terminal or file), `journald` (syslog
    /// priority prefixes like `<6>`, no timestamps), `json` (one JSON object per line with
    /// timestamp, level, target, fields and spans, for log shippers) or `auto` (journald
    /// when stderr is systemd's journal, from `JOURNAL_STREAM`, text otherwise).
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Journald,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sources → aggregator → spool, until SIGTERM/SIGINT or --for.
    ///
    /// Without --config it runs the built-in demo configuration (one simulated source on
    /// two lanes, no uplink) and spools to ./ingest-spool.
    Run(RunArgs),
    /// Check a configuration file; print every problem as file:line:column: key: reason.
    ///
    /// Exits 0 with a short summary when the file is valid, 1 otherwise.
    CheckConfig(CheckConfigArgs),
    /// Ask the running daemon how it is (its /health on [http] listen) and print a summary.
    ///
    /// Exits 0 when it answers ok or degraded, 1 when it answers failing, 3 when no daemon
    /// answers (then the spool's own figures are shown if the spool is not in use).
    Status(StatusArgs),
    /// Look into the spool (stop the daemon first: the spool is one process at a time).
    Spool(SpoolArgs),
    /// Ask the running daemon for a clip of a camera (through its local API).
    ///
    /// Prints the clip's file name (under clips.dir); with --wait, waits until it is
    /// finalised and prints its path. Exits 0 when the clip was started (and, with --wait,
    /// written), 1 when refused, 3 when no daemon answers.
    Clip(ClipArgs),
}

#[derive(Debug, Args)]
pub struct ClipArgs {
    /// The camera's source id.
    pub camera: String,
    /// Configuration file whose [http] listen and clips.dir to use [default: the built-in
    /// demo configuration].
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The moment of interest (RFC 3339) [default: now].
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub at: Option<DateTime<Utc>>,
    /// Seconds before it [default and maximum: the camera's pre_event_s].
    #[arg(long, value_name = "SECONDS")]
    pub pre: Option<u32>,
    /// Seconds after it [default: the camera's post_event_s].
    #[arg(long, value_name = "SECONDS")]
    pub post: Option<u32>,
    /// Wait until the clip is written, then print its path.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML) [default: the built-in demo configuration].
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Spool directory; overrides spool.dir [default: spool.dir, or ./ingest-spool with the
    /// built-in configuration].
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Print each traffic sample on stdout as it is spooled, one line each.
    #[arg(long)]
    pub print_samples: bool,
    /// Stop after this many seconds of wall time: drain, sync, exit 0.
    #[arg(long = "for", value_name = "SECONDS", value_parser = parse_seconds)]
    pub run_for: Option<Duration>,
    /// DEMO ONLY, simulated sources: simulated time runs N times faster than the wall
    /// clock, so a 30 s bin closes every 30/N s. Samples then carry simulated times.
    #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,
    /// Tests only: the simulated clock's start (RFC 3339) [default: now].
    #[arg(long, value_name = "RFC3339", hide = true, value_parser = parse_time)]
    pub sim_start: Option<DateTime<Utc>>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check [default: the built-in demo configuration].
    #[arg(value_name = "PATH", conflicts_with = "config")]
    pub path: Option<PathBuf>,
    /// The file to check (same as PATH).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not look for password_file and ca_file files: for checking a box's
    /// configuration on another machine. Everything else is checked.
    #[arg(long)]
    pub skip_files: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Configuration file whose [http] listen (and spool.dir) to use [default: the built-in
    /// demo configuration].
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Spool directory for the fallback figures when no daemon answers [default: spool.dir,
    /// or ./ingest-spool with the built-in configuration].
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Print the daemon's /health JSON as it came.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// Spool directory [default: spool.dir of --config, or ./ingest-spool].
    #[arg(long, value_name = "DIR", global = true)]
    pub spool_dir: Option<PathBuf>,
    /// Configuration file whose spool.dir and sizes to use.
    #[arg(long, short = 'c', value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SpoolCommand,
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Sizes, sequence numbers, upstream cursor, repairs.
    Stat {
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The last records, one line each.
    Tail {
        /// How many records.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
        lines: usize,
    },
    /// Write the samples to stdout.
    Export {
        /// csv (RFC 4180, a header line) or json (JSON Lines, one object per sample).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only samples with a sequence number above SEQ.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 1e9) {
        return Err(format!("{s} is not a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_time_scale(s: &str) -> Result<f64, String> {
    let n: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(n.is_finite() && n > 0.0 && n <= MAX_TIME_SCALE) {
        return Err(format!(
            "the time scale must be above 0 and at most {MAX_TIME_SCALE}"
        ));
    }
    Ok(n)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// Runs a parsed command line. `env` is the process environment (for `INGEST__*`
/// overrides, `CREDENTIALS_DIRECTORY` and `RUST_LOG`).
pub fn main(cli: Cli, env: Vec<(String, String)>) -> ExitCode {
    let default_log = match cli.command {
        Command::Run(_) => "info",
        Command::CheckConfig(_) | Command::Status(_) | Command::Spool(_) | Command::Clip(_) => {
            "warn"
        }
    };
    init_logging(&env, default_log, cli.log_format);
    let result = match cli.command {
        Command::Run(args) => cmd_run(args, &env),
        Command::CheckConfig(args) => cmd_check_config(args, &env),
        Command::Status(args) => cmd_status(args, &env),
        Command::Spool(args) => cmd_spool(args, &env),
        Command::Clip(args) => cmd_clip(args, &env),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // stderr is the journal under systemd, and the terminal otherwise.
            eprintln!("ingest-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(env: &[(String, String)], default: &str, format: LogFormat) {
    let filter = env
        .iter()
        .find(|(k, _)| k == "RUST_LOG")
        .and_then(|(_, v)| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let journald = match format {
        LogFormat::Journald => true,
        LogFormat::Text => false,
        LogFormat::Json => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(io::stderr)
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .try_init();
            return;
        }
        LogFormat::Auto => env
            .iter()
            .find(|(k, _)| k == "JOURNAL_STREAM")
            .is_some_and(|(_, v)| stderr_is(v)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let _ = if journald {
        let inner = tracing_subscriber::fmt::format()
            .without_time()
            .with_level(false)
            .with_ansi(false);
        builder
            .with_ansi(false)
            .event_format(journald::Prefixed(inner))
            .try_init()
    } else {
        builder.with_ansi(io::stderr().is_terminal()).try_init()
    };
}

/// True when stderr is the stream `JOURNAL_STREAM` (`device:inode`) names: a child of the
/// daemon whose stderr goes elsewhere inherits the variable, so its presence is not enough.
fn stderr_is(journal_stream: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Log lines for the journal: a syslog priority prefix (`sd-daemon(3)`), no timestamp.
mod journald {
    use std::fmt;

    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    /// Writes `<N>` for the event's level, then lets `F` format the rest.
    #[derive(Debug)]
    pub struct Prefixed<F>(pub F);

    pub fn priority(level: &Level) -> u8 {
        match *level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        }
    }

    impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            write!(writer, "<{}>", priority(event.metadata().level()))?;
            self.0.format_event(ctx, writer, event)
        }
    }
}

/// Prints the problems of an invalid configuration; the caller exits 1.
fn report_problems(e: &edge_config::ConfigError) {
    let mut err = io::stderr().lock();
    for p in &e.problems {
        let _ = writeln!(err, "{p}");
    }
    let n = e.problems.len();
    let _ = writeln!(
        err,
        "{n} problem{} found: the configuration is not valid",
        if n == 1 { "" } else { "s" }
    );
}

fn load_or_report(
    path: Option<&Path>,
    env: &[(String, String)],
    files: &dyn FileAccess,
) -> Option<LoadedConfig> {
    run::load_config(path, env, files)
        .map_err(|e| report_problems(&e))
        .ok()
}

fn cmd_run(args: RunArgs, env: &[(String, String)]) -> anyhow::Result<u8> {
    let Some(loaded) = load_or_report(args.config.as_deref(), env, &HostFiles) else {
        return Ok(1);
    };
    let opts = RunOptions {
        spool_dir: args.spool_dir,
        run_for: args.run_for,
        time_scale: args.time_scale,
        sim_start: args.sim_start,
    };
    let printer: Option<crate::pipeline::SamplePrinter> = args
        .print_samples
        .then(|| Box::new(io::stdout()) as crate::pipeline::SamplePrinter);
    run::run(&loaded, &opts, env, printer)
}

/// Pretends every secret and CA file exists (`check-config --skip-files`).
struct AssumeFilesExist;

impl FileAccess for AssumeFilesExist {
    fn read_to_string(&self, _: &Path) -> io::Result<String> {
        Ok("not-read".to_owned())
    }

    fn is_file(&self, _: &Path) -> bool {
        true
    }
}

fn cmd_check_config(args: CheckConfigArgs, env: &[(String, String)]) -> anyhow::Result<u8> {
    let path = args.path.or(args.config);
    let files: &dyn FileAccess = if args.skip_files {
        &AssumeFilesExist
    } else {
        &HostFiles
    };
    let loaded = match run::load_config(path.as_deref(), env, files) {
        Ok(loaded) => loaded,
        Err(e) => {
            report_problems(&e);
            if !args.skip_files && e.problems.iter().any(|p| p.key.ends_with("_file")) {
                eprintln!(
                    "(checking a box's file on another machine? --skip-files leaves out \
                     password_file and ca_file)"
                );
            }
            return Ok(1);
        }
    };
    let mut out = io::stdout().lock();
    out.write_all(config_summary(&loaded).as_bytes())?;
    Ok(0)
}

/// The `check-config` summary of a valid configuration.
pub fn config_summary(loaded: &LoadedConfig) -> String {
    use std::fmt::Write as _;
    let c: &Config = &loaded.config;
    let mut s = String::new();
    let _ = writeln!(s, "{}: OK", loaded.name);
    let _ = writeln!(
        s,
        "edge {}, site {}, {} s bins",
        c.node.edge_id,
        c.node.site_id(),
        c.aggregation.interval_s
    );
    let lanes = c.lane_assignments();
    let ids = c.source_ids();
    let _ = writeln!(
        s,
        "{} source{}, {} lane{}:",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        lanes.len(),
        if lanes.len() == 1 { "" } else { "s" }
    );
    let mut kinds: Vec<(String, String)> = Vec::new();
    for x in &c.serial {
        kinds.push((
            x.id.clone(),
            format!("serial {} on {}", x.protocol, x.port.display()),
        ));
    }
    for x in &c.mqtt {
        kinds.push((
            x.id.clone(),
            format!("mqtt {} ({} topic(s))", x.url, x.topics.len()),
        ));
    }
    for x in &c.camera {
        let what = if x.metadata {
            "with ONVIF counting"
        } else {
            "video only"
        };
        kinds.push((x.id.clone(), format!("camera, {what}")));
    }
    for x in &c.simulated {
        kinds.push((
            x.id.clone(),
            format!(
                "simulated, {} veh/h/lane, seed {}",
                x.vehicles_per_hour, x.seed
            ),
        ));
    }
    for (id, kind) in kinds {
        let mine: Vec<String> = lanes
            .iter()
            .filter(|l| l.source_id == id)
            .map(|l| format!("{}->{} ({})", l.device, l.lane, l.detector_id))
            .collect();
        let lanes = if mine.is_empty() {
            "no lanes".to_owned()
        } else {
            format!("lanes {}", mine.join(", "))
        };
        let _ = writeln!(s, "  {id}: {kind}; {lanes}");
    }
    let _ = writeln!(
        s,
        "spool {} (max {}); uplink {}",
        c.spool.dir.display(),
        display::bytes(c.spool.max_bytes.bytes()),
        c.uplink
            .as_ref()
            .and_then(|u| u.database_url.host_str().map(str::to_owned))
            .unwrap_or_else(|| "none: samples stay in the spool".to_owned())
    );
    if let Err(e) = run::check_supported(c) {
        let _ = writeln!(s, "note: `run` would refuse it: {e}");
    }
    s
}

fn cmd_clip(args: ClipArgs, env: &[(String, String)]) -> anyhow::Result<u8> {
    let Some(loaded) = load_or_report(args.config.as_deref(), env, &HostFiles) else {
        return Ok(1);
    };
    let addr = loaded.config.http.listen;
    let body = serde_json::json!({
        "camera": args.camera,
        "at": args.at,
        "pre_s": args.pre,
        "post_s": args.post,
    })
    .to_string();
    let answer = crate::status::http_request(addr, "POST", "/clips", Some(&body))
        .with_context(|| format!("something answers on {addr}, but not as ingest-daemon"))?;
    let Some(answer) = answer else {
        eprintln!("{}", crate::status::not_running(addr));
        return Ok(crate::status::EXIT_NOT_RUNNING);
    };
    let reply: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    if answer.code != 202 {
        let why = reply["error"].as_str().unwrap_or("refused");
        eprintln!("ingest-daemon: no clip (HTTP {}): {why}", answer.code);
        return Ok(1);
    }
    let name = reply["clip"].as_str().unwrap_or_default().to_owned();
    if !args.wait {
        println!("{name}");
        return Ok(0);
    }
    let path = loaded.config.clips.dir.join(&name);
    // The clip is due after its post-roll plus the writer's grace; allow as much again.
    let post = args.post.unwrap_or(crate::clips::MAX_WAIT_POST_S);
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(post) * 2 + 10);
    while std::time::Instant::now() < deadline {
        if path.exists() {
            println!("{}", path.display());
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("ingest-daemon: clip {name} not written in time (see the daemon's log)");
    Ok(1)
}

fn cmd_status(args: StatusArgs, env: &[(String, String)]) -> anyhow::Result<u8> {
    let Some(loaded) = load_or_report(args.config.as_deref(), env, &HostFiles) else {
        return Ok(1);
    };
    let addr = loaded.config.http.listen;
    let answer = crate::status::http_get(addr, "/health")
        .with_context(|| format!("something answers on {addr}, but not as ingest-daemon"))?;
    let Some(answer) = answer else {
        eprintln!("{}", crate::status::not_running(addr));
        status_spool_fallback(&loaded, args.spool_dir.as_deref(), env);
        return Ok(crate::status::EXIT_NOT_RUNNING);
    };
    let health: crate::status::Health = serde_json::from_str(&answer.body).with_context(|| {
        format!(
            "{addr} answered /health with HTTP {} but not with ingest-daemon's report",
            answer.code
        )
    })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", answer.body.trim_end())?;
    } else {
        let uplink = loaded
            .config
            .uplink
            .as_ref()
            .and_then(|u| u.database_url.host_str().map(str::to_owned));
        out.write_all(crate::status::summary(addr, &health, uplink.as_deref()).as_bytes())?;
    }
    Ok(health.exit_code())
}

/// With no daemon answering: the `spool stat` figures, when the spool exists and is free.
fn status_spool_fallback(loaded: &LoadedConfig, flag: Option<&Path>, env: &[(String, String)]) {
    let Ok((dir, _)) = run::spool_dir(loaded, flag, env) else {
        return;
    };
    if !dir.join("samples").is_dir() {
        eprintln!("no spool in {} either", dir.display());
        return;
    }
    let _lock = match SpoolLock::acquire(&dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!(
                "the spool in {} is in use, so not shown: {e:#}",
                dir.display()
            );
            return;
        }
    };
    let stat = Spool::open(&dir, run::spool_config(&loaded.config.spool)).and_then(|s| s.stat());
    match stat {
        Ok(stat) => {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "the spool, read directly:");
            let _ = out.write_all(display::spool_stat(&dir, &stat).as_bytes());
        }
        Err(e) => eprintln!("cannot read the spool in {}: {e:#}", dir.display()),
    }
}

fn cmd_spool(args: SpoolArgs, env: &[(String, String)]) -> anyhow::Result<u8> {
    let Some(loaded) = load_or_report(args.config.as_deref(), env, &HostFiles) else {
        return Ok(1);
    };
    let (dir, _) = run::spool_dir(&loaded, args.spool_dir.as_deref(), env)?;
    if !dir.join("samples").is_dir() {
        bail!(
            "no spool in {} (`ingest-daemon run --spool-dir {}` creates one)",
            dir.display(),
            dir.display()
        );
    }
    let _lock = SpoolLock::acquire(&dir)?;
    let spool = Spool::open(&dir, run::spool_config(&loaded.config.spool))
        .with_context(|| format!("cannot open the spool in {}", dir.display()))?;
    let mut out = io::stdout().lock();
    match args.command {
        SpoolCommand::Stat { json } => {
            let stat = spool.stat()?;
            if json {
                serde_json::to_writer_pretty(&mut out, &stat)?;
                writeln!(out)?;
            } else {
                out.write_all(display::spool_stat(&dir, &stat).as_bytes())?;
            }
        }
        SpoolCommand::Tail { lines } => {
            for record in spool.tail(lines)? {
                let line = match (record.class, record.sample()) {
                    (RecordClass::Sample, Some(Ok(sample))) => {
                        display::sample_line(record.seq, &sample)
                    }
                    (RecordClass::Sample, _) => {
                        format!("#{} sample that does not decode", record.seq)
                    }
                    (RecordClass::Raw, _) => format!(
                        "#{} raw {} bytes, appended {}",
                        record.seq,
                        record.payload.len(),
                        record
                            .appended_at()
                            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
                    ),
                };
                writeln!(out, "{line}")?;
            }
        }
        SpoolCommand::Export { format, after } => {
            let summary = match format {
                ExportFormat::Csv => export_samples_csv(&spool, after, &mut out)?,
                ExportFormat::Json => export_samples_json(&spool, after, &mut out)?,
            };
            out.flush()?;
            let mut err = io::stderr().lock();
            writeln!(err, "exported {} samples", summary.rows)?;
            if summary.decode_errors > 0 || summary.corrupt_records > 0 {
                writeln!(
                    err,
                    "skipped {} undecodable and {} corrupt records",
                    summary.decode_errors, summary.corrupt_records
                )?;
            }
        }
    }
    Ok(0)
}
