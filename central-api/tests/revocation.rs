//! Access tokens die with their user's standing: disabling, deleting, a role, patrol or
//! password change and "log out everywhere" refuse the user's tokens from the next request
//! on (401 `token_revoked`), on this instance at once and on another one as soon as the
//! database's announcement reaches it, even across a lost LISTEN connection. A live
//! WebSocket of the user is closed too.

mod common;

use std::time::Duration;

use central_api::auth::Role;
use common::{Api, Instance, Session, TestApp, send};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long another instance may take to hear of a revocation (it is milliseconds; the
/// bound is for a loaded machine).
const PROPAGATION: Duration = Duration::from_secs(10);

/// `GET /api/users/me/` with `token`: the status and the body.
async fn me(api: &Api, token: &str) -> (StatusCode, Value) {
    send(api.get("/api/users/me/", Some(token))).await
}

/// Asserts that `token` works now.
async fn assert_works(api: &Api, token: &str, what: &str) {
    let (status, body) = me(api, token).await;
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
}

/// Asserts that `token` is refused as revoked now; returns the message.
async fn assert_revoked(api: &Api, token: &str, what: &str) -> String {
    let (status, body) = me(api, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(body["error"], "token_revoked", "{what}: {body}");
    body["message"].as_str().unwrap_or_default().to_owned()
}

/// Polls until `token` is refused as revoked; panics after [`PROPAGATION`].
async fn eventually_revoked(api: &Api, token: &str, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    loop {
        let (status, body) = me(api, token).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["error"], "token_revoked", "{what}: {body}");
            return body["message"].as_str().unwrap_or_default().to_owned();
        }
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the token still works after {PROPAGATION:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `PUT /api/users/{id}/` by `admin`; panics unless 200.
async fn update(api: &Api, admin: &Session, id: i64, body: Value) {
    let (status, res) = send(
        api.put(&format!("/api/users/{id}/"), Some(&admin.token))
            .json(&body),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "update user {id} with {body}: {res}"
    );
}

/// Exchanges a refresh token; the status.
async fn refresh(api: &Api, refresh_token: &str) -> StatusCode {
    send(
        api.post("/api/auth/refresh/", None)
            .json(&json!({"refresh_token": refresh_token})),
    )
    .await
    .0
}

#[tokio::test]
async fn a_disabled_users_tokens_die_at_once_and_a_login_after_re_enabling_works() {
    let api = TestApp::shared().api();
    let admin = api.admin().await;
    let op = api.login_as(Role::Operator).await;
    assert_works(&api, &op.token, "before").await;

    update(&api, &admin, op.id, json!({"disabled": true})).await;
    let why = assert_revoked(&api, &op.token, "disabled").await;
    assert!(why.contains("disabled"), "{why}");
    assert_eq!(
        refresh(&api, &op.refresh_token).await,
        StatusCode::UNAUTHORIZED
    );

    update(&api, &admin, op.id, json!({"disabled": false})).await;
    assert_revoked(&api, &op.token, "issued before the account was disabled").await;
    let again = api.login(&op.username, common::PASSWORD).await;
    assert_works(&api, &again.token, "issued after re-enabling").await;
    assert_eq!(
        refresh(&api, &op.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "the old refresh token stays dead"
    );
}

#[tokio::test]
async fn a_demoted_users_old_token_no_longer_grants_the_old_role() {
    let api = TestApp::shared().api();
    let root = api.admin().await;
    let admin = api.login_as(Role::Admin).await;
    let (status, _) = send(api.get("/api/users/", Some(&admin.token))).await;
    assert_eq!(status, StatusCode::OK, "an admin lists users");

    update(&api, &root, admin.id, json!({"role": "operator"})).await;
    let (status, body) = send(api.get("/api/users/", Some(&admin.token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "token_revoked", "{body}");
    assert_eq!(
        refresh(&api, &admin.refresh_token).await,
        StatusCode::UNAUTHORIZED
    );
    let demoted = api.login(&admin.username, common::PASSWORD).await;
    assert_eq!(demoted.role, Role::Operator);
    let (status, _) = send(api.get("/api/users/", Some(&demoted.token))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the new token is an operator's"
    );
}

#[tokio::test]
async fn a_patrol_users_token_dies_when_the_patrol_changes_even_by_a_cascade() {
    let app = TestApp::shared();
    let api = app.api();
    let root = api.admin().await;
    let first = app.create_patrol(&common::unique("P"));
    let second = app.create_patrol(&common::unique("P"));
    let crew = api.login_as_patrol(first).await;
    assert_works(&api, &crew.token, "before").await;

    update(&api, &root, crew.id, json!({"patrol_id": second})).await;
    assert_revoked(&api, &crew.token, "moved to another patrol").await;

    // The patrol deleted in SQL: the foreign key empties patrol_id, the trigger revokes.
    let crew = api.login(&crew.username, common::PASSWORD).await;
    assert_works(&api, &crew.token, "after the move").await;
    app.psql(&format!("DELETE FROM patrol WHERE id = {second}"));
    eventually_revoked(&api, &crew.token, "the patrol deleted").await;
}

#[tokio::test]
async fn a_password_change_revokes_every_token_of_the_user() {
    let api = TestApp::shared().api();
    let root = api.admin().await;
    let user = api.login_as(Role::Analyst).await;
    let other_session = api.login(&user.username, common::PASSWORD).await;
    let new_password = "another-long-password";

    let (status, body) = send(
        api.put(&format!("/api/users/{}/", user.id), Some(&user.token))
            .json(&json!({"password": new_password, "current_password": common::PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_revoked(&api, &user.token, "the session that changed it").await;
    assert_revoked(&api, &other_session.token, "another session").await;
    assert_eq!(
        refresh(&api, &other_session.refresh_token).await,
        StatusCode::UNAUTHORIZED
    );
    let fresh = api.login(&user.username, new_password).await;
    assert_works(&api, &fresh.token, "logged in with the new password").await;

    // An admin's reset does the same.
    update(&api, &root, user.id, json!({"password": common::PASSWORD})).await;
    assert_revoked(&api, &fresh.token, "reset by an admin").await;
}

#[tokio::test]
async fn a_deleted_users_token_is_refused() {
    let api = TestApp::shared().api();
    let root = api.admin().await;
    let user = api.login_as(Role::Operator).await;
    assert_works(&api, &user.token, "before").await;
    let (status, body) =
        send(api.delete(&format!("/api/users/{}/", user.id), Some(&root.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let why = assert_revoked(&api, &user.token, "deleted").await;
    assert!(why.contains("no longer exists"), "{why}");
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_caller_only() {
    let api = TestApp::shared().api();
    let user = api.login_as(Role::Patrol).await;
    let phone = api.login(&user.username, common::PASSWORD).await;
    let bystander = api.login_as(Role::Patrol).await;

    let (status, body) = send(api.post("/api/auth/logout-all/", Some(&user.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_revoked(&api, &user.token, "the session that logged out").await;
    assert_revoked(&api, &phone.token, "another session").await;
    for r in [&user.refresh_token, &phone.refresh_token] {
        assert_eq!(refresh(&api, r).await, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = send(api.post("/api/auth/logout-all/", Some(&phone.token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = send(api.post("/api/auth/logout-all/", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_works(&api, &bystander.token, "another user").await;
    let again = api.login(&user.username, common::PASSWORD).await;
    assert_works(&api, &again.token, "logged in again").await;
}

#[tokio::test]
async fn a_change_made_in_sql_revokes_too() {
    let app = TestApp::shared();
    let api = app.api();
    let user = api.login_as(Role::Operator).await;
    assert_works(&api, &user.token, "before").await;
    // An operator disabled by hand, at 3 a.m., with psql.
    app.psql(&format!(
        "UPDATE app_user SET disabled = true WHERE id = {}",
        user.id
    ));
    eventually_revoked(&api, &user.token, "disabled in SQL").await;
}

#[tokio::test]
async fn a_revocation_through_one_instance_is_honoured_by_another() {
    let a = TestApp::shared();
    let b = Instance::beside(a);
    let (api_a, api_b) = (a.api(), b.api());
    let root = api_a.admin().await;
    let op = api_a.login_as(Role::Operator).await;
    let other = api_a.login_as(Role::Operator).await;
    // B checks (and remembers) both tokens.
    assert_works(&api_b, &op.token, "at B").await;
    assert_works(&api_b, &other.token, "at B").await;

    update(&api_a, &root, op.id, json!({"disabled": true})).await;
    eventually_revoked(&api_b, &op.token, "disabled through A").await;

    let (status, _) = send(api_a.post("/api/auth/logout-all/", Some(&other.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually_revoked(&api_b, &other.token, "logged out everywhere through A").await;

    // A token issued by A after the change works at B at once (it is newer than what B
    // may still remember).
    let fresh = api_a.login(&other.username, common::PASSWORD).await;
    assert_works(&api_b, &fresh.token, "issued after the change").await;
}

/// How many LISTEN connections the instances on `db` hold.
async fn listeners(ctl: &tokio_postgres::Client, db: &str) -> i64 {
    ctl.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN %'",
        &[&db],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

async fn wait_for_listeners(ctl: &tokio_postgres::Client, db: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while listeners(ctl, db).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the instances do not LISTEN"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revocation_while_the_listener_is_away_is_not_missed() {
    // Servers of their own: this test cuts its database off.
    let a = TestApp::spawn(|_| {});
    let b = Instance::beside(&a);
    let (api_a, api_b) = (a.api(), b.api());
    // On another database: a database's own sessions may not close it to connections.
    let url = test_support::PgServer::shared().connection_string("postgres");
    let (ctl, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("control connection");
    tokio::spawn(conn);
    let root = api_a.admin().await;
    let op = api_a.login_as(Role::Operator).await;
    // Both listen, so B trusts and remembers what it reads.
    wait_for_listeners(&ctl, &a.db, 2).await;
    assert_works(&api_b, &op.token, "at B").await;

    // No new connection can be made (the pools keep theirs), and the LISTEN connections are
    // cut: B cannot hear the revocation, and cannot reconnect until allowed again.
    let db = a.db.replace('"', "\"\"");
    ctl.batch_execute(&format!(
        "ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS false"
    ))
    .await
    .expect("refuse connections");
    ctl.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query LIKE 'LISTEN %'",
        &[&a.db],
    )
    .await
    .expect("cut the listeners");
    wait_for_listeners_gone(&ctl, &a.db).await;

    update(&api_a, &root, op.id, json!({"disabled": true})).await;
    eventually_revoked(&api_b, &op.token, "disabled while B was deaf").await;

    ctl.batch_execute(&format!(
        "ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS true"
    ))
    .await
    .expect("allow connections");
    wait_for_listeners(&ctl, &a.db, 2).await;
    assert_revoked(&api_b, &op.token, "after B listens again").await;
    update(&api_a, &root, op.id, json!({"disabled": false})).await;
    let again = api_a.login(&op.username, common::PASSWORD).await;
    assert_works(&api_b, &again.token, "logged in again").await;
}

async fn wait_for_listeners_gone(ctl: &tokio_postgres::Client, db: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while listeners(ctl, db).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the LISTEN connections do not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_live_websocket_is_closed_when_its_user_is_disabled() {
    let app = TestApp::shared();
    let api = app.api();
    let root = api.admin().await;
    let op = api.login_as(Role::Operator).await;
    let url = format!(
        "{}/api/chat/ws?token={}",
        app.base.replacen("http", "ws", 1),
        op.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    update(&api, &root, op.id, json!({"disabled": true})).await;
    let closed = tokio::time::timeout(PROPAGATION, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the socket stays open");
    let frame = closed.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");

    // A new socket with the old token is refused.
    let url = format!(
        "{}/api/chat/ws?token={}",
        app.base.replacen("http", "ws", 1),
        op.token
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

/// The value of counter `name{labels}` in the `/metrics` text (0 when absent).
async fn counter(api: &Api, series: &str) -> f64 {
    let text = api.get_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_hot_path_asks_the_database_nothing() {
    let api = TestApp::shared().api();
    let user = api.login_as(Role::Analyst).await;
    let memory = r#"central_api_token_checks_total{source="memory"}"#;
    // Other tests of this process add to the counter too, but only a check answered from
    // memory does: if every check read the database, it would not move by 20.
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    loop {
        let before = counter(&api, memory).await;
        for _ in 0..21 {
            assert_works(&api, &user.token, "repeated").await;
        }
        if counter(&api, memory).await - before >= 20.0 {
            return;
        }
        // The instance may not listen yet (then it reads every time, by design).
        assert!(
            tokio::time::Instant::now() < deadline,
            "repeated requests with one token are not answered from memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
