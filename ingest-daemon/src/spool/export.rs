//! Export of spooled samples for `ingest-daemon spool export --format csv|json`. Streams
//! from disk: one record in memory at a time.
//!
//! - CSV (RFC 4180): a header line, then one line per sample. Missing values (`None`) are
//!   empty fields; times are RFC 3339 UTC with milliseconds; `quality` is the flag bitmask as
//!   an integer; class counts are four columns (motorcycle, short, medium, long). Text fields
//!   are quoted when they contain a comma, quote, CR or LF, or begin or end with a space.
//! - JSON: JSON Lines, one object per sample: `seq`, `appended_at`, then the sample's fields
//!   as serde names them (`quality` as flag names).

use std::io::{BufWriter, Write};

use central_sync::TrafficSample;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{RecordClass, Spool, SpoolError, decode_sample};

/// What an export wrote and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub rows: u64,
    /// Sample records that did not decode (skipped).
    pub decode_errors: u64,
    /// Corrupt records skipped.
    pub corrupt_records: u64,
}

const CSV_HEADER: &str = "seq,appended_at,site_id,detector_id,lane,bucket_start,interval_s,\
volume,flow_vph,occupancy,speed_avg_kmh,speed_p85_kmh,speed_count,speed_source,density_vpkm,\
headway_avg_s,gap_avg_s,length_avg_m,class_motorcycle,class_short,class_medium,class_long,\
los,samples_expected,samples_received,pct_observed,quality,edge_id";

/// Writes the samples with a seq above `after_seq` as CSV.
pub fn export_samples_csv<W: Write>(
    spool: &Spool,
    after_seq: u64,
    out: W,
) -> Result<ExportSummary, SpoolError> {
    let mut out = BufWriter::new(out);
    write!(out, "{CSV_HEADER}\r\n").map_err(SpoolError::Export)?;
    let mut line = String::new();
    let summary = for_each_sample(spool, after_seq, |seq, appended_at, sample| {
        line.clear();
        csv_line(&mut line, seq, appended_at, sample);
        out.write_all(line.as_bytes()).map_err(SpoolError::Export)
    })?;
    out.flush().map_err(SpoolError::Export)?;
    Ok(summary)
}

#[derive(Serialize)]
struct JsonRow<'a> {
    seq: u64,
    appended_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    sample: &'a TrafficSample,
}

/// Writes the samples with a seq above `after_seq` as JSON Lines.
pub fn export_samples_json<W: Write>(
    spool: &Spool,
    after_seq: u64,
    out: W,
) -> Result<ExportSummary, SpoolError> {
    let mut out = BufWriter::new(out);
    let summary = for_each_sample(spool, after_seq, |seq, appended_at, sample| {
        let row = JsonRow {
            seq,
            appended_at,
            sample,
        };
        serde_json::to_writer(&mut out, &row)
            .map_err(|e| SpoolError::Export(e.into()))
            .and_then(|()| out.write_all(b"\n").map_err(SpoolError::Export))
    })?;
    out.flush().map_err(SpoolError::Export)?;
    Ok(summary)
}

fn for_each_sample(
    spool: &Spool,
    after_seq: u64,
    mut write: impl FnMut(u64, Option<DateTime<Utc>>, &TrafficSample) -> Result<(), SpoolError>,
) -> Result<ExportSummary, SpoolError> {
    let mut summary = ExportSummary::default();
    let mut records = spool.iter(RecordClass::Sample, after_seq);
    for record in records.by_ref() {
        let record = record?;
        match decode_sample(&record.payload) {
            Ok(sample) => {
                write(record.seq, record.appended_at(), &sample)?;
                summary.rows += 1;
            }
            Err(_) => summary.decode_errors += 1,
        }
    }
    summary.corrupt_records = records.corrupt_records();
    Ok(summary)
}

fn csv_line(line: &mut String, seq: u64, appended_at: Option<DateTime<Utc>>, s: &TrafficSample) {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let classes = s.class_counts.map_or([None; 4], |c| c.map(Some));
    let [moto, short, medium, long] = classes;
    let fields: [Option<String>; 28] = [
        Some(seq.to_string()),
        appended_at.map(time),
        Some(s.site_id.clone()),
        Some(s.detector_id.clone()),
        Some(s.lane.to_string()),
        Some(time(s.bucket_start)),
        Some(s.interval_s.to_string()),
        s.volume.map(|v| v.to_string()),
        s.flow_vph.map(|v| v.to_string()),
        s.occupancy.map(|v| v.to_string()),
        s.speed_avg_kmh.map(|v| v.to_string()),
        s.speed_p85_kmh.map(|v| v.to_string()),
        Some(s.speed_count.to_string()),
        Some(s.speed_source.as_str().to_owned()),
        s.density_vpkm.map(|v| v.to_string()),
        s.headway_avg_s.map(|v| v.to_string()),
        s.gap_avg_s.map(|v| v.to_string()),
        s.length_avg_m.map(|v| v.to_string()),
        moto.map(|v| v.to_string()),
        short.map(|v| v.to_string()),
        medium.map(|v| v.to_string()),
        long.map(|v| v.to_string()),
        s.los.map(|l| l.as_char().to_string()),
        Some(s.samples_expected.to_string()),
        Some(s.samples_received.to_string()),
        Some(s.pct_observed.to_string()),
        Some(s.quality.bits().to_string()),
        Some(s.edge_id.clone()),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if let Some(field) = field {
            push_csv_field(line, field);
        }
    }
    line.push_str("\r\n");
}

fn push_csv_field(line: &mut String, field: &str) {
    let needs_quotes =
        field.contains([',', '"', '\r', '\n']) || field.starts_with(' ') || field.ends_with(' ');
    if !needs_quotes {
        line.push_str(field);
        return;
    }
    line.push('"');
    for c in field.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut line = String::new();
        push_csv_field(&mut line, "plain");
        line.push(',');
        push_csv_field(&mut line, "a,b");
        line.push(',');
        push_csv_field(&mut line, "say \"hi\"");
        line.push(',');
        push_csv_field(&mut line, "two\nlines");
        line.push(',');
        push_csv_field(&mut line, " padded");
        assert_eq!(
            line,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\" padded\""
        );
    }

    #[test]
    fn header_has_one_column_per_field() {
        assert_eq!(CSV_HEADER.split(',').count(), 28);
    }
}
