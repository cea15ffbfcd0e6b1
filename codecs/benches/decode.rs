//! Decode throughput of each binary codec, in MB/s of wire bytes and frames/s.
//!
//! The goal (issue #2) is at least 300 MB/s per core for each binary codec. Streams are built
//! from the hand-checked fixtures in `testdata/`, repeated to about 1 MiB, and pushed into a
//! `StreamDecoder` in 4 KiB reads as a serial or TCP reader would.

use std::hint::black_box;
use std::path::Path;

use codecs::{Decoded, FrameCodec, StreamDecoder, decode_all};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const STREAM_BYTES: usize = 1 << 20;
const READ_SIZE: usize = 4096;

/// Fixture lines `name: bytes` where the bytes are hex octets (`|` separators ignored) or,
/// for ASCII protocols, text with `\r` escapes. Lines named `bad_*` are left out.
fn fixture_bytes(file: &str, ascii: bool) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, body)) = line.split_once(':') else {
            continue;
        };
        if name.starts_with("bad") {
            continue;
        }
        let body = body.trim();
        if ascii {
            out.extend(body.replace("\\r", "\r").replace("\\n", "\n").bytes());
        } else {
            for tok in body.split_whitespace().filter(|t| *t != "|") {
                out.push(u8::from_str_radix(tok, 16).unwrap_or_else(|e| panic!("{tok}: {e}")));
            }
        }
    }
    out
}

/// The valid frames in the fixture, re-encoded and repeated to about `STREAM_BYTES`.
fn stream_of<C: FrameCodec + Clone>(codec: &C, fixture: &[u8]) -> (Vec<u8>, u64) {
    let mut one_round = Vec::new();
    let mut frames_per_round = 0u64;
    for d in decode_all(codec.clone(), fixture) {
        if let Decoded::Frame(f) = d {
            codec
                .encode(&f, &mut one_round)
                .expect("fixture frame encodes");
            frames_per_round += 1;
        }
    }
    assert!(
        frames_per_round > 0,
        "{}: no valid frame in fixture",
        C::NAME
    );
    let rounds = STREAM_BYTES.div_ceil(one_round.len());
    (one_round.repeat(rounds), frames_per_round * rounds as u64)
}

fn bench_codec<C: FrameCodec + Clone>(c: &mut Criterion, codec: C, fixture: &[u8]) {
    let (wire, frames) = stream_of(&codec, fixture);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::ElementsAndBytes {
        elements: frames,
        bytes: wire.len() as u64,
    });
    group.bench_function(C::NAME, |b| {
        b.iter(|| {
            let mut stream = StreamDecoder::new(codec.clone());
            let mut n = 0u64;
            for chunk in wire.chunks(READ_SIZE) {
                stream.push(chunk);
                while let Some(d) = stream.next() {
                    black_box(&d);
                    n += 1;
                }
            }
            assert_eq!(n, frames);
        })
    });
    group.finish();
}

fn codecs(c: &mut Criterion) {
    bench_codec(
        c,
        codecs::ft12::Ft12::new(),
        &fixture_bytes("ft12/frames.hex", false),
    );
    bench_codec(
        c,
        codecs::ss125::Ss125::imperial(),
        &fixture_bytes("ss125/frames.hex", false),
    );
    bench_codec(
        c,
        codecs::ss105::Ss105::default(),
        &fixture_bytes("ss105/frames.txt", true),
    );
    bench_codec(
        c,
        codecs::rtms::Rtms,
        &fixture_bytes("rtms/frames.hex", false),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = codecs
}
criterion_main!(benches);
