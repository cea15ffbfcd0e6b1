//! Stream health of one camera: what `/metrics` and `status` say about its video.
//!
//! The receiving task writes atomics; readers never wait on it. Rates (fps, bitrate) are
//! measured over windows of [`RATE_WINDOW`] by the task itself, so a reader gets the last
//! complete window's figure without any history.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Length of a rate measurement window.
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Per-camera health figures.
#[derive(Debug, Default)]
pub struct CameraHealth {
    /// The camera counts as down when its last frame is older than this (ms).
    pub down_after_ms: AtomicI64,
    pub keyframes_total: AtomicU64,
    /// RTP packets reported lost by the depacketiser.
    pub rtp_lost_total: AtomicU64,
    /// RTP timestamp jumps and resets (each starts a new timeline).
    pub timestamp_jumps_total: AtomicU64,
    /// Frames kept out of the ring after a loss, until the next keyframe.
    pub damaged_frames_total: AtomicU64,
    /// ONVIF metadata documents parsed, and those that failed to parse.
    pub metadata_documents_total: AtomicU64,
    pub metadata_errors_total: AtomicU64,
    /// Line crossings of objects the camera classed as something other than a vehicle.
    pub non_vehicle_crossings_total: AtomicU64,
    /// Vehicle objects seen in analytics frames.
    pub vehicle_objects_total: AtomicU64,
    /// Frames per second ×1000 over the last window.
    pub fps_milli: AtomicU64,
    /// Video bits per second over the last window.
    pub bitrate_bps: AtomicU64,
    /// Wall time between the last two keyframes, ms (0: not yet known).
    pub keyframe_interval_ms: AtomicU64,
    /// Wall time of the last video frame, ms since the Unix epoch (0: none yet).
    pub last_frame_unix_ms: AtomicI64,
    /// 1 while an RTSP session is playing.
    pub live_sessions: AtomicU64,
    /// Clips written, and clips that failed.
    pub clips_total: AtomicU64,
    pub clip_failures_total: AtomicU64,
    /// Bytes allocated for the pre-event ring, and bytes used by the frames in it.
    pub ring_capacity_bytes: AtomicU64,
    pub ring_used_bytes: AtomicU64,
    /// Wall-time span of the frames in the ring, ms.
    pub ring_span_ms: AtomicU64,
}

/// A reader's view.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    pub up: bool,
    pub fps: f64,
    pub bitrate_kbps: f64,
    pub keyframe_interval_s: Option<f64>,
    pub last_frame_age_s: Option<f64>,
    pub reconnects: u64,
    pub rtp_lost_total: u64,
    pub timestamp_jumps_total: u64,
    pub ring_seconds: f64,
    pub clips_total: u64,
}

impl CameraHealth {
    pub fn new(down_after: Duration) -> Self {
        let h = Self::default();
        h.down_after_ms.store(
            i64::try_from(down_after.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        h
    }

    /// Age of the last frame at `now_ms`, if any frame came.
    pub fn last_frame_age_ms(&self, now_ms: i64) -> Option<i64> {
        let last = self.last_frame_unix_ms.load(Ordering::Relaxed);
        (last > 0).then(|| (now_ms - last).max(0))
    }

    /// Down: no frame yet, or none for longer than `down_after`.
    pub fn is_down(&self, now_ms: i64) -> bool {
        self.last_frame_age_ms(now_ms)
            .is_none_or(|age| age > self.down_after_ms.load(Ordering::Relaxed))
    }

    pub fn view(&self, now_ms: i64, sessions_total: u64) -> CameraView {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let kf = load(&self.keyframe_interval_ms);
        CameraView {
            up: !self.is_down(now_ms),
            fps: load(&self.fps_milli) as f64 / 1000.0,
            bitrate_kbps: load(&self.bitrate_bps) as f64 / 1000.0,
            keyframe_interval_s: (kf > 0).then(|| kf as f64 / 1000.0),
            last_frame_age_s: self.last_frame_age_ms(now_ms).map(|ms| ms as f64 / 1000.0),
            reconnects: sessions_total.saturating_sub(1),
            rtp_lost_total: load(&self.rtp_lost_total),
            timestamp_jumps_total: load(&self.timestamp_jumps_total),
            ring_seconds: load(&self.ring_span_ms) as f64 / 1000.0,
            clips_total: load(&self.clips_total),
        }
    }
}

/// The receiving task's rate meter.
#[derive(Debug)]
pub struct RateMeter {
    started: Instant,
    frames: u64,
    bytes: u64,
}

impl RateMeter {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            frames: 0,
            bytes: 0,
        }
    }

    /// Counts a frame; publishes the rates into `health` when a window is complete.
    pub fn frame(&mut self, bytes: usize, now: Instant, health: &CameraHealth) {
        self.frames += 1;
        self.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= RATE_WINDOW {
            let secs = elapsed.as_secs_f64();
            health.fps_milli.store(
                (self.frames as f64 * 1000.0 / secs) as u64,
                Ordering::Relaxed,
            );
            health
                .bitrate_bps
                .store((self.bytes as f64 * 8.0 / secs) as u64, Ordering::Relaxed);
            *self = Self::new(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_a_window_and_down_after_silence() {
        let h = CameraHealth::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        // 25 fps of 20 000-byte frames for 2 s: 4 Mbit/s.
        for i in 1..=50u32 {
            m.frame(20_000, t0 + Duration::from_millis(u64::from(i) * 40), &h);
        }
        assert_eq!(h.fps_milli.load(Ordering::Relaxed), 25_000);
        assert_eq!(h.bitrate_bps.load(Ordering::Relaxed), 4_000_000);
        assert!(h.is_down(1_000_000), "no frame yet");
        h.last_frame_unix_ms.store(1_000_000, Ordering::Relaxed);
        assert!(!h.is_down(1_005_000));
        assert!(h.is_down(1_005_001));
        let v = h.view(1_002_000, 3);
        assert_eq!(v.reconnects, 2);
        assert_eq!(v.last_frame_age_s, Some(2.0));
    }
}
