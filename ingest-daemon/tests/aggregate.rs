//! Hand-computed cases for the aggregator: every figure below is worked out in the comments.
// Test helpers may unwrap like the tests themselves (clippy.toml allows it in #[test] fns).
#![allow(clippy::unwrap_used)]

use central_sync::{Los, Quality, SpeedSource, TrafficSample};
use chrono::{DateTime, Duration, Utc};
use codecs::model::{IntervalReport, VehicleClass, VehicleEvent};
use ingest_daemon::aggregate::{Aggregator, AggregatorConfig, DetectorId, LaneMap, Outcome};

/// 2024-03-04T08:00:00Z, a multiple of 30 s (and of 300 s).
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-04T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn at(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

fn agg(cfg: AggregatorConfig) -> (Aggregator, DetectorId) {
    let mut a = Aggregator::new(AggregatorConfig {
        edge_id: "edge-1".into(),
        ..cfg
    })
    .unwrap();
    let d = a.add_detector("site-A", "det-1", &LaneMap::identity(2));
    (a, d)
}

/// A vehicle with device time = front, reported (arriving) as it leaves the zone.
fn car(
    lane: u16,
    front_ms: i64,
    occ_ms: u32,
    speed: Option<f32>,
    len: Option<f32>,
) -> VehicleEvent {
    VehicleEvent {
        lane,
        time: Some(at(front_ms)),
        speed_kmh: speed,
        length_m: len,
        occupancy_ms: Some(occ_ms),
        headway_ms: None,
        class: None,
    }
}

fn feed(a: &mut Aggregator, d: DetectorId, ev: &VehicleEvent) -> Outcome {
    let arrival =
        ev.time.unwrap() + Duration::milliseconds(i64::from(ev.occupancy_ms.unwrap_or(0)));
    a.vehicle(d, ev, arrival)
}

/// Liveness marks every second over [from, to].
fn alive(a: &mut Aggregator, d: DetectorId, from_ms: i64, to_ms: i64) {
    let mut t = from_ms;
    while t <= to_ms {
        a.mark_detector_alive(d, at(t));
        t += 1000;
    }
}

fn find(out: &[TrafficSample], lane: u16, bucket_ms: i64) -> &TrafficSample {
    out.iter()
        .find(|s| s.lane == lane && s.bucket_start == at(bucket_ms))
        .unwrap_or_else(|| panic!("no sample for lane {lane} at {bucket_ms}"))
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-3
}

/// (front s, on-time ms, speed km/h, length m)
const SEVEN: [(f64, u32, f32, f32); 7] = [
    (1.0, 500, 100.0, 4.5),
    (4.0, 600, 90.0, 5.0),
    (8.0, 1200, 60.0, 12.0),
    (11.0, 300, 120.0, 1.9),
    (15.0, 2000, 50.0, 15.0),
    (20.0, 400, 110.0, 4.0),
    (26.0, 700, 80.0, 5.5),
];

#[test]
fn seven_vehicles_give_exact_figures() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 30_000);
    for &(s, occ, v, l) in &SEVEN {
        let ev = car(1, (s * 1000.0) as i64, occ, Some(v), Some(l));
        assert_eq!(feed(&mut a, d, &ev), Outcome::Accepted);
    }
    let mut out = Vec::new();
    // The watermark of bin [0, 30 s) is 30 s + 10 s lateness.
    a.advance(at(39_999), &mut out);
    assert!(out.is_empty());
    a.advance(at(40_000), &mut out);
    assert_eq!(out.len(), 2, "both lanes of the detector");
    let s = find(&out, 1, 0);
    assert_eq!(s.site_id, "site-A");
    assert_eq!(s.detector_id, "det-1");
    assert_eq!(s.edge_id, "edge-1");
    assert_eq!(s.interval_s, 30);
    assert_eq!(s.volume, Some(7));
    // 7 · 3600 / 30
    assert_eq!(s.flow_vph, Some(840.0));
    // (500 + 600 + 1200 + 300 + 2000 + 400 + 700) / 30 000 = 5 700 / 30 000
    assert!(close(s.occupancy.unwrap(), 0.19));
    // 610 / 7
    assert!(close(s.speed_avg_kmh.unwrap(), 87.142_86));
    // sorted 50 60 80 90 100 110 120; rank ⌈0.85·7⌉ = 6 → 110
    assert_eq!(s.speed_p85_kmh, Some(110.0));
    assert_eq!(s.speed_count, 7);
    assert_eq!(s.speed_source, SpeedSource::Measured);
    // headways 3 4 3 4 5 6 s (the first vehicle has none) → 25 / 6
    assert!(close(s.headway_avg_s.unwrap(), 25.0 / 6.0));
    // gaps = headway − previous on-time: 2.5 3.4 1.8 3.7 3.0 5.6 → 20 / 6
    assert!(close(s.gap_avg_s.unwrap(), 20.0 / 6.0));
    // 47.9 / 7
    assert!(close(s.length_avg_m.unwrap(), 47.9 / 7.0));
    // moto 1.9; short 4.5 5.0 4.0 5.5; medium 12.0; long 15.0
    assert_eq!(s.class_counts, Some([1, 4, 1, 1]));
    // 840 / 87.142 = 9.639 veh/km: LOS B (6.835 < d ≤ 11.18)
    assert!(close(s.density_vpkm.unwrap(), 840.0 / (610.0 / 7.0)));
    assert_eq!(s.los, Some(Los::B));
    assert_eq!(s.samples_expected, 30);
    assert_eq!(s.samples_received, 30);
    assert!(close(s.pct_observed, 100.0));
    assert_eq!(s.quality, Quality::empty());

    // Lane 2 was listened to and nothing passed: a true zero, not missing.
    let s2 = find(&out, 2, 0);
    assert_eq!(s2.volume, Some(0));
    assert_eq!(s2.flow_vph, Some(0.0));
    assert_eq!(s2.class_counts, Some([0, 0, 0, 0]));
    assert_eq!(s2.density_vpkm, Some(0.0));
    assert_eq!(s2.los, Some(Los::A));
    assert_eq!(s2.speed_avg_kmh, None);
    assert_eq!(s2.speed_source, SpeedSource::None);
    assert_eq!(s2.quality, Quality::empty());
}

#[test]
fn device_class_and_headway_win_over_derived_ones() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 30_000);
    let mut ev = car(1, 5_000, 400, Some(80.0), Some(4.0));
    ev.class = Some(VehicleClass::Long);
    ev.headway_ms = Some(2_500);
    feed(&mut a, d, &ev);
    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    let s = find(&out, 1, 0);
    assert_eq!(s.class_counts, Some([0, 0, 0, 1]));
    assert_eq!(s.headway_avg_s, Some(2.5));
    // No previous vehicle in the lane: its on-time is unknown, so no gap.
    assert_eq!(s.gap_avg_s, None);
}

#[test]
fn g_factor_estimates_speed_without_measured_speeds() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 30_000);
    for &(s, occ, _, l) in &SEVEN {
        feed(&mut a, d, &car(1, (s * 1000.0) as i64, occ, None, Some(l)));
    }
    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    let s = find(&out, 1, 0);
    // 840 veh/h · 6.7 m / (0.19 · 1000) = 29.621 km/h
    assert!(close(s.speed_avg_kmh.unwrap(), 840.0 * 6.7 / 190.0));
    assert_eq!(s.speed_p85_kmh, None);
    assert_eq!(s.speed_count, 0);
    assert_eq!(s.speed_source, SpeedSource::Estimated);
    assert!(s.quality.contains(Quality::EST_SPEED));
    // density = flow / speed = occupancy · 1000 / g = 28.36 veh/km: LOS F
    assert!(close(s.density_vpkm.unwrap(), 190.0 / 6.7));
    assert_eq!(s.los, Some(Los::F));
}

#[test]
fn a_vehicle_straddling_the_boundary_splits_its_on_time() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 60_000);
    // On-time [29.5 s, 30.5 s): 500 ms in each bin; counted in the bin of its front.
    feed(&mut a, d, &car(1, 29_500, 1_000, Some(90.0), Some(4.0)));
    let mut out = Vec::new();
    a.advance(at(70_000), &mut out);
    let first = find(&out, 1, 0);
    assert_eq!(first.volume, Some(1));
    assert!(close(first.occupancy.unwrap(), 500.0 / 30_000.0));
    let second = find(&out, 1, 30_000);
    assert_eq!(second.volume, Some(0));
    assert!(close(second.occupancy.unwrap(), 500.0 / 30_000.0));
    // Occupied but nobody entered: that is what the flag says, and it is true here.
    assert!(second.quality.contains(Quality::ZERO_FLOW_POS_OCC));
}

#[test]
fn watermark_waits_for_stragglers_then_drops_late_events() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 35_000);
    let mut out = Vec::new();
    // Front 29 s, arrives 29.5 s; fed while the box is already in the next bin.
    a.advance(at(35_000), &mut out);
    assert!(out.is_empty());
    assert_eq!(
        feed(&mut a, d, &car(1, 29_000, 500, Some(90.0), None)),
        Outcome::Accepted
    );
    a.advance(at(40_000), &mut out);
    assert_eq!(find(&out, 1, 0).volume, Some(1));

    // The bin is gone: a straggler is counted and dropped, the bin is not emitted again.
    out.clear();
    assert_eq!(
        feed(&mut a, d, &car(1, 29_600, 300, Some(90.0), None)),
        Outcome::Late
    );
    a.advance(at(40_001), &mut out);
    assert!(out.is_empty());
    assert_eq!(a.stats().late_dropped, 1);
    assert_eq!(a.stats().events_accepted, 1);
    let h = a.health(at(40_001));
    assert_eq!(h.detectors[0].lanes[0].late_total, 1);
}

#[test]
fn a_lanes_first_vehicle_may_arrive_in_the_next_bin() {
    let (mut a, d) = agg(AggregatorConfig::default());
    // Nothing before it: front 29.8 s, arrives 30.3 s. Its bin starts the series.
    assert_eq!(
        feed(&mut a, d, &car(1, 29_800, 500, None, None)),
        Outcome::Accepted
    );
    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    assert_eq!(find(&out, 1, 0).volume, Some(1));
}

#[test]
fn no_data_is_not_zero() {
    let (mut a, d) = agg(AggregatorConfig::default());
    // Alive over the first bin only.
    alive(&mut a, d, 0, 30_000);
    feed(&mut a, d, &car(1, 3_000, 400, Some(100.0), Some(4.0)));
    let mut out = Vec::new();
    a.advance(at(100_000), &mut out);
    // Bins 0, 30 s and 60 s are due at 100 s.
    assert_eq!(out.len(), 6);
    let live = find(&out, 1, 0);
    assert_eq!(live.volume, Some(1));
    // Bin 30 s got only the instant of the last mark: nothing known about it.
    for bucket in [30_000, 60_000] {
        for lane in [1, 2] {
            let s = find(&out, lane, bucket);
            assert_eq!(s.volume, None, "lane {lane} at {bucket}");
            assert_eq!(s.flow_vph, None);
            assert_eq!(s.occupancy, None);
            assert_eq!(s.class_counts, None);
            assert_eq!(s.los, None);
            assert_eq!(s.samples_received, 0);
            assert_eq!(s.pct_observed, 0.0);
            assert_eq!(s.quality, Quality::NO_DATA);
        }
    }
    assert_eq!(a.stats().no_data_bins, 4);
}

#[test]
fn partial_liveness_is_insufficient() {
    let (mut a, d) = agg(AggregatorConfig::default());
    // Listening 0–15 s only: half the bin.
    alive(&mut a, d, 0, 15_000);
    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    let s = find(&out, 1, 0);
    assert_eq!(s.volume, Some(0));
    assert_eq!(s.samples_expected, 30);
    assert_eq!(s.samples_received, 15);
    assert!(close(s.pct_observed, 50.0));
    assert!(s.quality.contains(Quality::INSUFFICIENT));
}

fn report(lane: u16, start_ms: i64, interval_s: u32) -> IntervalReport {
    IntervalReport {
        start: Some(at(start_ms)),
        interval_s: Some(interval_s),
        ..IntervalReport::on_lane(lane)
    }
}

#[test]
fn sub_interval_reports_accumulate_with_coverage() {
    let (mut a, d) = agg(AggregatorConfig::default());
    // 10 s reports into 30 s bins: expected 3.
    // Lane 1: slots 0 and 2 arrive (slot 1 is missing).
    let r0 = IntervalReport {
        volume: Some(4),
        occupancy: Some(0.10),
        speed_avg_kmh: Some(100.0),
        class_counts: Some([0, 3, 1, 0]),
        ..report(1, 0, 10)
    };
    let r2 = IntervalReport {
        volume: Some(2),
        occupancy: Some(0.05),
        speed_avg_kmh: Some(70.0),
        class_counts: Some([0, 2, 0, 0]),
        ..report(1, 20_000, 10)
    };
    assert_eq!(a.interval(d, &r0, at(10_300)), Outcome::Accepted);
    assert_eq!(a.interval(d, &r2, at(30_300)), Outcome::Accepted);
    assert_eq!(a.interval(d, &r2, at(30_400)), Outcome::Duplicate);
    // Lane 2: only slot 0.
    let r = IntervalReport {
        volume: Some(1),
        occupancy: Some(0.02),
        speed_avg_kmh: Some(90.0),
        ..report(2, 0, 10)
    };
    assert_eq!(a.interval(d, &r, at(10_300)), Outcome::Accepted);
    // A 20 s report does not divide 30 s.
    assert_eq!(
        a.interval(d, &report(2, 0, 20), at(20_100)),
        Outcome::IntervalMismatch
    );
    // A vehicle on a report lane is refused.
    assert_eq!(
        feed(&mut a, d, &car(1, 5_000, 300, None, None)),
        Outcome::KindMismatch
    );

    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    let s = find(&out, 1, 0);
    // Volume sums what arrived, not normalised.
    assert_eq!(s.volume, Some(6));
    assert_eq!(s.flow_vph, Some(720.0));
    // mean of received: (0.10 + 0.05) / 2
    assert!(close(s.occupancy.unwrap(), 0.075));
    // volume-weighted: (4·100 + 2·70) / 6 = 90
    assert!(close(s.speed_avg_kmh.unwrap(), 90.0));
    assert_eq!(s.speed_count, 6);
    assert_eq!(s.class_counts, Some([0, 5, 1, 0]));
    assert_eq!((s.samples_expected, s.samples_received), (3, 2));
    assert!(close(s.pct_observed, 200.0 / 3.0));
    assert_eq!(s.quality, Quality::empty());

    let s2 = find(&out, 2, 0);
    assert_eq!((s2.samples_expected, s2.samples_received), (3, 1));
    assert!(close(s2.pct_observed, 100.0 / 3.0));
    assert!(s2.quality.contains(Quality::INSUFFICIENT));
    assert_eq!(s2.volume, Some(1));
}

#[test]
fn reports_without_any_arrival_are_no_data() {
    let (mut a, d) = agg(AggregatorConfig::default());
    let r = IntervalReport {
        volume: Some(0),
        occupancy: Some(0.0),
        ..report(1, 0, 30)
    };
    a.interval(d, &r, at(30_500));
    let mut out = Vec::new();
    a.advance(at(70_000), &mut out);
    let zero = find(&out, 1, 0);
    assert_eq!(zero.volume, Some(0));
    assert_eq!(zero.quality, Quality::empty());
    let missing = find(&out, 1, 30_000);
    assert_eq!(missing.volume, None);
    assert_eq!((missing.samples_expected, missing.samples_received), (1, 0));
    assert_eq!(missing.quality, Quality::NO_DATA);
}

#[test]
fn locked_on_after_two_minutes_of_full_occupancy() {
    let (mut a, d) = agg(AggregatorConfig::default());
    let mut out = Vec::new();
    for k in 0..6 {
        let r = IntervalReport {
            volume: Some(0),
            occupancy: Some(1.0),
            ..report(1, k * 30_000, 30)
        };
        assert_eq!(
            a.interval(d, &r, at(k * 30_000 + 30_200)),
            Outcome::Accepted
        );
    }
    a.advance(at(6 * 30_000 + 10_000), &mut out);
    let flags: Vec<bool> = (0..6)
        .map(|k| {
            find(&out, 1, k * 30_000)
                .quality
                .contains(Quality::LOCKED_ON)
        })
        .collect();
    // 4 bins of 30 s make the 2 minutes.
    assert_eq!(flags, [false, false, false, true, true, true]);
    let s = find(&out, 1, 0);
    assert!(s.quality.contains(Quality::HIGH_OCC));
    assert!(s.quality.contains(Quality::ZERO_FLOW_POS_OCC));
    assert!(a.health(at(200_000)).detectors[0].locked_on());

    // A normal bin ends the run.
    let r = IntervalReport {
        volume: Some(3),
        occupancy: Some(0.1),
        ..report(1, 180_000, 30)
    };
    a.interval(d, &r, at(210_100));
    out.clear();
    a.advance(at(220_000), &mut out);
    assert!(!find(&out, 1, 180_000).quality.contains(Quality::LOCKED_ON));
    assert!(!a.health(at(220_000)).detectors[0].locked_on());
}

#[test]
fn constant_occupancy_after_n_equal_bins() {
    let (mut a, d) = agg(AggregatorConfig {
        constant_occ_bins: 3,
        ..AggregatorConfig::default()
    });
    for k in 0..4 {
        let r = IntervalReport {
            volume: Some(5),
            occupancy: Some(0.125),
            ..report(1, k * 30_000, 30)
        };
        a.interval(d, &r, at(k * 30_000 + 30_200));
    }
    let mut out = Vec::new();
    a.advance(at(4 * 30_000 + 10_000), &mut out);
    let flags: Vec<bool> = (0..4)
        .map(|k| {
            find(&out, 1, k * 30_000)
                .quality
                .contains(Quality::CONSTANT_OCC)
        })
        .collect();
    assert_eq!(flags, [false, false, true, true]);
    assert!(a.health(at(200_000)).detectors[0].constant_occupancy());
}

#[test]
fn skewed_device_clock_is_flagged_and_box_time_used() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 60_000);
    // The device says 25.0 s but the box receives it at 32.4 s (on-time 400 ms): the device
    // is 7 s behind. Box time puts the front at 32.0 s, in the second bin.
    let ev = car(1, 25_000, 400, Some(100.0), None);
    assert_eq!(a.vehicle(d, &ev, at(32_400)), Outcome::Accepted);
    // Within tolerance (1.5 s): the device time is trusted.
    let ev = car(1, 29_000, 500, Some(100.0), None);
    assert_eq!(a.vehicle(d, &ev, at(31_000)), Outcome::Accepted);
    let mut out = Vec::new();
    a.advance(at(70_000), &mut out);
    let first = find(&out, 1, 0);
    assert_eq!(first.volume, Some(1));
    assert!(!first.quality.contains(Quality::CLOCK_SKEW));
    let second = find(&out, 1, 30_000);
    assert_eq!(second.volume, Some(1));
    assert!(second.quality.contains(Quality::CLOCK_SKEW));
    let h = a.health(at(70_000));
    assert_eq!(h.detectors[0].clock_skew_ms, Some(1_500));
    assert_eq!(h.detectors[0].max_abs_clock_skew_ms, 7_000);
    assert_eq!(h.detectors[0].skewed_total, 1);
}

#[test]
fn decode_errors_and_ring_drops_flag_the_detectors_bins() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 60_000);
    a.note_decode_error(d, at(3_000));
    a.note_ring_drops(d, 5, at(45_000));
    let mut out = Vec::new();
    a.advance(at(70_000), &mut out);
    for lane in [1, 2] {
        assert!(find(&out, lane, 0).quality.contains(Quality::CRC_ERRORS));
        assert!(!find(&out, lane, 0).quality.contains(Quality::RING_DROPS));
        assert!(
            find(&out, lane, 30_000)
                .quality
                .contains(Quality::RING_DROPS)
        );
        assert!(
            !find(&out, lane, 30_000)
                .quality
                .contains(Quality::CRC_ERRORS)
        );
    }
    let h = a.health(at(70_000));
    assert_eq!(h.detectors[0].decode_errors_total, 1);
    assert_eq!(h.detectors[0].ring_drops_total, 5);
}

#[test]
fn high_volume_scales_with_the_interval() {
    for (interval_s, n, flagged) in [
        (30, 20, false),
        (30, 21, true),
        (60, 40, false),
        (60, 41, true),
    ] {
        let (mut a, d) = agg(AggregatorConfig {
            interval_s,
            ..AggregatorConfig::default()
        });
        let span = i64::from(interval_s) * 1000;
        alive(&mut a, d, 0, span);
        for k in 0..n {
            feed(
                &mut a,
                d,
                &car(1, k * (span / (n + 1)), 100, Some(100.0), None),
            );
        }
        let mut out = Vec::new();
        a.advance(at(span + 10_000), &mut out);
        let s = find(&out, 1, 0);
        assert_eq!(s.volume, Some(n as u32));
        assert_eq!(
            s.quality.contains(Quality::HIGH_VOLUME),
            flagged,
            "{interval_s} s, {n}"
        );
    }
}

#[test]
fn chatter_and_no_hits_show_in_health() {
    let (mut a, d) = agg(AggregatorConfig {
        no_hits_ms: 60_000,
        ..AggregatorConfig::default()
    });
    alive(&mut a, d, 0, 30_000);
    // Four vehicles 100 ms apart: three chatter headways.
    for k in 0..4 {
        feed(&mut a, d, &car(1, 1_000 + k * 100, 50, None, None));
    }
    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    let h = a.health(at(40_000));
    let lane1 = &h.detectors[0].lanes[0];
    assert_eq!(lane1.chatter_total, 3);
    assert!(lane1.chattering);
    assert!(h.detectors[0].chatter());
    assert!(!lane1.no_hits);
    // Lane 2 never had a hit since it became active at 0 s.
    assert!(!h.detectors[0].lanes[1].no_hits);
    assert!(a.health(at(61_000)).detectors[0].lanes[1].no_hits);
}

#[test]
fn open_bins_are_capped_and_the_oldest_closed_early() {
    let (mut a, d) = agg(AggregatorConfig {
        max_open_bins_per_lane: 2,
        ..AggregatorConfig::default()
    });
    // Three bins' worth of vehicles with no advance between them.
    for k in 0..3 {
        assert_eq!(
            feed(&mut a, d, &car(1, k * 30_000 + 1_000, 200, None, None)),
            Outcome::Accepted
        );
    }
    assert_eq!(a.stats().bins_forced_closed, 1);
    let mut out = Vec::new();
    a.advance(at(0), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(find(&out, 1, 0).volume, Some(1));
    a.flush_all(&mut out);
    let total: u32 = out.iter().filter_map(|s| s.volume).sum();
    assert_eq!(total, 3);
}

#[test]
fn flush_all_emits_open_bins_and_marks_short_ones_insufficient() {
    let (mut a, d) = agg(AggregatorConfig::default());
    alive(&mut a, d, 0, 40_000);
    feed(&mut a, d, &car(1, 35_000, 400, Some(80.0), None));
    let mut out = Vec::new();
    a.advance(at(40_000), &mut out);
    assert_eq!(out.len(), 2);
    out.clear();
    a.flush_all(&mut out);
    // Lane 1 had the vehicle; lane 2 was marked alive too: both have an open bin.
    assert_eq!(out.len(), 2);
    let s = find(&out, 1, 30_000);
    assert_eq!(s.volume, Some(1));
    // Listened 30–40 s of the bin: a third.
    assert!(close(s.pct_observed, 100.0 / 3.0));
    assert!(s.quality.contains(Quality::INSUFFICIENT));
    // Nothing left: a later event for that bin is late.
    out.clear();
    a.flush_all(&mut out);
    assert!(out.is_empty());
    assert_eq!(
        feed(&mut a, d, &car(1, 36_000, 400, None, None)),
        Outcome::Late
    );
}

#[test]
fn unmapped_lanes_and_unknown_detectors_are_counted() {
    let mut a = Aggregator::new(AggregatorConfig::default()).unwrap();
    let d = a.add_detector("s", "d", &LaneMap::from_pairs([(7, 1)]).unwrap());
    assert_eq!(a.add_detector("s", "d", &LaneMap::identity(4)), d);
    assert_eq!(
        feed(&mut a, d, &car(1, 0, 100, None, None)),
        Outcome::UnmappedLane
    );
    assert_eq!(
        feed(&mut a, d, &car(7, 0, 100, None, None)),
        Outcome::Accepted
    );
    let other = a.add_detector("s", "other", &LaneMap::identity(1));
    assert_ne!(other, d);
    assert_eq!(a.stats().unmapped_lane, 1);
    let h = a.health(at(0));
    assert_eq!(h.detectors.len(), 2);
    assert_eq!(h.detectors[0].unmapped_lane_total, 1);
    assert_eq!(h.detectors[0].lanes.len(), 1);
    assert_eq!(h.detectors[0].lanes[0].lane, 1);
}

#[test]
fn open_series_yields_no_data_for_a_silent_detector() {
    let (mut a, d) = agg(AggregatorConfig::default());
    a.open_series(d, at(0));
    let mut out = Vec::new();
    a.advance(at(70_000), &mut out);
    assert_eq!(out.len(), 4);
    assert!(
        out.iter()
            .all(|s| s.quality == Quality::NO_DATA && s.volume.is_none())
    );
}

#[test]
fn a_clock_jump_skips_instead_of_flooding() {
    let (mut a, d) = agg(AggregatorConfig {
        max_catchup_bins: 10,
        ..AggregatorConfig::default()
    });
    a.open_series(d, at(0));
    let mut out = Vec::new();
    a.advance(at(30 * 24 * 3_600_000), &mut out);
    assert_eq!(out.len(), 20, "10 per lane");
    assert!(a.stats().bins_skipped > 0);
}

#[test]
fn config_is_validated() {
    for cfg in [
        AggregatorConfig {
            interval_s: 0,
            ..AggregatorConfig::default()
        },
        AggregatorConfig {
            interval_s: 7,
            ..AggregatorConfig::default()
        },
        AggregatorConfig {
            max_open_bins_per_lane: 1,
            ..AggregatorConfig::default()
        },
        AggregatorConfig {
            g_factor_m: 0.0,
            ..AggregatorConfig::default()
        },
    ] {
        assert!(Aggregator::new(cfg).is_err());
    }
    for interval_s in [30, 60, 300] {
        assert!(
            Aggregator::new(AggregatorConfig {
                interval_s,
                ..AggregatorConfig::default()
            })
            .is_ok()
        );
    }
}
