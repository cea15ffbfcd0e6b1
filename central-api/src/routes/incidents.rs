//! `/api/incidents/`: incidents, their lifecycle and history.
//!
//! Lifecycle (only these transitions are accepted; each stamps its FHWA timeline point):
//!
//! ```text
//! reported ─► verified ─► dispatched ─► on_scene ─► lanes_cleared ─► scene_cleared ─► closed
//!    T1          T2           T3           T4            T5                T6            T7
//! reported, verified ─► rejected (reported only) | duplicate | merged   (ended_at)
//! ```
//!
//! T0 (occurred) is given by the reporter. `dispatched` needs an assigned patrol;
//! `lanes_cleared` empties `lanes_blocked`; `duplicate` and `merged` need
//! `related_incident_id` (another incident, still open for `merged`).
//!
//! Who may do what:
//! - admin, operator: everything.
//! - analyst: read (list, get, history).
//! - patrol: read the incidents assigned to their patrol; on those, the transitions
//!   `on_scene`, `lanes_cleared` and `scene_cleared`, and updating `lanes_blocked`,
//!   `severity` and `description`; create an incident (source `patrol`, assigned to their
//!   patrol).
//! - public, anonymous: nothing (citizens file appeals).

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
use crate::extract::{ApiJson, ApiPath, ApiQuery, nullable};
use crate::http::RequestId;
use crate::query::{Filter, page, paging};
use crate::routes::notifications;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents, create_incident))
        .routes(routes!(get_incident, update_incident))
        .routes(routes!(transition))
        .routes(routes!(history))
}

crate::text_enum! {
    /// Where an incident is in its lifecycle.
    pub enum IncidentState {
        Reported = "reported",
        Verified = "verified",
        Dispatched = "dispatched",
        OnScene = "on_scene",
        LanesCleared = "lanes_cleared",
        SceneCleared = "scene_cleared",
        Closed = "closed",
        Rejected = "rejected",
        Duplicate = "duplicate",
        Merged = "merged",
    }
}

crate::text_enum! {
    /// DATEX II severity.
    pub enum Severity {
        Unknown = "unknown",
        Low = "low",
        Medium = "medium",
        High = "high",
        Highest = "highest",
    }
}

crate::text_enum! {
    /// DATEX II probability of occurrence.
    pub enum Probability {
        Certain = "certain",
        Probable = "probable",
        RiskOf = "risk_of",
    }
}

crate::text_enum! {
    /// What happened (also used by appeals).
    pub enum IncidentKind {
        Accident = "accident",
        Breakdown = "breakdown",
        Debris = "debris",
        Roadworks = "roadworks",
        Weather = "weather",
        Congestion = "congestion",
        Hazard = "hazard",
        Other = "other",
    }
}

crate::text_enum! {
    /// Who reported it.
    pub enum IncidentSource {
        Operator = "operator",
        Appeal = "appeal",
        Detector = "detector",
        Patrol = "patrol",
    }
}

/// The states of an incident still being handled.
pub const OPEN_STATES: [&str; 6] = [
    "reported",
    "verified",
    "dispatched",
    "on_scene",
    "lanes_cleared",
    "scene_cleared",
];

impl IncidentState {
    /// Every legal `(from, to)` transition.
    pub const TRANSITIONS: &'static [(IncidentState, IncidentState)] = {
        use IncidentState::*;
        &[
            (Reported, Verified),
            (Reported, Rejected),
            (Reported, Duplicate),
            (Reported, Merged),
            (Verified, Dispatched),
            (Verified, Duplicate),
            (Verified, Merged),
            (Dispatched, OnScene),
            (OnScene, LanesCleared),
            (LanesCleared, SceneCleared),
            (SceneCleared, Closed),
        ]
    };

    pub fn can_become(self, to: IncidentState) -> bool {
        Self::TRANSITIONS.contains(&(self, to))
    }

    pub fn is_open(self) -> bool {
        OPEN_STATES.contains(&self.as_str())
    }

    /// The column stamped when entering this state.
    fn timestamp_column(self) -> &'static str {
        use IncidentState::*;
        match self {
            Reported => "t1_reported_at",
            Verified => "t2_verified_at",
            Dispatched => "t3_dispatched_at",
            OnScene => "t4_on_scene_at",
            LanesCleared => "t5_lanes_cleared_at",
            SceneCleared => "t6_scene_cleared_at",
            Closed => "t7_closed_at",
            Rejected | Duplicate | Merged => "ended_at",
        }
    }

    /// The transitions a patrol crew may make on their own incidents.
    fn patrol_may_enter(self) -> bool {
        matches!(
            self,
            IncidentState::OnScene | IncidentState::LanesCleared | IncidentState::SceneCleared
        )
    }
}

/// The FHWA traffic incident management timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Timeline {
    /// T0: the incident occurred (as reported).
    pub t0_occurred_at: Option<DateTime<Utc>>,
    /// T1: reported (detected).
    pub t1_reported_at: DateTime<Utc>,
    /// T2: verified.
    pub t2_verified_at: Option<DateTime<Utc>>,
    /// T3: response dispatched.
    pub t3_dispatched_at: Option<DateTime<Utc>>,
    /// T4: responders on scene.
    pub t4_on_scene_at: Option<DateTime<Utc>>,
    /// T5: all lanes open (roadway clearance).
    pub t5_lanes_cleared_at: Option<DateTime<Utc>>,
    /// T6: responders left (incident clearance).
    pub t6_scene_cleared_at: Option<DateTime<Utc>>,
    /// T7: normal traffic flow restored; the incident is closed.
    pub t7_closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Incident {
    pub id: i64,
    pub kind: IncidentKind,
    pub state: IncidentState,
    pub severity: Severity,
    pub probability: Probability,
    pub title: String,
    pub description: String,
    /// WGS 84 degrees.
    pub lat: f64,
    pub lon: f64,
    /// A district or road section name, for filtering.
    pub area: Option<String>,
    pub road: Option<String>,
    pub direction: Option<String>,
    pub lanes_total: Option<i16>,
    /// Blocked lane numbers (1 = the lane numbering convention of the road).
    pub lanes_blocked: Vec<i16>,
    pub assigned_patrol_id: Option<i64>,
    /// The incident this one duplicates or was merged into.
    pub related_incident_id: Option<i64>,
    pub source: IncidentSource,
    pub reported_by: Option<i64>,
    pub timeline: Timeline,
    /// When it was rejected, marked duplicate or merged.
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, kind, state, severity, probability, title, description, lat, lon, \
    area, road, direction, lanes_total, lanes_blocked, assigned_patrol_id, related_incident_id, \
    source, reported_by, t0_occurred_at, t1_reported_at, t2_verified_at, t3_dispatched_at, \
    t4_on_scene_at, t5_lanes_cleared_at, t6_scene_cleared_at, t7_closed_at, ended_at, \
    created_at, updated_at";

impl Incident {
    fn from_row(row: &Row) -> ApiResult<Self> {
        Ok(Self {
            id: row.get(0),
            kind: IncidentKind::from_db(row.get(1))?,
            state: IncidentState::from_db(row.get(2))?,
            severity: Severity::from_db(row.get(3))?,
            probability: Probability::from_db(row.get(4))?,
            title: row.get(5),
            description: row.get(6),
            lat: row.get(7),
            lon: row.get(8),
            area: row.get(9),
            road: row.get(10),
            direction: row.get(11),
            lanes_total: row.get(12),
            lanes_blocked: row.get(13),
            assigned_patrol_id: row.get(14),
            related_incident_id: row.get(15),
            source: IncidentSource::from_db(row.get(16))?,
            reported_by: row.get(17),
            timeline: Timeline {
                t0_occurred_at: row.get(18),
                t1_reported_at: row.get(19),
                t2_verified_at: row.get(20),
                t3_dispatched_at: row.get(21),
                t4_on_scene_at: row.get(22),
                t5_lanes_cleared_at: row.get(23),
                t6_scene_cleared_at: row.get(24),
                t7_closed_at: row.get(25),
            },
            ended_at: row.get(26),
            created_at: row.get(27),
            updated_at: row.get(28),
        })
    }

    /// Whether `caller` may read it.
    fn visible_to(&self, caller: &AuthUser) -> bool {
        caller.can_read_all()
            || (caller.role == Role::Patrol
                && caller.patrol_id.is_some()
                && caller.patrol_id == self.assigned_patrol_id)
    }
}

/// The most lanes a road section may have here.
const MAX_LANES: i16 = 16;
/// Reported times may be this far ahead of the server clock (clock skew).
const MAX_FUTURE_SKEW_S: i64 = 60;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIncident {
    pub kind: IncidentKind,
    /// 1–200 characters.
    pub title: String,
    /// Up to 5000 characters.
    #[serde(default)]
    pub description: String,
    /// Default `unknown`.
    pub severity: Option<Severity>,
    /// Default `probable`.
    pub probability: Option<Probability>,
    pub lat: f64,
    pub lon: f64,
    pub area: Option<String>,
    pub road: Option<String>,
    pub direction: Option<String>,
    /// 1–16.
    pub lanes_total: Option<i16>,
    #[serde(default)]
    pub lanes_blocked: Vec<i16>,
    pub assigned_patrol_id: Option<i64>,
    /// T0, when it happened (not after `reported_at`).
    pub occurred_at: Option<DateTime<Utc>>,
    /// T1; default now.
    pub reported_at: Option<DateTime<Utc>>,
}

/// A partial update: absent fields stay as they are; `null` clears a nullable field.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncident {
    pub kind: Option<IncidentKind>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub severity: Option<Severity>,
    pub probability: Option<Probability>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub area: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub road: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub direction: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i16>, nullable)]
    pub lanes_total: Option<Option<i16>>,
    pub lanes_blocked: Option<Vec<i16>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub assigned_patrol_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable)]
    pub occurred_at: Option<Option<DateTime<Utc>>>,
}

impl UpdateIncident {
    /// Whether only the fields a patrol crew may change are present.
    fn patrol_may_apply(&self) -> bool {
        let Self {
            kind,
            title,
            description: _,
            severity: _,
            probability,
            lat,
            lon,
            area,
            road,
            direction,
            lanes_total,
            lanes_blocked: _,
            assigned_patrol_id,
            occurred_at,
        } = self;
        kind.is_none()
            && title.is_none()
            && probability.is_none()
            && lat.is_none()
            && lon.is_none()
            && area.is_none()
            && road.is_none()
            && direction.is_none()
            && lanes_total.is_none()
            && assigned_patrol_id.is_none()
            && occurred_at.is_none()
    }

    fn apply(self, i: &mut Incident) {
        if let Some(v) = self.kind {
            i.kind = v;
        }
        if let Some(v) = self.title {
            i.title = v;
        }
        if let Some(v) = self.description {
            i.description = v;
        }
        if let Some(v) = self.severity {
            i.severity = v;
        }
        if let Some(v) = self.probability {
            i.probability = v;
        }
        if let Some(v) = self.lat {
            i.lat = v;
        }
        if let Some(v) = self.lon {
            i.lon = v;
        }
        if let Some(v) = self.area {
            i.area = v;
        }
        if let Some(v) = self.road {
            i.road = v;
        }
        if let Some(v) = self.direction {
            i.direction = v;
        }
        if let Some(v) = self.lanes_total {
            i.lanes_total = v;
        }
        if let Some(v) = self.lanes_blocked {
            i.lanes_blocked = v;
        }
        if let Some(v) = self.assigned_patrol_id {
            i.assigned_patrol_id = v;
        }
        if let Some(v) = self.occurred_at {
            i.timeline.t0_occurred_at = v;
        }
    }
}

/// Checks the fields of a whole incident (after create or update).
#[allow(clippy::too_many_arguments)]
fn validate_fields(
    v: &mut Validator,
    title: &str,
    description: &str,
    lat: f64,
    lon: f64,
    texts: [(&str, Option<&str>); 3],
    lanes_total: Option<i16>,
    lanes_blocked: &[i16],
    occurred_at: Option<DateTime<Utc>>,
    reported_at: DateTime<Utc>,
) {
    v.text("title", title, 1, 200, false);
    v.text("description", description, 0, 5000, true);
    v.range("lat", lat, -90.0, 90.0);
    v.range("lon", lon, -180.0, 180.0);
    for (field, value) in texts {
        v.opt_text(field, value, 100, false);
    }
    if let Some(n) = lanes_total {
        v.range("lanes_total", n, 1, MAX_LANES);
    }
    let max_lane = lanes_total.unwrap_or(MAX_LANES);
    for (i, lane) in lanes_blocked.iter().enumerate() {
        if *lane < 1 || *lane > max_lane {
            v.add(
                format!("lanes_blocked[{i}]"),
                format!("must be a lane from 1 to {max_lane}"),
            );
        } else if lanes_blocked[..i].contains(lane) {
            v.add(format!("lanes_blocked[{i}]"), "is listed twice");
        }
    }
    let latest = Utc::now() + chrono::Duration::seconds(MAX_FUTURE_SKEW_S);
    if reported_at > latest {
        v.add("reported_at", "must not be in the future");
    }
    if occurred_at.is_some_and(|t| t > reported_at) {
        v.add("occurred_at", "must not be after reported_at");
    }
}

/// What a new incident needs; shared by the API and appeals (an incident made from an
/// appeal).
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub body: CreateIncident,
    pub source: IncidentSource,
    pub reported_by: Option<i64>,
}

/// Validates and inserts an incident with its `created` history event and audit row.
pub async fn insert_incident(
    db: &impl GenericClient,
    actor: &Actor,
    new: NewIncident,
) -> ApiResult<Incident> {
    let b = &new.body;
    let reported_at = b.reported_at.unwrap_or_else(Utc::now);
    let mut v = Validator::new();
    validate_fields(
        &mut v,
        &b.title,
        &b.description,
        b.lat,
        b.lon,
        [
            ("area", b.area.as_deref()),
            ("road", b.road.as_deref()),
            ("direction", b.direction.as_deref()),
        ],
        b.lanes_total,
        &b.lanes_blocked,
        b.occurred_at,
        reported_at,
    );
    v.finish()?;
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO incident (kind, severity, probability, title, description, lat, lon, \
                   area, road, direction, lanes_total, lanes_blocked, assigned_patrol_id, source, \
                   reported_by, t0_occurred_at, t1_reported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 RETURNING {COLUMNS}"
        ))
        .await?;
    let row = db
        .query_one(
            &stmt,
            &[
                &b.kind.as_str(),
                &b.severity.unwrap_or(Severity::Unknown).as_str(),
                &b.probability.unwrap_or(Probability::Probable).as_str(),
                &b.title,
                &b.description,
                &b.lat,
                &b.lon,
                &b.area,
                &b.road,
                &b.direction,
                &b.lanes_total,
                &b.lanes_blocked,
                &b.assigned_patrol_id,
                &new.source.as_str(),
                &new.reported_by,
                &b.occurred_at,
                &reported_at,
            ],
        )
        .await?;
    let incident = Incident::from_row(&row)?;
    let after = audit::json(&incident);
    add_event(
        db,
        incident.id,
        actor,
        "created",
        None,
        Some(incident.state),
        None,
        after.clone().unwrap_or_default(),
    )
    .await?;
    audit::record(
        db,
        actor,
        "incident.create",
        "incident",
        incident.id,
        None,
        after,
    )
    .await?;
    notify_change(db, actor, None, &incident).await?;
    Ok(incident)
}

/// The notifications a change makes, in the change's transaction (delivered at commit):
/// the crew of a newly assigned patrol hears of the assignment; the assigned crew and the
/// reporter hear of a state change (a crew assigned by that very change only of its
/// assignment). Nobody is told of their own change.
async fn notify_change(
    db: &impl GenericClient,
    actor: &Actor,
    before: Option<&Incident>,
    after: &Incident,
) -> ApiResult<()> {
    let newly_assigned = after
        .assigned_patrol_id
        .filter(|&p| before.is_none_or(|b| b.assigned_patrol_id != Some(p)));
    if let Some(patrol) = newly_assigned {
        let payload = serde_json::json!({"incident_id": after.id, "title": after.title});
        notifications::notify_patrol(db, patrol, notifications::INCIDENT_ASSIGNED, &payload)
            .await?;
    }
    let Some(before) = before.filter(|b| b.state != after.state) else {
        return Ok(());
    };
    // A crew just assigned has its assignment notice; the dispatch is not news to it.
    let mut users: Vec<i64> = match after
        .assigned_patrol_id
        .filter(|_| newly_assigned.is_none())
    {
        Some(patrol) => notifications::patrol_crew(db, patrol).await?,
        None => Vec::new(),
    };
    users.extend(after.reported_by);
    users.sort_unstable();
    users.dedup();
    users.retain(|u| Some(*u) != actor.user_id);
    let payload = serde_json::json!({
        "incident_id": after.id,
        "from": before.state.as_str(),
        "to": after.state.as_str(),
    });
    notifications::notify_users(db, &users, notifications::INCIDENT_STATE, &payload).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn add_event(
    db: &impl GenericClient,
    incident_id: i64,
    actor: &Actor,
    kind: &str,
    from: Option<IncidentState>,
    to: Option<IncidentState>,
    note: Option<&str>,
    changes: serde_json::Value,
) -> ApiResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO incident_event (incident_id, actor_id, kind, from_state, to_state, note, changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &incident_id,
            &actor.user_id,
            &kind,
            &from.map(IncidentState::as_str),
            &to.map(IncidentState::as_str),
            &note,
            &changes,
        ],
    )
    .await?;
    Ok(())
}

/// Reads an incident, locking it for update when `lock`.
async fn fetch(db: &impl GenericClient, id: i64, lock: bool) -> ApiResult<Incident> {
    let sql = format!(
        "SELECT {COLUMNS} FROM incident WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = db
        .query_opt(&sql, &[&id])
        .await?
        .ok_or(ApiError::NotFound)?;
    Incident::from_row(&row)
}

/// Create an incident.
#[utoipa::path(post, path = "/api/incidents/", tag = "incidents",
    request_body = CreateIncident,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created", body = Incident),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not admin, operator or patrol", body = ErrorBody),
        (status = 422, description = "invalid fields", body = ErrorBody)))]
async fn create_incident(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiJson(mut body): ApiJson<CreateIncident>,
) -> ApiResult<Response> {
    caller.require(&[Role::Admin, Role::Operator, Role::Patrol])?;
    let source = if caller.role == Role::Patrol {
        let Some(patrol) = caller.patrol_id else {
            return Err(ApiError::Forbidden("you are not on a patrol"));
        };
        if body.assigned_patrol_id.is_some_and(|p| p != patrol) {
            return Err(ApiError::Forbidden("a patrol may assign only itself"));
        }
        body.assigned_patrol_id = Some(patrol);
        IncidentSource::Patrol
    } else {
        IncidentSource::Operator
    };
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let incident = insert_incident(
        &tx,
        &Actor::user(&caller, &request_id),
        NewIncident {
            body,
            source,
            reported_by: Some(caller.id),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(incident)).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    /// Comma-separated states (`reported,verified`).
    pub state: Option<String>,
    /// Only incidents still being handled (`true`) or only finished ones (`false`).
    pub open: Option<bool>,
    /// Comma-separated severities.
    pub severity: Option<String>,
    /// Comma-separated kinds.
    pub kind: Option<String>,
    /// Exact area name.
    pub area: Option<String>,
    /// Reported at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Reported before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// `min_lon,min_lat,max_lon,max_lat` (WGS 84 degrees).
    pub bbox: Option<String>,
    pub assigned_patrol_id: Option<i64>,
    /// `reported_at` | `updated_at` | `severity` | `id`, `-` prefix for descending.
    /// Default `-reported_at`.
    pub sort: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentPage {
    pub items: Vec<Incident>,
    /// The `offset` of the next page, if there is one.
    pub next_offset: Option<i64>,
}

/// `ORDER BY` for a `sort` parameter, from a fixed list (never client text in SQL).
fn order_by(sort: Option<&str>) -> ApiResult<&'static str> {
    Ok(match sort.unwrap_or("-reported_at") {
        "reported_at" => "t1_reported_at, id",
        "-reported_at" => "t1_reported_at DESC, id DESC",
        "updated_at" => "updated_at, id",
        "-updated_at" => "updated_at DESC, id DESC",
        "severity" => {
            "array_position(ARRAY['unknown','low','medium','high','highest'], severity), id"
        }
        "-severity" => {
            "array_position(ARRAY['unknown','low','medium','high','highest'], severity) DESC, id DESC"
        }
        "id" => "id",
        "-id" => "id DESC",
        _ => {
            return Err(ApiError::field(
                "query.sort",
                "must be reported_at, updated_at, severity or id, optionally with a leading -",
            ));
        }
    })
}

fn parse_bbox(s: &str) -> ApiResult<[f64; 4]> {
    let bad = || {
        ApiError::field(
            "query.bbox",
            "must be min_lon,min_lat,max_lon,max_lat with min <= max, in degrees",
        )
    };
    let parts: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [min_lon, min_lat, max_lon, max_lat] = <[f64; 4]>::try_from(parts).map_err(|_| bad())?;
    let ok = min_lon <= max_lon
        && min_lat <= max_lat
        && (-180.0..=180.0).contains(&min_lon)
        && (-180.0..=180.0).contains(&max_lon)
        && (-90.0..=90.0).contains(&min_lat)
        && (-90.0..=90.0).contains(&max_lat);
    if ok {
        Ok([min_lon, min_lat, max_lon, max_lat])
    } else {
        Err(bad())
    }
}

/// List incidents, filtered, sorted and paged.
#[utoipa::path(get, path = "/api/incidents/", tag = "incidents",
    params(IncidentQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of incidents", body = IncidentPage),
        (status = 400, description = "a bad query parameter", body = ErrorBody),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "public users cannot list incidents", body = ErrorBody),
        (status = 422, description = "a bad filter value", body = ErrorBody)))]
async fn list_incidents(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> ApiResult<axum::Json<IncidentPage>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Analyst, Role::Patrol])?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let order = order_by(q.sort.as_deref())?;
    let mut f = Filter::default();
    if caller.role == Role::Patrol {
        // A crew sees only its own patrol's incidents (none when not on a patrol).
        f.add("assigned_patrol_id = $$", caller.patrol_id.unwrap_or(-1));
    }
    if let Some(s) = &q.state {
        f.add(
            "state = ANY($$)",
            to_strings(IncidentState::parse_list("state", s)?),
        );
    }
    if let Some(open) = q.open {
        let clause = if open {
            "state = ANY($$)"
        } else {
            "NOT (state = ANY($$))"
        };
        f.add(clause, to_strings(OPEN_STATES.to_vec()));
    }
    if let Some(s) = &q.severity {
        f.add(
            "severity = ANY($$)",
            to_strings(Severity::parse_list("severity", s)?),
        );
    }
    if let Some(s) = &q.kind {
        f.add(
            "kind = ANY($$)",
            to_strings(IncidentKind::parse_list("kind", s)?),
        );
    }
    if let Some(a) = &q.area {
        if a.chars().count() > 100 {
            return Err(ApiError::field(
                "query.area",
                "must be at most 100 characters",
            ));
        }
        f.add("area = $$", a.clone());
    }
    if let Some(t) = q.from {
        f.add("t1_reported_at >= $$", t);
    }
    if let Some(t) = q.to {
        f.add("t1_reported_at < $$", t);
    }
    if let Some(b) = &q.bbox {
        let [min_lon, min_lat, max_lon, max_lat] = parse_bbox(b)?;
        // `box` takes two corners; `<@` uses the GiST index on `geo`.
        f.add_all(
            "geo <@ box(point($$, $$), point($$, $$))",
            vec![
                Box::new(min_lon),
                Box::new(min_lat),
                Box::new(max_lon),
                Box::new(max_lat),
            ],
        );
    }
    if let Some(p) = q.assigned_patrol_id {
        f.add("assigned_patrol_id = $$", p);
    }
    let n = f.param_count();
    let sql = format!(
        "SELECT {COLUMNS} FROM incident{} ORDER BY {order} LIMIT ${} OFFSET ${}",
        f.sql(),
        n + 1,
        n + 2
    );
    let fetch_limit = limit + 1;
    let mut params = f.params();
    params.push(&fetch_limit);
    params.push(&offset);
    let db = state.db().await?;
    let stmt = db.prepare_cached(&sql).await?;
    let rows = db.query(&stmt, &params).await?;
    let (items, next_offset) = page(rows, limit, offset, Incident::from_row)?;
    Ok(axum::Json(IncidentPage { items, next_offset }))
}

fn to_strings(v: Vec<&'static str>) -> Vec<String> {
    v.into_iter().map(str::to_owned).collect()
}

/// Read an incident.
#[utoipa::path(get, path = "/api/incidents/{id}/", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the incident", body = Incident),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not visible to the caller", body = ErrorBody),
        (status = 404, description = "no such incident", body = ErrorBody)))]
async fn get_incident(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Incident>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Analyst, Role::Patrol])?;
    let db = state.db().await?;
    let incident = fetch(&db, id, false).await?;
    if !incident.visible_to(&caller) {
        return Err(ApiError::Forbidden(
            "this incident is not assigned to your patrol",
        ));
    }
    Ok(axum::Json(incident))
}

/// Update an incident's fields (not its state: see the transitions).
#[utoipa::path(patch, path = "/api/incidents/{id}/", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")),
    request_body = UpdateIncident,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the updated incident", body = Incident),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not allowed for this caller or field", body = ErrorBody),
        (status = 404, description = "no such incident", body = ErrorBody),
        (status = 409, description = "the incident is finished", body = ErrorBody),
        (status = 422, description = "invalid fields", body = ErrorBody)))]
async fn update_incident(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateIncident>,
) -> ApiResult<axum::Json<Incident>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Patrol])?;
    if caller.role == Role::Patrol && !body.patrol_may_apply() {
        return Err(ApiError::Forbidden(
            "a patrol may change only lanes_blocked, severity and description",
        ));
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch(&tx, id, true).await?;
    if !before.visible_to(&caller) {
        return Err(ApiError::Forbidden(
            "this incident is not assigned to your patrol",
        ));
    }
    if !before.state.is_open() {
        return Err(ApiError::conflict(
            "state",
            format!(
                "the incident is {}; it can no longer be changed",
                before.state
            ),
        ));
    }
    let mut after = before.clone();
    body.apply(&mut after);
    let mut v = Validator::new();
    validate_fields(
        &mut v,
        &after.title,
        &after.description,
        after.lat,
        after.lon,
        [
            ("area", after.area.as_deref()),
            ("road", after.road.as_deref()),
            ("direction", after.direction.as_deref()),
        ],
        after.lanes_total,
        &after.lanes_blocked,
        after.timeline.t0_occurred_at,
        after.timeline.t1_reported_at,
    );
    v.finish()?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE incident SET kind = $2, title = $3, description = $4, severity = $5, \
                   probability = $6, lat = $7, lon = $8, area = $9, road = $10, direction = $11, \
                   lanes_total = $12, lanes_blocked = $13, assigned_patrol_id = $14, \
                   t0_occurred_at = $15, updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &after.kind.as_str(),
                &after.title,
                &after.description,
                &after.severity.as_str(),
                &after.probability.as_str(),
                &after.lat,
                &after.lon,
                &after.area,
                &after.road,
                &after.direction,
                &after.lanes_total,
                &after.lanes_blocked,
                &after.assigned_patrol_id,
                &after.timeline.t0_occurred_at,
            ],
        )
        .await?;
    let after = Incident::from_row(&row)?;
    record_change(
        &tx,
        &Actor::user(&caller, &request_id),
        "incident.update",
        &before,
        &after,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// Writes the history event and the audit row of a change.
async fn record_change(
    db: &impl GenericClient,
    actor: &Actor,
    action: &str,
    before: &Incident,
    after: &Incident,
    note: Option<&str>,
) -> ApiResult<()> {
    let (b, a) = (audit::json(before), audit::json(after));
    let changes = audit::diff(
        b.as_ref().unwrap_or(&serde_json::Value::Null),
        a.as_ref().unwrap_or(&serde_json::Value::Null),
    );
    let (kind, from, to) = if before.state == after.state {
        ("updated", None, None)
    } else {
        ("transition", Some(before.state), Some(after.state))
    };
    add_event(db, after.id, actor, kind, from, to, note, changes).await?;
    audit::record(db, actor, action, "incident", after.id, b, a).await?;
    notify_change(db, actor, Some(before), after).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// The new state.
    pub to: IncidentState,
    /// Up to 1000 characters, kept in the history.
    pub note: Option<String>,
    /// When it happened (default now); not before the previous timeline point.
    pub at: Option<DateTime<Utc>>,
    /// For `duplicate` and `merged`: the other incident.
    pub related_incident_id: Option<i64>,
    /// For `dispatched`: the patrol sent (required unless one is assigned already).
    pub assigned_patrol_id: Option<i64>,
}

/// Move an incident to another state.
#[utoipa::path(post, path = "/api/incidents/{id}/transitions/", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")),
    request_body = TransitionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the incident in its new state", body = Incident),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not allowed for this caller", body = ErrorBody),
        (status = 404, description = "no such incident", body = ErrorBody),
        (status = 409, description = "not a legal transition from the current state", body = ErrorBody),
        (status = 422, description = "invalid fields", body = ErrorBody)))]
async fn transition(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<TransitionRequest>,
) -> ApiResult<axum::Json<Incident>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Patrol])?;
    if caller.role == Role::Patrol
        && (!body.to.patrol_may_enter() || body.assigned_patrol_id.is_some())
    {
        return Err(ApiError::Forbidden(
            "a patrol may only report on_scene, lanes_cleared and scene_cleared",
        ));
    }
    let mut v = Validator::new();
    v.opt_text("note", body.note.as_deref(), 1000, true);
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch(&tx, id, true).await?;
    if !before.visible_to(&caller) {
        return Err(ApiError::Forbidden(
            "this incident is not assigned to your patrol",
        ));
    }
    let to = body.to;
    if !before.state.can_become(to) {
        let legal: Vec<&str> = IncidentState::TRANSITIONS
            .iter()
            .filter(|(from, _)| *from == before.state)
            .map(|(_, t)| t.as_str())
            .collect();
        return Err(ApiError::conflict(
            "to",
            format!(
                "cannot go from {} to {to}; legal: {}",
                before.state,
                if legal.is_empty() {
                    "none".to_owned()
                } else {
                    legal.join(", ")
                }
            ),
        ));
    }
    let now = Utc::now();
    let at = body.at.unwrap_or(now);
    let previous = latest_timestamp(&before);
    let mut v = Validator::new();
    if at > now + chrono::Duration::seconds(MAX_FUTURE_SKEW_S) {
        v.add("at", "must not be in the future");
    }
    if at < previous {
        v.add(
            "at",
            format!("must not be before the previous timeline point ({previous})"),
        );
    }
    let related = match to {
        IncidentState::Duplicate | IncidentState::Merged => match body.related_incident_id {
            None => {
                v.add(
                    "related_incident_id",
                    "is required for duplicate and merged",
                );
                None
            }
            Some(r) if r == id => {
                v.add("related_incident_id", "must be another incident");
                None
            }
            Some(r) => Some(r),
        },
        _ => {
            if body.related_incident_id.is_some() {
                v.add("related_incident_id", "only for duplicate and merged");
            }
            None
        }
    };
    let patrol = match (to, body.assigned_patrol_id, before.assigned_patrol_id) {
        (IncidentState::Dispatched, Some(p), _) => Some(p),
        (IncidentState::Dispatched, None, Some(p)) => Some(p),
        (IncidentState::Dispatched, None, None) => {
            v.add("assigned_patrol_id", "dispatching needs a patrol");
            None
        }
        (_, Some(_), _) => {
            v.add("assigned_patrol_id", "only when dispatching");
            None
        }
        (_, None, current) => current,
    };
    v.finish()?;
    if let Some(r) = related {
        let target = fetch(&tx, r, false).await.map_err(|e| match e {
            ApiError::NotFound => ApiError::field("related_incident_id", "no such incident"),
            other => other,
        })?;
        if to == IncidentState::Merged && !target.state.is_open() {
            return Err(ApiError::conflict(
                "related_incident_id",
                format!("cannot merge into an incident that is {}", target.state),
            ));
        }
    }
    let lanes_cleared = to == IncidentState::LanesCleared;
    let row = tx
        .query_one(
            &format!(
                "UPDATE incident SET state = $2, {column} = $3, related_incident_id = coalesce($4, related_incident_id), \
                   assigned_patrol_id = $5, \
                   lanes_blocked = CASE WHEN $6 THEN '{{}}'::smallint[] ELSE lanes_blocked END, \
                   updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}",
                column = to.timestamp_column()
            ),
            &[&id, &to.as_str(), &at, &related, &patrol, &lanes_cleared],
        )
        .await?;
    let after = Incident::from_row(&row)?;
    let actor = Actor::user(&caller, &request_id);
    record_change(
        &tx,
        &actor,
        "incident.transition",
        &before,
        &after,
        body.note.as_deref(),
    )
    .await?;
    if let (IncidentState::Merged, Some(target)) = (to, related) {
        let note = format!("incident {id} was merged into this one");
        add_event(
            &tx,
            target,
            &actor,
            "updated",
            None,
            None,
            Some(&note),
            serde_json::json!({}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// The latest timeline point set so far.
fn latest_timestamp(i: &Incident) -> DateTime<Utc> {
    let t = &i.timeline;
    [
        t.t2_verified_at,
        t.t3_dispatched_at,
        t.t4_on_scene_at,
        t.t5_lanes_cleared_at,
        t.t6_scene_cleared_at,
        t.t7_closed_at,
    ]
    .into_iter()
    .flatten()
    .fold(t.t1_reported_at, DateTime::max)
}

/// One change in an incident's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user who made it.
    pub actor_id: Option<i64>,
    /// `created`, `updated` or `transition`.
    pub kind: String,
    pub from_state: Option<IncidentState>,
    pub to_state: Option<IncidentState>,
    pub note: Option<String>,
    /// `{"field": {"from": .., "to": ..}}`; the whole incident for `created`.
    pub changes: serde_json::Value,
}

/// An incident's history, oldest first.
#[utoipa::path(get, path = "/api/incidents/{id}/history/", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "every change, oldest first", body = Vec<IncidentEvent>),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not visible to the caller", body = ErrorBody),
        (status = 404, description = "no such incident", body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Vec<IncidentEvent>>> {
    caller.require(&[Role::Admin, Role::Operator, Role::Analyst, Role::Patrol])?;
    let db = state.db().await?;
    let incident = fetch(&db, id, false).await?;
    if !incident.visible_to(&caller) {
        return Err(ApiError::Forbidden(
            "this incident is not assigned to your patrol",
        ));
    }
    let rows = db
        .query(
            "SELECT id, at, actor_id, kind, from_state, to_state, note, changes \
             FROM incident_event WHERE incident_id = $1 ORDER BY id",
            &[&id],
        )
        .await?;
    let events = rows
        .iter()
        .map(|r| {
            let state = |i: usize| -> ApiResult<Option<IncidentState>> {
                r.get::<_, Option<&str>>(i)
                    .map(IncidentState::from_db)
                    .transpose()
            };
            Ok(IncidentEvent {
                id: r.get(0),
                at: r.get(1),
                actor_id: r.get(2),
                kind: r.get(3),
                from_state: state(4)?,
                to_state: state(5)?,
                note: r.get(6),
                changes: r.get(7),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_a_strict_chain_plus_endings() {
        use IncidentState::*;
        assert!(Reported.can_become(Verified));
        assert!(!Reported.can_become(Dispatched));
        assert!(!Closed.can_become(Reported));
        for s in [Closed, Rejected, Duplicate, Merged] {
            assert!(!s.is_open());
            assert!(IncidentState::ALL.iter().all(|t| !s.can_become(*t)));
        }
        assert_eq!(OPEN_STATES.len(), IncidentState::ALL.len() - 4);
    }

    #[test]
    fn bbox_and_sort_are_checked() {
        assert_eq!(parse_bbox("1,2,3,4").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        for bad in ["1,2,3", "3,2,1,4", "a,b,c,d", "0,0,200,1", "1,2,3,4,5"] {
            assert!(parse_bbox(bad).is_err(), "{bad}");
        }
        assert!(order_by(Some("-severity")).is_ok());
        assert!(order_by(Some("id; DROP TABLE incident")).is_err());
    }
}
