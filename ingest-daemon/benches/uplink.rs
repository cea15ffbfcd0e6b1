//! The uplink writer against `psql \copy`, on one throwaway PostgreSQL (test-support's:
//! fsync off for both). Run by `scripts/bench-uplink`, which explains the figures.
//!
//! The same N samples (BENCH_SAMPLES, default 1,000,000) are
//! - appended to spools (three identical copies) and written as one CSV file;
//! - loaded by `psql \copy` from the CSV into the empty `traffic_sample` (superuser);
//! - loaded by the uplink (the daemon's [`Uplink`] task, as the edge's own role) from a
//!   spool into the emptied table: fresh batches of BENCH_BATCH (5000) samples;
//! - sent again batch by batch through the writer from the second spool copy: every batch
//!   a replay;
//! - drained from the third copy as a backlog: PostgreSQL is crash-stopped, the uplink
//!   started and fails, then PostgreSQL starts and the time to drain everything counts.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use central_sync::writer::{self, Batch, Outcome};
use central_sync::{Los, Quality, SpeedSource, TrafficSample};
use chrono::{DateTime, TimeDelta, Utc};
use ingest_daemon::counters::PipelineCounters;
use ingest_daemon::spool::{Spool, SpoolConfig};
use ingest_daemon::uplink::{EPOCH_FILE, Uplink, UplinkSettings, load_epoch};
use test_support::PgServer;
use tokio_util::sync::CancellationToken;

const EDGE: &str = "bench-edge";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sample(i: usize) -> TrafficSample {
    let start: DateTime<Utc> = "2024-03-04T00:00:00Z".parse().unwrap();
    let n = i as u32;
    let volume = n % 23;
    let speed = 60.0 + (n % 50) as f32;
    TrafficSample {
        site_id: format!("site-{}", i % 4),
        detector_id: format!("det-{}", i % 16),
        lane: 1 + ((i / 16) % 4) as u16,
        bucket_start: start + TimeDelta::seconds((i / 64) as i64 * 30),
        interval_s: 30,
        volume: Some(volume),
        flow_vph: Some(volume as f32 * 120.0),
        occupancy: Some((volume as f32 / 40.0).min(1.0)),
        speed_avg_kmh: Some(speed),
        speed_p85_kmh: Some(speed + 9.0),
        speed_count: volume,
        speed_source: SpeedSource::Measured,
        density_vpkm: Some(volume as f32 * 120.0 / speed),
        headway_avg_s: Some(2.5),
        gap_avg_s: Some(2.1),
        length_avg_m: Some(4.6),
        class_counts: Some([0, volume, 0, 0]),
        los: Some(Los::from_density_vpkm(volume as f32 * 120.0 / speed)),
        samples_expected: 1,
        samples_received: 1,
        pct_observed: 100.0,
        quality: Quality::empty(),
        edge_id: EDGE.into(),
    }
}

fn csv_line(s: &TrafficSample, out: &mut impl Write) {
    let o = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
    let c = s.class_counts.unwrap_or_default();
    writeln!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        s.edge_id,
        s.site_id,
        s.detector_id,
        s.lane,
        s.bucket_start.to_rfc3339(),
        s.interval_s,
        s.volume.map(|v| v.to_string()).unwrap_or_default(),
        o(s.flow_vph),
        o(s.occupancy),
        o(s.speed_avg_kmh),
        o(s.speed_p85_kmh),
        s.speed_count,
        s.speed_source.as_str(),
        o(s.density_vpkm),
        o(s.headway_avg_s),
        o(s.gap_avg_s),
        o(s.length_avg_m),
        c[0],
        c[1],
        c[2],
        c[3],
        s.los.map(|l| l.as_char().to_string()).unwrap_or_default(),
        s.samples_expected,
        s.samples_received,
        s.pct_observed,
        s.quality.bits(),
        1,
        1,
    )
    .unwrap();
}

fn open_spool(dir: &Path) -> Spool {
    Spool::open(dir, SpoolConfig::with_max_total_bytes(4 << 30)).unwrap()
}

fn settings(pg: &PgServer, db: &str, batch: usize) -> UplinkSettings {
    let mut connect = central_sync::connect::ConnectOptions::new(format!(
        "postgres://edge_{EDGE}@127.0.0.1:{}/{db}",
        pg.port()
    ));
    connect.tls = central_sync::connect::Tls::Disable;
    UplinkSettings {
        edge_id: EDGE.into(),
        site_id: None,
        connect,
        batch_max_samples: batch,
        batch_max_age: Duration::from_millis(100),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    }
}

/// Runs the uplink on `spool` until `n` rows are committed; `before_wait` runs once the
/// task is started. Returns the time from the end of `before_wait` to the last commit.
async fn drain(
    spool: Spool,
    settings: UplinkSettings,
    n: usize,
    before_wait: impl FnOnce(&PipelineCounters),
) -> Duration {
    let counters = Arc::new(PipelineCounters::default());
    let uplink = Uplink::new(
        settings,
        Arc::new(Mutex::new(spool)),
        Arc::clone(&counters),
        Arc::default(),
        Arc::default(),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(uplink.run(stop.clone(), CancellationToken::new()));
    before_wait(&counters);
    let started = Instant::now();
    while counters.uplink.rows_total.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    task.await.unwrap();
    took
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n = env_usize("BENCH_SAMPLES", 1_000_000);
    let batch = env_usize("BENCH_BATCH", 5000);
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgServer::new();
    let db = pg.fresh_database(None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut admin, conn) =
            tokio_postgres::connect(&pg.connection_string(&db), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        central_sync::migrate(&mut admin).await.unwrap();
        central_sync::roles::create_edge_role(&admin, EDGE, "x")
            .await
            .unwrap();
    });

    // The same samples: three spools and a CSV file.
    let t = Instant::now();
    let dirs: Vec<_> = ["fresh", "replay", "backlog"]
        .iter()
        .map(|d| tmp.path().join(d))
        .collect();
    let mut spools: Vec<Spool> = dirs.iter().map(|d| open_spool(d)).collect();
    let csv_path = tmp.path().join("samples.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path).unwrap());
    let now = Utc::now();
    for i in 0..n {
        let s = sample(i);
        for spool in &mut spools {
            spool.append_sample(now, &s).unwrap();
        }
        csv_line(&s, &mut csv);
    }
    csv.flush().unwrap();
    drop(csv);
    for spool in &mut spools {
        spool.sync().unwrap();
    }
    let spool_mb = spools[0].total_bytes() as f64 / 1e6;
    let csv_mb = std::fs::metadata(&csv_path).unwrap().len() as f64 / 1e6;
    println!(
        "prepared {n} samples in {:.1} s: spool {spool_mb:.0} MB (x3), CSV {csv_mb:.0} MB",
        t.elapsed().as_secs_f64()
    );
    let mut spools = spools.into_iter();
    let (fresh, replay, backlog) = (
        spools.next().unwrap(),
        spools.next().unwrap(),
        spools.next().unwrap(),
    );
    // The replay copy must cut the same batches under the same epoch.
    let epoch = load_epoch(&dirs[0]).unwrap();
    std::fs::copy(dirs[0].join(EPOCH_FILE), dirs[1].join(EPOCH_FILE)).unwrap();

    let truncate = || {
        pg.psql(
            &db,
            "TRUNCATE traffic_sample, ingest_batch, sync_cursor; CHECKPOINT;",
        );
    };
    let copy_sql = format!(
        "\\copy traffic_sample (edge_id, {}) FROM '{}' WITH (FORMAT csv)",
        writer::COPY_COLUMNS,
        csv_path.display()
    );
    let copy = || {
        truncate();
        let t = Instant::now();
        pg.psql(&db, &copy_sql);
        let d = t.elapsed();
        assert_eq!(
            pg.psql(&db, "SELECT count(*) FROM traffic_sample"),
            n.to_string()
        );
        d
    };

    let copy1 = copy();
    truncate();
    let fresh_t = rt.block_on(drain(fresh, settings(&pg, &db, batch), n, |_| {}));
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM traffic_sample"),
        n.to_string()
    );

    // Every batch again, as the uplink cut them: all replays.
    let mut replay = replay;
    let replay_t = rt.block_on(async {
        let mut opts = settings(&pg, &db, batch).connect;
        opts.tls = central_sync::connect::Tls::Disable;
        let mut client = central_sync::connect::connect(&opts).await.unwrap();
        let t = Instant::now();
        let mut after = 0;
        loop {
            let read = replay.read_samples(after, batch).unwrap();
            let Some(&(last, _)) = read.last() else { break };
            let b = Batch::new(
                EDGE,
                epoch,
                last as i64,
                read.into_iter().map(|(_, s)| s).collect(),
            )
            .unwrap();
            assert_eq!(
                writer::write_batch(&mut client, &b).await.unwrap(),
                Outcome::Replay
            );
            after = last;
        }
        t.elapsed()
    });

    let copy2 = copy();
    truncate();
    let backlog_t = rt.block_on(drain(backlog, settings(&pg, &db, batch), n, |c| {
        pg.stop_immediate();
        let t = Instant::now();
        while c.uplink.errors_total.load(Ordering::Relaxed) < 2 {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the uplink never failed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pg.start();
    }));
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM traffic_sample"),
        n.to_string()
    );

    let best_copy = copy1.min(copy2);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "{:<44} {:>10} {:>12}",
        "load of N samples", "seconds", "rows/s"
    );
    for (what, d) in [
        ("psql \\copy CSV, run 1", copy1),
        ("psql \\copy CSV, run 2", copy2),
        ("uplink writer, fresh batches (binary COPY)", fresh_t),
        ("uplink writer, every batch a replay", replay_t),
        ("uplink backlog drain after an outage", backlog_t),
    ] {
        println!("{what:<44} {:>10.2} {:>12.0}", d.as_secs_f64(), rate(n, d));
    }
    println!();
    println!(
        "writer / best \\copy: {:.2}x (goal >= 0.85x); batch {batch} samples; load average {}",
        rate(n, fresh_t) / rate(n, best_copy),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
