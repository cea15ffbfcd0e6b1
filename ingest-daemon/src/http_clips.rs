//! The clip API on the daemon's local HTTP endpoint:
//!
//! - `POST /clips` with `{"camera": ID, "at": RFC3339?, "pre_s": N?, "post_s": N?}` starts
//!   a clip and answers `202 {"clip": NAME, "ready_by": RFC3339}`; the file appears under
//!   that name once finalised. 404 for an unknown camera, 409 when the camera cannot make
//!   one (no keyframe yet), 503 when its task does not answer in time.
//! - `GET /clips`: the finished clips, oldest first.
//! - `GET /clips/{name}`: one clip (`video/mp4`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::clips::{self, ClipRequest, FINALISE_GRACE};
use crate::http::OpsState;

/// How far ahead a clip may be asked for.
const MAX_AHEAD_MS: i64 = 60_000;
/// How long a trigger waits for the camera's task to answer.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(3);

/// Clip triggers of the running cameras, and where clips are.
#[derive(Debug, Clone, Default)]
pub struct ClipApi {
    pub dir: Option<PathBuf>,
    pub cameras: Arc<RwLock<HashMap<String, mpsc::Sender<ClipRequest>>>>,
}

impl ClipApi {
    fn camera(&self, id: &str) -> Option<mpsc::Sender<ClipRequest>> {
        let map = self.cameras.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }
}

pub fn router() -> Router<OpsState> {
    Router::new()
        .route("/clips", get(list).post(trigger))
        .route("/clips/{name}", get(download))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    camera: String,
    #[serde(default)]
    at: Option<DateTime<Utc>>,
    #[serde(default)]
    pre_s: Option<u32>,
    #[serde(default)]
    post_s: Option<u32>,
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

async fn trigger(
    State(s): State<OpsState>,
    body: Result<axum::Json<TriggerBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if body
        .post_s
        .is_some_and(|p| p > edge_config::schema::MAX_POST_EVENT_S)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("post_s: at most {}", edge_config::schema::MAX_POST_EVENT_S),
        );
    }
    let now_ms = crate::clock::wall_now().timestamp_millis();
    if body
        .at
        .is_some_and(|t| t.timestamp_millis() > now_ms + MAX_AHEAD_MS)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("at: at most {} s ahead", MAX_AHEAD_MS / 1000),
        );
    }
    let Some(tx) = s.clips.camera(&body.camera) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("camera: no running camera {:?}", body.camera),
        );
    };
    let (reply, answer) = oneshot::channel();
    let at_ms = body.at.map(|t| t.timestamp_millis());
    let req = ClipRequest {
        at_ms,
        pre_s: body.pre_s,
        post_s: body.post_s,
        reply,
    };
    if tx.try_send(req).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the camera is busy");
    }
    match tokio::time::timeout(TRIGGER_TIMEOUT, answer).await {
        Ok(Ok(Ok(name))) => {
            let end = at_ms.unwrap_or(now_ms) + i64::from(body.post_s.unwrap_or(0)) * 1000;
            let ready_by = DateTime::<Utc>::from_timestamp_millis(end)
                .map(|t| t + FINALISE_GRACE * 2)
                .map(|t| t.to_rfc3339());
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "clip": name, "ready_by": ready_by })),
            )
                .into_response()
        }
        Ok(Ok(Err(why))) => error(StatusCode::CONFLICT, why),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the camera did not answer (down or reconnecting)",
        ),
    }
}

async fn list(State(s): State<OpsState>) -> Response {
    let Some(dir) = s.clips.dir.clone() else {
        return axum::Json(Vec::<clips::ClipFile>::new()).into_response();
    };
    match tokio::task::spawn_blocking(move || clips::list(&dir)).await {
        Ok(Ok(files)) => axum::Json(files).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot list the clips"),
    }
}

async fn download(State(s): State<OpsState>, Path(name): Path<String>) -> Response {
    if !clips::is_clip_name(&name) {
        return error(StatusCode::BAD_REQUEST, "name: not a clip name");
    }
    let Some(dir) = s.clips.dir.as_ref() else {
        return error(StatusCode::NOT_FOUND, "no such clip");
    };
    // Streamed: a clip may be far larger than what should sit in memory.
    match tokio::fs::File::open(dir.join(&name)).await {
        Ok(file) => {
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
            (
                [
                    (header::CONTENT_TYPE, "video/mp4".to_owned()),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response()
        }
        Err(_) => error(StatusCode::NOT_FOUND, "no such clip"),
    }
}
