//! `/api/traffic/`: samples and roll-ups by site, detector, lane and time range, and the
//! live state of a site.
//!
//! Which table answers (`resolution=auto`, the default) depends on the span `to - from`:
//! up to 6 hours the raw samples (`traffic_sample`), up to 7 days the 15-minute roll-up
//! (`traffic_15m`), beyond that the hourly one (`traffic_1h`); `resolution=raw|15m|1h`
//! overrides the choice. Spans are limited to 366 days. Roll-up values are computed from
//! the stored sums and counts (volume = Σ volume, occupancy = Σ occupancy / n, speed =
//! Σ speed·count / Σ count, flow = volume · 3600 / observed seconds), summed over edges.
//!
//! Pages hold at most `limit` points and end on a whole bucket; `next_from` is where the
//! next page starts.
//!
//! Read by admin, operator, analyst and patrol.

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, Validator};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::params::{self, FIELD_ROLES};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query_traffic))
        .routes(routes!(live))
}

/// Spans up to this are answered from raw samples.
pub const RAW_MAX_SPAN: Duration = Duration::hours(6);
/// Spans up to this are answered from the 15-minute roll-up; longer ones from the hourly.
pub const ROLLUP_15M_MAX_SPAN: Duration = Duration::days(7);
/// The longest span a query may cover.
pub const MAX_SPAN_DAYS: i64 = 366;
/// A lane whose latest sample is older than this is not live.
pub const LIVE_WINDOW_MIN: i64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum Resolution {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "15m")]
    Min15,
    #[serde(rename = "1h")]
    Hour1,
}

impl Resolution {
    /// The resolution `Auto` stands for over `span`.
    pub fn choose(self, span: Duration) -> Resolution {
        match self {
            Resolution::Auto if span <= RAW_MAX_SPAN => Resolution::Raw,
            Resolution::Auto if span <= ROLLUP_15M_MAX_SPAN => Resolution::Min15,
            Resolution::Auto => Resolution::Hour1,
            other => other,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrafficQuery {
    /// The site (required).
    pub site: String,
    pub detector: Option<String>,
    /// Lane number (≥ 1).
    pub lane: Option<i16>,
    /// Start, inclusive (RFC 3339).
    pub from: DateTime<Utc>,
    /// End, exclusive (RFC 3339); at most 366 days after `from`.
    pub to: DateTime<Utc>,
    /// `auto` (default), `raw`, `15m`, `1h`.
    #[param(value_type = Option<String>)]
    pub resolution: Option<Resolution>,
    /// Points per page, 1–10000, default 2000.
    pub limit: Option<i64>,
}

/// One bucket of one lane: a raw sample or a roll-up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TrafficPoint {
    pub bucket: DateTime<Utc>,
    /// The bucket's length: the sample interval, 900 or 3600.
    pub interval_s: i32,
    pub detector_id: String,
    pub lane: i16,
    /// Vehicles; null when not observed (never 0 for "unknown").
    pub volume: Option<i64>,
    /// Vehicles per hour over the observed time.
    pub flow_vph: Option<f64>,
    /// Fraction 0–1.
    pub occupancy: Option<f64>,
    /// Mean speed (volume-weighted in roll-ups), km/h.
    pub speed_kmh: Option<f64>,
    pub class_motorcycle: Option<i64>,
    pub class_short: Option<i64>,
    pub class_medium: Option<i64>,
    pub class_long: Option<i64>,
    /// A raw sample's level of service (A–F); null for roll-ups (see `los_counts`).
    pub los: Option<String>,
    /// Roll-ups: how many samples had each level of service A–F.
    pub los_counts: Option<[i64; 6]>,
    pub samples_expected: i64,
    pub samples_received: i64,
    /// Quality bits (a roll-up ORs its samples').
    pub quality: i32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrafficPage {
    /// `raw`, `15m` or `1h`: the table that answered.
    pub resolution: Resolution,
    pub points: Vec<TrafficPoint>,
    /// When the page was cut: the `from` of the next page.
    pub next_from: Option<DateTime<Utc>>,
}

/// Samples or roll-ups of a site.
#[utoipa::path(get, path = "/api/traffic/", tag = "traffic", params(TrafficQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TrafficPage),
        (status = 400, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn query_traffic(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<TrafficQuery>,
) -> ApiResult<ApiJson<TrafficPage>> {
    user.require(&FIELD_ROLES)?;
    let mut v = Validator::new();
    params::ident(&mut v, "query.site", &q.site);
    if let Some(d) = &q.detector {
        params::ident(&mut v, "query.detector", d);
    }
    if q.lane.is_some_and(|l| l < 1) {
        v.add("query.lane", "must be at least 1");
    }
    let span = params::time_range(&mut v, q.from, q.to, MAX_SPAN_DAYS);
    v.finish()?;
    let limit = params::limit(q.limit, 2000, 10_000)?;
    let resolution = q.resolution.unwrap_or(Resolution::Auto).choose(span);
    let db = state.db().await?;
    let (points, next_from) = fetch(&db, resolution, &q, limit).await?;
    Ok(ApiJson(TrafficPage {
        resolution,
        points,
        next_from,
    }))
}

const RAW_SQL: &str = "SELECT bucket_start, interval_s, detector_id, lane, volume::bigint, \
    flow_vph::float8, occupancy::float8, speed_avg_kmh::float8, class_motorcycle::bigint, \
    class_short::bigint, class_medium::bigint, class_long::bigint, los::text, \
    samples_expected::bigint, samples_received::bigint, quality \
    FROM traffic_sample \
    WHERE site_id = $1 AND bucket_start >= $2 AND bucket_start < $3 \
      AND ($4::text IS NULL OR detector_id = $4) AND ($5::int2 IS NULL OR lane = $5) \
    ORDER BY bucket_start, detector_id, lane, edge_id LIMIT $6";

/// The roll-up query over `table` (a fixed name, never input): sums across edges.
fn rollup_sql(table: &str) -> String {
    format!(
        "SELECT bucket, detector_id, lane, sum(observed_s)::bigint, sum(volume_sum)::bigint, \
         sum(volume_n)::bigint, sum(occupancy_sum), sum(occupancy_n)::bigint, sum(speed_sum), \
         sum(speed_n)::bigint, sum(class_motorcycle)::bigint, sum(class_short)::bigint, \
         sum(class_medium)::bigint, sum(class_long)::bigint, sum(samples_expected)::bigint, \
         sum(samples_received)::bigint, sum(los_a)::bigint, sum(los_b)::bigint, \
         sum(los_c)::bigint, sum(los_d)::bigint, sum(los_e)::bigint, sum(los_f)::bigint, \
         bit_or(quality_any) \
         FROM {table} \
         WHERE site_id = $1 AND bucket >= $2 AND bucket < $3 \
           AND ($4::text IS NULL OR detector_id = $4) AND ($5::int2 IS NULL OR lane = $5) \
         GROUP BY bucket, detector_id, lane ORDER BY bucket, detector_id, lane LIMIT $6"
    )
}

async fn fetch(
    db: &impl GenericClient,
    resolution: Resolution,
    q: &TrafficQuery,
    limit: i64,
) -> ApiResult<(Vec<TrafficPoint>, Option<DateTime<Utc>>)> {
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&q.site, &q.from, &q.to, &q.detector, &q.lane, &(limit + 1)];
    let mut points = match resolution {
        Resolution::Raw | Resolution::Auto => db
            .query(RAW_SQL, &args)
            .await?
            .iter()
            .map(raw_point)
            .collect::<Vec<_>>(),
        Resolution::Min15 => rollup_points(db, "traffic_15m", 900, &args).await?,
        Resolution::Hour1 => rollup_points(db, "traffic_1h", 3600, &args).await?,
    };
    let next_from = cut_page(&mut points, usize::try_from(limit).unwrap_or(usize::MAX))?;
    Ok((points, next_from))
}

async fn rollup_points(
    db: &impl GenericClient,
    table: &str,
    interval_s: i32,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> ApiResult<Vec<TrafficPoint>> {
    let rows = db.query(&rollup_sql(table), args).await?;
    Ok(rows
        .iter()
        .map(|r| RollupSums::from_row(r).point(interval_s))
        .collect())
}

/// Cuts `points` (one more than a page, if there are more) at a whole bucket; returns
/// where the next page starts.
fn cut_page(points: &mut Vec<TrafficPoint>, limit: usize) -> ApiResult<Option<DateTime<Utc>>> {
    if points.len() <= limit {
        return Ok(None);
    }
    let next = points[limit].bucket;
    points.truncate(limit);
    points.retain(|p| p.bucket < next);
    if points.is_empty() {
        return Err(ApiError::field(
            "query.limit",
            "is smaller than the number of lanes in one bucket",
        ));
    }
    Ok(Some(next))
}

fn raw_point(r: &Row) -> TrafficPoint {
    TrafficPoint {
        bucket: r.get(0),
        interval_s: r.get(1),
        detector_id: r.get(2),
        lane: r.get(3),
        volume: r.get(4),
        flow_vph: r.get(5),
        occupancy: r.get(6),
        speed_kmh: r.get(7),
        class_motorcycle: r.get(8),
        class_short: r.get(9),
        class_medium: r.get(10),
        class_long: r.get(11),
        los: r.get(12),
        los_counts: None,
        samples_expected: r.get(13),
        samples_received: r.get(14),
        quality: r.get(15),
    }
}

/// The summed columns of a roll-up bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupSums {
    pub bucket: DateTime<Utc>,
    pub detector_id: String,
    pub lane: i16,
    pub observed_s: Option<i64>,
    pub volume_sum: Option<i64>,
    pub volume_n: Option<i64>,
    pub occupancy_sum: Option<f64>,
    pub occupancy_n: Option<i64>,
    pub speed_sum: Option<f64>,
    pub speed_n: Option<i64>,
    pub classes: [Option<i64>; 4],
    pub samples_expected: Option<i64>,
    pub samples_received: Option<i64>,
    pub los: [Option<i64>; 6],
    pub quality: Option<i32>,
}

impl RollupSums {
    fn from_row(r: &Row) -> Self {
        Self {
            bucket: r.get(0),
            detector_id: r.get(1),
            lane: r.get(2),
            observed_s: r.get(3),
            volume_sum: r.get(4),
            volume_n: r.get(5),
            occupancy_sum: r.get(6),
            occupancy_n: r.get(7),
            speed_sum: r.get(8),
            speed_n: r.get(9),
            classes: [r.get(10), r.get(11), r.get(12), r.get(13)],
            samples_expected: r.get(14),
            samples_received: r.get(15),
            los: [
                r.get(16),
                r.get(17),
                r.get(18),
                r.get(19),
                r.get(20),
                r.get(21),
            ],
            quality: r.get(22),
        }
    }

    /// The values a client sees, from sums and counts only.
    pub fn point(&self, interval_s: i32) -> TrafficPoint {
        let n = |x: Option<i64>| x.filter(|n| *n > 0);
        let volume = n(self.volume_n).and(self.volume_sum);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let flow_vph = volume
            .zip(n(self.observed_s))
            .map(|(v, s)| v as f64 * 3600.0 / s as f64);
        #[allow(clippy::cast_precision_loss)]
        let occupancy = n(self.occupancy_n)
            .zip(self.occupancy_sum)
            .map(|(n, s)| s / n as f64);
        #[allow(clippy::cast_precision_loss)]
        let speed_kmh = n(self.speed_n)
            .zip(self.speed_sum)
            .map(|(n, s)| s / n as f64);
        TrafficPoint {
            bucket: self.bucket,
            interval_s,
            detector_id: self.detector_id.clone(),
            lane: self.lane,
            volume,
            flow_vph,
            occupancy,
            speed_kmh,
            class_motorcycle: self.classes[0],
            class_short: self.classes[1],
            class_medium: self.classes[2],
            class_long: self.classes[3],
            los: None,
            los_counts: Some(self.los.map(|c| c.unwrap_or(0))),
            samples_expected: self.samples_expected.unwrap_or(0),
            samples_received: self.samples_received.unwrap_or(0),
            quality: self.quality.unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    pub site: String,
}

/// The latest sample of one lane.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveLane {
    pub detector_id: String,
    pub lane: i16,
    pub bucket: DateTime<Utc>,
    pub interval_s: i32,
    pub volume: Option<i64>,
    pub flow_vph: Option<f64>,
    pub occupancy: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub los: Option<String>,
    /// LOS E or F.
    pub congested: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveSite {
    pub site_id: String,
    /// Lanes with a sample in the last 15 minutes.
    pub lanes: Vec<LiveLane>,
    /// The worst level of service over the lanes.
    pub los: Option<String>,
    /// Any lane congested.
    pub congested: bool,
    pub as_of: Option<DateTime<Utc>>,
}

/// The latest sample of each lane of `$1` (site) within the live window: the one
/// definition of "now" shared by the live view and the congestion scan.
pub const LATEST_LANES_SQL: &str = "SELECT DISTINCT ON (detector_id, lane) detector_id, lane, \
    bucket_start, interval_s, volume::bigint, flow_vph::float8, occupancy::float8, \
    speed_avg_kmh::float8, los::text \
    FROM traffic_sample \
    WHERE site_id = $1 AND bucket_start >= now() - make_interval(mins => 15) \
    ORDER BY detector_id, lane, bucket_start DESC";

/// Whether a level of service counts as congested.
pub fn is_congested(los: Option<&str>) -> bool {
    matches!(los, Some("E" | "F"))
}

/// The live state of `site`.
pub async fn live_site(db: &impl GenericClient, site: &str) -> ApiResult<LiveSite> {
    let rows = db.query(LATEST_LANES_SQL, &[&site]).await?;
    let lanes: Vec<LiveLane> = rows
        .iter()
        .map(|r| {
            let los: Option<String> = r.get(8);
            LiveLane {
                detector_id: r.get(0),
                lane: r.get(1),
                bucket: r.get(2),
                interval_s: r.get(3),
                volume: r.get(4),
                flow_vph: r.get(5),
                occupancy: r.get(6),
                speed_kmh: r.get(7),
                congested: is_congested(los.as_deref()),
                los,
            }
        })
        .collect();
    Ok(LiveSite {
        site_id: site.to_owned(),
        los: lanes.iter().filter_map(|l| l.los.clone()).max(),
        congested: lanes.iter().any(|l| l.congested),
        as_of: lanes.iter().map(|l| l.bucket).max(),
        lanes,
    })
}

/// The live state of a site: latest sample per lane, worst LOS, congestion.
#[utoipa::path(get, path = "/api/traffic/live/", tag = "traffic", params(LiveQuery),
    security(("bearer" = [])),
    responses((status = 200, body = LiveSite),
        (status = 422, body = crate::error::ErrorBody)))]
async fn live(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> ApiResult<ApiJson<LiveSite>> {
    user.require(&FIELD_ROLES)?;
    let mut v = Validator::new();
    params::ident(&mut v, "query.site", &q.site);
    v.finish()?;
    let db = state.db().await?;
    Ok(ApiJson(live_site(&db, &q.site).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_by_span() {
        let a = Resolution::Auto;
        assert_eq!(a.choose(Duration::hours(6)), Resolution::Raw);
        assert_eq!(a.choose(Duration::hours(7)), Resolution::Min15);
        assert_eq!(a.choose(Duration::days(7)), Resolution::Min15);
        assert_eq!(a.choose(Duration::days(8)), Resolution::Hour1);
        assert_eq!(
            Resolution::Hour1.choose(Duration::hours(1)),
            Resolution::Hour1
        );
    }

    #[test]
    fn rollup_values_come_from_sums() {
        let s = RollupSums {
            observed_s: Some(600),
            volume_sum: Some(50),
            volume_n: Some(20),
            occupancy_sum: Some(3.0),
            occupancy_n: Some(20),
            speed_sum: Some(4000.0),
            speed_n: Some(50),
            ..Default::default()
        };
        let p = s.point(900);
        assert_eq!(p.volume, Some(50));
        assert_eq!(p.flow_vph, Some(300.0));
        assert_eq!(p.occupancy, Some(0.15));
        assert_eq!(p.speed_kmh, Some(80.0));
        let empty = RollupSums {
            volume_sum: Some(0),
            volume_n: Some(0),
            ..Default::default()
        }
        .point(900);
        assert_eq!(empty.volume, None, "no observed rows is unknown, not 0");
        assert_eq!(empty.speed_kmh, None);
    }
}
