-- central-api v2: the registry (cameras, detectors, patrol status), news, chat,
-- notifications and site watches, schedules (patrol shifts, road works).
--
-- Constraint names matter: src/error.rs maps them to the request field at fault.

-- Exclusion constraints over (id =, time range &&) need btree's equality in GiST.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE camera (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    site_id     text,
    edge_id     text,
    stream_url  text,
    lat         double precision CONSTRAINT camera_lat_check CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CONSTRAINT camera_lon_check CHECK (lon BETWEEN -180 AND 180),
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT camera_name_key UNIQUE (name)
);

-- detector_key is the detector_id that traffic samples carry.
CREATE TABLE detector (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detector_key text        NOT NULL,
    site_id      text        NOT NULL,
    edge_id      text,
    kind         text        NOT NULL
        CONSTRAINT detector_kind_check CHECK (kind IN ('loop', 'radar', 'video', 'magnetic', 'other')),
    lanes        smallint    NOT NULL CONSTRAINT detector_lanes_check CHECK (lanes BETWEEN 1 AND 16),
    lat          double precision CONSTRAINT detector_lat_check CHECK (lat BETWEEN -90 AND 90),
    lon          double precision CONSTRAINT detector_lon_check CHECK (lon BETWEEN -180 AND 180),
    enabled      boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT detector_key_key UNIQUE (detector_key)
);
CREATE INDEX detector_site ON detector (site_id);

-- Where a patrol is and whether it can take a job; one row per patrol, written by its crew.
CREATE TABLE patrol_status (
    patrol_id    bigint PRIMARY KEY REFERENCES patrol (id) ON DELETE CASCADE,
    availability text        NOT NULL DEFAULT 'off_duty'
        CONSTRAINT patrol_status_availability_check CHECK (availability IN ('available', 'busy', 'off_duty')),
    lat          double precision CONSTRAINT patrol_status_lat_check CHECK (lat BETWEEN -90 AND 90),
    lon          double precision CONSTRAINT patrol_status_lon_check CHECK (lon BETWEEN -180 AND 180),
    position_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE news_article (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title        text        NOT NULL,
    body         text        NOT NULL,
    status       text        NOT NULL DEFAULT 'draft'
        CONSTRAINT news_article_status_check CHECK (status IN ('draft', 'published')),
    author_id    bigint REFERENCES app_user (id) ON DELETE SET NULL,
    published_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX news_article_published ON news_article (published_at DESC, id DESC) WHERE status = 'published';

CREATE TABLE chat_room (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL CONSTRAINT chat_room_kind_check CHECK (kind IN ('incident', 'team', 'direct')),
    name        text        NOT NULL,
    incident_id bigint
        CONSTRAINT chat_room_incident_id_fkey REFERENCES incident (id) ON DELETE CASCADE,
    created_by  bigint REFERENCES app_user (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chat_room_incident_check CHECK ((kind = 'incident') = (incident_id IS NOT NULL))
);
CREATE UNIQUE INDEX chat_room_incident_key ON chat_room (incident_id) WHERE incident_id IS NOT NULL;

-- Members of team and direct rooms (incident rooms go by role and assignment).
CREATE TABLE chat_member (
    room_id bigint NOT NULL REFERENCES chat_room (id) ON DELETE CASCADE,
    user_id bigint NOT NULL CONSTRAINT chat_member_user_id_fkey REFERENCES app_user (id) ON DELETE CASCADE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_member_user ON chat_member (user_id);

CREATE TABLE chat_message (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    bigint      NOT NULL REFERENCES chat_room (id) ON DELETE CASCADE,
    author_id  bigint REFERENCES app_user (id) ON DELETE SET NULL,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_message_room ON chat_message (room_id, id);

CREATE TABLE notification (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    kind       text        NOT NULL,
    payload    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
CREATE INDEX notification_user ON notification (user_id, id DESC);
CREATE INDEX notification_unread ON notification (user_id, id) WHERE read_at IS NULL;

-- Sites a user wants congestion notifications for.
CREATE TABLE site_watch (
    user_id    bigint NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    site_id    text   NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, site_id)
);
CREATE INDEX site_watch_site ON site_watch (site_id);

-- Sites currently congested, so that each episode is notified once, by one instance.
CREATE TABLE site_congestion (
    site_id text PRIMARY KEY,
    since   timestamptz NOT NULL
);

CREATE TABLE patrol_shift (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patrol_id  bigint NOT NULL CONSTRAINT patrol_shift_patrol_id_fkey REFERENCES patrol (id) ON DELETE CASCADE,
    during     tstzrange NOT NULL CONSTRAINT patrol_shift_during_check CHECK (NOT isempty(during)),
    note       text   NOT NULL DEFAULT '',
    created_by bigint REFERENCES app_user (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A patrol works one shift at a time.
    CONSTRAINT patrol_shift_no_overlap EXCLUDE USING gist (patrol_id WITH =, during WITH &&)
);

CREATE TABLE road_work (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title        text   NOT NULL,
    road         text   NOT NULL,
    -- The stretch of road (kilometre range, junctions); works on one section do not overlap.
    section      text   NOT NULL,
    during       tstzrange NOT NULL CONSTRAINT road_work_during_check CHECK (NOT isempty(during)),
    lanes_closed smallint[] NOT NULL DEFAULT '{}',
    description  text   NOT NULL DEFAULT '',
    created_by   bigint REFERENCES app_user (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT road_work_no_overlap EXCLUDE USING gist (road WITH =, section WITH =, during WITH &&)
);
