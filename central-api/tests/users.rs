//! Users and auth against a real PostgreSQL.

mod common;

use central_api::auth::Role;
use common::{Api, TestApp, send, unique};
use reqwest::StatusCode;
use serde_json::json;

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
    }
    let (status, _) = send(api.get("/api/users/me/", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let name = unique("x");
    let (status, body) = send(
        api.post("/api/auth/login/", None)
            .json(&json!({"username": name, "password": "wrong-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
