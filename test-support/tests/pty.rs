//! The pty pair really relays bytes both ways, raw.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use test_support::PtyPair;

fn read_exactly(f: &mut std::fs::File, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} bytes arrived",
            got.len()
        );
        let k = f.read(&mut buf).expect("read pty");
        got.extend_from_slice(&buf[..k]);
    }
    got
}

#[test]
fn bytes_cross_both_ways_unaltered() {
    let pair = PtyPair::new();
    assert!(pair.a().exists() && pair.b().exists());
    let mut a = pair.open_a();
    let mut b = pair.open_b();

    // Every byte value, including CR, LF, ^C, ^S/^Q (XON/XOFF), ^D and DEL: raw mode
    // must neither translate nor swallow any of them.
    let all: Vec<u8> = (0..=255u8).collect();
    a.write_all(&all).unwrap();
    assert_eq!(read_exactly(&mut b, all.len()), all);

    b.write_all(b"\x02Z1\r\n\x03reply").unwrap();
    assert_eq!(read_exactly(&mut a, 11), b"\x02Z1\r\n\x03reply");
}

#[test]
fn drop_removes_the_links() {
    let pair = PtyPair::new();
    let (a, dir) = (pair.a().to_path_buf(), pair.dir().to_path_buf());
    drop(pair);
    if std::env::var_os("TEST_SUPPORT_LOG").is_none() {
        assert!(!a.exists());
        assert!(!dir.exists());
    }
}
