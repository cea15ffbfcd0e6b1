//! The registry: `/api/cameras/`, `/api/detectors/`, `/api/patrols/`, `/api/edges/`.
//!
//! Who may do what: admins create, replace (`PUT`, the whole record) and delete; admin,
//! operator, analyst and patrol read. A patrol's status (availability and position) is
//! set by its own crew (`patrol` users of that patrol), an operator or an admin.
//!
//! Edge status comes from the boxes' heartbeats (`edge_node`, written by central-sync):
//! `online` when the last one is at most 2 minutes old, `stale` up to 15 minutes,
//! `offline` beyond, `never_seen` for a box registered here that has not reported yet.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Actor;
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiPath};
use crate::http::RequestId;
use crate::routes::params::{self, FIELD_ROLES};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cameras, create_camera))
        .routes(routes!(get_camera, put_camera, delete_camera))
        .routes(routes!(list_detectors, create_detector))
        .routes(routes!(get_detector, put_detector, delete_detector))
        .routes(routes!(list_patrols, create_patrol))
        .routes(routes!(get_patrol, put_patrol, delete_patrol))
        .routes(routes!(put_patrol_status))
        .routes(routes!(list_edges, create_edge))
        .routes(routes!(get_edge, put_edge, delete_edge))
}

/// Registries are small (hundreds of rows); lists return everything up to this.
const MAX_LIST: i64 = 5000;
/// Heartbeat ages (seconds) that separate `online`, `stale` and `offline`.
pub const EDGE_ONLINE_S: f64 = 120.0;
pub const EDGE_STALE_S: f64 = 900.0;

fn created(value: impl Serialize) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

// ---------------------------------------------------------------------------- cameras

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Camera {
    pub id: i64,
    pub name: String,
    pub site_id: Option<String>,
    pub edge_id: Option<String>,
    /// `rtsp://`, `http://` or `https://`, without credentials (the edge holds those).
    pub stream_url: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CAMERA_COLUMNS: &str =
    "id, name, site_id, edge_id, stream_url, lat, lon, enabled, created_at, updated_at";

impl Camera {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            name: r.get(1),
            site_id: r.get(2),
            edge_id: r.get(3),
            stream_url: r.get(4),
            lat: r.get(5),
            lon: r.get(6),
            enabled: r.get(7),
            created_at: r.get(8),
            updated_at: r.get(9),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraInput {
    /// 1–100 characters, unique.
    pub name: String,
    pub site_id: Option<String>,
    pub edge_id: Option<String>,
    pub stream_url: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl CameraInput {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Validator::new();
        v.text("name", &self.name, 1, 100, false);
        opt_ident(&mut v, "site_id", self.site_id.as_deref());
        opt_ident(&mut v, "edge_id", self.edge_id.as_deref());
        if let Some(url) = &self.stream_url {
            v.text("stream_url", url, 1, 500, false);
            let scheme_ok = ["rtsp://", "http://", "https://"]
                .iter()
                .any(|s| url.starts_with(s));
            if !scheme_ok {
                v.add("stream_url", "must start with rtsp://, http:// or https://");
            } else if url.split('/').nth(2).is_some_and(|host| host.contains('@')) {
                v.add("stream_url", "must not carry credentials");
            }
        }
        params::position(&mut v, self.lat, self.lon);
        v.finish()
    }
}

fn opt_ident(v: &mut Validator, field: &str, value: Option<&str>) {
    if let Some(s) = value {
        params::ident(v, field, s);
    }
}

/// Every camera.
#[utoipa::path(get, path = "/api/cameras/", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Vec<Camera>)))]
async fn list_cameras(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Camera>>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!("SELECT {CAMERA_COLUMNS} FROM camera ORDER BY id LIMIT $1"),
            &[&MAX_LIST],
        )
        .await?;
    Ok(axum::Json(rows.iter().map(Camera::from_row).collect()))
}

async fn fetch_camera(db: &impl GenericClient, id: i64) -> ApiResult<Camera> {
    db.query_opt(
        &format!("SELECT {CAMERA_COLUMNS} FROM camera WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| Camera::from_row(&r))
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/cameras/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Camera), (status = 404, body = crate::error::ErrorBody)))]
async fn get_camera(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Camera>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    Ok(axum::Json(fetch_camera(&db, id).await?))
}

/// Register a camera (admin).
#[utoipa::path(post, path = "/api/cameras/", tag = "registry", security(("bearer" = [])),
    request_body = CameraInput,
    responses((status = 201, body = Camera), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_camera(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<CameraInput>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO camera (name, site_id, edge_id, stream_url, lat, lon, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {CAMERA_COLUMNS}"
            ),
            &[
                &body.name,
                &body.site_id,
                &body.edge_id,
                &body.stream_url,
                &body.lat,
                &body.lon,
                &body.enabled,
            ],
        )
        .await?;
    let cam = Camera::from_row(&row);
    let actor = Actor::user(&user, &rid);
    params::commit_audited(tx, &actor, "camera.create", "camera", cam.id, None, &cam).await?;
    Ok(created(cam))
}

/// Replace a camera (admin).
#[utoipa::path(put, path = "/api/cameras/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = CameraInput,
    responses((status = 200, body = Camera), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn put_camera(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CameraInput>,
) -> ApiResult<axum::Json<Camera>> {
    user.require(&[Role::Admin])?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_camera(&tx, id).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE camera SET name = $2, site_id = $3, edge_id = $4, stream_url = $5, \
                 lat = $6, lon = $7, enabled = $8, updated_at = now() WHERE id = $1 \
                 RETURNING {CAMERA_COLUMNS}"
            ),
            &[
                &id,
                &body.name,
                &body.site_id,
                &body.edge_id,
                &body.stream_url,
                &body.lat,
                &body.lon,
                &body.enabled,
            ],
        )
        .await?;
    let cam = Camera::from_row(&row);
    let actor = Actor::user(&user, &rid);
    params::commit_audited(
        tx,
        &actor,
        "camera.update",
        "camera",
        id,
        Some(&before),
        &cam,
    )
    .await?;
    Ok(axum::Json(cam))
}

#[utoipa::path(delete, path = "/api/cameras/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_camera(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "camera", "id", &id, id.to_string()).await
}

// -------------------------------------------------------------------------- detectors

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Detector {
    pub id: i64,
    /// The `detector_id` its traffic samples carry.
    pub detector_id: String,
    pub site_id: String,
    pub edge_id: Option<String>,
    /// `loop`, `radar`, `video`, `magnetic`, `other`.
    pub kind: String,
    pub lanes: i16,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const DETECTOR_COLUMNS: &str =
    "id, detector_key, site_id, edge_id, kind, lanes, lat, lon, enabled, created_at, updated_at";
const DETECTOR_KINDS: [&str; 5] = ["loop", "radar", "video", "magnetic", "other"];

impl Detector {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            detector_id: r.get(1),
            site_id: r.get(2),
            edge_id: r.get(3),
            kind: r.get(4),
            lanes: r.get(5),
            lat: r.get(6),
            lon: r.get(7),
            enabled: r.get(8),
            created_at: r.get(9),
            updated_at: r.get(10),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectorInput {
    pub detector_id: String,
    pub site_id: String,
    pub edge_id: Option<String>,
    pub kind: String,
    /// 1–16.
    pub lanes: i16,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl DetectorInput {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Validator::new();
        params::ident(&mut v, "detector_id", &self.detector_id);
        params::ident(&mut v, "site_id", &self.site_id);
        opt_ident(&mut v, "edge_id", self.edge_id.as_deref());
        if !DETECTOR_KINDS.contains(&self.kind.as_str()) {
            v.add(
                "kind",
                format!("must be one of {}", DETECTOR_KINDS.join(", ")),
            );
        }
        v.range("lanes", self.lanes, 1, 16);
        params::position(&mut v, self.lat, self.lon);
        v.finish()
    }
}

#[utoipa::path(get, path = "/api/detectors/", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Vec<Detector>)))]
async fn list_detectors(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Detector>>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!("SELECT {DETECTOR_COLUMNS} FROM detector ORDER BY id LIMIT $1"),
            &[&MAX_LIST],
        )
        .await?;
    Ok(axum::Json(rows.iter().map(Detector::from_row).collect()))
}

async fn fetch_detector(db: &impl GenericClient, id: i64) -> ApiResult<Detector> {
    db.query_opt(
        &format!("SELECT {DETECTOR_COLUMNS} FROM detector WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| Detector::from_row(&r))
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/detectors/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Detector), (status = 404, body = crate::error::ErrorBody)))]
async fn get_detector(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Detector>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    Ok(axum::Json(fetch_detector(&db, id).await?))
}

#[utoipa::path(post, path = "/api/detectors/", tag = "registry", security(("bearer" = [])),
    request_body = DetectorInput,
    responses((status = 201, body = Detector), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_detector(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<DetectorInput>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO detector (detector_key, site_id, edge_id, kind, lanes, lat, lon, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {DETECTOR_COLUMNS}"
            ),
            &[
                &body.detector_id,
                &body.site_id,
                &body.edge_id,
                &body.kind,
                &body.lanes,
                &body.lat,
                &body.lon,
                &body.enabled,
            ],
        )
        .await?;
    let d = Detector::from_row(&row);
    let actor = Actor::user(&user, &rid);
    params::commit_audited(tx, &actor, "detector.create", "detector", d.id, None, &d).await?;
    Ok(created(d))
}

#[utoipa::path(put, path = "/api/detectors/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = DetectorInput,
    responses((status = 200, body = Detector), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn put_detector(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<DetectorInput>,
) -> ApiResult<axum::Json<Detector>> {
    user.require(&[Role::Admin])?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_detector(&tx, id).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE detector SET detector_key = $2, site_id = $3, edge_id = $4, kind = $5, \
                 lanes = $6, lat = $7, lon = $8, enabled = $9, updated_at = now() \
                 WHERE id = $1 RETURNING {DETECTOR_COLUMNS}"
            ),
            &[
                &id,
                &body.detector_id,
                &body.site_id,
                &body.edge_id,
                &body.kind,
                &body.lanes,
                &body.lat,
                &body.lon,
                &body.enabled,
            ],
        )
        .await?;
    let d = Detector::from_row(&row);
    let actor = Actor::user(&user, &rid);
    params::commit_audited(
        tx,
        &actor,
        "detector.update",
        "detector",
        id,
        Some(&before),
        &d,
    )
    .await?;
    Ok(axum::Json(d))
}

#[utoipa::path(delete, path = "/api/detectors/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_detector(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "detector", "id", &id, id.to_string()).await
}

// ---------------------------------------------------------------------------- patrols

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Patrol {
    pub id: i64,
    pub call_sign: String,
    /// `available`, `busy` or `off_duty` (the default until the crew says otherwise).
    pub availability: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// When the position was reported.
    pub position_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const PATROL_SELECT: &str = "SELECT p.id, p.call_sign, coalesce(s.availability, 'off_duty'), \
    s.lat, s.lon, s.position_at, p.created_at \
    FROM patrol p LEFT JOIN patrol_status s ON s.patrol_id = p.id";
const AVAILABILITY: [&str; 3] = ["available", "busy", "off_duty"];

impl Patrol {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            call_sign: r.get(1),
            availability: r.get(2),
            lat: r.get(3),
            lon: r.get(4),
            position_at: r.get(5),
            created_at: r.get(6),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatrolInput {
    /// 1–32 characters, unique.
    pub call_sign: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatrolStatusInput {
    /// `available`, `busy` or `off_duty`.
    pub availability: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

#[utoipa::path(get, path = "/api/patrols/", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Vec<Patrol>)))]
async fn list_patrols(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Patrol>>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!("{PATROL_SELECT} ORDER BY p.id LIMIT $1"),
            &[&MAX_LIST],
        )
        .await?;
    Ok(axum::Json(rows.iter().map(Patrol::from_row).collect()))
}

async fn fetch_patrol(db: &impl GenericClient, id: i64) -> ApiResult<Patrol> {
    db.query_opt(&format!("{PATROL_SELECT} WHERE p.id = $1"), &[&id])
        .await?
        .map(|r| Patrol::from_row(&r))
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/patrols/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Patrol), (status = 404, body = crate::error::ErrorBody)))]
async fn get_patrol(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Patrol>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    Ok(axum::Json(fetch_patrol(&db, id).await?))
}

fn validate_call_sign(body: &PatrolInput) -> ApiResult<()> {
    let mut v = Validator::new();
    v.text("call_sign", &body.call_sign, 1, 32, false);
    v.finish()
}

#[utoipa::path(post, path = "/api/patrols/", tag = "registry", security(("bearer" = [])),
    request_body = PatrolInput,
    responses((status = 201, body = Patrol), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_patrol(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<PatrolInput>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    validate_call_sign(&body)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO patrol (call_sign) VALUES ($1) RETURNING id",
            &[&body.call_sign],
        )
        .await?
        .get(0);
    let p = fetch_patrol(&tx, id).await?;
    let actor = Actor::user(&user, &rid);
    params::commit_audited(tx, &actor, "patrol.create", "patrol", id, None, &p).await?;
    Ok(created(p))
}

#[utoipa::path(put, path = "/api/patrols/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PatrolInput,
    responses((status = 200, body = Patrol), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
async fn put_patrol(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PatrolInput>,
) -> ApiResult<axum::Json<Patrol>> {
    user.require(&[Role::Admin])?;
    validate_call_sign(&body)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_patrol(&tx, id).await?;
    tx.execute(
        "UPDATE patrol SET call_sign = $2, updated_at = now() WHERE id = $1",
        &[&id, &body.call_sign],
    )
    .await?;
    let p = fetch_patrol(&tx, id).await?;
    let actor = Actor::user(&user, &rid);
    params::commit_audited(tx, &actor, "patrol.update", "patrol", id, Some(&before), &p).await?;
    Ok(axum::Json(p))
}

#[utoipa::path(delete, path = "/api/patrols/{id}/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_patrol(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "patrol", "id", &id, id.to_string()).await
}

/// Set a patrol's availability and position: its own crew, an operator or an admin.
#[utoipa::path(put, path = "/api/patrols/{id}/status/", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PatrolStatusInput,
    responses((status = 200, body = Patrol), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn put_patrol_status(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PatrolStatusInput>,
) -> ApiResult<axum::Json<Patrol>> {
    let own_crew = user.role == Role::Patrol && user.patrol_id == Some(id);
    if !(own_crew || user.is_staff()) {
        return Err(ApiError::Forbidden(
            "only the patrol's crew or staff may set its status",
        ));
    }
    let mut v = Validator::new();
    if !AVAILABILITY.contains(&body.availability.as_str()) {
        v.add(
            "availability",
            format!("must be one of {}", AVAILABILITY.join(", ")),
        );
    }
    params::position(&mut v, body.lat, body.lon);
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_patrol(&tx, id).await?;
    tx.execute(
        "INSERT INTO patrol_status (patrol_id, availability, lat, lon, position_at) \
         VALUES ($1, $2, $3, $4, CASE WHEN $3::float8 IS NULL THEN NULL ELSE now() END) \
         ON CONFLICT (patrol_id) DO UPDATE SET availability = excluded.availability, \
           lat = coalesce(excluded.lat, patrol_status.lat), \
           lon = coalesce(excluded.lon, patrol_status.lon), \
           position_at = coalesce(excluded.position_at, patrol_status.position_at), \
           updated_at = now()",
        &[&id, &body.availability, &body.lat, &body.lon],
    )
    .await?;
    let p = fetch_patrol(&tx, id).await?;
    let actor = Actor::user(&user, &rid);
    params::commit_audited(tx, &actor, "patrol.status", "patrol", id, Some(&before), &p).await?;
    Ok(axum::Json(p))
}

// ------------------------------------------------------------------------------ edges

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Edge {
    pub edge_id: String,
    pub site_id: Option<String>,
    pub software_version: Option<String>,
    /// The last heartbeat; null if the box has not reported since it was registered.
    pub last_seen: Option<DateTime<Utc>>,
    /// `online`, `stale`, `offline` or `never_seen` (see the module documentation).
    pub health: String,
    /// Seconds since the last heartbeat.
    pub last_seen_age_s: Option<f64>,
    pub spool_bytes: Option<i64>,
    /// Age of the oldest sample not yet sent, seconds.
    pub uplink_lag_s: Option<f64>,
    /// Per-source health as the edge reports it.
    #[schema(value_type = Object)]
    pub source_health: serde_json::Value,
}

// A box registered here has last_seen = 'epoch' until its first heartbeat (the column is
// central-sync's and NOT NULL).
const EDGE_SELECT: &str = "SELECT edge_id, site_id, software_version, \
    NULLIF(last_seen, 'epoch'::timestamptz), \
    CASE WHEN last_seen = 'epoch'::timestamptz THEN NULL \
         ELSE extract(epoch FROM now() - last_seen)::float8 END, \
    spool_bytes, uplink_lag_s, source_health FROM edge_node";

/// The health word for a heartbeat age.
pub fn edge_health(age_s: Option<f64>) -> &'static str {
    match age_s {
        None => "never_seen",
        Some(a) if a <= EDGE_ONLINE_S => "online",
        Some(a) if a <= EDGE_STALE_S => "stale",
        Some(_) => "offline",
    }
}

impl Edge {
    fn from_row(r: &Row) -> Self {
        let age: Option<f64> = r.get(4);
        Self {
            edge_id: r.get(0),
            site_id: r.get(1),
            software_version: r.get(2),
            last_seen: r.get(3),
            health: edge_health(age).to_owned(),
            last_seen_age_s: age,
            spool_bytes: r.get(5),
            uplink_lag_s: r.get(6),
            source_health: r.get(7),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeInput {
    pub edge_id: String,
    pub site_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeUpdate {
    pub site_id: Option<String>,
}

#[utoipa::path(get, path = "/api/edges/", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Vec<Edge>)))]
async fn list_edges(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Edge>>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!("{EDGE_SELECT} ORDER BY edge_id LIMIT $1"),
            &[&MAX_LIST],
        )
        .await?;
    Ok(axum::Json(rows.iter().map(Edge::from_row).collect()))
}

async fn fetch_edge(db: &impl GenericClient, id: &str) -> ApiResult<Edge> {
    db.query_opt(&format!("{EDGE_SELECT} WHERE edge_id = $1"), &[&id])
        .await?
        .map(|r| Edge::from_row(&r))
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/edges/{edge_id}/", tag = "registry", security(("bearer" = [])),
    params(("edge_id" = String, Path)), responses((status = 200, body = Edge), (status = 404, body = crate::error::ErrorBody)))]
async fn get_edge(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Edge>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    Ok(axum::Json(fetch_edge(&db, &id).await?))
}

/// Register an edge box before it reports (admin).
#[utoipa::path(post, path = "/api/edges/", tag = "registry", security(("bearer" = [])),
    request_body = EdgeInput,
    responses((status = 201, body = Edge), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_edge(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<EdgeInput>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    let mut v = Validator::new();
    params::ident(&mut v, "edge_id", &body.edge_id);
    opt_ident(&mut v, "site_id", body.site_id.as_deref());
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    tx.execute(
        "INSERT INTO edge_node (edge_id, site_id, first_seen, last_seen) \
         VALUES ($1, $2, now(), 'epoch')",
        &[&body.edge_id, &body.site_id],
    )
    .await?;
    let e = fetch_edge(&tx, &body.edge_id).await?;
    let actor = Actor::user(&user, &rid);
    params::commit_audited(
        tx,
        &actor,
        "edge_node.create",
        "edge_node",
        &e.edge_id,
        None,
        &e,
    )
    .await?;
    Ok(created(e))
}

/// Change the site an edge box serves (admin).
#[utoipa::path(put, path = "/api/edges/{edge_id}/", tag = "registry", security(("bearer" = [])),
    params(("edge_id" = String, Path)), request_body = EdgeUpdate,
    responses((status = 200, body = Edge), (status = 404, body = crate::error::ErrorBody)))]
async fn put_edge(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EdgeUpdate>,
) -> ApiResult<axum::Json<Edge>> {
    user.require(&[Role::Admin])?;
    let mut v = Validator::new();
    opt_ident(&mut v, "site_id", body.site_id.as_deref());
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_edge(&tx, &id).await?;
    tx.execute(
        "UPDATE edge_node SET site_id = $2 WHERE edge_id = $1",
        &[&id, &body.site_id],
    )
    .await?;
    let e = fetch_edge(&tx, &id).await?;
    let actor = Actor::user(&user, &rid);
    params::commit_audited(
        tx,
        &actor,
        "edge_node.update",
        "edge_node",
        &id,
        Some(&before),
        &e,
    )
    .await?;
    Ok(axum::Json(e))
}

#[utoipa::path(delete, path = "/api/edges/{edge_id}/", tag = "registry", security(("bearer" = [])),
    params(("edge_id" = String, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_edge(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    user.require(&[Role::Admin])?;
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "edge_node", "edge_id", &id, id.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_health_by_age() {
        assert_eq!(edge_health(None), "never_seen");
        assert_eq!(edge_health(Some(5.0)), "online");
        assert_eq!(edge_health(Some(300.0)), "stale");
        assert_eq!(edge_health(Some(3600.0)), "offline");
    }
}
