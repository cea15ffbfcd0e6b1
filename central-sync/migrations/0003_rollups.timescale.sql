-- central-sync v3 on TimescaleDB: the 15 min and 1 h roll-ups as continuous aggregates
-- with the same names and columns as the plain tables (sums and counts, so re-aggregating
-- is exact), compression and retention. Runs outside a transaction block (continuous
-- aggregates cannot be created in one), so every statement is idempotent.
-- NOT VERIFIED: TimescaleDB is not packaged where this was written; see the README.

CREATE MATERIALIZED VIEW IF NOT EXISTS traffic_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT edge_id, site_id, detector_id, lane,
       time_bucket(interval '15 minutes', bucket_start) AS bucket,
       count(*)::bigint AS samples,
       coalesce(sum(interval_s) FILTER (WHERE volume IS NOT NULL), 0)::bigint AS observed_s,
       sum(volume)::bigint AS volume_sum,
       count(volume)::bigint AS volume_n,
       sum(occupancy)::double precision AS occupancy_sum,
       count(occupancy)::bigint AS occupancy_n,
       sum(speed_avg_kmh::double precision * speed_count)
           FILTER (WHERE speed_avg_kmh IS NOT NULL) AS speed_sum,
       coalesce(sum(speed_count) FILTER (WHERE speed_avg_kmh IS NOT NULL), 0)::bigint AS speed_n,
       sum(class_motorcycle)::bigint AS class_motorcycle,
       sum(class_short)::bigint AS class_short,
       sum(class_medium)::bigint AS class_medium,
       sum(class_long)::bigint AS class_long,
       sum(samples_expected)::bigint AS samples_expected,
       sum(samples_received)::bigint AS samples_received,
       count(*) FILTER (WHERE los = 'A') AS los_a, count(*) FILTER (WHERE los = 'B') AS los_b,
       count(*) FILTER (WHERE los = 'C') AS los_c, count(*) FILTER (WHERE los = 'D') AS los_d,
       count(*) FILTER (WHERE los = 'E') AS los_e, count(*) FILTER (WHERE los = 'F') AS los_f,
       bit_or(quality) AS quality_any
FROM traffic_sample
GROUP BY edge_id, site_id, detector_id, lane, time_bucket(interval '15 minutes', bucket_start)
WITH NO DATA;

-- Hierarchical: the hour from the quarters (TimescaleDB >= 2.9), summing sums and counts.
CREATE MATERIALIZED VIEW IF NOT EXISTS traffic_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT edge_id, site_id, detector_id, lane,
       time_bucket(interval '1 hour', bucket) AS bucket,
       sum(samples)::bigint AS samples, sum(observed_s)::bigint AS observed_s,
       sum(volume_sum)::bigint AS volume_sum, sum(volume_n)::bigint AS volume_n,
       sum(occupancy_sum) AS occupancy_sum, sum(occupancy_n)::bigint AS occupancy_n,
       sum(speed_sum) AS speed_sum, sum(speed_n)::bigint AS speed_n,
       sum(class_motorcycle)::bigint AS class_motorcycle, sum(class_short)::bigint AS class_short,
       sum(class_medium)::bigint AS class_medium, sum(class_long)::bigint AS class_long,
       sum(samples_expected)::bigint AS samples_expected,
       sum(samples_received)::bigint AS samples_received,
       sum(los_a)::bigint AS los_a, sum(los_b)::bigint AS los_b, sum(los_c)::bigint AS los_c,
       sum(los_d)::bigint AS los_d, sum(los_e)::bigint AS los_e, sum(los_f)::bigint AS los_f,
       bit_or(quality_any) AS quality_any
FROM traffic_15m
GROUP BY edge_id, site_id, detector_id, lane, time_bucket(interval '1 hour', bucket)
WITH NO DATA;

CREATE INDEX IF NOT EXISTS traffic_15m_site_time ON traffic_15m (site_id, bucket);
CREATE INDEX IF NOT EXISTS traffic_1h_site_time ON traffic_1h (site_id, bucket);

-- Late data (a box back from a long outage) lands up to 30 days back; older buckets are
-- refreshed by `central-sync rollup --since`.
SELECT add_continuous_aggregate_policy('traffic_15m', start_offset => interval '30 days',
       end_offset => interval '15 minutes', schedule_interval => interval '5 minutes',
       if_not_exists => true);
SELECT add_continuous_aggregate_policy('traffic_1h', start_offset => interval '30 days',
       end_offset => interval '1 hour', schedule_interval => interval '15 minutes',
       if_not_exists => true);

ALTER TABLE traffic_sample SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'edge_id, site_id, detector_id',
    timescaledb.compress_orderby = 'lane, interval_s, bucket_start');
SELECT add_compression_policy('traffic_sample', interval '7 days', if_not_exists => true);
-- Raw samples for two years; the roll-ups are kept.
SELECT add_retention_policy('traffic_sample', interval '730 days', if_not_exists => true);
