//! The on-disk record: a fixed 32-byte header followed by the payload.
//!
//! ```text
//! offset size field
//!      0    4 magic      b"RSPL"
//!      4    1 kind       1 = sample, 2 = raw, 0xFF = segment footer
//!      5    1 version    record format version, 1
//!      6    2 reserved   0
//!      8    4 len        payload length, u32 LE
//!     12    8 seq        sequence number, u64 LE, monotonic across both classes and restarts
//!     20    8 ts_ms      append time, i64 LE, ms since the Unix epoch (given by the caller)
//!     28    4 crc        CRC-32 (IEEE, crc32fast) over bytes 0..28 and the payload, u32 LE
//!     32  len payload
//! ```
//!
//! A sealed segment ends with one footer record (kind 0xFF, seq = last record's seq,
//! ts = newest append time) whose 40-byte payload summarises the segment so that opening a
//! spool reads a footer instead of the whole segment:
//!
//! ```text
//!      0    8 first_seq  the segment's name (lower bound of its sequence numbers)
//!      8    8 last_seq   seq of the last record, 0 when the segment holds none
//!     16    8 records    number of records
//!     24    8 min_ts_ms  oldest append time (i64::MAX when empty)
//!     32    8 max_ts_ms  newest append time (i64::MIN when empty)
//! ```

use std::fmt;

pub(crate) const MAGIC: [u8; 4] = *b"RSPL";
pub(crate) const RECORD_VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes of the header the CRC covers (everything before the CRC field).
const CRC_COVERED: usize = 28;
pub(crate) const FOOTER_PAYLOAD_LEN: usize = 40;
pub(crate) const FOOTER_LEN: u64 = (HEADER_LEN + FOOTER_PAYLOAD_LEN) as u64;
/// Hard upper bound of a payload accepted when reading, whatever the configuration says:
/// a bigger length field is corruption (and must not make a reader allocate gigabytes).
pub(crate) const MAX_PAYLOAD_LEN: u32 = 64 * 1024 * 1024;

const KIND_SAMPLE: u8 = 1;
const KIND_RAW: u8 = 2;
const KIND_FOOTER: u8 = 0xFF;

/// The two record classes, kept in separate segment sequences so that eviction can drop
/// expendable raw data first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordClass {
    /// Aggregated traffic samples: precious, kept until acknowledged upstream.
    Sample,
    /// Raw frames and events: expendable, evicted first when the spool is full.
    Raw,
}

impl RecordClass {
    pub const ALL: [RecordClass; 2] = [RecordClass::Sample, RecordClass::Raw];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sample => "sample",
            Self::Raw => "raw",
        }
    }

    /// The directory (under the spool root) holding this class's segments.
    pub(crate) fn dir_name(self) -> &'static str {
        match self {
            Self::Sample => "samples",
            Self::Raw => "raw",
        }
    }

    fn kind_byte(self) -> u8 {
        match self {
            Self::Sample => KIND_SAMPLE,
            Self::Raw => KIND_RAW,
        }
    }
}

impl fmt::Display for RecordClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Data(RecordClass),
    Footer,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Data(class) => class.kind_byte(),
            Kind::Footer => KIND_FOOTER,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub len: u32,
    pub seq: u64,
    pub ts_ms: i64,
    pub crc: u32,
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadRecord {
    TruncatedHeader,
    BadMagic,
    BadVersion(u8),
    BadKind(u8),
    TooLong(u32),
    TruncatedPayload,
    CrcMismatch,
    /// A footer that does not describe its segment.
    BadFooter,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader => f.write_str("truncated header"),
            Self::BadMagic => f.write_str("bad magic"),
            Self::BadVersion(v) => write!(f, "unknown record version {v}"),
            Self::BadKind(k) => write!(f, "unknown record kind {k:#04x}"),
            Self::TooLong(n) => write!(f, "implausible payload length {n}"),
            Self::TruncatedPayload => f.write_str("truncated payload"),
            Self::CrcMismatch => f.write_str("CRC mismatch"),
            Self::BadFooter => f.write_str("inconsistent segment footer"),
        }
    }
}

/// Little-endian reader over a byte slice that never panics.
struct Le<'a>(&'a [u8]);

impl Le<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.0.split_first_chunk::<N>()?;
        self.0 = tail;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
}

/// Appends one encoded record (header + payload) to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, kind: Kind, seq: u64, ts_ms: i64, payload: &[u8]) {
    let start = out.len();
    // Callers bound payloads far below u32::MAX; saturate rather than wrap just in case,
    // which a reader then rejects as corrupt instead of misreading.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&MAGIC);
    out.push(kind.byte());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts_ms.to_le_bytes());
    let crc = {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(out.get(start..).unwrap_or_default());
        hasher.update(payload);
        hasher.finalize()
    };
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parses and sanity-checks a header; the CRC is checked by [`crc_matches`] once the payload
/// has been read.
pub(crate) fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, BadRecord> {
    let mut r = Le(bytes);
    let magic: [u8; 4] = r.take().ok_or(BadRecord::TruncatedHeader)?;
    if magic != MAGIC {
        return Err(BadRecord::BadMagic);
    }
    let kind_byte = r.u8().ok_or(BadRecord::TruncatedHeader)?;
    let version = r.u8().ok_or(BadRecord::TruncatedHeader)?;
    let _reserved = r.u16().ok_or(BadRecord::TruncatedHeader)?;
    let len = r.u32().ok_or(BadRecord::TruncatedHeader)?;
    let seq = r.u64().ok_or(BadRecord::TruncatedHeader)?;
    let ts_ms = r.i64().ok_or(BadRecord::TruncatedHeader)?;
    let crc = r.u32().ok_or(BadRecord::TruncatedHeader)?;
    if version != RECORD_VERSION {
        return Err(BadRecord::BadVersion(version));
    }
    let kind = match kind_byte {
        KIND_SAMPLE => Kind::Data(RecordClass::Sample),
        KIND_RAW => Kind::Data(RecordClass::Raw),
        KIND_FOOTER => Kind::Footer,
        other => return Err(BadRecord::BadKind(other)),
    };
    if len > MAX_PAYLOAD_LEN || (kind == Kind::Footer && len as usize != FOOTER_PAYLOAD_LEN) {
        return Err(BadRecord::TooLong(len));
    }
    Ok(Header {
        kind,
        len,
        seq,
        ts_ms,
        crc,
    })
}

pub(crate) fn crc_matches(header_bytes: &[u8; HEADER_LEN], payload: &[u8], expected: u32) -> bool {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_bytes.get(..CRC_COVERED).unwrap_or_default());
    hasher.update(payload);
    hasher.finalize() == expected
}

/// The summary a sealed segment ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub first_seq: u64,
    pub last_seq: Option<u64>,
    pub records: u64,
    pub min_ts_ms: Option<i64>,
    pub max_ts_ms: Option<i64>,
}

impl Footer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut payload = [0u8; FOOTER_PAYLOAD_LEN];
        let fields = [
            self.first_seq.to_le_bytes(),
            self.last_seq.unwrap_or(0).to_le_bytes(),
            self.records.to_le_bytes(),
            self.min_ts_ms.unwrap_or(i64::MAX).to_le_bytes(),
            self.max_ts_ms.unwrap_or(i64::MIN).to_le_bytes(),
        ];
        for (chunk, field) in payload.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field);
        }
        encode_record(
            out,
            Kind::Footer,
            self.last_seq.unwrap_or(0),
            self.max_ts_ms.unwrap_or(0),
            &payload,
        );
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Footer, BadRecord> {
        let mut r = Le(payload);
        let mut next = || r.u64().ok_or(BadRecord::BadFooter);
        let first_seq = next()?;
        let last_seq = next()?;
        let records = next()?;
        let min_ts = next()? as i64;
        let max_ts = next()? as i64;
        let footer = if records == 0 {
            Footer {
                first_seq,
                last_seq: None,
                records,
                min_ts_ms: None,
                max_ts_ms: None,
            }
        } else {
            if last_seq < first_seq || min_ts > max_ts {
                return Err(BadRecord::BadFooter);
            }
            Footer {
                first_seq,
                last_seq: Some(last_seq),
                records,
                min_ts_ms: Some(min_ts),
                max_ts_ms: Some(max_ts),
            }
        };
        Ok(footer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(buf: &[u8]) -> [u8; HEADER_LEN] {
        buf[..HEADER_LEN].try_into().unwrap()
    }

    #[test]
    fn record_round_trip() {
        let mut buf = Vec::new();
        encode_record(&mut buf, Kind::Data(RecordClass::Raw), 42, -7, b"hello");
        assert_eq!(buf.len(), HEADER_LEN + 5);
        let hb = header_of(&buf);
        let h = parse_header(&hb).unwrap();
        assert_eq!(h.kind, Kind::Data(RecordClass::Raw));
        assert_eq!((h.len, h.seq, h.ts_ms), (5, 42, -7));
        assert!(crc_matches(&hb, &buf[HEADER_LEN..], h.crc));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_record(
            &mut buf,
            Kind::Data(RecordClass::Sample),
            9,
            1000,
            b"payload!",
        );
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                let hb = header_of(&bad);
                let ok = parse_header(&hb).is_ok_and(|h| {
                    h.len as usize == bad.len() - HEADER_LEN
                        && crc_matches(&hb, &bad[HEADER_LEN..], h.crc)
                });
                assert!(!ok, "flip at byte {byte} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn footer_round_trip() {
        let footer = Footer {
            first_seq: 10,
            last_seq: Some(99),
            records: 50,
            min_ts_ms: Some(1),
            max_ts_ms: Some(2),
        };
        let mut buf = Vec::new();
        footer.encode(&mut buf);
        assert_eq!(buf.len() as u64, FOOTER_LEN);
        let hb = header_of(&buf);
        let h = parse_header(&hb).unwrap();
        assert_eq!(h.kind, Kind::Footer);
        assert!(crc_matches(&hb, &buf[HEADER_LEN..], h.crc));
        assert_eq!(Footer::decode(&buf[HEADER_LEN..]).unwrap(), footer);

        let empty = Footer {
            first_seq: 3,
            last_seq: None,
            records: 0,
            min_ts_ms: None,
            max_ts_ms: None,
        };
        let mut buf = Vec::new();
        empty.encode(&mut buf);
        assert_eq!(Footer::decode(&buf[HEADER_LEN..]).unwrap(), empty);
    }

    #[test]
    fn garbage_headers_are_rejected_without_panic() {
        assert_eq!(
            parse_header(&[0u8; HEADER_LEN]).unwrap_err(),
            BadRecord::BadMagic
        );
        let mut hb = [0xFFu8; HEADER_LEN];
        hb[..4].copy_from_slice(&MAGIC);
        hb[4] = 0x33;
        hb[5] = RECORD_VERSION;
        assert_eq!(parse_header(&hb).unwrap_err(), BadRecord::BadKind(0x33));
        hb[4] = KIND_FOOTER;
        assert_eq!(parse_header(&hb).unwrap_err(), BadRecord::TooLong(u32::MAX));
    }
}
