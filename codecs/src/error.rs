//! Errors of the codecs: every decode error says where in the input it was found.

use std::borrow::Cow;

/// A frame could not be decoded. `offset` counts bytes from the start of the slice handed to
/// `decode` (a [`crate::StreamDecoder`] rebases it onto the whole stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        Self { offset, kind }
    }

    /// Shorthand for a malformed field.
    pub fn field(offset: usize, field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            offset,
            DecodeErrorKind::Field {
                field,
                reason: reason.into(),
            },
        )
    }
}

/// What went wrong. [`DecodeErrorKind::label`] gives a short, bounded name for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The byte at `offset` cannot begin a frame of this protocol.
    #[error("no frame starts here")]
    BadStart,
    /// The checksum carried by the frame differs from the one computed over it.
    #[error("checksum mismatch: frame carries {carried:#x}, computed {computed:#x}")]
    Checksum { carried: u32, computed: u32 },
    /// A length field is impossible for this protocol.
    #[error("impossible length {0}")]
    Length(usize),
    /// The frame did not end with the protocol's end marker.
    #[error("missing end marker")]
    BadEnd,
    /// The buffer grew past the longest frame the protocol allows without a frame in it.
    #[error("no complete frame within {0} bytes")]
    TooLong(usize),
    /// A field holds a value the protocol does not allow.
    #[error("bad {field}: {reason}")]
    Field {
        field: &'static str,
        reason: Cow<'static, str>,
    },
    /// A well-formed frame of a kind this codec does not interpret.
    #[error("unsupported {0}")]
    Unsupported(Cow<'static, str>),
}

impl DecodeErrorKind {
    /// Every [`label`](Self::label), in declaration order: the whole, bounded set of values
    /// a metrics label can take.
    pub const LABELS: [&'static str; 7] = [
        "bad_start",
        "checksum",
        "length",
        "bad_end",
        "too_long",
        "field",
        "unsupported",
    ];

    /// A short, fixed name per kind: safe as a metrics label (never carries input text).
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadStart => "bad_start",
            Self::Checksum { .. } => "checksum",
            Self::Length(_) => "length",
            Self::BadEnd => "bad_end",
            Self::TooLong(_) => "too_long",
            Self::Field { .. } => "field",
            Self::Unsupported(_) => "unsupported",
        }
    }
}

/// A frame cannot be put on the wire as given (a field out of the protocol's range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {field}: {reason}")]
pub struct EncodeError {
    pub field: &'static str,
    pub reason: Cow<'static, str>,
}

impl EncodeError {
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_list_every_kind_once() {
        let kinds = [
            DecodeErrorKind::BadStart,
            DecodeErrorKind::Checksum {
                carried: 0,
                computed: 1,
            },
            DecodeErrorKind::Length(0),
            DecodeErrorKind::BadEnd,
            DecodeErrorKind::TooLong(0),
            DecodeErrorKind::Field {
                field: "f",
                reason: "r".into(),
            },
            DecodeErrorKind::Unsupported("u".into()),
        ];
        let labels: Vec<_> = kinds.iter().map(DecodeErrorKind::label).collect();
        assert_eq!(labels, DecodeErrorKind::LABELS);
    }
}
