//! TLS OSI 3/7 content of FT1.2 user data: the fixture decoded field by field, error
//! offsets on truncation, round trips and robustness on arbitrary octets.

use codecs::ft12::{Ft12, Ft12Frame};
use codecs::tls::{
    self, DeBlock, Fg1Block, IntervalHeader, LveExtra, LveResult, Osi3Header, Osi7Container,
    Telegram, TlsUserData,
};
use codecs::{FrameCodec, Observation, Observations};
use proptest::prelude::*;

/// The user data of `ok_fg1_data` in testdata/ft12/frames.hex (see its README).
const FG1_USER_DATA: &str = "00 02 01 00 01 1E 01 84 00 03 07 FF 30 11 0C 06 01 08 \
                             06 21 31 14 04 6E 55 0A 22 34 0C 00 78 FF 2D 07 0B 76";

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).expect("hex octet"))
        .collect()
}

#[test]
fn fixture_matches_the_frame_file() {
    let line = include_str!("../testdata/ft12/frames.hex")
        .lines()
        .find(|l| l.starts_with("ok_fg1_data:"))
        .unwrap();
    let wire = hex(line.split_once(':').unwrap().1);
    let (frame, _) = Ft12::new().decode(&wire).unwrap().unwrap();
    assert_eq!(frame.user_data().unwrap(), hex(FG1_USER_DATA).as_slice());
}

#[test]
fn fg1_fixture_field_by_field() {
    let ud = tls::decode_user_data(&hex(FG1_USER_DATA)).unwrap();
    assert_eq!(ud.osi3, Osi3Header::default());
    assert_eq!(ud.osi7.node, 0x00_01_02);
    assert_eq!(ud.osi7.telegrams.len(), 1);
    let t = &ud.osi7.telegrams[0];
    assert_eq!((t.fg, t.id, t.job, t.blocks.len()), (1, 0x84, 0, 3));

    let b: Vec<_> = t
        .blocks
        .iter()
        .map(|b| Fg1Block::decode(b).unwrap())
        .collect();
    assert_eq!(t.blocks[0].channel, 255);
    assert_eq!(
        b[0],
        Some(Fg1Block::Interval(IntervalHeader {
            hour: 17,
            summer_time: false,
            minute: 12,
            second: 6,
            kind: 1,
            length: 8,
        }))
    );
    assert_eq!(t.blocks[1].channel, 33);
    assert_eq!(
        b[1],
        Some(Fg1Block::Result(LveResult {
            wide_counts: false,
            q_kfz: 20,
            q_lkw: 4,
            v_pkw: 110,
            v_lkw: 85,
            extra: LveExtra::V0,
        }))
    );
    assert_eq!(t.blocks[2].channel, 34);
    assert_eq!(
        b[2],
        Some(Fg1Block::Result(LveResult {
            wide_counts: false,
            q_kfz: 12,
            q_lkw: 0,
            v_pkw: 120,
            v_lkw: 0xFF,
            extra: LveExtra::V3 {
                net_gap_ds: 45,
                occupancy_pct: 7,
                s_kfz: 11,
                v_kfz: 118,
            },
        }))
    );

    let mut obs = Vec::new();
    ud.observations(&mut obs);
    let reports: Vec<_> = obs
        .into_iter()
        .map(|o| match o {
            Observation::Interval(r) => r,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(reports.len(), 2);
    let (a, c) = (&reports[0], &reports[1]);
    assert_eq!(
        (a.lane, a.volume, a.speed_avg_kmh),
        (33, Some(20), Some(105.0))
    );
    assert_eq!((a.occupancy, a.gap_avg_s), (None, None));
    assert_eq!(
        (c.lane, c.volume, c.speed_avg_kmh),
        (34, Some(12), Some(120.0))
    );
    assert_eq!(c.occupancy, Some(0.07));
    assert_eq!(c.gap_avg_s, Some(4.5));
    for r in &reports {
        assert_eq!((r.start, r.interval_s, r.class_counts), (None, None, None));
        assert_eq!((r.speed_p85_kmh, r.headway_avg_s), (None, None));
    }
}

#[test]
fn fixture_re_encodes_to_the_same_octets() {
    let wire = hex(FG1_USER_DATA);
    let ud = tls::decode_user_data(&wire).unwrap();
    let mut again = Vec::new();
    tls::encode_user_data(&ud, &mut again).unwrap();
    assert_eq!(again, wire);
    for block in &ud.osi7.telegrams[0].blocks {
        let typed = Fg1Block::decode(block).unwrap().unwrap();
        assert_eq!(&typed.to_block(block.channel).unwrap(), block);
    }
}

#[test]
fn every_truncation_of_the_fixture_is_an_error_with_an_offset_inside() {
    let wire = hex(FG1_USER_DATA);
    for cut in 0..wire.len() {
        let e = tls::decode_user_data(&wire[..cut]).unwrap_err();
        assert!(
            e.offset <= cut,
            "cut {cut}: offset {} beyond the data",
            e.offset
        );
    }
    // cut inside the third block: the single telegram's length octet (user data offset 5)
    // is the first to promise more than is there
    let e = tls::decode_user_data(&wire[..30]).unwrap_err();
    assert_eq!(e.offset, 5);
}

#[test]
fn osi3_offsets_shift_osi7_errors() {
    // two routing pairs, then a container shorter than its header
    let e = tls::decode_user_data(&[0x10, 1, 2, 3, 4, 0xAA]).unwrap_err();
    assert_eq!(e.offset, 5);
}

// ---- properties ----

fn arb_block() -> impl Strategy<Value = DeBlock> {
    (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(channel, de_type, data)| DeBlock {
            channel,
            de_type,
            data,
        })
}

fn arb_telegram() -> impl Strategy<Value = Telegram> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(arb_block(), 0..6),
    )
        .prop_map(|(fg, id, job, blocks)| Telegram {
            fg,
            id,
            job,
            blocks,
        })
}

fn arb_container() -> impl Strategy<Value = Osi7Container> {
    (
        0..=Osi7Container::MAX_NODE,
        proptest::collection::vec(arb_telegram(), 0..4),
    )
        .prop_map(|(node, telegrams)| Osi7Container { node, telegrams })
}

fn arb_osi3() -> impl Strategy<Value = Osi3Header> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<[u8; 2]>(), 0..=7),
    )
        .prop_flat_map(|(p, r, routing)| {
            let n = routing.len() as u8;
            (0..=n).prop_map(move |pointer| Osi3Header {
                priority_class_2: p,
                reserved: r,
                pointer,
                routing: routing.clone(),
            })
        })
}

fn arb_lve() -> impl Strategy<Value = LveResult> {
    let extra = prop_oneof![
        Just(LveExtra::V0),
        any::<u8>().prop_map(|g| LveExtra::V1 { net_gap_ds: g }),
        any::<u8>().prop_map(|b| LveExtra::V2 { occupancy_pct: b }),
        any::<[u8; 4]>().prop_map(|[g, b, s, v]| LveExtra::V3 {
            net_gap_ds: g,
            occupancy_pct: b,
            s_kfz: s,
            v_kfz: v
        }),
    ];
    (
        any::<bool>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        extra,
    )
        .prop_map(|(wide, qk, ql, vp, vl, extra)| LveResult {
            wide_counts: wide,
            q_kfz: if wide { qk } else { qk & 0xFF },
            q_lkw: if wide { ql } else { ql & 0xFF },
            v_pkw: vp,
            v_lkw: vl,
            extra,
        })
}

fn arb_fg1() -> impl Strategy<Value = Fg1Block> {
    prop_oneof![
        arb_lve().prop_map(Fg1Block::Result),
        (0u8..24, any::<bool>(), any::<[u8; 4]>()).prop_map(|(hour, summer_time, [m, s, k, l])| {
            Fg1Block::Interval(IntervalHeader {
                hour,
                summer_time,
                minute: m,
                second: s,
                kind: k,
                length: l,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn container_roundtrip(c in arb_container()) {
        let mut wire = Vec::new();
        tls::encode_container(&c, &mut wire).unwrap();
        prop_assert_eq!(tls::decode_container(&wire).unwrap(), c);
    }

    #[test]
    fn user_data_roundtrip_and_truncations_fail(osi3 in arb_osi3(), osi7 in arb_container()) {
        let ud = TlsUserData { osi3, osi7 };
        let mut wire = Vec::new();
        tls::encode_user_data(&ud, &mut wire).unwrap();
        prop_assert_eq!(tls::decode_user_data(&wire).unwrap(), ud);
        for cut in 0..wire.len() {
            let e = tls::decode_user_data(&wire[..cut]);
            prop_assert!(e.is_err(), "prefix of {} octets decoded", cut);
        }
    }

    #[test]
    fn fg1_block_roundtrip(block in arb_fg1(), channel in any::<u8>()) {
        let wire = block.to_block(channel).unwrap();
        prop_assert_eq!(Fg1Block::decode(&wire).unwrap(), Some(block));
    }

    #[test]
    fn arbitrary_octets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(e) = tls::decode_container(&bytes) {
            prop_assert!(e.offset <= bytes.len());
        }
        if let Ok(ud) = tls::decode_user_data(&bytes) {
            let mut obs = Vec::new();
            ud.observations(&mut obs);
            let _ = ud.osi7.fg1_blocks().count();
        }
        let frame = Ft12Frame::Variable {
            control: codecs::ft12::Control::from_byte(0x08),
            address: 1,
            data: bytes.clone(),
        };
        let mut obs = Vec::new();
        frame.observations(&mut obs);
    }

    #[test]
    fn arbitrary_fg1_blocks_never_panic(block in arb_block()) {
        if let Ok(Some(Fg1Block::Result(r))) = Fg1Block::decode(&block) {
            let rep = r.interval_report(block.channel.into());
            if let Some(o) = rep.occupancy {
                prop_assert!((0.0..=1.0).contains(&o));
            }
            if let Some(v) = rep.speed_avg_kmh {
                prop_assert!((0.0..255.0).contains(&v));
            }
        }
    }

    #[test]
    fn encoded_user_data_rides_in_a_frame(osi7 in arb_container()) {
        let ud = TlsUserData { osi3: Osi3Header::default(), osi7 };
        let mut data = Vec::new();
        tls::encode_user_data(&ud, &mut data).unwrap();
        prop_assume!(data.len() <= Ft12::new().max_user_data());
        let frame = Ft12Frame::Variable {
            control: codecs::ft12::Control::from_byte(0x08),
            address: 7,
            data,
        };
        let mut wire = Vec::new();
        Ft12::new().encode(&frame, &mut wire).unwrap();
        let (back, _) = Ft12::new().decode(&wire).unwrap().unwrap();
        prop_assert_eq!(back.tls().unwrap().unwrap(), ud);
    }
}
