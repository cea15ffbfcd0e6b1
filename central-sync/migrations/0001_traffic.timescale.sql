
-- TimescaleDB (appended to 0001_traffic.sql on that flavour): traffic_sample becomes a
-- hypertable, whose own time index replaces the BRIN one; the roll-ups become continuous
-- aggregates in v3, so the plain roll-up tables made above (still empty) go.
DROP TABLE traffic_1h;
DROP TABLE traffic_15m;
DROP INDEX IF EXISTS traffic_sample_time_brin;
SELECT create_hypertable('traffic_sample', 'bucket_start',
                         chunk_time_interval => interval '1 day', if_not_exists => true);
