//! The spool: the durable, bounded local store where traffic samples and raw data wait for
//! the network (DESIGN §5). Synchronous std file I/O; the daemon drives it from one
//! dedicated blocking task.
//!
//! # Layout
//!
//! ```text
//! <root>/samples/<first seq, 20 digits>.seg   samples (precious)
//! <root>/raw/<first seq, 20 digits>.seg       raw frames and events (expendable)
//! <root>/cursor                               highest sample seq acknowledged upstream
//! <root>/quarantine/                          corrupt segments set aside at open
//! ```
//!
//! Each class is a sequence of append-only segment files named by a lower bound of their
//! sequence numbers, so name order is record order. Records (format in `record.rs`) carry a
//! magic, kind, length, sequence number (one counter for both classes, monotonic across
//! restarts), the caller's append time in ms, and a CRC-32 over header and payload. When a
//! segment reaches `max_segment_bytes` it is sealed with a footer that summarises it; the
//! newest segment of each class (the active one) takes appends.
//!
//! # Durability
//!
//! [`Spool::append`] writes without fsync (one `write` per record, so a killed process
//! loses nothing; a power loss loses what was not synced). [`Spool::sync`] fsyncs the
//! touched files (and the directory after a segment was created) and returns the highest
//! durable sequence number; acknowledge a producer (MQTT PUBACK) only once
//! [`Spool::durable_seq`] covers its record. [`Spool::read_samples`] only returns durable
//! samples, so nothing is sent upstream that a power loss could take back.
//!
//! # Bound and eviction
//!
//! The segment files of both classes together stay within `max_total_bytes`. An append that
//! would exceed it removes whole segments, oldest first: raw segments while any raw data is
//! left, then sample segments. Each eviction is counted per class (the totals persist in
//! `evictions.json`, see `evictions`) and logged with one
//! `warn!` line; evicting samples not yet acknowledged upstream is counted as loss.
//!
//! # Recovery and fast open
//!
//! Opening reads only the footer of each sealed segment and scans the last segment of each
//! class. A torn tail (the last record cut short) is truncated away; a segment with a corrupt
//! record followed by valid ones is copied record by record into a fresh file (everything
//! valid is kept) and the original moved to `quarantine/`. Neither blocks opening; both are
//! counted in the [`RecoveryReport`]. Sealed segments are verified lazily: a CRC error found
//! while reading is counted, the reader resynchronises at the next valid record and goes on.
//!
//! # Consumer cursor
//!
//! The uplink reads with [`Spool::read_samples`]`(after_seq, max)` and, once the centre has
//! committed a batch, calls [`Spool::ack_samples`]`(upto_seq)`: the cursor is persisted
//! atomically (temp file, fsync, rename, fsync directory) and segments holding only
//! acknowledged samples are deleted, except the newest sealed one: the samples of the last
//! moments before a crash are the evidence the MQTT replay at start needs
//! (`crate::sources::replay`).
//!
//! No clock is read in here: append times and `sync_if_due`'s `now` come from the caller.

#![deny(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod cursor;
mod error;
mod evictions;
mod export;
mod record;
mod segment;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use central_sync::TrafficSample;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

pub use error::{SampleDecodeError, SpoolError};
pub use export::{ExportSummary, export_samples_csv, export_samples_json};
pub use record::RecordClass;

use record::{FOOTER_LEN, HEADER_LEN, Kind, MAX_PAYLOAD_LEN, encode_record};
use segment::{EntryKind, Scan, Scanner, SegmentMeta};

const QUARANTINE_DIR: &str = "quarantine";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Version byte in front of every postcard-encoded sample payload.
pub const SAMPLE_FORMAT_VERSION: u8 = 1;

/// Encodes a sample as a spool payload: the format version byte, then postcard.
pub fn encode_sample(sample: &TrafficSample, out: &mut Vec<u8>) -> Result<(), SpoolError> {
    out.clear();
    out.push(SAMPLE_FORMAT_VERSION);
    let encoded = postcard::to_extend(sample, std::mem::take(out)).map_err(SpoolError::Encode)?;
    *out = encoded;
    Ok(())
}

/// Decodes a payload written by [`encode_sample`].
pub fn decode_sample(payload: &[u8]) -> Result<TrafficSample, SampleDecodeError> {
    let (&version, body) = payload.split_first().ok_or(SampleDecodeError::Empty)?;
    if version != SAMPLE_FORMAT_VERSION {
        return Err(SampleDecodeError::UnknownVersion(version));
    }
    let (sample, rest) = postcard::take_from_bytes::<TrafficSample>(body)?;
    if !rest.is_empty() {
        return Err(SampleDecodeError::Trailing(rest.len()));
    }
    Ok(sample)
}

/// Spool sizing and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Bound on the bytes of all segment files, both classes together. Default 256 MiB.
    /// Must be at least 4 × `max_segment_bytes`.
    pub max_total_bytes: u64,
    /// A segment is sealed and a new one begun before it would exceed this size; it is
    /// also the largest record (minus 104 bytes of header and footer). Default 8 MiB,
    /// minimum 4 KiB.
    pub max_segment_bytes: u64,
    /// How often [`Spool::sync_if_due`] fsyncs. Default 1 s.
    pub sync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_total_bytes: 256 * MIB,
            max_segment_bytes: 8 * MIB,
            sync_interval: Duration::from_secs(1),
        }
    }
}

impl SpoolConfig {
    pub const MIN_SEGMENT_BYTES: u64 = 4 * KIB;

    /// A configuration bounded at `max_total_bytes`, with segments of a sixteenth of it
    /// (between 64 KiB and 8 MiB) so that eviction frees space in small steps.
    pub fn with_max_total_bytes(max_total_bytes: u64) -> Self {
        Self {
            max_total_bytes,
            max_segment_bytes: (max_total_bytes / 16).clamp(64 * KIB, 8 * MIB),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), SpoolError> {
        if self.max_segment_bytes < Self::MIN_SEGMENT_BYTES {
            return Err(SpoolError::Config(format!(
                "max_segment_bytes {} is below the minimum of {}",
                self.max_segment_bytes,
                Self::MIN_SEGMENT_BYTES
            )));
        }
        if self.max_total_bytes / 4 < self.max_segment_bytes {
            return Err(SpoolError::Config(format!(
                "max_total_bytes {} must be at least 4 x max_segment_bytes ({})",
                self.max_total_bytes, self.max_segment_bytes
            )));
        }
        Ok(())
    }

    /// The largest payload an append accepts.
    pub fn max_payload_bytes(&self) -> u64 {
        self.max_segment_bytes
            .saturating_sub(HEADER_LEN as u64 + FOOTER_LEN)
            .min(u64::from(MAX_PAYLOAD_LEN))
    }
}

/// One stored record, as returned by [`Spool::tail`] and [`RecordIter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub class: RecordClass,
    /// Append time given by the caller, ms since the Unix epoch.
    pub appended_at_ms: i64,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn appended_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.appended_at_ms)
    }

    /// The sample this record holds, if it is a sample record.
    pub fn sample(&self) -> Option<Result<TrafficSample, SampleDecodeError>> {
        (self.class == RecordClass::Sample).then(|| decode_sample(&self.payload))
    }
}

/// Segments removed to stay within the bound, per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EvictionCounters {
    pub evicted_segments: u64,
    pub evicted_records: u64,
    pub evicted_bytes: u64,
    /// Samples evicted before they were acknowledged upstream: data loss. Always 0 for raw.
    pub evicted_unacked_records: u64,
}

/// What opening the spool found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Sealed segments trusted by their footer without reading them.
    pub segments_trusted: u64,
    /// Segments read in full (the last of each class, and sealed ones without a valid
    /// footer).
    pub segments_scanned: u64,
    /// Segments whose tail was cut off (a record torn by a crash).
    pub torn_tails: u64,
    pub torn_bytes: u64,
    /// Corrupt segments moved aside (their valid records were kept).
    pub quarantined: Vec<PathBuf>,
    /// Records kept from quarantined segments.
    pub salvaged_records: u64,
    /// Corrupt regions skipped in quarantined segments, and their bytes.
    pub corrupt_regions: u64,
    pub corrupt_bytes: u64,
    /// Footers written for sealed segments that lacked one.
    pub footers_rebuilt: u64,
    /// Salvage temp files found: completed (renamed into place) or discarded.
    pub temp_files_resolved: u64,
    /// Segments removed because the cursor showed them fully acknowledged.
    pub acked_segments_removed: u64,
    /// Files in segment directories the spool does not know (left alone).
    pub unknown_files: u64,
    /// The cursor file was unreadable: the cursor restarted at 0 (samples are re-sent).
    pub cursor_reset: bool,
}

impl RecoveryReport {
    /// Whether anything had to be repaired.
    pub fn repaired(&self) -> bool {
        self.torn_tails > 0
            || !self.quarantined.is_empty()
            || self.footers_rebuilt > 0
            || self.temp_files_resolved > 0
            || self.cursor_reset
    }
}

/// Per-class figures of [`SpoolStat`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassStat {
    pub segments: u64,
    pub bytes: u64,
    /// Records on disk (for samples: acknowledged ones in partly acknowledged segments
    /// included).
    pub records: u64,
    pub last_seq: Option<u64>,
    /// Oldest append time on disk, ms since the Unix epoch.
    pub oldest_appended_at_ms: Option<i64>,
    pub eviction: EvictionCounters,
}

/// Corruption met while reading (sealed segments are verified lazily). Counts occurrences:
/// a corrupt record read twice counts twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReadCounters {
    pub corrupt_records: u64,
    pub corrupt_bytes: u64,
    /// Sample payloads with a valid CRC that did not decode (unknown format version).
    pub sample_decode_errors: u64,
}

/// A snapshot of the spool for metrics and `ingest-daemon spool stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpoolStat {
    pub samples: ClassStat,
    pub raw: ClassStat,
    pub total_bytes: u64,
    pub max_total_bytes: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
    pub durable_seq: u64,
    /// Highest sample seq acknowledged upstream (0: none).
    pub acked_seq: u64,
    pub oldest_unacked_sample_seq: Option<u64>,
    /// Append time of that sample, ms since the Unix epoch: the uplink's lag.
    pub oldest_unacked_appended_at_ms: Option<i64>,
    pub oldest_appended_at_ms: Option<i64>,
    pub reads: ReadCounters,
    pub recovery: RecoveryReport,
}

/// Where the last `read_samples` stopped, so that the next one (continuing from the seq it
/// returned last) does not rescan its segment from the start.
#[derive(Debug, Clone, Copy)]
struct ReadHint {
    /// Every sample with a seq above this one is at or after (`segment`, `pos`).
    after_seq: u64,
    segment: u64,
    pos: u64,
}

#[derive(Debug)]
struct ClassState {
    dir: PathBuf,
    sealed: VecDeque<SegmentMeta>,
    sealed_bytes: u64,
    active: SegmentMeta,
    file: File,
    /// Sealed segments written since the last sync.
    unsynced_sealed: Vec<(PathBuf, File)>,
    active_unsynced: bool,
    dir_unsynced: bool,
    eviction: EvictionCounters,
}

impl ClassState {
    fn bytes(&self) -> u64 {
        self.sealed_bytes + self.active.bytes
    }

    fn has_data(&self) -> bool {
        !self.sealed.is_empty() || self.active.bytes > 0
    }

    fn segments(&self) -> impl DoubleEndedIterator<Item = &SegmentMeta> {
        self.sealed.iter().chain(std::iter::once(&self.active))
    }

    fn needs_roll(&self, record_len: u64, max_segment_bytes: u64) -> bool {
        self.active.sealed
            || (self.active.bytes > 0
                && self.active.bytes + record_len + FOOTER_LEN > max_segment_bytes)
    }

    fn unsynced(&self) -> bool {
        self.active_unsynced || self.dir_unsynced || !self.unsynced_sealed.is_empty()
    }

    /// Seals the active segment with a footer and starts a new one named `next_seq`.
    fn roll(&mut self, next_seq: u64) -> Result<(), SpoolError> {
        if !self.active.sealed {
            let before = self.active.bytes;
            if let Err(e) = segment::write_footer(&mut self.file, &mut self.active) {
                // Leave no half footer for the next append to follow.
                self.file
                    .set_len(before)
                    .map_err(|_| SpoolError::Poisoned)?;
                return Err(e);
            }
        }
        let path = self.dir.join(segment::segment_file_name(next_seq));
        let file = segment::create_segment(&path)?;
        let old_file = std::mem::replace(&mut self.file, file);
        let old = std::mem::replace(&mut self.active, SegmentMeta::empty(next_seq, path));
        self.unsynced_sealed.push((old.path.clone(), old_file));
        self.active_unsynced = false;
        self.dir_unsynced = true;
        self.sealed_bytes += old.bytes;
        self.sealed.push_back(old);
        Ok(())
    }

    /// Removes the oldest segment. If that is the active one, it is replaced by a fresh
    /// empty segment named `next_seq` (the active segment's name keeps the sequence floor).
    fn remove_oldest(&mut self, next_seq: u64) -> Result<Option<SegmentMeta>, SpoolError> {
        if let Some(oldest) = self.sealed.front() {
            remove_file(&oldest.path)?;
            let path = oldest.path.clone();
            self.unsynced_sealed.retain(|(p, _)| *p != path);
            let removed = self.sealed.pop_front();
            if let Some(removed) = &removed {
                self.sealed_bytes -= removed.bytes;
            }
            return Ok(removed);
        }
        if self.active.bytes == 0 {
            return Ok(None);
        }
        let path = self.dir.join(segment::segment_file_name(next_seq));
        let file = segment::create_segment(&path)?;
        let old = std::mem::replace(&mut self.active, SegmentMeta::empty(next_seq, path));
        self.file = file;
        self.active_unsynced = false;
        self.dir_unsynced = true;
        remove_file(&old.path)?;
        Ok(Some(old))
    }

    fn sync(&mut self) -> Result<(), SpoolError> {
        for (path, file) in self.unsynced_sealed.drain(..) {
            file.sync_data()
                .map_err(SpoolError::io("fsync sealed segment", &path))?;
        }
        if self.active_unsynced {
            self.file
                .sync_data()
                .map_err(SpoolError::io("fsync segment", &self.active.path))?;
            self.active_unsynced = false;
        }
        if self.dir_unsynced {
            segment::sync_dir(&self.dir)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    fn stat(&self) -> ClassStat {
        ClassStat {
            segments: self.sealed.len() as u64 + 1,
            bytes: self.bytes(),
            records: self.segments().map(|s| s.records).sum(),
            last_seq: self.segments().rev().find_map(|s| s.last_seq),
            oldest_appended_at_ms: self.segments().filter_map(|s| s.min_ts_ms).min(),
            eviction: self.eviction,
        }
    }

    /// (name, path, valid bytes) of the segments that may hold seqs above `after_seq`.
    fn segments_after(&self, after_seq: u64) -> Vec<(u64, PathBuf, u64)> {
        let all: Vec<&SegmentMeta> = self.segments().collect();
        let start = all
            .partition_point(|s| s.first_seq <= after_seq.saturating_add(1))
            .saturating_sub(1);
        all.iter()
            .skip(start)
            .map(|s| (s.first_seq, s.path.clone(), s.bytes))
            .collect()
    }
}

fn remove_file(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SpoolError::io("remove segment", path)(e)),
    }
}

/// The spool. See the module documentation.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    config: SpoolConfig,
    samples: ClassState,
    raw: ClassState,
    next_seq: u64,
    durable_seq: u64,
    acked_seq: u64,
    last_sync: Option<Instant>,
    poisoned: bool,
    read_hint: Option<ReadHint>,
    reads: ReadCounters,
    recovery: RecoveryReport,
    scratch: Vec<u8>,
    sample_buf: Vec<u8>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `root`, repairing what a crash left behind.
    /// Corrupt data never makes this fail; I/O errors and a bad configuration do.
    pub fn open(root: impl AsRef<Path>, config: SpoolConfig) -> Result<Self, SpoolError> {
        config.validate()?;
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(SpoolError::io("create spool directory", &root))?;
        let quarantine = root.join(QUARANTINE_DIR);
        let mut report = RecoveryReport::default();

        let acked_seq = match cursor::load(&root)? {
            cursor::Loaded::Missing => 0,
            cursor::Loaded::Valid(acked) => acked,
            cursor::Loaded::Corrupt => {
                warn!(path = %root.join(cursor::CURSOR_FILE).display(),
                    "spool cursor unreadable: starting from 0, samples will be re-sent");
                report.cursor_reset = true;
                0
            }
        };
        let sample_segments = load_class(&root, RecordClass::Sample, &quarantine, &mut report)?;
        let raw_segments = load_class(&root, RecordClass::Raw, &quarantine, &mut report)?;

        let next_seq = sample_segments
            .iter()
            .chain(&raw_segments)
            .map(|s| {
                s.first_seq
                    .max(s.last_seq.map_or(0, |l| l.saturating_add(1)))
            })
            .fold(acked_seq.saturating_add(1), u64::max)
            .max(1);

        let mut samples = build_class(&root, RecordClass::Sample, sample_segments, next_seq)?;
        let mut raw = build_class(&root, RecordClass::Raw, raw_segments, next_seq)?;
        let evicted = evictions::load(&root);
        samples.eviction = evicted.sample;
        raw.eviction = evicted.raw;
        segment::sync_dir(&root)?;

        let mut spool = Spool {
            root,
            config,
            samples,
            raw,
            next_seq,
            durable_seq: next_seq - 1,
            acked_seq,
            last_sync: None,
            poisoned: false,
            read_hint: None,
            reads: ReadCounters::default(),
            recovery: report,
            scratch: Vec::new(),
            sample_buf: Vec::new(),
        };
        spool.recovery.acked_segments_removed += spool.remove_acked_segments()?;
        // What was found on disk may still sit in the page cache of a killed process:
        // make it durable before claiming it is.
        spool.samples.active_unsynced = true;
        spool.raw.active_unsynced = true;
        spool.sync()?;

        let r = &spool.recovery;
        if r.repaired() {
            warn!(
                torn_tails = r.torn_tails,
                torn_bytes = r.torn_bytes,
                quarantined = r.quarantined.len(),
                salvaged_records = r.salvaged_records,
                corrupt_bytes = r.corrupt_bytes,
                footers_rebuilt = r.footers_rebuilt,
                cursor_reset = r.cursor_reset,
                "spool repaired at open"
            );
        }
        info!(root = %spool.root.display(), next_seq, acked_seq,
            bytes = spool.total_bytes(), segments_trusted = r.segments_trusted,
            segments_scanned = r.segments_scanned, "spool open");
        Ok(spool)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// Every record with a seq up to this is on stable storage (or was evicted).
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The highest sample seq acknowledged upstream (the persisted cursor).
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn total_bytes(&self) -> u64 {
        self.samples.bytes() + self.raw.bytes()
    }

    /// Bytes of the segment files of one class.
    pub fn class_bytes(&self, class: RecordClass) -> u64 {
        self.class(class).bytes()
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    fn class(&self, class: RecordClass) -> &ClassState {
        match class {
            RecordClass::Sample => &self.samples,
            RecordClass::Raw => &self.raw,
        }
    }

    fn check_poisoned(&self) -> Result<(), SpoolError> {
        if self.poisoned {
            Err(SpoolError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Appends one record without fsync and returns its sequence number. Makes room first
    /// by evicting whole segments when the bound would be exceeded.
    pub fn append(
        &mut self,
        class: RecordClass,
        appended_at: DateTime<Utc>,
        payload: &[u8],
    ) -> Result<u64, SpoolError> {
        self.check_poisoned()?;
        let max = self.config.max_payload_bytes();
        if payload.len() as u64 > max {
            return Err(SpoolError::RecordTooLarge {
                class,
                len: payload.len(),
                max,
            });
        }
        if self.next_seq == u64::MAX {
            return Err(SpoolError::SequenceExhausted);
        }
        let record_len = HEADER_LEN as u64 + payload.len() as u64;
        self.make_room(class, record_len)?;

        let seq = self.next_seq;
        let ts_ms = appended_at.timestamp_millis();
        let max_segment_bytes = self.config.max_segment_bytes;
        let state = match class {
            RecordClass::Sample => &mut self.samples,
            RecordClass::Raw => &mut self.raw,
        };
        if state.needs_roll(record_len, max_segment_bytes)
            && let Err(e) = state.roll(seq)
        {
            self.poisoned |= matches!(e, SpoolError::Poisoned);
            return Err(e);
        }
        self.scratch.clear();
        encode_record(&mut self.scratch, Kind::Data(class), seq, ts_ms, payload);
        let before = state.active.bytes;
        if let Err(e) = state.file.write_all(&self.scratch) {
            if state.file.set_len(before).is_err() {
                self.poisoned = true;
            }
            return Err(SpoolError::io_at(
                "append to segment",
                &state.active.path,
                before,
            )(e));
        }
        state.active.note_record(seq, ts_ms, record_len);
        state.active_unsynced = true;
        self.next_seq += 1;
        if class == RecordClass::Sample && !self.samples.sealed.is_empty() {
            // A segment sealed just now may already be fully acknowledged.
            self.remove_acked_segments()?;
        }
        Ok(seq)
    }

    /// Appends a traffic sample (version byte + postcard).
    pub fn append_sample(
        &mut self,
        appended_at: DateTime<Utc>,
        sample: &TrafficSample,
    ) -> Result<u64, SpoolError> {
        let mut buf = std::mem::take(&mut self.sample_buf);
        let result = encode_sample(sample, &mut buf)
            .and_then(|()| self.append(RecordClass::Sample, appended_at, &buf));
        self.sample_buf = buf;
        result
    }

    /// Appends raw bytes (a frame or event as received).
    pub fn append_raw(
        &mut self,
        appended_at: DateTime<Utc>,
        payload: &[u8],
    ) -> Result<u64, SpoolError> {
        self.append(RecordClass::Raw, appended_at, payload)
    }

    fn make_room(&mut self, class: RecordClass, record_len: u64) -> Result<(), SpoolError> {
        loop {
            let roll = self
                .class(class)
                .needs_roll(record_len, self.config.max_segment_bytes);
            let needed = record_len + if roll { FOOTER_LEN } else { 0 };
            if self.total_bytes() + needed <= self.config.max_total_bytes {
                return Ok(());
            }
            let victim = if self.raw.has_data() {
                RecordClass::Raw
            } else if self.samples.has_data() {
                RecordClass::Sample
            } else {
                // Unreachable with a validated config (a record is at most a quarter of the
                // bound); refuse rather than loop.
                return Err(SpoolError::RecordTooLarge {
                    class,
                    len: usize::try_from(record_len).unwrap_or(usize::MAX),
                    max: self.config.max_total_bytes,
                });
            };
            self.evict_oldest(victim)?;
        }
    }

    fn evict_oldest(&mut self, class: RecordClass) -> Result<(), SpoolError> {
        let unacked = match (class, self.class(class).segments().next()) {
            (RecordClass::Sample, Some(oldest)) => self.unacked_in(oldest),
            _ => 0,
        };
        let next_seq = self.next_seq;
        let state = match class {
            RecordClass::Sample => &mut self.samples,
            RecordClass::Raw => &mut self.raw,
        };
        let Some(removed) = state.remove_oldest(next_seq)? else {
            return Ok(());
        };
        let counters = &mut state.eviction;
        counters.evicted_segments += 1;
        counters.evicted_records += removed.records;
        counters.evicted_bytes += removed.bytes;
        counters.evicted_unacked_records += unacked;
        let totals = evictions::Totals {
            sample: self.samples.eviction,
            raw: self.raw.eviction,
        };
        if let Err(e) = evictions::store(&self.root, &totals) {
            // The totals are a record for people; losing an update must not stop appends.
            warn!(error = %e, "cannot store the eviction totals");
        }
        if self
            .read_hint
            .is_some_and(|h| class == RecordClass::Sample && h.segment == removed.first_seq)
        {
            self.read_hint = None;
        }
        warn!(class = %class, segment = %removed.path.display(), records = removed.records,
            bytes = removed.bytes, unacked_samples_lost = unacked,
            first_seq = removed.first_seq, last_seq = removed.last_seq,
            "spool full: evicted oldest segment");
        Ok(())
    }

    /// Samples in `segment` not yet acknowledged (read from disk only for a segment the
    /// cursor points into).
    fn unacked_in(&self, segment: &SegmentMeta) -> u64 {
        let acked = self.acked_seq;
        match segment.last_seq {
            None => 0,
            Some(last) if last <= acked => 0,
            Some(_) if segment.first_seq > acked => segment.records,
            Some(_) => {
                let iter = RecordIter::new(
                    RecordClass::Sample,
                    vec![(segment.path.clone(), segment.bytes)],
                    acked,
                );
                let counted = iter
                    .map(|r| r.map(|_| 1u64))
                    .sum::<Result<u64, SpoolError>>();
                counted.unwrap_or(segment.records)
            }
        }
    }

    /// fsyncs everything appended so far (segment files, and directories where segments
    /// were created) and returns the new durable seq.
    pub fn sync(&mut self) -> Result<u64, SpoolError> {
        self.check_poisoned()?;
        for state in [&mut self.samples, &mut self.raw] {
            if let Err(e) = state.sync() {
                // After a failed fsync the kernel may have dropped the dirty pages: what is
                // on disk is unknown until a reopen rescans it.
                self.poisoned = true;
                return Err(e);
            }
        }
        self.durable_seq = self.next_seq - 1;
        Ok(self.durable_seq)
    }

    /// Syncs if there is anything to sync and `sync_interval` has passed since the last
    /// sync made here. Returns the durable seq after a sync, `None` when nothing was done.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<Option<u64>, SpoolError> {
        if !(self.samples.unsynced() || self.raw.unsynced()) {
            return Ok(None);
        }
        let due = self
            .last_sync
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.sync_interval);
        if !due {
            return Ok(None);
        }
        let durable = self.sync()?;
        self.last_sync = Some(now);
        Ok(Some(durable))
    }

    /// Syncs and closes the spool.
    pub fn close(mut self) -> Result<u64, SpoolError> {
        self.sync()
    }

    /// Reads up to `max_records` durable samples with a seq above `after_seq`, in seq order.
    /// Reads from disk segment by segment; corrupt records are counted and skipped.
    pub fn read_samples(
        &mut self,
        after_seq: u64,
        max_records: usize,
    ) -> Result<Vec<(u64, TrafficSample)>, SpoolError> {
        let mut out = Vec::new();
        if max_records == 0 || after_seq >= self.durable_seq {
            return Ok(out);
        }
        let mut decode_errors = 0;
        self.scan_samples(after_seq, self.durable_seq, |seq, payload| {
            match decode_sample(payload) {
                Ok(sample) => out.push((seq, sample)),
                Err(error) => {
                    decode_errors += 1;
                    warn!(seq, %error, "spool: sample record does not decode, skipped");
                }
            }
            if out.len() >= max_records {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        self.reads.sample_decode_errors += decode_errors;
        Ok(out)
    }

    fn scan_samples(
        &mut self,
        after_seq: u64,
        upto_seq: u64,
        mut visit: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        let segments = self.samples.segments_after(after_seq);
        // Continue where the previous read stopped if it ended at `after_seq`.
        let (start, start_pos) = self
            .read_hint
            .filter(|h| h.after_seq == after_seq)
            .and_then(|h| {
                segments
                    .iter()
                    .position(|(first, _, end)| *first == h.segment && h.pos <= *end)
                    .map(|i| (i, h.pos))
            })
            .unwrap_or((0, 0));
        let mut delivered = after_seq;
        for (i, (first_seq, path, end)) in segments.iter().enumerate().skip(start) {
            let pos = if i == start { start_pos } else { 0 };
            let mut scanner = Scanner::open(path, Some(*end))?;
            scanner.set_pos(pos);
            let mut floor = delivered;
            loop {
                match scanner.next()? {
                    Scan::Record { offset, header } => {
                        if header.seq <= floor {
                            continue;
                        }
                        floor = header.seq;
                        if header.seq > upto_seq {
                            self.read_hint = Some(ReadHint {
                                after_seq: delivered,
                                segment: *first_seq,
                                pos: offset,
                            });
                            return Ok(());
                        }
                        delivered = header.seq;
                        if visit(header.seq, scanner.payload()).is_break() {
                            self.read_hint = Some(ReadHint {
                                after_seq: delivered,
                                segment: *first_seq,
                                pos: scanner.pos(),
                            });
                            return Ok(());
                        }
                    }
                    Scan::Footer { .. } | Scan::End => break,
                    Scan::Bad { offset, why } => {
                        let resumed = scanner.resync(offset + 1, Some(floor))?;
                        let skipped = resumed.unwrap_or(*end) - offset;
                        self.reads.corrupt_records += 1;
                        self.reads.corrupt_bytes += skipped;
                        warn!(path = %path.display(), offset, %why, skipped,
                            "spool: corrupt record skipped while reading");
                        if resumed.is_none() {
                            break;
                        }
                    }
                }
            }
        }
        if let Some((first_seq, _, end)) = segments.last() {
            self.read_hint = Some(ReadHint {
                after_seq: delivered,
                segment: *first_seq,
                pos: *end,
            });
        }
        Ok(())
    }

    /// Acknowledges every sample with a seq up to `upto_seq` (clamped to the last seq
    /// given out): persists the cursor durably, then deletes segments holding only
    /// acknowledged samples. Returns the cursor.
    pub fn ack_samples(&mut self, upto_seq: u64) -> Result<u64, SpoolError> {
        self.check_poisoned()?;
        let upto = upto_seq.min(self.next_seq - 1);
        if upto <= self.acked_seq {
            return Ok(self.acked_seq);
        }
        cursor::store(&self.root, upto)?;
        self.acked_seq = upto;
        self.remove_acked_segments()?;
        Ok(upto)
    }

    /// Deletes sealed sample segments whose every record is acknowledged. The active
    /// segment stays: it takes the next appends and its name keeps the sequence floor.
    fn remove_acked_segments(&mut self) -> Result<u64, SpoolError> {
        let acked = self.acked_seq;
        let mut removed = 0;
        loop {
            let state = &self.samples;
            let Some(oldest) = state.sealed.front() else {
                break;
            };
            // The newest sealed segment stays even when acknowledged: with the active one
            // it holds the samples of the last moments before a crash, which tell the
            // MQTT replay at start which bins are already spooled (`sources::replay`).
            if state.sealed.len() == 1 {
                break;
            }
            let next_first = state.sealed.get(1).unwrap_or(&state.active).first_seq;
            let fully_acked = oldest.last_seq.is_none_or(|last| last <= acked)
                || next_first <= acked.saturating_add(1);
            if !fully_acked {
                break;
            }
            let next_seq = self.next_seq;
            if let Some(gone) = self.samples.remove_oldest(next_seq)?
                && self.read_hint.is_some_and(|h| h.segment == gone.first_seq)
            {
                self.read_hint = None;
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Iterates lazily over the records of `class` with a seq above `after_seq`, everything
    /// appended so far (durable or not). Corrupt records are skipped (see
    /// [`RecordIter::corrupt_records`]).
    pub fn iter(&self, class: RecordClass, after_seq: u64) -> RecordIter {
        let segments = self
            .class(class)
            .segments_after(after_seq)
            .into_iter()
            .map(|(_, path, end)| (path, end))
            .collect();
        RecordIter::new(class, segments, after_seq)
    }

    /// The last `n` records of both classes, in seq order. Reads segments from the newest
    /// back until it has `n` per class.
    pub fn tail(&self, n: usize) -> Result<Vec<Record>, SpoolError> {
        let mut all = Vec::new();
        for class in RecordClass::ALL {
            let mut kept: VecDeque<Record> = VecDeque::new();
            for segment in self.class(class).segments().rev() {
                if kept.len() >= n {
                    break;
                }
                let want = n - kept.len();
                let mut newest: VecDeque<Record> = VecDeque::with_capacity(want.min(1024));
                let iter = RecordIter::new(class, vec![(segment.path.clone(), segment.bytes)], 0);
                for record in iter {
                    newest.push_back(record?);
                    if newest.len() > want {
                        newest.pop_front();
                    }
                }
                while let Some(record) = newest.pop_back() {
                    kept.push_front(record);
                }
            }
            all.extend(kept);
        }
        all.sort_by_key(|r| r.seq);
        let skip = all.len().saturating_sub(n);
        Ok(all.into_iter().skip(skip).collect())
    }

    /// The records of `class` appended at or after `since_ms` (ms since the Unix epoch), in
    /// seq order. Reads segments from the newest back and stops at the first one that began
    /// before `since_ms`, so the cost follows the window, not the spool's size.
    pub fn records_since(
        &self,
        class: RecordClass,
        since_ms: i64,
    ) -> Result<Vec<Record>, SpoolError> {
        let mut newest_first: Vec<Vec<Record>> = Vec::new();
        for segment in self.class(class).segments().rev() {
            // The segment's append-time range says whether it holds anything of the window
            // and whether older segments could: no need to read it to know.
            match segment.max_ts_ms {
                None => continue,
                Some(newest) if newest < since_ms => break,
                Some(_) => {}
            }
            let iter = RecordIter::new(class, vec![(segment.path.clone(), segment.bytes)], 0);
            let mut kept = Vec::new();
            for record in iter {
                let record = record?;
                if record.appended_at_ms >= since_ms {
                    kept.push(record);
                }
            }
            newest_first.push(kept);
            if segment.min_ts_ms.is_some_and(|oldest| oldest < since_ms) {
                break;
            }
        }
        Ok(newest_first.into_iter().rev().flatten().collect())
    }

    /// The newest append time of any record (ms since the Unix epoch), from the segments'
    /// metadata: no segment is read.
    pub fn newest_appended_ms(&self) -> Option<i64> {
        RecordClass::ALL
            .into_iter()
            .flat_map(|c| self.class(c).segments().filter_map(|s| s.max_ts_ms))
            .max()
    }

    /// A snapshot of sizes, cursor, counters and the recovery report. Reads from disk only
    /// to find the oldest unacknowledged sample.
    pub fn stat(&self) -> Result<SpoolStat, SpoolError> {
        let samples = self.samples.stat();
        let raw = self.raw.stat();
        let oldest_unacked = self
            .iter(RecordClass::Sample, self.acked_seq)
            .next()
            .transpose()?;
        let oldest_unacked_sample_seq = oldest_unacked.as_ref().map(|r| r.seq);
        let oldest_unacked_appended_at_ms = oldest_unacked.map(|r| r.appended_at_ms);
        let oldest_appended_at_ms = [samples.oldest_appended_at_ms, raw.oldest_appended_at_ms]
            .into_iter()
            .flatten()
            .min();
        Ok(SpoolStat {
            total_bytes: samples.bytes + raw.bytes,
            samples,
            raw,
            max_total_bytes: self.config.max_total_bytes,
            next_seq: self.next_seq,
            durable_seq: self.durable_seq,
            acked_seq: self.acked_seq,
            oldest_unacked_sample_seq,
            oldest_unacked_appended_at_ms,
            oldest_appended_at_ms,
            reads: self.reads,
            recovery: self.recovery.clone(),
        })
    }
}

/// Lists, repairs and describes the segments of one class.
fn load_class(
    root: &Path,
    class: RecordClass,
    quarantine: &Path,
    report: &mut RecoveryReport,
) -> Result<Vec<SegmentMeta>, SpoolError> {
    let dir = root.join(class.dir_name());
    fs::create_dir_all(&dir).map_err(SpoolError::io("create segment directory", &dir))?;
    let mut names = Vec::new();
    let mut temps = Vec::new();
    for entry in fs::read_dir(&dir).map_err(SpoolError::io("list segment directory", &dir))? {
        let entry = entry.map_err(SpoolError::io("list segment directory", &dir))?;
        let file_name = entry.file_name();
        match segment::classify(&file_name.to_string_lossy()) {
            EntryKind::Segment(first_seq) => names.push(first_seq),
            EntryKind::Temp(first_seq) => temps.push(first_seq),
            EntryKind::Other => {
                report.unknown_files += 1;
                warn!(path = %entry.path().display(), "spool: unknown file left alone");
            }
        }
    }
    for first_seq in temps {
        // A salvage copy is fsynced before the original is moved away: if the original is
        // gone the copy is complete, otherwise it may be partial.
        let temp = dir.join(segment::temp_file_name(first_seq));
        let path = dir.join(segment::segment_file_name(first_seq));
        if names.contains(&first_seq) {
            remove_file(&temp)?;
        } else {
            fs::rename(&temp, &path).map_err(SpoolError::io("install salvaged segment", &temp))?;
            names.push(first_seq);
        }
        report.temp_files_resolved += 1;
    }
    names.sort_unstable();

    let mut segments = Vec::with_capacity(names.len());
    let last = names.len().saturating_sub(1);
    for (i, first_seq) in names.into_iter().enumerate() {
        let path = dir.join(segment::segment_file_name(first_seq));
        if i < last
            && let Some((footer, len)) = segment::read_footer(&path, first_seq)?
        {
            report.segments_trusted += 1;
            segments.push(SegmentMeta::from_footer(path, len, &footer));
            continue;
        }
        report.segments_scanned += 1;
        let recovered = segment::recover_segment(&path, first_seq, class, quarantine)?;
        if recovered.torn_bytes > 0 {
            report.torn_tails += 1;
            report.torn_bytes += recovered.torn_bytes;
            warn!(path = %path.display(), bytes = recovered.torn_bytes,
                "spool: torn tail cut off");
        }
        if let Some(quarantined) = recovered.quarantined {
            report.salvaged_records += recovered.meta.records;
            report.corrupt_regions += recovered.corrupt_regions;
            report.corrupt_bytes += recovered.corrupt_bytes;
            warn!(path = %path.display(), moved_to = %quarantined.display(),
                salvaged_records = recovered.meta.records,
                corrupt_bytes = recovered.corrupt_bytes,
                "spool: corrupt segment set aside, valid records kept");
            report.quarantined.push(quarantined);
        }
        let mut meta = recovered.meta;
        if i < last && !meta.sealed {
            if meta.records == 0 {
                // Nothing left in it; later segments keep the sequence floor.
                remove_file(&path)?;
                continue;
            }
            let mut file = segment::open_for_append(&path)?;
            segment::write_footer(&mut file, &mut meta)?;
            file.sync_data()
                .map_err(SpoolError::io("fsync segment", &path))?;
            report.footers_rebuilt += 1;
        }
        segments.push(meta);
    }
    Ok(segments)
}

/// Turns the loaded segments into the class state, opening (or creating) the active one.
fn build_class(
    root: &Path,
    class: RecordClass,
    mut segments: Vec<SegmentMeta>,
    next_seq: u64,
) -> Result<ClassState, SpoolError> {
    let dir = root.join(class.dir_name());
    // A sealed last segment (a crash between sealing it and creating its successor) takes
    // no more appends: start a new one. Empty sealed ones are dropped first so that the new
    // name cannot collide; `next_seq` already covers their names.
    while segments.last().is_some_and(|s| s.sealed && s.records == 0) {
        if let Some(empty) = segments.pop() {
            remove_file(&empty.path)?;
        }
    }
    let reuse_last = segments.last().is_some_and(|s| !s.sealed);
    let (active, file) = match segments.pop() {
        Some(last) if reuse_last => {
            let file = segment::open_for_append(&last.path)?;
            (last, file)
        }
        other => {
            segments.extend(other);
            let path = dir.join(segment::segment_file_name(next_seq));
            let file = segment::create_segment(&path)?;
            (SegmentMeta::empty(next_seq, path), file)
        }
    };
    let sealed: VecDeque<SegmentMeta> = segments.into();
    Ok(ClassState {
        sealed_bytes: sealed.iter().map(|s| s.bytes).sum(),
        sealed,
        active,
        file,
        unsynced_sealed: Vec::new(),
        active_unsynced: false,
        dir_unsynced: true,
        eviction: EvictionCounters::default(),
        dir,
    })
}

/// Lazy iterator over the records of one class (from [`Spool::iter`]). Opens one segment at
/// a time; skips corrupt records after resynchronising and counts them.
#[derive(Debug)]
pub struct RecordIter {
    class: RecordClass,
    segments: VecDeque<(PathBuf, u64)>,
    scanner: Option<Scanner>,
    /// Highest seq yielded (or the starting point): records at or below it are skipped.
    floor: u64,
    corrupt_records: u64,
    corrupt_bytes: u64,
}

impl RecordIter {
    fn new(class: RecordClass, segments: Vec<(PathBuf, u64)>, after_seq: u64) -> Self {
        Self {
            class,
            segments: segments.into(),
            scanner: None,
            floor: after_seq,
            corrupt_records: 0,
            corrupt_bytes: 0,
        }
    }

    pub fn class(&self) -> RecordClass {
        self.class
    }

    /// Corrupt records skipped so far.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records
    }

    pub fn corrupt_bytes(&self) -> u64 {
        self.corrupt_bytes
    }

    fn step(&mut self) -> Result<Option<Record>, SpoolError> {
        loop {
            let scanner = match &mut self.scanner {
                Some(scanner) => scanner,
                None => {
                    let Some((path, end)) = self.segments.pop_front() else {
                        return Ok(None);
                    };
                    match Scanner::open(&path, Some(end)) {
                        Ok(scanner) => self.scanner.insert(scanner),
                        // Evicted or acknowledged since the snapshot was taken.
                        Err(SpoolError::Io { source, .. })
                            if source.kind() == ErrorKind::NotFound =>
                        {
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            match scanner.next()? {
                Scan::Record { header, .. } => {
                    if header.seq <= self.floor {
                        continue;
                    }
                    self.floor = header.seq;
                    return Ok(Some(Record {
                        seq: header.seq,
                        class: self.class,
                        appended_at_ms: header.ts_ms,
                        payload: scanner.payload().to_vec(),
                    }));
                }
                Scan::Footer { .. } | Scan::End => self.scanner = None,
                Scan::Bad { offset, .. } => {
                    let end = scanner.end();
                    let resumed = scanner.resync(offset + 1, Some(self.floor))?;
                    self.corrupt_records += 1;
                    self.corrupt_bytes += resumed.unwrap_or(end) - offset;
                    if resumed.is_none() {
                        self.scanner = None;
                    }
                }
            }
        }
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                // Do not spin on a segment that keeps failing: go on with the next one.
                self.scanner = None;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_payload_errors_are_reported_not_panicked() {
        assert!(matches!(decode_sample(&[]), Err(SampleDecodeError::Empty)));
        assert!(matches!(
            decode_sample(&[9, 1, 2]),
            Err(SampleDecodeError::UnknownVersion(9))
        ));
        assert!(matches!(
            decode_sample(&[SAMPLE_FORMAT_VERSION, 0xFF]),
            Err(SampleDecodeError::Postcard(_))
        ));
    }

    #[test]
    fn config_defaults_validate_and_scale() {
        SpoolConfig::default().validate().unwrap();
        let small = SpoolConfig::with_max_total_bytes(8 * MIB);
        small.validate().unwrap();
        assert_eq!(small.max_segment_bytes, 512 * KIB);
        assert_eq!(
            SpoolConfig::with_max_total_bytes(4 * 1024 * MIB).max_segment_bytes,
            8 * MIB
        );
        assert!(
            SpoolConfig {
                max_segment_bytes: 1024,
                ..SpoolConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
