//! Traffic, registry, news, schedules and analytics against a real PostgreSQL: values,
//! the authorization matrix of these routes, and bad input (4xx naming the field, never
//! 500).

mod common;

use central_api::auth::Role;
use common::{Api, Session, TestApp, send, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A raw sample row (SQL) of `site` at `at` (an SQL timestamptz expression).
#[allow(clippy::too_many_arguments)] // one per column that matters
fn sample(
    site: &str,
    det: &str,
    lane: i32,
    at: &str,
    volume: i32,
    occ: f64,
    speed: f64,
    los: char,
) -> String {
    format!(
        "INSERT INTO traffic_sample (edge_id, site_id, detector_id, lane, bucket_start, interval_s, \
           volume, flow_vph, occupancy, speed_avg_kmh, speed_count, speed_source, los, \
           samples_expected, samples_received, pct_observed, quality, epoch, batch_seq) \
         VALUES ('edge-1', '{site}', '{det}', {lane}, {at}, 30, {volume}, {volume} * 120, {occ}, \
           {speed}, {volume}, 'measured', '{los}', 1, 1, 100, 0, 1, 1);"
    )
}

/// A 15-minute roll-up row of `edge`.
#[allow(clippy::too_many_arguments)]
fn rollup(
    table: &str,
    edge: &str,
    site: &str,
    bucket: &str,
    volume: i64,
    occ_sum: f64,
    speed_sum: f64,
    los_f: i64,
) -> String {
    format!(
        "INSERT INTO {table} (edge_id, site_id, detector_id, lane, bucket, samples, observed_s, \
           volume_sum, volume_n, occupancy_sum, occupancy_n, speed_sum, speed_n, \
           class_motorcycle, class_short, class_medium, class_long, samples_expected, samples_received, \
           los_a, los_b, los_c, los_d, los_e, los_f, quality_any) \
         VALUES ('{edge}', '{site}', 'd1', 1, '{bucket}', 30, 900, {volume}, 30, {occ_sum}, 30, \
           {speed_sum}, {volume}, 0, {volume}, 0, 0, 30, 30, {a}, 0, 0, 0, 0, {los_f}, 1);",
        a = 30 - los_f
    )
}

#[tokio::test]
async fn traffic_by_resolution_with_exact_rollups_and_pages() {
    let app = TestApp::shared();
    let api = app.api();
    let analyst = api.login_as(Role::Analyst).await;
    let site = unique("site");
    let mut sql = String::new();
    for i in 0..4 {
        let at = format!(
            "'2026-01-05T08:00:00Z'::timestamptz + interval '{}' second",
            i * 30
        );
        sql += &sample(&site, "d1", 1, &at, 10 + i, 0.1, 80.0, 'B');
        sql += &sample(&site, "d1", 2, &at, 5, 0.05, 90.0, 'A');
    }
    // Two edges report the same bucket: sums add up.
    sql += &rollup(
        "traffic_15m",
        "edge-1",
        &site,
        "2026-01-05T08:00:00Z",
        40,
        3.0,
        3200.0,
        0,
    );
    sql += &rollup(
        "traffic_15m",
        "edge-2",
        &site,
        "2026-01-05T08:00:00Z",
        20,
        6.0,
        2000.0,
        30,
    );
    sql += &rollup(
        "traffic_1h",
        "edge-1",
        &site,
        "2026-01-05T08:00:00Z",
        100,
        9.0,
        9000.0,
        0,
    );
    app.psql(&sql);

    let q = |extra: &str| format!("/api/traffic/?site={site}&from=2026-01-05T08:00:00Z{extra}");
    let (status, page) = send(api.get(&q("&to=2026-01-05T09:00:00Z"), Some(&analyst.token))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["resolution"], "raw");
    let points = page["points"].as_array().expect("points");
    assert_eq!(points.len(), 8);
    assert_eq!(points[0]["volume"], 10);
    assert_eq!(points[0]["lane"], 1);
    assert_eq!(points[1]["lane"], 2);
    assert_eq!(points[6]["volume"], 13);
    assert_eq!(points[0]["los"], "B");
    assert!(page["next_from"].is_null());

    // Pages end on a whole bucket: 3 asked, 2 given (one bucket), the next starts after.
    let (_, page) =
        send(api.get(&q("&to=2026-01-05T09:00:00Z&limit=3"), Some(&analyst.token))).await;
    assert_eq!(page["points"].as_array().expect("points").len(), 2);
    assert_eq!(page["next_from"], "2026-01-05T08:00:30Z");
    let (_, page) = send(api.get(
        &q("&to=2026-01-05T09:00:00Z&detector=d1&lane=2"),
        Some(&analyst.token),
    ))
    .await;
    assert_eq!(page["points"].as_array().expect("points").len(), 4);

    // Two days: the 15-minute roll-up, summed over edges, values from sums and counts.
    let (status, page) = send(api.get(&q("&to=2026-01-07T08:00:00Z"), Some(&analyst.token))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["resolution"], "15m");
    let p = &page["points"][0];
    assert_eq!(p["volume"], 60);
    assert_eq!(p["flow_vph"], 60.0 * 3600.0 / 1800.0);
    assert_eq!(p["occupancy"], 9.0 / 60.0);
    assert_eq!(p["speed_kmh"], 5200.0 / 60.0);
    assert_eq!(p["los_counts"], json!([30, 0, 0, 0, 0, 30]));
    assert_eq!(p["samples_expected"], 60);
    // A month: hourly; and the override.
    let (_, page) = send(api.get(&q("&to=2026-02-05T08:00:00Z"), Some(&analyst.token))).await;
    assert_eq!(page["resolution"], "1h");
    assert_eq!(page["points"][0]["volume"], 100);
    let (_, page) = send(api.get(
        &q("&to=2026-01-05T09:00:00Z&resolution=1h"),
        Some(&analyst.token),
    ))
    .await;
    assert_eq!(page["resolution"], "1h");
    assert_eq!(page["points"][0]["speed_kmh"], 90.0);
}

#[tokio::test]
async fn live_state_of_a_site() {
    let app = TestApp::shared();
    let api = app.api();
    let patrol = api.login_as(Role::Patrol).await;
    let site = unique("site");
    let recent = "date_trunc('minute', now()) - interval '1 minute'";
    let older = "date_trunc('minute', now()) - interval '2 minute'";
    let stale = "now() - interval '1 hour'";
    app.psql(&format!(
        "{}{}{}{}",
        sample(&site, "d1", 1, older, 10, 0.1, 80.0, 'A'),
        sample(&site, "d1", 1, recent, 25, 0.5, 15.0, 'F'),
        sample(&site, "d1", 2, recent, 8, 0.1, 85.0, 'B'),
        sample(&site, "d1", 3, stale, 8, 0.1, 85.0, 'A'),
    ));
    let (status, live) = send(api.get(
        &format!("/api/traffic/live/?site={site}"),
        Some(&patrol.token),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{live}");
    let lanes = live["lanes"].as_array().expect("lanes");
    assert_eq!(lanes.len(), 2, "the stale lane is not live: {live}");
    assert_eq!(lanes[0]["volume"], 25, "the latest sample of lane 1");
    assert_eq!(lanes[0]["congested"], true);
    assert_eq!(lanes[1]["congested"], false);
    assert_eq!(live["los"], "F");
    assert_eq!(live["congested"], true);
    let (_, quiet) = send(api.get(
        &format!("/api/traffic/live/?site={}", unique("none")),
        Some(&patrol.token),
    ))
    .await;
    assert_eq!(quiet["congested"], false);
    assert_eq!(quiet["lanes"], json!([]));
}

#[tokio::test]
async fn registry_crud_status_and_edge_health() {
    let app = TestApp::shared();
    let api = app.api();
    let admin = api.admin().await;
    let operator = api.login_as(Role::Operator).await;
    let name = unique("cam");
    let (status, cam) = send(api.post("/api/cameras/", Some(&admin.token)).json(&json!({
        "name": name, "site_id": "s1", "stream_url": "rtsp://10.0.0.5/stream1", "lat": 52.5, "lon": 13.4
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cam}");
    let id = cam["id"].as_i64().expect("id");
    let (status, body) = send(
        api.post("/api/cameras/", Some(&admin.token))
            .json(&json!({"name": name})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["fields"][0]["field"], "name");
    let (status, body) = send(api.post("/api/cameras/", Some(&admin.token)).json(&json!({
        "name": unique("cam"), "stream_url": "rtsp://user:pw@10.0.0.5/s"
    })))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "stream_url");
    let (status, got) = send(api.get(&format!("/api/cameras/{id}/"), Some(&operator.token))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, cam);
    let (status, put) = send(
        api.put(&format!("/api/cameras/{id}/"), Some(&admin.token))
            .json(&json!({
                "name": name, "enabled": false
            })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["enabled"], false);
    assert_eq!(put["site_id"], Value::Null, "PUT replaces the record");
    let audit = app.psql(&format!(
        "SELECT count(*) FROM audit_log WHERE entity = 'camera' AND entity_id = '{id}'"
    ));
    assert_eq!(audit.trim(), "2");

    let det = unique("det");
    let (status, d) = send(
        api.post("/api/detectors/", Some(&admin.token))
            .json(&json!({
                "detector_id": det, "site_id": "s1", "kind": "radar", "lanes": 3
            })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    let (status, body) = send(
        api.post("/api/detectors/", Some(&admin.token))
            .json(&json!({
                "detector_id": det, "site_id": "s1", "kind": "radar", "lanes": 3
            })),
    )
    .await;
    assert_eq!(
        (status, body["fields"][0]["field"].clone()),
        (StatusCode::CONFLICT, json!("detector_id"))
    );

    // Patrols: the crew sets its own status; another crew cannot.
    let (status, p) = send(
        api.post("/api/patrols/", Some(&admin.token))
            .json(&json!({"call_sign": unique("P")})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["availability"], "off_duty");
    let pid = p["id"].as_i64().expect("id");
    let crew = api.login_as_patrol(pid).await;
    let other = api.login_as_patrol(app.create_patrol(&unique("Q"))).await;
    let path = format!("/api/patrols/{pid}/status/");
    let (status, s) = send(api.put(&path, Some(&crew.token)).json(&json!({
        "availability": "available", "lat": 48.1, "lon": 11.5
    })))
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["availability"], "available");
    assert_eq!(s["lat"], 48.1);
    assert!(s["position_at"].is_string());
    let (status, _) = send(
        api.put(&path, Some(&other.token))
            .json(&json!({"availability": "busy"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, s) = send(
        api.put(&path, Some(&operator.token))
            .json(&json!({"availability": "busy"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s["lat"], 48.1,
        "a status without a position keeps the last one"
    );
    let (status, body) = send(
        api.put(&path, Some(&crew.token))
            .json(&json!({"availability": "asleep", "lat": 91.0, "lon": 0.0})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["availability", "lat"]);

    // Edges: registered ones were never seen; a heartbeat makes them online.
    let edge = unique("edge");
    let (status, e) = send(
        api.post("/api/edges/", Some(&admin.token))
            .json(&json!({"edge_id": edge, "site_id": "s1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(e["health"], "never_seen");
    assert_eq!(e["last_seen"], Value::Null);
    app.psql(&format!("UPDATE edge_node SET last_seen = now() - interval '10 seconds', spool_bytes = 4096 WHERE edge_id = '{edge}'"));
    let (_, e) = send(api.get(&format!("/api/edges/{edge}/"), Some(&operator.token))).await;
    assert_eq!(e["health"], "online");
    assert_eq!(e["spool_bytes"], 4096);
    app.psql(&format!(
        "UPDATE edge_node SET last_seen = now() - interval '1 hour' WHERE edge_id = '{edge}'"
    ));
    let (_, list) = send(api.get("/api/edges/", Some(&operator.token))).await;
    let mine = list
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["edge_id"] == edge.as_str())
        .cloned();
    assert_eq!(mine.expect("listed")["health"], "offline");
}

#[tokio::test]
async fn news_drafts_are_for_staff_published_for_everyone() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let public = api.login_as(Role::Public).await;
    let title = unique("closure");
    let (status, a) = send(
        api.post("/api/news/", Some(&op.token))
            .json(&json!({"title": title, "body": "A7 closed"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["status"], "draft");
    assert_eq!(a["author_id"], op.id);
    let id = a["id"].as_i64().expect("id");
    let path = format!("/api/news/{id}/");
    let (status, _) = send(api.get(&path, None)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a draft is invisible to the public"
    );
    let (_, list) = send(api.get("/api/news/", Some(&public.token))).await;
    assert!(!list.as_array().expect("list").iter().any(|x| x["id"] == id));
    let (status, _) = send(api.get("/api/news/?status=draft", Some(&public.token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, p) = send(
        api.put(&path, Some(&op.token))
            .json(&json!({"title": title, "body": "A7 closed", "status": "published"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let published_at = p["published_at"].clone();
    assert!(published_at.is_string());
    let (status, got) = send(api.get(&path, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["title"], title.as_str());
    let (_, list) = send(api.get("/api/news/?limit=100", None)).await;
    assert!(list.as_array().expect("list").iter().any(|x| x["id"] == id));
    // Editing again keeps the first publication time.
    let (_, p) = send(
        api.put(&path, Some(&op.token))
            .json(&json!({"title": title, "body": "A7 open", "status": "published"})),
    )
    .await;
    assert_eq!(p["published_at"], published_at);
    let (status, _) = send(
        api.put(&path, Some(&public.token))
            .json(&json!({"title": "x", "body": "y"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other_op = api.login_as(Role::Operator).await;
    let (status, _) = send(api.delete(&path, Some(&other_op.token))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only the author or an admin deletes"
    );
    let (status, _) = send(api.delete(&path, Some(&op.token))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn shifts_and_road_works_refuse_overlaps_and_export_icalendar() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let pid = app.create_patrol(&unique("P"));
    let shift = |from: &str, to: &str| json!({"patrol_id": pid, "starts_at": from, "ends_at": to, "note": "early; A7, km 3"});
    let (status, s1) = send(
        api.post("/api/schedules/shifts/", Some(&op.token))
            .json(&shift("2030-03-01T06:00:00Z", "2030-03-01T14:00:00Z")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{s1}");
    let (status, body) = send(
        api.post("/api/schedules/shifts/", Some(&op.token))
            .json(&shift("2030-03-01T13:00:00Z", "2030-03-01T20:00:00Z")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["fields"][0]["field"], "starts_at");
    let (status, _) = send(
        api.post("/api/schedules/shifts/", Some(&op.token))
            .json(&shift("2030-03-01T14:00:00Z", "2030-03-01T22:00:00Z")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "back-to-back shifts do not overlap"
    );
    let (status, body) = send(
        api.post("/api/schedules/shifts/", Some(&op.token))
            .json(&shift("2030-03-02T14:00:00Z", "2030-03-02T13:00:00Z")),
    )
    .await;
    assert_eq!(
        (status, body["fields"][0]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("ends_at"))
    );
    let (status, body) = send(api.post("/api/schedules/shifts/", Some(&op.token)).json(&json!({
        "patrol_id": i64::MAX, "starts_at": "2030-03-01T06:00:00Z", "ends_at": "2030-03-01T07:00:00Z"
    })))
    .await;
    assert_eq!(
        (status, body["fields"][0]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("patrol_id"))
    );

    let section = unique("km 12-14");
    let work = |from: &str, to: &str| json!({"title": "Resurfacing", "road": "A7", "section": section, "starts_at": from, "ends_at": to, "lanes_closed": [1, 2]});
    let (status, w) = send(
        api.post("/api/schedules/roadworks/", Some(&op.token))
            .json(&work("2030-03-01T00:00:00Z", "2030-03-10T00:00:00Z")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let (status, body) = send(
        api.post("/api/schedules/roadworks/", Some(&op.token))
            .json(&work("2030-03-09T00:00:00Z", "2030-03-12T00:00:00Z")),
    )
    .await;
    assert_eq!(
        (status, body["fields"][0]["field"].clone()),
        (StatusCode::CONFLICT, json!("starts_at"))
    );
    let (status, works) = send(api.get(
        "/api/schedules/roadworks/?from=2030-03-05T00:00:00Z&to=2030-03-06T00:00:00Z",
        None,
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "road works are public");
    assert!(
        works
            .as_array()
            .expect("list")
            .iter()
            .any(|x| x["id"] == w["id"])
    );

    // The patrol's crew reads its own shifts, not another's.
    let crew = api.login_as_patrol(pid).await;
    let (status, mine) = send(api.get(
        "/api/schedules/shifts/?from=2030-03-01T00:00:00Z&to=2030-03-02T00:00:00Z",
        Some(&crew.token),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine.as_array().expect("list").len(), 2);
    let (status, _) = send(api.get(
        &format!("/api/schedules/shifts/?patrol_id={}", pid + 1),
        Some(&crew.token),
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let res = api
        .get(
            "/api/schedules/calendar.ics?from=2030-03-01T00:00:00Z&to=2030-03-02T00:00:00Z",
            Some(&crew.token),
        )
        .send()
        .await
        .expect("calendar");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/calendar")
    );
    let ics = res.text().await.expect("body");
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"), "{ics}");
    assert_eq!(
        ics.matches("BEGIN:VEVENT").count(),
        2 + ics.matches("UID:roadwork-").count()
    );
    assert!(ics.contains(&format!("UID:shift-{}@central-api\r\n", s1["id"])));
    assert!(ics.contains("DTSTART:20300301T060000Z\r\nDTEND:20300301T140000Z\r\n"));
    assert!(ics.contains("DESCRIPTION:early\\; A7\\, km 3\r\n"));
    assert!(ics.contains(&format!("UID:roadwork-{}@central-api", w["id"])));
}

#[tokio::test]
async fn analytics_of_incidents_and_traffic() {
    let app = TestApp::shared();
    let api = app.api();
    let analyst = api.login_as(Role::Analyst).await;
    let area = unique("area");
    // Three accidents and a breakdown in March 2031 (a Monday, a Tuesday), in one area.
    app.psql(&format!(
        "INSERT INTO incident (kind, severity, title, lat, lon, area, t0_occurred_at) VALUES \
         ('accident', 'high', 'a', 50, 8, '{area}', '2031-03-03T07:15:00Z'), \
         ('accident', 'low', 'b', 50, 8, '{area}', '2031-03-03T07:45:00Z'), \
         ('accident', 'high', 'c', 50, 8, '{area}', '2031-03-04T17:00:00Z'), \
         ('breakdown', 'low', 'd', 50, 8, '{area}', '2031-03-04T17:30:00Z')"
    ));
    let (status, s) = send(api.get(
        "/api/analytics/accidents/?from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z&kind=accident",
        Some(&analyst.token),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["total"], 3);
    assert_eq!(s["by_kind"], json!([{"key": "accident", "count": 3}]));
    assert_eq!(
        s["by_severity"],
        json!([{"key": "high", "count": 2}, {"key": "low", "count": 1}])
    );
    assert_eq!(s["by_hour"][7], 2);
    assert_eq!(s["by_hour"][17], 1);
    assert_eq!(s["by_weekday"], json!([2, 1, 0, 0, 0, 0, 0]));
    assert_eq!(s["by_area"][0], json!({"key": area, "count": 3}));
    // In Berlin (UTC+1 in March) the hours move.
    let (_, s) = send(api.get("/api/analytics/accidents/?from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z&kind=accident&tz=Europe/Berlin", Some(&analyst.token))).await;
    assert_eq!(s["by_hour"][8], 2);
    let (status, body) = send(api.get("/api/analytics/accidents/?from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z&tz=Mars/Olympus", Some(&analyst.token))).await;
    assert_eq!(
        (status, body["fields"][0]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("query.tz"))
    );

    let site = unique("site");
    let mut sql = String::new();
    for (hour, volume, los_f) in [(7, 300, 20), (8, 500, 25), (12, 100, 0)] {
        for day in [10, 11] {
            let bucket = format!("2031-03-{day}T{hour:02}:00:00Z");
            sql += &rollup(
                "traffic_1h",
                "edge-1",
                &site,
                &bucket,
                volume,
                3.0,
                volume as f64 * 80.0,
                los_f,
            );
            sql += &rollup(
                "traffic_15m",
                "edge-1",
                &site,
                &bucket,
                volume / 4,
                3.0,
                volume as f64 * 20.0,
                los_f,
            );
        }
    }
    app.psql(&sql);
    let (status, t) = send(api.get(
        &format!(
            "/api/analytics/traffic/?site={site}&from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z"
        ),
        Some(&analyst.token),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["total_volume"], 2 * (300 + 500 + 100));
    assert_eq!(t["peak_hours"], json!([8, 7, 12]));
    assert_eq!(
        t["hourly"][0],
        json!({"hour": 7, "volume_avg": 300.0, "speed_kmh": 80.0, "buckets": 2})
    );
    // 15-minute buckets with most samples at E/F: hour 7 (20 of 30) and 8 (25 of 30), two days.
    assert_eq!(t["congested_s"], 4 * 900);
    let share = t["los_share"].as_array().expect("share");
    let f = share[5].as_f64().expect("f");
    assert!((f - 90.0 / 180.0).abs() < 1e-9, "{t}");
}

/// Every route of this module × every role and anonymous: allowed (anything but 401/403)
/// or refused (403; 401 for anonymous).
#[tokio::test]
async fn authorization_matrix() {
    use Role::*;
    let app = TestApp::shared();
    let api = app.api();
    let admin = api.admin().await;
    let pid = app.create_patrol(&unique("M"));
    let mut sessions: Vec<(String, Option<Session>)> = vec![("anonymous".into(), None)];
    for role in [Public, Patrol, Analyst, Operator] {
        let s = if role == Patrol {
            api.login_as_patrol(pid).await
        } else {
            api.login_as(role).await
        };
        sessions.push((role.to_string(), Some(s)));
    }
    sessions.push(("admin".into(), Some(admin.clone())));
    let operator = sessions[4].1.clone().expect("operator");

    // Resources to probe.
    let created = |v: Value| v["id"].as_i64().expect("id");
    let cam = created(
        send(
            api.post("/api/cameras/", Some(&admin.token))
                .json(&json!({"name": unique("cam")})),
        )
        .await
        .1,
    );
    let det = created(
        send(api.post("/api/detectors/", Some(&admin.token)).json(
            &json!({"detector_id": unique("d"), "site_id": "s", "kind": "loop", "lanes": 2}),
        ))
        .await
        .1,
    );
    let edge = unique("edge");
    send(
        api.post("/api/edges/", Some(&admin.token))
            .json(&json!({"edge_id": edge})),
    )
    .await;
    let article = created(
        send(
            api.post("/api/news/", Some(&operator.token))
                .json(&json!({"title": "t", "body": "b", "status": "published"})),
        )
        .await
        .1,
    );
    let shift = created(send(api.post("/api/schedules/shifts/", Some(&admin.token)).json(&json!({"patrol_id": pid, "starts_at": "2032-01-01T00:00:00Z", "ends_at": "2032-01-01T08:00:00Z"}))).await.1);
    let work = created(send(api.post("/api/schedules/roadworks/", Some(&admin.token)).json(&json!({"title": "t", "road": "R", "section": unique("s"), "starts_at": "2032-01-01T00:00:00Z", "ends_at": "2032-01-02T00:00:00Z"}))).await.1);
    let incident: i64 = app.psql(&format!("INSERT INTO incident (kind, title, lat, lon, assigned_patrol_id) VALUES ('debris', 'x', 1, 1, {pid}) RETURNING id")).trim().parse().expect("incident");
    let room = created(
        send(
            api.post("/api/chat/rooms/", Some(&operator.token))
                .json(&json!({"kind": "incident", "name": "i", "incident_id": incident})),
        )
        .await
        .1,
    );

    const FIELD: &[Role] = &[Admin, Operator, Analyst, Patrol];
    const DESK: &[Role] = &[Admin, Operator, Analyst];
    const STAFF: &[Role] = &[Admin, Operator];
    const ADMIN: &[Role] = &[Admin];
    const CHAT: &[Role] = &[Admin, Operator, Analyst, Patrol];
    const ALL: &[Role] = &[Admin, Operator, Analyst, Patrol, Public];
    let range = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z";
    // (method, path, body, roles allowed, anonymous allowed)
    type Case = (Method, String, Option<Value>, &'static [Role], bool);
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            format!("/api/traffic/?site=s&{range}"),
            None,
            FIELD,
            false,
        ),
        (
            Method::GET,
            "/api/traffic/live/?site=s".into(),
            None,
            FIELD,
            false,
        ),
        (Method::GET, "/api/cameras/".into(), None, FIELD, false),
        (
            Method::GET,
            format!("/api/cameras/{cam}/"),
            None,
            FIELD,
            false,
        ),
        (
            Method::POST,
            "/api/cameras/".into(),
            Some(json!({"name": unique("cam")})),
            ADMIN,
            false,
        ),
        (
            Method::PUT,
            format!("/api/cameras/{cam}/"),
            Some(json!({"name": unique("cam")})),
            ADMIN,
            false,
        ),
        (
            Method::DELETE,
            format!("/api/cameras/{cam}/"),
            None,
            ADMIN,
            false,
        ),
        (Method::GET, "/api/detectors/".into(), None, FIELD, false),
        (
            Method::GET,
            format!("/api/detectors/{det}/"),
            None,
            FIELD,
            false,
        ),
        (
            Method::POST,
            "/api/detectors/".into(),
            Some(json!({"detector_id": unique("d"), "site_id": "s", "kind": "loop", "lanes": 1})),
            ADMIN,
            false,
        ),
        (
            Method::PUT,
            format!("/api/detectors/{det}/"),
            Some(json!({"detector_id": unique("d"), "site_id": "s", "kind": "loop", "lanes": 1})),
            ADMIN,
            false,
        ),
        (
            Method::DELETE,
            format!("/api/detectors/{det}/"),
            None,
            ADMIN,
            false,
        ),
        (Method::GET, "/api/patrols/".into(), None, FIELD, false),
        (
            Method::GET,
            format!("/api/patrols/{pid}/"),
            None,
            FIELD,
            false,
        ),
        (
            Method::POST,
            "/api/patrols/".into(),
            Some(json!({"call_sign": unique("P")})),
            ADMIN,
            false,
        ),
        (
            Method::PUT,
            format!("/api/patrols/{pid}/"),
            Some(json!({"call_sign": unique("P")})),
            ADMIN,
            false,
        ),
        (
            Method::PUT,
            format!("/api/patrols/{pid}/status/"),
            Some(json!({"availability": "busy"})),
            &[Admin, Operator, Patrol],
            false,
        ),
        (Method::GET, "/api/edges/".into(), None, FIELD, false),
        (
            Method::GET,
            format!("/api/edges/{edge}/"),
            None,
            FIELD,
            false,
        ),
        (
            Method::POST,
            "/api/edges/".into(),
            Some(json!({"edge_id": unique("e")})),
            ADMIN,
            false,
        ),
        (
            Method::PUT,
            format!("/api/edges/{edge}/"),
            Some(json!({"site_id": "s2"})),
            ADMIN,
            false,
        ),
        (
            Method::DELETE,
            format!("/api/edges/{edge}/"),
            None,
            ADMIN,
            false,
        ),
        (Method::GET, "/api/news/".into(), None, ALL, true),
        (
            Method::GET,
            format!("/api/news/{article}/"),
            None,
            ALL,
            true,
        ),
        (
            Method::POST,
            "/api/news/".into(),
            Some(json!({"title": "t", "body": "b"})),
            STAFF,
            false,
        ),
        (
            Method::PUT,
            format!("/api/news/{article}/"),
            Some(json!({"title": "t", "body": "b", "status": "published"})),
            STAFF,
            false,
        ),
        (
            Method::DELETE,
            format!("/api/news/{article}/"),
            None,
            STAFF,
            false,
        ),
        (Method::GET, "/api/chat/rooms/".into(), None, CHAT, false),
        (
            Method::POST,
            "/api/chat/rooms/".into(),
            Some(json!({"kind": "team", "name": "t"})),
            STAFF,
            false,
        ),
        (
            Method::GET,
            format!("/api/chat/rooms/{room}/"),
            None,
            CHAT,
            false,
        ),
        (
            Method::GET,
            format!("/api/chat/rooms/{room}/messages/"),
            None,
            CHAT,
            false,
        ),
        (
            Method::POST,
            format!("/api/chat/rooms/{room}/messages/"),
            Some(json!({"body": "hi"})),
            CHAT,
            false,
        ),
        (Method::GET, "/api/notifications/".into(), None, ALL, false),
        (
            Method::POST,
            "/api/notifications/read-all/".into(),
            None,
            ALL,
            false,
        ),
        (
            Method::POST,
            "/api/notifications/1/read/".into(),
            None,
            ALL,
            false,
        ),
        (
            Method::GET,
            "/api/notifications/watches/".into(),
            None,
            FIELD,
            false,
        ),
        (
            Method::PUT,
            "/api/notifications/watches/s1/".into(),
            None,
            FIELD,
            false,
        ),
        (
            Method::DELETE,
            "/api/notifications/watches/s1/".into(),
            None,
            FIELD,
            false,
        ),
        (
            Method::GET,
            "/api/schedules/shifts/".into(),
            None,
            FIELD,
            false,
        ),
        (
            Method::GET,
            format!("/api/schedules/shifts/{shift}/"),
            None,
            FIELD,
            false,
        ),
        (
            Method::POST,
            "/api/schedules/shifts/".into(),
            Some(
                json!({"patrol_id": pid, "starts_at": "2033-01-01T00:00:00Z", "ends_at": "2033-01-01T01:00:00Z"}),
            ),
            STAFF,
            false,
        ),
        (
            Method::PUT,
            format!("/api/schedules/shifts/{shift}/"),
            Some(
                json!({"patrol_id": pid, "starts_at": "2032-01-01T00:00:00Z", "ends_at": "2032-01-01T09:00:00Z"}),
            ),
            STAFF,
            false,
        ),
        (
            Method::DELETE,
            format!("/api/schedules/shifts/{shift}/"),
            None,
            STAFF,
            false,
        ),
        (
            Method::GET,
            "/api/schedules/roadworks/".into(),
            None,
            ALL,
            true,
        ),
        (
            Method::GET,
            format!("/api/schedules/roadworks/{work}/"),
            None,
            ALL,
            true,
        ),
        (
            Method::POST,
            "/api/schedules/roadworks/".into(),
            Some(
                json!({"title": "t", "road": "R", "section": unique("s"), "starts_at": "2033-01-01T00:00:00Z", "ends_at": "2033-01-02T00:00:00Z"}),
            ),
            STAFF,
            false,
        ),
        (
            Method::PUT,
            format!("/api/schedules/roadworks/{work}/"),
            Some(
                json!({"title": "t2", "road": "R", "section": unique("s"), "starts_at": "2032-01-01T00:00:00Z", "ends_at": "2032-01-02T00:00:00Z"}),
            ),
            STAFF,
            false,
        ),
        (
            Method::DELETE,
            format!("/api/schedules/roadworks/{work}/"),
            None,
            STAFF,
            false,
        ),
        (
            Method::GET,
            "/api/schedules/calendar.ics".into(),
            None,
            FIELD,
            false,
        ),
        (
            Method::GET,
            format!("/api/analytics/accidents/?{range}"),
            None,
            DESK,
            false,
        ),
        (
            Method::GET,
            format!("/api/analytics/traffic/?site=s&{range}"),
            None,
            DESK,
            false,
        ),
        (Method::GET, "/api/chat/ws".into(), None, CHAT, false),
    ];
    let mut failures = Vec::new();
    for (method, path, body, allowed, anonymous_ok) in &cases {
        for (who, session) in &sessions {
            let mut rb = api.request(
                method.clone(),
                path,
                session.as_ref().map(|s| s.token.as_str()),
            );
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let (status, res) = send(rb).await;
            let ok = match session {
                None if *anonymous_ok => {
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN
                }
                None => status == StatusCode::UNAUTHORIZED,
                Some(s) if allowed.contains(&s.role) => {
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN
                }
                Some(_) => status == StatusCode::FORBIDDEN,
            };
            if !ok || status.is_server_error() {
                failures.push(format!("{method} {path} as {who}: {status} {res}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bad input answers 4xx naming the field, never 500.
#[tokio::test]
async fn bad_input_names_the_field() {
    let app = TestApp::shared();
    let api = app.api();
    let admin = api.admin().await;
    let t = Some(admin.token.as_str());
    let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(5000));
    let cases: Vec<(Method, String, Option<&str>, StatusCode, &str)> = vec![
        (
            Method::GET,
            "/api/traffic/?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z".into(),
            None,
            StatusCode::BAD_REQUEST,
            "query.site",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=yesterday&to=2026-01-02T00:00:00Z".into(),
            None,
            StatusCode::BAD_REQUEST,
            "query.from",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.to",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.to",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&lane=x".into(),
            None,
            StatusCode::BAD_REQUEST,
            "query.lane",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&lane=0".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.lane",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&resolution=5m"
                .into(),
            None,
            StatusCode::BAD_REQUEST,
            "query.resolution",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&limit=0".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.limit",
        ),
        (
            Method::GET,
            "/api/traffic/?site=s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&bogus=1".into(),
            None,
            StatusCode::BAD_REQUEST,
            "query.bogus",
        ),
        (
            Method::GET,
            format!("/api/traffic/live/?site={}", "y".repeat(65)),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.site",
        ),
        (
            Method::GET,
            "/api/cameras/abc/".into(),
            None,
            StatusCode::BAD_REQUEST,
            // A lone path parameter has no name in axum's error.
            "path",
        ),
        (
            Method::POST,
            "/api/cameras/".into(),
            Some(r#"{"name": "#),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            Method::POST,
            "/api/cameras/".into(),
            Some(r#"{"name": 5}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            Method::POST,
            "/api/cameras/".into(),
            Some(r#"{"name": "a", "colour": "red"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            Method::POST,
            "/api/cameras/".into(),
            Some(&long),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            Method::POST,
            "/api/cameras/".into(),
            Some(r#"{"name": "c", "lat": 10}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "lon",
        ),
        (
            Method::POST,
            "/api/detectors/".into(),
            Some(r#"{"detector_id": "d", "site_id": "s", "kind": "laser", "lanes": 40}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind",
        ),
        (
            Method::POST,
            "/api/detectors/".into(),
            Some(r#"{"detector_id": "d", "site_id": "s", "kind": "loop", "lanes": 99999}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "lanes",
        ),
        (
            Method::POST,
            "/api/patrols/".into(),
            Some(r#"{"call_sign": ""}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "call_sign",
        ),
        (
            Method::POST,
            "/api/edges/".into(),
            Some(r#"{"edge_id": "a\u0000b"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "edge_id",
        ),
        (
            Method::POST,
            "/api/news/".into(),
            Some(r#"{"title": "t", "body": "b", "status": "live"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            Method::GET,
            "/api/news/?status=gone".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.status",
        ),
        (
            Method::POST,
            "/api/chat/rooms/".into(),
            Some(r#"{"kind": "party", "name": "n"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind",
        ),
        (
            Method::POST,
            "/api/chat/rooms/".into(),
            Some(r#"{"kind": "incident", "name": "n"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "incident_id",
        ),
        (
            Method::POST,
            "/api/chat/rooms/".into(),
            Some(r#"{"kind": "incident", "name": "n", "incident_id": 9223372036854775807}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "incident_id",
        ),
        (
            Method::POST,
            "/api/chat/rooms/".into(),
            Some(r#"{"kind": "team", "name": "n", "members": [9223372036854775807]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "members",
        ),
        (
            Method::GET,
            "/api/chat/rooms/1/messages/?after=1&before=5".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.before",
        ),
        (
            Method::GET,
            "/api/notifications/?limit=1000".into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "query.limit",
        ),
        (
            Method::POST,
            "/api/schedules/shifts/".into(),
            Some(r#"{"patrol_id": 1, "starts_at": "soon", "ends_at": "2030-01-01T00:00:00Z"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "starts_at",
        ),
        (
            Method::POST,
            "/api/schedules/shifts/".into(),
            Some(
                r#"{"patrol_id": 1, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-03T00:00:00Z"}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ends_at",
        ),
        (
            Method::POST,
            "/api/schedules/roadworks/".into(),
            Some(
                r#"{"title": "t", "road": "r", "section": "s", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-03T00:00:00Z", "lanes_closed": [0]}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "lanes_closed[0]",
        ),
        (
            Method::GET,
            "/api/analytics/traffic/?site=s&from=2026-01-01T00:00:00Z".into(),
            None,
            StatusCode::BAD_REQUEST,
            "query.to",
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, want, field) in &cases {
        let mut rb = api.request(method.clone(), path, t);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let (status, res) = send(rb).await;
        let fields: Vec<&str> = res["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default();
        if status != *want || !fields.contains(field) {
            failures.push(format!(
                "{method} {path}: want {want} naming {field}, got {status} {res}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // SQL metacharacters are data, not SQL.
    let evil = "s'; DROP TABLE camera; --";
    let (status, page) = send(api.get("/api/traffic/", t).query(&[
        ("site", evil),
        ("from", "2026-01-01T00:00:00Z"),
        ("to", "2026-01-01T01:00:00Z"),
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["points"], json!([]));
    let (status, cam) = send(
        api.post("/api/cameras/", t)
            .json(&json!({"name": unique(evil)})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cam}");
    assert!(cam["name"].as_str().expect("name").starts_with(evil));
}

#[tokio::test]
async fn openapi_lists_these_routes() {
    let app = TestApp::shared();
    let api: Api = app.api();
    let (status, doc) = send(api.get("/api/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/traffic/",
        "/api/traffic/live/",
        "/api/cameras/",
        "/api/cameras/{id}/",
        "/api/detectors/",
        "/api/detectors/{id}/",
        "/api/patrols/",
        "/api/patrols/{id}/",
        "/api/patrols/{id}/status/",
        "/api/edges/",
        "/api/edges/{edge_id}/",
        "/api/news/",
        "/api/news/{id}/",
        "/api/chat/rooms/",
        "/api/chat/rooms/{id}/",
        "/api/chat/rooms/{id}/messages/",
        "/api/chat/ws",
        "/api/notifications/",
        "/api/notifications/{id}/read/",
        "/api/notifications/read-all/",
        "/api/notifications/watches/",
        "/api/notifications/watches/{site_id}/",
        "/api/schedules/shifts/",
        "/api/schedules/shifts/{id}/",
        "/api/schedules/roadworks/",
        "/api/schedules/roadworks/{id}/",
        "/api/schedules/calendar.ics",
        "/api/analytics/accidents/",
        "/api/analytics/traffic/",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    for schema in [
        "TrafficPage",
        "LiveSite",
        "Camera",
        "Detector",
        "Patrol",
        "Edge",
        "Article",
        "Room",
        "ChatMessage",
        "NotificationPage",
        "Shift",
        "RoadWork",
        "AccidentStats",
        "TrafficStats",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
}

/// Real responses of these routes match the schemas the OpenAPI document gives them.
#[tokio::test]
async fn responses_match_their_openapi_schemas() {
    let app = TestApp::shared();
    let api = app.api();
    let admin = api.admin().await;
    let t = Some(admin.token.as_str());
    let (_, doc) = send(api.get("/api/openapi.json", None)).await;
    let check = |what: &str, schema: Value, body: &Value| {
        let mut schema = schema;
        schema["components"] = doc["components"].clone();
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{body}");
    };
    let one = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let list = |name: &str| json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}});

    let site = unique("site");
    app.psql(&sample(
        &site,
        "d1",
        1,
        "now() - interval '1 minute'",
        5,
        0.1,
        70.0,
        'C',
    ));
    let (_, v) = send(api.get(
        &format!("/api/traffic/?site={site}&from=2020-01-01T00:00:00Z&to=2020-01-01T01:00:00Z"),
        t,
    ))
    .await;
    check("traffic", one("TrafficPage"), &v);
    let (_, v) = send(api.get(&format!("/api/traffic/live/?site={site}"), t)).await;
    check("live", one("LiveSite"), &v);
    send(
        api.post("/api/cameras/", t)
            .json(&json!({"name": unique("cam"), "lat": 1.0, "lon": 2.0})),
    )
    .await;
    let (_, v) = send(api.get("/api/cameras/", t)).await;
    check("cameras", list("Camera"), &v);
    send(
        api.post("/api/edges/", t)
            .json(&json!({"edge_id": unique("e")})),
    )
    .await;
    let (_, v) = send(api.get("/api/edges/", t)).await;
    check("edges", list("Edge"), &v);
    let (_, v) = send(api.get("/api/patrols/", t)).await;
    check("patrols", list("Patrol"), &v);
    send(
        api.post("/api/news/", t)
            .json(&json!({"title": "t", "body": "b", "status": "published"})),
    )
    .await;
    let (_, v) = send(api.get("/api/news/", t)).await;
    check("news", list("Article"), &v);
    let (_, room) = send(
        api.post("/api/chat/rooms/", t)
            .json(&json!({"kind": "team", "name": "r"})),
    )
    .await;
    check("room", one("Room"), &room);
    let (_, m) = send(
        api.post(&format!("/api/chat/rooms/{}/messages/", room["id"]), t)
            .json(&json!({"body": "x"})),
    )
    .await;
    check("message", one("ChatMessage"), &m);
    let (_, v) = send(api.get(&format!("/api/chat/rooms/{}/messages/", room["id"]), t)).await;
    check("history", one("MessagePage"), &v);
    let (_, v) = send(api.get("/api/notifications/", t)).await;
    check("notifications", one("NotificationPage"), &v);
    let (_, v) = send(api.get("/api/schedules/roadworks/?from=2000-01-01T00:00:00Z", t)).await;
    check("roadworks", list("RoadWork"), &v);
    let (_, v) = send(api.get(
        "/api/analytics/accidents/?from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z",
        t,
    ))
    .await;
    check("accidents", one("AccidentStats"), &v);
    let (_, v) = send(api.get(
        &format!(
            "/api/analytics/traffic/?site={site}&from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z"
        ),
        t,
    ))
    .await;
    check("traffic stats", one("TrafficStats"), &v);
    let (_, v) = send(api.get("/api/analytics/traffic/?site=s", t)).await;
    check("error", one("ErrorBody"), &v);
}
