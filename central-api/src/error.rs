//! [`ApiError`]: the one error type of every handler, and how it becomes a JSON response.
//!
//! Clients get a stable `error` code, a human `message` and, for bad input, the fields at
//! fault. Internal errors are logged with their detail and answered with generic text:
//! database error messages never reach a client. Database constraint violations that a
//! client can cause are mapped to the field at fault by constraint name
//! ([`CONSTRAINT_FIELDS`]).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

/// One bad field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the request: `title`, `lanes_blocked[2]`, `query.limit`, `path.id`.
    pub field: String,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `validation`, `malformed_json`, `unsupported_media_type`,
    /// `unauthorized`, `token_revoked`, `forbidden`, `not_found`, `conflict`, `rate_limited`,
    /// `unavailable`, `timeout`, `internal`.
    pub error: String,
    pub message: String,
    /// Present when fields are at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: well-formed request with bad values.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// 400: the body is not JSON, or a query or path parameter cannot be parsed.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        fields: Vec<FieldError>,
    },
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("authentication required")]
    Unauthorized(&'static str),
    /// 401: a well-signed access token that no longer stands (its user logged out
    /// everywhere, changed password, role or patrol, or was disabled or deleted).
    #[error("access token revoked")]
    TokenRevoked(&'static str),
    #[error("not allowed")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    /// 409: conflicts with the current state (a taken name, an illegal transition).
    #[error("{message}")]
    Conflict {
        message: String,
        fields: Vec<FieldError>,
    },
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// 503: the database is unreachable or the pool is exhausted.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation error on one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// A conflict naming one field.
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Conflict {
            fields: vec![FieldError {
                field: field.into(),
                message: message.clone(),
            }],
            message,
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) | Self::TokenRevoked(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let (code, message, fields) = match self {
            Self::Validation(fields) => {
                ("validation", "invalid request".to_owned(), fields.clone())
            }
            Self::BadRequest {
                code,
                message,
                fields,
            } => (*code, message.clone(), fields.clone()),
            Self::UnsupportedMediaType => ("unsupported_media_type", self.to_string(), vec![]),
            Self::Unauthorized(why) => ("unauthorized", (*why).to_owned(), vec![]),
            Self::TokenRevoked(why) => ("token_revoked", (*why).to_owned(), vec![]),
            Self::Forbidden(why) => ("forbidden", (*why).to_owned(), vec![]),
            Self::NotFound => ("not_found", "not found".to_owned(), vec![]),
            Self::Conflict { message, fields } => ("conflict", message.clone(), fields.clone()),
            Self::RateLimited { .. } => ("rate_limited", "too many requests".to_owned(), vec![]),
            Self::Unavailable(_) => (
                "unavailable",
                "the service is temporarily unavailable; try again".to_owned(),
                vec![],
            ),
            Self::Internal(_) => ("internal", "internal error".to_owned(), vec![]),
        };
        ErrorBody {
            error: code.to_owned(),
            message,
            fields,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            Self::Unavailable(e) => tracing::warn!(error = format!("{e:#}"), "service unavailable"),
            _ => {}
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        match &self {
            Self::RateLimited { retry_after } => {
                // Whole seconds, rounded up: "0" would invite an immediate retry.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Self::Unauthorized(_) | Self::TokenRevoked(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// Constraint name → (field, message) for violations a client's input can cause.
/// Modules add their constraints here (names from `migrations/*.sql`).
pub const CONSTRAINT_FIELDS: &[(&str, &str, &str)] = &[
    ("app_user_username_key", "username", "is already taken"),
    ("app_user_role_check", "role", "is not a role"),
    ("app_user_patrol_id_fkey", "patrol_id", "no such patrol"),
    ("patrol_call_sign_key", "call_sign", "is already taken"),
    (
        "incident_assigned_patrol_id_fkey",
        "assigned_patrol_id",
        "no such patrol",
    ),
    (
        "incident_related_incident_id_fkey",
        "related_incident_id",
        "no such incident",
    ),
    ("incident_lat_check", "lat", "must be between -90 and 90"),
    ("incident_lon_check", "lon", "must be between -180 and 180"),
    ("appeal_incident_id_fkey", "incident_id", "no such incident"),
    ("appeal_lat_check", "lat", "must be between -90 and 90"),
    ("appeal_lon_check", "lon", "must be between -180 and 180"),
    ("camera_name_key", "name", "is already taken"),
    ("camera_lat_check", "lat", "must be between -90 and 90"),
    ("camera_lon_check", "lon", "must be between -180 and 180"),
    ("detector_key_key", "detector_id", "is already registered"),
    ("detector_lat_check", "lat", "must be between -90 and 90"),
    ("detector_lon_check", "lon", "must be between -180 and 180"),
    ("edge_node_pkey", "edge_id", "is already registered"),
    (
        "chat_room_incident_id_fkey",
        "incident_id",
        "no such incident",
    ),
    (
        "chat_room_incident_key",
        "incident_id",
        "already has a room",
    ),
    ("chat_member_user_id_fkey", "members", "no such user"),
    ("patrol_shift_patrol_id_fkey", "patrol_id", "no such patrol"),
    (
        "patrol_shift_no_overlap",
        "starts_at",
        "overlaps another shift of this patrol",
    ),
    (
        "road_work_no_overlap",
        "starts_at",
        "overlaps other works on this road section",
    ),
];

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if let Some(&(_, field, message)) = db
                .constraint()
                .and_then(|c| CONSTRAINT_FIELDS.iter().find(|(name, _, _)| *name == c))
            {
                return if *code == SqlState::UNIQUE_VIOLATION
                    || *code == SqlState::EXCLUSION_VIOLATION
                {
                    ApiError::conflict(field, message)
                } else {
                    ApiError::field(field, message)
                };
            }
            // Class 22, data exceptions: input the validation let through but PostgreSQL
            // refuses (a NUL character in text, a number out of a column's range). The
            // client's fault, so a 400, not a 500.
            if code.code().starts_with("22") {
                tracing::debug!(code = code.code(), "data exception from client input");
                return ApiError::BadRequest {
                    code: "validation",
                    message: "a value is not acceptable (out of range or an invalid character)"
                        .to_owned(),
                    fields: vec![],
                };
            }
        }
        // A lost or unreachable server is a 503 (retry later); anything else, such as a
        // type mismatch between Rust and SQL, is a bug: 500.
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            return ApiError::Unavailable(e.into());
        }
        ApiError::Internal(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => ApiError::Unavailable(other.into()),
        }
    }
}

/// Collects field errors, then fails once with all of them.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Checks a string's length in characters, and that it holds no control characters
    /// other than newlines and tabs (`multiline`) or none at all.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize, multiline: bool) {
        let n = value.chars().count();
        if n < min {
            self.add(
                field,
                if min == 1 {
                    "must not be empty".to_owned()
                } else {
                    format!("must be at least {min} characters")
                },
            );
        } else if n > max {
            self.add(field, format!("must be at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')))
        {
            self.add(field, "must not contain control characters");
        }
    }

    /// [`text`](Self::text) for an optional value.
    pub fn opt_text(&mut self, field: &str, value: Option<&str>, max: usize, multiline: bool) {
        if let Some(v) = value {
            self.text(field, v, 0, max, multiline);
        }
    }

    pub fn range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.add(field, format!("must be between {min} and {max}"));
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
