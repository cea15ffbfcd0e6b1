//! What `/metrics` and `/health` say, computed from the [`crate::counters`] at request time.
//!
//! The exposition is rendered by hand in the Prometheus text format (0.0.4) rather than
//! through `prometheus-client`: every figure already lives in an atomic or a snapshot that
//! the pipeline keeps anyway, so a registry would only duplicate state (or need a custom
//! collector of about the same size as this renderer). Names are `ingest_*`, counters end in
//! `_total`, and labels are bounded: source id, kind, class, error_type. Error text never
//! becomes a label. Nothing is exported for parts that do not run yet (the uplink).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aggregate::DetectorHealth;
use crate::counters::{DECODE_ERROR_TYPES, PipelineCounters, SourceCounters};
use crate::sources::camera::health::{CameraHealth, CameraView};
use crate::spool::ClassStat;

/// A pipeline task that has not beaten for this long is considered stalled (`/health`
/// fails, the systemd watchdog is no longer pinged).
pub const STALL_AFTER: Duration = Duration::from_secs(5);
/// A source without an event for this long makes `/health` degraded.
pub const QUIET_SOURCE_AFTER: Duration = Duration::from_secs(300);

/// One running source as the endpoints list it.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub id: String,
    /// `serial`, `mqtt`, `camera` or `simulated`.
    pub kind: &'static str,
    pub counters: Arc<SourceCounters>,
    /// Stream health, for cameras.
    pub camera: Option<Arc<CameraHealth>>,
}

/// The sources currently running; the supervisor updates it on reload.
pub type SourceList = Arc<RwLock<Vec<SourceEntry>>>;

/// A copy of the source list (a poisoned lock still holds a usable list).
pub fn snapshot(list: &SourceList) -> Vec<SourceEntry> {
    list.read()
        .map(|l| l.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

/// True while the aggregator and the spool writer have both beaten within [`STALL_AFTER`].
pub fn pipeline_moving(c: &PipelineCounters) -> bool {
    let fresh = |age: Option<Duration>| age.is_some_and(|a| a <= STALL_AFTER);
    fresh(c.aggregator_beat.age()) && fresh(c.spool_writer_beat.age())
}

/// (name, help, figure) of a per-source counter.
type PerSource = (&'static str, &'static str, fn(&SourceCounters) -> u64);
/// (name, type, help, figure) of a per-class spool metric.
type PerClass = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ClassStat) -> u64,
);

/// (name, help, flag) of a detector health flag.
type DetectorFlag = (&'static str, &'static str, fn(&DetectorHealth) -> bool);

struct Out {
    text: String,
}

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn age_s(now: DateTime<Utc>, unix_ms: i64) -> f64 {
    (now.timestamp_millis().saturating_sub(unix_ms)).max(0) as f64 / 1000.0
}

fn last_event_ms(c: &SourceCounters) -> Option<i64> {
    Some(c.last_event_unix_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
}

/// The `/metrics` body.
pub fn render(c: &PipelineCounters, sources: &[SourceEntry], now: DateTime<Utc>) -> String {
    let mut o = Out {
        text: String::with_capacity(4096),
    };
    let per_source: [PerSource; 8] = [
        ("ingest_source_frames_total", "Frames decoded.", |s| {
            s.frames_total.load(Ordering::Relaxed)
        }),
        (
            "ingest_source_bytes_total",
            "Bytes read from the device.",
            |s| s.bytes_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_source_events_total",
            "Vehicle events handed to the aggregator.",
            |s| s.events_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_source_ring_dropped_total",
            "Events dropped because the source's ring was full.",
            |s| s.ring_dropped_events_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_source_session_errors_total",
            "Source sessions that failed (each followed by a backoff).",
            |s| s.errors_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_source_sessions_total",
            "Source sessions started.",
            |s| s.sessions_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_source_replayed_messages_total",
            "Raw MQTT messages replayed from the spool at start into the bins open at the last stop.",
            |s| s.replayed_messages_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_source_redeliveries_skipped_total",
            "Redelivered MQTT messages whose events were already counted before a restart.",
            |s| s.redeliveries_skipped_total.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, pick) in per_source {
        o.header(name, "counter", help);
        for s in sources {
            o.sample(
                name,
                &[("source", &s.id), ("kind", s.kind)],
                pick(&s.counters),
            );
        }
    }
    let name = "ingest_source_decode_errors_total";
    o.header(name, "counter", "Decode errors by kind.");
    for s in sources {
        for (ty, n) in DECODE_ERROR_TYPES
            .iter()
            .zip(s.counters.decode_errors_total.iter())
        {
            let labels = [
                ("source", s.id.as_str()),
                ("kind", s.kind),
                ("error_type", ty),
            ];
            o.sample(name, &labels, n.load(Ordering::Relaxed));
        }
    }
    let name = "ingest_source_last_event_age_seconds";
    o.header(
        name,
        "gauge",
        "Wall time since the source's last event (absent before the first).",
    );
    for s in sources {
        if let Some(ms) = last_event_ms(&s.counters) {
            o.sample(name, &[("source", &s.id), ("kind", s.kind)], age_s(now, ms));
        }
    }
    let name = "ingest_source_up";
    o.header(
        name,
        "gauge",
        "1 while the source runs a session, 0 while it backs off after a failure.",
    );
    for s in sources {
        let up = !s.counters.backing_off.load(Ordering::Relaxed);
        o.sample(name, &[("source", &s.id), ("kind", s.kind)], u8::from(up));
    }

    render_cameras(&mut o, sources, now);

    let agg = c.aggregator_stats();
    let global: [(&str, &str, &str, u64); 5] = [
        (
            "ingest_samples_produced_total",
            "counter",
            "Traffic samples produced by the aggregator.",
            agg.bins_emitted,
        ),
        (
            "ingest_samples_spooled_total",
            "counter",
            "Traffic samples appended to the spool.",
            c.samples_spooled_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_late_events_total",
            "counter",
            "Observations dropped because their bin had already been emitted.",
            agg.late_dropped,
        ),
        (
            "ingest_spool_syncs_total",
            "counter",
            "fsyncs of the spool.",
            c.spool_syncs_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_spool_durable_seq",
            "gauge",
            "Every spool record up to this sequence number is on stable storage.",
            c.spool_durable_seq.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, v) in global {
        o.header(name, kind, help);
        o.sample(name, &[], v);
    }

    render_detectors(&mut o, &c.detector_health());

    if let Some(st) = c.spool_stat() {
        let classes: [(&str, &ClassStat); 2] = [("sample", &st.samples), ("raw", &st.raw)];
        let per_class: [PerClass; 6] = [
            (
                "ingest_spool_bytes",
                "gauge",
                "Bytes of spool segment files.",
                |k| k.bytes,
            ),
            ("ingest_spool_records", "gauge", "Records on disk.", |k| {
                k.records
            }),
            (
                "ingest_spool_evicted_segments_total",
                "counter",
                "Segments evicted to stay within spool.max_bytes.",
                |k| k.eviction.evicted_segments,
            ),
            (
                "ingest_spool_evicted_records_total",
                "counter",
                "Records evicted to stay within spool.max_bytes.",
                |k| k.eviction.evicted_records,
            ),
            (
                "ingest_spool_evicted_bytes_total",
                "counter",
                "Bytes evicted to stay within spool.max_bytes.",
                |k| k.eviction.evicted_bytes,
            ),
            (
                "ingest_spool_evicted_unacked_records_total",
                "counter",
                "Samples evicted before the uplink acknowledged them: data lost.",
                |k| k.eviction.evicted_unacked_records,
            ),
        ];
        for (name, kind, help, pick) in per_class {
            o.header(name, kind, help);
            for (class, k) in classes {
                o.sample(name, &[("class", class)], pick(k));
            }
        }
        let name = "ingest_spool_max_bytes";
        o.header(name, "gauge", "The spool's bound (spool.max_bytes).");
        o.sample(name, &[], st.max_total_bytes);
        let name = "ingest_spool_oldest_age_seconds";
        o.header(
            name,
            "gauge",
            "Age of the oldest record on disk (absent when empty).",
        );
        if let Some(ms) = st.oldest_appended_at_ms {
            o.sample(name, &[], age_s(now, ms));
        }
    }
    render_uplink(&mut o, c, now);
    o.text
}

/// (name, type, help, figure) of a per-camera metric.
type PerCamera = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CameraHealth) -> f64,
);

/// Stream health of the cameras, labelled by source id.
fn render_cameras(o: &mut Out, sources: &[SourceEntry], now: DateTime<Utc>) {
    let cameras: Vec<(&str, &CameraHealth, &SourceCounters)> = sources
        .iter()
        .filter_map(|s| {
            s.camera
                .as_deref()
                .map(|h| (s.id.as_str(), h, &*s.counters))
        })
        .collect();
    if cameras.is_empty() {
        return;
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let per_camera: [PerCamera; 17] = [
        (
            "ingest_camera_fps",
            "gauge",
            "Video frames per second over the last 2 s.",
            |h| h.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
        (
            "ingest_camera_bitrate_bits_per_second",
            "gauge",
            "Video bitrate over the last 2 s.",
            |h| h.bitrate_bps.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_keyframe_interval_seconds",
            "gauge",
            "Wall time between the last two keyframes.",
            |h| h.keyframe_interval_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
        (
            "ingest_camera_keyframes_total",
            "counter",
            "Keyframes received.",
            |h| h.keyframes_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_rtp_lost_packets_total",
            "counter",
            "RTP packets lost before reaching the box.",
            |h| h.rtp_lost_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_timestamp_jumps_total",
            "counter",
            "RTP timestamp jumps and resets (each starts a new timeline).",
            |h| h.timestamp_jumps_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_vehicle_objects_total",
            "counter",
            "Objects of a vehicle class in ONVIF analytics frames.",
            |h| h.vehicle_objects_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_non_vehicle_crossings_total",
            "counter",
            "Line crossings not counted: the camera classed the object as no vehicle.",
            |h| h.non_vehicle_crossings_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_damaged_frames_total",
            "counter",
            "Frames kept out of the ring after an RTP loss, until the next keyframe.",
            |h| h.damaged_frames_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_live_sessions",
            "gauge",
            "RTSP sessions playing (0 or 1).",
            |h| h.live_sessions.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_metadata_documents_total",
            "counter",
            "ONVIF metadata documents parsed.",
            |h| h.metadata_documents_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_metadata_errors_total",
            "counter",
            "ONVIF metadata documents refused.",
            |h| h.metadata_errors_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_clips_total",
            "counter",
            "Clips written.",
            |h| h.clips_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_clip_failures_total",
            "counter",
            "Clips not written (writer behind, disk error, no video).",
            |h| h.clip_failures_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_ring_capacity_bytes",
            "gauge",
            "Bytes allocated for the pre-event video ring.",
            |h| h.ring_capacity_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_ring_used_bytes",
            "gauge",
            "Bytes of video in the pre-event ring.",
            |h| h.ring_used_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "ingest_camera_ring_seconds",
            "gauge",
            "Seconds of video in the pre-event ring.",
            |h| h.ring_span_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
    ];
    for (name, kind, help, pick) in per_camera {
        o.header(name, kind, help);
        for (id, h, _) in &cameras {
            o.sample(name, &[("source", id)], pick(h));
        }
    }
    let now_ms = now.timestamp_millis();
    let name = "ingest_camera_reconnects_total";
    o.header(name, "counter", "Sessions started after the first.");
    for (id, _, c) in &cameras {
        o.sample(
            name,
            &[("source", id)],
            load(&c.sessions_total).max(1.0) - 1.0,
        );
    }
    let name = "ingest_camera_last_frame_age_seconds";
    o.header(
        name,
        "gauge",
        "Wall time since the last video frame (absent before the first).",
    );
    for (id, h, _) in &cameras {
        if let Some(ms) = h.last_frame_age_ms(now_ms) {
            o.sample(name, &[("source", id)], ms as f64 / 1000.0);
        }
    }
    let name = "ingest_camera_up";
    o.header(
        name,
        "gauge",
        "1 while the camera's last frame is younger than its down_after_s.",
    );
    for (id, h, _) in &cameras {
        o.sample(name, &[("source", id)], u8::from(!h.is_down(now_ms)));
    }
}

/// Age of the oldest sample not yet committed centrally, in seconds (0 when none waits).
pub fn uplink_lag_s(c: &PipelineCounters, now: DateTime<Utc>) -> f64 {
    c.spool_stat()
        .and_then(|s| s.oldest_unacked_appended_at_ms)
        .map_or(0.0, |ms| age_s(now, ms))
}

fn render_uplink(o: &mut Out, c: &PipelineCounters, now: DateTime<Utc>) {
    let u = &c.uplink;
    if !u.enabled.load(Ordering::Relaxed) {
        return;
    }
    let name = "ingest_uplink_lag_seconds";
    o.header(
        name,
        "gauge",
        "Age of the oldest spooled sample not yet committed centrally (0: none waiting).",
    );
    o.sample(name, &[], uplink_lag_s(c, now));
    let name = "ingest_uplink_batches_total";
    o.header(
        name,
        "counter",
        "Batches committed, by outcome: fresh (copied), merged (after a conflict), replay (already stored).",
    );
    for (outcome, n) in [
        ("fresh", &u.batches_fresh_total),
        ("merged", &u.batches_merged_total),
        ("replay", &u.batches_replayed_total),
    ] {
        o.sample(name, &[("outcome", outcome)], n.load(Ordering::Relaxed));
    }
    let counters: [(&str, &str, &str, u64); 6] = [
        (
            "ingest_uplink_rows_total",
            "counter",
            "Samples in committed batches.",
            u.rows_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_uplink_errors_total",
            "counter",
            "Failed uplink sessions and batches (each followed by a backoff).",
            u.errors_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_uplink_rejected_samples_total",
            "counter",
            "Samples skipped because the database cannot store them.",
            u.rejected_samples_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_uplink_heartbeats_total",
            "counter",
            "Heartbeats written to edge_node.",
            u.heartbeats_total.load(Ordering::Relaxed),
        ),
        (
            "ingest_uplink_connected",
            "gauge",
            "1 while a database session is open.",
            u64::from(u.connected.load(Ordering::Relaxed)),
        ),
        (
            "ingest_uplink_consecutive_errors",
            "gauge",
            "Uplink failures in a row (0 after a success).",
            u.consecutive_errors.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, v) in counters {
        o.header(name, kind, help);
        o.sample(name, &[], v);
    }
    let name = "ingest_uplink_last_commit_age_seconds";
    o.header(
        name,
        "gauge",
        "Wall time since the last committed batch (absent before the first).",
    );
    let last = u.last_commit_unix_ms.load(Ordering::Relaxed);
    if last > 0 {
        o.sample(name, &[], age_s(now, last));
    }
}

/// Detector health flags, labelled by site and detector (both from the configuration).
fn render_detectors(o: &mut Out, detectors: &[DetectorHealth]) {
    let flags: [DetectorFlag; 4] = [
        (
            "ingest_detector_chattering",
            "1 when a lane of the detector chattered in its last bin.",
            DetectorHealth::chatter,
        ),
        (
            "ingest_detector_locked_on",
            "1 when a lane has shown occupancy 1.0 for too long.",
            DetectorHealth::locked_on,
        ),
        (
            "ingest_detector_constant_occupancy",
            "1 when a lane has shown the same non-zero occupancy for several bins.",
            DetectorHealth::constant_occupancy,
        ),
        (
            "ingest_detector_no_hits",
            "1 when an active lane has seen no vehicle for too long.",
            DetectorHealth::no_hits,
        ),
    ];
    for (name, help, flag) in flags {
        o.header(name, "gauge", help);
        for d in detectors {
            let labels = [("site", d.site_id.as_str()), ("detector", &d.detector_id)];
            o.sample(name, &labels, u8::from(flag(d)));
        }
    }
    let name = "ingest_detector_skewed_observations_total";
    o.header(
        name,
        "counter",
        "Observations binned by box time because the device clock was off.",
    );
    for d in detectors {
        let labels = [("site", d.site_id.as_str()), ("detector", &d.detector_id)];
        o.sample(name, &labels, d.skewed_total);
    }
    let name = "ingest_detector_clock_skew_seconds";
    o.header(
        name,
        "gauge",
        "Last measured box time minus device time (absent when the device sends no time).",
    );
    for d in detectors {
        if let Some(ms) = d.clock_skew_ms {
            let labels = [("site", d.site_id.as_str()), ("detector", &d.detector_id)];
            o.sample(name, &labels, ms as f64 / 1000.0);
        }
    }
}

/// Overall state of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
    Failing,
}

/// The `/health` body.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub status: Status,
    /// Why the status is not `ok`, in short fixed phrases.
    pub reasons: Vec<String>,
    pub sources: Vec<SourceHealth>,
    pub aggregator: TaskHealth,
    pub spool: SpoolHealth,
    /// Absent when no uplink is configured.
    pub uplink: Option<UplinkHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UplinkHealth {
    pub connected: bool,
    /// Age of the oldest sample not yet committed centrally (0: none waiting).
    pub lag_s: f64,
    pub rows_total: u64,
    pub batches_total: u64,
    pub errors_total: u64,
    pub consecutive_errors: u64,
    pub last_commit_age_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub id: String,
    pub kind: &'static str,
    /// `running` or `backoff`.
    pub state: &'static str,
    pub last_event_age_s: Option<f64>,
    pub consecutive_errors: u64,
    pub errors_total: u64,
    pub events_total: u64,
    /// Stream health, for cameras.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskHealth {
    /// False when the task has not beaten within [`STALL_AFTER`].
    pub alive: bool,
    pub last_beat_age_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpoolHealth {
    pub writer: TaskHealth,
    pub bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub sample_records: Option<u64>,
    pub durable_seq: u64,
    /// Highest sample sequence number acknowledged upstream (0: none; there is no uplink yet,
    /// so every sample on disk is unsent).
    pub acked_seq: Option<u64>,
    /// Age of the oldest sample record on disk (absent when there is none).
    pub oldest_sample_age_s: Option<f64>,
    pub evicted_unacked_records: Option<u64>,
}

fn task(age: Option<Duration>) -> TaskHealth {
    TaskHealth {
        alive: age.is_some_and(|a| a <= STALL_AFTER),
        last_beat_age_s: age.map(|a| a.as_secs_f64()),
    }
}

/// Assesses the daemon: `failing` when the aggregator or spool writer is stalled or every
/// source is failing; `degraded` when some source fails or is quiet, a detector is locked
/// on, chatters, sees no hits or shows a constant occupancy, or samples were evicted before
/// acknowledgement; `ok` otherwise.
pub fn health(c: &PipelineCounters, sources: &[SourceEntry], now: DateTime<Utc>) -> HealthReport {
    let sources: Vec<SourceHealth> = sources
        .iter()
        .map(|s| {
            let k = &s.counters;
            SourceHealth {
                id: s.id.clone(),
                kind: s.kind,
                state: if k.backing_off.load(Ordering::Relaxed) {
                    "backoff"
                } else {
                    "running"
                },
                last_event_age_s: last_event_ms(k).map(|ms| age_s(now, ms)),
                consecutive_errors: k.consecutive_errors.load(Ordering::Relaxed),
                errors_total: k.errors_total.load(Ordering::Relaxed),
                events_total: k.events_total.load(Ordering::Relaxed),
                camera: s.camera.as_ref().map(|h| {
                    h.view(
                        now.timestamp_millis(),
                        k.sessions_total.load(Ordering::Relaxed),
                    )
                }),
            }
        })
        .collect();
    let aggregator = task(c.aggregator_beat.age());
    let stat = c.spool_stat();
    let spool = SpoolHealth {
        writer: task(c.spool_writer_beat.age()),
        bytes: stat.as_ref().map(|s| s.total_bytes),
        max_bytes: stat.as_ref().map(|s| s.max_total_bytes),
        sample_records: stat.as_ref().map(|s| s.samples.records),
        durable_seq: c.spool_durable_seq.load(Ordering::Relaxed),
        acked_seq: stat.as_ref().map(|s| s.acked_seq),
        oldest_sample_age_s: stat
            .as_ref()
            .and_then(|s| s.samples.oldest_appended_at_ms)
            .map(|ms| age_s(now, ms)),
        evicted_unacked_records: stat
            .as_ref()
            .map(|s| s.samples.eviction.evicted_unacked_records),
    };

    let mut failing = Vec::new();
    let mut degraded = Vec::new();
    if !aggregator.alive {
        failing.push("aggregator stalled".to_owned());
    }
    if !spool.writer.alive {
        failing.push("spool writer stalled".to_owned());
    }
    let is_failing = |s: &SourceHealth| s.consecutive_errors > 0;
    if !sources.is_empty() && sources.iter().all(is_failing) {
        failing.push("every source is failing".to_owned());
    } else {
        for s in &sources {
            if s.camera.as_ref().is_some_and(|c| !c.up) {
                degraded.push(format!("camera {} down", s.id));
            } else if is_failing(s) {
                degraded.push(format!("source {} failing", s.id));
            } else if s
                .last_event_age_s
                .is_some_and(|a| a > QUIET_SOURCE_AFTER.as_secs_f64())
            {
                degraded.push(format!("source {} quiet", s.id));
            }
        }
    }
    for d in c.detector_health() {
        let flags = [
            (d.locked_on(), "locked on"),
            (d.chatter(), "chattering"),
            (d.no_hits(), "no hits"),
            (d.constant_occupancy(), "constant occupancy"),
        ];
        for (_, what) in flags.iter().filter(|(on, _)| *on) {
            degraded.push(format!("detector {} {what}", d.detector_id));
        }
    }
    if spool.evicted_unacked_records.is_some_and(|n| n > 0) {
        degraded.push("spool evicted unacknowledged samples".to_owned());
    }
    let u = &c.uplink;
    let uplink = u.enabled.load(Ordering::Relaxed).then(|| {
        let last = u.last_commit_unix_ms.load(Ordering::Relaxed);
        UplinkHealth {
            connected: u.connected.load(Ordering::Relaxed),
            lag_s: uplink_lag_s(c, now),
            rows_total: u.rows_total.load(Ordering::Relaxed),
            batches_total: [
                &u.batches_fresh_total,
                &u.batches_merged_total,
                &u.batches_replayed_total,
            ]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum(),
            errors_total: u.errors_total.load(Ordering::Relaxed),
            consecutive_errors: u.consecutive_errors.load(Ordering::Relaxed),
            last_commit_age_s: (last > 0).then(|| age_s(now, last)),
        }
    });
    if uplink.as_ref().is_some_and(|u| u.consecutive_errors > 0) {
        degraded.push("uplink failing".to_owned());
    }
    let (status, reasons) = if !failing.is_empty() {
        (Status::Failing, failing)
    } else if !degraded.is_empty() {
        (Status::Degraded, degraded)
    } else {
        (Status::Ok, Vec::new())
    };
    HealthReport {
        status,
        reasons,
        sources,
        aggregator,
        spool,
        uplink,
    }
}

/// The short human line for systemd's `STATUS=`.
pub fn status_line(c: &PipelineCounters, sources: &[SourceEntry]) -> String {
    let up = sources
        .iter()
        .filter(|s| !s.counters.backing_off.load(Ordering::Relaxed))
        .count();
    let samples = c.samples_spooled_total.load(Ordering::Relaxed);
    let mib = c.spool_bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    format!(
        "{up}/{} sources up, {samples} samples spooled, spool {mib:.1} MiB",
        sources.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> SourceEntry {
        SourceEntry {
            id: id.to_owned(),
            kind: "simulated",
            counters: Arc::new(SourceCounters::default()),
            camera: None,
        }
    }

    #[test]
    fn metrics_have_bounded_labels_and_escape_values() {
        let c = PipelineCounters::default();
        let s = entry("a\"b");
        s.counters.events_total.store(7, Ordering::Relaxed);
        s.counters.decode_error(&codecs::DecodeErrorKind::Checksum {
            carried: 1,
            computed: 2,
        });
        let text = render(&c, &[s], crate::clock::wall_now());
        assert!(
            text.contains("ingest_source_events_total{source=\"a\\\"b\",kind=\"simulated\"} 7"),
            "{text}"
        );
        assert!(text.contains(
            "ingest_source_decode_errors_total{source=\"a\\\"b\",kind=\"simulated\",error_type=\"checksum\"} 1"
        ));
        assert!(text.contains("# TYPE ingest_samples_produced_total counter"));
        assert!(!text.contains("uplink"));
    }

    #[test]
    fn health_fails_when_the_pipeline_stalls_and_degrades_on_a_failing_source() {
        let c = PipelineCounters::default();
        let sources = [entry("a"), entry("b")];
        let h = health(&c, &sources, crate::clock::wall_now());
        assert_eq!(h.status, Status::Failing, "no beat yet: {:?}", h.reasons);
        c.aggregator_beat.beat();
        c.spool_writer_beat.beat();
        assert_eq!(
            health(&c, &sources, crate::clock::wall_now()).status,
            Status::Ok
        );
        assert!(pipeline_moving(&c));
        sources[0]
            .counters
            .consecutive_errors
            .store(2, Ordering::Relaxed);
        let h = health(&c, &sources, crate::clock::wall_now());
        assert_eq!(h.status, Status::Degraded);
        assert_eq!(h.reasons, ["source a failing"]);
        sources[1]
            .counters
            .consecutive_errors
            .store(1, Ordering::Relaxed);
        assert_eq!(
            health(&c, &sources, crate::clock::wall_now()).status,
            Status::Failing
        );
    }
}
