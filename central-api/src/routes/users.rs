//! `/api/users/`: accounts.
//!
//! Who may do what:
//! - create: anyone may sign up as `public` (when `auth.public_signup`); an admin creates
//!   any role.
//! - list: admin. Read one: the user themself, an admin or an operator.
//! - update: the user themself (display name, email, password with the current one); an
//!   admin (also role, patrol, disabled, and resetting another user's password without
//!   theirs).
//! - delete: admin, never their own account nor the last admin.
//!
//! Changing the password, role, patrol or disabled flag raises the user's token
//! generation, and deleting the user removes it: the database's triggers then revoke the
//! refresh tokens and announce it, and the user's access tokens are refused from the next
//! request on ([`crate::revocation`]).

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
use crate::auth::{AuthUser, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Passwords, Role};
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiPath, ApiQuery, nullable};
use crate::http::{RequestId, no_content};
use crate::state::AppState;

// Kept here too for modules that imported them from users before they moved.
use crate::query::{page, paging};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(me))
        .routes(routes!(get_user, update_user, delete_user))
}

/// An account as clients see it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    /// The patrol a `patrol` user crews.
    pub patrol_id: Option<i64>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns [`User::from_row`] reads, in order.
pub const USER_COLUMNS: &str =
    "id, username, display_name, email, role, patrol_id, disabled, created_at, updated_at";

impl User {
    pub fn from_row(row: &Row) -> ApiResult<Self> {
        let role: String = row.get(4);
        Ok(Self {
            id: row.get(0),
            username: row.get(1),
            display_name: row.get(2),
            email: row.get(3),
            role: Role::parse(&role).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("unknown role {role:?} in app_user"))
            })?,
            patrol_id: row.get(5),
            disabled: row.get(6),
            created_at: row.get(7),
            updated_at: row.get(8),
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 3–64 characters: letters, digits, `.`, `_`, `-`. Unique regardless of case.
    pub username: String,
    /// At least 10 characters.
    pub password: String,
    #[serde(default)]
    pub display_name: String,
    pub email: Option<String>,
    /// Default `public`; other roles only by an admin.
    pub role: Option<Role>,
    pub patrol_id: Option<i64>,
}

/// A partial update: absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub display_name: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub email: Option<Option<String>>,
    /// A new password; for one's own account `current_password` must be given too (an
    /// admin resetting another user's password needs none).
    pub password: Option<String>,
    pub current_password: Option<String>,
    /// Admin only.
    pub role: Option<Role>,
    /// Admin only; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub patrol_id: Option<Option<i64>>,
    /// Admin only. A disabled user cannot log in or refresh.
    pub disabled: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only this role.
    pub role: Option<Role>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// The offset of the next page, if there is one.
    pub next_offset: Option<i64>,
}

fn validate_username(v: &mut Validator, username: &str) {
    let n = username.chars().count();
    if !(3..=64).contains(&n) {
        v.add("username", "must be 3 to 64 characters");
    } else if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        v.add(
            "username",
            "may contain only letters, digits, '.', '_' and '-'",
        );
    }
}

/// Checks a new password's length.
pub fn validate_password(v: &mut Validator, field: &str, password: &str) {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        v.add(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        );
    } else if password.len() > MAX_PASSWORD_BYTES {
        v.add(field, format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
}

fn validate_email(v: &mut Validator, email: &str) {
    v.text("email", email, 3, 254, false);
    if !email.contains('@') {
        v.add("email", "must be an email address");
    }
}

/// What a new account needs; shared by the API, `create-admin` and the tests.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub patrol_id: Option<i64>,
}

impl NewUser {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Validator::new();
        validate_username(&mut v, &self.username);
        validate_password(&mut v, "password", &self.password);
        v.text("display_name", &self.display_name, 0, 100, false);
        if let Some(e) = &self.email {
            validate_email(&mut v, e);
        }
        v.finish()
    }
}

/// Validates, hashes and inserts an account, with its audit row, in `db`'s transaction.
pub async fn insert_user(
    db: &impl GenericClient,
    passwords: &Passwords,
    actor: &Actor,
    new: NewUser,
) -> ApiResult<User> {
    new.validate()?;
    let hash = passwords.hash(new.password).await?;
    let row = db
        .query_one(
            &format!(
                "INSERT INTO app_user (username, display_name, email, role, patrol_id, password_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLUMNS}"
            ),
            &[
                &new.username,
                &new.display_name,
                &new.email,
                &new.role.as_str(),
                &new.patrol_id,
                &hash,
            ],
        )
        .await?;
    let user = User::from_row(&row)?;
    audit::record(
        db,
        actor,
        "user.create",
        "user",
        user.id,
        None,
        audit::json(&user),
    )
    .await?;
    Ok(user)
}

/// Create an account.
#[utoipa::path(post, path = "/api/users/", tag = "users",
    request_body = CreateUser,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "created", body = User),
        (status = 401, description = "only an admin may create this account: log in", body = crate::error::ErrorBody),
        (status = 403, description = "this role may not be created by the caller", body = crate::error::ErrorBody),
        (status = 409, description = "the username is taken", body = crate::error::ErrorBody),
        (status = 422, description = "invalid fields", body = crate::error::ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    request_id: RequestId,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<Response> {
    let role = body.role.unwrap_or(Role::Public);
    let is_admin = caller.is_some_and(|c| c.role == Role::Admin);
    if !is_admin {
        if role != Role::Public || body.patrol_id.is_some() {
            return Err(match caller {
                None => ApiError::Unauthorized("log in as an admin to create this account"),
                Some(_) => ApiError::Forbidden("only an admin may create this account"),
            });
        }
        if !state.config.auth.public_signup {
            return Err(ApiError::Forbidden("sign-up is disabled; ask an admin"));
        }
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let user = insert_user(
        &tx,
        &state.passwords,
        &Actor::from(caller.as_ref(), &request_id),
        NewUser {
            username: body.username,
            password: body.password,
            display_name: body.display_name,
            email: body.email,
            role,
            patrol_id: body.patrol_id,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

/// List accounts (admin).
#[utoipa::path(get, path = "/api/users/", tag = "users",
    params(UserListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of users, by id", body = UserPage),
        (status = 401, description = "not logged in", body = crate::error::ErrorBody),
        (status = 403, description = "not an admin", body = crate::error::ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(q): ApiQuery<UserListQuery>,
) -> ApiResult<axum::Json<UserPage>> {
    caller.require(&[Role::Admin])?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let db = state.db().await?;
    let role = q.role.map(Role::as_str);
    let rows = db
        .query(
            &format!(
                "SELECT {USER_COLUMNS} FROM app_user WHERE ($1::text IS NULL OR role = $1) \
                 ORDER BY id LIMIT $2 OFFSET $3"
            ),
            &[&role, &(limit + 1), &offset],
        )
        .await?;
    page(rows, limit, offset, User::from_row)
        .map(|(items, next_offset)| axum::Json(UserPage { items, next_offset }))
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/users/me/", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller", body = User),
        (status = 401, description = "not logged in", body = crate::error::ErrorBody)))]
async fn me(State(state): State<AppState>, caller: AuthUser) -> ApiResult<axum::Json<User>> {
    let db = state.db().await?;
    fetch(&db, caller.id).await.map(axum::Json)
}

/// A user about to be issued tokens: the account, its token generation and password hash,
/// read with the row locked (`FOR SHARE`) until the issuing transaction ends. A change of
/// the account waits for the tokens to be stored and then revokes them, or is seen here
/// first: either way no token outlives a revocation. (Lock the user row before any of its
/// refresh tokens, as the triggers of migration 3 do, so the two never deadlock.)
#[derive(Debug)]
pub struct TokenSubject {
    pub user: User,
    pub generation: i64,
    pub password_hash: String,
}

pub async fn lock_for_tokens(db: &impl GenericClient, id: i64) -> ApiResult<Option<TokenSubject>> {
    let row = db
        .query_opt(
            &format!(
                "SELECT {USER_COLUMNS}, token_generation, password_hash FROM app_user \
                 WHERE id = $1 FOR SHARE"
            ),
            &[&id],
        )
        .await?;
    row.map(|row| {
        Ok(TokenSubject {
            user: User::from_row(&row)?,
            generation: row.get(9),
            password_hash: row.get(10),
        })
    })
    .transpose()
}

pub async fn fetch(db: &impl GenericClient, id: i64) -> ApiResult<User> {
    let row = db
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM app_user WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    User::from_row(&row)
}

/// Read an account (the user themself, an admin or an operator).
#[utoipa::path(get, path = "/api/users/{id}/", tag = "users",
    params(("id" = i64, Path, description = "user id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the user", body = User),
        (status = 401, description = "not logged in", body = crate::error::ErrorBody),
        (status = 403, description = "someone else's account", body = crate::error::ErrorBody),
        (status = 404, description = "no such user", body = crate::error::ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<User>> {
    if caller.id != id {
        caller.require(&[Role::Admin, Role::Operator])?;
    }
    let db = state.db().await?;
    fetch(&db, id).await.map(axum::Json)
}

/// Update an account.
#[utoipa::path(put, path = "/api/users/{id}/", tag = "users",
    params(("id" = i64, Path, description = "user id")),
    request_body = UpdateUser,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the updated user", body = User),
        (status = 401, description = "not logged in", body = crate::error::ErrorBody),
        (status = 403, description = "not allowed for this caller or field", body = crate::error::ErrorBody),
        (status = 404, description = "no such user", body = crate::error::ErrorBody),
        (status = 422, description = "invalid fields (or a wrong current_password)", body = crate::error::ErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<axum::Json<User>> {
    let is_admin = caller.role == Role::Admin;
    if caller.id != id && !is_admin {
        return Err(ApiError::Forbidden("you may change only your own account"));
    }
    if !is_admin && (body.role.is_some() || body.patrol_id.is_some() || body.disabled.is_some()) {
        return Err(ApiError::Forbidden(
            "only an admin may change role, patrol_id or disabled",
        ));
    }
    let mut v = Validator::new();
    if let Some(d) = &body.display_name {
        v.text("display_name", d, 0, 100, false);
    }
    if let Some(Some(e)) = &body.email {
        validate_email(&mut v, e);
    }
    // Changing one's own password needs the current one, even for an admin (a stolen
    // access token must not be enough to take an account over); an admin resetting
    // someone else's does not.
    let own = caller.id == id;
    if let Some(p) = &body.password {
        validate_password(&mut v, "password", p);
        if own && body.current_password.is_none() {
            v.add("current_password", "is required to change your password");
        }
    }
    if let Some(p) = &body.current_password {
        if p.len() > MAX_PASSWORD_BYTES {
            v.add("current_password", "is too long");
        }
    }
    v.finish()?;

    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            &format!("SELECT {USER_COLUMNS}, password_hash FROM app_user WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let before = User::from_row(&row)?;
    let stored_hash: String = row.get(9);
    if let (true, Some(_), Some(current)) = (own, &body.password, &body.current_password) {
        let ok = state
            .passwords
            .verify(current.clone(), Some(stored_hash))
            .await?;
        if !ok {
            return Err(ApiError::field(
                "current_password",
                "is not the current password",
            ));
        }
    }
    if id == caller.id
        && (body.role.is_some_and(|r| r != Role::Admin) || body.disabled == Some(true))
    {
        return Err(ApiError::conflict(
            "role",
            "an admin cannot demote or disable themself",
        ));
    }
    let new_hash = match body.password {
        Some(p) => Some(state.passwords.hash(p).await?),
        None => None,
    };
    let email_set = body.email.is_some();
    let email = body.email.flatten();
    let patrol_set = body.patrol_id.is_some();
    let patrol_id = body.patrol_id.flatten();
    let role = body.role.map(Role::as_str);
    let row = tx
        .query_one(
            &format!(
                "UPDATE app_user SET \
                   display_name = coalesce($2, display_name), \
                   email = CASE WHEN $3 THEN $4 ELSE email END, \
                   role = coalesce($5, role), \
                   patrol_id = CASE WHEN $6 THEN $7 ELSE patrol_id END, \
                   disabled = coalesce($8, disabled), \
                   password_hash = coalesce($9, password_hash), \
                   updated_at = now() \
                 WHERE id = $1 RETURNING {USER_COLUMNS}"
            ),
            &[
                &id,
                &body.display_name,
                &email_set,
                &email,
                &role,
                &patrol_set,
                &patrol_id,
                &body.disabled,
                &new_hash,
            ],
        )
        .await?;
    let after = User::from_row(&row)?;
    // A new password, role, patrol or disabled flag raised the token generation: the
    // trigger revoked the refresh tokens and announces it at commit.
    let mut after_audit = audit::json(&after);
    if new_hash.is_some() {
        if let Some(serde_json::Value::Object(m)) = after_audit.as_mut() {
            m.insert("password_changed".to_owned(), true.into());
        }
    }
    audit::record(
        &tx,
        &Actor::user(&caller, &request_id),
        "user.update",
        "user",
        id,
        audit::json(&before),
        after_audit,
    )
    .await?;
    tx.commit().await?;
    // This instance forgets at once (the others when the announcement reaches them), so
    // the very next request here sees the change.
    state.revocations.forget(id);
    Ok(axum::Json(after))
}

/// Delete an account (admin; not yourself, not the last admin).
#[utoipa::path(delete, path = "/api/users/{id}/", tag = "users",
    params(("id" = i64, Path, description = "user id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "not logged in", body = crate::error::ErrorBody),
        (status = 403, description = "not an admin", body = crate::error::ErrorBody),
        (status = 404, description = "no such user", body = crate::error::ErrorBody),
        (status = 409, description = "your own account, or the last admin", body = crate::error::ErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    caller: AuthUser,
    request_id: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    caller.require(&[Role::Admin])?;
    if caller.id == id {
        return Err(ApiError::conflict(
            "id",
            "you cannot delete your own account",
        ));
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    // Serialises concurrent deletions of admins, so two cannot remove the last two.
    tx.execute("LOCK TABLE app_user IN SHARE ROW EXCLUSIVE MODE", &[])
        .await?;
    let before = fetch(&tx, id).await?;
    if before.role == Role::Admin {
        let admins: i64 = tx
            .query_one(
                "SELECT count(*) FROM app_user WHERE role = 'admin' AND NOT disabled",
                &[],
            )
            .await?
            .get(0);
        if admins <= 1 {
            return Err(ApiError::conflict("id", "the last admin cannot be deleted"));
        }
    }
    // The refresh tokens go with the row; the trigger announces the deletion at commit.
    tx.execute("DELETE FROM app_user WHERE id = $1", &[&id])
        .await?;
    audit::record(
        &tx,
        &Actor::user(&caller, &request_id),
        "user.delete",
        "user",
        id,
        audit::json(&before),
        None,
    )
    .await?;
    tx.commit().await?;
    // This instance forgets at once (the others when the announcement reaches them), so
    // the very next request here sees the change.
    state.revocations.forget(id);
    Ok(no_content())
}
