//! SS105 ASCII codec: fixtures checked field by field, rejected frames, stream properties.
// Fixture helpers sit outside #[test] fns, where clippy.toml's test allowance does not reach.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use codecs::model::KMH_PER_MPH;
use codecs::ss105::{
    Command, DeviceError, IntervalData, LaneSample, Reply, ReplyBody, Request, Ss105, Ss105Frame,
};
use codecs::ss125::SpeedUnit;
use codecs::{DecodeErrorKind, FrameCodec, Observation, Observations};
use proptest::prelude::*;

fn fixtures(file: &str) -> BTreeMap<String, Vec<u8>> {
    let path = format!("{}/testdata/ss105/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, wire) = line.split_once(": ").unwrap();
        let wire = wire.replace("\\r", "\r").replace("\\n", "\n");
        out.insert(name.to_owned(), wire.into_bytes());
    }
    out
}

fn decode_whole(codec: &Ss105, wire: &[u8]) -> Ss105Frame {
    let (frame, n) = codec.decode(wire).unwrap().unwrap();
    assert_eq!(n, wire.len());
    frame
}

fn reencode(codec: &Ss105, frame: &Ss105Frame) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(frame, &mut out).unwrap();
    out
}

fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 15, 12, 34, 30).unwrap()
}

fn lane1() -> LaneSample {
    LaneSample {
        lane: 1,
        volume: 12,
        speed_kmh: (55.0 * f64::from(KMH_PER_MPH)) as f32,
        occupancy: 0.125,
        class_share: [0.75, 0.1875, 0.0625],
    }
}

#[test]
fn requests_decode_and_re_encode() {
    let f = fixtures("frames.txt");
    let codec = Ss105::default();
    for (name, expected) in [
        ("xd_request", Request::interval_data(12)),
        (
            "xd_request_age",
            Request {
                drop: 12,
                command: Command::IntervalData { age: Some(2) },
            },
        ),
        (
            "version_request",
            Request {
                drop: 12,
                command: Command::Other("S5".into()),
            },
        ),
    ] {
        let frame = decode_whole(&codec, &f[name]);
        assert_eq!(frame, Ss105Frame::Request(expected), "{name}");
        assert_eq!(reencode(&codec, &frame), f[name], "{name}");
        let mut obs = Vec::new();
        frame.observations(&mut obs);
        assert!(obs.is_empty());
    }
}

#[test]
fn xd_reply_decodes_field_by_field() {
    let f = fixtures("frames.txt");
    let codec = Ss105::default().with_interval_s(30);
    let frame = decode_whole(&codec, &f["xd_reply"]);
    let expected = Ss105Frame::Reply(Reply {
        drop: 12,
        command: "XD".into(),
        body: ReplyBody::IntervalData(IntervalData {
            end: end(),
            lanes: vec![
                lane1(),
                LaneSample {
                    lane: 2,
                    volume: 0,
                    speed_kmh: 0.0,
                    occupancy: 0.0,
                    class_share: [0.0; 3],
                },
            ],
            interval_s: Some(30),
        }),
    });
    assert_eq!(frame, expected);
    assert_eq!(reencode(&codec, &frame), f["xd_reply"]);
    let Ss105Frame::Reply(Reply {
        body: ReplyBody::IntervalData(d),
        ..
    }) = &frame
    else {
        unreachable!()
    };
    assert!((d.lanes[0].speed_kmh - 88.514_92).abs() < 1e-3);

    let mut obs = Vec::new();
    frame.observations(&mut obs);
    let [Observation::Interval(a), Observation::Interval(b)] = obs.as_slice() else {
        panic!("two reports expected: {obs:?}")
    };
    let start = Utc.with_ymd_and_hms(2024, 3, 15, 12, 34, 0).unwrap();
    assert_eq!(a.lane, 1);
    assert_eq!(a.start, Some(start));
    assert_eq!(a.interval_s, Some(30));
    assert_eq!(a.volume, Some(12));
    assert_eq!(a.occupancy, Some(0.125));
    assert_eq!(a.speed_avg_kmh, Some(lane1().speed_kmh));
    assert_eq!(a.speed_p85_kmh, None);
    assert_eq!(
        a.class_counts, None,
        "shares of sensor-defined classes, not counts"
    );
    assert_eq!(b.lane, 2);
    assert_eq!(b.volume, Some(0), "zero vehicles is a count, not missing");
    assert_eq!(b.speed_avg_kmh, None, "no vehicles, no speed");
    assert_eq!(b.occupancy, Some(0.0));
}

#[test]
fn kmh_setting_takes_speeds_as_they_are() {
    let f = fixtures("frames.txt");
    let codec = Ss105 {
        speed_unit: SpeedUnit::Kmh,
        interval_s: None,
    };
    let Ss105Frame::Reply(Reply {
        body: ReplyBody::IntervalData(d),
        ..
    }) = decode_whole(&codec, &f["xd_reply"])
    else {
        panic!()
    };
    assert_eq!(d.lanes[0].speed_kmh, 55.0);
    assert_eq!(d.start(), None);
}

#[test]
fn crlf_reply_with_one_lane() {
    let f = fixtures("frames.txt");
    let codec = Ss105::default();
    let frame = decode_whole(&codec, &f["xd_reply_one_lane_crlf"]);
    assert_eq!(
        frame,
        Ss105Frame::Reply(Reply {
            drop: 12,
            command: "XD".into(),
            body: ReplyBody::IntervalData(IntervalData {
                end: end(),
                lanes: vec![lane1()],
                interval_s: None,
            }),
        })
    );
    // Written back with CR only.
    let wire = &f["xd_reply_one_lane_crlf"];
    assert_eq!(reencode(&codec, &frame), wire[..wire.len() - 1]);
}

#[test]
fn refusals_and_raw_replies() {
    let f = fixtures("frames.txt");
    let codec = Ss105::default();
    for (name, e) in [
        ("xd_empty", DeviceError::Empty),
        ("xd_failure", DeviceError::Failure),
        ("xd_invalid", DeviceError::Invalid),
    ] {
        let frame = decode_whole(&codec, &f[name]);
        assert_eq!(
            frame,
            Ss105Frame::Reply(Reply {
                drop: 12,
                command: "XD".into(),
                body: ReplyBody::Error(e),
            })
        );
        assert_eq!(reencode(&codec, &frame), f[name]);
        let mut obs = Vec::new();
        frame.observations(&mut obs);
        assert!(obs.is_empty());
    }
    let frame = decode_whole(&codec, &f["version_reply"]);
    assert_eq!(
        frame,
        Ss105Frame::Reply(Reply {
            drop: 12,
            command: "S5".into(),
            body: ReplyBody::Raw("1.20".into()),
        })
    );
    assert_eq!(reencode(&codec, &frame), f["version_reply"]);
}

#[test]
fn bad_frames_are_rejected_with_kind_and_offset() {
    let f = fixtures("bad.txt");
    let codec = Ss105::default();
    let err = |name: &str| codec.decode(&f[name]).unwrap_err();

    let e = err("bad_checksum");
    assert_eq!(e.offset, 74);
    assert_eq!(
        e.kind,
        DecodeErrorKind::Checksum {
            carried: 0x0D0A,
            computed: 0x0D09
        }
    );
    let e = err("corrupt_payload");
    assert_eq!(e.offset, 74);
    assert_eq!(
        e.kind,
        DecodeErrorKind::Checksum {
            carried: 0x0D09,
            computed: 0x0D0A
        }
    );
    let e = err("bad_hex");
    assert_eq!(e.offset, 27);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::Field { field: "speed", .. }
    ));
    let e = err("bad_length");
    assert_eq!((e.offset, e.kind), (77, DecodeErrorKind::Length(69)));
    let e = err("bad_drop");
    assert_eq!(e.offset, 5);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::Field { field: "drop", .. }
    ));
}

#[test]
fn a_poll_conversation_decodes_in_order() {
    let f = fixtures("frames.txt");
    let bad = fixtures("bad.txt");
    let mut wire = f["xd_request"].clone();
    wire.extend(&f["xd_reply_one_lane_crlf"]);
    wire.extend(&f["xd_request"]);
    wire.extend(&bad["bad_checksum"]);
    wire.extend(&f["xd_request"]);
    wire.extend(&f["xd_empty"]);
    let got = codecs::decode_all(Ss105::default(), &wire);
    let kinds: Vec<&str> = got
        .iter()
        .map(|d| match d {
            codecs::Decoded::Frame(Ss105Frame::Request(_)) => "request",
            codecs::Decoded::Frame(Ss105Frame::Reply(_)) => "reply",
            codecs::Decoded::Skipped { .. } => "skipped",
        })
        .collect();
    assert_eq!(
        kinds,
        ["request", "reply", "request", "skipped", "request", "reply"]
    );
    let codecs::Decoded::Skipped { bytes, error, .. } = &got[3] else {
        unreachable!()
    };
    // The bad reply up to its `~`; its CR goes with the next request as a leading line break.
    assert_eq!(*bytes, bad["bad_checksum"].len() - 1);
    assert_eq!(error.kind.label(), "checksum");
}

// ---- properties ----

fn arb_text(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec((0x20u8..=0x7E).prop_filter("no ~", |b| *b != b'~'), len)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

fn arb_lane(codec: Ss105) -> impl Strategy<Value = LaneSample> {
    (
        0u8..=15,
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        prop::array::uniform3(any::<u16>()),
    )
        .prop_map(move |(lane, volume, speed, occ, shares)| LaneSample {
            lane,
            volume,
            speed_kmh: match codec.speed_unit {
                SpeedUnit::Mph => (f64::from(speed) * f64::from(KMH_PER_MPH)) as f32,
                SpeedUnit::Kmh => f32::from(speed),
            },
            occupancy: f32::from(occ) / 1024.0,
            class_share: shares.map(|s| f32::from(s) / 1024.0),
        })
}

fn arb_frame(codec: Ss105) -> impl Strategy<Value = Ss105Frame> {
    let drop = 0u16..=9999;
    let request = (
        drop.clone(),
        prop_oneof![
            prop::option::of(any::<u16>()).prop_map(|age| Command::IntervalData { age }),
            arb_text(0..=12).prop_map(Command::Other),
        ],
    )
        .prop_map(|(drop, command)| Ss105Frame::Request(Request { drop, command }));
    let xd = (
        drop.clone(),
        0u32..=u32::MAX,
        prop::collection::vec(arb_lane(codec), 0..=8),
    )
        .prop_map(move |(drop, secs, lanes)| {
            let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
            Ss105Frame::Reply(Reply {
                drop,
                command: "XD".into(),
                body: ReplyBody::IntervalData(IntervalData {
                    end: epoch + chrono::TimeDelta::seconds(secs.into()),
                    lanes,
                    interval_s: codec.interval_s,
                }),
            })
        });
    let other = (
        drop,
        arb_text(2..=2),
        prop_oneof![
            prop_oneof![
                Just(DeviceError::Failure),
                Just(DeviceError::Invalid),
                Just(DeviceError::Empty)
            ]
            .prop_map(ReplyBody::Error),
            arb_text(0..=40).prop_map(ReplyBody::Raw),
        ],
    )
        .prop_map(|(drop, command, body)| {
            Ss105Frame::Reply(Reply {
                drop,
                command,
                body,
            })
        });
    prop_oneof![request, xd, other]
        // Raw texts that read as typed frames are refused by the encoder by design.
        .prop_filter("encodable", move |f| {
            codec.encode(f, &mut Vec::new()).is_ok()
        })
}

fn arb_codec() -> impl Strategy<Value = Ss105> {
    prop_oneof![
        Just(Ss105::default()),
        Just(Ss105::default().with_interval_s(30)),
        Just(Ss105 {
            speed_unit: SpeedUnit::Kmh,
            interval_s: None
        }),
    ]
}

fn codec_and_frames(n: std::ops::Range<usize>) -> impl Strategy<Value = (Ss105, Vec<Ss105Frame>)> {
    arb_codec().prop_flat_map(move |c| (Just(c), prop::collection::vec(arb_frame(c), n.clone())))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roundtrip((codec, frames) in codec_and_frames(1..2)) {
        common::assert_roundtrip(&codec, &frames[0]);
    }

    #[test]
    fn split_anywhere((codec, frames) in codec_and_frames(1..4)) {
        common::assert_split_anywhere(codec, &frames);
    }

    #[test]
    fn garbage_only_loses_garbage(
        (codec, frames) in codec_and_frames(1..4),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..4),
    ) {
        common::assert_garbage_only_loses_garbage(codec, &frames, &garbage);
    }

    #[test]
    fn any_bytes_are_accounted(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        common::assert_any_bytes_accounted(Ss105::default(), &bytes);
    }

    #[test]
    fn decode_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        text in arb_text(0..=120),
    ) {
        let codec = Ss105::default();
        let _ = codec.decode(&bytes);
        // Past the header, with plausible characters, so that reply parsing runs too.
        for line in [format!("Z00001XD{text}~\r"), format!("Z00001{text}\r")] {
            if let Ok(Some((_, n))) = codec.decode(line.as_bytes()) {
                prop_assert!(n >= 1 && n <= line.len());
            }
        }
    }

    #[test]
    fn any_changed_payload_char_is_caught(
        (codec, frames) in codec_and_frames(1..2),
        pick in any::<prop::sample::Index>(),
        delta in 1u8..=9,
    ) {
        let Ss105Frame::Reply(Reply { body: ReplyBody::IntervalData(_), .. }) = &frames[0] else {
            return Ok(());
        };
        let mut wire = Vec::new();
        codec.encode(&frames[0], &mut wire).unwrap();
        // Payload: after "Z0dddd" + "XD", before the checksum, "~" and CR.
        let payload = 8..wire.len() - 6;
        let i = payload.start + pick.index(payload.len());
        // Any other byte value changes the sum; the codec must not return a frame.
        wire[i] = wire[i].wrapping_add(delta);
        let res = codec.decode(&wire);
        prop_assert!(res.is_err(), "{:?}", res);
    }
}
