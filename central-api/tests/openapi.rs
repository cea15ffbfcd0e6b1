//! The OpenAPI document: it lists every route, and real responses (successes and errors)
//! validate against the schemas it declares for them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use central_api::auth::Role;
use common::{Api, TestApp, create_incident, file_appeal, transition, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every (method, path) the core owns. The document must list exactly these (plus routes
/// other modules add, which this test does not know about).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/users/"),
    ("get", "/api/users/"),
    ("get", "/api/users/me/"),
    ("get", "/api/users/{id}/"),
    ("put", "/api/users/{id}/"),
    ("delete", "/api/users/{id}/"),
    ("post", "/api/auth/login/"),
    ("post", "/api/auth/refresh/"),
    ("post", "/api/auth/logout/"),
    ("post", "/api/auth/logout-all/"),
    ("get", "/api/incidents/"),
    ("post", "/api/incidents/"),
    ("get", "/api/incidents/{id}/"),
    ("patch", "/api/incidents/{id}/"),
    ("post", "/api/incidents/{id}/transitions/"),
    ("get", "/api/incidents/{id}/history/"),
    ("post", "/api/appeals/"),
    ("get", "/api/appeals/"),
    ("get", "/api/appeals/{id}/"),
    ("post", "/api/appeals/{id}/status/"),
    ("post", "/api/appeals/{id}/incident/"),
    ("get", "/api/audit/"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
];

struct Doc {
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

impl Doc {
    /// Sends the request, then validates the response body against the schema the document
    /// declares for `template` + method + status (which must be declared).
    async fn check(
        &mut self,
        api: &Api,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut rb = api.request(method.clone(), path, token);
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let res = rb.send().await.expect("request");
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = res.text().await.expect("body");
        let m = method.as_str().to_ascii_lowercase();
        let op = &self.doc["paths"][template][&m];
        assert!(op.is_object(), "{m} {template} is not in the document");
        let declared = &op["responses"][status.as_str()];
        assert!(
            declared.is_object(),
            "{m} {template} answered {status}, which the document does not declare: {text}"
        );
        self.checked
            .insert((m.clone(), template.to_owned(), status.as_u16()));
        let Some(content) = declared["content"].as_object() else {
            assert!(
                text.is_empty(),
                "{m} {template} {status}: no content declared, got {text}"
            );
            return Value::Null;
        };
        let (declared_type, media) = content.iter().next().expect("a media type");
        assert!(
            content_type.starts_with(declared_type.as_str()),
            "{m} {template} {status}: {content_type} vs {declared_type}"
        );
        if declared_type != "application/json" {
            return Value::String(text);
        }
        let instance: Value = serde_json::from_str(&text).expect("JSON body");
        // The schema with the document's components beside it, so `#/components/...`
        // references resolve.
        let mut schema = media["schema"].clone();
        schema["components"] = self.doc["components"].clone();
        let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{m} {template} {status}: {errors:?}\n{instance}"
        );
        instance
    }
}

#[tokio::test]
async fn the_document_lists_every_route_and_responses_match_it() {
    let app = TestApp::shared();
    let api = app.api();
    let res = api.get("/api/openapi.json", None).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    let listed: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    for (m, p) in ROUTES {
        assert!(
            listed.contains(&((*m).to_owned(), (*p).to_owned())),
            "{m} {p} missing from the document"
        );
    }
    // The docs page needs nothing from elsewhere.
    let page = api.get_text("/api/docs").await;
    assert!(page.contains("/api/openapi.json"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let mut d = Doc {
        doc,
        checked: BTreeSet::new(),
    };
    let admin = api.admin().await;
    let op = api.login_as(Role::Operator).await;
    let citizen = api.login_as(Role::Public).await;
    let patrol = app.create_patrol(&unique("P"));
    let (a, o, c) = (
        Some(admin.token.as_str()),
        Some(op.token.as_str()),
        Some(citizen.token.as_str()),
    );

    // users and auth
    let name = unique("doc");
    let user = d
        .check(
            &api,
            Method::POST,
            "/api/users/",
            "/api/users/",
            None,
            Some(json!({"username": name, "password": common::PASSWORD, "email": "d@e.f"})),
        )
        .await;
    let uid = user["id"].as_i64().unwrap();
    d.check(
        &api,
        Method::POST,
        "/api/users/",
        "/api/users/",
        None,
        Some(json!({"username": name, "password": common::PASSWORD})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/users/",
        "/api/users/",
        None,
        Some(json!({"username": "x", "password": "y"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/users/",
        "/api/users/",
        c,
        Some(json!({"username": unique("x"), "password": common::PASSWORD, "role": "admin"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/users/",
        "/api/users/",
        None,
        Some(json!({"username": unique("x"), "password": common::PASSWORD, "role": "admin"})),
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/users/",
        "/api/users/?limit=2",
        a,
        None,
    )
    .await;
    d.check(&api, Method::GET, "/api/users/", "/api/users/", None, None)
        .await;
    d.check(&api, Method::GET, "/api/users/", "/api/users/", c, None)
        .await;
    d.check(
        &api,
        Method::GET,
        "/api/users/me/",
        "/api/users/me/",
        c,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/users/me/",
        "/api/users/me/",
        None,
        None,
    )
    .await;
    let upath = format!("/api/users/{uid}/");
    d.check(&api, Method::GET, "/api/users/{id}/", &upath, a, None)
        .await;
    d.check(&api, Method::GET, "/api/users/{id}/", &upath, c, None)
        .await;
    d.check(
        &api,
        Method::GET,
        "/api/users/{id}/",
        "/api/users/0/",
        a,
        None,
    )
    .await;
    d.check(&api, Method::GET, "/api/users/{id}/", &upath, None, None)
        .await;
    d.check(
        &api,
        Method::PUT,
        "/api/users/{id}/",
        &upath,
        a,
        Some(json!({"email": null})),
    )
    .await;
    d.check(
        &api,
        Method::PUT,
        "/api/users/{id}/",
        &upath,
        a,
        Some(json!({"display_name": "x".repeat(101)})),
    )
    .await;
    d.check(
        &api,
        Method::PUT,
        "/api/users/{id}/",
        &upath,
        c,
        Some(json!({"display_name": "x"})),
    )
    .await;
    d.check(
        &api,
        Method::PUT,
        "/api/users/{id}/",
        "/api/users/0/",
        a,
        Some(json!({"display_name": "x"})),
    )
    .await;
    d.check(
        &api,
        Method::PUT,
        "/api/users/{id}/",
        &upath,
        None,
        Some(json!({"display_name": "x"})),
    )
    .await;
    let login = d
        .check(
            &api,
            Method::POST,
            "/api/auth/login/",
            "/api/auth/login/",
            None,
            Some(json!({"username": name, "password": common::PASSWORD})),
        )
        .await;
    d.check(
        &api,
        Method::POST,
        "/api/auth/login/",
        "/api/auth/login/",
        None,
        Some(json!({"username": name, "password": "wrong-password"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/auth/login/",
        "/api/auth/login/",
        None,
        Some(json!({"username": name})),
    )
    .await;
    let refreshed = d
        .check(
            &api,
            Method::POST,
            "/api/auth/refresh/",
            "/api/auth/refresh/",
            None,
            Some(json!({"refresh_token": login["refresh_token"]})),
        )
        .await;
    d.check(
        &api,
        Method::POST,
        "/api/auth/refresh/",
        "/api/auth/refresh/",
        None,
        Some(json!({"refresh_token": login["refresh_token"]})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/auth/logout/",
        "/api/auth/logout/",
        None,
        Some(json!({"refresh_token": refreshed["refresh_token"]})),
    )
    .await;
    let everywhere = api.login_as(Role::Public).await;
    for _ in 0..2 {
        // 204, then 401 (the token is revoked by the first).
        d.check(
            &api,
            Method::POST,
            "/api/auth/logout-all/",
            "/api/auth/logout-all/",
            Some(&everywhere.token),
            None,
        )
        .await;
    }
    d.check(&api, Method::DELETE, "/api/users/{id}/", &upath, c, None)
        .await;
    d.check(
        &api,
        Method::DELETE,
        "/api/users/{id}/",
        &format!("/api/users/{}/", admin.id),
        a,
        None,
    )
    .await;
    d.check(&api, Method::DELETE, "/api/users/{id}/", &upath, None, None)
        .await;
    d.check(&api, Method::DELETE, "/api/users/{id}/", &upath, a, None)
        .await;
    d.check(&api, Method::DELETE, "/api/users/{id}/", &upath, a, None)
        .await;

    // incidents
    let inc = d.check(&api, Method::POST, "/api/incidents/", "/api/incidents/", o, Some(common::incident_body(json!({"occurred_at": "2024-01-01T00:00:00Z", "reported_at": "2024-01-01T00:01:00Z"})))).await;
    let id = inc["id"].as_i64().unwrap();
    d.check(
        &api,
        Method::POST,
        "/api/incidents/",
        "/api/incidents/",
        o,
        Some(common::incident_body(json!({"lat": 100}))),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/",
        "/api/incidents/",
        c,
        Some(common::incident_body(json!({}))),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/",
        "/api/incidents/",
        None,
        Some(common::incident_body(json!({}))),
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/",
        "/api/incidents/?limit=3&state=reported,verified&bbox=-180,-90,180,90",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/",
        "/api/incidents/?limit=abc",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/",
        "/api/incidents/?state=x",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/",
        "/api/incidents/",
        c,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/",
        "/api/incidents/",
        None,
        None,
    )
    .await;
    let ipath = format!("/api/incidents/{id}/");
    d.check(&api, Method::GET, "/api/incidents/{id}/", &ipath, o, None)
        .await;
    d.check(&api, Method::GET, "/api/incidents/{id}/", &ipath, c, None)
        .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/{id}/",
        "/api/incidents/0/",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/{id}/",
        &ipath,
        None,
        None,
    )
    .await;
    d.check(
        &api,
        Method::PATCH,
        "/api/incidents/{id}/",
        &ipath,
        o,
        Some(json!({"road": null, "severity": "high"})),
    )
    .await;
    d.check(
        &api,
        Method::PATCH,
        "/api/incidents/{id}/",
        &ipath,
        o,
        Some(json!({"title": ""})),
    )
    .await;
    d.check(
        &api,
        Method::PATCH,
        "/api/incidents/{id}/",
        &ipath,
        c,
        Some(json!({"title": "x"})),
    )
    .await;
    d.check(
        &api,
        Method::PATCH,
        "/api/incidents/{id}/",
        "/api/incidents/0/",
        o,
        Some(json!({"title": "x"})),
    )
    .await;
    d.check(
        &api,
        Method::PATCH,
        "/api/incidents/{id}/",
        &ipath,
        None,
        Some(json!({"title": "x"})),
    )
    .await;
    let tpath = format!("/api/incidents/{id}/transitions/");
    d.check(
        &api,
        Method::POST,
        "/api/incidents/{id}/transitions/",
        &tpath,
        o,
        Some(json!({"to": "verified", "note": "seen on camera 4"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/{id}/transitions/",
        &tpath,
        o,
        Some(json!({"to": "closed"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/{id}/transitions/",
        &tpath,
        o,
        Some(json!({"to": "dispatched"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/{id}/transitions/",
        &tpath,
        c,
        Some(json!({"to": "dispatched"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/{id}/transitions/",
        "/api/incidents/0/transitions/",
        o,
        Some(json!({"to": "verified"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/incidents/{id}/transitions/",
        &tpath,
        None,
        Some(json!({"to": "verified"})),
    )
    .await;
    transition(
        &api,
        &op.token,
        id,
        json!({"to": "dispatched", "assigned_patrol_id": patrol}),
    )
    .await;
    let hpath = format!("/api/incidents/{id}/history/");
    d.check(
        &api,
        Method::GET,
        "/api/incidents/{id}/history/",
        &hpath,
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/{id}/history/",
        &hpath,
        c,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/{id}/history/",
        "/api/incidents/0/history/",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/incidents/{id}/history/",
        &hpath,
        None,
        None,
    )
    .await;
    let closed = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    transition(&api, &op.token, closed, json!({"to": "rejected"})).await;
    d.check(
        &api,
        Method::PATCH,
        "/api/incidents/{id}/",
        &format!("/api/incidents/{closed}/"),
        o,
        Some(json!({"title": "x"})),
    )
    .await;

    // appeals
    let appeal = d
        .check(
            &api,
            Method::POST,
            "/api/appeals/",
            "/api/appeals/",
            c,
            Some(json!({"kind": "weather", "description": "fog", "location_text": "the valley"})),
        )
        .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/",
        "/api/appeals/",
        None,
        Some(json!({"kind": "weather", "description": ""})),
    )
    .await;
    let ap = appeal["id"].as_i64().unwrap();
    d.check(
        &api,
        Method::GET,
        "/api/appeals/",
        "/api/appeals/?status=received",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/appeals/",
        "/api/appeals/?status=nope",
        o,
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/appeals/",
        "/api/appeals/",
        None,
        None,
    )
    .await;
    let patrol_user = api.login_as_patrol(patrol).await;
    d.check(
        &api,
        Method::GET,
        "/api/appeals/",
        "/api/appeals/",
        Some(&patrol_user.token),
        None,
    )
    .await;
    let apath = format!("/api/appeals/{ap}/");
    d.check(&api, Method::GET, "/api/appeals/{id}/", &apath, c, None)
        .await;
    d.check(
        &api,
        Method::GET,
        "/api/appeals/{id}/",
        &apath,
        Some(&patrol_user.token),
        None,
    )
    .await;
    d.check(
        &api,
        Method::GET,
        "/api/appeals/{id}/",
        "/api/appeals/0/",
        o,
        None,
    )
    .await;
    d.check(&api, Method::GET, "/api/appeals/{id}/", &apath, None, None)
        .await;
    let spath = format!("/api/appeals/{ap}/status/");
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/status/",
        &spath,
        o,
        Some(json!({"status": "acknowledged"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/status/",
        &spath,
        o,
        Some(json!({"status": "closed"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/status/",
        &spath,
        o,
        Some(json!({"status": "answered"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/status/",
        &spath,
        c,
        Some(json!({"status": "closed"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/status/",
        "/api/appeals/0/status/",
        o,
        Some(json!({"status": "closed"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/status/",
        &spath,
        None,
        Some(json!({"status": "closed"})),
    )
    .await;
    let lpath = format!("/api/appeals/{ap}/incident/");
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/incident/",
        &lpath,
        o,
        Some(json!({})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/incident/",
        &lpath,
        o,
        Some(json!({"lat": 45.0, "lon": 7.0, "title": "Fog bank"})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/incident/",
        &lpath,
        o,
        Some(json!({"incident_id": id})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/incident/",
        &lpath,
        c,
        Some(json!({})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/incident/",
        "/api/appeals/0/incident/",
        o,
        Some(json!({})),
    )
    .await;
    d.check(
        &api,
        Method::POST,
        "/api/appeals/{id}/incident/",
        &lpath,
        None,
        Some(json!({})),
    )
    .await;
    let _ = file_appeal(&api, None).await;

    // audit and operations
    d.check(
        &api,
        Method::GET,
        "/api/audit/",
        "/api/audit/?entity=incident&limit=5",
        a,
        None,
    )
    .await;
    d.check(&api, Method::GET, "/api/audit/", "/api/audit/", o, None)
        .await;
    d.check(&api, Method::GET, "/api/audit/", "/api/audit/", None, None)
        .await;
    d.check(&api, Method::GET, "/health", "/health", None, None)
        .await;
    d.check(&api, Method::GET, "/ready", "/ready", None, None)
        .await;
    d.check(&api, Method::GET, "/metrics", "/metrics", None, None)
        .await;

    // Every route was exercised, with a success and at least one error where it can fail.
    for (m, p) in ROUTES {
        let statuses: Vec<u16> = d
            .checked
            .iter()
            .filter(|(cm, cp, _)| cm == m && cp == p)
            .map(|c| c.2)
            .collect();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{m} {p}: no success checked ({statuses:?})"
        );
    }
    assert!(d.checked.len() > 80, "{}", d.checked.len());

    // The check can fail: a body that breaks the declared schema is caught.
    let media = &d.doc["paths"]["/api/incidents/{id}/"]["get"]["responses"]["200"]["content"]["application/json"];
    let mut schema = media["schema"].clone();
    schema["components"] = d.doc["components"].clone();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let mut wrong = inc.clone();
    wrong["state"] = json!("teleported");
    wrong["timeline"]["t1_reported_at"] = json!(5);
    assert_eq!(validator.iter_errors(&wrong).count(), 2);
    assert!(validator.is_valid(&inc));
}
