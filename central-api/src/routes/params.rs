//! Helpers shared by the operational routes: who may read, time ranges, page sizes.

use chrono::{DateTime, Utc};

use crate::auth::Role;
use crate::error::{ApiError, ApiResult, Validator};

/// The roles that read operational data (traffic, registry, schedules).
pub const FIELD_ROLES: [Role; 4] = [Role::Admin, Role::Operator, Role::Analyst, Role::Patrol];
/// The control room staff who read everything and analyse it.
pub const DESK_ROLES: [Role; 3] = [Role::Admin, Role::Operator, Role::Analyst];
/// The roles that change operational plans (shifts, road works, news).
pub const STAFF_ROLES: [Role; 2] = [Role::Admin, Role::Operator];

/// Checks `from < to` and `to - from ≤ max_days`, naming `query.from` / `query.to`.
pub fn time_range(
    v: &mut Validator,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_days: i64,
) -> chrono::Duration {
    let span = to - from;
    if span <= chrono::Duration::zero() {
        v.add("query.to", "must be after `from`");
    } else if span > chrono::Duration::days(max_days) {
        v.add("query.to", format!("at most {max_days} days after `from`"));
    }
    span
}

/// A page size: `default` when absent, otherwise 1..=`max` (naming `query.limit`).
pub fn limit(value: Option<i64>, default: i64, max: i64) -> ApiResult<i64> {
    let mut v = Validator::new();
    let limit = crate::query::page_size(&mut v, value, default, max);
    v.finish()?;
    Ok(limit)
}

/// Checks an identifier such as a site or detector id: 1–64 printable characters.
pub fn ident(v: &mut Validator, field: &str, value: &str) {
    v.text(field, value, 1, 64, false);
}

/// Checks an optional latitude/longitude pair: both or neither, each in range.
pub fn position(v: &mut Validator, lat: Option<f64>, lon: Option<f64>) {
    match (lat, lon) {
        (Some(lat), Some(lon)) => {
            if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
                v.add("lat", "must be between -90 and 90");
            }
            if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
                v.add("lon", "must be between -180 and 180");
            }
        }
        (None, None) => {}
        (None, Some(_)) => v.add("lat", "must be given with lon"),
        (Some(_), None) => v.add("lon", "must be given with lat"),
    }
}

/// Deletes the row of `table` whose `key` is `id`, recording its last state in the audit
/// log (`<table>.delete`); 404 when there is none. `table` and `key` are constants of the
/// caller, never input.
pub async fn delete_audited(
    state: &crate::state::AppState,
    actor: &crate::audit::Actor,
    table: &'static str,
    key: &'static str,
    id: &(dyn tokio_postgres::types::ToSql + Sync),
    id_text: String,
) -> ApiResult<axum::response::Response> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before: serde_json::Value = tx
        .query_opt(
            &format!("DELETE FROM {table} WHERE {key} = $1 RETURNING to_jsonb({table}.*)"),
            &[id],
        )
        .await?
        .ok_or(ApiError::NotFound)?
        .get(0);
    let action = format!("{table}.delete");
    crate::audit::record(&tx, actor, &action, table, id_text, Some(before), None).await?;
    tx.commit().await?;
    Ok(crate::http::no_content())
}

/// Records a change of `entity` `id` in the audit log (before and after, in their client
/// form) and commits the transaction that made it.
pub async fn commit_audited<T: serde::Serialize>(
    tx: deadpool_postgres::Transaction<'_>,
    actor: &crate::audit::Actor,
    action: &str,
    entity: &str,
    id: impl ToString,
    before: Option<&T>,
    after: &T,
) -> ApiResult<()> {
    let before = before.and_then(|b| crate::audit::json(b));
    crate::audit::record(
        &tx,
        actor,
        action,
        entity,
        id,
        before,
        crate::audit::json(after),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
