//! The pipeline's clock: the time sources stamp arrivals with and the aggregator bins by.
//!
//! A [`PipelineClock`] is an origin (a UTC time) plus the monotonic time elapsed since it
//! was made, times a scale. With scale 1 and origin "now" it is the box clock (monotonic:
//! it does not follow NTP steps made while the daemon runs). A scale above 1 and an origin
//! of one's choice exist **for demos and tests with simulated sources only**: simulated
//! traffic then runs N times faster than the wall clock (a 30 s bin closes every 30/N s) and
//! a test can compute what the simulator produced from a known start.
//!
//! It runs on [`tokio::time::Instant`], so `tokio::time::pause` drives it in tests.

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

/// Largest `--time-scale`: a day of traffic in under 30 s.
pub const MAX_TIME_SCALE: f64 = 3600.0;

/// The box's wall clock now (the workspace's chrono has no `clock` feature; std's is enough).
pub fn wall_now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

/// Scaled time since an origin; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct PipelineClock {
    origin: DateTime<Utc>,
    origin_instant: Instant,
    scale: f64,
}

impl PipelineClock {
    /// A clock that reads `origin` now and runs `scale` times as fast as the wall clock.
    /// `scale` is clamped to `(0, MAX_TIME_SCALE]`; a value that is not a finite positive
    /// number counts as 1.
    pub fn new(origin: DateTime<Utc>, scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale.min(MAX_TIME_SCALE)
        } else {
            1.0
        };
        Self {
            origin,
            origin_instant: Instant::now(),
            scale,
        }
    }

    /// The box clock: now, unscaled.
    pub fn wall() -> Self {
        Self::new(wall_now(), 1.0)
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn origin(&self) -> DateTime<Utc> {
        self.origin
    }

    /// The clock's time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.at(Instant::now())
    }

    /// The clock's time at a monotonic instant.
    pub fn at(&self, instant: Instant) -> DateTime<Utc> {
        let elapsed = instant.saturating_duration_since(self.origin_instant);
        let micros = elapsed.as_secs_f64() * self.scale * 1e6;
        self.origin + TimeDelta::microseconds(micros as i64)
    }

    /// The monotonic instant at which the clock reads `t` (now or later; a `t` before the
    /// origin maps to the origin's instant).
    pub fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        let ahead = (t - self.origin)
            .num_microseconds()
            .unwrap_or(i64::MAX)
            .max(0);
        let wall_secs = ahead as f64 / 1e6 / self.scale;
        self.origin_instant + std::time::Duration::from_secs_f64(wall_secs.min(1e9))
    }

    /// How much wall time `d` of clock time takes.
    pub fn wall_duration(&self, d: std::time::Duration) -> std::time::Duration {
        d.div_f64(self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn scaled_time_runs_faster_and_maps_back_to_instants() {
        let origin = DateTime::from_timestamp(1_709_539_200, 0).unwrap();
        let clock = PipelineClock::new(origin, 60.0);
        assert_eq!(clock.now(), origin);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(clock.now(), origin + TimeDelta::seconds(30));
        let later = origin + TimeDelta::seconds(90);
        let instant = clock.instant_at(later);
        assert_eq!(clock.at(instant), later);
        assert_eq!(
            clock.wall_duration(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn nonsense_scales_fall_back_or_clamp() {
        let origin = DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(PipelineClock::new(origin, f64::NAN).scale(), 1.0);
        assert_eq!(PipelineClock::new(origin, -2.0).scale(), 1.0);
        assert_eq!(PipelineClock::new(origin, 1e9).scale(), MAX_TIME_SCALE);
    }
}
