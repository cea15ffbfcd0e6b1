//! `/api/notifications/`: each user's notifications (listed, marked read, pushed live over
//! the chat WebSocket), and the sites a user watches for congestion.
//!
//! Notifications are made by events through [`notify`] / [`notify_users`] /
//! [`notify_patrol`], inside the transaction of the change that causes them, so they exist
//! exactly when the change does and are announced to every instance at commit. Kinds:
//! [`INCIDENT_ASSIGNED`], [`INCIDENT_STATE`], [`CONGESTION`], [`APPEAL_ANSWERED`].
//! Congestion is found by a scan of the watched sites every minute
//! ([`scan_congestion`]): a site whose live state turns congested (a lane at LOS E or F)
//! notifies its watchers once per episode, whichever instance sees it first.
//!
//! Every user reads and marks only their own notifications. Watching needs a role that
//! reads traffic (admin, operator, analyst, patrol).

use axum::extract::State;
use axum::extract::ws::Utf8Bytes;
use axum::response::Response;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiPath, ApiQuery};
use crate::http::no_content;
use crate::realtime::NOTIFICATION_CHANNEL;
use crate::routes::params::{self, FIELD_ROLES};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(list_watches))
        .routes(routes!(watch, unwatch))
}

/// An incident was assigned to the user's patrol. Payload: `incident_id`, `title`.
pub const INCIDENT_ASSIGNED: &str = "incident_assigned";
/// An incident the user follows changed state. Payload: `incident_id`, `from`, `to`.
pub const INCIDENT_STATE: &str = "incident_state";
/// A watched site became congested. Payload: `site_id`, `los`, `lanes_congested`.
pub const CONGESTION: &str = "congestion";
/// The user's appeal was answered. Payload: `appeal_id`, `status`.
pub const APPEAL_ANSWERED: &str = "appeal_answered";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, kind, payload, created_at, read_at";

impl Notification {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            kind: r.get(1),
            payload: r.get(2),
            created_at: r.get(3),
            read_at: r.get(4),
        }
    }
}

/// Notifies each of `user_ids` (in `db`'s transaction; announced at commit). Returns how
/// many notifications were made.
pub async fn notify_users(
    db: &impl GenericClient,
    user_ids: &[i64],
    kind: &str,
    payload: &serde_json::Value,
) -> ApiResult<u64> {
    Ok(db
        .execute(
            "WITH n AS (INSERT INTO notification (user_id, kind, payload) \
               SELECT u, $2, $3 FROM unnest($1::bigint[]) u RETURNING id, user_id) \
             SELECT pg_notify($4, n.user_id || ':' || n.id) FROM n",
            &[&user_ids, &kind, payload, &NOTIFICATION_CHANNEL],
        )
        .await?)
}

/// Notifies one user; see [`notify_users`].
pub async fn notify(
    db: &impl GenericClient,
    user_id: i64,
    kind: &str,
    payload: &serde_json::Value,
) -> ApiResult<u64> {
    notify_users(db, &[user_id], kind, payload).await
}

/// Notifies every enabled user crewing `patrol_id` (e.g. [`INCIDENT_ASSIGNED`]).
pub async fn notify_patrol(
    db: &impl GenericClient,
    patrol_id: i64,
    kind: &str,
    payload: &serde_json::Value,
) -> ApiResult<u64> {
    let crew = patrol_crew(db, patrol_id).await?;
    notify_users(db, &crew, kind, payload).await
}

/// The enabled users crewing `patrol_id`.
pub async fn patrol_crew(db: &impl GenericClient, patrol_id: i64) -> ApiResult<Vec<i64>> {
    Ok(db
        .query(
            "SELECT id FROM app_user WHERE patrol_id = $1 AND NOT disabled",
            &[&patrol_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Notification `id` if it belongs to `user_id`.
pub async fn fetch(
    db: &impl GenericClient,
    user_id: i64,
    id: i64,
) -> ApiResult<Option<Notification>> {
    Ok(db
        .query_opt(
            &format!("SELECT {COLUMNS} FROM notification WHERE id = $1 AND user_id = $2"),
            &[&id, &user_id],
        )
        .await?
        .map(|r| Notification::from_row(&r)))
}

/// The user's notifications with ids above `after`, oldest first, at most `limit`.
pub async fn after(
    db: &impl GenericClient,
    user_id: i64,
    after: i64,
    limit: i64,
) -> ApiResult<Vec<Notification>> {
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM notification WHERE user_id = $1 AND id > $2 \
                 ORDER BY id LIMIT $3"
            ),
            &[&user_id, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(Notification::from_row).collect())
}

/// The WebSocket frame of a notification.
pub fn frame(n: &Notification) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::json!({"type": "notification", "notification": n}).to_string())
}

/// Checks the watched sites and notifies watchers of each newly congested one. Returns
/// how many notifications were made.
pub async fn scan_congestion(db: &mut deadpool_postgres::Object) -> ApiResult<u64> {
    let sites: Vec<String> = db
        .query("SELECT DISTINCT site_id FROM site_watch", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut made = 0;
    for site in sites {
        let live = crate::routes::traffic::live_site(&*db, &site).await?;
        let tx = db.transaction().await?;
        if live.congested {
            // Only the instance whose insert wins notifies, once per episode.
            let new = tx
                .execute(
                    "INSERT INTO site_congestion (site_id, since) VALUES ($1, now()) ON CONFLICT DO NOTHING",
                    &[&site],
                )
                .await?;
            if new == 1 {
                let watchers: Vec<i64> = tx
                    .query(
                        "SELECT user_id FROM site_watch WHERE site_id = $1",
                        &[&site],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let payload = serde_json::json!({
                    "site_id": site,
                    "los": live.los,
                    "lanes_congested": live.lanes.iter().filter(|l| l.congested).count(),
                });
                made += notify_users(&tx, &watchers, CONGESTION, &payload).await?;
            }
        } else {
            tx.execute("DELETE FROM site_congestion WHERE site_id = $1", &[&site])
                .await?;
        }
        tx.commit().await?;
    }
    Ok(made)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only unread ones.
    pub unread: Option<bool>,
    /// Ids below this (the next page); newest first.
    pub before: Option<i64>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<Notification>,
    /// Pass as `before` for the next page.
    pub next_before: Option<i64>,
    pub unread_total: i64,
}

/// The caller's notifications.
#[utoipa::path(get, path = "/api/notifications/", tag = "notifications", security(("bearer" = [])),
    params(ListQuery), responses((status = 200, body = NotificationPage)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<axum::Json<NotificationPage>> {
    let limit = params::limit(q.limit, 50, 200)?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM notification WHERE user_id = $1 \
                 AND ($2::int8 IS NULL OR id < $2) AND (NOT $3 OR read_at IS NULL) \
                 ORDER BY id DESC LIMIT $4"
            ),
            &[
                &user.id,
                &q.before,
                &q.unread.unwrap_or(false),
                &(limit + 1),
            ],
        )
        .await?;
    let mut items: Vec<Notification> = rows.iter().map(Notification::from_row).collect();
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let unread_total: i64 = db
        .query_one(
            "SELECT count(*) FROM notification WHERE user_id = $1 AND read_at IS NULL",
            &[&user.id],
        )
        .await?
        .get(0);
    Ok(axum::Json(NotificationPage {
        next_before: more.then(|| items.last().map(|n| n.id)).flatten(),
        items,
        unread_total,
    }))
}

/// Mark one of the caller's notifications read (404 for anyone else's).
#[utoipa::path(post, path = "/api/notifications/{id}/read/", tag = "notifications",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Notification), (status = 404, body = crate::error::ErrorBody)))]
async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Notification>> {
    let db = state.db().await?;
    let row = db
        .query_opt(
            &format!(
                "UPDATE notification SET read_at = coalesce(read_at, now()) \
                 WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
            ),
            &[&id, &user.id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(Notification::from_row(&row)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    pub marked: u64,
}

/// Mark all the caller's notifications read.
#[utoipa::path(post, path = "/api/notifications/read-all/", tag = "notifications",
    security(("bearer" = [])), responses((status = 200, body = MarkedRead)))]
async fn mark_all_read(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<MarkedRead>> {
    let db = state.db().await?;
    let marked = db
        .execute(
            "UPDATE notification SET read_at = now() WHERE user_id = $1 AND read_at IS NULL",
            &[&user.id],
        )
        .await?;
    Ok(axum::Json(MarkedRead { marked }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Watch {
    pub site_id: String,
    pub created_at: DateTime<Utc>,
}

/// The sites the caller watches for congestion.
#[utoipa::path(get, path = "/api/notifications/watches/", tag = "notifications",
    security(("bearer" = [])), responses((status = 200, body = Vec<Watch>)))]
async fn list_watches(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Watch>>> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT site_id, created_at FROM site_watch WHERE user_id = $1 ORDER BY site_id LIMIT 1000",
            &[&user.id],
        )
        .await?;
    Ok(axum::Json(
        rows.iter()
            .map(|r| Watch {
                site_id: r.get(0),
                created_at: r.get(1),
            })
            .collect(),
    ))
}

/// Watch a site (idempotent).
#[utoipa::path(put, path = "/api/notifications/watches/{site_id}/", tag = "notifications",
    security(("bearer" = [])), params(("site_id" = String, Path)),
    responses((status = 204), (status = 422, body = crate::error::ErrorBody)))]
async fn watch(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(site): ApiPath<String>,
) -> ApiResult<Response> {
    user.require(&FIELD_ROLES)?;
    let mut v = Validator::new();
    params::ident(&mut v, "path.site_id", &site);
    v.finish()?;
    let db = state.db().await?;
    db.execute(
        "INSERT INTO site_watch (user_id, site_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&user.id, &site],
    )
    .await?;
    Ok(no_content())
}

/// Stop watching a site (idempotent).
#[utoipa::path(delete, path = "/api/notifications/watches/{site_id}/", tag = "notifications",
    security(("bearer" = [])), params(("site_id" = String, Path)), responses((status = 204)))]
async fn unwatch(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(site): ApiPath<String>,
) -> ApiResult<Response> {
    user.require(&FIELD_ROLES)?;
    let db = state.db().await?;
    db.execute(
        "DELETE FROM site_watch WHERE user_id = $1 AND site_id = $2",
        &[&user.id, &site],
    )
    .await?;
    Ok(no_content())
}
