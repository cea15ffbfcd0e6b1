//! The consumer cursor: the highest sample sequence number acknowledged upstream.
//!
//! File `cursor` in the spool root, 20 bytes:
//!
//! ```text
//!      0    4 magic    b"RSPC"
//!      4    1 version  1
//!      5    3 reserved 0
//!      8    8 acked    u64 LE
//!     16    4 crc      CRC-32 of bytes 0..16, u32 LE
//! ```
//!
//! Written as `cursor.tmp`, fsynced, renamed over `cursor`, then the directory is fsynced:
//! a crash leaves either the old or the new cursor, never a mix.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::error::SpoolError;
use super::segment::replace_file;

pub(crate) const CURSOR_FILE: &str = "cursor";
pub(crate) const CURSOR_TEMP: &str = "cursor.tmp";
const MAGIC: [u8; 4] = *b"RSPC";
const VERSION: u8 = 1;
const LEN: usize = 20;

fn encode(acked: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    let mut body = Vec::with_capacity(LEN);
    body.extend_from_slice(&MAGIC);
    body.extend_from_slice(&[VERSION, 0, 0, 0]);
    body.extend_from_slice(&acked.to_le_bytes());
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    out.copy_from_slice(&body);
    out
}

fn decode(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; LEN] = bytes.try_into().ok()?;
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let (magic, rest) = body.split_first_chunk::<4>()?;
    let (version, rest) = rest.split_first_chunk::<4>()?;
    if *magic != MAGIC || version.first() != Some(&VERSION) {
        return None;
    }
    rest.first_chunk::<8>().map(|b| u64::from_le_bytes(*b))
}

/// What [`load`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loaded {
    Missing,
    Valid(u64),
    /// Present but unreadable: the spool starts from 0 and re-sends (replays are harmless
    /// upstream).
    Corrupt,
}

pub(crate) fn load(root: &Path) -> Result<Loaded, SpoolError> {
    let temp = root.join(CURSOR_TEMP);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(SpoolError::io("remove stale cursor temp file", &temp)(e)),
    }
    let path = root.join(CURSOR_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(decode(&bytes).map_or(Loaded::Corrupt, Loaded::Valid)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(e) => Err(SpoolError::io("read cursor", &path)(e)),
    }
}

pub(crate) fn store(root: &Path, acked: u64) -> Result<(), SpoolError> {
    replace_file(root, CURSOR_FILE, CURSOR_TEMP, &encode(acked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Missing);
        store(dir.path(), 1234).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Valid(1234));
        store(dir.path(), u64::MAX).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Valid(u64::MAX));

        let bytes = fs::read(dir.path().join(CURSOR_FILE)).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        assert_eq!(decode(&bytes[..10]), None);
        fs::write(dir.path().join(CURSOR_FILE), b"junk").unwrap();
        fs::write(dir.path().join(CURSOR_TEMP), b"half").unwrap();
        assert_eq!(load(dir.path()).unwrap(), Loaded::Corrupt);
        assert!(!dir.path().join(CURSOR_TEMP).exists());
    }
}
