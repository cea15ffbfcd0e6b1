//! Incident clips: MP4 files of one camera's video around a trigger.
//!
//! A trigger (the local HTTP API, the CLI through it, or an analytics rule of the camera)
//! reaches the camera's task, which copies the pre-roll out of its ring, starting at the
//! keyframe at or before `at - pre_s`, and hands a [`ClipJob`] to the clip writer. Live
//! frames follow through the job's bounded channel until `at + post_s`; the camera task
//! only ever `try_send`s, and a clip whose writer falls behind is abandoned. The writer
//! streams samples into `.<name>.tmp`, and at the end writes the `moov` box, fsyncs, renames
//! to `<name>` and fsyncs the directory: a clip is whole or absent. A clip is finalised when
//! its last frame arrives or, if the camera went silent, [`FINALISE_GRACE`] after its end.
//! After each clip the directory is pruned to `clips.max_bytes`, oldest first.
//!
//! The MP4 is written here rather than with a muxer crate: one video track, one chunk, the
//! sample entry (`avc1`/`hvc1` with its parameter sets) built by retina; that is a handful of
//! boxes, and the crates that exist either want the whole file in memory or a decoder's view
//! of the parameters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::sources::camera::health::CameraHealth;
use crate::sources::camera::ring::OwnedFrame;

/// Live frames queued per clip: over a minute of 25 fps video; a writer further behind
/// than that is stuck.
pub const CLIP_FRAME_QUEUE: usize = 2048;
/// Clip jobs waiting for the writer.
pub const CLIP_JOB_QUEUE: usize = 16;
/// A clip whose camera went silent is finalised this long after its end.
pub const FINALISE_GRACE: Duration = Duration::from_millis(1000);
/// How long `clip --wait` assumes the post-roll is when not told: the largest allowed.
pub const MAX_WAIT_POST_S: u32 = edge_config::schema::MAX_POST_EVENT_S;
/// MP4 timescale: the 90 kHz of RTP video.
const TIMESCALE: u32 = 90_000;

/// A trigger from the API, for one camera's task.
#[derive(Debug)]
pub struct ClipRequest {
    /// The requested time (ms since the Unix epoch); default now.
    pub at_ms: Option<i64>,
    /// Seconds before; default (and at most) the camera's `pre_event_s`.
    pub pre_s: Option<u32>,
    /// Seconds after; default the camera's `post_event_s`.
    pub post_s: Option<u32>,
    /// The clip's file name, or why none was started.
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What a clip covers.
#[derive(Debug, Clone, Copy)]
pub struct ClipSpec {
    pub at_ms: i64,
    pub pre_s: u32,
    pub post_s: u32,
    /// Started by an analytics rule (one at a time per camera).
    pub by_rule: bool,
}

/// The MP4 sample entry of a video stream (from retina) and its picture size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleEntry {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec string, e.g. `avc1.64001F`.
    pub codec: String,
}

/// A clip for the writer: its pre-roll and the channel of its live frames.
#[derive(Debug)]
pub struct ClipJob {
    pub name: String,
    pub camera: String,
    pub end_ms: i64,
    pub entry: Arc<SampleEntry>,
    pub pre: Vec<OwnedFrame>,
    pub live: mpsc::Receiver<OwnedFrame>,
    pub abandoned: Arc<AtomicBool>,
    pub health: Option<Arc<CameraHealth>>,
}

/// The camera task's end of a clip being recorded.
#[derive(Debug)]
pub struct ActiveClip {
    tx: mpsc::Sender<OwnedFrame>,
    end_ms: i64,
    abandoned: Arc<AtomicBool>,
    pub by_rule: bool,
}

/// A clip's file name: camera id and trigger time, so names sort by time per camera.
pub fn clip_name(camera: &str, at_ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
    format!("{camera}_{}.mp4", t.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Makes the job and the camera's handle of a clip.
pub fn job(
    camera: &str,
    spec: &ClipSpec,
    entry: Arc<SampleEntry>,
    pre: Vec<OwnedFrame>,
    health: Arc<CameraHealth>,
) -> (ClipJob, ActiveClip) {
    let (tx, rx) = mpsc::channel(CLIP_FRAME_QUEUE);
    let end_ms = spec.at_ms + i64::from(spec.post_s) * 1000;
    let abandoned = Arc::new(AtomicBool::new(false));
    (
        ClipJob {
            name: clip_name(camera, spec.at_ms),
            camera: camera.to_owned(),
            end_ms,
            entry,
            pre,
            live: rx,
            abandoned: Arc::clone(&abandoned),
            health: Some(health),
        },
        ActiveClip {
            tx,
            end_ms,
            abandoned,
            by_rule: spec.by_rule,
        },
    )
}

/// Hands a live frame to every clip still recording; clips past their end are closed
/// (the writer then finalises), clips whose writer is behind are abandoned.
pub fn feed(
    active: &mut Vec<ActiveClip>,
    wall_ms: i64,
    pts_90k: i64,
    keyframe: bool,
    data: &[u8],
    health: &CameraHealth,
) {
    active.retain(|c| {
        if wall_ms > c.end_ms {
            return false;
        }
        let frame = OwnedFrame {
            wall_ms,
            pts_90k,
            keyframe,
            data: data.to_vec(),
        };
        if c.tx.try_send(frame).is_err() {
            c.abandoned.store(true, Ordering::Relaxed);
            health.clip_failures_total.fetch_add(1, Ordering::Relaxed);
            warn!("clip writer behind: clip abandoned");
            return false;
        }
        true
    });
}

/// Closes clips whose end has passed (the camera may have gone silent).
pub fn expire(active: &mut Vec<ActiveClip>, now_ms: i64) {
    active.retain(|c| now_ms <= c.end_ms);
}

/// A finished clip as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClipFile {
    pub name: String,
    pub bytes: u64,
    /// Modification time, ms since the Unix epoch.
    pub modified_ms: i64,
}

/// The finished clips in `dir`, oldest first (temporary files are not clips).
pub fn list(dir: &Path) -> std::io::Result<Vec<ClipFile>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_clip_name(&name) {
            continue;
        }
        let meta = e.metadata()?;
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        out.push(ClipFile {
            name,
            bytes: meta.len(),
            modified_ms,
        });
    }
    out.sort_by(|a, b| (a.modified_ms, &a.name).cmp(&(b.modified_ms, &b.name)));
    Ok(out)
}

/// A finished clip's name: no path, no hidden file, `.mp4`.
pub fn is_clip_name(name: &str) -> bool {
    name.ends_with(".mp4")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Removes the oldest clips until the directory holds at most `max_bytes`.
pub fn prune(dir: &Path, max_bytes: u64) -> std::io::Result<u64> {
    let clips = list(dir)?;
    let mut total: u64 = clips.iter().map(|c| c.bytes).sum();
    let mut removed = 0;
    for c in clips {
        if total <= max_bytes {
            break;
        }
        std::fs::remove_file(dir.join(&c.name))?;
        total = total.saturating_sub(c.bytes);
        removed += 1;
        info!(clip = %c.name, "oldest clip removed to stay within clips.max_bytes");
    }
    Ok(removed)
}

/// The clip writer: takes jobs until `stop`, writes each (several at once), then drains.
#[derive(Debug)]
pub struct ClipWriter {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub jobs: mpsc::Receiver<ClipJob>,
}

impl ClipWriter {
    /// Runs until every sender of jobs is gone (the cameras and the supervisor's), then
    /// finishes the clips in progress.
    pub async fn run(mut self) {
        let mut running = JoinSet::new();
        clean_temporaries(&self.dir).await;
        loop {
            tokio::select! {
                job = self.jobs.recv() => match job {
                    Some(job) => {
                        let dir = self.dir.clone();
                        let max = self.max_bytes;
                        running.spawn(async move { write_job(job, &dir, max).await });
                    }
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        // Clips in progress end with their cameras' frames (the senders are dropped as the
        // camera tasks stop) or at their deadline.
        while running.join_next().await.is_some() {}
    }
}

/// Temporary files left by a crash are incomplete clips: removed at start.
async fn clean_temporaries(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

async fn write_job(mut job: ClipJob, dir: &Path, max_bytes: u64) {
    let health = job.health.take();
    let name = job.name.clone();
    match write_clip(&mut job, dir).await {
        Ok(samples) => {
            info!(clip = %name, camera = %job.camera, samples, "clip written");
            if let Some(h) = &health {
                h.clips_total.fetch_add(1, Ordering::Relaxed);
            }
            let dir = dir.to_owned();
            let pruned = tokio::task::spawn_blocking(move || prune(&dir, max_bytes)).await;
            if let Ok(Err(e)) = pruned {
                warn!(error = %e, "cannot prune the clip directory");
            }
        }
        Err(e) => {
            warn!(clip = %name, camera = %job.camera, error = format!("{e:#}"), "clip not written");
            if let Some(h) = &health {
                h.clip_failures_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writes one clip; returns its number of samples.
async fn write_clip(job: &mut ClipJob, dir: &Path) -> anyhow::Result<usize> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", job.name));
    let result = write_clip_to(job, &tmp).await;
    match result {
        Ok(n) => {
            tokio::fs::rename(&tmp, dir.join(&job.name))
                .await
                .context("cannot rename the clip into place")?;
            let d = tokio::fs::File::open(dir).await?;
            d.sync_all()
                .await
                .context("cannot sync the clip directory")?;
            Ok(n)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

async fn write_clip_to(job: &mut ClipJob, tmp: &Path) -> anyhow::Result<usize> {
    let file = tokio::fs::File::create(tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let ftyp = ftyp();
    w.write_all(&ftyp).await?;
    let mdat_at = ftyp.len() as u64;
    // mdat with a 64-bit size, patched at the end.
    w.write_all(&1u32.to_be_bytes()).await?;
    w.write_all(b"mdat").await?;
    w.write_all(&0u64.to_be_bytes()).await?;
    let data_start = mdat_at + 16;
    let mut table = SampleTable::default();
    let first_pts = job.pre.first().map_or(0, |f| f.pts_90k);
    for f in std::mem::take(&mut job.pre) {
        table.add(&f, first_pts);
        w.write_all(&f.data).await?;
    }
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(
            u64::try_from(job.end_ms - crate::clock::wall_now().timestamp_millis()).unwrap_or(0),
        )
        + FINALISE_GRACE;
    while let Ok(Some(f)) = tokio::time::timeout_at(deadline, job.live.recv()).await {
        if table.sizes.is_empty() && !f.keyframe {
            continue;
        }
        table.add(&f, first_pts);
        w.write_all(&f.data).await?;
    }
    if job.abandoned.load(Ordering::Relaxed) {
        anyhow::bail!("abandoned: the writer fell behind the camera");
    }
    if table.sizes.is_empty() {
        anyhow::bail!("no video");
    }
    let mdat_len = table.data_bytes + 16;
    let moov = moov(&table, &job.entry, data_start);
    w.write_all(&moov).await?;
    w.flush().await?;
    let mut file = w.into_inner();
    file.seek(std::io::SeekFrom::Start(mdat_at + 8)).await?;
    file.write_all(&mdat_len.to_be_bytes()).await?;
    file.flush().await?;
    file.sync_all().await.context("cannot sync the clip")?;
    Ok(table.sizes.len())
}

/// Per-sample figures for the `stbl` boxes.
#[derive(Debug, Default)]
struct SampleTable {
    sizes: Vec<u32>,
    /// Presentation times relative to the first sample.
    pts: Vec<i64>,
    /// 1-based numbers of keyframes.
    sync: Vec<u32>,
    data_bytes: u64,
}

impl SampleTable {
    fn add(&mut self, f: &OwnedFrame, first_pts: i64) {
        self.sizes
            .push(u32::try_from(f.data.len()).unwrap_or(u32::MAX));
        self.pts.push(f.pts_90k - first_pts);
        if f.keyframe {
            self.sync
                .push(u32::try_from(self.sizes.len()).unwrap_or(u32::MAX));
        }
        self.data_bytes += f.data.len() as u64;
    }

    /// Sample durations: the gap to the next sample (at least 1 tick); the last repeats the
    /// one before it.
    fn durations(&self) -> Vec<u32> {
        let mut d: Vec<u32> = self
            .pts
            .windows(2)
            .map(|w| match w {
                [a, b] => u32::try_from((b - a).max(1)).unwrap_or(u32::MAX),
                _ => 1,
            })
            .collect();
        d.push(d.last().copied().unwrap_or(TIMESCALE / 25));
        d
    }
}

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 8);
    b.extend_from_slice(
        &u32::try_from(body.len() + 8)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 4);
    v.push(version);
    v.extend_from_slice(&flags.to_be_bytes()[1..]);
    v.extend_from_slice(body);
    mp4_box(kind, &v)
}

fn ftyp() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"isom");
    b.extend_from_slice(&0x200u32.to_be_bytes());
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        b.extend_from_slice(brand);
    }
    mp4_box(b"ftyp", &b)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn moov(t: &SampleTable, entry: &SampleEntry, data_start: u64) -> Vec<u8> {
    let durations = t.durations();
    let total: u64 = durations.iter().map(|&d| u64::from(d)).sum();
    let total32 = u32::try_from(total).unwrap_or(u32::MAX);
    let be = |v: u32| v.to_be_bytes();

    let mut mvhd = Vec::new();
    mvhd.extend_from_slice(&be(0)); // creation
    mvhd.extend_from_slice(&be(0)); // modification
    mvhd.extend_from_slice(&be(TIMESCALE));
    mvhd.extend_from_slice(&be(total32));
    mvhd.extend_from_slice(&be(0x0001_0000)); // rate 1.0
    mvhd.extend_from_slice(&[0x01, 0x00]); // volume 1.0
    mvhd.extend_from_slice(&[0; 10]);
    for m in MATRIX {
        mvhd.extend_from_slice(&be(m));
    }
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&be(2)); // next track id

    let mut tkhd = Vec::new();
    tkhd.extend_from_slice(&be(0));
    tkhd.extend_from_slice(&be(0));
    tkhd.extend_from_slice(&be(1)); // track id
    tkhd.extend_from_slice(&be(0));
    tkhd.extend_from_slice(&be(total32));
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&[0; 4]); // layer, alternate group
    tkhd.extend_from_slice(&[0; 4]); // volume, reserved
    for m in MATRIX {
        tkhd.extend_from_slice(&be(m));
    }
    tkhd.extend_from_slice(&be(entry.width << 16));
    tkhd.extend_from_slice(&be(entry.height << 16));

    let mut mdhd = Vec::new();
    mdhd.extend_from_slice(&be(0));
    mdhd.extend_from_slice(&be(0));
    mdhd.extend_from_slice(&be(TIMESCALE));
    mdhd.extend_from_slice(&be(total32));
    mdhd.extend_from_slice(&[0x55, 0xc4, 0, 0]); // "und"

    let mut hdlr = Vec::new();
    hdlr.extend_from_slice(&be(0));
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(b"VideoHandler\0");

    let vmhd = full_box(b"vmhd", 0, 1, &[0; 8]);
    let dref = full_box(
        b"dref",
        0,
        0,
        &[&be(1)[..], &full_box(b"url ", 0, 1, &[])].concat(),
    );
    let dinf = mp4_box(b"dinf", &dref);

    let stsd = full_box(b"stsd", 0, 0, &[&be(1)[..], &entry.bytes].concat());
    let mut stts_runs: Vec<(u32, u32)> = Vec::new();
    for &d in &durations {
        match stts_runs.last_mut() {
            Some((n, last)) if *last == d => *n += 1,
            _ => stts_runs.push((1, d)),
        }
    }
    let mut stts = be(u32::try_from(stts_runs.len()).unwrap_or(u32::MAX)).to_vec();
    for (n, d) in stts_runs {
        stts.extend_from_slice(&be(n));
        stts.extend_from_slice(&be(d));
    }
    let count = u32::try_from(t.sizes.len()).unwrap_or(u32::MAX);
    let mut stss = be(u32::try_from(t.sync.len()).unwrap_or(u32::MAX)).to_vec();
    for &s in &t.sync {
        stss.extend_from_slice(&be(s));
    }
    let mut stsz = be(0).to_vec();
    stsz.extend_from_slice(&be(count));
    for &s in &t.sizes {
        stsz.extend_from_slice(&be(s));
    }
    let stsc = [be(1), be(1), be(count), be(1)].concat();
    let co64 = [&be(1)[..], &data_start.to_be_bytes()].concat();
    let stbl = mp4_box(
        b"stbl",
        &[
            stsd,
            full_box(b"stts", 0, 0, &stts),
            full_box(b"stss", 0, 0, &stss),
            full_box(b"stsz", 0, 0, &stsz),
            full_box(b"stsc", 0, 0, &stsc),
            full_box(b"co64", 0, 0, &co64),
        ]
        .concat(),
    );
    let minf = mp4_box(b"minf", &[vmhd, dinf, stbl].concat());
    let mdia = mp4_box(
        b"mdia",
        &[
            full_box(b"mdhd", 0, 0, &mdhd),
            full_box(b"hdlr", 0, 0, &hdlr),
            minf,
        ]
        .concat(),
    );
    let trak = mp4_box(b"trak", &[full_box(b"tkhd", 0, 3, &tkhd), mdia].concat());
    mp4_box(b"moov", &[full_box(b"mvhd", 0, 0, &mvhd), trak].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_listing_and_pruning_oldest_first() {
        assert_eq!(
            clip_name("cam-1", 1_764_145_200_123),
            "cam-1_20251126T082000.123Z.mp4"
        );
        assert!(is_clip_name("cam-1_20251126T082000.123Z.mp4"));
        assert!(!is_clip_name("../etc/passwd.mp4"));
        assert!(!is_clip_name(".cam.mp4.tmp"));
        assert!(!is_clip_name(".hidden.mp4"));
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["a.mp4", "b.mp4", "c.mp4"].iter().enumerate() {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![0u8; 1000]).unwrap();
            let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(dir.path().join(".x.mp4.tmp"), b"partial").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 3);
        assert_eq!(prune(dir.path(), 2000).unwrap(), 1);
        let left: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(left, vec!["b.mp4", "c.mp4"]);
    }

    #[test]
    fn durations_follow_the_timestamps() {
        let mut t = SampleTable::default();
        for (i, pts) in [1000, 4600, 8200, 11_800].iter().enumerate() {
            let f = OwnedFrame {
                wall_ms: 0,
                pts_90k: *pts,
                keyframe: i == 0,
                data: vec![0; 10],
            };
            t.add(&f, 1000);
        }
        assert_eq!(t.durations(), vec![3600; 4]);
        assert_eq!(t.sync, vec![1]);
        assert_eq!(t.data_bytes, 40);
    }
}
