//! Operations: rate limiting (429 + Retry-After), request ids, metrics, readiness, TLS,
//! and the binary itself: `migrate`, `create-admin`, `serve` with systemd's READY=1 and a
//! clean stop on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use central_api::auth::Role;
use common::{TestApp, create_incident, send};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::PgServer;

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let app = TestApp::spawn(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_client_per_s = 1;
        c.rate_limit.per_client_burst = 8;
        c.rate_limit.per_user_per_s = 1;
        c.rate_limit.per_user_burst = 3;
    });
    let api = app.api();
    let a = api.login_as(Role::Analyst).await;
    let b = api.login_as(Role::Analyst).await;
    // User a runs out of requests; user b still has theirs.
    let mut limited = None;
    for _ in 0..20 {
        let res = api
            .get("/api/users/me/", Some(&a.token))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = limited.expect("user a was never limited");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    let (status, _) = send(api.get("/api/users/me/", Some(&b.token))).await;
    assert_eq!(status, StatusCode::OK);

    // Anonymous requests share their address's budget.
    let mut limited = false;
    for _ in 0..30 {
        let (status, _) = send(api.get("/api/incidents/", None)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "anonymous requests were never limited");
    // Health checks are never limited.
    for _ in 0..20 {
        let (status, _) = send(api.get("/health", None)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let metrics = api.get_text("/metrics").await;
    assert!(metrics.contains("status=\"429\""), "{metrics}");
}

#[tokio::test]
async fn password_guessing_is_limited_per_client() {
    let app = TestApp::spawn(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.login_per_minute = 3;
    });
    let api = app.api();
    let guess = || {
        api.post("/api/auth/login/", None)
            .json(&json!({"username": common::ADMIN_USER, "password": "guess-guess-guess"}))
    };
    for _ in 0..3 {
        let (status, _) = send(guess()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = guess().send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry),
        "a new attempt every 20 s: {retry}"
    );
    // Other requests from the same client are not affected.
    let (status, _) = send(api.get("/api/incidents/", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn request_ids_reach_responses_and_the_audit_log() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let res = api
        .post("/api/incidents/", Some(&op.token))
        .header("x-request-id", "probe-4711")
        .json(&common::incident_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "probe-4711");
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let logged = app.psql(&format!(
        "SELECT request_id FROM audit_log WHERE entity = 'incident' AND entity_id = '{id}'"
    ));
    assert_eq!(logged, "probe-4711");
    // An odd one (too long, or not printable) is replaced.
    for odd in ["x".repeat(500), "two words".to_owned()] {
        let res = api
            .get("/health", None)
            .header("x-request-id", &odd)
            .send()
            .await
            .unwrap();
        let got = res.headers()["x-request-id"].to_str().unwrap();
        assert!(got != odd && got.len() < 40, "{got}");
    }
    // Without one, the service makes one.
    let res = api.get("/health", None).send().await.unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(made.len() > 8, "{made}");
    let res = api.get("/health", None).send().await.unwrap();
    assert_ne!(res.headers()["x-request-id"].to_str().unwrap(), made);
}

#[tokio::test]
async fn metrics_count_requests_and_open_incidents() {
    let app = TestApp::shared();
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    create_incident(&api, &op.token, json!({})).await;
    send(api.get("/api/incidents/0/", Some(&op.token))).await;
    let text = api.get_text("/metrics").await;
    assert!(
        text.contains("http_requests_total{route=\"/api/incidents/\",status=\"201\"}"),
        "{text}"
    );
    assert!(
        text.contains("http_errors_total{route=\"/api/incidents/{id}/\",kind=\"client\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "http_request_duration_seconds_bucket{route=\"/api/incidents/\",le=\"0.005\"}"
        ),
        "{text}"
    );
    // The gauge is read from the database at scrape time.
    let reported: f64 = app
        .psql("SELECT count(*) FROM incident WHERE state = 'reported'")
        .parse()
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("incidents_open{state=\"reported\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let gauge: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(gauge >= 1.0 && gauge <= reported, "{gauge} vs {reported}");
    let (status, ready) = send(api.get("/ready", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["database"], true);
}

#[tokio::test]
async fn tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certs = test_support::TestCerts::new(dir.path(), "api");
    let (cert, key) = (certs.cert.clone(), certs.key.clone());
    let app = TestApp::spawn(|c| {
        c.server.tls_cert_file = Some(cert.clone());
        c.server.tls_key_file = Some(key.clone());
    });
    assert!(app.base.starts_with("https://"));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let res = client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    // Plain HTTP to the TLS port gets nowhere, and an untrusting client refuses the cert.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", app.addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert!(
        reqwest::Client::new()
            .get(format!("{}/health", app.base))
            .send()
            .await
            .is_err()
    );
    app.stop();
}

/// Polls `condition` every 20 ms until it holds; panics after 30 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_open_requests_finish_and_refuses_new_ones() {
    let app = TestApp::spawn(|_| {});
    let api = app.api();
    let op = api.login_as(Role::Operator).await;
    let id = create_incident(&api, &op.token, json!({})).await["id"]
        .as_i64()
        .unwrap();
    // Hold the incident's row lock, so that an update through the API waits inside the
    // server until we let go.
    let url = PgServer::shared().connection_string(&app.db);
    let (mut db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let tx = db.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM incident WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .unwrap();
    let pending = tokio::spawn({
        let api = api.clone();
        let token = op.token.clone();
        async move {
            send(
                api.patch(&format!("/api/incidents/{id}/"), Some(&token))
                    .json(&json!({"severity": "high"})),
            )
            .await
        }
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE application_name = 'central-api' AND wait_event_type = 'Lock'";
    wait_until("the update to wait on the lock", || {
        app.psql(waiting) == "1"
    })
    .await;

    app.begin_shutdown();
    let addr = app.addr;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pending.is_finished());
    tx.commit().await.unwrap();
    let (status, body) = pending.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["severity"], "high");
    app.stop();
    drop(db);
    let _ = conn.await;
}

/// Runs the binary; returns (success, stdout + stderr).
fn run_cli(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_central-api"))
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_binary_migrates_bootstraps_serves_and_stops() {
    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let port = test_support::free_port();
    let config = dir.path().join("central-api.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[database]\nhost = \"{}\"\nport = {}\nuser = \"{}\"\ndbname = \"{db}\"\n\n\
             [auth]\njwt_secret_file = \"{}\"\nargon2_memory_kib = 256\nargon2_iterations = 1\n",
            pg.host(),
            pg.port(),
            pg.user(),
            secret.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    // Serving an unmigrated database is refused, saying what to do.
    let (ok, text) = run_cli(&["serve", "--config", cfg], "");
    assert!(!ok);
    assert!(text.contains("central-api migrate"), "{text}");
    let (ok, text) = run_cli(&["migrate", "--config", cfg], "");
    assert!(ok, "{text}");
    assert!(
        text.contains("central-sync: applied [1, 2, 3]")
            && text.contains("central-api: applied [1, 2, 3, 4]"),
        "{text}"
    );
    let (ok, text) = run_cli(&["migrate", "--config", cfg], "");
    assert!(ok && text.contains("central-api: up to date"), "{text}");

    let (ok, text) = run_cli(
        &["create-admin", "--config", cfg, "--username", "chief"],
        "short\n",
    );
    assert!(!ok && text.contains("password"), "{text}");
    let (ok, text) = run_cli(
        &["create-admin", "--config", cfg, "--username", "chief"],
        "chief-password-1\n",
    );
    assert!(ok, "{text}");
    let (ok, text) = run_cli(
        &["create-admin", "--config", cfg, "--username", "CHIEF"],
        "chief-password-1\n",
    );
    assert!(!ok && text.contains("username"), "{text}");

    // Config errors name the key.
    let (ok, text) = run_cli(&["check-config", "--config", cfg], "");
    assert!(ok, "{text}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisen = \"x\"\n").unwrap();
    let (ok, text) = run_cli(&["check-config", "--config", bad.to_str().unwrap()], "");
    assert!(!ok && text.contains("lisen"), "{text}");

    // serve: READY=1 over NOTIFY_SOCKET once listening; SIGTERM: STOPPING=1, exit 0.
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_central-api"))
        .args(["serve", "--config", cfg])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("CENTRAL_API__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 from the service");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.contains("READY=1"), "{msg}");

    let api = common::Api {
        client: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let chief = api.login("chief", "chief-password-1").await;
    assert_eq!(chief.role, Role::Admin);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{logs}");
    // JSON logs, with the request id on the request's lines, and no secrets.
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines.iter().any(
            |l| l["span"]["request_id"].is_string() && l["span"]["route"] == "/api/auth/login/"
        ),
        "{logs}"
    );
    assert!(
        !logs.contains("chief-password-1") && !logs.contains("0123456789abcdef"),
        "{logs}"
    );
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{logs}");
}

#[tokio::test]
async fn an_unreachable_database_is_503_not_500() {
    use tower::ServiceExt;
    // A config whose database port nobody listens on.
    let mut config = common::test_config("nowhere");
    config.database.port = test_support::free_port();
    config.database.connect_timeout_s = 2;
    config.database.pool_timeout_s = 2;
    let state = central_api::AppState::new(config).unwrap();
    let token = state
        .tokens
        .access_token(
            &central_api::auth::AuthUser {
                id: 1,
                role: Role::Operator,
                patrol_id: None,
            },
            0,
        )
        .unwrap();
    let app = central_api::app(state);
    let call = |path: &str| {
        axum::http::Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for (path, expected) in [
        ("/health", StatusCode::OK),
        ("/ready", StatusCode::SERVICE_UNAVAILABLE),
        ("/api/incidents/", StatusCode::SERVICE_UNAVAILABLE),
        ("/api/users/me/", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let res = app.clone().oneshot(call(path)).await.unwrap();
        assert_eq!(res.status().as_u16(), expected.as_u16(), "{path}");
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        if expected == StatusCode::SERVICE_UNAVAILABLE && path != "/ready" {
            assert_eq!(body["error"], "unavailable", "{path}: {body}");
            assert!(
                !body.to_string().contains("connect"),
                "no internals: {body}"
            );
        }
    }
}
