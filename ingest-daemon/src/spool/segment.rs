//! Segment files: naming, sequential scanning with resynchronisation after corruption,
//! footers, and the recovery of a segment at open (torn tail cut off, corrupt segment set
//! aside after salvaging its good records).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::SpoolError;
use super::record::{
    BadRecord, FOOTER_LEN, Footer, HEADER_LEN, Header, Kind, RecordClass, crc_matches,
    encode_record, parse_header,
};

const SEGMENT_SUFFIX: &str = ".seg";
const TEMP_SUFFIX: &str = ".seg.tmp";
/// Digits of a segment name: u64::MAX has 20, so names sort like their numbers.
const NAME_DIGITS: usize = 20;

pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:0NAME_DIGITS$}{SEGMENT_SUFFIX}")
}

pub(crate) fn temp_file_name(first_seq: u64) -> String {
    format!("{first_seq:0NAME_DIGITS$}{TEMP_SUFFIX}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Segment(u64),
    /// A salvage copy being written; complete only if its segment is gone.
    Temp(u64),
    Other,
}

pub(crate) fn classify(file_name: &str) -> EntryKind {
    let parse = |digits: &str| {
        (digits.len() == NAME_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    if let Some(seq) = file_name.strip_suffix(TEMP_SUFFIX).and_then(parse) {
        EntryKind::Temp(seq)
    } else if let Some(seq) = file_name.strip_suffix(SEGMENT_SUFFIX).and_then(parse) {
        EntryKind::Segment(seq)
    } else {
        EntryKind::Other
    }
}

/// What the spool knows about one segment without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    /// The segment's name: every record in it has `seq >= first_seq`, and every record in
    /// older segments has a smaller seq.
    pub first_seq: u64,
    pub path: PathBuf,
    /// Bytes of valid data (the file size, footer included).
    pub bytes: u64,
    pub records: u64,
    pub last_seq: Option<u64>,
    pub min_ts_ms: Option<i64>,
    pub max_ts_ms: Option<i64>,
    pub sealed: bool,
}

impl SegmentMeta {
    pub(crate) fn empty(first_seq: u64, path: PathBuf) -> Self {
        Self {
            first_seq,
            path,
            bytes: 0,
            records: 0,
            last_seq: None,
            min_ts_ms: None,
            max_ts_ms: None,
            sealed: false,
        }
    }

    pub(crate) fn from_footer(path: PathBuf, bytes: u64, footer: &Footer) -> Self {
        Self {
            first_seq: footer.first_seq,
            path,
            bytes,
            records: footer.records,
            last_seq: footer.last_seq,
            min_ts_ms: footer.min_ts_ms,
            max_ts_ms: footer.max_ts_ms,
            sealed: true,
        }
    }

    pub(crate) fn note_record(&mut self, seq: u64, ts_ms: i64, encoded_len: u64) {
        self.bytes += encoded_len;
        self.records += 1;
        self.last_seq = Some(seq);
        self.min_ts_ms = Some(self.min_ts_ms.map_or(ts_ms, |t| t.min(ts_ms)));
        self.max_ts_ms = Some(self.max_ts_ms.map_or(ts_ms, |t| t.max(ts_ms)));
    }

    pub(crate) fn footer(&self) -> Footer {
        Footer {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            records: self.records,
            min_ts_ms: self.min_ts_ms,
            max_ts_ms: self.max_ts_ms,
        }
    }

    /// Whether `seq` can follow the records already in this segment.
    fn accepts(&self, seq: u64) -> bool {
        seq >= self.first_seq && self.last_seq.is_none_or(|last| seq > last)
    }
}

/// One step of a sequential scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A record whose CRC matched; its payload is in [`Scanner::payload`].
    Record {
        offset: u64,
        header: Header,
    },
    Footer {
        offset: u64,
        footer: Footer,
    },
    /// The bytes at `offset` are not a valid record. The scanner does not move on by itself:
    /// call [`Scanner::resync`].
    Bad {
        offset: u64,
        why: BadRecord,
    },
    End,
}

/// Reads a segment record by record through a buffer; never holds more than one record.
#[derive(Debug)]
pub(crate) struct Scanner {
    reader: BufReader<File>,
    path: PathBuf,
    /// Where the next record starts.
    pos: u64,
    /// Where the reader's cursor is (it differs from `pos` after a bad record).
    reader_pos: u64,
    end: u64,
    header_bytes: [u8; HEADER_LEN],
    payload: Vec<u8>,
}

impl Scanner {
    /// Opens `path` for scanning up to `end` bytes (the file length when `None`).
    pub(crate) fn open(path: &Path, end: Option<u64>) -> Result<Self, SpoolError> {
        let file = File::open(path).map_err(SpoolError::io("open segment", path))?;
        let end = match end {
            Some(end) => end,
            None => file
                .metadata()
                .map_err(SpoolError::io("stat segment", path))?
                .len(),
        };
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1024, file),
            path: path.to_path_buf(),
            pos: 0,
            reader_pos: 0,
            end,
            header_bytes: [0; HEADER_LEN],
            payload: Vec::new(),
        })
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub(crate) fn set_pos(&mut self, pos: u64) {
        self.pos = pos.min(self.end);
    }

    fn align_reader(&mut self) -> Result<(), SpoolError> {
        if self.reader_pos != self.pos {
            self.reader
                .seek(SeekFrom::Start(self.pos))
                .map_err(SpoolError::io_at("seek segment", &self.path, self.pos))?;
            self.reader_pos = self.pos;
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` if the file ended first (it was cut
    /// shorter than `end` underneath us).
    fn read_exact_or_eof(&mut self, offset: u64, which: Buf) -> Result<bool, SpoolError> {
        let buf: &mut [u8] = match which {
            Buf::Header => &mut self.header_bytes,
            Buf::Payload => &mut self.payload,
        };
        match self.reader.read_exact(buf) {
            Ok(()) => {
                self.reader_pos += buf.len() as u64;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // The reader's position is unknown now.
                self.reader_pos = u64::MAX;
                Ok(false)
            }
            Err(e) => {
                self.reader_pos = u64::MAX;
                Err(SpoolError::io_at("read segment", &self.path, offset)(e))
            }
        }
    }

    pub(crate) fn next(&mut self) -> Result<Scan, SpoolError> {
        let offset = self.pos;
        if offset >= self.end {
            return Ok(Scan::End);
        }
        let bad = |why| Ok(Scan::Bad { offset, why });
        if self.end - offset < HEADER_LEN as u64 {
            return bad(BadRecord::TruncatedHeader);
        }
        self.align_reader()?;
        if !self.read_exact_or_eof(offset, Buf::Header)? {
            return bad(BadRecord::TruncatedHeader);
        }
        let header = match parse_header(&self.header_bytes) {
            Ok(header) => header,
            Err(why) => return bad(why),
        };
        let total = HEADER_LEN as u64 + u64::from(header.len);
        if self.end - offset < total {
            return bad(BadRecord::TruncatedPayload);
        }
        self.payload.resize(header.len as usize, 0);
        if !self.read_exact_or_eof(offset, Buf::Payload)? {
            return bad(BadRecord::TruncatedPayload);
        }
        if !crc_matches(&self.header_bytes, &self.payload, header.crc) {
            return bad(BadRecord::CrcMismatch);
        }
        self.pos = offset + total;
        match header.kind {
            Kind::Data(_) => Ok(Scan::Record { offset, header }),
            Kind::Footer => match Footer::decode(&self.payload) {
                Ok(footer) if header.seq == footer.last_seq.unwrap_or(0) => {
                    Ok(Scan::Footer { offset, footer })
                }
                _ => {
                    self.pos = offset;
                    bad(BadRecord::BadFooter)
                }
            },
        }
    }

    /// Searches from `from` for the next offset where a valid record starts (a data record
    /// with a sequence number above `after_seq`, or a footer) and positions the scanner
    /// there. `None` (scanner at the end) when there is none.
    pub(crate) fn resync(
        &mut self,
        from: u64,
        after_seq: Option<u64>,
    ) -> Result<Option<u64>, SpoolError> {
        const WINDOW: usize = 64 * 1024;
        let overlap = super::record::MAGIC.len() - 1;
        let mut window = vec![0u8; WINDOW + overlap];
        let mut window_start = from;
        while window_start < self.end {
            let n = usize::try_from(self.end - window_start)
                .unwrap_or(usize::MAX)
                .min(window.len());
            let buf = window.get_mut(..n).unwrap_or_default();
            self.pos = window_start;
            self.align_reader()?;
            match self.reader.read_exact(buf) {
                Ok(()) => self.reader_pos += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.pos = self.end;
                    self.reader_pos = u64::MAX;
                    return Ok(None);
                }
                Err(e) => {
                    self.reader_pos = u64::MAX;
                    return Err(SpoolError::io_at("read segment", &self.path, window_start)(
                        e,
                    ));
                }
            }
            let candidates: Vec<u64> = buf
                .windows(super::record::MAGIC.len())
                .enumerate()
                .take(WINDOW)
                .filter(|(_, w)| *w == super::record::MAGIC)
                .map(|(i, _)| window_start + i as u64)
                .collect();
            for candidate in candidates {
                self.pos = candidate;
                let found = match self.next()? {
                    Scan::Record { header, .. } => after_seq.is_none_or(|a| header.seq > a),
                    Scan::Footer { .. } => true,
                    Scan::Bad { .. } | Scan::End => false,
                };
                if found {
                    self.pos = candidate;
                    return Ok(Some(candidate));
                }
            }
            window_start += WINDOW as u64;
        }
        self.pos = self.end;
        Ok(None)
    }
}

#[derive(Debug, Clone, Copy)]
enum Buf {
    Header,
    Payload,
}

/// Reads the footer of a sealed segment: one small read at the end of the file. `None` if
/// the segment has no valid footer matching its name.
pub(crate) fn read_footer(
    path: &Path,
    first_seq: u64,
) -> Result<Option<(Footer, u64)>, SpoolError> {
    let mut file = File::open(path).map_err(SpoolError::io("open segment", path))?;
    let len = file
        .metadata()
        .map_err(SpoolError::io("stat segment", path))?
        .len();
    let Some(offset) = len.checked_sub(FOOTER_LEN) else {
        return Ok(None);
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(SpoolError::io_at("seek segment", path, offset))?;
    let mut buf = [0u8; FOOTER_LEN as usize];
    file.read_exact(&mut buf)
        .map_err(SpoolError::io_at("read segment footer", path, offset))?;
    let Some((header_bytes, payload)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let footer = parse_header(header_bytes)
        .ok()
        .filter(|h| h.kind == Kind::Footer && crc_matches(header_bytes, payload, h.crc))
        .and_then(|h| {
            Footer::decode(payload)
                .ok()
                .filter(|f| f.first_seq == first_seq && h.seq == f.last_seq.unwrap_or(0))
        });
    Ok(footer.map(|f| (f, len)))
}

/// Appends the footer describing `meta` to the segment file (the caller fsyncs it).
pub(crate) fn write_footer(file: &mut File, meta: &mut SegmentMeta) -> Result<(), SpoolError> {
    let mut buf = Vec::with_capacity(FOOTER_LEN as usize);
    meta.footer().encode(&mut buf);
    file.write_all(&buf).map_err(SpoolError::io_at(
        "write segment footer",
        &meta.path,
        meta.bytes,
    ))?;
    meta.bytes += FOOTER_LEN;
    meta.sealed = true;
    Ok(())
}

pub(crate) fn open_for_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(SpoolError::io("open segment for append", path))
}

pub(crate) fn create_segment(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(SpoolError::io("create segment", path))
}

pub(crate) fn sync_dir(path: &Path) -> Result<(), SpoolError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io("fsync directory", path))
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the new content, never
/// a mix: write `dir/temp`, fsync, rename over `name`, fsync the directory.
pub(crate) fn replace_file(
    dir: &Path,
    name: &str,
    temp: &str,
    bytes: &[u8],
) -> Result<(), SpoolError> {
    let temp = dir.join(temp);
    let path = dir.join(name);
    let mut file = File::create(&temp).map_err(SpoolError::io("create temp file", &temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(SpoolError::io("write temp file", &temp))?;
    drop(file);
    fs::rename(&temp, &path).map_err(SpoolError::io("install file", &path))?;
    sync_dir(dir)
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_len(len)?;
            f.sync_all()
        })
        .map_err(SpoolError::io_at("truncate segment", path, len))
}

/// What [`recover_segment`] found and did.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub meta: SegmentMeta,
    /// Bytes cut off the end (a torn last record, or garbage after the footer).
    pub torn_bytes: u64,
    /// Where the corrupt original was moved, when the segment had to be rewritten.
    pub quarantined: Option<PathBuf>,
    /// Bytes skipped as corrupt between good records (only when quarantined).
    pub corrupt_bytes: u64,
    /// Corrupt regions skipped (only when quarantined).
    pub corrupt_regions: u64,
}

/// Scans a whole segment and repairs it:
/// - a bad record with nothing valid after it is a torn tail (a write cut short by a crash
///   or power loss): the file is truncated to the last good record;
/// - a bad record followed by valid ones is corruption: the good records (before and after)
///   are copied to a fresh file that takes the segment's place, and the original is moved to
///   `quarantine_dir` for inspection.
pub(crate) fn recover_segment(
    path: &Path,
    first_seq: u64,
    class: RecordClass,
    quarantine_dir: &Path,
) -> Result<Recovered, SpoolError> {
    let mut scanner = Scanner::open(path, None)?;
    let mut meta = SegmentMeta::empty(first_seq, path.to_path_buf());
    let mut bad_at = None;
    let mut torn_bytes = 0;
    loop {
        match scanner.next()? {
            Scan::Record { offset, header } => {
                if !meta.accepts(header.seq) {
                    bad_at = Some(offset);
                    break;
                }
                meta.note_record(header.seq, header.ts_ms, scanner.pos() - offset);
            }
            Scan::Footer { offset, footer } => {
                if footer != meta.footer() {
                    bad_at = Some(offset);
                    break;
                }
                meta.bytes = scanner.pos();
                meta.sealed = true;
                if scanner.pos() < scanner.end() {
                    torn_bytes = scanner.end() - scanner.pos();
                    truncate(path, scanner.pos())?;
                }
                break;
            }
            Scan::Bad { offset, .. } => {
                bad_at = Some(offset);
                break;
            }
            Scan::End => break,
        }
    }
    let mut recovered = Recovered {
        meta,
        torn_bytes,
        quarantined: None,
        corrupt_bytes: 0,
        corrupt_regions: 0,
    };
    let Some(bad_at) = bad_at else {
        return Ok(recovered);
    };
    let end = scanner.end();
    if scanner
        .resync(bad_at + 1, recovered.meta.last_seq)?
        .is_none()
    {
        recovered.torn_bytes = end - bad_at;
        recovered.meta.bytes = bad_at;
        truncate(path, bad_at)?;
        return Ok(recovered);
    }
    drop(scanner);
    salvage(path, first_seq, class, quarantine_dir)
}

fn salvage(
    path: &Path,
    first_seq: u64,
    class: RecordClass,
    quarantine_dir: &Path,
) -> Result<Recovered, SpoolError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(temp_file_name(first_seq));
    let mut out =
        BufWriter::new(File::create(&temp).map_err(SpoolError::io("create salvage file", &temp))?);
    let mut scanner = Scanner::open(path, None)?;
    let mut meta = SegmentMeta::empty(first_seq, path.to_path_buf());
    let mut corrupt_bytes = 0;
    let mut corrupt_regions = 0;
    let mut buf = Vec::new();
    loop {
        let bad_offset = match scanner.next()? {
            Scan::Record { header, .. } if meta.accepts(header.seq) => {
                let Kind::Data(record_class) = header.kind else {
                    continue;
                };
                buf.clear();
                encode_record(
                    &mut buf,
                    Kind::Data(record_class),
                    header.seq,
                    header.ts_ms,
                    scanner.payload(),
                );
                out.write_all(&buf).map_err(SpoolError::io_at(
                    "write salvage file",
                    &temp,
                    meta.bytes,
                ))?;
                meta.note_record(header.seq, header.ts_ms, buf.len() as u64);
                continue;
            }
            // The caller rewrites footers; a salvaged segment is unsealed.
            Scan::Footer { .. } | Scan::End => break,
            Scan::Record { offset, .. } | Scan::Bad { offset, .. } => offset,
        };
        corrupt_regions += 1;
        match scanner.resync(bad_offset + 1, meta.last_seq)? {
            Some(next) => corrupt_bytes += next - bad_offset,
            None => {
                corrupt_bytes += scanner.end() - bad_offset;
                break;
            }
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| SpoolError::io("write salvage file", &temp)(e.into_error()))?;
    file.sync_all()
        .map_err(SpoolError::io("fsync salvage file", &temp))?;
    drop(file);

    fs::create_dir_all(quarantine_dir).map_err(SpoolError::io(
        "create quarantine directory",
        quarantine_dir,
    ))?;
    let quarantined = unique_path(
        quarantine_dir,
        &format!(
            "{}-{}.corrupt",
            class.dir_name(),
            segment_file_name(first_seq)
        ),
    );
    fs::rename(path, &quarantined).map_err(SpoolError::io("quarantine segment", path))?;
    fs::rename(&temp, path).map_err(SpoolError::io("install salvaged segment", &temp))?;
    sync_dir(quarantine_dir)?;
    sync_dir(dir)?;
    Ok(Recovered {
        meta,
        torn_bytes: 0,
        quarantined: Some(quarantined),
        corrupt_bytes,
        corrupt_regions,
    })
}

fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_numbers_and_parse_back() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(
            classify(&segment_file_name(u64::MAX)),
            EntryKind::Segment(u64::MAX)
        );
        assert_eq!(classify(&temp_file_name(12)), EntryKind::Temp(12));
        assert_eq!(classify("0000000000000000007.seg"), EntryKind::Other);
        assert_eq!(classify("0000000000000000000x.seg"), EntryKind::Other);
        assert_eq!(classify("cursor"), EntryKind::Other);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    fn write_records(path: &Path, seqs: &[u64]) -> Vec<u64> {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for &seq in seqs {
            offsets.push(buf.len() as u64);
            encode_record(
                &mut buf,
                Kind::Data(RecordClass::Raw),
                seq,
                seq as i64,
                &[seq as u8; 100],
            );
        }
        fs::write(path, &buf).unwrap();
        offsets
    }

    #[test]
    fn resync_skips_a_corrupt_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_file_name(1));
        let offsets = write_records(&path, &[1, 2, 3, 4]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[1] as usize + 40] ^= 0x55;
        fs::write(&path, &bytes).unwrap();

        let mut scanner = Scanner::open(&path, None).unwrap();
        assert!(matches!(scanner.next().unwrap(), Scan::Record { .. }));
        let Scan::Bad { offset, why } = scanner.next().unwrap() else {
            panic!("expected a bad record")
        };
        assert_eq!((offset, why), (offsets[1], BadRecord::CrcMismatch));
        assert_eq!(
            scanner.resync(offset + 1, Some(1)).unwrap(),
            Some(offsets[2])
        );
        let Scan::Record { header, .. } = scanner.next().unwrap() else {
            panic!("expected record 3")
        };
        assert_eq!(header.seq, 3);
    }

    #[test]
    fn footer_is_found_at_the_end_only_when_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_file_name(5));
        write_records(&path, &[5, 6]);
        assert_eq!(read_footer(&path, 5).unwrap(), None);
        let recovered = recover_segment(&path, 5, RecordClass::Raw, dir.path()).unwrap();
        let mut meta = recovered.meta;
        let mut file = open_for_append(&path).unwrap();
        write_footer(&mut file, &mut meta).unwrap();
        let (footer, len) = read_footer(&path, 5).unwrap().unwrap();
        assert_eq!(len, meta.bytes);
        assert_eq!(footer.records, 2);
        assert_eq!(footer.last_seq, Some(6));
        // Named differently: the footer does not describe this segment.
        assert_eq!(read_footer(&path, 4).unwrap(), None);
    }
}
