-- central-sync v2: least-privileged edge roles, the slow (merge) path of the uplink writer,
-- and dirty tracking for the roll-up job.
--
-- An edge box logs in as role `edge_<edge_id>` (made by `central-sync create-edge-role`), a
-- member of the NOLOGIN group role `sync_edge`, which holds every grant below.
--
-- traffic_sample carries no row-level security: PostgreSQL refuses COPY FROM into a table
-- whose RLS applies to the session ("COPY FROM not supported with row-level security"),
-- and COPY is the fast path. Instead `sync_edge` may insert every column except edge_id,
-- whose default is derived from the session's role name: an edge cannot name another
-- edge's id, and reads nothing of the table. The small tables (ledger, cursor, registry)
-- use RLS: an edge sees and writes its own rows only. Roles that are not edges are not
-- restricted by these policies (their table privileges still apply).

-- The edge id of the current role, NULL for roles that are not edges. A plain SQL
-- expression, so PostgreSQL inlines it: evaluated per row as a column default it costs
-- next to nothing on the COPY path.
CREATE OR REPLACE FUNCTION sync_current_edge() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN left(current_user::text, 5) = 'edge_'
                      THEN substr(current_user::text, 6) END $$;

DO $$
BEGIN
    -- Roles are per cluster and advisory locks per database: two databases of one
    -- cluster migrating at once may both get here.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sync_edge') THEN
        BEGIN
            CREATE ROLE sync_edge NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO sync_edge', current_schema());
END $$;

-- traffic_sample: insert-only, edge_id from the role.
ALTER TABLE traffic_sample ALTER COLUMN edge_id SET DEFAULT sync_current_edge();
REVOKE ALL ON traffic_sample FROM sync_edge;
GRANT INSERT (site_id, detector_id, lane, bucket_start, interval_s, volume, flow_vph,
              occupancy, speed_avg_kmh, speed_p85_kmh, speed_count, speed_source,
              density_vpkm, headway_avg_s, gap_avg_s, length_avg_m, class_motorcycle,
              class_short, class_medium, class_long, los, samples_expected,
              samples_received, pct_observed, quality, epoch, batch_seq)
    ON traffic_sample TO sync_edge;

-- The ledger: an edge inserts and reads back its own batches (to compare digests).
-- rolled_up: the roll-up job has folded the batch into traffic_15m / traffic_1h.
ALTER TABLE ingest_batch ADD COLUMN IF NOT EXISTS rolled_up boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS ingest_batch_pending ON ingest_batch (committed_at) WHERE NOT rolled_up;
ALTER TABLE ingest_batch ENABLE ROW LEVEL SECURITY;
CREATE POLICY edge_own ON ingest_batch TO sync_edge
    USING (edge_id = sync_current_edge()) WITH CHECK (edge_id = sync_current_edge());
CREATE POLICY not_an_edge ON ingest_batch USING (sync_current_edge() IS NULL);
GRANT SELECT (edge_id, epoch, batch_seq, row_count, digest),
      INSERT (edge_id, epoch, batch_seq, row_count, digest, first_bucket, last_bucket)
    ON ingest_batch TO sync_edge;

ALTER TABLE sync_cursor ENABLE ROW LEVEL SECURITY;
CREATE POLICY edge_own ON sync_cursor TO sync_edge
    USING (edge_id = sync_current_edge()) WITH CHECK (edge_id = sync_current_edge());
CREATE POLICY not_an_edge ON sync_cursor USING (sync_current_edge() IS NULL);
GRANT SELECT, INSERT (edge_id, epoch, batch_seq, updated_at),
      UPDATE (epoch, batch_seq, updated_at)
    ON sync_cursor TO sync_edge;

ALTER TABLE edge_node ENABLE ROW LEVEL SECURITY;
CREATE POLICY edge_own ON edge_node TO sync_edge
    USING (edge_id = sync_current_edge()) WITH CHECK (edge_id = sync_current_edge());
CREATE POLICY not_an_edge ON edge_node USING (sync_current_edge() IS NULL);
GRANT SELECT,
      INSERT (edge_id, site_id, software_version, last_seen, spool_bytes, uplink_lag_s,
              source_health),
      UPDATE (site_id, software_version, last_seen, spool_bytes, uplink_lag_s, source_health)
    ON edge_node TO sync_edge;

-- The slow path: a batch whose rows collide with rows already stored is staged in a
-- temporary table and merged. The staging table is made by the function owner (so an
-- edge cannot swap in a table of its own with forged edge ids); the edge may insert every
-- column but edge_id, whose default is evaluated as the edge's role, as on the fast path.
CREATE OR REPLACE FUNCTION sync_stage_open() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS sync_staging
        (LIKE traffic_sample INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
    PERFORM sync_check_staging();
    GRANT INSERT (site_id, detector_id, lane, bucket_start, interval_s, volume, flow_vph,
                  occupancy, speed_avg_kmh, speed_p85_kmh, speed_count, speed_source,
                  density_vpkm, headway_avg_s, gap_avg_s, length_avg_m, class_motorcycle,
                  class_short, class_medium, class_long, los, samples_expected,
                  samples_received, pct_observed, quality, epoch, batch_seq)
        ON pg_temp.sync_staging TO sync_edge;
END $$;

CREATE OR REPLACE FUNCTION sync_check_staging() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    AS $$
BEGIN
    IF (SELECT relowner FROM pg_class WHERE oid = 'pg_temp.sync_staging'::regclass)
       IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'pg_temp.sync_staging was not made by sync_stage_open()'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- Merges the staged rows: a row replaces a stored one with the same key only when it
-- comes from a later batch (epoch, batch_seq), so any order of replays converges on the
-- same table. Returns the rows inserted or replaced.
CREATE OR REPLACE FUNCTION sync_merge_staged() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM sync_check_staging();
    INSERT INTO traffic_sample AS t SELECT * FROM pg_temp.sync_staging
    ON CONFLICT (edge_id, site_id, detector_id, lane, interval_s, bucket_start) DO UPDATE SET
        volume = EXCLUDED.volume, flow_vph = EXCLUDED.flow_vph,
        occupancy = EXCLUDED.occupancy, speed_avg_kmh = EXCLUDED.speed_avg_kmh,
        speed_p85_kmh = EXCLUDED.speed_p85_kmh, speed_count = EXCLUDED.speed_count,
        speed_source = EXCLUDED.speed_source, density_vpkm = EXCLUDED.density_vpkm,
        headway_avg_s = EXCLUDED.headway_avg_s, gap_avg_s = EXCLUDED.gap_avg_s,
        length_avg_m = EXCLUDED.length_avg_m, class_motorcycle = EXCLUDED.class_motorcycle,
        class_short = EXCLUDED.class_short, class_medium = EXCLUDED.class_medium,
        class_long = EXCLUDED.class_long, los = EXCLUDED.los,
        samples_expected = EXCLUDED.samples_expected,
        samples_received = EXCLUDED.samples_received, pct_observed = EXCLUDED.pct_observed,
        quality = EXCLUDED.quality, epoch = EXCLUDED.epoch, batch_seq = EXCLUDED.batch_seq
    WHERE (t.epoch, t.batch_seq) < (EXCLUDED.epoch, EXCLUDED.batch_seq);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM pg_temp.sync_staging;
    RETURN n;
END $$;

-- Functions are executable by PUBLIC by default; these only by edges (and the owner).
-- Their search_path is pinned to this schema, the temporary schema last.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['sync_stage_open()', 'sync_check_staging()', 'sync_merge_staged()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO sync_edge', f);
    END LOOP;
END $$;
