//! What the service does after a change (real PostgreSQL): notifications made by incident
//! and appeal changes (the crew of a patrol hears of its assignment and of state changes,
//! the reporter of state changes, a citizen of the answer to their appeal, nobody of their
//! own change), and the traffic roll-ups kept up to date by the service itself.

mod common;

use central_api::auth::Role;
use common::{TestApp, create_incident, file_appeal, send, transition};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The kinds and payloads of `token`'s notifications, oldest first.
async fn notifications(api: &common::Api, token: &str) -> Vec<(String, Value)> {
    let (status, page) = send(api.get("/api/notifications/?limit=100", Some(token))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut items: Vec<(i64, String, Value)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| {
            (
                n["id"].as_i64().expect("id"),
                n["kind"].as_str().expect("kind").to_owned(),
                n["payload"].clone(),
            )
        })
        .collect();
    items.sort_by_key(|(id, _, _)| *id);
    items.into_iter().map(|(_, k, p)| (k, p)).collect()
}

#[tokio::test]
async fn incident_changes_reach_the_patrol_and_the_reporter() {
    let app = TestApp::shared();
    let api = app.api();
    let patrol_id = app.create_patrol(&common::unique("P"));
    let crew = api.login_as_patrol(patrol_id).await;
    let op = api.login_as(Role::Operator).await;
    let other = api.login_as(Role::Operator).await;

    let incident = create_incident(&api, &op.token, json!({})).await;
    let id = incident["id"].as_i64().expect("id");
    let (status, body) = transition(&api, &other.token, id, json!({"to": "verified"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = transition(
        &api,
        &other.token,
        id,
        json!({"to": "dispatched", "assigned_patrol_id": patrol_id}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The crew reports on scene itself: told to others, not to the crew.
    let (status, body) = transition(&api, &crew.token, id, json!({"to": "on_scene"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let crew_got = notifications(&api, &crew.token).await;
    assert_eq!(
        crew_got,
        vec![(
            "incident_assigned".to_owned(),
            json!({"incident_id": id, "title": incident["title"]})
        )],
        "the crew hears of its assignment, not of its own report"
    );
    let states = |got: &[(String, Value)]| -> Vec<(String, String)> {
        got.iter()
            .filter(|(k, p)| k == "incident_state" && p["incident_id"] == id)
            .map(|(_, p)| {
                (
                    p["from"].as_str().unwrap_or_default().to_owned(),
                    p["to"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        states(&notifications(&api, &op.token).await),
        vec![
            pair("reported", "verified"),
            pair("verified", "dispatched"),
            pair("dispatched", "on_scene")
        ],
        "the reporter follows every state change"
    );
    assert!(
        states(&notifications(&api, &other.token).await).is_empty(),
        "the operator who made the changes is not told of them"
    );
}

#[tokio::test]
async fn an_answered_appeal_notifies_the_citizen_who_filed_it() {
    let app = TestApp::shared();
    let api = app.api();
    let citizen = api.login_as(Role::Public).await;
    let op = api.login_as(Role::Operator).await;
    let appeal = file_appeal(&api, Some(&citizen.token)).await;
    let id = appeal["id"].as_i64().expect("id");
    let status_url = format!("/api/appeals/{id}/status/");
    let (status, body) = send(
        api.post(&status_url, Some(&op.token))
            .json(&json!({"status": "acknowledged"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(notifications(&api, &citizen.token).await.is_empty());
    let (status, body) = send(api.post(&status_url, Some(&op.token)).json(&json!({
        "status": "answered",
        "response": "Removed at 14:10, thank you."
    })))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        notifications(&api, &citizen.token).await,
        vec![(
            "appeal_answered".to_owned(),
            json!({"appeal_id": id, "status": "answered"})
        )]
    );
}

/// The service keeps the roll-ups: samples of a batch committed before it starts are in
/// `traffic_15m` (and so in a two-day traffic query) without any `central-sync rollup` run.
#[tokio::test]
async fn the_service_rolls_up_committed_batches() {
    let site = common::unique("site");
    let seeded = site.clone();
    let app = TestApp::spawn(move |config| {
        let mut sql = String::new();
        for (i, volume) in [7, 9, 11].iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO traffic_sample (edge_id, site_id, detector_id, lane, bucket_start, \
                   interval_s, volume, speed_source, samples_expected, samples_received, \
                   pct_observed, quality, epoch, batch_seq) \
                 VALUES ('edge-r', '{seeded}', 'd1', 1, \
                   '2026-03-02T10:00:00Z'::timestamptz + interval '{}s', 30, {volume}, 'none', \
                   30, 30, 100, 0, 1, 3);",
                i * 30
            ));
        }
        sql.push_str(
            "INSERT INTO ingest_batch (edge_id, epoch, batch_seq, row_count, digest, \
               first_bucket, last_bucket) \
             VALUES ('edge-r', 1, 3, 3, '\\x00', '2026-03-02T10:00:00Z', '2026-03-02T10:01:00Z');",
        );
        test_support::PgServer::shared().psql(&config.database.dbname, &sql);
    });
    let api = app.api();
    let analyst = api.login_as(Role::Analyst).await;
    let url =
        format!("/api/traffic/?site={site}&from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z");
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, page) = send(api.get(&url, Some(&analyst.token))).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["resolution"], "15m");
        if page["points"][0]["volume"] == 27 {
            assert_eq!(
                app.psql("SELECT bool_and(rolled_up) FROM ingest_batch"),
                "t"
            );
            app.stop();
            return;
        }
        last = page;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the roll-up never showed the batch: {last}");
}
