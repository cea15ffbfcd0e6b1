//! Spool errors. Corrupt data found on disk is not an error: it is set aside, skipped and
//! counted (see [`super::RecoveryReport`] and [`super::SpoolStat`]). Errors are the things
//! a caller must react to: I/O failures, bad configuration, oversized records.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O operation failed. `offset` is the byte offset in the file when it matters.
    #[error("spool: {op} {path}{}: {source}", offset_suffix(*.offset))]
    Io {
        op: &'static str,
        path: PathBuf,
        offset: Option<u64>,
        #[source]
        source: io::Error,
    },

    #[error("spool: invalid configuration: {0}")]
    Config(String),

    #[error("spool: {class} record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        class: super::RecordClass,
        len: usize,
        max: u64,
    },

    /// The sequence counter reached u64::MAX (only a forged cursor or segment name gets
    /// there).
    #[error("spool: sequence numbers exhausted")]
    SequenceExhausted,

    #[error("spool: encoding sample failed: {0}")]
    Encode(#[source] postcard::Error),

    #[error("spool: writing export failed: {0}")]
    Export(#[source] io::Error),

    /// An fsync or a rollback after a failed write failed: what the spool holds on disk is no
    /// longer known. Reopen the spool (recovery rescans the tail).
    #[error("spool: an earlier fsync or write rollback failed; reopen the spool")]
    Poisoned,
}

fn offset_suffix(offset: Option<u64>) -> String {
    offset
        .map(|o| format!(" at offset {o}"))
        .unwrap_or_default()
}

impl SpoolError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| SpoolError::Io {
            op,
            path,
            offset: None,
            source,
        }
    }

    pub(crate) fn io_at(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| SpoolError::Io {
            op,
            path,
            offset: Some(offset),
            source,
        }
    }
}

/// Why a stored sample payload could not be turned back into a `TrafficSample`.
#[derive(Debug, thiserror::Error)]
pub enum SampleDecodeError {
    #[error("empty sample payload")]
    Empty,
    #[error("unknown sample format version {0}")]
    UnknownVersion(u8),
    #[error("sample payload: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("{0} trailing bytes after the sample")]
    Trailing(usize),
}
