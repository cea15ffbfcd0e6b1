//! The test harness: a running central-api over a real, throwaway PostgreSQL.
//!
//! - [`TestApp::shared`]: one server per test binary (its own thread and runtime, so it
//!   outlives each test's runtime), on a database cloned from a migrated template.
//! - [`TestApp::spawn`]: a server of your own with a tweaked [`Config`] (rate limits, TLS);
//!   stopped when dropped.
//! - [`Api`]: a reqwest client for one test (`app.api()`), with [`Api::login_as`] making a
//!   fresh user of any role and logging in.
//!
//! Tests share the shared server's database: create your own rows, never assume the
//! tables are empty.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use central_api::auth::Role;
use central_api::config::Config;
use central_api::state::AppState;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use test_support::PgServer;
use tokio_util::sync::CancellationToken;

pub const TEMPLATE: &str = "central_api_tmpl";
pub const ADMIN_USER: &str = "root-admin";
pub const ADMIN_PASSWORD: &str = "root-admin-password";
pub const PASSWORD: &str = "a-long-enough-password";

/// A running server.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (or `https://` with TLS).
    pub base: String,
    /// The database this server uses (on [`PgServer::shared`]).
    pub db: String,
    pub config: Config,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The migrated template, made once per test binary.
pub fn template() -> String {
    PgServer::shared().template_database_with(TEMPLATE, |pg, db| {
        let url = pg.connection_string(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the template");
            let conn = tokio::spawn(conn);
            central_api::migrate::apply_all(&mut client)
                .await
                .expect("migrations");
            drop(client);
            let _ = conn.await;
        });
    })
}

/// A config for a test server on `db`: fast password hashing, no rate limit.
pub fn test_config(db: &str) -> Config {
    let pg = PgServer::shared();
    let mut c = Config::default();
    c.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.server.shutdown_grace_s = 5;
    c.database.host = pg.host().to_owned();
    c.database.port = pg.port();
    c.database.user = pg.user().to_owned();
    c.database.dbname = db.to_owned();
    c.database.pool_size = 8;
    c.auth.jwt_secret = Some(edge_config::Secret::new(
        "test-secret-test-secret-test-secret!",
    ));
    c.auth.argon2_memory_kib = 256;
    c.auth.argon2_iterations = 1;
    c.rate_limit.enabled = false;
    c.log.format = central_api::config::LogFormat::Text;
    c
}

impl TestApp {
    /// The test binary's shared server (rate limiting off).
    pub fn shared() -> &'static TestApp {
        static APP: OnceLock<TestApp> = OnceLock::new();
        APP.get_or_init(|| TestApp::spawn(|_| {}))
    }

    /// A server of its own, on a fresh database, with `tweak` applied to [`test_config`].
    pub fn spawn(tweak: impl FnOnce(&mut Config)) -> TestApp {
        init_logs();
        // On a plain thread: the template's setup runs a runtime of its own, which cannot
        // start inside the calling test's runtime.
        let db = std::thread::spawn(|| {
            let tmpl = template();
            PgServer::shared().fresh_database(Some(&tmpl))
        })
        .join()
        .expect("template database");
        let mut config = test_config(&db);
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let config = config.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("central-api".to_owned())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async move {
                        central_api::bootstrap::create_admin(
                            &config,
                            ADMIN_USER,
                            "Root",
                            ADMIN_PASSWORD.to_owned(),
                        )
                        .await
                        .expect("create the first admin");
                        let state = AppState::new(config.clone()).expect("state");
                        let listener =
                            std::net::TcpListener::bind(config.server.listen).expect("bind");
                        tx.send(listener.local_addr().expect("addr")).expect("send");
                        central_api::serve::run(
                            state,
                            listener,
                            shutdown,
                            CancellationToken::new(),
                        )
                        .await
                        .expect("server");
                    });
                })
                .expect("server thread")
        };
        let addr = rx.recv().expect("the server did not start");
        let scheme = if config.server.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        TestApp {
            addr,
            base: format!("{scheme}://127.0.0.1:{}", addr.port()),
            db,
            config,
            shutdown,
            thread: Some(thread),
        }
    }

    /// A client for one test (reqwest's pool belongs to the runtime that uses it, and each
    /// test has its own runtime).
    pub fn api(&self) -> Api {
        Api {
            client: reqwest::Client::builder().build().expect("client"),
            base: self.base.clone(),
        }
    }

    /// Runs SQL on this server's database (see [`PgServer::psql`]).
    pub fn psql(&self, sql: &str) -> String {
        PgServer::shared().psql(&self.db, sql)
    }

    /// A patrol (the registry API belongs to another module; tests make them in SQL).
    pub fn create_patrol(&self, call_sign: &str) -> i64 {
        self.psql(&format!(
            "INSERT INTO patrol (call_sign) VALUES ('{}') RETURNING id",
            call_sign.replace('\'', "''")
        ))
        .parse()
        .expect("patrol id")
    }

    /// Starts a graceful shutdown (as SIGTERM would) without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the server and waits for it (drained).
    pub fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread panicked");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Shown by the test harness only for failing tests, or with --nocapture.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "central_api=info,warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Another server on an app's database (no bootstrap: the admin exists), as a second
/// instance behind a load balancer would be; stopped when dropped.
#[derive(Debug)]
pub struct Instance {
    pub base: String,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    pub fn beside(app: &TestApp) -> Instance {
        let config = app.config.clone();
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let state = AppState::new(config.clone()).expect("state");
                let listener = std::net::TcpListener::bind(config.server.listen).expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                central_api::serve::run(state, listener, stop, CancellationToken::new())
                    .await
                    .expect("second server");
            });
        });
        let addr = rx.recv().expect("the second server did not start");
        Instance {
            base: format!("http://127.0.0.1:{}", addr.port()),
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn api(&self) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: self.base.clone(),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub token: String,
    pub refresh_token: String,
}

/// A unique name for test rows.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An HTTP client for one test.
#[derive(Debug, Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> RequestBuilder {
        self.request(Method::GET, path, token)
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> RequestBuilder {
        self.request(Method::POST, path, token)
    }

    pub fn put(&self, path: &str, token: Option<&str>) -> RequestBuilder {
        self.request(Method::PUT, path, token)
    }

    pub fn patch(&self, path: &str, token: Option<&str>) -> RequestBuilder {
        self.request(Method::PATCH, path, token)
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> RequestBuilder {
        self.request(Method::DELETE, path, token)
    }

    /// The body of an anonymous GET as text.
    pub async fn get_text(&self, path: &str) -> String {
        let res = self.get(path, None).send().await.expect("request");
        res.text().await.expect("body")
    }

    /// Logs in; panics unless it works.
    pub async fn login(&self, username: &str, password: &str) -> Session {
        let res = self
            .post("/api/auth/login/", None)
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request");
        let status = res.status();
        let body: Value = res.json().await.expect("login body");
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        Session {
            id: body["user"]["id"].as_i64().expect("user id"),
            username: username.to_owned(),
            role: serde_json::from_value(body["user"]["role"].clone()).expect("role"),
            token: body["access_token"].as_str().expect("token").to_owned(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// The bootstrap admin.
    pub async fn admin(&self) -> Session {
        self.login(ADMIN_USER, ADMIN_PASSWORD).await
    }

    /// A new user of `role` (created by the admin), logged in.
    pub async fn login_as(&self, role: Role) -> Session {
        self.login_as_with(role, None).await
    }

    /// A new `patrol` user crewing `patrol_id`, logged in.
    pub async fn login_as_patrol(&self, patrol_id: i64) -> Session {
        self.login_as_with(Role::Patrol, Some(patrol_id)).await
    }

    async fn login_as_with(&self, role: Role, patrol_id: Option<i64>) -> Session {
        let admin = self.admin().await;
        let username = unique(role.as_str());
        let res = self
            .post("/api/users/", Some(&admin.token))
            .json(&json!({
                "username": username,
                "password": PASSWORD,
                "role": role,
                "patrol_id": patrol_id,
            }))
            .send()
            .await
            .expect("create user");
        let status = res.status();
        let body: Value = res.json().await.expect("body");
        assert_eq!(status, StatusCode::CREATED, "create {role} user: {body}");
        self.login(&username, PASSWORD).await
    }
}

/// Sends a request and returns its status and JSON body (`Value::Null` when empty or not
/// JSON).
pub async fn send(rb: RequestBuilder) -> (StatusCode, Value) {
    let res = rb.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

/// A valid incident body (merge overrides into it).
pub fn incident_body(overrides: Value) -> Value {
    let mut body = json!({
        "kind": "accident",
        "title": "Two cars, right lane",
        "lat": 52.52,
        "lon": 13.405,
        "severity": "medium",
        "lanes_total": 3,
        "lanes_blocked": [3],
        "area": "north",
    });
    if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Creates an incident as `token`'s user; panics unless 201.
pub async fn create_incident(api: &Api, token: &str, overrides: Value) -> Value {
    let (status, body) = send(
        api.post("/api/incidents/", Some(token))
            .json(&incident_body(overrides)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "create incident: {body}");
    body
}

/// Moves incident `id` to `to`; returns status and body.
pub async fn transition(api: &Api, token: &str, id: i64, body: Value) -> (StatusCode, Value) {
    send(
        api.post(&format!("/api/incidents/{id}/transitions/"), Some(token))
            .json(&body),
    )
    .await
}

/// Files an appeal (anonymously with `None`); panics unless 201.
pub async fn file_appeal(api: &Api, token: Option<&str>) -> Value {
    let (status, body) = send(api.post("/api/appeals/", token).json(&json!({
        "kind": "debris",
        "description": "A tyre on the road near exit 12",
        "lat": 52.5,
        "lon": 13.4,
        "contact": "citizen@example.org",
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "file appeal: {body}");
    body
}
