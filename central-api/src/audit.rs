//! The audit log: one row per change (who, what, when, before and after), written in the
//! same transaction as the change, so neither exists without the other.

use deadpool_postgres::GenericClient;
use serde::Serialize;

use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::http::RequestId;

/// Who made a change, and in which request.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub role: Option<&'static str>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn user(user: &AuthUser, request_id: &RequestId) -> Self {
        Self {
            user_id: Some(user.id),
            role: Some(user.role.as_str()),
            request_id: Some(request_id.0.clone()),
        }
    }

    pub fn anonymous(request_id: &RequestId) -> Self {
        Self {
            user_id: None,
            role: None,
            request_id: Some(request_id.0.clone()),
        }
    }

    /// [`Actor::user`] or [`Actor::anonymous`].
    pub fn from(user: Option<&AuthUser>, request_id: &RequestId) -> Self {
        match user {
            Some(u) => Self::user(u, request_id),
            None => Self::anonymous(request_id),
        }
    }
}

/// The JSON of an entity for [`record`]; `None` if it cannot be serialized (never for
/// the plain structs the handlers use).
pub fn json(value: &impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Records `action` (`incident.update`) on `entity` (`incident`) `entity_id`.
/// `before`/`after` are the entity's client-visible form (see [`json`]; never secrets or
/// password hashes).
pub async fn record<C: GenericClient>(
    db: &C,
    actor: &Actor,
    action: &str,
    entity: &str,
    entity_id: impl ToString,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> ApiResult<()> {
    // Cached per connection: every change writes one, so skip the parse round trip.
    let stmt = db
        .prepare_cached(
            "INSERT INTO audit_log (actor_id, actor_role, action, entity, entity_id, before, after, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &actor.user_id,
            &actor.role,
            &action,
            &entity,
            &entity_id.to_string(),
            &before,
            &after,
            &actor.request_id,
        ],
    )
    .await?;
    Ok(())
}

/// The fields that differ between two JSON objects: `{"field": {"from": .., "to": ..}}`,
/// ignoring `updated_at`. For change histories.
pub fn diff(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
    let mut changes = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (key, new) in a {
            let old = b.get(key).unwrap_or(&serde_json::Value::Null);
            if key != "updated_at" && old != new {
                changes.insert(key.clone(), serde_json::json!({ "from": old, "to": new }));
            }
        }
    }
    serde_json::Value::Object(changes)
}
