//! Spool behaviour on real files in temp dirs: round trips across reopen, crash recovery,
//! the bound and eviction order, the consumer cursor, exports, and a model-based proptest.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use central_sync::{Los, Quality, SpeedSource, TrafficSample};
use chrono::{DateTime, TimeZone, Utc};
use ingest_daemon::spool::{
    RecordClass, Spool, SpoolConfig, SpoolError, export_samples_csv, export_samples_json,
};
use proptest::prelude::*;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
}

fn sample(i: u32) -> TrafficSample {
    TrafficSample {
        site_id: format!("A7-km{}", i % 13),
        detector_id: format!("loop-{}", i % 5),
        lane: (i % 4) as u16 + 1,
        bucket_start: at(i64::from(i) * 30_000),
        interval_s: 30,
        volume: (!i.is_multiple_of(7)).then_some(i),
        flow_vph: Some(i as f32 * 120.0),
        occupancy: Some((i % 100) as f32 / 100.0),
        speed_avg_kmh: (i.is_multiple_of(3)).then_some(87.5),
        speed_p85_kmh: None,
        speed_count: i % 11,
        speed_source: if i.is_multiple_of(2) {
            SpeedSource::Measured
        } else {
            SpeedSource::Estimated
        },
        density_vpkm: Some(12.25),
        headway_avg_s: None,
        gap_avg_s: Some(1.5),
        length_avg_m: Some(4.75),
        class_counts: (!i.is_multiple_of(4)).then_some([1, i, 2, 3]),
        los: Some(Los::C),
        samples_expected: 10,
        samples_received: 9,
        pct_observed: 90.0,
        quality: Quality::from_bits_truncate(i & 0x7FF),
        edge_id: "edge-1".to_owned(),
    }
}

/// A sample about `size` bytes long once encoded.
fn big_sample(i: u32, size: usize) -> TrafficSample {
    let mut s = sample(i);
    s.site_id = "x".repeat(size.saturating_sub(120));
    s
}

fn small_segments() -> SpoolConfig {
    SpoolConfig {
        max_total_bytes: 64 * 1024 * 1024,
        max_segment_bytes: 4096,
        sync_interval: Duration::from_secs(1),
    }
}

fn open(dir: &Path) -> Spool {
    Spool::open(dir, SpoolConfig::default()).expect("open spool")
}

fn segment_files(dir: &Path, class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join(class))
        .expect("list segments")
        .map(|e| e.expect("list segments").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn all_samples(spool: &mut Spool, after: u64) -> Vec<(u64, TrafficSample)> {
    spool.read_samples(after, usize::MAX).expect("read samples")
}

#[test]
fn round_trip_across_reopen_and_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path());
    let mut expected = Vec::new();
    for i in 0..50 {
        let seq = spool.append_sample(at(i.into()), &sample(i)).unwrap();
        expected.push((seq, sample(i)));
        spool.append_raw(at(i.into()), &[i as u8; 40]).unwrap();
    }
    // Nothing durable yet: the uplink sees nothing.
    assert!(all_samples(&mut spool, 0).is_empty());
    let durable = spool.sync().unwrap();
    assert_eq!(durable, 100);
    assert_eq!(spool.durable_seq(), 100);
    assert_eq!(all_samples(&mut spool, 0), expected);
    drop(spool);

    let mut spool = open(dir.path());
    assert!(!spool.recovery_report().repaired());
    assert_eq!(spool.durable_seq(), 100);
    assert_eq!(all_samples(&mut spool, 0), expected);
    let seq = spool.append_sample(at(99), &sample(99)).unwrap();
    assert_eq!(seq, 101);
    let tail = spool.tail(1).unwrap();
    assert_eq!(tail[0].seq, 101);
    assert_eq!(tail[0].sample().unwrap().unwrap(), sample(99));
}

#[test]
fn reading_in_batches_returns_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    let mut expected = Vec::new();
    for i in 0..300 {
        expected.push(spool.append_sample(at(i.into()), &sample(i)).unwrap());
        if i % 3 == 0 {
            spool.append_raw(at(i.into()), b"frame").unwrap();
        }
    }
    spool.sync().unwrap();
    assert!(segment_files(dir.path(), "samples").len() > 5);
    let mut got = Vec::new();
    let mut after = 0;
    loop {
        let batch = spool.read_samples(after, 7).unwrap();
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        assert!(batch.len() <= 7);
        got.extend(batch.iter().map(|(seq, _)| *seq));
        after = last;
    }
    assert_eq!(got, expected);
    // A reader restarting from an arbitrary point (no hint) agrees.
    let from_middle: Vec<u64> = all_samples(&mut spool, expected[150])
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(from_middle, expected[151..]);
}

#[test]
fn torn_tail_at_every_offset_loses_only_the_torn_record() {
    let origin = tempfile::tempdir().unwrap();
    let mut spool = open(origin.path());
    for i in 0..19 {
        spool.append_sample(at(i.into()), &sample(i)).unwrap();
    }
    let last_start = spool.stat().unwrap().samples.bytes;
    spool.append_sample(at(19), &sample(19)).unwrap();
    spool.close().unwrap();
    let files = segment_files(origin.path(), "samples");
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_owned();
    let bytes = fs::read(&files[0]).unwrap();
    assert!(bytes.len() as u64 > last_start + 32);

    for cut in last_start..bytes.len() as u64 {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("samples")).unwrap();
        let path = dir.path().join("samples").join(&name);
        fs::write(&path, &bytes[..cut as usize]).unwrap();

        let mut spool = open(dir.path());
        let report = spool.recovery_report().clone();
        let torn = cut - last_start;
        assert_eq!(report.torn_tails, u64::from(torn > 0), "cut at {cut}");
        assert_eq!(report.torn_bytes, torn, "cut at {cut}");
        assert!(report.quarantined.is_empty(), "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last_start);
        let got = all_samples(&mut spool, 0);
        assert_eq!(got.len(), 19, "cut at {cut}");
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (_, s))| *s == sample(i as u32))
        );
        // Appending after recovery works and reads back.
        let seq = spool.append_sample(at(50), &sample(50)).unwrap();
        assert_eq!(seq, 20);
        spool.sync().unwrap();
        assert_eq!(all_samples(&mut spool, 19), vec![(20, sample(50))]);
    }
}

/// Appends `n` samples and returns the byte offset of each within the (single) segment.
fn samples_with_offsets(spool: &mut Spool, n: u32) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let offset = spool.stat().expect("stat").samples.bytes;
            spool
                .append_sample(at(i.into()), &sample(i))
                .expect("append");
            offset
        })
        .collect()
}

#[test]
fn corrupt_middle_record_sets_segment_aside_and_keeps_the_rest() {
    // A flipped payload byte, and a flipped length byte (the reader must resynchronise).
    for byte_in_record in [40usize, 9] {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        let offsets = samples_with_offsets(&mut spool, 30);
        spool.close().unwrap();
        let path = segment_files(dir.path(), "samples").remove(0);
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[15] as usize + byte_in_record] ^= 0x20;
        fs::write(&path, &bytes).unwrap();

        let mut spool = open(dir.path());
        let report = spool.recovery_report().clone();
        assert_eq!(report.quarantined.len(), 1);
        assert!(report.quarantined[0].starts_with(dir.path().join("quarantine")));
        assert_eq!(fs::read(&report.quarantined[0]).unwrap(), bytes);
        assert_eq!(report.salvaged_records, 29);
        assert_eq!(report.corrupt_regions, 1);
        assert_eq!(report.corrupt_bytes, offsets[16] - offsets[15]);
        let got = all_samples(&mut spool, 0);
        let volumes: Vec<TrafficSample> = got.iter().map(|(_, s)| s.clone()).collect();
        let expected: Vec<TrafficSample> = (0..30).filter(|&i| i != 15).map(sample).collect();
        assert_eq!(volumes, expected);
        assert_eq!(spool.next_seq(), 31);
        drop(spool);
        // The salvaged segment is clean now.
        let spool = open(dir.path());
        assert!(!spool.recovery_report().repaired());
    }
}

#[test]
fn garbage_segment_never_blocks_open() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("raw")).unwrap();
    fs::create_dir_all(dir.path().join("samples")).unwrap();
    let junk: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.path().join("raw/00000000000000000001.seg"), &junk).unwrap();
    fs::write(dir.path().join("samples/00000000000000000003.seg"), b"RSPL").unwrap();
    fs::write(dir.path().join("samples/notes.txt"), b"hello").unwrap();
    let mut spool = open(dir.path());
    let report = spool.recovery_report().clone();
    assert_eq!(report.torn_tails, 2);
    assert_eq!(report.unknown_files, 1);
    assert!(spool.next_seq() >= 3);
    let seq = spool.append_sample(at(0), &sample(0)).unwrap();
    spool.sync().unwrap();
    assert_eq!(all_samples(&mut spool, 0), vec![(seq, sample(0))]);
}

#[test]
fn corruption_in_sealed_segment_is_found_lazily_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    let mut first_segment_offsets = Vec::new();
    for i in 0..100 {
        if segment_files(dir.path(), "samples").len() == 1 {
            first_segment_offsets.push(spool.stat().unwrap().samples.bytes);
        }
        spool.append_sample(at(i.into()), &sample(i)).unwrap();
    }
    spool.close().unwrap();
    let files = segment_files(dir.path(), "samples");
    assert!(files.len() >= 3);
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[first_segment_offsets[2] as usize + 50] ^= 1;
    fs::write(&files[0], &bytes).unwrap();

    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    let report = spool.recovery_report().clone();
    assert_eq!(report.segments_trusted as usize, files.len() - 1);
    assert_eq!(report.segments_scanned, 2, "the last segment of each class");
    assert!(!report.repaired());
    let got = all_samples(&mut spool, 0);
    assert_eq!(got.len(), 99);
    assert!(!got.iter().any(|(_, s)| *s == sample(2)));
    let stat = spool.stat().unwrap();
    assert_eq!(stat.reads.corrupt_records, 1);
    assert!(stat.reads.corrupt_bytes > 0);
}

#[test]
fn sealed_segment_without_footer_is_rescanned_and_resealed() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    for i in 0..100 {
        spool.append_sample(at(i.into()), &sample(i)).unwrap();
    }
    spool.close().unwrap();
    let files = segment_files(dir.path(), "samples");
    let len = fs::metadata(&files[1]).unwrap().len();
    // A crash between the last record and the footer (and a torn footer).
    fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(len - 30)
        .unwrap();

    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    let report = spool.recovery_report().clone();
    assert_eq!(report.footers_rebuilt, 1);
    assert_eq!(report.torn_tails, 1);
    assert_eq!(report.torn_bytes, 72 - 30);
    let got: Vec<TrafficSample> = all_samples(&mut spool, 0)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(got, (0..100).map(sample).collect::<Vec<_>>());
    drop(spool);
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    assert!(!spool.recovery_report().repaired());
}

#[test]
fn cursor_survives_reopen_and_acked_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    let seqs: Vec<u64> = (0..100)
        .map(|i| spool.append_sample(at(i.into()), &sample(i)).unwrap())
        .collect();
    spool.sync().unwrap();
    let before = segment_files(dir.path(), "samples").len();
    assert!(before >= 4);
    let stat = spool.stat().unwrap();
    assert_eq!(stat.oldest_unacked_sample_seq, Some(seqs[0]));
    assert_eq!(stat.oldest_appended_at_ms, Some(at(0).timestamp_millis()));

    assert_eq!(spool.ack_samples(seqs[59]).unwrap(), seqs[59]);
    // Acking less than the cursor changes nothing.
    assert_eq!(spool.ack_samples(seqs[10]).unwrap(), seqs[59]);
    let after = segment_files(dir.path(), "samples").len();
    assert!(after < before, "{after} segments left of {before}");
    let stat = spool.stat().unwrap();
    assert_eq!(stat.acked_seq, seqs[59]);
    assert_eq!(stat.oldest_unacked_sample_seq, Some(seqs[60]));
    drop(spool);

    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    assert_eq!(spool.acked_seq(), seqs[59]);
    let acked = spool.acked_seq();
    let rest: Vec<u64> = all_samples(&mut spool, acked)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(rest, seqs[60..]);

    // Acknowledge everything: the active segment and the newest sealed one stay (the
    // latter for the MQTT replay's evidence), and the sequence goes on.
    spool.ack_samples(u64::MAX).unwrap();
    assert_eq!(spool.acked_seq(), seqs[99]);
    assert_eq!(segment_files(dir.path(), "samples").len(), 2);
    drop(spool);
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    assert_eq!(
        spool.append_sample(at(0), &sample(0)).unwrap(),
        seqs[99] + 1
    );
    assert_eq!(
        spool.stat().unwrap().oldest_unacked_sample_seq,
        Some(seqs[99] + 1)
    );
}

#[test]
fn sequence_stays_monotonic_when_everything_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    for i in 0..60 {
        spool.append_sample(at(i.into()), &sample(i)).unwrap();
    }
    let last = spool.append_raw(at(0), b"raw").unwrap();
    spool.ack_samples(last).unwrap();
    drop(spool);
    // Even with all segment files deleted behind its back, the cursor keeps the floor.
    for f in segment_files(dir.path(), "samples")
        .into_iter()
        .chain(segment_files(dir.path(), "raw"))
    {
        fs::remove_file(f).unwrap();
    }
    let mut spool = Spool::open(dir.path(), small_segments()).unwrap();
    assert!(spool.append_raw(at(0), b"x").unwrap() > last);
}

#[test]
fn bound_evicts_raw_first_then_samples_and_counts() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig::with_max_total_bytes(8 * MIB);
    let mut spool = Spool::open(dir.path(), config.clone()).unwrap();
    let raw_frame = vec![0xA5u8; 16 * 1024];
    let mut sample_seqs = Vec::new();
    let mut raw_appended = 0u64;
    // ~0.5 MiB of samples, ~9 MiB of raw frames: raw has to give way.
    for i in 0..560u32 {
        raw_appended += 1;
        spool.append_raw(at(i.into()), &raw_frame).unwrap();
        if i % 4 == 0 {
            for j in 0..4 {
                let n = i * 4 + j;
                sample_seqs.push(
                    spool
                        .append_sample(at(n.into()), &big_sample(n, 1000))
                        .unwrap(),
                );
            }
        }
        assert!(spool.total_bytes() <= 8 * MIB);
    }
    spool.sync().unwrap();
    let stat = spool.stat().unwrap();
    assert!(stat.raw.eviction.evicted_segments > 0);
    assert_eq!(
        stat.raw.eviction.evicted_records + stat.raw.records,
        raw_appended
    );
    assert_eq!(stat.raw.eviction.evicted_unacked_records, 0);
    assert_eq!(
        stat.samples.eviction,
        Default::default(),
        "no sample lost while raw was left"
    );
    assert_eq!(all_samples(&mut spool, 0).len(), sample_seqs.len());
    let evicted_raw_bytes = stat.raw.eviction.evicted_bytes;
    assert!(evicted_raw_bytes >= stat.raw.eviction.evicted_records * 16 * 1024);

    // Half of the samples are acknowledged; then only samples arrive, ~10 MiB of them.
    spool
        .ack_samples(sample_seqs[sample_seqs.len() / 2])
        .unwrap();
    let acked_count = sample_seqs.len() / 2 + 1;
    for n in 0..2500u32 {
        sample_seqs.push(
            spool
                .append_sample(at(n.into()), &big_sample(n, 4000))
                .unwrap(),
        );
        assert!(spool.total_bytes() <= 8 * MIB);
    }
    spool.sync().unwrap();
    let stat = spool.stat().unwrap();
    assert_eq!(stat.raw.bytes, 0, "raw goes entirely before samples");
    assert_eq!(stat.raw.eviction.evicted_records, raw_appended);
    let ev = stat.samples.eviction;
    assert!(ev.evicted_segments > 0);
    // Fully acknowledged segments went on ack; a partly acknowledged one may have been
    // evicted: only its unacknowledged samples count as lost.
    assert!(ev.evicted_unacked_records <= ev.evicted_records);
    assert!(ev.evicted_records - ev.evicted_unacked_records < 512);
    let acked = spool.acked_seq();
    let left = all_samples(&mut spool, acked);
    assert_eq!(
        left.len() as u64 + ev.evicted_unacked_records,
        (sample_seqs.len() - acked_count) as u64
    );
    // What is left is the newest samples, in order, nothing missing in between.
    let left_seqs: Vec<u64> = left.iter().map(|(s, _)| *s).collect();
    assert_eq!(left_seqs, sample_seqs[sample_seqs.len() - left.len()..]);
    assert!(stat.total_bytes <= 8 * MIB);
    drop(spool);
    let spool = Spool::open(dir.path(), config).unwrap();
    assert!(spool.total_bytes() <= 8 * MIB);
    // The eviction totals outlive the process: `spool stat` still tells what was lost.
    let reopened = spool.stat().unwrap();
    assert_eq!(reopened.samples.eviction, stat.samples.eviction);
    assert_eq!(reopened.raw.eviction, stat.raw.eviction);
}

#[test]
fn stat_tail_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path());
    let mut odd = sample(1);
    odd.site_id = "site, \"north\"".to_owned();
    odd.volume = None;
    odd.class_counts = None;
    spool.append_sample(at(5), &odd).unwrap();
    spool.append_raw(at(1), b"\x02raw\x03").unwrap();
    spool.append_sample(at(7), &sample(2)).unwrap();

    let stat = spool.stat().unwrap();
    assert_eq!(stat.samples.records, 2);
    assert_eq!(stat.raw.records, 1);
    assert_eq!(stat.samples.last_seq, Some(3));
    assert_eq!(stat.oldest_appended_at_ms, Some(at(1).timestamp_millis()));
    assert_eq!(
        stat.samples.oldest_appended_at_ms,
        Some(at(5).timestamp_millis())
    );
    assert_eq!(stat.next_seq, 4);
    assert_eq!(stat.durable_seq, 0);
    assert_eq!(stat.total_bytes, stat.samples.bytes + stat.raw.bytes);
    serde_json::to_string(&stat).unwrap();

    let tail = spool.tail(2).unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(tail[0].class, RecordClass::Raw);
    assert_eq!(tail[0].payload, b"\x02raw\x03");
    assert_eq!(tail[0].appended_at(), Some(at(1)));
    assert_eq!(spool.tail(10).unwrap().len(), 3);

    let mut csv = Vec::new();
    let summary = export_samples_csv(&spool, 0, &mut csv).unwrap();
    assert_eq!(summary.rows, 2);
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert!(lines[0].starts_with("seq,appended_at,site_id,"));
    assert!(
        lines[1].starts_with("1,2023-11-14T22:13:20.005Z,\"site, \"\"north\"\"\",loop-1,2,"),
        "{}",
        lines[1]
    );
    // volume missing -> empty field; class counts missing -> four empty fields.
    assert!(lines[1].contains(",30,,120,"), "{}", lines[1]);
    assert!(lines[1].contains(",,,,C,10,9,90,1,edge-1"), "{}", lines[1]);
    assert_eq!(lines[3], "");

    let mut json = Vec::new();
    export_samples_json(&spool, 1, &mut json).unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["seq"], 3);
    assert_eq!(rows[0]["site_id"], "A7-km2");
    assert_eq!(rows[0]["lane"], 3);
    assert_eq!(rows[0]["appended_at"], "2023-11-14T22:13:20.007Z");
}

#[test]
fn sync_if_due_follows_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path());
    let t0 = Instant::now();
    assert_eq!(spool.sync_if_due(t0).unwrap(), None, "nothing to sync");
    spool.append_raw(at(0), b"a").unwrap();
    assert_eq!(spool.sync_if_due(t0).unwrap(), Some(1));
    spool.append_raw(at(0), b"b").unwrap();
    assert_eq!(
        spool.sync_if_due(t0 + Duration::from_millis(500)).unwrap(),
        None
    );
    assert_eq!(spool.durable_seq(), 1);
    assert_eq!(
        spool.sync_if_due(t0 + Duration::from_secs(1)).unwrap(),
        Some(2)
    );
}

#[test]
fn bad_config_and_oversized_records_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = SpoolConfig {
        max_total_bytes: 8 * 1024 * 1024,
        max_segment_bytes: 8 * 1024 * 1024,
        ..SpoolConfig::default()
    };
    assert!(matches!(
        Spool::open(dir.path(), tiny),
        Err(SpoolError::Config(_))
    ));
    let config = small_segments();
    let mut spool = Spool::open(dir.path(), config.clone()).unwrap();
    let max = config.max_payload_bytes() as usize;
    assert!(spool.append_raw(at(0), &vec![0; max]).is_ok());
    let err = spool.append_raw(at(0), &vec![0; max + 1]).unwrap_err();
    assert!(matches!(err, SpoolError::RecordTooLarge { .. }), "{err}");
    // Still usable.
    spool.append_raw(at(0), b"ok").unwrap();
}

#[test]
fn unreadable_cursor_restarts_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path());
    let a = spool.append_sample(at(0), &sample(0)).unwrap();
    let b = spool.append_sample(at(0), &sample(1)).unwrap();
    spool.ack_samples(a).unwrap();
    drop(spool);
    fs::write(dir.path().join("cursor"), b"garbage").unwrap();
    let mut spool = open(dir.path());
    assert!(spool.recovery_report().cursor_reset);
    assert_eq!(spool.acked_seq(), 0);
    let seqs: Vec<u64> = all_samples(&mut spool, 0)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, [a, b]);
}

#[test]
fn interrupted_salvage_is_completed_or_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path());
    spool.append_sample(at(0), &sample(0)).unwrap();
    spool.close().unwrap();
    let seg = segment_files(dir.path(), "samples").remove(0);
    let temp = seg.with_extension("seg.tmp");

    // Original still there: the temp copy may be partial and is dropped.
    fs::write(&temp, b"partial").unwrap();
    let mut spool = open(dir.path());
    assert_eq!(spool.recovery_report().temp_files_resolved, 1);
    assert!(!temp.exists());
    assert_eq!(all_samples(&mut spool, 0).len(), 1);
    drop(spool);

    // Original moved to quarantine already: the temp copy is complete and takes its place.
    fs::rename(&seg, &temp).unwrap();
    let mut spool = open(dir.path());
    assert_eq!(spool.recovery_report().temp_files_resolved, 1);
    assert_eq!(all_samples(&mut spool, 0), vec![(1, sample(0))]);
}

#[test]
fn undecodable_sample_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path());
    let a = spool.append_sample(at(0), &sample(0)).unwrap();
    // A payload from a future format version: valid record, unknown content.
    spool
        .append(RecordClass::Sample, at(0), &[200, 1, 2, 3])
        .unwrap();
    let c = spool.append_sample(at(0), &sample(2)).unwrap();
    spool.sync().unwrap();
    let seqs: Vec<u64> = all_samples(&mut spool, 0)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, [a, c]);
    assert_eq!(spool.stat().unwrap().reads.sample_decode_errors, 1);
    let mut csv = Vec::new();
    let summary = export_samples_csv(&spool, 0, &mut csv).unwrap();
    assert_eq!((summary.rows, summary.decode_errors), (2, 1));
}

#[derive(Debug, Clone)]
enum Op {
    Sample(u16),
    Raw(u16),
    Sync,
    /// Acknowledge up to the n-th (mod len) durable unacknowledged sample.
    Ack(u8),
    Read,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<u16>().prop_map(Op::Sample),
        3 => (0u16..2000).prop_map(Op::Raw),
        2 => Just(Op::Sync),
        2 => any::<u8>().prop_map(Op::Ack),
        2 => Just(Op::Read),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn spool_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_segments();
        let mut spool = Spool::open(dir.path(), config.clone()).unwrap();
        // Model: appended samples (seq, sample), the cursor, the durable mark, last seq.
        let mut samples: Vec<(u64, TrafficSample)> = Vec::new();
        let mut acked = 0u64;
        let mut durable = 0u64;
        let mut last_seq = 0u64;
        let expected = |samples: &[(u64, TrafficSample)], acked: u64, durable: u64| {
            samples
                .iter()
                .filter(|(s, _)| *s > acked && *s <= durable)
                .cloned()
                .collect::<Vec<_>>()
        };
        for op in ops {
            match op {
                Op::Sample(n) => {
                    let s = if n % 5 == 0 { big_sample(n.into(), 1500) } else { sample(n.into()) };
                    let seq = spool.append_sample(at(n.into()), &s).unwrap();
                    prop_assert!(seq > last_seq);
                    last_seq = seq;
                    samples.push((seq, s));
                }
                Op::Raw(len) => {
                    let seq = spool.append_raw(at(0), &vec![7u8; len.into()]).unwrap();
                    prop_assert!(seq > last_seq);
                    last_seq = seq;
                }
                Op::Sync => {
                    durable = spool.sync().unwrap();
                    prop_assert_eq!(durable, last_seq);
                }
                Op::Ack(k) => {
                    let pending = expected(&samples, acked, durable);
                    if !pending.is_empty() {
                        let upto = pending[k as usize % pending.len()].0;
                        prop_assert_eq!(spool.ack_samples(upto).unwrap(), upto);
                        acked = upto;
                    }
                }
                Op::Read => {
                    prop_assert_eq!(
                        spool.read_samples(acked, usize::MAX).unwrap(),
                        expected(&samples, acked, durable)
                    );
                }
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(dir.path(), config.clone()).unwrap();
                    prop_assert!(!spool.recovery_report().repaired());
                    prop_assert_eq!(spool.acked_seq(), acked);
                    // A clean reopen finds (and fsyncs) everything appended.
                    durable = last_seq;
                    prop_assert_eq!(spool.durable_seq(), durable);
                }
            }
        }
        durable = spool.sync().unwrap();
        let got = spool.read_samples(acked, usize::MAX).unwrap();
        prop_assert_eq!(got, expected(&samples, acked, durable));
        // Read in small batches through the hint: same answer.
        let mut batched = Vec::new();
        let mut after = acked;
        loop {
            let batch = spool.read_samples(after, 3).unwrap();
            let Some((last, _)) = batch.last() else { break };
            after = *last;
            batched.extend(batch);
        }
        prop_assert_eq!(batched, expected(&samples, acked, durable));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any damage to a segment (flipped bytes, cut short, garbage appended): open succeeds,
    /// and what is read back is a subsequence of what was written, in order.
    #[test]
    fn damaged_segment_never_blocks_open(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        let written: Vec<TrafficSample> = (0..25).map(sample).collect();
        for (i, s) in written.iter().enumerate() {
            spool.append_sample(at(i as i64), s).unwrap();
        }
        spool.close().unwrap();
        let path = segment_files(dir.path(), "samples").remove(0);
        let mut bytes = fs::read(&path).unwrap();
        for (at_index, mask) in flips {
            let i = at_index.index(bytes.len());
            bytes[i] ^= mask;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        bytes.extend_from_slice(&garbage);
        fs::write(&path, &bytes).unwrap();

        let mut spool = open(dir.path());
        let got: Vec<TrafficSample> = all_samples(&mut spool, 0).into_iter().map(|(_, s)| s).collect();
        let mut rest = written.iter();
        for s in &got {
            prop_assert!(rest.any(|w| w == s), "read back a sample not written, or out of order");
        }
        // Still usable, and clean on the next open.
        spool.append_sample(at(0), &sample(99)).unwrap();
        drop(spool);
        let spool = open(dir.path());
        prop_assert!(!spool.recovery_report().repaired());
    }
}
