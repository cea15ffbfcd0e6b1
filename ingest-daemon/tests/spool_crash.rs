//! Crash test: a child process (this test binary, re-run in child mode) appends and syncs
//! in a loop and reports each durable point on stdout; the parent kills it with SIGKILL at
//! an arbitrary moment, reopens the spool and checks that everything reported durable is
//! there, in order, without gaps or duplicates. Repeated over several kill/reopen rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use central_sync::{Quality, SpeedSource, TrafficSample};
use chrono::{TimeZone, Utc};
use ingest_daemon::spool::{Spool, SpoolConfig};

const CHILD_ENV: &str = "SPOOL_CRASH_CHILD_DIR";
const TEST_NAME: &str = "killed_writer_loses_nothing_it_reported_durable";

fn config() -> SpoolConfig {
    SpoolConfig {
        max_total_bytes: 256 * 1024 * 1024,
        max_segment_bytes: 16 * 1024,
        ..SpoolConfig::default()
    }
}

/// Sample number `n`: `volume` carries `n` so the parent can check order and gaps.
fn sample(n: u32) -> TrafficSample {
    TrafficSample {
        site_id: "crash-site".to_owned(),
        detector_id: "d1".to_owned(),
        lane: 1,
        bucket_start: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        interval_s: 30,
        volume: Some(n),
        flow_vph: None,
        occupancy: None,
        speed_avg_kmh: None,
        speed_p85_kmh: None,
        speed_count: 0,
        speed_source: SpeedSource::None,
        density_vpkm: None,
        headway_avg_s: None,
        gap_avg_s: None,
        length_avg_m: None,
        class_counts: None,
        los: None,
        samples_expected: 1,
        samples_received: 1,
        pct_observed: 100.0,
        quality: Quality::empty(),
        edge_id: "edge".to_owned(),
    }
}

fn volumes(spool: &mut Spool) -> Vec<u32> {
    spool
        .read_samples(0, usize::MAX)
        .expect("read samples")
        .into_iter()
        .map(|(_, s)| s.volume.expect("volume carries the number"))
        .collect()
}

/// Child mode: continue the numbering after what is on disk, append forever.
fn run_child(dir: &Path) {
    let mut spool = Spool::open(dir, config()).expect("child: open");
    let mut n = volumes(&mut spool).len() as u32;
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let stdout = std::io::stdout();
    // Bounded so that a child whose parent vanished does not run forever.
    for round in 0..200_000u32 {
        spool.append_sample(now, &sample(n)).expect("child: append");
        n += 1;
        spool
            .append_raw(now, &[round as u8; 300])
            .expect("child: append raw");
        if round % 10 == 9 {
            spool.sync().expect("child: sync");
            let mut out = stdout.lock();
            // The parent went away: stop.
            if writeln!(out, "durable {n}")
                .and_then(|()| out.flush())
                .is_err()
            {
                return;
            }
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_writer_loses_nothing_it_reported_durable() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Kill after a varying number of durable reports, so the kill lands at different
    // points of the append/sync cycle.
    for (round, reports_before_kill) in [3usize, 17, 41, 8, 29].into_iter().enumerate() {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let mut durable_count = 0u32;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                durable_count = n.parse().unwrap();
                seen += 1;
                if seen == reports_before_kill {
                    break;
                }
            }
        }
        assert_eq!(
            seen, reports_before_kill,
            "round {round}: child ended early"
        );
        // SIGKILL, while the child keeps appending.
        drop(child);

        let mut spool = Spool::open(dir.path(), config()).unwrap();
        let got = volumes(&mut spool);
        assert!(
            got.len() as u32 >= durable_count,
            "round {round}: {} samples back, {durable_count} were reported durable",
            got.len()
        );
        assert!(
            got.iter().enumerate().all(|(i, &v)| v == i as u32),
            "round {round}: samples out of order, duplicated or missing"
        );
        let report = spool.recovery_report();
        assert!(report.quarantined.is_empty(), "round {round}: {report:?}");
    }
}
