//! The pre-event video ring of one camera: encoded access units (never decoded), newest
//! last, bounded in bytes by one buffer allocated up front and in time by the pre-event
//! window.
//!
//! Frames are stored back to back in a byte buffer used circularly; a frame that does not
//! fit before the end of the buffer starts again at its beginning (so every frame is one
//! contiguous slice). Writing evicts the oldest frames whose bytes it overwrites. Besides,
//! once a keyframe arrives, frames are dropped from the front as long as a later keyframe
//! is still older than the window: the ring always starts at the last keyframe at or before
//! `now - window`, so a clip's pre-roll can start on a keyframe.

use std::collections::VecDeque;
use std::ops::Range;

/// What an empty ring's buffer holds.
const RING_FILL: u8 = 0xA5;

/// One access unit in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Box wall time of arrival, ms since the Unix epoch.
    pub wall_ms: i64,
    /// Presentation time on the camera's continuous timeline, 90 kHz units (see
    /// [`super::Timeline`]).
    pub pts_90k: i64,
    pub keyframe: bool,
    range: (usize, usize),
}

/// A frame copied out of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    pub wall_ms: i64,
    pub pts_90k: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct VideoRing {
    buf: Vec<u8>,
    frames: VecDeque<FrameMeta>,
    /// Where the next frame goes.
    head: usize,
    window_ms: i64,
    /// Frames too large for the whole buffer (dropped, counted).
    pub oversized_total: u64,
}

impl VideoRing {
    /// A ring of `bytes` bytes (allocated now) keeping `window_ms` of video before the newest
    /// frame, plus the frames back to the keyframe that starts it.
    pub fn new(bytes: usize, window_ms: i64) -> Self {
        Self {
            // Filled (not zeroed: zeroed memory comes as untouched pages) so that every page
            // is resident from the start: the memory is really taken at start, and the
            // camera does not pay a page fault per 4 KiB of video during the first pass.
            buf: vec![RING_FILL; bytes],
            // 120 fps over the window: the metadata never reallocates for a sane camera.
            frames: VecDeque::with_capacity(
                usize::try_from(window_ms.max(1000) / 1000 * 120).unwrap_or(1024),
            ),
            head: 0,
            window_ms,
            oversized_total: 0,
        }
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes held by the frames in the ring.
    pub fn used(&self) -> usize {
        self.frames.iter().map(|f| f.range.1 - f.range.0).sum()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Wall-time span held, ms (0 when empty).
    pub fn span_ms(&self) -> i64 {
        match (self.frames.front(), self.frames.back()) {
            (Some(a), Some(b)) => b.wall_ms - a.wall_ms,
            _ => 0,
        }
    }

    /// Appends a frame, evicting what it overwrites and what the window no longer needs.
    pub fn push(&mut self, wall_ms: i64, pts_90k: i64, keyframe: bool, data: &[u8]) {
        let len = data.len();
        if len > self.buf.len() {
            self.oversized_total += 1;
            return;
        }
        let start = if self.head + len > self.buf.len() {
            // Wrapping: the frames between the old head and the end of the buffer are the
            // oldest; they go first, whatever the new frame overlaps.
            while self.frames.front().is_some_and(|f| f.range.0 >= self.head) {
                self.frames.pop_front();
            }
            0
        } else {
            self.head
        };
        let end = start + len;
        // Evict frames overlapping [start, end).
        while let Some(f) = self.frames.front() {
            let (a, b) = f.range;
            if a < end && start < b {
                self.frames.pop_front();
            } else {
                break;
            }
        }
        if let Some(dst) = self.buf.get_mut(start..end) {
            dst.copy_from_slice(data);
        }
        self.head = end;
        self.frames.push_back(FrameMeta {
            wall_ms,
            pts_90k,
            keyframe,
            range: (start, end),
        });
        if keyframe {
            self.trim(wall_ms - self.window_ms);
        }
    }

    /// Drops front frames while a later keyframe is at or before `horizon_ms`.
    fn trim(&mut self, horizon_ms: i64) {
        let last_key_before = self
            .frames
            .iter()
            .enumerate()
            .take_while(|(_, f)| f.wall_ms <= horizon_ms)
            .filter(|(_, f)| f.keyframe)
            .map(|(i, _)| i)
            .last();
        if let Some(k) = last_key_before {
            self.frames.drain(..k);
        }
    }

    /// Index of the last keyframe at or before `wall_ms`, else the first keyframe held.
    fn start_index(&self, wall_ms: i64) -> Option<usize> {
        let keys = || self.frames.iter().enumerate().filter(|(_, f)| f.keyframe);
        keys()
            .take_while(|(_, f)| f.wall_ms <= wall_ms)
            .map(|(i, _)| i)
            .last()
            .or_else(|| keys().map(|(i, _)| i).next())
    }

    /// Copies the frames from the keyframe at or before `from_wall_ms` (or the first keyframe
    /// held, when none is that old) to the newest.
    pub fn copy_from(&self, from_wall_ms: i64) -> Vec<OwnedFrame> {
        let Some(i) = self.start_index(from_wall_ms) else {
            return Vec::new();
        };
        self.frames
            .range(i..)
            .map(|f| OwnedFrame {
                wall_ms: f.wall_ms,
                pts_90k: f.pts_90k,
                keyframe: f.keyframe,
                data: self.slice(f.range.0..f.range.1).to_vec(),
            })
            .collect()
    }

    fn slice(&self, r: Range<usize>) -> &[u8] {
        self.buf.get(r).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: i64) -> Vec<u8> {
        vec![u8::try_from(i % 251).unwrap(); 100]
    }

    /// 25 fps, a keyframe every 25 frames (1 s).
    fn fill(ring: &mut VideoRing, n: i64) {
        for i in 0..n {
            ring.push(i * 40, i * 3600, i % 25 == 0, &frame(i));
        }
    }

    #[test]
    fn keeps_the_window_back_to_a_keyframe() {
        let mut ring = VideoRing::new(1 << 20, 3000);
        fill(&mut ring, 250); // 10 s
        let frames = ring.copy_from(0);
        assert!(frames[0].keyframe);
        // The newest frame is at 9960 ms: the ring starts at the keyframe at or before 6960 ms
        // as of the last keyframe (9000 ms): 6000 ms.
        assert_eq!(frames[0].wall_ms, 6000);
        assert_eq!(frames.last().unwrap().wall_ms, 9960);
        for (f, i) in frames.iter().zip(150..) {
            assert_eq!(f.data, frame(i), "frame {i}");
            assert_eq!(f.pts_90k, i * 3600);
        }
    }

    #[test]
    fn a_clip_starts_at_the_keyframe_before_the_requested_time() {
        let mut ring = VideoRing::new(1 << 20, 10_000);
        fill(&mut ring, 250);
        let frames = ring.copy_from(7500);
        assert_eq!(frames[0].wall_ms, 7000);
        assert!(frames[0].keyframe);
    }

    #[test]
    fn bytes_bound_the_ring_and_every_frame_survives_intact() {
        // Room for 10.5 frames of 100 bytes.
        let mut ring = VideoRing::new(1050, 60_000);
        fill(&mut ring, 37);
        assert!(ring.used() <= 1050);
        assert_eq!(ring.capacity(), 1050);
        let frames: Vec<_> = ring.frames.iter().copied().collect();
        assert!(frames.len() <= 10, "{}", frames.len());
        for f in &frames {
            let i = f.wall_ms / 40;
            assert_eq!(ring.slice(f.range.0..f.range.1), &frame(i)[..], "frame {i}");
        }
        // Frames are in order and contiguous in time.
        for w in frames.windows(2) {
            assert_eq!(w[1].wall_ms - w[0].wall_ms, 40);
        }
        // No keyframe left: a clip has nothing to start from.
        assert!(ring.copy_from(0).is_empty() || ring.copy_from(0)[0].keyframe);
    }

    #[test]
    fn frames_of_varying_sizes_never_corrupt_each_other() {
        let mut ring = VideoRing::new(4000, 60_000);
        let data = |i: i64| {
            vec![u8::try_from(i % 251).unwrap(); usize::try_from(1 + (i * 7919) % 900).unwrap()]
        };
        for i in 0..2000 {
            ring.push(i * 40, i * 3600, i % 10 == 0, &data(i));
            for f in &ring.frames {
                let j = f.wall_ms / 40;
                assert_eq!(
                    ring.slice(f.range.0..f.range.1),
                    &data(j)[..],
                    "frame {j} after {i}"
                );
            }
            assert!(ring.used() <= 4000);
        }
    }

    #[test]
    fn an_oversized_frame_is_dropped_and_counted() {
        let mut ring = VideoRing::new(50, 1000);
        ring.push(0, 0, true, &[0; 51]);
        assert!(ring.is_empty());
        assert_eq!(ring.oversized_total, 1);
    }
}
