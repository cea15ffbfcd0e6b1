//! Framing: one codec trait for every byte-stream protocol, and a stream decoder that buffers
//! partial frames, resynchronises after garbage and counts what it skipped.

use bytes::{Buf, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};

/// A byte-stream wire format. Implementations are pure: no I/O, no clocks.
pub trait FrameCodec {
    type Frame;

    /// Short fixed name, used in logs and as a metrics label.
    const NAME: &'static str;

    /// The longest frame this protocol allows, in bytes. A buffer this long that still holds
    /// no complete frame is garbage.
    const MAX_FRAME_LEN: usize;

    /// Decodes the frame at the very start of `buf`.
    ///
    /// `Ok(None)`: `buf` is a valid beginning of a frame, more bytes are needed (never an
    /// error). `Ok(Some((frame, n)))`: a frame occupying `buf[..n]`, `n >= 1`. `Err(e)`: no
    /// frame starts at `buf[0]`; `e.offset` points at the offending byte.
    fn decode(&self, buf: &[u8]) -> Result<Option<(Self::Frame, usize)>, DecodeError>;

    /// Appends the wire form of `frame` to `out`.
    fn encode(&self, frame: &Self::Frame, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Whether a frame could begin at `tail[0]` judging by the first bytes only (`tail` is
    /// never empty). Used to resynchronise: after an error the stream decoder drops bytes up
    /// to the next position where this holds.
    fn could_start(&self, tail: &[u8]) -> bool;

    /// For line-based formats, the byte that ends every frame. After an error the stream
    /// decoder then drops everything through the next delimiter, even when it has not arrived
    /// yet, instead of guessing a frame start inside the bad line.
    const LINE_DELIMITER: Option<u8> = None;
}

/// What the stream decoder hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<F> {
    Frame(F),
    /// Bytes dropped while resynchronising, with the first error that caused it.
    /// `offset` counts from the start of the stream.
    Skipped {
        offset: u64,
        bytes: usize,
        error: DecodeError,
    },
}

/// Counters of one stream, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub bytes_in: u64,
    pub frames: u64,
    /// Resynchronisations (each one a [`Decoded::Skipped`]).
    pub errors: u64,
    pub skipped_bytes: u64,
}

/// Incremental decoder over a byte stream (a serial line, a TCP socket, a file).
#[derive(Debug)]
pub struct StreamDecoder<C> {
    codec: C,
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    base: u64,
    stats: StreamStats,
    /// Set while the rest of a bad line is being dropped (line formats only): the error that
    /// started it.
    discarding_line: Option<DecodeError>,
}

impl<C: FrameCodec> StreamDecoder<C> {
    pub fn new(codec: C) -> Self {
        Self {
            codec,
            buf: BytesMut::with_capacity(C::MAX_FRAME_LEN.min(64 * 1024)),
            base: 0,
            stats: StreamStats::default(),
            discarding_line: None,
        }
    }

    pub fn codec(&self) -> &C {
        &self.codec
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Bytes buffered but not yet part of a decoded frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes read from the wire.
    pub fn push(&mut self, data: &[u8]) {
        self.stats.bytes_in += data.len() as u64;
        self.buf.extend_from_slice(data);
    }

    /// The next frame or skipped run, or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // not an Iterator: `None` means "not yet", not "never"
    pub fn next(&mut self) -> Option<Decoded<C::Frame>> {
        let mut skipped = 0usize;
        let mut first_error: Option<DecodeError> = None;
        let skip_base = self.base;
        let continued = self.discarding_line.is_some();
        if continued && self.buf.is_empty() {
            return None;
        }
        if let Some(error) = self.discarding_line.take() {
            skipped += self.drop_rest_of_line(error.clone());
            first_error = Some(error);
        }
        loop {
            if self.buf.is_empty() || self.discarding_line.is_some() {
                break;
            }
            let error = match self.codec.decode(&self.buf) {
                Ok(Some((frame, n))) => {
                    if skipped > 0 {
                        // Report the garbage first; the frame is decoded again on the next call.
                        break;
                    }
                    let n = n.clamp(1, self.buf.len());
                    self.consume(n);
                    self.stats.frames += 1;
                    return Some(Decoded::Frame(frame));
                }
                Ok(None) if self.buf.len() < C::MAX_FRAME_LEN => break,
                Ok(None) => DecodeError::new(0, DecodeErrorKind::TooLong(C::MAX_FRAME_LEN)),
                Err(e) => e,
            };
            if first_error.is_none() {
                first_error = Some(error.clone());
            }
            if C::LINE_DELIMITER.is_some() {
                skipped += self.drop_rest_of_line(error);
            } else {
                let n = self.resync_len();
                skipped += n;
                self.consume(n);
            }
        }
        first_error.map(|mut error| {
            if !continued {
                self.stats.errors += 1;
            }
            self.stats.skipped_bytes += skipped as u64;
            let offset = skip_base + error.offset as u64;
            error.offset = 0;
            Decoded::Skipped {
                offset,
                bytes: skipped,
                error,
            }
        })
    }

    /// Drops a partial frame left in the buffer (the line went idle mid-frame, or the input
    /// ended) and reports it, so that the next bytes start clean.
    pub fn flush_partial(&mut self) -> Option<Decoded<C::Frame>> {
        self.discarding_line = None;
        if self.buf.is_empty() {
            return None;
        }
        let bytes = self.buf.len();
        let offset = self.base;
        self.consume(bytes);
        self.stats.errors += 1;
        self.stats.skipped_bytes += bytes as u64;
        Some(Decoded::Skipped {
            offset,
            bytes,
            error: DecodeError::new(0, DecodeErrorKind::Length(bytes)),
        })
    }

    /// Drops through the next line delimiter; when it has not arrived, drops everything and
    /// remembers to go on dropping. Returns the bytes dropped now.
    fn drop_rest_of_line(&mut self, error: DecodeError) -> usize {
        let delimiter = C::LINE_DELIMITER.unwrap_or(b'\n');
        match self.buf.iter().position(|b| *b == delimiter) {
            Some(i) => {
                self.consume(i + 1);
                i + 1
            }
            None => {
                let n = self.buf.len();
                self.consume(n);
                self.discarding_line = Some(error);
                n
            }
        }
    }

    /// How many bytes to drop after an error: up to the next plausible frame start.
    fn resync_len(&self) -> usize {
        (1..self.buf.len())
            .find(|&i| self.buf.get(i..).is_some_and(|t| self.codec.could_start(t)))
            .unwrap_or(self.buf.len())
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.base += n as u64;
    }
}

/// Decodes a whole byte slice, returning the frames and the skipped runs in order.
/// A partial frame at the end is reported as skipped.
pub fn decode_all<C: FrameCodec>(codec: C, data: &[u8]) -> Vec<Decoded<C::Frame>> {
    let mut stream = StreamDecoder::new(codec);
    stream.push(data);
    let mut out = Vec::new();
    while let Some(d) = stream.next() {
        out.push(d);
    }
    out.extend(stream.flush_partial());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy protocol: `0xAA len payload… sum` where sum is the byte sum of the payload.
    struct Toy;

    impl FrameCodec for Toy {
        type Frame = Vec<u8>;
        const NAME: &'static str = "toy";
        const MAX_FRAME_LEN: usize = 258;

        fn decode(&self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, DecodeError> {
            match buf.first() {
                None => return Ok(None),
                Some(0xAA) => {}
                Some(_) => return Err(DecodeError::new(0, DecodeErrorKind::BadStart)),
            }
            let Some(&len) = buf.get(1) else {
                return Ok(None);
            };
            let len = usize::from(len);
            let Some(payload) = buf.get(2..2 + len) else {
                return Ok(None);
            };
            let Some(&sum) = buf.get(2 + len) else {
                return Ok(None);
            };
            let computed = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            if computed != sum {
                return Err(DecodeError::new(
                    2 + len,
                    DecodeErrorKind::Checksum {
                        carried: sum.into(),
                        computed: computed.into(),
                    },
                ));
            }
            Ok(Some((payload.to_vec(), 3 + len)))
        }

        fn encode(&self, frame: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            let len =
                u8::try_from(frame.len()).map_err(|_| EncodeError::new("payload", "too long"))?;
            out.extend([0xAA, len]);
            out.extend(frame);
            out.push(frame.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
            Ok(())
        }

        fn could_start(&self, tail: &[u8]) -> bool {
            tail.first() == Some(&0xAA)
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Toy.encode(&payload.to_vec(), &mut out).unwrap();
        out
    }

    #[test]
    fn garbage_is_reported_once_with_its_stream_offset() {
        let mut wire = frame(b"ab");
        wire.extend([1, 2, 3]);
        wire.extend(frame(b"c"));
        let got = decode_all(Toy, &wire);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Decoded::Frame(b"ab".to_vec()));
        match &got[1] {
            Decoded::Skipped {
                offset,
                bytes,
                error,
            } => {
                assert_eq!((*offset, *bytes), (5, 3));
                assert_eq!(error.kind, DecodeErrorKind::BadStart);
            }
            other => panic!("expected a skip, got {other:?}"),
        }
        assert_eq!(got[2], Decoded::Frame(b"c".to_vec()));
    }

    #[test]
    fn a_bad_checksum_skips_to_the_next_start_byte() {
        let mut bad = frame(b"xyz");
        *bad.last_mut().unwrap() ^= 0xFF;
        let mut wire = bad.clone();
        wire.extend(frame(b"ok"));
        let mut d = StreamDecoder::new(Toy);
        d.push(&wire);
        match d.next() {
            Some(Decoded::Skipped {
                offset,
                bytes,
                error,
            }) => {
                assert_eq!(bytes, bad.len());
                assert_eq!(offset, 5, "offset names the checksum byte");
                assert!(matches!(error.kind, DecodeErrorKind::Checksum { .. }));
            }
            other => panic!("expected a skip, got {other:?}"),
        }
        assert_eq!(d.next(), Some(Decoded::Frame(b"ok".to_vec())));
        assert_eq!(d.next(), None);
        let s = d.stats();
        assert_eq!(
            (s.frames, s.errors, s.skipped_bytes),
            (1, 1, bad.len() as u64)
        );
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let wire = frame(b"hello");
        let mut d = StreamDecoder::new(Toy);
        for b in &wire[..wire.len() - 1] {
            d.push(std::slice::from_ref(b));
            assert_eq!(d.next(), None);
        }
        d.push(&wire[wire.len() - 1..]);
        assert_eq!(d.next(), Some(Decoded::Frame(b"hello".to_vec())));
    }

    /// A line format: frames are lines of ASCII digits.
    struct Digits;

    impl FrameCodec for Digits {
        type Frame = Vec<u8>;
        const NAME: &'static str = "digits";
        const MAX_FRAME_LEN: usize = 64;
        const LINE_DELIMITER: Option<u8> = Some(b'\n');

        fn decode(&self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, DecodeError> {
            for (i, b) in buf.iter().enumerate() {
                match b {
                    b'\n' => return Ok(Some((buf[..i].to_vec(), i + 1))),
                    b'0'..=b'9' => {}
                    _ => return Err(DecodeError::new(i, DecodeErrorKind::BadStart)),
                }
            }
            Ok(None)
        }

        fn encode(&self, frame: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            out.extend(frame);
            out.push(b'\n');
            Ok(())
        }

        fn could_start(&self, tail: &[u8]) -> bool {
            tail.first().is_some_and(u8::is_ascii_digit)
        }
    }

    #[test]
    fn a_bad_line_is_dropped_through_its_end_even_across_reads() {
        let mut d = StreamDecoder::new(Digits);
        d.push(b"12\n3x4");
        assert_eq!(d.next(), Some(Decoded::Frame(b"12".to_vec())));
        assert!(matches!(
            d.next(),
            Some(Decoded::Skipped {
                offset: 4,
                bytes: 3,
                ..
            })
        ));
        assert_eq!(
            d.next(),
            None,
            "nothing more until the rest of the line arrives"
        );
        d.push(b"56\n78\n");
        // "56" belongs to the bad line: dropped, not decoded as a frame.
        assert!(matches!(
            d.next(),
            Some(Decoded::Skipped {
                offset: 7,
                bytes: 3,
                ..
            })
        ));
        assert_eq!(d.next(), Some(Decoded::Frame(b"78".to_vec())));
        assert_eq!(d.next(), None);
        let s = d.stats();
        assert_eq!((s.frames, s.errors, s.skipped_bytes), (2, 1, 6));
    }

    #[test]
    fn flush_reports_a_dangling_partial_frame() {
        let wire = frame(b"hello");
        let mut d = StreamDecoder::new(Toy);
        d.push(&wire[..4]);
        assert_eq!(d.next(), None);
        assert!(matches!(
            d.flush_partial(),
            Some(Decoded::Skipped { bytes: 4, .. })
        ));
        assert_eq!(d.buffered(), 0);
    }
}
