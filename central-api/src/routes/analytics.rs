//! `/api/analytics/`: accident statistics from the incidents, traffic statistics from the
//! roll-ups, over a time range, computed in SQL. Read by admin, operator and analyst.
//!
//! Hours of day and days of week are counted in `tz` (an IANA zone name, default UTC).
//! Incidents count at the time they occurred (T0) or, when unknown, were reported (T1).
//! A site is congested during a 15-minute bucket when most of its samples in that bucket
//! have level of service E or F.

use axum::extract::State;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::params::{self, DESK_ROLES};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(accidents))
        .routes(routes!(traffic))
}

const MAX_DAYS: i64 = 366;
/// Areas listed, most incidents first.
const TOP_AREAS: usize = 50;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccidentQuery {
    pub from: DateTime<Utc>,
    /// At most 366 days after `from`.
    pub to: DateTime<Utc>,
    /// Only this incident kind (`accident`, `breakdown`, …); default all.
    pub kind: Option<String>,
    /// IANA time zone for hours and weekdays; default `UTC`.
    pub tz: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccidentStats {
    pub total: i64,
    pub by_kind: Vec<Count>,
    pub by_severity: Vec<Count>,
    /// 24 counts, hour 0 first.
    pub by_hour: Vec<i64>,
    /// 7 counts, Monday first.
    pub by_weekday: Vec<i64>,
    /// The areas with most incidents (`""`: none given).
    pub by_area: Vec<Count>,
}

/// Checks `tz` against PostgreSQL's zone list (naming `query.tz`).
async fn time_zone(db: &impl GenericClient, tz: Option<String>) -> ApiResult<String> {
    let tz = tz.unwrap_or_else(|| "UTC".to_owned());
    let known: bool = db
        .query_one(
            "SELECT length($1) <= 64 AND EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
            &[&tz],
        )
        .await?
        .get(0);
    if !known {
        return Err(ApiError::field("query.tz", "is not a known time zone"));
    }
    Ok(tz)
}

/// Incidents by kind, severity, hour of day, day of week and area.
#[utoipa::path(get, path = "/api/analytics/accidents/", tag = "analytics", security(("bearer" = [])),
    params(AccidentQuery),
    responses((status = 200, body = AccidentStats), (status = 422, body = crate::error::ErrorBody)))]
async fn accidents(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<AccidentQuery>,
) -> ApiResult<ApiJson<AccidentStats>> {
    user.require(&DESK_ROLES)?;
    let mut v = Validator::new();
    params::time_range(&mut v, q.from, q.to, MAX_DAYS);
    v.opt_text("query.kind", q.kind.as_deref(), 32, false);
    v.finish()?;
    let db = state.db().await?;
    let tz = time_zone(&db, q.tz).await?;
    let rows = db
        .query(
            "WITH i AS (SELECT kind, severity, coalesce(area, '') AS area, \
                 coalesce(t0_occurred_at, t1_reported_at) AT TIME ZONE $4 AS local \
               FROM incident \
               WHERE coalesce(t0_occurred_at, t1_reported_at) >= $1 \
                 AND coalesce(t0_occurred_at, t1_reported_at) < $2 \
                 AND ($3::text IS NULL OR kind = $3)) \
             SELECT 'kind', kind, count(*) FROM i GROUP BY kind \
             UNION ALL SELECT 'severity', severity, count(*) FROM i GROUP BY severity \
             UNION ALL SELECT 'hour', extract(hour FROM local)::int::text, count(*) FROM i GROUP BY 2 \
             UNION ALL SELECT 'weekday', extract(isodow FROM local)::int::text, count(*) FROM i GROUP BY 2 \
             UNION ALL SELECT 'area', area, count(*) FROM i GROUP BY area",
            &[&q.from, &q.to, &q.kind, &tz],
        )
        .await?;
    let mut stats = AccidentStats {
        total: 0,
        by_kind: vec![],
        by_severity: vec![],
        by_hour: vec![0; 24],
        by_weekday: vec![0; 7],
        by_area: vec![],
    };
    for r in &rows {
        let (dim, key, count): (&str, String, i64) = (r.get(0), r.get(1), r.get(2));
        let slot = |n: usize| key.parse::<usize>().ok().filter(|i| *i < n);
        match dim {
            "kind" => {
                stats.total += count;
                stats.by_kind.push(Count { key, count });
            }
            "severity" => stats.by_severity.push(Count { key, count }),
            "hour" => {
                if let Some(h) = slot(24) {
                    stats.by_hour[h] = count;
                }
            }
            "weekday" => {
                if let Some(d) = slot(8).filter(|d| *d >= 1) {
                    stats.by_weekday[d - 1] = count;
                }
            }
            _ => stats.by_area.push(Count { key, count }),
        }
    }
    for list in [
        &mut stats.by_kind,
        &mut stats.by_severity,
        &mut stats.by_area,
    ] {
        list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    }
    stats.by_area.truncate(TOP_AREAS);
    Ok(ApiJson(stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrafficStatsQuery {
    pub site: String,
    pub from: DateTime<Utc>,
    /// At most 366 days after `from`.
    pub to: DateTime<Utc>,
    /// IANA time zone for hours of day; default `UTC`.
    pub tz: Option<String>,
}

/// One hour of the day, averaged over the days of the range.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HourProfile {
    pub hour: i32,
    /// Mean vehicles per hour over the site's lanes.
    pub volume_avg: Option<f64>,
    /// Volume-weighted mean speed, km/h.
    pub speed_kmh: Option<f64>,
    /// Hourly buckets averaged.
    pub buckets: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrafficStats {
    pub site_id: String,
    pub total_volume: i64,
    /// Hours of day with data, hour 0 first.
    pub hourly: Vec<HourProfile>,
    /// The three hours of day with the highest mean volume, busiest first.
    pub peak_hours: Vec<i32>,
    /// The share of samples at each level of service, A to F (sums to 1 when any).
    pub los_share: [f64; 6],
    /// Time the site spent congested, seconds (15-minute buckets).
    pub congested_s: i64,
}

/// Peak hours, volume and speed profiles, LOS share and congestion time of a site.
#[utoipa::path(get, path = "/api/analytics/traffic/", tag = "analytics", security(("bearer" = [])),
    params(TrafficStatsQuery),
    responses((status = 200, body = TrafficStats), (status = 422, body = crate::error::ErrorBody)))]
async fn traffic(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<TrafficStatsQuery>,
) -> ApiResult<ApiJson<TrafficStats>> {
    user.require(&DESK_ROLES)?;
    let mut v = Validator::new();
    params::ident(&mut v, "query.site", &q.site);
    params::time_range(&mut v, q.from, q.to, MAX_DAYS);
    v.finish()?;
    let db = state.db().await?;
    let tz = time_zone(&db, q.tz).await?;
    let hourly: Vec<HourProfile> = db
        .query(
            "WITH b AS (SELECT bucket, sum(volume_sum) AS v, sum(speed_sum) AS ss, sum(speed_n) AS sn \
               FROM traffic_1h WHERE site_id = $1 AND bucket >= $2 AND bucket < $3 GROUP BY bucket) \
             SELECT extract(hour FROM bucket AT TIME ZONE $4)::int, avg(v)::float8, \
               (sum(ss) / nullif(sum(sn), 0))::float8, count(*) \
             FROM b GROUP BY 1 ORDER BY 1",
            &[&q.site, &q.from, &q.to, &tz],
        )
        .await?
        .iter()
        .map(|r| HourProfile {
            hour: r.get(0),
            volume_avg: r.get(1),
            speed_kmh: r.get(2),
            buckets: r.get(3),
        })
        .collect();
    let totals = db
        .query_one(
            "SELECT coalesce(sum(volume_sum), 0)::bigint, coalesce(sum(los_a), 0)::float8, \
               coalesce(sum(los_b), 0)::float8, coalesce(sum(los_c), 0)::float8, \
               coalesce(sum(los_d), 0)::float8, coalesce(sum(los_e), 0)::float8, \
               coalesce(sum(los_f), 0)::float8 \
             FROM traffic_1h WHERE site_id = $1 AND bucket >= $2 AND bucket < $3",
            &[&q.site, &q.from, &q.to],
        )
        .await?;
    let los: [f64; 6] = std::array::from_fn(|i| totals.get::<_, f64>(i + 1));
    let all: f64 = los.iter().sum();
    let congested_buckets: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT bucket FROM traffic_15m \
               WHERE site_id = $1 AND bucket >= $2 AND bucket < $3 GROUP BY bucket \
               HAVING 2 * sum(los_e + los_f) > sum(los_a + los_b + los_c + los_d + los_e + los_f)) c",
            &[&q.site, &q.from, &q.to],
        )
        .await?
        .get(0);
    Ok(ApiJson(TrafficStats {
        site_id: q.site,
        total_volume: totals.get(0),
        peak_hours: peak_hours(&hourly),
        hourly,
        los_share: los.map(|n| if all > 0.0 { n / all } else { 0.0 }),
        congested_s: congested_buckets * 900,
    }))
}

/// The three busiest hours of day, busiest first.
fn peak_hours(hourly: &[HourProfile]) -> Vec<i32> {
    let mut by_volume: Vec<(f64, i32)> = hourly
        .iter()
        .filter_map(|h| h.volume_avg.map(|v| (v, h.hour)))
        .collect();
    by_volume.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    by_volume.into_iter().take(3).map(|(_, h)| h).collect()
}
