-- central-sync v1: the traffic tables, the batch ledger, the sync cursor and the edge
-- registry. Plain PostgreSQL (>= 14). Column names and units follow DESIGN §3 and
-- central_sync::TrafficSample; central-api reads these tables and nothing else of ours.

-- One row per (edge, site, detector, lane, interval, bin). The primary key includes the
-- time column (a hypertable's unique keys must) and the edge id, so every box writes in
-- its own key space and a replayed row collides only with itself.
CREATE TABLE IF NOT EXISTS traffic_sample (
    edge_id          text        NOT NULL,
    site_id          text        NOT NULL,
    detector_id      text        NOT NULL,
    lane             smallint    NOT NULL CHECK (lane >= 1),
    bucket_start     timestamptz NOT NULL,
    interval_s       integer     NOT NULL CHECK (interval_s > 0),
    volume           integer     CHECK (volume >= 0),           -- NULL: not observed (never 0)
    flow_vph         real,
    occupancy        real        CHECK (occupancy BETWEEN 0 AND 1),
    speed_avg_kmh    real,
    speed_p85_kmh    real,
    speed_count      integer     NOT NULL DEFAULT 0 CHECK (speed_count >= 0),
    speed_source     text        NOT NULL CHECK (speed_source IN ('measured', 'estimated', 'none')),
    density_vpkm     real,
    headway_avg_s    real,
    gap_avg_s        real,
    length_avg_m     real,
    class_motorcycle integer,
    class_short      integer,
    class_medium     integer,
    class_long       integer,
    los              "char"      CHECK (los IN ('A', 'B', 'C', 'D', 'E', 'F')),
    samples_expected integer     NOT NULL,
    samples_received integer     NOT NULL,
    pct_observed     real        NOT NULL,
    quality          integer     NOT NULL,                       -- central_sync::Quality bits
    epoch            bigint      NOT NULL,
    batch_seq        bigint      NOT NULL,
    PRIMARY KEY (edge_id, site_id, detector_id, lane, interval_s, bucket_start)
);
-- Queries go by site and time; BRIN keeps time-range scans cheap on append-mostly data.
CREATE INDEX IF NOT EXISTS traffic_sample_site_time ON traffic_sample (site_id, bucket_start);
CREATE INDEX IF NOT EXISTS traffic_sample_time_brin ON traffic_sample USING brin (bucket_start);

-- Roll-ups store sums and counts, never averages, so re-aggregating them is exact:
-- volume = volume_sum; occupancy = occupancy_sum / occupancy_n;
-- speed (volume-weighted) = speed_sum / speed_n; flow_vph = volume_sum * 3600 / observed_s.
CREATE TABLE IF NOT EXISTS traffic_15m (
    edge_id          text             NOT NULL,
    site_id          text             NOT NULL,
    detector_id      text             NOT NULL,
    lane             smallint         NOT NULL,
    bucket           timestamptz      NOT NULL,
    samples          bigint           NOT NULL,  -- rows rolled up
    observed_s       bigint           NOT NULL,  -- Σ interval_s of rows with a volume
    volume_sum       bigint,
    volume_n         bigint           NOT NULL,  -- rows with a volume
    occupancy_sum    double precision,
    occupancy_n      bigint           NOT NULL,
    speed_sum        double precision,           -- Σ speed_avg_kmh · speed_count
    speed_n          bigint           NOT NULL,  -- Σ speed_count
    class_motorcycle bigint,
    class_short      bigint,
    class_medium     bigint,
    class_long       bigint,
    samples_expected bigint           NOT NULL,
    samples_received bigint           NOT NULL,
    los_a bigint NOT NULL, los_b bigint NOT NULL, los_c bigint NOT NULL,
    los_d bigint NOT NULL, los_e bigint NOT NULL, los_f bigint NOT NULL,
    quality_any      integer          NOT NULL,  -- bitwise OR of the rows' quality
    PRIMARY KEY (edge_id, site_id, detector_id, lane, bucket)
);
CREATE TABLE IF NOT EXISTS traffic_1h (LIKE traffic_15m INCLUDING ALL);
CREATE INDEX IF NOT EXISTS traffic_15m_site_time ON traffic_15m (site_id, bucket);
CREATE INDEX IF NOT EXISTS traffic_1h_site_time ON traffic_1h (site_id, bucket);

-- The batch ledger: one row per committed uplink batch. A replayed batch finds its row
-- and changes nothing.
CREATE TABLE IF NOT EXISTS ingest_batch (
    edge_id      text        NOT NULL,
    epoch        bigint      NOT NULL,  -- the spool's identity: new spool, new epoch
    batch_seq    bigint      NOT NULL,
    row_count    integer     NOT NULL,
    digest       bytea       NOT NULL,
    first_bucket timestamptz,
    last_bucket  timestamptz,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, epoch, batch_seq)
);

-- How far each edge has synced.
CREATE TABLE IF NOT EXISTS sync_cursor (
    edge_id    text        PRIMARY KEY,
    epoch      bigint      NOT NULL,
    batch_seq  bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The registry of edge boxes, kept fresh by their heartbeats.
CREATE TABLE IF NOT EXISTS edge_node (
    edge_id            text        PRIMARY KEY,
    site_id            text,
    software_version   text,
    first_seen         timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz NOT NULL DEFAULT now(),
    spool_bytes        bigint,
    uplink_lag_s       double precision,  -- age of the oldest sample not yet sent
    source_health      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
