//! `/api/appeals/`: reports from citizens, answered by the control room.
//!
//! Status: `received` → `acknowledged` → `in_progress` → `answered` → `closed`, and
//! `rejected` from any of the first three. `answered` and `rejected` need a `response`
//! (shown to the citizen). Linking an appeal to an incident (an existing one, or a new one
//! made from the appeal) moves it to `in_progress`.
//!
//! Who may do what:
//! - file: anyone, logged in or not (anonymous appeals cannot be read back).
//! - list, read: admin, operator, analyst: all; a `public` user: their own.
//! - status, link to an incident: admin, operator.
//! - patrol: nothing here (incidents are their business).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult, ErrorBody, Validator};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::RequestId;
use crate::query::{page, paging};
use crate::routes::incidents::{
    CreateIncident, IncidentKind, IncidentSource, NewIncident, Severity, insert_incident,
};
use crate::routes::notifications;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_appeals, file_appeal))
        .routes(routes!(get_appeal))
        .routes(routes!(set_status))
        .routes(routes!(link_incident))
}

crate::text_enum! {
    /// Where an appeal stands.
    pub enum AppealStatus {
        Received = "received",
        Acknowledged = "acknowledged",
        InProgress = "in_progress",
        Answered = "answered",
        Closed = "closed",
        Rejected = "rejected",
    }
}

impl AppealStatus {
    /// Every legal `(from, to)` change.
    pub const TRANSITIONS: &'static [(AppealStatus, AppealStatus)] = {
        use AppealStatus::*;
        &[
            (Received, Acknowledged),
            (Received, Rejected),
            (Acknowledged, InProgress),
            (Acknowledged, Answered),
            (Acknowledged, Rejected),
            (InProgress, Answered),
            (InProgress, Rejected),
            (Answered, Closed),
        ]
    };

    pub fn can_become(self, to: AppealStatus) -> bool {
        Self::TRANSITIONS.contains(&(self, to))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Appeal {
    pub id: i64,
    /// The account that filed it; `null` for anonymous appeals.
    pub filed_by: Option<i64>,
    pub name: Option<String>,
    pub contact: Option<String>,
    pub kind: IncidentKind,
    pub description: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub location_text: Option<String>,
    pub status: AppealStatus,
    /// The incident it was turned into or linked to.
    pub incident_id: Option<i64>,
    /// The control room's answer to the citizen.
    pub response: Option<String>,
    pub handled_by: Option<i64>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub responded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, filed_by, name, contact, kind, description, lat, lon, location_text, \
    status, incident_id, response, handled_by, acknowledged_at, responded_at, created_at, updated_at";

impl Appeal {
    fn from_row(row: &Row) -> ApiResult<Self> {
        Ok(Self {
            id: row.get(0),
            filed_by: row.get(1),
            name: row.get(2),
            contact: row.get(3),
            kind: IncidentKind::from_db(row.get(4))?,
            description: row.get(5),
            lat: row.get(6),
            lon: row.get(7),
            location_text: row.get(8),
            status: AppealStatus::from_db(row.get(9))?,
            incident_id: row.get(10),
            response: row.get(11),
            handled_by: row.get(12),
            acknowledged_at: row.get(13),
            responded_at: row.get(14),
            created_at: row.get(15),
            updated_at: row.get(16),
        })
    }

    fn visible_to(&self, caller: &AuthUser) -> bool {
        caller.can_read_all() || (caller.role == Role::Public && self.filed_by == Some(caller.id))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAppeal {
    pub kind: IncidentKind,
    /// 1–5000 characters.
    pub description: String,
    /// Both or neither of `lat` and `lon`.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Where, in words (up to 200 characters).
    pub location_text: Option<String>,
    /// Up to 100 characters.
    pub name: Option<String>,
    /// A phone number or email address for the answer (up to 200 characters).
    pub contact: Option<String>,
}

/// File an appeal (anyone).
#[utoipa::path(post, path = "/api/appeals/", tag = "appeals",
    request_body = FileAppeal,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "received; the body is the acknowledgement", body = Appeal),
        (status = 422, description = "invalid fields", body = ErrorBody)))]
async fn file_appeal(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    request_id: RequestId,
    ApiJson(body): ApiJson<FileAppeal>,
) -> ApiResult<Response> {
    let mut v = Validator::new();
    v.text("description", &body.description, 1, 5000, true);
    match (body.lat, body.lon) {
        (Some(lat), Some(lon)) => {
            v.range("lat", lat, -90.0, 90.0);
            v.range("lon", lon, -180.0, 180.0);
        }
        (None, None) => {}
        (None, Some(_)) => v.add("lat", "give both lat and lon, or neither"),
        (Some(_), None) => v.add("lon", "give both lat and lon, or neither"),
    }
    v.opt_text("location_text", body.location_text.as_deref(), 200, false);
    v.opt_text("name", body.name.as_deref(), 100, false);
    v.opt_text("contact", body.contact.as_deref(), 200, false);
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO appeal (filed_by, name, contact, kind, description, lat, lon, location_text) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
            ),
            &[
                &caller.map(|c| c.id),
                &body.name,
                &body.contact,
                &body.kind.as_str(),
                &body.description,
                &body.lat,
                &body.lon,
                &body.location_text,
            ],
        )
        .await?;
    let appeal = Appeal::from_row(&row)?;
    audit::record(
        &tx,
        &Actor::from(caller.as_ref(), &request_id),
        "appeal.create",
        "appeal",
        appeal.id,
        None,
        audit::json(&appeal),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(appeal)).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppealQuery {
    /// Comma-separated statuses.
    pub status: Option<String>,
    /// Comma-separated kinds.
    pub kind: Option<String>,
    /// Filed at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Filed before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppealPage {
    pub items: Vec<Appeal>,
    pub next_offset: Option<i64>,
}

/// List appeals, newest first (a `public` user sees their own).
#[utoipa::path(get, path = "/api/appeals/", tag = "appeals",
    params(AppealQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of appeals", body = AppealPage),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "patrols do not read appeals", body = ErrorBody),
        (status = 422, description = "a bad filter value", body = ErrorBody)))]
async fn list_appeals(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(q): ApiQuery<AppealQuery>,
) -> ApiResult<axum::Json<AppealPage>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Analyst, Role::Public])?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let statuses = q
        .status
        .as_deref()
        .map(|s| AppealStatus::parse_list("status", s))
        .transpose()?;
    let kinds = q
        .kind
        .as_deref()
        .map(|s| IncidentKind::parse_list("kind", s))
        .transpose()?;
    let own = (caller.role == Role::Public).then_some(caller.id);
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM appeal \
                 WHERE ($1::bigint IS NULL OR filed_by = $1) \
                   AND ($2::text[] IS NULL OR status = ANY($2)) \
                   AND ($3::text[] IS NULL OR kind = ANY($3)) \
                   AND ($4::timestamptz IS NULL OR created_at >= $4) \
                   AND ($5::timestamptz IS NULL OR created_at < $5) \
                 ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
            ),
            &[
                &own,
                &statuses,
                &kinds,
                &q.from,
                &q.to,
                &(limit + 1),
                &offset,
            ],
        )
        .await?;
    let (items, next_offset) = page(rows, limit, offset, Appeal::from_row)?;
    Ok(axum::Json(AppealPage { items, next_offset }))
}

async fn fetch(db: &impl GenericClient, id: i64, lock: bool) -> ApiResult<Appeal> {
    let sql = format!(
        "SELECT {COLUMNS} FROM appeal WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = db
        .query_opt(&sql, &[&id])
        .await?
        .ok_or(ApiError::NotFound)?;
    Appeal::from_row(&row)
}

/// Read an appeal.
#[utoipa::path(get, path = "/api/appeals/{id}/", tag = "appeals",
    params(("id" = i64, Path, description = "appeal id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the appeal", body = Appeal),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "someone else's appeal", body = ErrorBody),
        (status = 404, description = "no such appeal", body = ErrorBody)))]
async fn get_appeal(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Appeal>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Analyst, Role::Public])?;
    let db = state.db().await?;
    let appeal = fetch(&db, id, false).await?;
    if !appeal.visible_to(&caller) {
        return Err(ApiError::Forbidden("this is someone else's appeal"));
    }
    Ok(axum::Json(appeal))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: AppealStatus,
    /// The answer to the citizen (up to 5000 characters); required for `answered` and
    /// `rejected`.
    pub response: Option<String>,
}

/// Change an appeal's status (and answer it).
#[utoipa::path(post, path = "/api/appeals/{id}/status/", tag = "appeals",
    params(("id" = i64, Path, description = "appeal id")),
    request_body = StatusRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the updated appeal", body = Appeal),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not admin or operator", body = ErrorBody),
        (status = 404, description = "no such appeal", body = ErrorBody),
        (status = 409, description = "not a legal status change", body = ErrorBody),
        (status = 422, description = "invalid fields", body = ErrorBody)))]
async fn set_status(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> ApiResult<axum::Json<Appeal>> {
    caller.require(&[Role::Admin, Role::Operator])?;
    let mut v = Validator::new();
    if let Some(r) = &body.response {
        v.text("response", r, 1, 5000, true);
    } else if matches!(body.status, AppealStatus::Answered | AppealStatus::Rejected) {
        v.add("response", "is required to answer or reject an appeal");
    }
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch(&tx, id, true).await?;
    if !before.status.can_become(body.status) {
        return Err(ApiError::conflict(
            "status",
            format!("cannot go from {} to {}", before.status, body.status),
        ));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE appeal SET status = $2, response = coalesce($3, response), handled_by = $4, \
                   acknowledged_at = coalesce(acknowledged_at, now()), \
                   responded_at = CASE WHEN $3::text IS NULL THEN responded_at ELSE now() END, \
                   updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &body.status.as_str(), &body.response, &caller.id],
        )
        .await?;
    let after = Appeal::from_row(&row)?;
    audit::record(
        &tx,
        &Actor::user(&caller, &request_id),
        "appeal.status",
        "appeal",
        id,
        audit::json(&before),
        audit::json(&after),
    )
    .await?;
    // The citizen who filed it (when logged in) hears of the answer or the rejection.
    let answered = matches!(
        after.status,
        AppealStatus::Answered | AppealStatus::Rejected
    );
    if let Some(filer) = after.filed_by.filter(|_| answered) {
        let payload = serde_json::json!({"appeal_id": id, "status": after.status.as_str()});
        notifications::notify(&tx, filer, notifications::APPEAL_ANSWERED, &payload).await?;
    }
    tx.commit().await?;
    Ok(axum::Json(after))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Link to this incident; without it, a new incident is made from the appeal.
    pub incident_id: Option<i64>,
    /// For a new incident: its title (default: "Appeal N: kind").
    pub title: Option<String>,
    /// For a new incident: default `unknown`.
    pub severity: Option<Severity>,
    /// For a new incident, when the appeal has no coordinates.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// Link an appeal to an incident, or make a new incident from it.
#[utoipa::path(post, path = "/api/appeals/{id}/incident/", tag = "appeals",
    params(("id" = i64, Path, description = "appeal id")),
    request_body = LinkRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the appeal, with incident_id", body = Appeal),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not admin or operator", body = ErrorBody),
        (status = 404, description = "no such appeal", body = ErrorBody),
        (status = 409, description = "the appeal is finished or already linked", body = ErrorBody),
        (status = 422, description = "invalid fields, no such incident, or no location", body = ErrorBody)))]
async fn link_incident(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<LinkRequest>,
) -> ApiResult<axum::Json<Appeal>> {
    caller.require(&[Role::Admin, Role::Operator])?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch(&tx, id, true).await?;
    if matches!(before.status, AppealStatus::Closed | AppealStatus::Rejected) {
        return Err(ApiError::conflict(
            "status",
            format!("the appeal is {}", before.status),
        ));
    }
    if before.incident_id.is_some() {
        return Err(ApiError::conflict(
            "incident_id",
            "the appeal is already linked",
        ));
    }
    let actor = Actor::user(&caller, &request_id);
    let incident_id = match body.incident_id {
        Some(incident_id) => {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM incident WHERE id = $1)",
                    &[&incident_id],
                )
                .await?
                .get(0);
            if !exists {
                return Err(ApiError::field("incident_id", "no such incident"));
            }
            incident_id
        }
        None => {
            let (Some(lat), Some(lon)) = (body.lat.or(before.lat), body.lon.or(before.lon)) else {
                return Err(ApiError::field(
                    "lat",
                    "the appeal has no coordinates: give lat and lon for the new incident",
                ));
            };
            let incident = insert_incident(
                &tx,
                &actor,
                NewIncident {
                    body: CreateIncident {
                        kind: before.kind,
                        title: body
                            .title
                            .unwrap_or_else(|| format!("Appeal {}: {}", before.id, before.kind)),
                        description: before.description.clone(),
                        severity: body.severity,
                        probability: None,
                        lat,
                        lon,
                        area: None,
                        road: None,
                        direction: None,
                        lanes_total: None,
                        lanes_blocked: Vec::new(),
                        assigned_patrol_id: None,
                        occurred_at: None,
                        reported_at: Some(before.created_at),
                    },
                    source: IncidentSource::Appeal,
                    reported_by: before.filed_by,
                },
            )
            .await?;
            incident.id
        }
    };
    let row = tx
        .query_one(
            &format!(
                "UPDATE appeal SET incident_id = $2, handled_by = $3, \
                   status = CASE WHEN status IN ('received', 'acknowledged') THEN 'in_progress' ELSE status END, \
                   acknowledged_at = coalesce(acknowledged_at, now()), updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &incident_id, &caller.id],
        )
        .await?;
    let after = Appeal::from_row(&row)?;
    audit::record(
        &tx,
        &actor,
        "appeal.link",
        "appeal",
        id,
        audit::json(&before),
        audit::json(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}
