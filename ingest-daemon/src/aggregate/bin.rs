//! One open bin of one lane: what it accumulates per event, and the per-bin figures it
//! yields when it closes (before the lane-level derivations and flags of the parent module).

/// Accumulators of one bin `[start, start + interval)`. Reused through a per-lane pool so
/// that steady-state ingestion allocates nothing (the speed list keeps its capacity).
#[derive(Debug, Default)]
pub(super) struct Bin {
    pub start: i64,
    /// An event or a share of a vehicle's on-time landed here (per-vehicle lanes).
    pub touched: bool,
    /// Milliseconds of the bin the source is known to have been listening.
    pub alive_ms: i64,
    /// At least one observation in the bin had its device clock off by more than allowed.
    pub skewed: bool,
    /// Headways shorter than the chatter threshold.
    pub chatter: u32,
    pub veh: VehicleAcc,
    pub rep: ReportAcc,
}

impl Bin {
    pub fn reset(&mut self, start: i64) {
        self.start = start;
        self.touched = false;
        self.alive_ms = 0;
        self.skewed = false;
        self.chatter = 0;
        self.veh.reset();
        self.rep = ReportAcc::default();
    }
}

/// Sums over per-vehicle events.
#[derive(Debug, Default)]
pub(super) struct VehicleAcc {
    /// Vehicles whose front entered the zone in this bin.
    pub volume: u32,
    /// Σ on-time clipped to the bin.
    pub occ_ms: i64,
    /// Vehicles counted here whose on-time the device did not give.
    pub occ_missing: u32,
    pub speeds: Vec<f32>,
    pub speed_sum: f64,
    pub length_sum: f64,
    pub length_n: u32,
    pub classes: [u32; 4],
    pub classified: u32,
    pub headway_sum_ms: f64,
    pub headway_n: u32,
    pub gap_sum_ms: f64,
    pub gap_n: u32,
}

impl VehicleAcc {
    fn reset(&mut self) {
        let mut speeds = std::mem::take(&mut self.speeds);
        speeds.clear();
        *self = Self {
            speeds,
            ..Self::default()
        };
    }
}

/// A mean that is volume-weighted when the reports give a volume (Σ v·q / Σ q) and plain
/// over the reports that do not.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Weighted {
    wsum: f64,
    w: f64,
    plain_sum: f64,
    plain_n: u32,
}

impl Weighted {
    pub fn add(&mut self, value: f32, volume: Option<u32>) {
        match volume {
            // A figure over zero vehicles carries no information (some devices repeat the
            // last speed or send 0): it gets no weight.
            Some(0) => {}
            Some(q) => {
                self.wsum += f64::from(value) * f64::from(q);
                self.w += f64::from(q);
            }
            None => {
                self.plain_sum += f64::from(value);
                self.plain_n += 1;
            }
        }
    }

    pub fn mean(&self) -> Option<f32> {
        if self.w > 0.0 {
            Some((self.wsum / self.w) as f32)
        } else if self.plain_n > 0 {
            Some((self.plain_sum / f64::from(self.plain_n)) as f32)
        } else {
            None
        }
    }

    /// Vehicles (or reports, when volumes are unknown) behind the mean.
    pub fn weight(&self) -> u32 {
        if self.w > 0.0 {
            self.w as u32
        } else {
            self.plain_n
        }
    }
}

/// Sums over sub-interval reports.
#[derive(Debug, Default)]
pub(super) struct ReportAcc {
    /// The device interval of the first report in the bin; later ones must match.
    pub device_interval_ms: i64,
    pub expected: u32,
    pub received: u32,
    /// Sub-interval slots already received (for de-duplication when ≤ 64 slots).
    pub slots: u64,
    pub volume: u64,
    pub volume_n: u32,
    pub occ_sum: f64,
    pub occ_n: u32,
    pub speed: Weighted,
    pub p85: Weighted,
    pub headway: Weighted,
    pub gap: Weighted,
    pub classes: [u32; 4],
    pub classes_n: u32,
}

/// What a closed bin says before lane-level derivations (flow, estimated speed, density,
/// LOS) and flags.
#[derive(Debug, Default)]
pub(super) struct Figures {
    pub has_data: bool,
    pub volume: Option<u32>,
    pub occupancy: Option<f32>,
    pub speed_avg: Option<f32>,
    pub speed_p85: Option<f32>,
    pub speed_count: u32,
    pub headway_s: Option<f32>,
    pub gap_s: Option<f32>,
    pub length_m: Option<f32>,
    pub classes: Option<[u32; 4]>,
    pub expected: u32,
    pub received: u32,
    pub pct: f32,
}

fn mean(sum: f64, n: u32) -> Option<f32> {
    (n > 0).then(|| (sum / f64::from(n)) as f32)
}

/// The 85th percentile by the nearest-rank method: the value at rank ⌈0.85·n⌉ (1-based) of
/// the sorted speeds. Reorders `speeds`.
pub(super) fn p85_nearest_rank(speeds: &mut [f32]) -> Option<f32> {
    let n = speeds.len();
    let rank = (85 * n).div_ceil(100);
    let k = rank.checked_sub(1)?;
    if k >= n {
        return None;
    }
    let (_, v, _) = speeds.select_nth_unstable_by(k, f32::total_cmp);
    Some(*v)
}

/// Figures of a per-vehicle bin. `reports_occupancy`: the lane's device has given on-times,
/// so an empty bin's occupancy is a true 0.
pub(super) fn vehicle_figures(bin: &mut Bin, interval_ms: i64, reports_occupancy: bool) -> Figures {
    let covered = bin.alive_ms.clamp(0, interval_ms);
    let interval_s = u32::try_from(interval_ms / 1000).unwrap_or(u32::MAX);
    let mut f = Figures {
        has_data: bin.touched || covered > 0,
        expected: interval_s,
        received: u32::try_from((covered + 500) / 1000).unwrap_or(0),
        pct: (covered as f32 / interval_ms as f32) * 100.0,
        ..Figures::default()
    };
    if !f.has_data {
        return f;
    }
    let v = &mut bin.veh;
    f.volume = Some(v.volume);
    if reports_occupancy && v.occ_missing == 0 {
        f.occupancy = Some((v.occ_ms.clamp(0, interval_ms) as f64 / interval_ms as f64) as f32);
    }
    let n_speeds = u32::try_from(v.speeds.len()).unwrap_or(u32::MAX);
    f.speed_avg = mean(v.speed_sum, n_speeds);
    f.speed_p85 = p85_nearest_rank(&mut v.speeds);
    f.speed_count = n_speeds;
    f.headway_s = mean(v.headway_sum_ms, v.headway_n).map(|ms| ms / 1000.0);
    f.gap_s = mean(v.gap_sum_ms, v.gap_n).map(|ms| ms / 1000.0);
    f.length_m = mean(v.length_sum, v.length_n);
    // A bin with vehicles of which none could be classed has unknown classes; a bin known
    // to be empty has four true zeros.
    f.classes = (v.classified > 0 || v.volume == 0).then_some(v.classes);
    f
}

/// Figures of a bin fed by sub-interval reports.
pub(super) fn report_figures(bin: &Bin) -> Figures {
    let r = &bin.rep;
    let expected = r.expected.max(1);
    let mut f = Figures {
        has_data: r.received > 0,
        expected,
        received: r.received,
        pct: (r.received as f32 / expected as f32) * 100.0,
        ..Figures::default()
    };
    if !f.has_data {
        return f;
    }
    f.volume = (r.volume_n > 0).then(|| u32::try_from(r.volume).unwrap_or(u32::MAX));
    f.occupancy = mean(r.occ_sum, r.occ_n);
    f.speed_avg = r.speed.mean();
    f.speed_p85 = r.p85.mean();
    f.speed_count = if f.speed_avg.is_some() {
        r.speed.weight()
    } else {
        0
    };
    f.headway_s = r.headway.mean();
    f.gap_s = r.gap.mean();
    f.classes = if r.classes_n > 0 {
        Some(r.classes)
    } else if f.volume == Some(0) {
        Some([0; 4])
    } else {
        None
    };
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_p85() {
        assert_eq!(p85_nearest_rank(&mut []), None);
        assert_eq!(p85_nearest_rank(&mut [50.0]), Some(50.0));
        // n = 10: rank ⌈8.5⌉ = 9 → the 9th smallest.
        let mut s: Vec<f32> = (1..=10).rev().map(|v| v as f32 * 10.0).collect();
        assert_eq!(p85_nearest_rank(&mut s), Some(90.0));
        // n = 20: rank 17.
        let mut s: Vec<f32> = (1..=20).map(|v| v as f32).collect();
        assert_eq!(p85_nearest_rank(&mut s), Some(17.0));
    }

    #[test]
    fn weighted_mean_ignores_empty_reports() {
        let mut w = Weighted::default();
        w.add(100.0, Some(3));
        w.add(50.0, Some(1));
        w.add(0.0, Some(0));
        assert_eq!(w.mean(), Some(87.5));
        assert_eq!(w.weight(), 4);
    }
}
