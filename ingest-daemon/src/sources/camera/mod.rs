//! RTSP cameras (retina): video into a pre-event ring, ONVIF analytics into vehicle events,
//! stream health for operators.
//!
//! One task per camera runs [`Camera::run_once`] under the common source loop (capped,
//! jittered backoff). A session: wait briefly for the previous session's `TEARDOWN` (retina
//! session group, so a camera never has two live sessions from us), `DESCRIBE`, `SETUP` the
//! first H.264/H.265 video stream and, with `metadata = true`, the ONVIF metadata stream,
//! `PLAY`, then read until the stream ends, falls silent for `down_after_s`, or shutdown.
//! Video is never decoded: access units go into the [`ring::VideoRing`] and to the clips
//! being written. RTP timestamp jumps and resets do not end the session: they start a new
//! [`Timeline`] segment, so clips stay monotonic.
//!
//! The task never waits on the clip writer: a clip gets its pre-roll copied out of the ring
//! and then its live frames through a bounded channel with `try_send`; a clip whose writer
//! falls behind is abandoned (counted), never the camera.

pub mod health;
pub mod ring;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use codecs::onvif::{self, MetadataEncoding};
use edge_config::{CameraSource, Transport};
use futures_util::StreamExt;
use retina::client::{
    Credentials, InitialTimestampPolicy, PlayOptions, SessionGroup, SessionOptions, SetupOptions,
    TcpTransportOptions, TeardownPolicy, UdpTransportOptions,
};
use retina::codec::{CodecItem, ParametersRef, VideoFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use self::health::{CameraHealth, RateMeter};
use self::ring::VideoRing;
use super::analytics::Analytics;
use super::{RingSender, Source, SourceItem};
use crate::clips::{self, ActiveClip, ClipJob, ClipRequest};
use crate::clock::{PipelineClock, wall_now};
use crate::counters::SourceCounters;

/// Longest wait for a `DESCRIBE`/`SETUP`/`PLAY` exchange.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the previous session's `TEARDOWN` before a new session.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);
/// A frame whose RTP time differs from the wall time since the previous frame by more than
/// this starts a new timeline.
const MAX_TIMESTAMP_DRIFT_MS: i64 = 2000;
/// Seconds of video beyond the pre-event window the ring has room for, so that it can reach
/// back to the keyframe before the window.
pub const RING_MARGIN_S: u32 = 10;
/// Cap of the retry delay of a camera.
pub const CAMERA_BACKOFF_MAX: Duration = Duration::from_secs(4);
/// How often the task marks its lanes alive and publishes ring figures.
const TICK: Duration = Duration::from_secs(1);

/// Maps RTP timestamps onto one continuous 90 kHz timeline per camera, across timestamp
/// jumps, resets and sessions.
///
/// Within a session a jump is the camera's clock changing under a continuous stream, so
/// the frame after it comes one usual frame step later, however late the daemon got to
/// it (processing lag is not a gap in the video; counting it as one made clips whose
/// frame spacing players and ffmpeg reject). Only a pause longer than
/// [`MAX_TIMESTAMP_DRIFT_MS`] between the two frames, or a new session, continues by
/// the wall clock's spacing: the video really has a gap there.
#[derive(Debug, Default)]
pub struct Timeline {
    /// (last frame's RTP time in 90 kHz units, its pts, its wall ms).
    last: Option<(i64, i64, i64)>,
    /// The usual frame spacing, 90 kHz units.
    step: i64,
    /// The next frame starts a new session.
    new_session: bool,
}

impl Timeline {
    /// The pts of a frame with RTP time `rtp_90k` arriving at `wall_ms`, and whether it
    /// starts a new segment (a jump).
    pub fn place(&mut self, rtp_90k: i64, wall_ms: i64) -> (i64, bool) {
        let Some((last_rtp, last_pts, last_wall)) = self.last else {
            self.last = Some((rtp_90k, 0, wall_ms));
            return (0, false);
        };
        let new_session = std::mem::take(&mut self.new_session);
        let d_rtp = rtp_90k - last_rtp;
        let d_wall_90k = (wall_ms - last_wall) * 90;
        let jump =
            new_session || d_rtp < 0 || (d_rtp - d_wall_90k).abs() > MAX_TIMESTAMP_DRIFT_MS * 90;
        let delta = if !jump {
            if d_rtp > 0 {
                self.step = d_rtp;
            }
            d_rtp
        } else if new_session || d_wall_90k > MAX_TIMESTAMP_DRIFT_MS * 90 {
            // A real gap: continue from the wall clock's spacing (at least one step).
            d_wall_90k.max(self.step).max(1)
        } else {
            self.step.max(1)
        };
        let pts = last_pts + delta;
        self.last = Some((rtp_90k, pts, wall_ms));
        (pts, jump)
    }

    /// A new session: its first frame continues the timeline by wall time.
    pub fn new_session(&mut self) {
        if self.last.is_some() {
            self.new_session = true;
        }
    }
}

/// One RTSP camera.
pub struct Camera {
    id: String,
    url: Url,
    creds: Option<Credentials>,
    transport: Transport,
    metadata: bool,
    group: Arc<SessionGroup>,
    health: Arc<CameraHealth>,
    counters: Arc<SourceCounters>,
    ring: VideoRing,
    timeline: Timeline,
    down_after: Duration,
    analytics: Option<(Analytics, Vec<RingSender>)>,
    clock: PipelineClock,
    clip_rx: mpsc::Receiver<ClipRequest>,
    clip_jobs: mpsc::Sender<ClipJob>,
    active: Vec<ActiveClip>,
    clip_rules: Vec<String>,
    post_event_s: u32,
    pre_event_s: u32,
    last_keyframe_ms: Option<i64>,
    /// The MP4 sample entry of the current video parameters.
    sample_entry: Option<Arc<clips::SampleEntry>>,
    /// Frames are skipped until the next keyframe (see [`Camera::on_video`]).
    damaged: bool,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may be printed (no credentials in it: the configuration refuses them).
        f.debug_struct("Camera")
            .field("id", &self.id)
            .field("url", &self.url.as_str())
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Bytes of the pre-event ring of a camera: its bitrate cap over the window plus margin.
pub fn ring_bytes(src: &CameraSource) -> usize {
    let secs = u64::from(src.pre_event_s + RING_MARGIN_S);
    usize::try_from(u64::from(src.max_bitrate_kbps) * 125 * secs).unwrap_or(usize::MAX)
}

/// What a camera task needs besides its configuration.
#[derive(Debug)]
pub struct CameraParts {
    pub health: Arc<CameraHealth>,
    pub counters: Arc<SourceCounters>,
    pub analytics: Option<(Analytics, Vec<RingSender>)>,
    pub clock: PipelineClock,
    pub clip_rx: mpsc::Receiver<ClipRequest>,
    pub clip_jobs: mpsc::Sender<ClipJob>,
}

impl Camera {
    pub fn new(src: &CameraSource, parts: CameraParts) -> Self {
        let creds = src.username.as_ref().map(|u| Credentials {
            username: u.clone(),
            password: src
                .password()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        });
        let ring = VideoRing::new(ring_bytes(src), i64::from(src.pre_event_s) * 1000);
        parts
            .health
            .ring_capacity_bytes
            .store(ring.capacity() as u64, Ordering::Relaxed);
        Self {
            id: src.id.clone(),
            url: src.url.clone(),
            creds,
            transport: src.transport,
            metadata: src.metadata,
            group: Arc::new(SessionGroup::default().named(src.id.clone())),
            health: parts.health,
            counters: parts.counters,
            ring,
            timeline: Timeline::default(),
            down_after: Duration::from_secs(u64::from(src.down_after_s)),
            analytics: parts.analytics,
            clock: parts.clock,
            clip_rx: parts.clip_rx,
            clip_jobs: parts.clip_jobs,
            active: Vec::new(),
            clip_rules: src.clip_rules.clone(),
            post_event_s: src.post_event_s,
            pre_event_s: src.pre_event_s,
            last_keyframe_ms: None,
            sample_entry: None,
            damaged: true,
        }
    }

    fn mark_alive(&mut self) {
        let now = self.clock.now();
        if let Some((_, rings)) = self.analytics.as_mut() {
            for r in rings {
                r.push(SourceItem::Alive(now));
            }
        }
    }

    fn publish_ring(&self) {
        let h = &self.health;
        h.ring_used_bytes
            .store(self.ring.used() as u64, Ordering::Relaxed);
        h.ring_span_ms.store(
            u64::try_from(self.ring.span_ms()).unwrap_or(0),
            Ordering::Relaxed,
        );
    }

    /// Waits (briefly) until the previous session of this camera is torn down.
    async fn await_previous(group: Arc<SessionGroup>) {
        let status = group.stale_sessions();
        if status.num_sessions == 0 {
            return;
        }
        let wait = async {
            let _ = group.await_teardown().await;
        };
        if tokio::time::timeout(TEARDOWN_WAIT, wait).await.is_err() {
            debug!(
                stale = status.num_sessions,
                "previous session's TEARDOWN still pending"
            );
        }
    }

    fn on_video(&mut self, frame: VideoFrame, rate: &mut RateMeter) {
        let wall_ms = wall_now().timestamp_millis();
        let h = &self.health;
        let loss = u64::from(frame.loss());
        if loss > 0 {
            h.rtp_lost_total.fetch_add(loss, Ordering::Relaxed);
        }
        let ts = frame.timestamp();
        let clock_rate = i64::from(ts.clock_rate().get());
        let rtp_90k = ts.elapsed().saturating_mul(90_000) / clock_rate.max(1);
        let (pts, jump) = self.timeline.place(rtp_90k, wall_ms);
        if jump {
            h.timestamp_jumps_total.fetch_add(1, Ordering::Relaxed);
            info!("RTP timestamp jump: continuing on a new timeline");
        }
        let key = frame.is_random_access_point();
        // After a loss, frames up to the next keyframe may refer to what was lost: they
        // stay out of the ring and the clips, which then skip a gap instead of carrying
        // pictures no decoder can rebuild.
        if loss > 0 && !key {
            self.damaged = true;
        }
        if key {
            self.damaged = false;
            h.keyframes_total.fetch_add(1, Ordering::Relaxed);
            if let Some(prev) = self.last_keyframe_ms {
                h.keyframe_interval_ms.store(
                    u64::try_from(wall_ms - prev).unwrap_or(0),
                    Ordering::Relaxed,
                );
            }
            self.last_keyframe_ms = Some(wall_ms);
        }
        let data = frame.data();
        self.counters.frames_total.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_total
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        h.last_frame_unix_ms.store(wall_ms, Ordering::Relaxed);
        rate.frame(data.len(), Instant::now().into_std(), h);
        if self.damaged {
            h.damaged_frames_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.ring.push(wall_ms, pts, key, data);
        if !self.active.is_empty() {
            clips::feed(&mut self.active, wall_ms, pts, key, data, h);
        }
    }

    fn on_metadata(&mut self, payload: &[u8], encoding: MetadataEncoding) {
        let h = &self.health;
        let doc = match onvif::decode(payload, encoding) {
            Ok(doc) => doc,
            Err(e) => {
                h.metadata_errors_total.fetch_add(1, Ordering::Relaxed);
                self.counters.decode_error(&e.kind);
                debug!(error = %e, "ONVIF metadata document refused");
                return;
            }
        };
        h.metadata_documents_total.fetch_add(1, Ordering::Relaxed);
        let triggered = doc.events.iter().any(|e| self.clip_rules.contains(&e.rule));
        if let Some((analytics, rings)) = self.analytics.as_mut() {
            let mut out = Vec::new();
            // One stream per session: `reset` at each session start forgets the counters.
            let tally = analytics.events("", &doc, &mut out);
            h.vehicle_objects_total
                .fetch_add(tally.vehicle_objects, Ordering::Relaxed);
            h.non_vehicle_crossings_total
                .fetch_add(tally.non_vehicle_crossings, Ordering::Relaxed);
            let arrival = self.clock.now();
            for (ring, event) in out {
                if let Some(tx) = rings.get_mut(ring) {
                    tx.push(SourceItem::Vehicle { event, arrival });
                }
            }
        }
        // A rule that triggers clips starts one unless one of its clips is still recording.
        if triggered && !self.active.iter().any(|c| c.by_rule) {
            let now_ms = wall_now().timestamp_millis();
            let req = clips::ClipSpec {
                at_ms: now_ms,
                pre_s: self.pre_event_s,
                post_s: self.post_event_s,
                by_rule: true,
            };
            if let Err(e) = self.start_clip(&req) {
                warn!(error = %e, "analytics rule clip not started");
            }
        }
    }

    /// Starts a clip: copies its pre-roll out of the ring and hands the job to the writer.
    fn start_clip(&mut self, spec: &clips::ClipSpec) -> anyhow::Result<String> {
        let Some(entry) = self.sample_entry.clone() else {
            bail!("no video received yet");
        };
        let from = spec.at_ms - i64::from(spec.pre_s) * 1000;
        let pre = self.ring.copy_from(from);
        if pre.is_empty() {
            bail!("no keyframe in the pre-event ring yet");
        }
        let (job, active) = clips::job(&self.id, spec, entry, pre, Arc::clone(&self.health));
        let name = job.name.clone();
        if self.clip_jobs.try_send(job).is_err() {
            self.health
                .clip_failures_total
                .fetch_add(1, Ordering::Relaxed);
            bail!("the clip writer is busy");
        }
        self.active.push(active);
        Ok(name)
    }

    fn on_clip_request(&mut self, req: ClipRequest) {
        let spec = clips::ClipSpec {
            at_ms: req.at_ms.unwrap_or_else(|| wall_now().timestamp_millis()),
            pre_s: req.pre_s.unwrap_or(self.pre_event_s).min(self.pre_event_s),
            post_s: req.post_s.unwrap_or(self.post_event_s),
            by_rule: false,
        };
        let result = self.start_clip(&spec).map_err(|e| format!("{e:#}"));
        let _ = req.reply.send(result);
    }

    async fn session(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        Self::await_previous(Arc::clone(&self.group)).await;
        let options = SessionOptions::default()
            .creds(self.creds.clone())
            .session_group(Arc::clone(&self.group))
            .teardown(TeardownPolicy::Auto)
            .user_agent(concat!("ingest-daemon/", env!("CARGO_PKG_VERSION")).to_owned());
        let mut session = handshake(
            shutdown,
            retina::client::Session::describe(self.url.clone(), options),
        )
        .await?
        .context("DESCRIBE failed")?;
        let streams = session.streams();
        let video = streams
            .iter()
            .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
            .ok_or_else(|| anyhow!("the camera offers no H.264 or H.265 video stream"))?;
        let meta = if self.metadata {
            streams.iter().enumerate().find_map(|(i, s)| {
                (s.media() == "application")
                    .then(|| MetadataEncoding::from_encoding_name(s.encoding_name()))
                    .flatten()
                    .map(|enc| (i, enc))
            })
        } else {
            None
        };
        if self.metadata && meta.is_none() {
            warn!("metadata = true but the camera offers no ONVIF metadata stream");
        }
        let transport = match self.transport {
            Transport::Tcp => retina::client::Transport::Tcp(TcpTransportOptions::default()),
            Transport::Udp => retina::client::Transport::Udp(UdpTransportOptions::default()),
        };
        for i in std::iter::once(video).chain(meta.map(|m| m.0)) {
            handshake(
                shutdown,
                session.setup(i, SetupOptions::default().transport(transport.clone())),
            )
            .await?
            .with_context(|| format!("SETUP of stream {i} failed"))?;
        }
        let playing = handshake(
            shutdown,
            session
                .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive)),
        )
        .await?
        .context("PLAY failed")?;
        let mut stream = playing.demuxed().context("cannot demux the session")?;
        self.update_params(stream.streams().get(video).and_then(|s| s.parameters()));
        info!(transport = %transport, metadata = meta.is_some(), "camera playing");
        self.health.live_sessions.store(1, Ordering::Relaxed);
        self.timeline.new_session();
        self.damaged = true;
        if let Some((a, _)) = self.analytics.as_mut() {
            a.reset();
        }
        let mut rate = RateMeter::new(Instant::now().into_std());
        let mut tick = tokio::time::interval(TICK);
        // Silence is checked on the tick rather than with a timeout around `next()`, which
        // the other branches would restart every time they fire.
        let mut last_video = Instant::now();
        // Made once: a fresh `cancelled()` per frame would register with the token anew.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let result = loop {
            tokio::select! {
                // Frames first: they are what wakes this task ~25 times a second, and the
                // other branches need no polling then. The socket's cooperative budget
                // still lets them run during a backlog.
                biased;
                item = stream.next() => match item {
                    None => break Err(anyhow!("the camera ended the stream")),
                    Some(Err(e)) => break Err(anyhow!(e).context("RTSP stream failed")),
                    Some(Ok(CodecItem::VideoFrame(f))) => {
                        last_video = Instant::now();
                        if f.has_new_parameters() {
                            self.update_params(stream.streams().get(video).and_then(|s| s.parameters()));
                        }
                        self.on_video(f, &mut rate);
                    }
                    Some(Ok(CodecItem::MessageFrame(m))) => {
                        if let Some((_, enc)) = meta {
                            self.on_metadata(m.data(), enc);
                        }
                    }
                    Some(Ok(_)) => {}
                },
                () = &mut cancelled => break Ok(()),
                Some(req) = self.clip_rx.recv() => self.on_clip_request(req),
                _ = tick.tick() => {
                    if last_video.elapsed() > self.down_after {
                        break Err(anyhow!("no video for {} s", self.down_after.as_secs()));
                    }
                    self.mark_alive();
                    self.publish_ring();
                    clips::expire(&mut self.active, wall_now().timestamp_millis());
                }
            }
        };
        self.health.live_sessions.store(0, Ordering::Relaxed);
        self.health.fps_milli.store(0, Ordering::Relaxed);
        self.health.bitrate_bps.store(0, Ordering::Relaxed);
        // Dropping the session starts its TEARDOWN (retina, in the background); the next
        // session waits for it through the group.
        drop(stream);
        result
    }

    fn update_params(&mut self, params: Option<ParametersRef<'_>>) {
        if let Some(ParametersRef::Video(v)) = params {
            match v.mp4_sample_entry().build() {
                Ok(entry) => {
                    self.sample_entry = Some(Arc::new(clips::SampleEntry {
                        bytes: entry,
                        width: v.pixel_dimensions().0,
                        height: v.pixel_dimensions().1,
                        codec: v.rfc6381_codec().to_owned(),
                    }));
                }
                Err(e) => warn!(error = %e, "cannot describe the video for MP4"),
            }
        }
    }
}

/// Races a handshake step against shutdown and [`HANDSHAKE_TIMEOUT`]. `Ok(Err(_))` is the
/// step's own failure; `Err(_)` a timeout or shutdown.
async fn handshake<T>(
    shutdown: &CancellationToken,
    step: impl std::future::Future<Output = Result<T, retina::Error>>,
) -> anyhow::Result<Result<T, retina::Error>> {
    tokio::select! {
        () = shutdown.cancelled() => Err(anyhow!("shutting down")),
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, step) => {
            r.map_err(|_| anyhow!("no answer within {} s", HANDSHAKE_TIMEOUT.as_secs()))
        }
    }
}

impl Source for Camera {
    fn id(&self) -> &str {
        &self.id
    }

    /// A camera is video evidence: it must be back within seconds of the camera (or the
    /// network) coming back, and a retry every few seconds costs one `DESCRIBE`.
    fn backoff_max(&self) -> Duration {
        CAMERA_BACKOFF_MAX
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let result = self.session(shutdown).await;
        // Requests that came while the session ended are answered from the ring.
        while let Ok(req) = self.clip_rx.try_recv() {
            self.on_clip_request(req);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_continues_across_jumps_and_resets() {
        let mut t = Timeline::default();
        // 25 fps: 3600 ticks, 40 ms apart.
        assert_eq!(t.place(1_000_000, 0), (0, false));
        assert_eq!(t.place(1_003_600, 40), (3600, false));
        // The camera's clock jumps an hour ahead.
        let (pts, jump) = t.place(1_003_600 + 90_000 * 3600, 80);
        assert!(jump);
        assert_eq!(pts, 7200);
        // ... and goes on normally from there.
        assert_eq!(t.place(1_007_200 + 90_000 * 3600, 120), (10_800, false));
        // A reset backwards.
        let (pts, jump) = t.place(0, 160);
        assert!(jump);
        assert_eq!(pts, 14_400);
        // A new session continues by wall time.
        t.new_session();
        let (pts, jump) = t.place(555, 1160);
        assert!(jump);
        assert_eq!(pts, 14_400 + 90_000);
    }

    #[test]
    fn a_jump_seen_late_is_one_frame_step_but_a_long_pause_is_a_gap() {
        let mut t = Timeline::default();
        assert_eq!(t.place(0, 0), (0, false));
        assert_eq!(t.place(3600, 40), (3600, false));
        // The clock jumps, and the daemon gets to the frame 700 ms late (a busy CPU):
        // the video goes on one frame later, not 700 ms later.
        let (pts, jump) = t.place(90_000 * 3600, 740);
        assert!(jump);
        assert_eq!(pts, 7200);
        assert_eq!(t.place(90_000 * 3600 + 3600, 780), (10_800, false));
        // Backwards, after a 5 s pause in the stream: a 5 s gap.
        let (pts, jump) = t.place(1000, 5780);
        assert!(jump);
        assert_eq!(pts, 10_800 + 5000 * 90);
    }
}
