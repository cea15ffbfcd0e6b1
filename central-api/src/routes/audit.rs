//! `/api/audit/`: the audit log, newest first (admin only).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthUser, Role};
use crate::error::{ApiResult, ErrorBody, Validator};
use crate::extract::ApiQuery;
use crate::query::{page, paging};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// One change: who, what, when, before and after.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `null` for anonymous requests and the bootstrap command.
    pub actor_id: Option<i64>,
    pub actor_role: Option<String>,
    /// `entity.verb`, e.g. `incident.transition`.
    pub action: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The `x-request-id` of the request that made it.
    pub request_id: Option<String>,
}

impl AuditEntry {
    fn from_row(r: &Row) -> ApiResult<Self> {
        Ok(Self {
            id: r.get(0),
            at: r.get(1),
            actor_id: r.get(2),
            actor_role: r.get(3),
            action: r.get(4),
            entity: r.get(5),
            entity_id: r.get(6),
            before: r.get(7),
            after: r.get(8),
            request_id: r.get(9),
        })
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `user`, `incident`, `appeal`, ...
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    pub actor_id: Option<i64>,
    /// Exact action, e.g. `user.update`.
    pub action: Option<String>,
    /// At or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_offset: Option<i64>,
}

/// Read the audit log.
#[utoipa::path(get, path = "/api/audit/", tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of entries, newest first", body = AuditPage),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    caller.require(&[Role::Admin])?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let mut v = Validator::new();
    for (field, value) in [
        ("query.entity", &q.entity),
        ("query.entity_id", &q.entity_id),
        ("query.action", &q.action),
    ] {
        v.opt_text(field, value.as_deref(), 100, false);
    }
    v.finish()?;
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT id, at, actor_id, actor_role, action, entity, entity_id, before, after, request_id \
             FROM audit_log \
             WHERE ($1::text IS NULL OR entity = $1) AND ($2::text IS NULL OR entity_id = $2) \
               AND ($3::bigint IS NULL OR actor_id = $3) AND ($4::text IS NULL OR action = $4) \
               AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6) \
             ORDER BY id DESC LIMIT $7 OFFSET $8",
            &[
                &q.entity,
                &q.entity_id,
                &q.actor_id,
                &q.action,
                &q.from,
                &q.to,
                &(limit + 1),
                &offset,
            ],
        )
        .await?;
    let (items, next_offset) = page(rows, limit, offset, AuditEntry::from_row)?;
    Ok(axum::Json(AuditPage { items, next_offset }))
}
