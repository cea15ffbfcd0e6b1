//! Text for people: one line per traffic sample (`run --print-samples`, `spool tail`) and
//! the `spool stat` summary.
//!
//! A sample line reads
//!
//! ```text
//! #12 2024-03-04T08:01:30Z 30s sim-1 lane 2  vol 11  flow 1320 veh/h  occ 3.1%  speed 104.2 km/h  LOS A  ok
//! ```
//!
//! sequence number in the spool, bin start (UTC) and length, detector, road lane, volume,
//! flow, occupancy, mean speed (`est` when estimated from occupancy), level of service and
//! the quality flags (`ok` when none). A value the detector did not give prints as `-`.

use std::fmt::Write as _;

use central_sync::{SpeedSource, TrafficSample};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::spool::SpoolStat;

/// The one-line form of a sample; see the module documentation.
pub fn sample_line(seq: u64, s: &TrafficSample) -> String {
    let mut line = String::with_capacity(120);
    let _ = write!(
        line,
        "#{seq} {} {}s {} lane {}",
        s.bucket_start.to_rfc3339_opts(SecondsFormat::Secs, true),
        s.interval_s,
        s.detector_id,
        s.lane
    );
    let _ = write!(line, "  vol {}", opt(s.volume.map(|v| v.to_string())));
    let _ = write!(
        line,
        "  flow {} veh/h",
        opt(s.flow_vph.map(|v| format!("{v:.0}")))
    );
    let _ = write!(
        line,
        "  occ {}",
        opt(s.occupancy.map(|v| format!("{:.1}%", v * 100.0)))
    );
    let est = if s.speed_source == SpeedSource::Estimated {
        " est"
    } else {
        ""
    };
    let _ = write!(
        line,
        "  speed {}{est}",
        opt(s.speed_avg_kmh.map(|v| format!("{v:.1} km/h")))
    );
    let _ = write!(
        line,
        "  LOS {}",
        s.los
            .map_or_else(|| "-".to_owned(), |l| l.as_char().to_string())
    );
    let flags: Vec<&str> = s.quality.iter_names().map(|(name, _)| name).collect();
    if flags.is_empty() {
        line.push_str("  ok");
    } else {
        let _ = write!(line, "  {}", flags.join(","));
    }
    line
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_owned())
}

/// Bytes in binary units, e.g. `3.2 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match (unit, UNITS.get(unit)) {
        (0, _) => format!("{n} B"),
        (_, Some(u)) => format!("{value:.1} {u}"),
        (_, None) => format!("{n} B"),
    }
}

fn time_ms(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
}

/// The `spool stat` text.
pub fn spool_stat(dir: &std::path::Path, st: &SpoolStat) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "spool:          {}", dir.display());
    let _ = writeln!(
        out,
        "size:           {} of {} ({:.1}%)",
        bytes(st.total_bytes),
        bytes(st.max_total_bytes),
        st.total_bytes as f64 * 100.0 / st.max_total_bytes.max(1) as f64
    );
    for (name, c) in [("samples", &st.samples), ("raw", &st.raw)] {
        let _ = writeln!(
            out,
            "{:<15} {} records in {} segment(s), {}, last seq {}, oldest {}",
            format!("{name}:"),
            c.records,
            c.segments,
            bytes(c.bytes),
            c.last_seq.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            time_ms(c.oldest_appended_at_ms)
        );
        if c.eviction.evicted_segments > 0 {
            let _ = writeln!(
                out,
                "                evicted {} segment(s), {} records ({} not yet sent upstream)",
                c.eviction.evicted_segments,
                c.eviction.evicted_records,
                c.eviction.evicted_unacked_records
            );
        }
    }
    let _ = writeln!(
        out,
        "sequence:       next {}, durable up to {}, acknowledged upstream up to {}",
        st.next_seq, st.durable_seq, st.acked_seq
    );
    let _ = writeln!(
        out,
        "oldest unsent:  {}",
        st.oldest_unacked_sample_seq
            .map_or_else(|| "none".to_owned(), |s| format!("sample #{s}"))
    );
    let r = &st.recovery;
    if r.repaired() {
        let _ = writeln!(
            out,
            "repaired:       {} torn tail(s), {} segment(s) quarantined, {} footer(s) rebuilt",
            r.torn_tails,
            r.quarantined.len(),
            r.footers_rebuilt
        );
    }
    if st.reads.corrupt_records > 0 || st.reads.sample_decode_errors > 0 {
        let _ = writeln!(
            out,
            "corrupt:        {} record(s) skipped, {} sample(s) undecodable",
            st.reads.corrupt_records, st.reads.sample_decode_errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use central_sync::{Los, Quality};

    use super::*;

    fn sample() -> TrafficSample {
        TrafficSample {
            site_id: "s".into(),
            detector_id: "sim-1".into(),
            lane: 2,
            bucket_start: DateTime::from_timestamp(1_709_539_290, 0).unwrap(),
            interval_s: 30,
            volume: Some(11),
            flow_vph: Some(1320.0),
            occupancy: Some(0.0314),
            speed_avg_kmh: Some(104.23),
            speed_p85_kmh: None,
            speed_count: 11,
            speed_source: SpeedSource::Measured,
            density_vpkm: Some(12.7),
            headway_avg_s: None,
            gap_avg_s: None,
            length_avg_m: None,
            class_counts: None,
            los: Some(Los::A),
            samples_expected: 30,
            samples_received: 30,
            pct_observed: 100.0,
            quality: Quality::empty(),
            edge_id: "e".into(),
        }
    }

    #[test]
    fn sample_line_shows_every_figure() {
        assert_eq!(
            sample_line(12, &sample()),
            "#12 2024-03-04T08:01:30Z 30s sim-1 lane 2  vol 11  flow 1320 veh/h  occ 3.1%  \
             speed 104.2 km/h  LOS A  ok"
        );
    }

    #[test]
    fn missing_values_print_as_dashes_and_flags_by_name() {
        let mut s = sample();
        s.volume = None;
        s.flow_vph = None;
        s.occupancy = None;
        s.speed_avg_kmh = None;
        s.los = None;
        s.quality = Quality::NO_DATA | Quality::INSUFFICIENT;
        let line = sample_line(1, &s);
        assert!(
            line.ends_with("vol -  flow - veh/h  occ -  speed -  LOS -  NO_DATA,INSUFFICIENT"),
            "{line}"
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(3 * 1024 + 200), "3.2 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
    }
}
