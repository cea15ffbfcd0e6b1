//! The eviction totals, kept on disk so that `spool stat` (and `/metrics` after a restart)
//! still tell how much a full spool has cost, long after the warning scrolled out of the
//! journal. Written atomically (temp file, fsync, rename) at each eviction, which happens
//! once per segment at most; an unreadable file is reported and counts start again from 0.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::EvictionCounters;
use super::error::SpoolError;
use super::segment::replace_file;

pub(crate) const EVICTIONS_FILE: &str = "evictions.json";
const EVICTIONS_TEMP: &str = "evictions.json.tmp";

/// Both classes' totals, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Totals {
    pub sample: EvictionCounters,
    pub raw: EvictionCounters,
}

/// The stored totals; zeros when there are none or they cannot be read.
pub(crate) fn load(root: &Path) -> Totals {
    let _ = fs::remove_file(root.join(EVICTIONS_TEMP));
    let path = root.join(EVICTIONS_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(path = %path.display(), error = %e, "eviction totals unreadable: counting from 0");
            Totals::default()
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Totals::default(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "eviction totals unreadable: counting from 0");
            Totals::default()
        }
    }
}

pub(crate) fn store(root: &Path, totals: &Totals) -> Result<(), SpoolError> {
    let bytes = serde_json::to_vec(totals).unwrap_or_default();
    replace_file(root, EVICTIONS_FILE, EVICTIONS_TEMP, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_survive_a_round_trip_and_garbage_reads_as_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), Totals::default());
        let mut totals = Totals::default();
        totals.raw.evicted_segments = 3;
        totals.sample.evicted_unacked_records = 7;
        store(dir.path(), &totals).expect("store");
        assert_eq!(load(dir.path()), totals);
        fs::write(dir.path().join(EVICTIONS_FILE), b"{not json").expect("write");
        assert_eq!(load(dir.path()), Totals::default());
    }
}
