//! Citizen appeals: filing (also anonymously), reading one's own, status changes with
//! answers, and turning an appeal into an incident.
#![allow(clippy::unwrap_used)]

mod common;

use central_api::auth::Role;
use central_api::routes::appeals::AppealStatus;
use common::{TestApp, create_incident, file_appeal, send};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn citizens_file_and_read_back_their_own() {
    let app = TestApp::shared();
    let api = app.api();
    let anon = file_appeal(&api, None).await;
    assert_eq!(anon["status"], "received");
    assert_eq!(anon["filed_by"], serde_json::Value::Null);
    let alice = api.login_as(Role::Public).await;
    let bob = api.login_as(Role::Public).await;
    let mine = file_appeal(&api, Some(&alice.token)).await;
    assert_eq!(mine["filed_by"], alice.id);
    let id = mine["id"].as_i64().unwrap();

    let (status, body) = send(api.get(&format!("/api/appeals/{id}/"), Some(&alice.token))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send(api.get(&format!("/api/appeals/{id}/"), Some(&bob.token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = send(api.get("/api/appeals/", Some(&alice.token))).await;
    assert_eq!(status, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only her own: {list}");
    let (_, list) = send(api.get("/api/appeals/", Some(&bob.token))).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    // Nobody but staff changes an appeal.
    let (status, _) = send(
        api.post(&format!("/api/appeals/{id}/status/"), Some(&alice.token))
            .json(&json!({"status": "closed"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = send(api.post("/api/appeals/", None).json(&json!({
        "kind": "debris", "description": "somewhere", "lat": 52.0
    })))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "lon");
}

#[tokio::test]
async fn every_status_change() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let path_to = |s: AppealStatus| -> Vec<AppealStatus> {
        use AppealStatus::*;
        match s {
            Received => vec![],
            Acknowledged => vec![Acknowledged],
            InProgress => vec![Acknowledged, InProgress],
            Answered => vec![Acknowledged, Answered],
            Closed => vec![Acknowledged, Answered, Closed],
            Rejected => vec![Rejected],
        }
    };
    for &from in AppealStatus::ALL {
        for &to in AppealStatus::ALL {
            let id = file_appeal(&api, None).await["id"].as_i64().unwrap();
            let status_path = format!("/api/appeals/{id}/status/");
            for step in path_to(from) {
                let (status, body) = send(
                    api.post(&status_path, Some(&op.token))
                        .json(&json!({"status": step, "response": "Thank you, we are on it."})),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{step}: {body}");
            }
            let (status, body) = send(
                api.post(&status_path, Some(&op.token))
                    .json(&json!({"status": to, "response": "Answer."})),
            )
            .await;
            if from.can_become(to) {
                assert_eq!(status, StatusCode::OK, "{from} -> {to}: {body}");
                assert_eq!(body["status"], to.as_str());
                assert!(body["acknowledged_at"].is_string());
                assert_eq!(body["response"], "Answer.");
                assert_eq!(body["handled_by"], op.id);
            } else {
                assert_eq!(status, StatusCode::CONFLICT, "{from} -> {to}: {body}");
            }
        }
    }
    // Answering needs an answer.
    let id = file_appeal(&api, None).await["id"].as_i64().unwrap();
    let (status, body) = send(
        api.post(&format!("/api/appeals/{id}/status/"), Some(&op.token))
            .json(&json!({"status": "rejected"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "response");
}

#[tokio::test]
async fn an_appeal_becomes_or_joins_an_incident() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let citizen = api.login_as(Role::Public).await;
    let appeal = file_appeal(&api, Some(&citizen.token)).await;
    let id = appeal["id"].as_i64().unwrap();
    let (status, body) = send(
        api.post(&format!("/api/appeals/{id}/incident/"), Some(&op.token))
            .json(&json!({"severity": "high"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "in_progress");
    let incident_id = body["incident_id"].as_i64().expect("linked");
    let (_, incident) =
        send(api.get(&format!("/api/incidents/{incident_id}/"), Some(&op.token))).await;
    assert_eq!(incident["source"], "appeal");
    assert_eq!(incident["kind"], "debris");
    assert_eq!(incident["severity"], "high");
    assert_eq!(incident["lat"], 52.5);
    assert_eq!(incident["description"], appeal["description"]);
    assert_eq!(incident["reported_by"], citizen.id);
    // Linking twice is a conflict.
    let (status, _) = send(
        api.post(&format!("/api/appeals/{id}/incident/"), Some(&op.token))
            .json(&json!({"incident_id": incident_id})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Another appeal joins an existing incident.
    let existing = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let second = file_appeal(&api, None).await["id"].as_i64().unwrap();
    let (status, body) = send(
        api.post(&format!("/api/appeals/{second}/incident/"), Some(&op.token))
            .json(&json!({"incident_id": i64::MAX})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "incident_id");
    let (status, body) = send(
        api.post(&format!("/api/appeals/{second}/incident/"), Some(&op.token))
            .json(&json!({"incident_id": existing})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["incident_id"], existing);

    // An appeal without coordinates needs them for a new incident.
    let (_, bare) = send(api.post("/api/appeals/", None).json(&json!({
        "kind": "hazard", "description": "ice", "location_text": "the bridge"
    })))
    .await;
    let bare = bare["id"].as_i64().unwrap();
    let (status, body) = send(
        api.post(&format!("/api/appeals/{bare}/incident/"), Some(&op.token))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "lat");
    let audit = app.psql(&format!(
        "SELECT string_agg(action, ',' ORDER BY id) FROM audit_log WHERE entity = 'appeal' AND entity_id = '{id}'"
    ));
    assert_eq!(audit, "appeal.create,appeal.link");
}
