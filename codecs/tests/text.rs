//! The text formats: IRIS `.vlog` and PeMS 30-second CSV.
// Helpers and strategies outside #[test] fns unwrap too; clippy.toml only covers test fns.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use codecs::pems::{Pems, PemsLane, PemsSample};
use codecs::vlog::{Vlog, VlogFrame, VlogTimeline, VlogVehicle};
use codecs::{
    DecodeErrorKind, Decoded, FrameCodec, IntervalReport, Observation, Observations, decode_all,
};
use proptest::prelude::*;

const LANE: u16 = 2;

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

fn vlog() -> Vlog {
    Vlog::new(day(), LANE)
}

fn pst() -> FixedOffset {
    FixedOffset::west_opt(8 * 3600).unwrap()
}

fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn frames<F>(decoded: Vec<Decoded<F>>) -> Vec<F> {
    decoded
        .into_iter()
        .map(|d| match d {
            Decoded::Frame(f) => f,
            Decoded::Skipped { offset, error, .. } => panic!("skipped at {offset}: {error}"),
        })
        .collect()
}

fn utc(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, s).unwrap()
        + chrono::TimeDelta::milliseconds(ms.into())
}

// ---------------------------------------------------------------- vlog

fn vlog_frame() -> impl Strategy<Value = VlogFrame> {
    let vehicle = (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(0u32..86_400),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(duration_ms, headway_ms, secs, speed_mph)| {
            VlogFrame::Vehicle(VlogVehicle {
                lane: LANE,
                duration_ms,
                headway_ms,
                time: secs.map(|s| {
                    day().and_hms_opt(0, 0, 0).unwrap().and_utc()
                        + chrono::TimeDelta::seconds(s.into())
                }),
                speed_mph,
            })
        });
    prop_oneof![9 => vehicle, 1 => Just(VlogFrame::Gap)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn vlog_roundtrip(f in vlog_frame()) {
        common::assert_roundtrip(&vlog(), &f);
    }

    #[test]
    fn vlog_split_anywhere(frames in proptest::collection::vec(vlog_frame(), 1..6)) {
        common::assert_split_anywhere(vlog(), &frames);
    }

    #[test]
    fn vlog_garbage_only_loses_garbage(
        frames in proptest::collection::vec(vlog_frame(), 1..6),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6),
    ) {
        common::assert_garbage_only_loses_garbage(vlog(), &frames, &garbage);
    }

    #[test]
    fn vlog_any_bytes_accounted(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        common::assert_any_bytes_accounted(vlog(), &bytes);
    }

    #[test]
    fn vlog_line_noise_never_panics(s in "[0-9?*,:\r\n]{0,80}") {
        let _ = vlog().decode(s.as_bytes());
        common::assert_any_bytes_accounted(vlog(), s.as_bytes());
    }
}

#[test]
fn vlog_fixture_decodes_field_by_field() {
    let got = frames(decode_all(vlog(), &testdata("vlog/d1234_20261126.vlog")));
    assert_eq!(got.len(), 9);
    let v = |i: usize| match &got[i] {
        VlogFrame::Vehicle(v) => v.clone(),
        VlogFrame::Gap => panic!("line {} is a gap", i + 1),
    };
    let l1 = v(0);
    assert_eq!(
        (
            l1.lane,
            l1.duration_ms,
            l1.headway_ms,
            l1.time,
            l1.speed_mph
        ),
        (LANE, Some(312), Some(8120), Some(utc(17, 42, 5, 0)), None)
    );
    assert_eq!(
        (v(1).duration_ms, v(1).headway_ms, v(1).time),
        (Some(288), Some(2950), None)
    );
    assert_eq!((v(2).time, v(2).speed_mph), (None, Some(52)));
    assert_eq!((v(3).duration_ms, v(3).headway_ms), (None, None));
    assert_eq!(
        (v(4).headway_ms, v(4).time, v(4).speed_mph),
        (None, Some(utc(17, 42, 16, 0)), Some(49))
    );
    assert_eq!(got[6], VlogFrame::Gap);
    assert_eq!(v(8).time, Some(utc(17, 42, 31, 0)));

    // Times filled forward from the headways, broken by `?,?` and by the gap.
    let mut timeline = VlogTimeline::new();
    let events: Vec<_> = got.iter().map(|f| timeline.resolve(f)).collect();
    let times: Vec<_> = events.iter().map(|e| e.as_ref().map(|e| e.time)).collect();
    assert_eq!(
        times,
        [
            Some(Some(utc(17, 42, 5, 0))),
            Some(Some(utc(17, 42, 7, 950))),
            Some(Some(utc(17, 42, 9, 154))),
            Some(None),
            Some(Some(utc(17, 42, 16, 0))),
            Some(Some(utc(17, 42, 19, 310))),
            None,
            Some(None),
            Some(Some(utc(17, 42, 31, 0))),
        ]
    );
    let e3 = events[2].as_ref().unwrap();
    assert_eq!(e3.lane, LANE);
    assert!((e3.speed_kmh.unwrap() - 83.685_89).abs() < 1e-3);
    assert_eq!(e3.occupancy_ms, Some(301));
    assert_eq!(e3.headway_ms, Some(1204));
    assert_eq!((e3.length_m, e3.class), (None, None));

    // The frame alone reports only its own stamp.
    let mut obs = Vec::new();
    got[1].observations(&mut obs);
    let [Observation::Vehicle(e)] = obs.as_slice() else {
        panic!("{obs:?}")
    };
    assert_eq!(
        (e.time, e.occupancy_ms, e.speed_kmh),
        (None, Some(288), None)
    );
    obs.clear();
    got[6].observations(&mut obs);
    assert!(obs.is_empty(), "a gap carries no observation");
}

#[test]
fn vlog_fixture_reencodes_byte_for_byte() {
    let wire = testdata("vlog/d1234_20261126.vlog");
    let got = frames(decode_all(vlog(), &wire));
    assert_eq!(common::encode(&vlog(), &got), wire);
}

#[test]
fn vlog_corrupt_line_is_skipped_whole() {
    let got = decode_all(vlog(), &testdata("vlog/corrupt.vlog"));
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(matches!(got[0], Decoded::Frame(_)));
    assert!(matches!(got[1], Decoded::Frame(_)));
    match &got[2] {
        Decoded::Skipped {
            offset,
            bytes,
            error,
        } => {
            assert_eq!((*offset, *bytes), (44, 18));
            assert!(matches!(
                error.kind,
                DecodeErrorKind::Field { field: "time", .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    let Decoded::Frame(VlogFrame::Vehicle(v)) = &got[3] else {
        panic!("{:?}", got[3])
    };
    assert_eq!((v.duration_ms, v.speed_mph), (Some(301), Some(52)));
}

// ---------------------------------------------------------------- PeMS

fn pems_lane() -> impl Strategy<Value = PemsLane> {
    (
        proptest::option::of(0u32..5000),
        proptest::option::of(0u32..2500),
        proptest::option::of(0u16..=1000),
    )
        .prop_map(|(flow, speed_tenths, occupancy_permille)| PemsLane {
            flow,
            speed_mph: speed_tenths.map(|t| t as f32 / 10.0),
            occupancy_permille,
        })
}

fn pems_sample() -> impl Strategy<Value = PemsSample> {
    (
        any::<u32>(),
        0i64..4_000_000_000,
        proptest::collection::vec(pems_lane(), 1..=16),
    )
        .prop_map(|(station, secs, lanes)| PemsSample {
            station,
            time: DateTime::from_timestamp(secs, 0).unwrap(),
            lanes,
        })
}

fn pems() -> Pems {
    Pems::with_utc_offset(pst())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn pems_roundtrip(s in pems_sample()) {
        common::assert_roundtrip(&pems(), &s);
    }

    #[test]
    fn pems_split_anywhere(samples in proptest::collection::vec(pems_sample(), 1..3)) {
        common::assert_split_anywhere(pems(), &samples);
    }

    #[test]
    fn pems_garbage_only_loses_garbage(
        samples in proptest::collection::vec(pems_sample(), 1..4),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..4),
    ) {
        common::assert_garbage_only_loses_garbage(pems(), &samples, &garbage);
    }

    #[test]
    fn pems_any_bytes_accounted(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        common::assert_any_bytes_accounted(pems(), &bytes);
    }

    #[test]
    fn pems_line_noise_never_panics(s in "[0-9,./: TZ+\r\n-]{0,120}") {
        let _ = pems().decode(s.as_bytes());
        common::assert_any_bytes_accounted(pems(), s.as_bytes());
    }
}

fn reports(sample: &PemsSample) -> Vec<IntervalReport> {
    let mut obs = Vec::new();
    sample.observations(&mut obs);
    obs.into_iter()
        .map(|o| match o {
            Observation::Interval(r) => r,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn pems_fixture_decodes_field_by_field() {
    let got = frames(decode_all(pems(), &testdata("pems/400123_20261126.csv")));
    assert_eq!(got.len(), 4);
    let starts: Vec<_> = got.iter().map(|s| s.time).collect();
    assert_eq!(
        starts,
        [
            utc(15, 0, 0, 0),
            utc(15, 0, 30, 0),
            utc(15, 1, 0, 0),
            utc(15, 1, 30, 0)
        ]
    );
    assert!(
        got.iter()
            .all(|s| s.station == 400123 && s.lanes.len() == 3)
    );
    assert_eq!(
        got[0].lanes[2],
        PemsLane {
            flow: Some(8),
            speed_mph: None,
            occupancy_permille: Some(64)
        }
    );
    assert_eq!(
        got[2].lanes[0],
        PemsLane {
            flow: None,
            speed_mph: None,
            occupancy_permille: None
        }
    );
    assert_eq!(got[1].lanes[1].speed_mph, Some(62.1));

    let r = reports(&got[0]);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].lane, 1);
    assert_eq!(r[0].start, Some(utc(15, 0, 0, 0)));
    assert_eq!(r[0].interval_s, Some(30));
    assert_eq!(r[0].volume, Some(9));
    assert!((r[0].occupancy.unwrap() - 0.071).abs() < 1e-6);
    assert!((r[0].speed_avg_kmh.unwrap() - 106.538_57).abs() < 1e-3);
    assert_eq!(r[2].lane, 3);
    assert_eq!(r[2].speed_avg_kmh, None);
    assert!((r[2].occupancy.unwrap() - 0.064).abs() < 1e-6);
    let r3 = reports(&got[2]);
    assert_eq!(
        (r3[0].volume, r3[0].occupancy, r3[0].speed_avg_kmh),
        (None, None, None),
        "missing stays missing, never 0"
    );
    assert_eq!(r3[1].volume, Some(13));
}

#[test]
fn pems_bad_occupancy_line_is_skipped_whole() {
    let wire = testdata("pems/bad_occupancy.csv");
    let got = decode_all(pems(), &wire);
    assert_eq!(got.len(), 3, "{got:?}");
    match &got[1] {
        Decoded::Skipped {
            offset,
            bytes,
            error,
        } => {
            assert_eq!(*offset, 73);
            assert_eq!(*bytes, 64, "the whole second line");
            assert!(matches!(
                error.kind,
                DecodeErrorKind::Field {
                    field: "occupancy",
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&got[2], Decoded::Frame(s) if s.time == utc(15, 1, 0, 0)));
}
