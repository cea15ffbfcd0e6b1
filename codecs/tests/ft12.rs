//! FT1.2 link frames: fixtures with hand-checked fields, rejected frames, and the stream
//! properties every codec must have.

mod common;

use std::collections::BTreeMap;

use codecs::ft12::{Control, Ft12, Ft12Frame, SingleChar, function};
use codecs::{DecodeErrorKind, Decoded, FrameCodec, Observation, Observations, decode_all};
use proptest::prelude::*;

fn fixtures() -> BTreeMap<String, Vec<u8>> {
    let text = include_str!("../testdata/ft12/frames.hex");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (name, hex) = line.split_once(':').expect("name: hex");
        let bytes = hex
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).expect("hex octet"))
            .collect();
        out.insert(name.trim().to_string(), bytes);
    }
    out
}

fn fixture(name: &str) -> Vec<u8> {
    fixtures()
        .remove(name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// Decodes a whole fixture and checks that re-encoding gives the same octets back.
fn decode_fixture(name: &str) -> Ft12Frame {
    let wire = fixture(name);
    let (frame, n) = Ft12::new()
        .decode(&wire)
        .expect("fixture decodes")
        .expect("fixture is complete");
    assert_eq!(n, wire.len(), "{name}: consumed");
    let mut again = Vec::new();
    Ft12::new().encode(&frame, &mut again).expect("re-encodes");
    assert_eq!(again, wire, "{name}: re-encoded");
    frame
}

#[test]
fn single_ack() {
    assert_eq!(decode_fixture("ok_ack"), Ft12Frame::Single(SingleChar::Ack));
}

#[test]
fn fixed_request_class_2() {
    let f = decode_fixture("ok_req_class2");
    let c = f.control().unwrap();
    assert!(c.is_primary() && c.fcb() && c.fcv());
    assert_eq!(c.function(), function::REQUEST_CLASS_2);
    assert_eq!(f.address(), Some(1));
    assert_eq!(f.user_data(), None);
}

#[test]
fn fixed_reset_and_no_data() {
    let f = decode_fixture("ok_reset_link");
    assert_eq!(
        f,
        Ft12Frame::Fixed {
            control: Control::primary(function::RESET_REMOTE_LINK, false, false),
            address: 5,
        }
    );
    let f = decode_fixture("ok_no_data");
    let c = f.control().unwrap();
    assert!(!c.is_primary() && !c.acd() && !c.dfc());
    assert_eq!(c.function(), function::NO_DATA);
}

#[test]
fn variable_frame_with_fg1_data() {
    let f = decode_fixture("ok_fg1_data");
    let c = f.control().unwrap();
    assert!(!c.is_primary());
    assert_eq!(c.function(), function::USER_DATA);
    assert_eq!(f.address(), Some(1));
    let data = f.user_data().unwrap();
    assert_eq!(data.len(), 36);
    assert_eq!(data[..5], [0x00, 0x02, 0x01, 0x00, 0x01]);

    let tls = f.tls().unwrap().unwrap();
    assert_eq!(tls.osi7.node, 0x0102);
    let mut obs = Vec::new();
    f.observations(&mut obs);
    assert_eq!(obs.len(), 2);
    let Observation::Interval(r) = &obs[0] else {
        panic!("interval expected")
    };
    assert_eq!(
        (r.lane, r.volume, r.speed_avg_kmh),
        (33, Some(20), Some(105.0))
    );
}

#[test]
fn variable_frame_with_time_telegram() {
    let f = decode_fixture("ok_time_sync");
    let c = f.control().unwrap();
    assert!(c.is_primary() && c.fcb() && c.fcv());
    assert_eq!(c.function(), function::USER_DATA_CONFIRM);
    let tls = f.tls().unwrap().unwrap();
    assert!(tls.osi3.priority_class_2);
    assert_eq!(
        (tls.osi3.pointer, tls.osi3.routing.as_slice()),
        (1, &[[5, 7]][..])
    );
    let t = &tls.osi7.telegrams[0];
    assert_eq!((t.fg, t.id, t.job), (254, 2, 0x58));
    assert_eq!((t.blocks[0].channel, t.blocks[0].de_type), (255, 18));
    assert_eq!(t.blocks[0].data, [17, 12, 6, 15, 6, 24, 3]);
    let mut obs = Vec::new();
    f.observations(&mut obs);
    assert!(obs.is_empty(), "FG 254 carries no traffic data");
}

fn rejected(name: &str) -> (usize, DecodeErrorKind) {
    let e = Ft12::new()
        .decode(&fixture(name))
        .expect_err("bad fixture is rejected");
    (e.offset, e.kind)
}

#[test]
fn bad_checksums_are_rejected_at_the_checksum_octet() {
    assert_eq!(
        rejected("bad_fixed_checksum"),
        (
            3,
            DecodeErrorKind::Checksum {
                carried: 0x7D,
                computed: 0x7C
            }
        )
    );
    assert_eq!(
        rejected("bad_variable_checksum"),
        (
            8,
            DecodeErrorKind::Checksum {
                carried: 0x09,
                computed: 0x08
            }
        )
    );
}

#[test]
fn bad_end_length_and_start_octets() {
    assert_eq!(rejected("bad_fixed_end"), (4, DecodeErrorKind::BadEnd));
    assert_eq!(rejected("bad_variable_end"), (9, DecodeErrorKind::BadEnd));
    let (off, kind) = rejected("bad_length_copy");
    assert_eq!((off, kind.label()), (2, "field"));
    let (off, kind) = rejected("bad_second_start");
    assert_eq!((off, kind.label()), (3, "field"));
    assert_eq!(
        rejected("bad_length_too_small"),
        (1, DecodeErrorKind::Length(1))
    );
}

#[test]
fn a_stream_of_all_fixtures_keeps_every_good_frame() {
    let all = fixtures();
    let mut wire = Vec::new();
    let mut good = Vec::new();
    for (name, bytes) in &all {
        wire.extend(bytes);
        if name.starts_with("ok_") {
            good.push(Ft12::new().decode(bytes).unwrap().unwrap().0);
        }
    }
    let frames: Vec<_> = decode_all(Ft12::new(), &wire)
        .into_iter()
        .filter_map(|d| match d {
            Decoded::Frame(f) => Some(f),
            Decoded::Skipped { .. } => None,
        })
        .collect();
    // Bad frames are dropped; their octets may not fake good frames except a stray E5 ACK
    // (any E5 on the line is a valid ACK), so compare without single characters.
    let strip = |v: &[Ft12Frame]| -> Vec<Ft12Frame> {
        v.iter()
            .filter(|f| !matches!(f, Ft12Frame::Single(_)))
            .cloned()
            .collect()
    };
    assert_eq!(strip(&frames), strip(&good));
}

#[test]
fn a_bad_checksum_loses_only_that_frame() {
    let mut wire = fixture("bad_variable_checksum");
    wire.extend(fixture("ok_req_class2"));
    let got = decode_all(Ft12::new(), &wire);
    assert_eq!(got.len(), 2);
    assert!(matches!(
        &got[0],
        Decoded::Skipped { offset: 8, bytes: 10, error } if error.kind.label() == "checksum"
    ));
    assert_eq!(got[1], Decoded::Frame(decode_fixture("ok_req_class2")));
}

// ---- properties ----

fn arb_control() -> impl Strategy<Value = Control> {
    any::<u8>().prop_map(Control::from_byte)
}

fn arb_frame(address_len: usize, max_data: usize) -> impl Strategy<Value = Ft12Frame> {
    let max_addr: u16 = match address_len {
        0 => 0,
        1 => 0xFF,
        _ => 0xFFFF,
    };
    prop_oneof![
        Just(Ft12Frame::Single(SingleChar::Ack)),
        (arb_control(), 0..=max_addr)
            .prop_map(|(control, address)| Ft12Frame::Fixed { control, address }),
        (
            arb_control(),
            0..=max_addr,
            proptest::collection::vec(any::<u8>(), 0..=max_data)
        )
            .prop_map(|(control, address, data)| Ft12Frame::Variable {
                control,
                address,
                data
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roundtrip(frame in arb_frame(1, 253)) {
        common::assert_roundtrip(&Ft12::new(), &frame);
    }

    #[test]
    fn roundtrip_other_address_lengths(
        (len, frame) in (0usize..=2).prop_flat_map(|len| (Just(len), arb_frame(len, 254 - len)))
    ) {
        common::assert_roundtrip(&Ft12::with_address_len(len).unwrap(), &frame);
    }

    #[test]
    fn split_anywhere(frames in proptest::collection::vec(arb_frame(1, 40), 1..4)) {
        common::assert_split_anywhere(Ft12::new(), &frames);
    }

    #[test]
    fn garbage_only_loses_garbage(
        frames in proptest::collection::vec(arb_frame(1, 60), 1..5),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..5),
    ) {
        common::assert_garbage_only_loses_garbage(Ft12::new(), &frames, &garbage);
    }

    #[test]
    fn any_bytes_are_accounted(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        common::assert_any_bytes_accounted(Ft12::new(), &bytes);
    }

    #[test]
    fn decode_never_panics_and_stays_in_bounds(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        len in 0usize..=2,
    ) {
        let codec = Ft12::with_address_len(len).unwrap();
        match codec.decode(&bytes) {
            Ok(Some((_, n))) => prop_assert!(n >= 1 && n <= bytes.len()),
            Ok(None) => prop_assert!(bytes.len() < Ft12::MAX_FRAME_LEN),
            Err(e) => prop_assert!(e.offset < bytes.len()),
        }
    }

    #[test]
    fn starts_with_known_octets_look_plausible(frame in arb_frame(1, 253)) {
        let wire = common::encode(&Ft12::new(), std::slice::from_ref(&frame));
        for cut in 1..=wire.len() {
            prop_assert!(Ft12::new().could_start(&wire[..cut]));
        }
    }
}
