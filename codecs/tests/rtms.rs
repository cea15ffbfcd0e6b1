//! RTMS G4: properties and hand-checked fixtures.
// Helpers and strategies outside #[test] fns unwrap too; clippy.toml only covers test fns.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeZone, Utc};
use codecs::rtms::{
    G4Frame, G4Message, G4Stamp, G4VehicleEvent, Qualifier, Rtms, StatAssembler, StatHeader,
    ZoneQuantity,
};
use codecs::{
    DecodeErrorKind, Decoded, FrameCodec, IntervalReport, Observation, Observations, decode_all,
};
use proptest::prelude::*;

fn stamp() -> impl Strategy<Value = G4Stamp> {
    (
        0..=59u8,
        0..=59u8,
        0..=23u8,
        1..=7u8,
        1..=31u8,
        1..=12u8,
        0..=99u8,
    )
        .prop_map(
            |(second, minute, hour, weekday, day, month, year)| G4Stamp {
                second,
                minute,
                hour,
                weekday,
                day,
                month,
                year,
            },
        )
}

fn header() -> impl Strategy<Value = StatHeader> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<u8>(),
        stamp(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<(u8, u8)>(),
        any::<[u8; 5]>(),
    )
        .prop_map(
            |(msg_num, page, flags, stamp, zones, composition, period_s, (v, h), spare)| {
                StatHeader {
                    msg_num,
                    page,
                    flags,
                    stamp,
                    zones,
                    composition,
                    period_s,
                    voltage_dv: v,
                    health: h,
                    spare,
                }
            },
        )
}

fn quantity() -> impl Strategy<Value = ZoneQuantity> {
    prop_oneof![
        Just(ZoneQuantity::Volume),
        Just(ZoneQuantity::Occupancy),
        Just(ZoneQuantity::Speed),
        Just(ZoneQuantity::Gap),
        (1..=5u8).prop_map(ZoneQuantity::Class),
        Just(ZoneQuantity::Headway),
        Just(ZoneQuantity::Speed85),
    ]
}

fn vehicle() -> impl Strategy<Value = G4VehicleEvent> {
    (
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u8>(),
        stamp(),
        any::<bool>(),
    )
        .prop_map(
            |([zone, class, length_dm, speed], duration_ms, stamp_sub, stamp, mph)| {
                G4VehicleEvent {
                    zone,
                    class,
                    length_dm,
                    speed,
                    duration_ms,
                    stamp_sub,
                    stamp,
                    mph,
                }
            },
        )
}

fn untyped_qualifier() -> impl Strategy<Value = Qualifier> {
    let untyped: Vec<Qualifier> = Qualifier::ALL
        .iter()
        .copied()
        .filter(|q| !q.is_typed())
        .collect();
    proptest::sample::select(untyped)
}

fn message() -> impl Strategy<Value = G4Message> {
    prop_oneof![
        header().prop_map(G4Message::StatHeader),
        (quantity(), proptest::collection::vec(any::<u16>(), 0..=16))
            .prop_map(|(quantity, values)| G4Message::PerZone { quantity, values }),
        any::<u8>().prop_map(|msg_num| G4Message::StatFooter { msg_num }),
        vehicle().prop_map(G4Message::Vehicle),
        (
            untyped_qualifier(),
            proptest::collection::vec(any::<u8>(), 0..=253)
        )
            .prop_map(|(qualifier, data)| G4Message::Other { qualifier, data }),
    ]
}

fn frame() -> impl Strategy<Value = G4Frame> {
    (any::<u16>(), message()).prop_map(|(sensor_id, message)| G4Frame { sensor_id, message })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roundtrip(f in frame()) {
        common::assert_roundtrip(&Rtms, &f);
    }

    #[test]
    fn split_anywhere(frames in proptest::collection::vec(frame(), 1..4)) {
        common::assert_split_anywhere(Rtms, &frames);
    }

    #[test]
    fn garbage_only_loses_garbage(
        frames in proptest::collection::vec(frame(), 1..5),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..5),
    ) {
        common::assert_garbage_only_loses_garbage(Rtms, &frames, &garbage);
    }

    #[test]
    fn any_bytes_accounted(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        common::assert_any_bytes_accounted(Rtms, &bytes);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((_, n))) = Rtms.decode(&bytes) {
            prop_assert!(n >= 1 && n <= bytes.len());
        }
    }

    #[test]
    fn sentinel_led_noise_never_panics(
        qual in any::<u8>(),
        len in any::<u8>(),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![0xFF, 0xAA, qual, len];
        bytes.extend(rest);
        let _ = Rtms.decode(&bytes);
        common::assert_any_bytes_accounted(Rtms, &bytes);
    }

    #[test]
    fn one_flipped_bit_is_never_a_different_frame(f in frame(), bit in 0usize..2048) {
        let mut wire = Vec::new();
        Rtms.encode(&f, &mut wire).unwrap();
        let bit = bit % (wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        // A 16-bit sum catches every single-bit error in the body; header bits either break
        // the frame or change its length. Either way the original frame is not reported
        // with a changed value.
        if let Ok(Some((g, _))) = Rtms.decode(&wire) {
            prop_assert!(g == f || g.message.qualifier() != f.message.qualifier());
        }
    }
}

/// `label: hex` lines of a fixture file.
fn fixture(name: &str) -> Vec<(String, Vec<u8>)> {
    let path = format!("{}/testdata/rtms/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (label, hex) = l.split_once(':').unwrap();
            let bytes = hex
                .split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect();
            (label.to_string(), bytes)
        })
        .collect()
}

fn get(frames: &[(String, Vec<u8>)], label: &str) -> Vec<u8> {
    frames.iter().find(|(l, _)| l == label).unwrap().1.clone()
}

fn decode_one(wire: &[u8]) -> G4Frame {
    let (f, n) = Rtms.decode(wire).unwrap().unwrap();
    assert_eq!(n, wire.len());
    f
}

#[test]
fn fixture_statistical_message() {
    let fx = fixture("frames.hex");
    let header = decode_one(&get(&fx, "header"));
    assert_eq!(header.sensor_id, 0x17);
    let G4Message::StatHeader(h) = &header.message else {
        panic!("not a header: {header:?}")
    };
    assert_eq!(h.msg_num, 0x2A);
    assert_eq!(h.page, 3);
    assert!(h.is_mph());
    assert_eq!(h.zone_count(), 3);
    assert!(!h.forward_mounted());
    assert_eq!(h.composition, 0x48);
    assert_eq!(h.period_s, 30);
    assert_eq!(h.voltage_dv, 126);
    assert_eq!(h.health, 0x10);
    assert_eq!(
        h.stamp.to_datetime(),
        Some(Utc.with_ymd_and_hms(2026, 11, 26, 13, 45, 30).unwrap())
    );
    assert_eq!(h.stamp.weekday, 5);

    assert_eq!(
        decode_one(&get(&fx, "volume")).message,
        G4Message::PerZone {
            quantity: ZoneQuantity::Volume,
            values: vec![12, 9, 0]
        }
    );

    let mut asm = StatAssembler::new();
    let mut done = None;
    for label in [
        "header",
        "volume",
        "occupancy",
        "speed",
        "headway",
        "footer",
    ] {
        done = asm.push(&decode_one(&get(&fx, label)));
    }
    let stats = done.expect("complete at the footer");
    assert_eq!(asm.abandoned(), 0);
    assert_eq!(stats.speed, Some(vec![61, 58, 240]));

    let mut obs = Vec::new();
    stats.observations(&mut obs);
    let reports: Vec<IntervalReport> = obs
        .into_iter()
        .map(|o| match o {
            Observation::Interval(r) => r,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reports.len(), 3);
    let r = &reports[0];
    assert_eq!(r.lane, 1);
    assert_eq!(r.start, None);
    assert_eq!(r.interval_s, Some(30));
    assert_eq!(r.volume, Some(12));
    assert!((r.occupancy.unwrap() - 0.085).abs() < 1e-6);
    assert!((r.speed_avg_kmh.unwrap() - 61.0 * 1.609_344).abs() < 1e-3);
    assert_eq!(r.speed_p85_kmh, None);
    assert!((r.headway_avg_s.unwrap() - 2.5).abs() < 1e-6);
    assert_eq!(r.gap_avg_s, None);
    assert_eq!(r.class_counts, None);
    assert_eq!(reports[1].lane, 2);
    assert_eq!(reports[1].volume, Some(9));
    assert!((reports[1].occupancy.unwrap() - 0.062).abs() < 1e-6);
    assert_eq!(reports[2].volume, Some(0));
    assert_eq!(reports[2].occupancy, Some(0.0));
    assert_eq!(reports[2].speed_avg_kmh, None, "240 = unknown");
    assert_eq!(reports[2].headway_avg_s, Some(3600.0));
}

#[test]
fn fixture_vehicle_event() {
    let fx = fixture("frames.hex");
    let f = decode_one(&get(&fx, "vehicle"));
    let G4Message::Vehicle(v) = &f.message else {
        panic!("not a vehicle: {f:?}")
    };
    assert_eq!(
        (
            v.zone,
            v.class,
            v.length_dm,
            v.speed,
            v.duration_ms,
            v.stamp_sub,
            v.mph
        ),
        (1, 2, 47, 96, 180, 0x45, false)
    );
    let mut obs = Vec::new();
    f.observations(&mut obs);
    let [Observation::Vehicle(e)] = obs.as_slice() else {
        panic!("{obs:?}")
    };
    assert_eq!(e.lane, 2);
    assert_eq!(
        e.time,
        Some(Utc.with_ymd_and_hms(2026, 11, 26, 13, 45, 30).unwrap())
    );
    assert_eq!(e.speed_kmh, Some(96.0));
    assert!((e.length_m.unwrap() - 4.7).abs() < 1e-6);
    assert_eq!(e.occupancy_ms, Some(180));
    assert_eq!(e.headway_ms, None);
    assert_eq!(e.class, None);
}

#[test]
fn fixture_bad_checksum_is_rejected_at_the_checksum() {
    let fx = fixture("frames.hex");
    let bad = get(&fx, "bad_checksum");
    let e = Rtms.decode(&bad).unwrap_err();
    assert_eq!(e.offset, 21);
    assert_eq!(
        e.kind,
        DecodeErrorKind::Checksum {
            carried: 0x028D,
            computed: 0x028C
        }
    );

    // In a stream, the bad frame is skipped whole and the next one decodes.
    let mut wire = bad.clone();
    wire.extend(get(&fx, "footer"));
    let got = decode_all(Rtms, &wire);
    assert_eq!(got.len(), 2);
    assert!(matches!(
        &got[0],
        Decoded::Skipped { offset: 21, bytes, error } if *bytes == bad.len()
            && matches!(error.kind, DecodeErrorKind::Checksum { .. })
    ));
    assert!(matches!(
        &got[1],
        Decoded::Frame(G4Frame {
            message: G4Message::StatFooter { msg_num: 0x2A },
            ..
        })
    ));
}

#[test]
fn the_whole_fixture_stream_decodes_without_loss() {
    let fx = fixture("frames.hex");
    let wire: Vec<u8> = fx
        .iter()
        .filter(|(l, _)| l != "bad_checksum")
        .flat_map(|(_, b)| b.clone())
        .collect();
    let got = decode_all(Rtms, &wire);
    assert_eq!(got.len(), 7);
    assert!(got.iter().all(|d| matches!(d, Decoded::Frame(_))));
}
