//! Shared by central-sync's integration tests: a migrated template database, edge roles,
//! connections as an edge, and deterministic samples.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use central_sync::{Los, Quality, SpeedSource, TrafficSample};
use chrono::{DateTime, Utc};
use test_support::PgServer;

pub async fn connect_url(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// A fresh database with central-sync's schema.
pub fn migrated_db(pg: &PgServer) -> String {
    let tmpl = pg.template_database_with("central_sync_tmpl", |pg, name| {
        let url = pg.connection_string(name);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut client = connect_url(&url).await;
                central_sync::migrate(&mut client).await.expect("migrate");
            });
        })
        .join()
        .unwrap();
    });
    pg.fresh_database(Some(&tmpl))
}

/// A new edge id, unique on this server (roles are cluster-wide).
pub fn edge_id(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates the edge's role in `db` and connects as it.
pub async fn connect_as_edge(pg: &PgServer, db: &str, edge: &str) -> tokio_postgres::Client {
    let admin = connect_url(&pg.connection_string(db)).await;
    central_sync::roles::create_edge_role(&admin, edge, "unused-with-trust-auth")
        .await
        .expect("create edge role");
    let url = format!("postgresql://edge_{edge}@{}:{}/{db}", pg.host(), pg.port());
    connect_url(&url).await
}

/// A sample with values that vary with `n` (some fields missing, as in real data).
pub fn sample(edge: &str, detector: &str, lane: u16, bucket: i64, n: u32) -> TrafficSample {
    let volume = (n % 7 != 3).then_some(n % 23);
    let speed = volume.filter(|v| *v > 0).map(|v| 60.0 + (v as f32) * 1.5);
    TrafficSample {
        site_id: "site-1".into(),
        detector_id: detector.into(),
        lane,
        bucket_start: t(bucket * 30),
        interval_s: 30,
        volume,
        flow_vph: volume.map(|v| v as f32 * 120.0),
        occupancy: volume.map(|v| (v as f32 / 40.0).min(1.0)),
        speed_avg_kmh: speed,
        speed_p85_kmh: speed.map(|s| s + 8.0),
        speed_count: if speed.is_some() {
            volume.unwrap_or(0)
        } else {
            0
        },
        speed_source: if speed.is_some() {
            SpeedSource::Measured
        } else {
            SpeedSource::None
        },
        density_vpkm: speed.map(|s| volume.unwrap_or(0) as f32 * 120.0 / s),
        headway_avg_s: None,
        gap_avg_s: None,
        length_avg_m: volume.map(|_| 4.5),
        class_counts: volume.map(|v| [0, v, 0, 0]),
        los: volume.map(|v| if v < 10 { Los::A } else { Los::C }),
        samples_expected: 1,
        samples_received: u32::from(volume.is_some()),
        pct_observed: if volume.is_some() { 100.0 } else { 0.0 },
        quality: if volume.is_some() {
            Quality::empty()
        } else {
            Quality::NO_DATA
        },
        edge_id: edge.into(),
    }
}

pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_709_539_200 + s, 0).expect("time")
}

/// The table's content for `edge` as sorted text rows (every column).
pub fn dump(pg: &PgServer, db: &str, edge: &str) -> Vec<String> {
    let out = pg.psql(
        db,
        &format!(
            "SELECT t::text FROM traffic_sample t WHERE edge_id = '{edge}' \
             ORDER BY site_id, detector_id, lane, interval_s, bucket_start"
        ),
    );
    out.lines().map(str::to_owned).collect()
}
