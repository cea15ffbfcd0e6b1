//! The uplink end to end, with real components: `detector-sim` writes PeMS lines into a
//! `socat` pty pair, the `ingest-daemon` binary reads them as a `[[serial]]` source and
//! sends its samples to a throwaway PostgreSQL (migrated by central-sync, the daemon
//! logging in as its own edge role).
//!
//! Ground truth: every sample the daemon spooled, as it printed them (`--print-samples`
//! prints a sample right after its spool write, so a kill -9 cannot take a printed one
//! back). Afterwards `traffic_sample` must hold exactly those (edge, detector, lane, bin)
//! rows with their volumes, once each, and the spool must be acknowledged up to the last.
//!
//! - outage: PostgreSQL is crash-stopped (`stop -m immediate`) while the daemon ingests,
//!   and started again a few seconds later;
//! - kill -9: the daemon is killed at random moments while batches of 5 samples commit
//!   every few ms, on one spool, several rounds, then runs to a clean exit.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use test_support::{PgServer, PtyPair, free_port};

use common::{http_get, metric_value, run_ok, wait_exit};

const EDGE: &str = "uplink-test";
const SIM_START: &str = "2024-03-04T08:00:00Z";
/// Simulated seconds per wall second, for the daemon's clock and detector-sim alike.
const SCALE: u32 = 100;

/// (detector, lane, bin start) → volume (`None`: not observed).
type Key = (String, u16, DateTime<Utc>);
type Rows = BTreeMap<Key, Option<i64>>;
/// A printed sample: (seq, key, volume).
type Printed = (u64, Key, Option<i64>);

struct Site {
    pg: PgServer,
    db: String,
    dir: tempfile::TempDir,
    pty: PtyPair,
    /// The detector-sim end, held open so that one run closing it does not hang up.
    _hold: File,
    http_port: u16,
}

impl Site {
    fn new(batch_max_samples: u32) -> Self {
        let pg = PgServer::new();
        let db = pg.fresh_database(None);
        let url = pg.connection_string(&db);
        thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    central_sync::migrate(&mut client).await.unwrap();
                    central_sync::roles::create_edge_role(&client, EDGE, "trust-auth-ignores-it")
                        .await
                        .unwrap();
                });
            });
        });
        let pty = PtyPair::new();
        let hold = File::options()
            .read(true)
            .write(true)
            .open(pty.b())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        std::fs::write(
            dir.path().join("site.toml"),
            format!(
                "[node]\nedge_id = \"{EDGE}\"\nsite_id = \"site-1\"\n\n\
                 [aggregation]\nmax_clock_skew_s = 3600\n\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
                 [uplink]\ndatabase_url = \"postgres://edge_{EDGE}@127.0.0.1:{}/{db}\"\n\
                 password = \"unused\"\nbatch_max_samples = {batch_max_samples}\n\
                 batch_max_age_ms = 100\nretry_backoff_min_ms = 20\nretry_backoff_max_ms = 300\n\
                 tls = {{ mode = \"disable\" }}\n\n\
                 [[serial]]\nid = \"det\"\nport = {:?}\nprotocol = \"pems\"\n\
                 lanes = {{ 1 = 1, 2 = 2 }}\n",
                pg.port(),
                pty.a().display().to_string(),
            ),
        )
        .unwrap();
        Self {
            pg,
            db,
            dir,
            pty,
            _hold: hold,
            http_port,
        }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Starts the daemon (stdout: printed samples, to `samples-N.txt`).
    fn daemon(&self, round: usize, start: &str, run_for_s: u32) -> Child {
        let out = File::create(self.dir.path().join(format!("samples-{round}.txt"))).unwrap();
        let err = File::create(self.dir.path().join(format!("daemon-{round}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
            .env_remove("RUST_LOG")
            .env_remove("INGEST__SPOOL__DIR")
            .args(["run", "--print-samples", "--sim-start", start])
            .args(["--time-scale", &SCALE.to_string()])
            .args(["--for", &run_for_s.to_string(), "--config"])
            .arg(self.dir.path().join("site.toml"))
            .arg("--spool-dir")
            .arg(self.spool())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap()
    }

    /// Starts detector-sim: `duration_s` simulated seconds from `start` at [`SCALE`].
    fn traffic(&self, start: &str, duration_s: u32, seed: u32) -> Child {
        Command::new(env!("CARGO_BIN_EXE_detector-sim"))
            .args(["--protocol", "pems", "--lanes", "2", "--start", start])
            .args(["--duration", &duration_s.to_string()])
            .args(["--pace", &format!("{SCALE}x"), "--seed", &seed.to_string()])
            .args(["--vehicles-per-hour", "1200", "--out"])
            .arg(self.pty.b())
            .arg("--truth")
            .arg(self.dir.path().join("truth.csv"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn log(&self, round: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("daemon-{round}.log")))
            .unwrap_or_default()
    }

    fn printed(&self, round: usize) -> Vec<Printed> {
        let f = File::open(self.dir.path().join(format!("samples-{round}.txt"))).unwrap();
        BufReader::new(f)
            .lines()
            .map(|l| parse_printed(&l.unwrap()))
            .collect()
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = http_get(self.http_port, "/metrics")?;
        metric_value(&body, series)
    }

    fn stored(&self) -> (Rows, usize) {
        let text = self.pg.psql(
            &self.db,
            &format!(
                "SELECT detector_id, lane, to_char(bucket_start AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), coalesce(volume::text, '-') \
                 FROM traffic_sample WHERE edge_id = '{EDGE}'"
            ),
        );
        let mut rows = Rows::new();
        let mut n = 0;
        for line in text.lines() {
            let f: Vec<&str> = line.split('|').collect();
            let key = (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            );
            rows.insert(key, f[3].parse().ok());
            n += 1;
        }
        (rows, n)
    }

    fn acked_seq(&self) -> u64 {
        let out = run_ok(
            Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
                .args(["spool", "stat", "--json", "--spool-dir"])
                .arg(self.spool()),
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["acked_seq"].as_u64().unwrap()
    }
}

/// `#7 2024-03-04T08:00:30Z 30s det lane 1  vol 11  flow ...` (vol `-` when missing).
fn parse_printed(line: &str) -> Printed {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w[4], "lane", "{line}");
    assert_eq!(w[6], "vol", "{line}");
    let seq = w[0].strip_prefix('#').unwrap().parse().unwrap();
    let key = (
        w[3].to_owned(),
        w[5].parse().unwrap(),
        w[1].parse().unwrap(),
    );
    (seq, key, w[7].parse().ok())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The printed samples of every round, as the table should hold them (a later print of
/// the same key wins, as the later batch does centrally), and the highest seq printed.
fn truth(site: &Site, rounds: usize) -> (Rows, u64) {
    let mut rows = Rows::new();
    let mut last = 0;
    for round in 0..rounds {
        for (seq, key, volume) in site.printed(round) {
            rows.insert(key, volume);
            last = last.max(seq);
        }
    }
    (rows, last)
}

fn assert_table_is_the_truth(site: &Site, rounds: usize) {
    let (want, last_seq) = truth(site, rounds);
    assert!(want.len() > 40, "too few samples: {}", want.len());
    let (got, n) = site.stored();
    assert_eq!(n, got.len(), "duplicate rows");
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}\n{}",
        site.log(rounds - 1)
    );
    assert_eq!(got, want);
    assert_eq!(
        site.acked_seq(),
        last_seq,
        "the spool is acknowledged to the end"
    );
    let logs: String = (0..rounds).map(|r| site.log(r)).collect();
    eprintln!(
        "{} samples stored once each; {} cursor reconciliations after a lost acknowledgement",
        want.len(),
        logs.matches("the centre already has these samples").count()
    );
}

#[test]
fn an_outage_of_the_database_loses_and_duplicates_nothing() {
    let site = Site::new(20);
    let mut daemon = site.daemon(0, SIM_START, 16);
    wait_for("the daemon's /metrics", Duration::from_secs(20), || {
        site.metric("ingest_uplink_connected") == Some(1.0)
    });
    // 15 simulated minutes: 9 s of wall time.
    let mut sim = site.traffic(SIM_START, 900, 7);
    wait_for("first commits", Duration::from_secs(20), || {
        site.metric("ingest_uplink_rows_total").unwrap_or(0.0) > 10.0
    });
    site.pg.stop_immediate();
    let errors_before = site.metric("ingest_uplink_errors_total").unwrap();
    let rows_before = site.metric("ingest_uplink_rows_total").unwrap();
    wait_for("the uplink to notice", Duration::from_secs(20), || {
        site.metric("ingest_uplink_connected") == Some(0.0)
            && site.metric("ingest_uplink_errors_total").unwrap() > errors_before
    });
    let spooled_at_stop = site.metric("ingest_samples_spooled_total").unwrap();
    wait_for(
        "samples spooled during the outage",
        Duration::from_secs(20),
        || site.metric("ingest_samples_spooled_total").unwrap() > spooled_at_stop + 10.0,
    );
    assert!(site.metric("ingest_uplink_lag_seconds").unwrap() > 0.0);
    assert_eq!(
        site.metric("ingest_uplink_rows_total").unwrap(),
        rows_before
    );
    site.pg.start();
    wait_for("the uplink to resume", Duration::from_secs(20), || {
        site.metric("ingest_uplink_rows_total").unwrap_or(0.0) > rows_before
    });
    let status = run_ok(
        Command::new(env!("CARGO_BIN_EXE_ingest-daemon"))
            .arg("status")
            .arg("--config")
            .arg(site.dir.path().join("site.toml")),
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("uplink:         127.0.0.1 connected, lag"),
        "{text}"
    );
    wait_exit(&mut sim, Duration::from_secs(30));
    let code = wait_exit(&mut daemon, Duration::from_secs(40));
    assert!(code.success(), "{code}\n{}", site.log(0));
    assert_table_is_the_truth(&site, 1);
    let beat = site.pg.psql(
        &site.db,
        &format!("SELECT software_version, site_id FROM edge_node WHERE edge_id = '{EDGE}'"),
    );
    assert_eq!(beat, format!("{}|site-1", env!("CARGO_PKG_VERSION")));
}

#[test]
fn kill_9_during_batches_repeated_loses_and_duplicates_nothing() {
    let site = Site::new(5);
    let start: DateTime<Utc> = SIM_START.parse().unwrap();
    let rounds = 4;
    for round in 0..rounds {
        // Each round its own hour of traffic, so rounds never share a bin.
        let at = (start + TimeDelta::hours(round as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let last = round == rounds - 1;
        let mut daemon = site.daemon(round, &at, if last { 8 } else { 60 });
        wait_for("the daemon's /metrics", Duration::from_secs(20), || {
            site.metric("ingest_uplink_connected") == Some(1.0)
        });
        let mut sim = site.traffic(&at, 600, round as u32 + 1);
        if last {
            wait_exit(&mut sim, Duration::from_secs(30));
            let code = wait_exit(&mut daemon, Duration::from_secs(40));
            assert!(code.success(), "{code}\n{}", site.log(round));
        } else {
            // Batches of 5 commit every few ms while samples flow: a kill lands amid them.
            let threshold = 20.0 + 7.0 * round as f64;
            wait_for("commits", Duration::from_secs(20), || {
                site.metric("ingest_uplink_rows_total").unwrap_or(0.0) > threshold
            });
            daemon.kill().unwrap();
            daemon.wait().unwrap();
            let _ = sim.kill();
            let _ = sim.wait();
        }
    }
    assert_table_is_the_truth(&site, rounds);
    let batches: i64 = site
        .pg
        .psql(&site.db, "SELECT count(*) FROM ingest_batch")
        .parse()
        .unwrap();
    assert!(batches > 10, "{batches}");
}

/// A sample for the in-process tests.
fn sample(edge: &str, bin: i64) -> central_sync::TrafficSample {
    let start: DateTime<Utc> = SIM_START.parse().unwrap();
    central_sync::TrafficSample {
        site_id: "site-1".into(),
        detector_id: "det".into(),
        lane: 1,
        bucket_start: start + TimeDelta::seconds(bin * 30),
        interval_s: 30,
        volume: Some(u32::try_from(bin % 17).unwrap()),
        flow_vph: None,
        occupancy: Some(0.05),
        speed_avg_kmh: None,
        speed_p85_kmh: None,
        speed_count: 0,
        speed_source: central_sync::SpeedSource::None,
        density_vpkm: None,
        headway_avg_s: None,
        gap_avg_s: None,
        length_avg_m: None,
        class_counts: None,
        los: None,
        samples_expected: 1,
        samples_received: 1,
        pct_observed: 100.0,
        quality: central_sync::Quality::empty(),
        edge_id: edge.into(),
    }
}

/// A commit whose acknowledgement never reached the spool (the box died in between):
/// the next session learns it from the centre's cursor and sends only the rest, without
/// a replay or a merge. And a spool re-created under a surviving epoch file gets a new
/// epoch instead of colliding with the ledger.
#[tokio::test]
async fn a_lost_acknowledgement_is_healed_from_the_centres_cursor() {
    use ingest_daemon::counters::PipelineCounters;
    use ingest_daemon::spool::{Spool, SpoolConfig};
    use ingest_daemon::uplink::{Uplink, UplinkSettings, load_epoch};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let edge = format!("resume-{}", std::process::id());
    let admin_url = pg.connection_string(&db);
    let (mut admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    central_sync::migrate(&mut admin).await.unwrap();
    central_sync::roles::create_edge_role(&admin, &edge, "x")
        .await
        .unwrap();
    let edge_url = format!("postgres://edge_{edge}@127.0.0.1:{}/{db}", pg.port());

    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), SpoolConfig::with_max_total_bytes(1 << 22)).unwrap();
    for bin in 0..30 {
        spool
            .append_sample(Utc::now(), &sample(&edge, bin))
            .unwrap();
    }
    spool.sync().unwrap();
    let epoch = load_epoch(dir.path()).unwrap();

    // The first 10 samples were committed by an uplink that died before its ack.
    let (mut as_edge, conn) = tokio_postgres::connect(&edge_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let first: Vec<_> = spool.read_samples(0, 10).unwrap();
    let batch = central_sync::writer::Batch::new(
        &edge,
        epoch,
        i64::try_from(first.last().unwrap().0).unwrap(),
        first.into_iter().map(|(_, s)| s).collect(),
    )
    .unwrap();
    central_sync::writer::write_batch(&mut as_edge, &batch)
        .await
        .unwrap();

    let run = |spool: Spool| {
        let mut connect = central_sync::connect::ConnectOptions::new(edge_url.clone());
        connect.tls = central_sync::connect::Tls::Disable;
        let settings = UplinkSettings {
            edge_id: edge.clone(),
            site_id: None,
            connect,
            batch_max_samples: 8,
            batch_max_age: Duration::from_millis(100),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
        };
        let counters = Arc::new(PipelineCounters::default());
        let shared = Arc::new(Mutex::new(spool));
        let uplink = Uplink::new(
            settings,
            Arc::clone(&shared),
            Arc::clone(&counters),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
        let epoch = uplink.epoch();
        async move {
            let drain = tokio_util::sync::CancellationToken::new();
            drain.cancel();
            uplink
                .run(tokio_util::sync::CancellationToken::new(), drain)
                .await;
            let acked = shared.lock().unwrap().acked_seq();
            (counters, acked, epoch)
        }
    };
    let (counters, acked, same_epoch) = run(spool).await;
    assert_eq!(same_epoch, epoch);
    let u = &counters.uplink;
    assert_eq!(acked, 30);
    assert_eq!(
        u.rows_total.load(Ordering::Relaxed),
        20,
        "only the rest was sent"
    );
    assert_eq!(u.batches_replayed_total.load(Ordering::Relaxed), 0);
    assert_eq!(u.batches_merged_total.load(Ordering::Relaxed), 0);
    assert_eq!(
        pg.psql(&db, "SELECT count(*), sum(volume) FROM traffic_sample"),
        format!("30|{}", (0..30).map(|b| b % 17).sum::<i64>())
    );

    // The spool is wiped but its epoch file survives: its numbering starts again at 1,
    // below the centre's cursor for that epoch. The uplink must not reuse the epoch.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join(ingest_daemon::uplink::EPOCH_FILE),
        dir2.path().join(ingest_daemon::uplink::EPOCH_FILE),
    )
    .unwrap();
    let mut spool = Spool::open(dir2.path(), SpoolConfig::with_max_total_bytes(1 << 22)).unwrap();
    for bin in 100..105 {
        spool
            .append_sample(Utc::now(), &sample(&edge, bin))
            .unwrap();
    }
    spool.sync().unwrap();
    let (counters, acked, _) = run(spool).await;
    assert_eq!(acked, 5);
    assert_eq!(counters.uplink.errors_total.load(Ordering::Relaxed), 0);
    assert!(load_epoch(dir2.path()).unwrap() > epoch, "a new epoch");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM traffic_sample"), "35");
}
