//! Live chat and notifications across two running instances on one database: a message
//! posted through one arrives over the WebSocket of the other; a reconnecting client
//! catches up; a lost LISTEN connection comes back without losing messages.

mod common;

use std::time::Duration;

use central_api::auth::Role;
use common::{Api, Instance, TestApp, send, unique};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, token: &str) -> Ws {
    let url = format!(
        "{}/api/chat/ws?token={token}",
        base.replacen("http", "ws", 1)
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    ws
}

/// The next JSON frame for which `pred` holds (others are skipped); panics after 15 s.
async fn next_frame(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("frame is JSON");
                    if pred(&v) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("no such frame in time")
}

async fn subscribe(ws: &mut Ws, room: i64, after: Option<i64>) {
    let frame = json!({"type": "subscribe", "room_id": room, "after": after});
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
    next_frame(ws, |v| v["type"] == "subscribed" && v["room_id"] == room).await;
}

async fn post(api: &Api, token: &str, room: i64, body: &str) -> i64 {
    let (status, msg) = send(
        api.post(&format!("/api/chat/rooms/{room}/messages/"), Some(token))
            .json(&json!({"body": body})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{msg}");
    msg["id"].as_i64().expect("id")
}

fn is_message(body: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "message" && v["message"]["body"] == body
}

#[tokio::test]
async fn chat_crosses_instances_and_catches_up() {
    let a = TestApp::shared();
    let b = Instance::beside(a);
    let api_a = a.api();
    let api_b = b.api();
    let op = api_a.login_as(Role::Operator).await;
    let mate = api_a.login_as(Role::Patrol).await;
    let outsider = api_a.login_as(Role::Analyst).await;
    let (status, room) = send(
        api_a
            .post("/api/chat/rooms/", Some(&op.token))
            .json(&json!({
                "kind": "team", "name": unique("team"), "members": [mate.id]
            })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    let room = room["id"].as_i64().expect("room id");

    // Live: posted on A, delivered by B.
    let mut ws = connect(&api_b.base, &mate.token).await;
    subscribe(&mut ws, room, None).await;
    let first = post(&api_a, &op.token, room, "hello from A").await;
    let got = next_frame(&mut ws, is_message("hello from A")).await;
    assert_eq!(got["message"]["id"], first);
    assert_eq!(got["message"]["author"], op.username.as_str());

    // Someone outside the room is refused on the socket and over HTTP.
    let mut other = connect(&api_b.base, &outsider.token).await;
    other
        .send(Message::text(
            json!({"type": "subscribe", "room_id": room}).to_string(),
        ))
        .await
        .expect("send");
    let refused = next_frame(&mut other, |v| v["type"] == "error").await;
    assert!(refused["message"].as_str().is_some(), "{refused}");
    let (status, _) = send(api_b.get(
        &format!("/api/chat/rooms/{room}/messages/"),
        Some(&outsider.token),
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Reconnect: what was posted while away arrives first, in order, then live ones.
    drop(ws);
    post(&api_a, &op.token, room, "while away 1").await;
    post(&api_b, &op.token, room, "while away 2").await;
    let mut ws = connect(&api_a.base, &mate.token).await;
    subscribe(&mut ws, room, Some(first)).await;
    let m1 = next_frame(&mut ws, |v| v["type"] == "message").await;
    let m2 = next_frame(&mut ws, |v| v["type"] == "message").await;
    assert_eq!(m1["message"]["body"], "while away 1");
    assert_eq!(m2["message"]["body"], "while away 2");
    post(&api_b, &op.token, room, "live again").await;
    next_frame(&mut ws, is_message("live again")).await;

    // History over HTTP pages the same messages.
    let (status, page) = send(api_b.get(
        &format!("/api/chat/rooms/{room}/messages/?limit=2"),
        Some(&mate.token),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][1]["body"], "live again");
    assert_eq!(page["more"], true);
    let before = page["items"][0]["id"].as_i64().expect("id");
    let (_, older) = send(api_b.get(
        &format!("/api/chat/rooms/{room}/messages/?before={before}&limit=10"),
        Some(&mate.token),
    ))
    .await;
    assert_eq!(older["items"][0]["body"], "hello from A");
    assert_eq!(older["more"], false);
}

#[tokio::test]
async fn a_lost_listen_connection_comes_back_without_losing_messages() {
    let a = TestApp::shared();
    let b = Instance::beside(a);
    let api_a = a.api();
    let op = api_a.login_as(Role::Operator).await;
    let (_, room) = send(
        api_a
            .post("/api/chat/rooms/", Some(&op.token))
            .json(&json!({
                "kind": "team", "name": unique("team"), "members": []
            })),
    )
    .await;
    let room = room["id"].as_i64().expect("room id");
    let mut ws = connect(&b.base, &op.token).await;
    subscribe(&mut ws, room, None).await;
    post(&api_a, &op.token, room, "before the cut").await;
    next_frame(&mut ws, is_message("before the cut")).await;
    // Cut every LISTEN connection (A's and B's); messages posted now arrive once B is back.
    let cut = a.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()",
    );
    assert_ne!(cut.trim(), "0", "no LISTEN connection found");
    let pool = central_api::db::pool(&a.config).expect("pool");
    let db = pool.get().await.expect("connection");
    let payload = json!({"incident_id": 7, "from": "verified", "to": "dispatched"});
    central_api::routes::notifications::notify(&db, op.id, "incident_state", &payload)
        .await
        .expect("notify");
    post(&api_a, &op.token, room, "during the cut").await;
    // Both arrive, in whichever order the catch-up and live delivery make.
    let (mut message, mut notification) = (false, false);
    while !(message && notification) {
        let f = next_frame(&mut ws, |v| {
            is_message("during the cut")(v) || v["type"] == "notification"
        })
        .await;
        if f["type"] == "notification" {
            assert_eq!(f["notification"]["payload"], payload);
            notification = true;
        } else {
            message = true;
        }
    }
    post(&api_a, &op.token, room, "after the cut").await;
    next_frame(&mut ws, is_message("after the cut")).await;
}

#[tokio::test]
async fn congestion_on_a_watched_site_is_notified_live_once() {
    let a = TestApp::shared();
    let b = Instance::beside(a);
    let api = a.api();
    let patrol = api.login_as(Role::Patrol).await;
    let site = unique("site");
    let (status, _) = send(api.put(
        &format!("/api/notifications/watches/{site}/"),
        Some(&patrol.token),
    ))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut ws = connect(&b.base, &patrol.token).await;
    // The socket is registered once it answers a frame.
    ws.send(Message::text("{}")).await.expect("send");
    next_frame(&mut ws, |v| v["type"] == "error").await;
    a.psql(&format!(
        "INSERT INTO traffic_sample (edge_id, site_id, detector_id, lane, bucket_start, interval_s, \
           volume, occupancy, speed_avg_kmh, speed_source, los, samples_expected, samples_received, \
           pct_observed, quality, epoch, batch_seq) \
         VALUES ('e1', '{site}', 'd1', 1, date_trunc('minute', now()) - interval '1 minute', 60, \
           30, 0.6, 12, 'measured', 'F', 2, 2, 100, 0, 1, 1)"
    ));
    let pool = central_api::db::pool(&a.config).expect("pool");
    let mut db = pool.get().await.expect("connection");
    // Each instance also scans on its own every minute; whichever scan sees the episode
    // first notifies, once.
    central_api::routes::notifications::scan_congestion(&mut db)
        .await
        .expect("scan");
    let n = next_frame(&mut ws, |v| {
        v["type"] == "notification" && v["notification"]["payload"]["site_id"] == site.as_str()
    })
    .await;
    assert_eq!(n["notification"]["kind"], "congestion");
    assert_eq!(n["notification"]["payload"]["los"], "F");
    // The same episode is not notified twice.
    central_api::routes::notifications::scan_congestion(&mut db)
        .await
        .expect("scan");
    let (status, page) = send(api.get("/api/notifications/", Some(&patrol.token))).await;
    assert_eq!(status, StatusCode::OK);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(page["unread_total"], 1);
    let id = items[0]["id"].as_i64().expect("id");
    // Another user cannot mark it; its owner can.
    let other = api.login_as(Role::Patrol).await;
    let (status, _) = send(api.post(
        &format!("/api/notifications/{id}/read/"),
        Some(&other.token),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, read) = send(api.post(
        &format!("/api/notifications/{id}/read/"),
        Some(&patrol.token),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read["read_at"].is_string());
}
