//! Incidents: the whole lifecycle (every legal and illegal transition), the timeline,
//! history, filters, paging and patrol visibility, against a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use central_api::routes::incidents::IncidentState;
use common::{Api, Session, TestApp, create_incident, send, transition, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The path of legal transitions from `reported` to each state.
fn path_to(target: IncidentState) -> Vec<IncidentState> {
    use IncidentState::*;
    match target {
        Reported => vec![],
        Verified => vec![Verified],
        Dispatched => vec![Verified, Dispatched],
        OnScene => vec![Verified, Dispatched, OnScene],
        LanesCleared => vec![Verified, Dispatched, OnScene, LanesCleared],
        SceneCleared => vec![Verified, Dispatched, OnScene, LanesCleared, SceneCleared],
        Closed => vec![
            Verified,
            Dispatched,
            OnScene,
            LanesCleared,
            SceneCleared,
            Closed,
        ],
        Rejected => vec![Rejected],
        Duplicate => vec![Duplicate],
        Merged => vec![Merged],
    }
}

/// The extra fields a transition to `to` needs.
fn transition_body(to: IncidentState, patrol: i64, other: i64) -> Value {
    let mut b = json!({ "to": to, "note": format!("to {to}") });
    match to {
        IncidentState::Dispatched => b["assigned_patrol_id"] = json!(patrol),
        IncidentState::Duplicate | IncidentState::Merged => b["related_incident_id"] = json!(other),
        _ => {}
    }
    b
}

async fn incident_in(
    api: &Api,
    op: &Session,
    state: IncidentState,
    patrol: i64,
    other: i64,
) -> i64 {
    let id = create_incident(api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    for step in path_to(state) {
        let (status, body) =
            transition(api, &op.token, id, transition_body(step, patrol, other)).await;
        assert_eq!(status, StatusCode::OK, "{step}: {body}");
        assert_eq!(body["state"], step.as_str());
    }
    id
}

#[tokio::test]
async fn every_legal_and_illegal_transition() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(central_api::auth::Role::Operator).await;
    let patrol = app.create_patrol(&unique("P"));
    // An open incident to point duplicates and merges at.
    let other = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let mut legal = 0;
    let mut illegal = 0;
    for &from in IncidentState::ALL {
        for &to in IncidentState::ALL {
            let id = incident_in(&api, &op, from, patrol, other).await;
            let (status, body) =
                transition(&api, &op.token, id, transition_body(to, patrol, other)).await;
            if from.can_become(to) {
                legal += 1;
                assert_eq!(status, StatusCode::OK, "{from} -> {to}: {body}");
                assert_eq!(body["state"], to.as_str());
            } else {
                illegal += 1;
                assert_eq!(status, StatusCode::CONFLICT, "{from} -> {to}: {body}");
                assert_eq!(body["fields"][0]["field"], "to", "{body}");
                // Nothing changed.
                let (_, now) =
                    send(api.get(&format!("/api/incidents/{id}/"), Some(&op.token))).await;
                assert_eq!(now["state"], from.as_str());
            }
        }
    }
    assert_eq!(legal, IncidentState::TRANSITIONS.len());
    assert_eq!(legal + illegal, 100);
}

#[tokio::test]
async fn the_timeline_and_history_follow_the_lifecycle() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(central_api::auth::Role::Operator).await;
    let patrol = app.create_patrol(&unique("P"));
    let created = create_incident(
        &api,
        &op.token,
        json!({"occurred_at": "2020-01-01T10:00:00Z", "reported_at": "2020-01-01T10:05:00Z"}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["state"], "reported");
    assert_eq!(
        created["timeline"]["t0_occurred_at"],
        "2020-01-01T10:00:00Z"
    );
    assert_eq!(
        created["timeline"]["t1_reported_at"],
        "2020-01-01T10:05:00Z"
    );
    assert_eq!(created["source"], "operator");
    assert_eq!(created["reported_by"], op.id);

    // Dispatch needs a patrol.
    let (status, body) = transition(
        &api,
        &op.token,
        id,
        json!({"to": "verified", "at": "2020-01-01T10:06:00Z"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = transition(&api, &op.token, id, json!({"to": "dispatched"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "assigned_patrol_id");
    // A time before the previous point is refused.
    let (status, body) = transition(
        &api,
        &op.token,
        id,
        json!({"to": "dispatched", "assigned_patrol_id": patrol, "at": "2020-01-01T10:00:00Z"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "at");

    let steps = [
        ("dispatched", "t3_dispatched_at", "2020-01-01T10:07:00Z"),
        ("on_scene", "t4_on_scene_at", "2020-01-01T10:20:00Z"),
        (
            "lanes_cleared",
            "t5_lanes_cleared_at",
            "2020-01-01T10:40:00Z",
        ),
        (
            "scene_cleared",
            "t6_scene_cleared_at",
            "2020-01-01T10:50:00Z",
        ),
        ("closed", "t7_closed_at", "2020-01-01T11:10:00Z"),
    ];
    let mut last = Value::Null;
    for (to, column, at) in steps {
        let mut b = json!({"to": to, "at": at});
        if to == "dispatched" {
            b["assigned_patrol_id"] = json!(patrol);
        }
        let (status, body) = transition(&api, &op.token, id, b).await;
        assert_eq!(status, StatusCode::OK, "{to}: {body}");
        assert_eq!(body["timeline"][column], at, "{body}");
        last = body;
    }
    assert_eq!(last["timeline"]["t2_verified_at"], "2020-01-01T10:06:00Z");
    assert_eq!(
        last["lanes_blocked"],
        json!([]),
        "lanes_cleared empties the blocked lanes"
    );
    assert_eq!(last["assigned_patrol_id"], patrol);

    // A closed incident can no longer be edited.
    let (status, body) = send(
        api.patch(&format!("/api/incidents/{id}/"), Some(&op.token))
            .json(&json!({"title": "late edit"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, history) =
        send(api.get(&format!("/api/incidents/{id}/history/"), Some(&op.token))).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        kinds,
        [
            "reported",
            "verified",
            "dispatched",
            "on_scene",
            "lanes_cleared",
            "scene_cleared",
            "closed"
        ]
    );
    assert_eq!(history[1]["from_state"], "reported");
    assert_eq!(history[1]["actor_id"], op.id);
    assert_eq!(history[2]["changes"]["assigned_patrol_id"]["to"], patrol);

    // Every change left an audit row.
    let n = app.psql(&format!(
        "SELECT count(*) FROM audit_log WHERE entity = 'incident' AND entity_id = '{id}'"
    ));
    assert_eq!(n, "7");
}

#[tokio::test]
async fn updates_are_recorded_with_before_and_after() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(central_api::auth::Role::Operator).await;
    let id = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let (status, body) = send(
        api.patch(&format!("/api/incidents/{id}/"), Some(&op.token))
            .json(&json!({"severity": "highest", "area": null, "lanes_blocked": [1, 2]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["severity"], "highest");
    assert_eq!(body["area"], Value::Null);
    assert_eq!(body["title"], "Two cars, right lane", "absent fields stay");
    let (_, history) =
        send(api.get(&format!("/api/incidents/{id}/history/"), Some(&op.token))).await;
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "updated");
    assert_eq!(
        last["changes"]["severity"],
        json!({"from": "medium", "to": "highest"})
    );
    assert_eq!(
        last["changes"]["area"],
        json!({"from": "north", "to": null})
    );
    assert!(last["changes"].get("title").is_none(), "{last}");
    let audit = app.psql(&format!(
        "SELECT before->>'severity', after->>'severity', actor_id FROM audit_log \
         WHERE action = 'incident.update' AND entity_id = '{id}'"
    ));
    assert_eq!(audit, format!("medium|highest|{}", op.id));

    // Lanes beyond lanes_total are refused, naming the element.
    let (status, body) = send(
        api.patch(&format!("/api/incidents/{id}/"), Some(&op.token))
            .json(&json!({"lanes_blocked": [1, 4]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "lanes_blocked[1]");
}

#[tokio::test]
async fn duplicates_and_merges_point_at_another_incident() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(central_api::auth::Role::Operator).await;
    let a = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let b = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let (status, body) = transition(&api, &op.token, a, json!({"to": "merged"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = transition(
        &api,
        &op.token,
        a,
        json!({"to": "merged", "related_incident_id": a}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = transition(
        &api,
        &op.token,
        a,
        json!({"to": "merged", "related_incident_id": i64::MAX}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["fields"][0]["field"], "related_incident_id");
    let (status, body) = transition(
        &api,
        &op.token,
        a,
        json!({"to": "merged", "related_incident_id": b}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["related_incident_id"], b);
    assert!(body["ended_at"].is_string());
    let (_, history) =
        send(api.get(&format!("/api/incidents/{b}/history/"), Some(&op.token))).await;
    assert!(
        history
            .to_string()
            .contains(&format!("incident {a} was merged")),
        "{history}"
    );
    // Nothing merges into a finished incident.
    let c = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let (status, body) = transition(
        &api,
        &op.token,
        c,
        json!({"to": "merged", "related_incident_id": a}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

async fn list_ids(api: &Api, token: &str, area: &str, query: String) -> (Vec<i64>, Value) {
    let (status, body) =
        send(api.get(&format!("/api/incidents/?area={area}&{query}"), Some(token))).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let ids = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    (ids, body["next_offset"].clone())
}

#[tokio::test]
async fn filters_sorting_and_paging() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(central_api::auth::Role::Operator).await;
    let area = unique("area");
    let mut ids = Vec::new();
    for (i, (severity, lat, lon)) in [
        ("low", 10.0, 10.0),
        ("high", 10.5, 10.5),
        ("highest", 11.0, 11.0),
        ("medium", -20.0, 30.0),
    ]
    .into_iter()
    .enumerate()
    {
        let body = create_incident(
            &api,
            &op.token,
            json!({
                "area": area, "severity": severity, "lat": lat, "lon": lon,
                "reported_at": format!("2021-06-0{}T12:00:00Z", i + 1),
            }),
        )
        .await;
        ids.push(body["id"].as_i64().unwrap());
    }
    transition(&api, &op.token, ids[0], json!({"to": "verified"})).await;

    let list = |query: String| list_ids(&api, &op.token, &area, query);
    let (all, next) = list(String::new()).await;
    assert_eq!(
        all,
        [ids[3], ids[2], ids[1], ids[0]],
        "newest reported first"
    );
    assert_eq!(next, Value::Null);
    assert_eq!(list("state=verified".into()).await.0, [ids[0]]);
    assert_eq!(list("state=reported,verified&sort=id".into()).await.0, ids);
    assert_eq!(
        list("severity=high,highest&sort=severity".into()).await.0,
        [ids[1], ids[2]]
    );
    assert_eq!(
        list("sort=-severity".into()).await.0,
        [ids[2], ids[1], ids[3], ids[0]]
    );
    assert_eq!(
        list("from=2021-06-02T00:00:00Z&to=2021-06-04T00:00:00Z&sort=reported_at".into())
            .await
            .0,
        [ids[1], ids[2]]
    );
    assert_eq!(
        list("bbox=9.9,9.9,10.6,10.6&sort=id".into()).await.0,
        [ids[0], ids[1]]
    );
    let (page1, next) = list("limit=3&sort=id".into()).await;
    assert_eq!(page1, ids[..3]);
    assert_eq!(next, 3);
    let (page2, next) = list("limit=3&offset=3&sort=id".into()).await;
    assert_eq!(page2, ids[3..]);
    assert_eq!(next, Value::Null);
    assert_eq!(list("open=false".into()).await.0, Vec::<i64>::new());

    for bad in [
        "state=bogus",
        "sort=title",
        "bbox=1,2,3",
        "limit=0",
        "limit=201",
        "offset=-1",
        "severity=huge",
    ] {
        let (status, body) =
            send(api.get(&format!("/api/incidents/?{bad}"), Some(&op.token))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["fields"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with("query."),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn patrols_see_and_advance_only_their_own_incidents() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(central_api::auth::Role::Operator).await;
    let p1 = app.create_patrol(&unique("P1"));
    let p2 = app.create_patrol(&unique("P2"));
    let crew1 = api.login_as_patrol(p1).await;
    let crew2 = api.login_as_patrol(p2).await;
    let mine = incident_in(&api, &op, IncidentState::Dispatched, p1, 0).await;

    let (status, list) = send(api.get("/api/incidents/", Some(&crew1.token))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["assigned_patrol_id"] == p1),
        "{list}"
    );
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == mine)
    );
    let (_, list) = send(api.get("/api/incidents/", Some(&crew2.token))).await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != mine),
        "{list}"
    );

    // The other crew can neither read nor advance it.
    for (status, _) in [
        send(api.get(&format!("/api/incidents/{mine}/"), Some(&crew2.token))).await,
        send(api.get(
            &format!("/api/incidents/{mine}/history/"),
            Some(&crew2.token),
        ))
        .await,
        transition(&api, &crew2.token, mine, json!({"to": "on_scene"})).await,
        send(
            api.patch(&format!("/api/incidents/{mine}/"), Some(&crew2.token))
                .json(&json!({"severity": "low"})),
        )
        .await,
    ] {
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Its own crew reports arrival and lane changes, but may not reassign or re-title.
    let (status, body) = transition(&api, &crew1.token, mine, json!({"to": "on_scene"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send(
        api.patch(&format!("/api/incidents/{mine}/"), Some(&crew1.token))
            .json(&json!({"lanes_blocked": [1]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        api.patch(&format!("/api/incidents/{mine}/"), Some(&crew1.token))
            .json(&json!({"title": "mine now"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = transition(&api, &crew1.token, mine, json!({"to": "closed"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A crew's own report is assigned to itself.
    let found = create_incident(&api, &crew1.token, json!({})).await;
    assert_eq!(found["assigned_patrol_id"], p1);
    assert_eq!(found["source"], "patrol");
    let (status, _) = send(
        api.post("/api/incidents/", Some(&crew1.token))
            .json(&common::incident_body(json!({"assigned_patrol_id": p2}))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
