//! Properties every byte-stream codec must have, shared by the per-protocol test files.
#![allow(dead_code)]

use std::fmt::Debug;

use codecs::{Decoded, FrameCodec, StreamDecoder, decode_all};

pub fn encode<C: FrameCodec>(codec: &C, frames: &[C::Frame]) -> Vec<u8> {
    let mut wire = Vec::new();
    for f in frames {
        codec.encode(f, &mut wire).expect("encodable frame");
    }
    wire
}

fn frames_and_skips<F>(decoded: Vec<Decoded<F>>) -> (Vec<F>, usize) {
    let mut frames = Vec::new();
    let mut skipped = 0;
    for d in decoded {
        match d {
            Decoded::Frame(f) => frames.push(f),
            Decoded::Skipped { bytes, .. } => skipped += bytes,
        }
    }
    (frames, skipped)
}

/// encode → decode gives the frame back and consumes exactly its bytes.
pub fn assert_roundtrip<C>(codec: &C, frame: &C::Frame)
where
    C: FrameCodec,
    C::Frame: Debug + PartialEq,
{
    let mut wire = Vec::new();
    codec.encode(frame, &mut wire).expect("encodable frame");
    let (decoded, n) = codec
        .decode(&wire)
        .expect("own encoding decodes")
        .expect("own encoding is complete");
    assert_eq!(&decoded, frame);
    assert_eq!(n, wire.len(), "consumed bytes");
    // Every proper prefix asks for more bytes; none is an error.
    for cut in 0..wire.len() {
        assert_eq!(
            codec.decode(&wire[..cut]).map(|o| o.is_none()),
            Ok(true),
            "prefix of {cut} bytes must be Ok(None)"
        );
    }
}

/// The stream split in two at every offset decodes to the same frames, with nothing skipped.
pub fn assert_split_anywhere<C>(codec: C, frames: &[C::Frame])
where
    C: FrameCodec,
    C::Frame: Debug + PartialEq,
{
    let wire = encode(&codec, frames);
    let mut stream = StreamDecoder::new(codec);
    for cut in 0..=wire.len() {
        let mut got = Vec::new();
        stream.push(&wire[..cut]);
        while let Some(d) = stream.next() {
            got.push(d);
        }
        stream.push(&wire[cut..]);
        while let Some(d) = stream.next() {
            got.push(d);
        }
        assert_eq!(stream.buffered(), 0, "split at {cut}: bytes left over");
        let (decoded, skipped) = frames_and_skips(got);
        assert_eq!(skipped, 0, "split at {cut}: nothing may be skipped");
        assert_eq!(decoded.as_slice(), frames, "split at {cut}");
    }
}

/// Garbage (bytes that cannot start a frame) between frames costs only the garbage.
pub fn assert_garbage_only_loses_garbage<C>(codec: C, frames: &[C::Frame], garbage: &[Vec<u8>])
where
    C: FrameCodec,
    C::Frame: Debug + PartialEq,
{
    let mut wire = Vec::new();
    let mut garbage_len = 0;
    for (i, f) in frames.iter().enumerate() {
        if let Some(g) = garbage.get(i) {
            let mut g: Vec<u8> = g
                .iter()
                .copied()
                .filter(|b| !codec.could_start(&[*b]) && Some(*b) != C::LINE_DELIMITER)
                .collect();
            // In a line format, garbage is a bad line: it ends where lines end.
            if let (Some(delimiter), false) = (C::LINE_DELIMITER, g.is_empty()) {
                g.push(delimiter);
            }
            garbage_len += g.len();
            wire.extend(g);
        }
        codec.encode(f, &mut wire).expect("encodable frame");
    }
    let (decoded, skipped) = frames_and_skips(decode_all(codec, &wire));
    assert_eq!(decoded.as_slice(), frames);
    assert_eq!(skipped, garbage_len, "only the garbage is skipped");
}

/// Any bytes at all: no panic, and every byte is either in a frame or counted as skipped.
pub fn assert_any_bytes_accounted<C: FrameCodec>(codec: C, bytes: &[u8]) {
    let mut stream = StreamDecoder::new(codec);
    stream.push(bytes);
    while stream.next().is_some() {}
    stream.flush_partial();
    let stats = stream.stats();
    assert_eq!(stats.bytes_in, bytes.len() as u64);
    assert!(stats.skipped_bytes <= stats.bytes_in);
    assert!(stats.frames <= stats.bytes_in);
}
