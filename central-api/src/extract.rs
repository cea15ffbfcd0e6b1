//! Request extractors whose failures are [`ApiError`]s naming the field at fault, instead
//! of axum's plain-text rejections.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON request body (`Content-Type: application/json`), deserialized with the path of
/// the first bad field, or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest {
                code: "bad_body",
                message: e.body_text(),
                fields: vec![],
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes a JSON document, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        use serde_json::error::Category;
        match inner.classify() {
            Category::Data => ApiError::Validation(vec![FieldError {
                field: data_field(&path, &message),
                message,
            }]),
            Category::Syntax | Category::Eof | Category::Io => malformed(&inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        code: "malformed_json",
        message: "the request body is not valid JSON".to_owned(),
        fields: vec![FieldError {
            field: "body".to_owned(),
            message: e.to_string(),
        }],
    }
}

/// For a missing field serde reports the enclosing object; name the field itself.
/// (For an unknown field the path already ends with it.)
fn data_field(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (missing, path) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), p) => format!("{p}.{name}"),
        (None, "." | "") => "body".to_owned(),
        (None, p) => p.to_owned(),
    }
}

/// serde_json appends " at line 1 column 17"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters, deserialized with the name of the bad parameter (`query.limit`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                let name = data_field(&path, &message);
                ApiError::BadRequest {
                    code: "validation",
                    message: "bad query parameter".to_owned(),
                    fields: vec![FieldError {
                        field: format!("query.{}", if name == "body" { "?" } else { &name }),
                        message,
                    }],
                }
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Path parameters; a value that does not parse is a 400 naming it (`path.id`), not a 500.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let kind = e.into_kind();
                let field = match &kind {
                    axum::extract::path::ErrorKind::ParseErrorAtKey { key, .. }
                    | axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => {
                        format!("path.{key}")
                    }
                    _ => "path".to_owned(),
                };
                Err(ApiError::BadRequest {
                    code: "validation",
                    message: "bad path parameter".to_owned(),
                    fields: vec![FieldError {
                        field,
                        message: kind.to_string(),
                    }],
                })
            }
            Err(other) => Err(ApiError::internal(anyhow::anyhow!(
                "path extraction: {other}"
            ))),
        }
    }
}

/// For `PATCH`/`PUT` bodies: tells an absent field (`None`) from an explicit `null`
/// (`Some(None)`). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        title: String,
        lanes: Vec<u8>,
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(f) => f.into_iter().map(|f| f.field).collect(),
            ApiError::BadRequest { fields, .. } => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_errors_name_fields() {
        let e = parse_json::<Probe>(br#"{"title": 5, "lanes": []}"#).unwrap_err();
        assert_eq!(fields(e), ["title"]);
        let e = parse_json::<Probe>(br#"{"title": "x", "lanes": [1, 300]}"#).unwrap_err();
        assert_eq!(fields(e), ["lanes[1]"]);
        let e = parse_json::<Probe>(br#"{"title": "x", "lanes": [], "extra": 1}"#).unwrap_err();
        assert_eq!(fields(e), ["extra"]);
        let e = parse_json::<Probe>(br#"{"title": "x"}"#).unwrap_err();
        assert_eq!(fields(e), ["lanes"]);
        let e = parse_json::<Probe>(br#"{"title": "x", "#).unwrap_err();
        assert!(matches!(
            e,
            ApiError::BadRequest {
                code: "malformed_json",
                ..
            }
        ));
        let e = parse_json::<Probe>(br#"{"title": "x", "lanes": []} trailing"#).unwrap_err();
        assert!(matches!(
            e,
            ApiError::BadRequest {
                code: "malformed_json",
                ..
            }
        ));
    }
}
