-- central-api v1: users and refresh tokens, patrols (the core the registry extends),
-- incidents with their history, citizen appeals, the audit log.
--
-- Constraint names matter: the service maps them to the request field at fault
-- (src/error.rs, CONSTRAINT_FIELDS), so rename one only together with that table.

CREATE TABLE patrol (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_sign   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patrol_call_sign_key UNIQUE (call_sign)
);

CREATE TABLE app_user (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    email         text,
    role          text        NOT NULL
        CONSTRAINT app_user_role_check CHECK (role IN ('admin', 'operator', 'analyst', 'patrol', 'public')),
    -- The patrol a `patrol` user crews; decides which incidents the user sees.
    patrol_id     bigint
        CONSTRAINT app_user_patrol_id_fkey REFERENCES patrol (id) ON DELETE SET NULL,
    password_hash text        NOT NULL,
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- User names are unique regardless of case.
CREATE UNIQUE INDEX app_user_username_key ON app_user (lower(username));

-- Refresh tokens are stored as SHA-256 hashes; the token itself only ever exists in the
-- client. Rotation: each refresh revokes the token used and issues a new one in the same
-- family; a revoked token presented again revokes the whole family (a stolen token).
CREATE TABLE refresh_token (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    family      bigint      NOT NULL,
    token_hash  bytea       NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    CONSTRAINT refresh_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_token_user ON refresh_token (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_token_family ON refresh_token (family);

-- Incidents. State names and FHWA timeline points:
--   T0 occurred, T1 reported (detection), T2 verified, T3 dispatched (response identified),
--   T4 on scene, T5 lanes cleared (roadway clearance), T6 scene cleared (incident
--   clearance), T7 closed (normal traffic flow restored).
-- Severity and probability follow DATEX II (severity, probabilityOfOccurrence).
CREATE TABLE incident (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text        NOT NULL
        CONSTRAINT incident_kind_check CHECK (kind IN ('accident', 'breakdown', 'debris', 'roadworks', 'weather', 'congestion', 'hazard', 'other')),
    state               text        NOT NULL DEFAULT 'reported'
        CONSTRAINT incident_state_check CHECK (state IN ('reported', 'verified', 'dispatched', 'on_scene', 'lanes_cleared', 'scene_cleared', 'closed', 'rejected', 'duplicate', 'merged')),
    severity            text        NOT NULL DEFAULT 'unknown'
        CONSTRAINT incident_severity_check CHECK (severity IN ('unknown', 'low', 'medium', 'high', 'highest')),
    probability         text        NOT NULL DEFAULT 'probable'
        CONSTRAINT incident_probability_check CHECK (probability IN ('certain', 'probable', 'risk_of')),
    title               text        NOT NULL,
    description         text        NOT NULL DEFAULT '',
    lat                 double precision NOT NULL
        CONSTRAINT incident_lat_check CHECK (lat BETWEEN -90 AND 90),
    lon                 double precision NOT NULL
        CONSTRAINT incident_lon_check CHECK (lon BETWEEN -180 AND 180),
    -- For bounding-box queries with a GiST index (x = lon, y = lat); no PostGIS needed.
    geo                 point GENERATED ALWAYS AS (point(lon, lat)) STORED,
    area                text,
    road                text,
    direction           text,
    lanes_total         smallint,
    lanes_blocked       smallint[]  NOT NULL DEFAULT '{}',
    assigned_patrol_id  bigint
        CONSTRAINT incident_assigned_patrol_id_fkey REFERENCES patrol (id) ON DELETE SET NULL,
    -- The incident this one duplicates or was merged into.
    related_incident_id bigint
        CONSTRAINT incident_related_incident_id_fkey REFERENCES incident (id),
    source              text        NOT NULL DEFAULT 'operator'
        CONSTRAINT incident_source_check CHECK (source IN ('operator', 'appeal', 'detector', 'patrol')),
    reported_by         bigint REFERENCES app_user (id) ON DELETE SET NULL,
    t0_occurred_at      timestamptz,
    t1_reported_at      timestamptz NOT NULL DEFAULT now(),
    t2_verified_at      timestamptz,
    t3_dispatched_at    timestamptz,
    t4_on_scene_at      timestamptz,
    t5_lanes_cleared_at timestamptz,
    t6_scene_cleared_at timestamptz,
    t7_closed_at        timestamptz,
    -- When it left the active states by rejected / duplicate / merged.
    ended_at            timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_reported ON incident (t1_reported_at DESC, id DESC);
CREATE INDEX incident_state_reported ON incident (state, t1_reported_at DESC, id DESC);
CREATE INDEX incident_geo ON incident USING gist (geo);
CREATE INDEX incident_patrol ON incident (assigned_patrol_id) WHERE assigned_patrol_id IS NOT NULL;
CREATE INDEX incident_area ON incident (area) WHERE area IS NOT NULL;

-- Every change of an incident: creation, field updates, transitions.
CREATE TABLE incident_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint      NOT NULL REFERENCES incident (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint,
    kind        text        NOT NULL CHECK (kind IN ('created', 'updated', 'transition')),
    from_state  text,
    to_state    text,
    note        text,
    -- {"field": {"from": ..., "to": ...}, ...}
    changes     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_event_incident ON incident_event (incident_id, id);

-- Citizen appeals (reports from the public).
CREATE TABLE appeal (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    filed_by        bigint REFERENCES app_user (id) ON DELETE SET NULL,
    name            text,
    contact         text,
    kind            text        NOT NULL
        CONSTRAINT appeal_kind_check CHECK (kind IN ('accident', 'breakdown', 'debris', 'roadworks', 'weather', 'congestion', 'hazard', 'other')),
    description     text        NOT NULL,
    lat             double precision
        CONSTRAINT appeal_lat_check CHECK (lat BETWEEN -90 AND 90),
    lon             double precision
        CONSTRAINT appeal_lon_check CHECK (lon BETWEEN -180 AND 180),
    location_text   text,
    status          text        NOT NULL DEFAULT 'received'
        CONSTRAINT appeal_status_check CHECK (status IN ('received', 'acknowledged', 'in_progress', 'answered', 'closed', 'rejected')),
    incident_id     bigint
        CONSTRAINT appeal_incident_id_fkey REFERENCES incident (id) ON DELETE SET NULL,
    response        text,
    handled_by      bigint REFERENCES app_user (id) ON DELETE SET NULL,
    acknowledged_at timestamptz,
    responded_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appeal_status ON appeal (status, created_at DESC);
CREATE INDEX appeal_filed_by ON appeal (filed_by) WHERE filed_by IS NOT NULL;

-- One row per change made through the API (and by the bootstrap command).
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint,
    actor_role  text,
    action      text        NOT NULL,
    entity      text        NOT NULL,
    entity_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, id);
CREATE INDEX audit_log_at ON audit_log (at DESC);
