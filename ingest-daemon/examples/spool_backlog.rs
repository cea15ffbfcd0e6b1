//! Measures how long opening a spool with a large backlog takes.
//!
//! ```text
//! cargo run --release -p ingest-daemon --example spool_backlog -- <dir> [total_mib] [sample_percent]
//! ```
//!
//! Fills `<dir>` (if it holds less than `total_mib`, default 1024) with traffic samples
//! (`sample_percent` of the bytes, default 25) and 16 KiB raw frames, closes it, then times
//! `Spool::open`, `stat` and the first `read_samples` batch. Run it twice to time an open
//! of an existing backlog without the fill.

use std::time::Instant;

use central_sync::{Los, Quality, SpeedSource, TrafficSample};
use chrono::{TimeZone, Utc};
use ingest_daemon::spool::{RecordClass, Spool, SpoolConfig, encode_sample};

const MIB: u64 = 1024 * 1024;

fn sample() -> TrafficSample {
    TrafficSample {
        site_id: "A7-km112.4".to_owned(),
        detector_id: "loop-3".to_owned(),
        lane: 2,
        bucket_start: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        interval_s: 30,
        volume: Some(14),
        flow_vph: Some(1680.0),
        occupancy: Some(0.12),
        speed_avg_kmh: Some(96.5),
        speed_p85_kmh: Some(112.0),
        speed_count: 14,
        speed_source: SpeedSource::Measured,
        density_vpkm: Some(17.4),
        headway_avg_s: Some(2.1),
        gap_avg_s: Some(1.9),
        length_avg_m: Some(5.2),
        class_counts: Some([0, 11, 2, 1]),
        los: Some(Los::C),
        samples_expected: 1,
        samples_received: 1,
        pct_observed: 100.0,
        quality: Quality::empty(),
        edge_id: "edge-17".to_owned(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: spool_backlog <dir> [total_mib] [sample_percent]")?;
    let total_mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let sample_percent: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(25);
    let config = SpoolConfig {
        max_total_bytes: (total_mib * MIB * 2).max(64 * MIB),
        ..SpoolConfig::default()
    };

    let mut spool = Spool::open(&dir, config.clone())?;
    let target = total_mib * MIB;
    if spool.total_bytes() < target {
        let started = Instant::now();
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut payload = Vec::new();
        encode_sample(&sample(), &mut payload)?;
        let frame = vec![0x5Au8; 16 * 1024];
        let sample_target = target * sample_percent / 100;
        let mut appended = 0u64;
        while spool.total_bytes() < target {
            if spool.class_bytes(RecordClass::Sample) < sample_target {
                for _ in 0..100 {
                    spool.append(RecordClass::Sample, now, &payload)?;
                }
                appended += 100;
            } else {
                spool.append(RecordClass::Raw, now, &frame)?;
                appended += 1;
            }
            if appended % 100_000 < 100 {
                spool.sync()?;
            }
        }
        spool.close()?;
        println!(
            "filled {} MiB ({appended} records) in {:.1} s",
            total_mib,
            started.elapsed().as_secs_f64()
        );
    } else {
        drop(spool);
    }

    let started = Instant::now();
    let mut spool = Spool::open(&dir, config)?;
    let opened = started.elapsed();
    let stat = spool.stat()?;
    let stat_time = started.elapsed() - opened;
    let read_start = Instant::now();
    let batch = spool.read_samples(stat.acked_seq, 1000)?;
    let read_time = read_start.elapsed();
    println!(
        "open: {:.1} ms for {} MiB in {} segments (trusted by footer {}, scanned {}); \
         stat {:.1} ms; first read of {} samples {:.1} ms",
        opened.as_secs_f64() * 1000.0,
        stat.total_bytes / MIB,
        stat.samples.segments + stat.raw.segments,
        stat.recovery.segments_trusted,
        stat.recovery.segments_scanned,
        stat_time.as_secs_f64() * 1000.0,
        batch.len(),
        read_time.as_secs_f64() * 1000.0,
    );
    Ok(())
}
