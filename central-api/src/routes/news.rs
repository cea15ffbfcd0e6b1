//! `/api/news/`: articles for the public (road conditions, works, closures).
//!
//! Anyone, logged in or not, reads published articles; staff (admin, operator) also read
//! drafts, write and publish. An article keeps the time it was first published; admins
//! and the author delete it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Actor;
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::RequestId;
use crate::routes::params::{self, STAFF_ROLES};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_news, create_article))
        .routes(routes!(get_article, put_article, delete_article))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Article {
    pub id: i64,
    pub title: String,
    pub body: String,
    /// `draft` or `published`.
    pub status: String,
    pub author_id: Option<i64>,
    /// The author's display name (or username).
    pub author: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT a.id, a.title, a.body, a.status, a.author_id, \
    nullif(coalesce(nullif(u.display_name, ''), u.username), ''), a.published_at, a.created_at, a.updated_at \
    FROM news_article a LEFT JOIN app_user u ON u.id = a.author_id";

impl Article {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            title: r.get(1),
            body: r.get(2),
            status: r.get(3),
            author_id: r.get(4),
            author: r.get(5),
            published_at: r.get(6),
            created_at: r.get(7),
            updated_at: r.get(8),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleInput {
    /// 1–200 characters.
    pub title: String,
    /// 1–50000 characters.
    pub body: String,
    /// `draft` (default) or `published`.
    #[serde(default = "draft")]
    pub status: String,
}

fn draft() -> String {
    "draft".to_owned()
}

impl ArticleInput {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Validator::new();
        v.text("title", &self.title, 1, 200, false);
        v.text("body", &self.body, 1, 50_000, true);
        if !matches!(self.status.as_str(), "draft" | "published") {
            v.add("status", "must be draft or published");
        }
        v.finish()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NewsQuery {
    /// Staff only: `draft` or `published` (default: published for everyone else).
    pub status: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

fn is_staff(user: Option<&AuthUser>) -> bool {
    user.is_some_and(AuthUser::is_staff)
}

/// Articles, newest first: published ones for everyone, drafts for staff.
#[utoipa::path(get, path = "/api/news/", tag = "news", params(NewsQuery),
    security((), ("bearer" = [])),
    responses((status = 200, body = Vec<Article>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_news(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    ApiQuery(q): ApiQuery<NewsQuery>,
) -> ApiResult<axum::Json<Vec<Article>>> {
    let limit = params::limit(q.limit, 20, 100)?;
    let offset = q.offset.unwrap_or(0);
    if !(0..=100_000).contains(&offset) {
        return Err(ApiError::field(
            "query.offset",
            "must be between 0 and 100000",
        ));
    }
    let status = match q.status.as_deref() {
        None if is_staff(user.as_ref()) => None,
        None | Some("published") => Some("published"),
        Some("draft") if is_staff(user.as_ref()) => Some("draft"),
        Some("draft") => return Err(ApiError::Forbidden("only staff read drafts")),
        Some(_) => {
            return Err(ApiError::field(
                "query.status",
                "must be draft or published",
            ));
        }
    };
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "{SELECT} WHERE ($1::text IS NULL OR a.status = $1) \
                 ORDER BY a.published_at DESC NULLS FIRST, a.id DESC LIMIT $2 OFFSET $3"
            ),
            &[&status, &limit, &offset],
        )
        .await?;
    Ok(axum::Json(rows.iter().map(Article::from_row).collect()))
}

async fn fetch(db: &impl GenericClient, id: i64) -> ApiResult<Article> {
    db.query_opt(&format!("{SELECT} WHERE a.id = $1"), &[&id])
        .await?
        .map(|r| Article::from_row(&r))
        .ok_or(ApiError::NotFound)
}

/// One article (a draft is 404 to anyone but staff).
#[utoipa::path(get, path = "/api/news/{id}/", tag = "news", params(("id" = i64, Path)),
    security((), ("bearer" = [])),
    responses((status = 200, body = Article), (status = 404, body = crate::error::ErrorBody)))]
async fn get_article(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<axum::Json<Article>> {
    let db = state.db().await?;
    let a = fetch(&db, id).await?;
    if a.status != "published" && !is_staff(user.as_ref()) {
        return Err(ApiError::NotFound);
    }
    Ok(axum::Json(a))
}

/// Write an article (staff).
#[utoipa::path(post, path = "/api/news/", tag = "news", security(("bearer" = [])),
    request_body = ArticleInput,
    responses((status = 201, body = Article), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_article(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiJson(body): ApiJson<ArticleInput>,
) -> ApiResult<Response> {
    user.require(&STAFF_ROLES)?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO news_article (title, body, status, author_id, published_at) \
             VALUES ($1, $2, $3, $4, CASE WHEN $3 = 'published' THEN now() END) RETURNING id",
            &[&body.title, &body.body, &body.status, &user.id],
        )
        .await?
        .get(0);
    let a = fetch(&tx, id).await?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "news_article.create",
        "news_article",
        id,
        None,
        &a,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(a)).into_response())
}

/// Replace an article (staff); publishing stamps `published_at` the first time.
#[utoipa::path(put, path = "/api/news/{id}/", tag = "news", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ArticleInput,
    responses((status = 200, body = Article), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn put_article(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ArticleInput>,
) -> ApiResult<axum::Json<Article>> {
    user.require(&STAFF_ROLES)?;
    body.validate()?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let before = fetch(&tx, id).await?;
    tx.execute(
        "UPDATE news_article SET title = $2, body = $3, status = $4, updated_at = now(), \
           published_at = CASE WHEN $4 = 'published' THEN coalesce(published_at, now()) ELSE published_at END \
         WHERE id = $1",
        &[&id, &body.title, &body.body, &body.status],
    )
    .await?;
    let a = fetch(&tx, id).await?;
    params::commit_audited(
        tx,
        &Actor::user(&user, &rid),
        "news_article.update",
        "news_article",
        id,
        Some(&before),
        &a,
    )
    .await?;
    Ok(axum::Json(a))
}

/// Delete an article (an admin, or the staff member who wrote it).
#[utoipa::path(delete, path = "/api/news/{id}/", tag = "news", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_article(
    State(state): State<AppState>,
    user: AuthUser,
    rid: RequestId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    user.require(&STAFF_ROLES)?;
    let before = fetch(&state.db().await?, id).await?;
    if user.role != Role::Admin && before.author_id != Some(user.id) {
        return Err(ApiError::Forbidden(
            "only an admin or the author may delete it",
        ));
    }
    let actor = Actor::user(&user, &rid);
    params::delete_audited(&state, &actor, "news_article", "id", &id, id.to_string()).await
}
