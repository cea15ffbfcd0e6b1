//! `/api/schedules/`: patrol shifts and planned road works, with overlap checks, and an
//! iCalendar export.
//!
//! Overlaps are refused by the database (exclusion constraints over the time range): a
//! patrol works one shift at a time, and works on one road section do not overlap. Both
//! answer 409 naming `starts_at`. Times are half-open: a shift ending at 14:00 and the
//! next starting at 14:00 do not overlap.
//!
//! Who may do what: staff (admin, operator) plan; admin, operator and analyst read every
//! shift; a patrol user reads its own patrol's shifts. Road works are public: anyone
//! reads them, logged in or not. `GET /api/schedules/calendar.ics` exports what the caller
//! may read (shifts: admin, operator, analyst, patrol) as `text/calendar`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Actor;
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::RequestId;
use crate::routes::params::{self, FIELD_ROLES, STAFF_ROLES};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_shifts, create_shift))
        .routes(routes!(get_shift, put_shift, delete_shift))
        .routes(routes!(list_works, create_work))
        .routes(routes!(get_work, put_work, delete_work))
        .routes(routes!(calendar))
}

/// The longest shift, hours.
const MAX_SHIFT_HOURS: i64 = 24;
/// The longest planned works, days.
const MAX_WORK_DAYS: i64 = 366;
/// Rows per list or export.
const MAX_ROWS: i64 = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// Shifts of this patrol only.
    pub patrol_id: Option<i64>,
    /// Entries overlapping [from, to); default: from now on.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// 1–2000, default 500.
    pub limit: Option<i64>,
}

/// Validates the window and returns it (from now, open-ended, by default).
fn window(q: &ScheduleQuery) -> ApiResult<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let from = q.from.unwrap_or_else(Utc::now);
    if let Some(to) = q.to {
        let mut v = Validator::new();
        params::time_range(&mut v, from, to, 3660);
        v.finish()?;
    }
    Ok((from, q.to))
}

/// Checks a planned time range; `max` bounds its length.
fn planned(v: &mut Validator, start: DateTime<Utc>, end: DateTime<Utc>, max: chrono::Duration) {
    if end <= start {
        v.add("ends_at", "must be after starts_at");
    } else if end - start > max {
        v.add(
            "ends_at",
            format!("at most {} hours after starts_at", max.num_hours()),
        );
    }
}

// ----------------------------------------------------------------------------- shifts

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Shift {
    pub id: i64,
    pub patrol_id: i64,
    pub call_sign: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub note: String,
    pub updated_at: DateTime<Utc>,
}

const SHIFT_SELECT: &str = "SELECT s.id, s.patrol_id, p.call_sign, lower(s.during), upper(s.during), \
    s.note, s.updated_at FROM patrol_shift s JOIN patrol p ON p.id = s.patrol_id";

impl Shift {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            patrol_id: r.get(1),
            call_sign: r.get(2),
            starts_at: r.get(3),
            ends_at: r.get(4),
            note: r.get(5),
            updated_at: r.get(6),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShiftInput {
    pub patrol_id: i64,
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`, at most 24 hours later.
    pub ends_at: DateTime<Utc>,
    /// Up to 500 characters.
    #[serde(default)]
    pub note: String,
}

impl ShiftInput {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Validator::new();
        planned(
            &mut v,
            self.starts_at,
            self.ends_at,
            chrono::Duration::hours(MAX_SHIFT_HOURS),
        );
        v.text("note", &self.note, 0, 500, true);
        v.finish()
    }
}

/// The patrol whose shifts `user` may read: `Ok(None)` for everyone's.
fn shift_scope(user: &AuthUser, asked: Option<i64>) -> ApiResult<Option<i64>> {
    user.require(&FIELD_ROLES)?;
    if user.role != Role::Patrol {
        return Ok(asked);
    }
    match (user.patrol_id, asked) {
        (Some(own), None) => Ok(Some(own)),
        (Some(own), Some(a)) if a == own => Ok(Some(own)),
        _ => Err(ApiError::Forbidden("a patrol reads its own shifts only")),
    }
}

async fn query_shifts(
    db: &impl GenericClient,
    patrol: Option<i64>,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    limit: i64,
) -> ApiResult<Vec<Shift>> {
    let rows = db
        .query(
            &format!(
                "{SHIFT_SELECT} WHERE ($1::int8 IS NULL OR s.patrol_id = $1) \
                 AND s.during && tstzrange($2, $3, '[)') ORDER BY lower(s.during), s.id LIMIT $4"
            ),
            &[&patrol, &from, &to, &limit],
        )
        .await?;
    Ok(rows.iter().map(Shift::from_row).collect())
}

#[utoipa::path(get, path = "/api/schedules/shifts/", tag = "schedules", security(("bearer" = [])),
    params(ScheduleQuery), responses((status = 200, body = Vec<Shift>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_shifts(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ScheduleQuery>,
) -> ApiResult<axum::Json<Vec<Shift>>> {
    let patrol = shift_scope(&user, q.patrol_id)?;
    let (from, to) = window(&q)?;
    let limit = params::limit(q.limit, 500, MAX_ROWS)?;
    let db = state.db().await?;
    Ok(axum::Json(
        query_shifts(&db, patrol, from, to, limit).await?,
    ))
}

async fn fetch_shift(db: &impl GenericClient, id: i64) -> ApiResult<Shift> {
    db.query_opt(&format!("{SHIFT_SELECT} WHERE s.id = $1"), &[&id])
        .await?
        .map(|r| Shift::from_row(&r))
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/schedules/shifts/{id}/", tag = "schedules", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Shift), (status = 404, body = crate::error::ErrorBody)))]
async fn get_shift(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Shift>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    let s = fetch_shift(&db, id).await?;
    shift_scope(&user, Some(s.patrol_id))?;
    Ok(axum::Json(s))
}

/// Plan a shift (staff); 409 `starts_at` if it overlaps another of the patrol.
#[utoipa::path(post, path = "/api/schedules/shifts/", tag = "schedules", security(("bearer" = [])),
    request_body = ShiftInput,
    responses((status = 201, body = Shift), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_shift(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<ShiftInput>,
) -> ApiResult<Response> {
    user.require(&STAFF_ROLES)?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO patrol_shift (patrol_id, during, note, created_by) \
             VALUES ($1, tstzrange($2, $3, '[)'), $4, $5) RETURNING id",
            &[
                &body.patrol_id,
                &body.starts_at,
                &body.ends_at,
                &body.note,
                &user.id,
            ],
        )
        .await?
        .get(0);
    let s = fetch_shift(&tx, id).await?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "patrol_shift.create",
        "patrol_shift",
        id,
        None,
        &s,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(s)).into_response())
}

#[utoipa::path(put, path = "/api/schedules/shifts/{id}/", tag = "schedules", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ShiftInput,
    responses((status = 200, body = Shift), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
async fn put_shift(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ShiftInput>,
) -> ApiResult<axum::Json<Shift>> {
    user.require(&STAFF_ROLES)?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_shift(&tx, id).await?;
    tx.execute(
        "UPDATE patrol_shift SET patrol_id = $2, during = tstzrange($3, $4, '[)'), note = $5, \
         updated_at = now() WHERE id = $1",
        &[
            &id,
            &body.patrol_id,
            &body.starts_at,
            &body.ends_at,
            &body.note,
        ],
    )
    .await?;
    let s = fetch_shift(&tx, id).await?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "patrol_shift.update",
        "patrol_shift",
        id,
        Some(&before),
        &s,
    )
    .await?;
    Ok(axum::Json(s))
}

#[utoipa::path(delete, path = "/api/schedules/shifts/{id}/", tag = "schedules", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_shift(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    user.require(&STAFF_ROLES)?;
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "patrol_shift", "id", &id, id.to_string()).await
}

// ------------------------------------------------------------------------- road works

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RoadWork {
    pub id: i64,
    pub title: String,
    pub road: String,
    pub section: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub lanes_closed: Vec<i16>,
    pub description: String,
    pub updated_at: DateTime<Utc>,
}

const WORK_SELECT: &str = "SELECT id, title, road, section, lower(during), upper(during), \
    lanes_closed, description, updated_at FROM road_work";

impl RoadWork {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            title: r.get(1),
            road: r.get(2),
            section: r.get(3),
            starts_at: r.get(4),
            ends_at: r.get(5),
            lanes_closed: r.get(6),
            description: r.get(7),
            updated_at: r.get(8),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoadWorkInput {
    /// 1–200 characters.
    pub title: String,
    /// 1–64 characters (`A7`).
    pub road: String,
    /// The stretch, 1–100 characters (`km 12.0–14.5 northbound`).
    pub section: String,
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`, at most 366 days later.
    pub ends_at: DateTime<Utc>,
    /// Lane numbers (1–16), at most 16.
    #[serde(default)]
    pub lanes_closed: Vec<i16>,
    #[serde(default)]
    pub description: String,
}

impl RoadWorkInput {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Validator::new();
        v.text("title", &self.title, 1, 200, false);
        v.text("road", &self.road, 1, 64, false);
        v.text("section", &self.section, 1, 100, false);
        v.text("description", &self.description, 0, 5000, true);
        planned(
            &mut v,
            self.starts_at,
            self.ends_at,
            chrono::Duration::days(MAX_WORK_DAYS),
        );
        if self.lanes_closed.len() > 16 {
            v.add("lanes_closed", "at most 16 lanes");
        }
        for (i, lane) in self.lanes_closed.iter().enumerate() {
            v.range(&format!("lanes_closed[{i}]"), *lane, 1, 16);
        }
        v.finish()
    }
}

async fn query_works(
    db: &impl GenericClient,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    limit: i64,
) -> ApiResult<Vec<RoadWork>> {
    let rows = db
        .query(
            &format!(
                "{WORK_SELECT} WHERE during && tstzrange($1, $2, '[)') \
                 ORDER BY lower(during), id LIMIT $3"
            ),
            &[&from, &to, &limit],
        )
        .await?;
    Ok(rows.iter().map(RoadWork::from_row).collect())
}

/// Planned road works (public).
#[utoipa::path(get, path = "/api/schedules/roadworks/", tag = "schedules", security((), ("bearer" = [])),
    params(ScheduleQuery), responses((status = 200, body = Vec<RoadWork>)))]
async fn list_works(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ScheduleQuery>,
) -> ApiResult<axum::Json<Vec<RoadWork>>> {
    if q.patrol_id.is_some() {
        return Err(ApiError::field(
            "query.patrol_id",
            "road works have no patrol",
        ));
    }
    let (from, to) = window(&q)?;
    let limit = params::limit(q.limit, 500, MAX_ROWS)?;
    let db = state.db().await?;
    Ok(axum::Json(query_works(&db, from, to, limit).await?))
}

async fn fetch_work(db: &impl GenericClient, id: i64) -> ApiResult<RoadWork> {
    db.query_opt(&format!("{WORK_SELECT} WHERE id = $1"), &[&id])
        .await?
        .map(|r| RoadWork::from_row(&r))
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/schedules/roadworks/{id}/", tag = "schedules", security((), ("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = RoadWork), (status = 404, body = crate::error::ErrorBody)))]
async fn get_work(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<RoadWork>> {
    let db = state.db().await?;
    Ok(axum::Json(fetch_work(&db, id).await?))
}

/// Plan road works (staff); 409 `starts_at` if they overlap others on the same section.
#[utoipa::path(post, path = "/api/schedules/roadworks/", tag = "schedules", security(("bearer" = [])),
    request_body = RoadWorkInput,
    responses((status = 201, body = RoadWork), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_work(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<RoadWorkInput>,
) -> ApiResult<Response> {
    user.require(&STAFF_ROLES)?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO road_work (title, road, section, during, lanes_closed, description, created_by) \
             VALUES ($1, $2, $3, tstzrange($4, $5, '[)'), $6, $7, $8) RETURNING id",
            &[&body.title, &body.road, &body.section, &body.starts_at, &body.ends_at, &body.lanes_closed, &body.description, &user.id],
        )
        .await?
        .get(0);
    let w = fetch_work(&tx, id).await?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "road_work.create",
        "road_work",
        id,
        None,
        &w,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(w)).into_response())
}

#[utoipa::path(put, path = "/api/schedules/roadworks/{id}/", tag = "schedules", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = RoadWorkInput,
    responses((status = 200, body = RoadWork), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
async fn put_work(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RoadWorkInput>,
) -> ApiResult<axum::Json<RoadWork>> {
    user.require(&STAFF_ROLES)?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch_work(&tx, id).await?;
    tx.execute(
        "UPDATE road_work SET title = $2, road = $3, section = $4, during = tstzrange($5, $6, '[)'), \
         lanes_closed = $7, description = $8, updated_at = now() WHERE id = $1",
        &[&id, &body.title, &body.road, &body.section, &body.starts_at, &body.ends_at, &body.lanes_closed, &body.description],
    )
    .await?;
    let w = fetch_work(&tx, id).await?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "road_work.update",
        "road_work",
        id,
        Some(&before),
        &w,
    )
    .await?;
    Ok(axum::Json(w))
}

#[utoipa::path(delete, path = "/api/schedules/roadworks/{id}/", tag = "schedules", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_work(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    user.require(&STAFF_ROLES)?;
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "road_work", "id", &id, id.to_string()).await
}

// --------------------------------------------------------------------------- calendar

/// Shifts (those the caller may read) and road works as an iCalendar file.
#[utoipa::path(get, path = "/api/schedules/calendar.ics", tag = "schedules", security(("bearer" = [])),
    params(ScheduleQuery),
    responses((status = 200, description = "text/calendar (RFC 5545)", content_type = "text/calendar", body = String),
        (status = 403, body = crate::error::ErrorBody)))]
async fn calendar(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ScheduleQuery>,
) -> ApiResult<Response> {
    let patrol = shift_scope(&user, q.patrol_id)?;
    let (from, to) = window(&q)?;
    let limit = params::limit(q.limit, 500, MAX_ROWS)?;
    let db = state.db().await?;
    let shifts = query_shifts(&db, patrol, from, to, limit).await?;
    let works = query_works(&db, from, to, limit).await?;
    let events: Vec<crate::ical::Event> = shifts
        .iter()
        .map(|s| crate::ical::Event {
            uid: format!("shift-{}@central-api", s.id),
            start: s.starts_at,
            end: s.ends_at,
            summary: format!("Shift {}", s.call_sign),
            description: s.note.clone(),
            location: None,
        })
        .chain(works.iter().map(|w| crate::ical::Event {
            uid: format!("roadwork-{}@central-api", w.id),
            start: w.starts_at,
            end: w.ends_at,
            summary: format!("Road works: {}", w.title),
            description: w.description.clone(),
            location: Some(format!("{} {}", w.road, w.section)),
        }))
        .collect();
    let body = crate::ical::calendar("central-api schedules", &events, Utc::now());
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"schedules.ics\"",
            ),
        ],
        body,
    )
        .into_response())
}
