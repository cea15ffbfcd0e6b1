//! Users and auth against a real PostgreSQL: sign-up, roles, tokens (refresh rotation,
//! reuse detection, logout), updates and deletion rules.
#![allow(clippy::unwrap_used)]

mod common;

use central_api::auth::Role;
use common::{ADMIN_USER, Api, PASSWORD, TestApp, send, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn login_as_every_role_and_read_yourself() {
    let app = TestApp::shared();
    let api: Api = app.api();
    for role in Role::ALL {
        let s = api.login_as(role).await;
        let (status, body) = send(api.get("/api/users/me/", Some(&s.token))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], role.as_str());
        assert_eq!(body["id"], s.id);
        assert!(body.get("password_hash").is_none());
    }
    let (status, _) = send(api.get("/api/users/me/", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(api.get("/api/users/me/", Some("not-a-jwt"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let api = TestApp::shared().api();
    let (s1, b1) = send(
        api.post("/api/auth/login/", None)
            .json(&json!({"username": unique("nobody"), "password": "whatever-it-is"})),
    )
    .await;
    let (s2, b2) = send(
        api.post("/api/auth/login/", None)
            .json(&json!({"username": ADMIN_USER, "password": "whatever-it-is"})),
    )
    .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!((s1, b1), (s2, b2));
    // Case does not matter for user names.
    api.login(&ADMIN_USER.to_uppercase(), common::ADMIN_PASSWORD)
        .await;
}

#[tokio::test]
async fn anyone_signs_up_as_public_and_only_admins_make_other_roles() {
    let api = TestApp::shared().api();
    let name = unique("citizen");
    let (status, body) = send(
        api.post("/api/users/", None)
            .json(&json!({"username": name, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "public");
    let citizen = api.login(&name, PASSWORD).await;
    for token in [Some(citizen.token.as_str())] {
        let (status, _) = send(
            api.post("/api/users/", token)
                .json(&json!({"username": unique("x"), "password": PASSWORD, "role": "operator"})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let op = api.login_as(Role::Operator).await;
    let (status, _) = send(
        api.post("/api/users/", Some(&op.token))
            .json(&json!({"username": unique("x"), "password": PASSWORD, "role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Names are unique regardless of case: 409 naming the field.
    let (status, body) = send(
        api.post("/api/users/", None)
            .json(&json!({"username": name.to_uppercase(), "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["fields"][0]["field"], "username");
    let (status, body) = send(
        api.post("/api/users/", None)
            .json(&json!({"username": unique("short"), "password": "short"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "password");
    // An admin naming a patrol that does not exist: the foreign key names the field.
    let admin = api.admin().await;
    let (status, body) = send(api.post("/api/users/", Some(&admin.token)).json(&json!({
        "username": unique("crew"), "password": PASSWORD, "role": "patrol", "patrol_id": i64::MAX
    })))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "patrol_id");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    // The reuse counter is read before and after: no other test of this binary reuses.
    let api = TestApp::shared().api();
    let s = api.login_as(Role::Analyst).await;
    let refresh = |token: String| {
        let api = api.clone();
        async move {
            send(
                api.post("/api/auth/refresh/", None)
                    .json(&json!({"refresh_token": token})),
            )
            .await
        }
    };
    let reuses = || {
        let api = api.clone();
        async move {
            let text = api.get_text("/metrics").await;
            text.lines()
                .find_map(|l| l.strip_prefix("central_api_refresh_token_reuse_total "))
                .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
        }
    };
    let before = reuses().await;
    let (status, first) = refresh(s.refresh_token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_ne!(first["refresh_token"], s.refresh_token.as_str());
    let (status, me) = send(api.get("/api/users/me/", first["access_token"].as_str())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], s.id);
    // The first token again: refused, and its successor dies with it.
    let (status, _) = refresh(s.refresh_token.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = refresh(first["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = refresh("made-up".to_owned()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let after_reuse = reuses().await;
    assert!(
        after_reuse > before,
        "a rotated token presented again is counted as reuse"
    );

    // A token revoked by logout-all is stale, not copied: refused, but no reuse alarm.
    let s2 = api.login(&s.username, PASSWORD).await;
    let (status, _) = send(api.post("/api/auth/logout-all/", Some(&s2.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = refresh(s2.refresh_token.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reuses().await,
        after_reuse,
        "logout-all's tokens are not a reuse"
    );

    // Logout revokes.
    let s = api.login(&s.username, PASSWORD).await;
    let (status, _) = send(
        api.post("/api/auth/logout/", None)
            .json(&json!({"refresh_token": s.refresh_token})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = refresh(s.refresh_token.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn users_change_their_own_account_and_admins_any() {
    let app = TestApp::shared();
    let api = app.api();
    let me = api.login_as(Role::Operator).await;
    let other = api.login_as(Role::Analyst).await;
    let path = format!("/api/users/{}/", me.id);
    let (status, body) = send(
        api.put(&path, Some(&me.token))
            .json(&json!({"display_name": "Op Erator", "email": "op@example.org"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["display_name"], "Op Erator");
    // Not someone else's, not one's own role.
    let (status, _) = send(
        api.put(&format!("/api/users/{}/", other.id), Some(&me.token))
            .json(&json!({"display_name": "hacked"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        api.put(&path, Some(&me.token))
            .json(&json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A password change needs the current one, and revokes refresh tokens.
    let (status, body) = send(
        api.put(&path, Some(&me.token))
            .json(&json!({"password": "another-long-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "current_password");
    let (status, body) =
        send(api.put(&path, Some(&me.token)).json(
            &json!({"password": "another-long-password", "current_password": "wrong-password"}),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = send(
        api.put(&path, Some(&me.token))
            .json(&json!({"password": "another-long-password", "current_password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        api.post("/api/auth/refresh/", None)
            .json(&json!({"refresh_token": me.refresh_token})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    api.login(&me.username, "another-long-password").await;

    // An admin resets another user's password without theirs, but not their own.
    let admin = api.admin().await;
    let (status, body) = send(
        api.put(&format!("/api/users/{}/", admin.id), Some(&admin.token))
            .json(&json!({"password": "a-new-admin-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "current_password");
    let (status, body) = send(
        api.put(&format!("/api/users/{}/", other.id), Some(&admin.token))
            .json(&json!({"password": "reset-by-the-admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.login(&other.username, "reset-by-the-admin").await;

    // An admin disables the account: no more logins.
    let (status, body) = send(
        api.put(&path, Some(&admin.token))
            .json(&json!({"disabled": true, "role": "analyst"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "analyst");
    let (status, _) = send(
        api.post("/api/auth/login/", None)
            .json(&json!({"username": me.username, "password": "another-long-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let audit = app.psql(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'user.update' AND entity_id = '{}'",
        me.id
    ));
    assert_eq!(audit, "3", "the three successful updates");
    // The audit log never holds password hashes.
    let leaked = app.psql("SELECT count(*) FROM audit_log WHERE before::text LIKE '%argon2%' OR after::text LIKE '%argon2%'");
    assert_eq!(leaked, "0");
}

#[tokio::test]
async fn deletion_rules() {
    let app = TestApp::shared();
    let api = app.api();
    let admin = api.admin().await;
    let victim = api.login_as(Role::Public).await;
    let (status, _) =
        send(api.delete(&format!("/api/users/{}/", admin.id), Some(&admin.token))).await;
    assert_eq!(status, StatusCode::CONFLICT, "not yourself");
    let (status, _) =
        send(api.delete(&format!("/api/users/{}/", victim.id), Some(&admin.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) =
        send(api.get(&format!("/api/users/{}/", victim.id), Some(&admin.token))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        send(api.delete(&format!("/api/users/{}/", victim.id), Some(&admin.token))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let row = app.psql(&format!(
        "SELECT before->>'username', after IS NULL FROM audit_log WHERE action = 'user.delete' AND entity_id = '{}'",
        victim.id
    ));
    assert_eq!(row, format!("{}|t", victim.username));
}

#[tokio::test]
async fn the_admin_lists_users_by_role() {
    let api = TestApp::shared().api();
    let admin = api.admin().await;
    let a = api.login_as(Role::Analyst).await;
    let (status, body) =
        send(api.get("/api/users/?role=analyst&limit=200", Some(&admin.token))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    assert!(items.iter().all(|u| u["role"] == "analyst"));
    assert!(items.iter().any(|u| u["id"] == a.id));
    let (status, _) = send(api.get("/api/users/?role=king", Some(&admin.token))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let _: Value = body;
}
