//! The authorization matrix: every route central-api's core owns, called by every role and
//! anonymously, each answer checked against who is allowed. "Allowed" means the request got
//! past authorization (any status but 401/403); "refused" means 401 (anonymous) or 403.
//! Then cross-user probes: a user reaching for another user's data.
#![allow(clippy::unwrap_used)]

mod common;

use central_api::auth::Role;
use common::{Api, Session, TestApp, create_incident, file_appeal, send, transition, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The callers: every role, then anonymous.
const CALLERS: [Option<Role>; 6] = [
    Some(Role::Admin),
    Some(Role::Operator),
    Some(Role::Analyst),
    Some(Role::Patrol),
    Some(Role::Public),
    None,
];

struct Fixture {
    app: &'static TestApp,
    api: Api,
    sessions: Vec<(Role, Session)>,
    operator: Session,
    patrol_id: i64,
    public: Session,
}

impl Fixture {
    async fn new() -> Self {
        let app = TestApp::shared();
        let api = app.api();
        let patrol_id = app.create_patrol(&unique("P"));
        let mut sessions = Vec::new();
        for role in Role::ALL {
            let s = if role == Role::Patrol {
                api.login_as_patrol(patrol_id).await
            } else {
                api.login_as(role).await
            };
            sessions.push((role, s));
        }
        let operator = sessions[1].1.clone();
        let public = sessions[4].1.clone();
        Self {
            app,
            api,
            sessions,
            operator,
            patrol_id,
            public,
        }
    }

    fn token(&self, caller: Option<Role>) -> Option<&str> {
        let role = caller?;
        self.sessions
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, s)| s.token.as_str())
    }

    /// A dispatched incident assigned to the fixture's patrol.
    async fn incident(&self) -> i64 {
        let op = &self.operator.token;
        let id = create_incident(&self.api, op, json!({})).await["id"]
            .as_i64()
            .unwrap();
        transition(&self.api, op, id, json!({"to": "verified"})).await;
        let (status, body) = transition(
            &self.api,
            op,
            id,
            json!({"to": "dispatched", "assigned_patrol_id": self.patrol_id}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    /// A user nobody but the admin may touch.
    async fn victim(&self) -> i64 {
        self.api.login_as(Role::Analyst).await.id
    }
}

/// One row of the matrix: a request (made fresh for each caller) and who may make it.
struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    allowed: &'static [Role],
    anonymous_allowed: bool,
}

#[tokio::test]
async fn every_route_times_every_role() {
    let f = Fixture::new().await;
    use Role::*;
    let all: &[Role] = &[Admin, Operator, Analyst, Patrol, Public];
    let mut checked = 0;
    for caller in CALLERS {
        let incident = f.incident().await;
        let appeal = file_appeal(&f.api, Some(&f.public.token)).await["id"]
            .as_i64()
            .unwrap();
        let victim = f.victim().await;
        let cases = [
            Case {
                method: Method::POST,
                path: "/api/users/".into(),
                body: Some(json!({"username": unique("signup"), "password": common::PASSWORD})),
                allowed: all,
                anonymous_allowed: true,
            },
            Case {
                method: Method::POST,
                path: "/api/users/".into(),
                body: Some(
                    json!({"username": unique("staff"), "password": common::PASSWORD, "role": "operator"}),
                ),
                allowed: &[Admin],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: "/api/users/".into(),
                body: None,
                allowed: &[Admin],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: "/api/users/me/".into(),
                body: None,
                allowed: all,
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: format!("/api/users/{victim}/"),
                body: None,
                allowed: &[Admin, Operator],
                anonymous_allowed: false,
            },
            Case {
                method: Method::PUT,
                path: format!("/api/users/{victim}/"),
                body: Some(json!({"display_name": "changed"})),
                allowed: &[Admin],
                anonymous_allowed: false,
            },
            Case {
                method: Method::DELETE,
                path: format!("/api/users/{victim}/"),
                body: None,
                allowed: &[Admin],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: "/api/incidents/".into(),
                body: None,
                allowed: &[Admin, Operator, Analyst, Patrol],
                anonymous_allowed: false,
            },
            Case {
                method: Method::POST,
                path: "/api/incidents/".into(),
                body: Some(common::incident_body(json!({}))),
                allowed: &[Admin, Operator, Patrol],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: format!("/api/incidents/{incident}/"),
                body: None,
                allowed: &[Admin, Operator, Analyst, Patrol],
                anonymous_allowed: false,
            },
            Case {
                method: Method::PATCH,
                path: format!("/api/incidents/{incident}/"),
                body: Some(json!({"severity": "high"})),
                allowed: &[Admin, Operator, Patrol],
                anonymous_allowed: false,
            },
            Case {
                method: Method::POST,
                path: format!("/api/incidents/{incident}/transitions/"),
                body: Some(json!({"to": "on_scene"})),
                allowed: &[Admin, Operator, Patrol],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: format!("/api/incidents/{incident}/history/"),
                body: None,
                allowed: &[Admin, Operator, Analyst, Patrol],
                anonymous_allowed: false,
            },
            Case {
                method: Method::POST,
                path: "/api/appeals/".into(),
                body: Some(json!({"kind": "other", "description": "x"})),
                allowed: all,
                anonymous_allowed: true,
            },
            Case {
                method: Method::GET,
                path: "/api/appeals/".into(),
                body: None,
                allowed: &[Admin, Operator, Analyst, Public],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: format!("/api/appeals/{appeal}/"),
                body: None,
                allowed: &[Admin, Operator, Analyst, Public],
                anonymous_allowed: false,
            },
            Case {
                method: Method::POST,
                path: format!("/api/appeals/{appeal}/status/"),
                body: Some(json!({"status": "acknowledged"})),
                allowed: &[Admin, Operator],
                anonymous_allowed: false,
            },
            Case {
                method: Method::POST,
                path: format!("/api/appeals/{appeal}/incident/"),
                body: Some(json!({})),
                allowed: &[Admin, Operator],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: "/api/audit/".into(),
                body: None,
                allowed: &[Admin],
                anonymous_allowed: false,
            },
            Case {
                method: Method::GET,
                path: "/health".into(),
                body: None,
                allowed: all,
                anonymous_allowed: true,
            },
            Case {
                method: Method::GET,
                path: "/ready".into(),
                body: None,
                allowed: all,
                anonymous_allowed: true,
            },
            Case {
                method: Method::GET,
                path: "/metrics".into(),
                body: None,
                allowed: all,
                anonymous_allowed: true,
            },
            Case {
                method: Method::GET,
                path: "/api/openapi.json".into(),
                body: None,
                allowed: all,
                anonymous_allowed: true,
            },
            Case {
                method: Method::GET,
                path: "/api/docs".into(),
                body: None,
                allowed: all,
                anonymous_allowed: true,
            },
        ];
        for case in cases {
            let mut rb = f
                .api
                .request(case.method.clone(), &case.path, f.token(caller));
            if let Some(b) = &case.body {
                rb = rb.json(b);
            }
            let (status, body) = send(rb).await;
            let who = caller.map_or("anonymous", Role::as_str);
            let allowed = match caller {
                Some(role) => case.allowed.contains(&role),
                None => case.anonymous_allowed,
            };
            assert!(
                status != StatusCode::INTERNAL_SERVER_ERROR,
                "{} {} as {who}: {body}",
                case.method,
                case.path
            );
            if allowed {
                assert!(
                    status.is_success(),
                    "{} {} as {who} should be allowed: {status} {body}",
                    case.method,
                    case.path
                );
            } else {
                let expected = if caller.is_none() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(
                    status, expected,
                    "{} {} as {who} should be refused: {body}",
                    case.method, case.path
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 24 * CALLERS.len());
}

#[tokio::test]
async fn cross_user_probes_are_refused() {
    let f = Fixture::new().await;
    let api = &f.api;
    let other_patrol = f.app.create_patrol(&unique("P"));
    let stranger = api.login_as_patrol(other_patrol).await;
    let incident = f.incident().await;
    // A patrol reading or changing another patrol's incident.
    for (method, path, body) in [
        (Method::GET, format!("/api/incidents/{incident}/"), None),
        (
            Method::GET,
            format!("/api/incidents/{incident}/history/"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/incidents/{incident}/"),
            Some(json!({"lanes_blocked": []})),
        ),
        (
            Method::POST,
            format!("/api/incidents/{incident}/transitions/"),
            Some(json!({"to": "on_scene"})),
        ),
    ] {
        let mut rb = api.request(method.clone(), &path, Some(&stranger.token));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let (status, _) = send(rb).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A public user editing an incident, or reading another citizen's appeal.
    let (status, _) = send(
        api.patch(
            &format!("/api/incidents/{incident}/"),
            Some(&f.public.token),
        )
        .json(&json!({"title": "defaced"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = transition(api, &f.public.token, incident, json!({"to": "on_scene"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other_citizen = api.login_as(Role::Public).await;
    let appeal = file_appeal(api, Some(&other_citizen.token)).await["id"]
        .as_i64()
        .unwrap();
    let (status, _) =
        send(api.get(&format!("/api/appeals/{appeal}/"), Some(&f.public.token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Users reaching for other accounts.
    for (_, s) in &f.sessions {
        if s.role == Role::Admin {
            continue;
        }
        let (status, _) = send(
            api.put(&format!("/api/users/{}/", other_citizen.id), Some(&s.token))
                .json(&json!({"email": "mine@example.org"})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} editing another user",
            s.role
        );
        let (status, _) = send(
            api.put(&format!("/api/users/{}/", s.id), Some(&s.token))
                .json(&json!({"role": "admin"})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} promoting themself",
            s.role
        );
    }
    // A token signed with another key is nobody.
    let forged = {
        let other =
            central_api::auth::Tokens::new(&[1u8; 32], &central_api::config::AuthConfig::default());
        other
            .access_token(
                &central_api::auth::AuthUser {
                    id: f.public.id,
                    role: Role::Admin,
                    patrol_id: None,
                },
                0,
            )
            .unwrap()
    };
    let (status, _) = send(api.get("/api/audit/", Some(&forged))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
