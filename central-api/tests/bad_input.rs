//! Bad input on every route with a body or parameters: malformed JSON, wrong types,
//! over-long strings, unknown fields, NUL characters and SQL metacharacters. The answer is
//! always a 4xx naming the field (or an accepted, verbatim value), never a 5xx.
#![allow(clippy::unwrap_used)]

mod common;

use central_api::auth::Role;
use common::{Api, TestApp, create_incident, file_appeal, send, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SQL_META: &str = "'; DROP TABLE incident; -- \" \\ %_ $1 /* */";

struct Route {
    method: Method,
    path: String,
    token: Option<String>,
    body: Value,
}

async fn routes(app: &TestApp, api: &Api) -> Vec<Route> {
    let admin = api.admin().await;
    let op = api.login_as(Role::Operator).await;
    let incident = create_incident(api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let appeal = file_appeal(api, None).await["id"].as_i64().unwrap();
    let user = api.login_as(Role::Analyst).await;
    let patrol = app.create_patrol(&unique("P"));
    let t = |s: &str| Some(s.to_owned());
    vec![
        Route {
            method: Method::POST,
            path: "/api/users/".into(),
            token: t(&admin.token),
            body: json!({"username": unique("u"), "password": common::PASSWORD, "display_name": "D", "email": "a@b.c", "role": "patrol", "patrol_id": patrol}),
        },
        Route {
            method: Method::PUT,
            path: format!("/api/users/{}/", user.id),
            token: t(&admin.token),
            body: json!({"display_name": "D", "email": "a@b.c", "password": common::PASSWORD, "role": "analyst", "disabled": false}),
        },
        Route {
            method: Method::POST,
            path: "/api/auth/login/".into(),
            token: None,
            body: json!({"username": user.username, "password": common::PASSWORD}),
        },
        Route {
            method: Method::POST,
            path: "/api/auth/refresh/".into(),
            token: None,
            body: json!({"refresh_token": "x"}),
        },
        Route {
            method: Method::POST,
            path: "/api/auth/logout/".into(),
            token: None,
            body: json!({"refresh_token": "x"}),
        },
        Route {
            method: Method::POST,
            path: "/api/incidents/".into(),
            token: t(&op.token),
            body: common::incident_body(
                json!({"description": "d", "road": "A1", "direction": "north", "probability": "certain"}),
            ),
        },
        Route {
            method: Method::PATCH,
            path: format!("/api/incidents/{incident}/"),
            token: t(&op.token),
            body: json!({"title": "t", "description": "d", "area": "a", "road": "r", "direction": "d", "severity": "low", "lanes_total": 2, "lanes_blocked": [1]}),
        },
        Route {
            method: Method::POST,
            path: format!("/api/incidents/{incident}/transitions/"),
            token: t(&op.token),
            body: json!({"to": "verified", "note": "n"}),
        },
        Route {
            method: Method::POST,
            path: "/api/appeals/".into(),
            token: None,
            body: json!({"kind": "debris", "description": "d", "location_text": "l", "name": "n", "contact": "c", "lat": 1.0, "lon": 2.0}),
        },
        Route {
            method: Method::POST,
            path: format!("/api/appeals/{appeal}/status/"),
            token: t(&op.token),
            body: json!({"status": "acknowledged", "response": "r"}),
        },
        Route {
            method: Method::POST,
            path: format!("/api/appeals/{appeal}/incident/"),
            token: t(&op.token),
            body: json!({"title": "t", "severity": "low", "lat": 1.0, "lon": 1.0}),
        },
    ]
}

fn fields(body: &Value) -> Vec<String> {
    body["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn call(api: &Api, r: &Route, body: reqwest::Body) -> (StatusCode, Value) {
    send(
        api.request(r.method.clone(), &r.path, r.token.as_deref())
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

#[tokio::test]
async fn malformed_wrong_unknown_and_oversized_bodies_name_the_field() {
    let app = TestApp::shared();
    let api = app.api();
    let mut probes = 0;
    for r in routes(app, &api).await {
        let what = format!("{} {}", r.method, r.path);
        for malformed in [
            &b"{"[..],
            b"{\"a\": }",
            b"not json",
            b"",
            b"[1, 2]",
            b"{} {}",
            b"null",
        ] {
            let (status, body) = call(&api, &r, malformed.to_vec().into()).await;
            assert!(
                status.is_client_error(),
                "{what} {:?}: {status} {body}",
                String::from_utf8_lossy(malformed)
            );
            assert!(!fields(&body).is_empty(), "{what}: {body}");
            probes += 1;
        }
        let (status, body) = send(
            api.request(r.method.clone(), &r.path, r.token.as_deref())
                .header("content-type", "text/plain")
                .body(r.body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}: {body}");

        let mut unknown = r.body.clone();
        unknown["surprise"] = json!(1);
        let (status, body) = call(&api, &r, unknown.to_string().into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(fields(&body), ["surprise"], "{what}: {body}");

        for (key, value) in r.body.as_object().unwrap() {
            // A type no field has.
            let mut wrong = r.body.clone();
            wrong[key] = json!({"nested": [true]});
            let (status, body) = call(&api, &r, wrong.to_string().into()).await;
            assert!(status.is_client_error(), "{what} {key}: {status} {body}");
            assert!(
                fields(&body).iter().any(|f| f.starts_with(key.as_str())),
                "{what} {key}: {body}"
            );
            probes += 1;
            if value.is_string() {
                for (label, text) in [("long", "x".repeat(100_000)), ("nul", "a\u{0}b".to_owned())]
                {
                    let mut bad = r.body.clone();
                    bad[key] = json!(text);
                    let (status, body) = call(&api, &r, bad.to_string().into()).await;
                    assert!(
                        status.is_client_error() || status.is_success(),
                        "{what} {key} {label}: {status} {body}"
                    );
                    if label == "long" && !key.contains("token") && key != "username" {
                        // Secrets and names are refused without echo; the rest name the field.
                        assert!(
                            status.is_client_error(),
                            "{what} {key} {label}: {status} {body}"
                        );
                    }
                    probes += 1;
                }
            }
        }
    }
    assert!(probes > 100, "{probes}");
}

#[tokio::test]
async fn sql_metacharacters_are_data() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let created = create_incident(
        &api,
        &op.token,
        json!({"title": SQL_META, "description": SQL_META, "area": SQL_META, "road": SQL_META}),
    )
    .await;
    assert_eq!(created["title"], SQL_META);
    let (status, body) = send(api.get("/api/incidents/", Some(&op.token)).query(&[
        ("area", SQL_META),
        ("state", "reported"),
        ("kind", "accident"),
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"][0]["id"], created["id"],
        "found by its odd area, verbatim"
    );
    for (param, value) in [
        ("sort", SQL_META),
        ("state", SQL_META),
        ("bbox", SQL_META),
        ("limit", SQL_META),
        ("from", SQL_META),
        ("area", "a\u{0}b"),
        ("surprise", "1"),
    ] {
        let (status, body) = send(
            api.get("/api/incidents/", Some(&op.token))
                .query(&[(param, value)]),
        )
        .await;
        assert!(status.is_client_error(), "{param}: {status} {body}");
    }
    for (param, value) in [
        ("entity", SQL_META),
        ("action", SQL_META),
        ("entity_id", "x\u{0}"),
    ] {
        let admin = api.admin().await;
        let (status, body) = send(
            api.get("/api/audit/", Some(&admin.token))
                .query(&[(param, value)]),
        )
        .await;
        assert!(
            status.is_client_error() || status == StatusCode::OK,
            "{param}: {status} {body}"
        );
    }
    // Path parameters that are not ids.
    for path in [
        "/api/incidents/1%20OR%201=1/",
        "/api/incidents/99999999999999999999/",
        "/api/users/-/",
        "/api/appeals/%27/",
    ] {
        let (status, body) = send(api.get(path, Some(&op.token))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(fields(&body), ["path"], "{path}: {body}");
    }
    assert_eq!(app.psql("SELECT to_regclass('incident') IS NOT NULL"), "t");
}

#[tokio::test]
async fn numbers_out_of_range_and_oversized_bodies() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    for (field, value) in [
        ("lat", json!(91.0)),
        ("lon", json!(-180.5)),
        ("lanes_total", json!(40_000)),
        ("lanes_total", json!(0)),
        ("lanes_blocked", json!([0])),
        ("assigned_patrol_id", json!(i64::MAX)),
        ("reported_at", json!("2999-01-01T00:00:00Z")),
        ("occurred_at", json!("yesterday")),
    ] {
        let (status, body) = send(
            api.post("/api/incidents/", Some(&op.token))
                .json(&common::incident_body(json!({ field: value }))),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}={value}: {body}"
        );
        assert!(
            fields(&body).iter().any(|f| f.starts_with(field)),
            "{field}: {body}"
        );
    }
    let (status, body) = send(
        api.post("/api/incidents/", Some(&op.token))
            .header("content-type", "application/json")
            .body(r#"{"kind":"accident","title":"t","lat":1e400,"lon":1}"#),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    let huge = format!(
        r#"{{"kind":"accident","title":"{}","lat":1,"lon":1}}"#,
        "x".repeat(2 << 20)
    );
    let (status, _) = send(
        api.post("/api/incidents/", Some(&op.token))
            .header("content-type", "application/json")
            .body(huge),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
