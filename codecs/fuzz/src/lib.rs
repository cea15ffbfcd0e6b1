//! Properties checked on every fuzz input, shared by the per-protocol targets.

use std::fmt::Debug;

use codecs::{Decoded, FrameCodec, StreamDecoder};

/// Feeds `data` to a stream decoder in two pieces (split where the first byte says), then
/// checks what must hold for any input: no panic, every byte either framed or counted as
/// skipped, and every decoded frame re-encodes to bytes that decode to the same frame.
pub fn check_stream<C>(codec: C, data: &[u8])
where
    C: FrameCodec + Clone,
    C::Frame: Debug + PartialEq,
{
    // Direct decode of the raw slice must not panic and must stay in bounds.
    if let Ok(Some((_, n))) = codec.decode(data) {
        assert!(n >= 1 && n <= data.len(), "consumed {n} of {}", data.len());
    }

    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut stream = StreamDecoder::new(codec.clone());
    let mut frames = Vec::new();
    for part in [a, b] {
        stream.push(part);
        while let Some(d) = stream.next() {
            if let Decoded::Frame(f) = d {
                frames.push(f);
            }
        }
    }
    stream.flush_partial();
    let stats = stream.stats();
    assert_eq!(stats.bytes_in, data.len() as u64);
    assert!(stats.skipped_bytes <= stats.bytes_in);

    for frame in frames {
        let mut wire = Vec::new();
        if codec.encode(&frame, &mut wire).is_ok() {
            match codec.decode(&wire) {
                Ok(Some((again, n))) => {
                    assert_eq!(again, frame, "re-encoded frame decodes differently");
                    assert_eq!(n, wire.len());
                }
                other => panic!("re-encoded frame does not decode: {other:?}"),
            }
        }
    }
}
