//! `/api/chat/`: rooms (per incident, per team, direct), their messages, and the live
//! WebSocket `GET /api/chat/ws`.
//!
//! Who may do what: the `public` role has no chat. Admins see every room. Incident rooms
//! are open to operators and analysts, and to the crew of the patrol assigned to the
//! incident; staff (admin, operator) create them, one per incident. Team rooms are
//! created by staff with a member list; direct rooms by any non-public user with exactly
//! one other member. Team and direct rooms are open to their members only.
//!
//! The WebSocket: authenticate with `?token=<access token>` (browsers cannot set headers
//! on a WebSocket) or an `Authorization: Bearer` header; the token is checked at the
//! upgrade, and again whenever the user's tokens are revoked (or a revocation may have
//! gone unheard): a socket whose token no longer stands is closed with code 1008 (the
//! user disabled, deleted, logged out everywhere, or their role, patrol or password
//! changed). The server sends JSON frames: `{"type":"message","message":{…}}`,
//! `{"type":"notification","notification":{…}}` (the caller's own, pushed live),
//! `{"type":"subscribed","room_id":N}` and `{"type":"error","message":"…"}`. The client
//! sends `{"type":"subscribe","room_id":N,"after":M}`: the server first sends the room's
//! messages with ids above `after` (a reconnecting client passes the last id it saw),
//! then new ones as they are posted on any instance. A client that falls
//! [`CLIENT_QUEUE`](crate::realtime::CLIENT_QUEUE) events behind is disconnected with
//! close code 1013 and should reconnect and catch up. Posting goes through
//! `POST /api/chat/rooms/{id}/messages/`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Actor;
use crate::auth::{AccessClaims, AuthUser, Role};
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::RequestId;
use crate::realtime::{CHAT_CHANNEL, Event};
use crate::routes::params;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room))
        .routes(routes!(history, post_message))
        .routes(routes!(websocket))
}

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Messages per catch-up query over the WebSocket.
const CATCH_UP_PAGE: i64 = 500;
/// A socket that takes longer than this to accept a frame is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Room {
    pub id: i64,
    /// `incident`, `team` or `direct`.
    pub kind: String,
    pub name: String,
    pub incident_id: Option<i64>,
    /// Members of team and direct rooms (empty for incident rooms).
    pub members: Vec<i64>,
    pub created_at: DateTime<Utc>,
}

const ROOM_COLUMNS: &str = "r.id, r.kind, r.name, r.incident_id, \
    coalesce((SELECT array_agg(m.user_id ORDER BY m.user_id) FROM chat_member m WHERE m.room_id = r.id), '{}'), \
    r.created_at";

/// Who may enter room `r`: `$1` admin, `$2` operator or analyst, `$3` the caller's patrol,
/// `$4` the caller.
const ROOM_ACCESS: &str = "($1 OR EXISTS (SELECT 1 FROM chat_member m WHERE m.room_id = r.id AND m.user_id = $4) \
    OR (r.kind = 'incident' AND ($2 OR EXISTS (SELECT 1 FROM incident i \
        WHERE i.id = r.incident_id AND i.assigned_patrol_id = $3))))";

impl Room {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            kind: r.get(1),
            name: r.get(2),
            incident_id: r.get(3),
            members: r.get(4),
            created_at: r.get(5),
        }
    }
}

fn chat_user(user: &AuthUser) -> ApiResult<()> {
    if user.role == Role::Public {
        return Err(ApiError::Forbidden("chat is for staff and patrols"));
    }
    Ok(())
}

/// The room `id` if `user` may enter it: 404 when it does not exist, 403 when closed.
pub async fn room_for(db: &impl GenericClient, user: &AuthUser, id: i64) -> ApiResult<Room> {
    chat_user(user)?;
    let admin = user.role == Role::Admin;
    let desk = matches!(user.role, Role::Operator | Role::Analyst);
    let row = db
        .query_opt(
            &format!("SELECT {ROOM_COLUMNS}, {ROOM_ACCESS} FROM chat_room r WHERE r.id = $5"),
            &[&admin, &desk, &user.patrol_id, &user.id, &id],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    let ok: bool = row.get(6);
    if !ok {
        return Err(ApiError::Forbidden("you are not in this room"));
    }
    Ok(Room::from_row(&row))
}

/// The rooms the caller may enter.
#[utoipa::path(get, path = "/api/chat/rooms/", tag = "chat", security(("bearer" = [])),
    responses((status = 200, body = Vec<Room>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_rooms(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<Room>>> {
    chat_user(&user)?;
    let admin = user.role == Role::Admin;
    let desk = matches!(user.role, Role::Operator | Role::Analyst);
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "SELECT {ROOM_COLUMNS} FROM chat_room r WHERE {ROOM_ACCESS} \
                 ORDER BY r.id DESC LIMIT 500"
            ),
            &[&admin, &desk, &user.patrol_id, &user.id],
        )
        .await?;
    Ok(axum::Json(rows.iter().map(Room::from_row).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// `incident`, `team` or `direct`.
    pub kind: String,
    /// 1–100 characters.
    pub name: String,
    /// For `incident` rooms.
    pub incident_id: Option<i64>,
    /// User ids: team members, or the one other person of a direct room (at most 100).
    #[serde(default)]
    pub members: Vec<i64>,
}

/// Open a room.
#[utoipa::path(post, path = "/api/chat/rooms/", tag = "chat", security(("bearer" = [])),
    request_body = CreateRoom,
    responses((status = 201, body = Room), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_room(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<CreateRoom>,
) -> ApiResult<Response> {
    chat_user(&user)?;
    let mut v = Validator::new();
    v.text("name", &body.name, 1, 100, false);
    if body.members.len() > 100 {
        v.add("members", "at most 100");
    }
    match body.kind.as_str() {
        "incident" => {
            if body.incident_id.is_none() {
                v.add("incident_id", "is required for an incident room");
            }
        }
        "team" => {}
        "direct" => {
            let others: Vec<_> = body.members.iter().filter(|m| **m != user.id).collect();
            if others.len() != 1 {
                v.add("members", "a direct room has exactly one other member");
            }
        }
        _ => v.add("kind", "must be incident, team or direct"),
    }
    if body.kind != "incident" && body.incident_id.is_some() {
        v.add("incident_id", "only incident rooms belong to an incident");
    }
    v.finish()?;
    if body.kind != "direct" && !user.is_staff() {
        return Err(ApiError::Forbidden(
            "only staff open incident and team rooms",
        ));
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO chat_room (kind, name, incident_id, created_by) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&body.kind, &body.name, &body.incident_id, &user.id],
        )
        .await?
        .get(0);
    if body.kind != "incident" {
        let mut members = body.members.clone();
        members.push(user.id);
        tx.execute(
            "INSERT INTO chat_member (room_id, user_id) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
            &[&id, &members],
        )
        .await?;
    }
    let room = tx
        .query_one(
            &format!("SELECT {ROOM_COLUMNS} FROM chat_room r WHERE r.id = $1"),
            &[&id],
        )
        .await
        .map(|r| Room::from_row(&r))?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "chat_room.create",
        "chat_room",
        id,
        None,
        &room,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(room)).into_response())
}

#[utoipa::path(get, path = "/api/chat/rooms/{id}/", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Room), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
async fn get_room(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Room>> {
    let db = state.db().await?;
    Ok(axum::Json(room_for(&db, &user, id).await?))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ChatMessage {
    pub id: i64,
    pub room_id: i64,
    pub author_id: Option<i64>,
    /// The author's username (null if the account is gone).
    pub author: Option<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

const MESSAGE_SELECT: &str = "SELECT m.id, m.room_id, m.author_id, u.username, m.body, m.created_at \
    FROM chat_message m LEFT JOIN app_user u ON u.id = m.author_id";

impl ChatMessage {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            room_id: r.get(1),
            author_id: r.get(2),
            author: r.get(3),
            body: r.get(4),
            created_at: r.get(5),
        }
    }
}

pub async fn fetch_message(db: &impl GenericClient, id: i64) -> ApiResult<Option<ChatMessage>> {
    Ok(db
        .query_opt(&format!("{MESSAGE_SELECT} WHERE m.id = $1"), &[&id])
        .await?
        .map(|r| ChatMessage::from_row(&r)))
}

/// The WebSocket frame of a message.
pub fn message_frame(m: &ChatMessage) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::json!({"type": "message", "message": m}).to_string())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages with ids above this, oldest first (catching up).
    pub after: Option<i64>,
    /// Messages with ids below this, newest first (scrolling back); default: the latest.
    pub before: Option<i64>,
    /// 1–500, default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub items: Vec<ChatMessage>,
    /// Whether more messages lie beyond this page (in the direction asked).
    pub more: bool,
}

/// A room's messages, a page at a time.
#[utoipa::path(get, path = "/api/chat/rooms/{id}/messages/", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path), HistoryQuery),
    responses((status = 200, body = MessagePage), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<axum::Json<MessagePage>> {
    let limit = params::limit(q.limit, 100, 500)?;
    if q.after.is_some() && q.before.is_some() {
        return Err(ApiError::field(
            "query.before",
            "give `after` or `before`, not both",
        ));
    }
    let db = state.db().await?;
    room_for(&db, &user, id).await?;
    let mut items = match q.after {
        Some(after) => messages_after(&db, id, after, limit + 1).await?,
        None => {
            let rows = db
                .query(
                    &format!(
                        "{MESSAGE_SELECT} WHERE m.room_id = $1 AND ($2::int8 IS NULL OR m.id < $2) \
                         ORDER BY m.id DESC LIMIT $3"
                    ),
                    &[&id, &q.before, &(limit + 1)],
                )
                .await?;
            rows.iter().map(ChatMessage::from_row).collect()
        }
    };
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if q.after.is_none() {
        items.reverse();
    }
    Ok(axum::Json(MessagePage { items, more }))
}

async fn messages_after(
    db: &impl GenericClient,
    room: i64,
    after: i64,
    limit: i64,
) -> ApiResult<Vec<ChatMessage>> {
    let rows = db
        .query(
            &format!("{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"),
            &[&room, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(ChatMessage::from_row).collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// 1–4000 characters.
    pub body: String,
}

/// Post a message; every instance delivers it to the room's live clients.
#[utoipa::path(post, path = "/api/chat/rooms/{id}/messages/", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PostMessage,
    responses((status = 201, body = ChatMessage), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn post_message(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PostMessage>,
) -> ApiResult<Response> {
    let mut v = Validator::new();
    v.text("body", &body.body, 1, MAX_MESSAGE_CHARS, true);
    v.finish()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    room_for(&tx, &user, id).await?;
    let message_id: i64 = tx
        .query_one(
            "INSERT INTO chat_message (room_id, author_id, body) VALUES ($1, $2, $3) RETURNING id",
            &[&id, &user.id, &body.body],
        )
        .await?
        .get(0);
    // Delivered at commit, to every instance listening.
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHAT_CHANNEL, &format!("{id}:{message_id}")],
    )
    .await?;
    let message = fetch_message(&tx, message_id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("message {message_id} vanished")))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(message)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The access token (or send `Authorization: Bearer`).
    pub token: Option<String>,
}

/// A client's request over the socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Subscribe { room_id: i64, after: Option<i64> },
}

/// The live WebSocket (chat messages of subscribed rooms, the caller's notifications).
#[utoipa::path(get, path = "/api/chat/ws", tag = "chat", params(WsQuery),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
async fn websocket(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<WsQuery>,
    parts: WsParts,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let token = q.token.or(parts.bearer).ok_or(ApiError::Unauthorized(
        "authentication required: ?token= or a Bearer header",
    ))?;
    let claims = state
        .tokens
        .verify(&token)
        .map_err(ApiError::Unauthorized)?;
    let user = crate::auth::authenticate(&state, &claims).await?;
    chat_user(&user)?;
    // Who is asking is checked first: a stranger learns nothing, not even "not a WebSocket".
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let hub = state.hub.clone();
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            // Tracked so that shutdown waits for the session to say goodbye.
            hub.track(session(state, claims, socket));
        }))
}

/// The bearer token of the upgrade request, if any.
struct WsParts {
    bearer: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for WsParts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            bearer: crate::auth::bearer(parts).map(str::to_owned),
        })
    }
}

async fn send(socket: &mut WebSocket, frame: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(frame))).await,
        Ok(Ok(()))
    )
}

fn error_frame(message: &str) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::json!({"type": "error", "message": message}).to_string())
}

/// Sends room `room`'s messages after `*last`, advancing `*last`.
async fn catch_up(
    state: &AppState,
    socket: &mut WebSocket,
    room: i64,
    last: &mut i64,
) -> ApiResult<bool> {
    loop {
        let page = {
            let db = state.db().await?;
            messages_after(&db, room, *last, CATCH_UP_PAGE).await?
        };
        let full = page.len() == usize::try_from(CATCH_UP_PAGE).unwrap_or(usize::MAX);
        for m in &page {
            if !send(socket, message_frame(m)).await {
                return Ok(false);
            }
            *last = m.id;
        }
        if !full {
            return Ok(true);
        }
    }
}

/// Whether the session's token still stands; a database error counts as yes (it is asked
/// again at the next revocation or reconnect, and refusing would close every socket
/// whenever the database blinks).
async fn still_stands(state: &AppState, claims: &AccessClaims) -> bool {
    !matches!(
        crate::auth::authenticate(state, claims).await,
        Err(ApiError::TokenRevoked(_))
    )
}

async fn session(state: AppState, claims: AccessClaims, mut socket: WebSocket) {
    let hub = state.hub.clone();
    let user = claims.user;
    // Notifications made from now on are pushed: those committed before the subscription
    // took effect are caught up right after it.
    let mut last_notification = match latest_notification(&state, user.id).await {
        Ok(id) => id,
        Err(_) => {
            let _ = socket
                .send(close(1011, "database unavailable: try again"))
                .await;
            return;
        }
    };
    let mut sub = hub.subscribe(user.id);
    // A revocation announced between the upgrade's check and the subscription reached no
    // one: check again now that later ones will arrive as [`Event::Revoked`].
    if !still_stands(&state, &claims).await {
        let _ = socket
            .send(close(1008, "access revoked: log in again"))
            .await;
        return;
    }
    if !catch_up_notifications(&state, &mut socket, user.id, &mut last_notification).await {
        return;
    }
    // The last message id sent per subscribed room: live events at or below it were
    // already sent by a catch-up.
    let mut last: HashMap<i64, i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = hub.shutdown.cancelled() => {
                let _ = socket.send(close(1001, "server shutting down")).await;
                return;
            }
            event = sub.rx.recv() => match event {
                None => {
                    let _ = socket.send(close(1013, "too slow: reconnect and catch up")).await;
                    return;
                }
                Some(Event::Chat { room_id, id, frame }) => {
                    let seen = last.entry(room_id).or_default();
                    if id > *seen {
                        *seen = id;
                        if !send(&mut socket, frame).await {
                            return;
                        }
                    }
                }
                Some(Event::Notification { id, frame }) => {
                    if id > last_notification {
                        last_notification = id;
                        if !send(&mut socket, frame).await {
                            return;
                        }
                    }
                }
                Some(Event::Revoked) => {
                    if !still_stands(&state, &claims).await {
                        let _ = socket.send(close(1008, "access revoked: log in again")).await;
                        return;
                    }
                }
                Some(Event::Resync) => {
                    // A revocation may have been announced while the instance was deaf.
                    if !still_stands(&state, &claims).await {
                        let _ = socket.send(close(1008, "access revoked: log in again")).await;
                        return;
                    }
                    if !catch_up_notifications(&state, &mut socket, user.id, &mut last_notification).await {
                        return;
                    }
                    for (room, seen) in &mut last {
                        match catch_up(&state, &mut socket, *room, seen).await {
                            Ok(true) => {}
                            Ok(false) => return,
                            Err(e) => tracing::warn!(error = %e, "chat catch-up failed"),
                        }
                    }
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let ok = match serde_json::from_str::<ClientFrame>(text.as_str()) {
                        Ok(ClientFrame::Subscribe { room_id, after }) => {
                            subscribe(&state, &user, &mut socket, sub.id, &mut last, room_id, after).await
                        }
                        Err(e) => send(&mut socket, error_frame(&format!("bad frame: {e}"))).await,
                    };
                    if !ok {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Joins `room_id` after checking access, then catches up from `after`.
async fn subscribe(
    state: &AppState,
    user: &AuthUser,
    socket: &mut WebSocket,
    client: u64,
    last: &mut HashMap<i64, i64>,
    room_id: i64,
    after: Option<i64>,
) -> bool {
    let access = match state.db().await {
        Ok(db) => room_for(&db, user, room_id).await.map(|_| ()),
        Err(e) => Err(e),
    };
    // Without `after`, only messages newer than the latest now (history is for HTTP).
    let start = match (access, after) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(after)) => Ok(after),
        (Ok(()), None) => latest_id(state, room_id).await,
    };
    let start = match start {
        Ok(s) => s,
        Err(e) => {
            let why = match e {
                ApiError::NotFound => "no such room",
                ApiError::Forbidden(why) => why,
                _ => "cannot subscribe now; try again",
            };
            return send(socket, error_frame(why)).await;
        }
    };
    // Join before catching up, so nothing posted in between is missed.
    state.hub.join(client, room_id);
    let seen = last.entry(room_id).or_insert(0);
    *seen = (*seen).max(start);
    let subscribed =
        Utf8Bytes::from(serde_json::json!({"type": "subscribed", "room_id": room_id}).to_string());
    if !send(socket, subscribed).await {
        return false;
    }
    match catch_up(state, socket, room_id, seen).await {
        Ok(sent) => sent,
        Err(_) => send(socket, error_frame("catch-up failed; subscribe again")).await,
    }
}

async fn latest_notification(state: &AppState, user_id: i64) -> ApiResult<i64> {
    let db = state.db().await?;
    Ok(db
        .query_one(
            "SELECT coalesce(max(id), 0) FROM notification WHERE user_id = $1",
            &[&user_id],
        )
        .await?
        .get(0))
}

/// Sends the user's notifications after `*last` (one page at most), advancing `*last`.
/// False when the socket is gone; a database error only skips the catch-up.
async fn catch_up_notifications(
    state: &AppState,
    socket: &mut WebSocket,
    user_id: i64,
    last: &mut i64,
) -> bool {
    let page = match state.db().await {
        Ok(db) => crate::routes::notifications::after(&db, user_id, *last, 100).await,
        Err(e) => Err(e),
    };
    let page = match page {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "notification catch-up failed");
            return true;
        }
    };
    for n in &page {
        if !send(socket, crate::routes::notifications::frame(n)).await {
            return false;
        }
        *last = n.id;
    }
    true
}

async fn latest_id(state: &AppState, room_id: i64) -> ApiResult<i64> {
    let db = state.db().await?;
    Ok(db
        .query_one(
            "SELECT coalesce(max(id), 0) FROM chat_message WHERE room_id = $1",
            &[&room_id],
        )
        .await?
        .get(0))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}
