//! Semantic checks on a parsed [`Config`]: ranges, allowed values, URL rules,
//! cross-references. Pure: no file system, no network.

use std::collections::HashMap;

use url::Url;

use crate::lanes::{DeviceLane, LaneMap, MAX_ROAD_LANE};
use crate::path::KeyPath;
use crate::schema::*;

/// One semantic problem, before it is given a file position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The offending key.
    pub key: KeyPath,
    /// What is wrong, for a person.
    pub reason: String,
}

/// One road lane fed by one source: the resolved lane maps of all sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneAssignment {
    /// The source id (`serial.id`, `mqtt.id`, `camera.id`, `simulated.id`).
    pub source_id: String,
    /// For MQTT, the index of the topic within the broker's `topics`.
    pub topic: Option<usize>,
    /// The lane as the device names it.
    pub device: DeviceLane,
    /// The detector id samples are stored under.
    pub detector_id: String,
    /// The road lane (≥ 1).
    pub lane: u16,
}

/// Lane assignment with the key path of its `lane` value, for messages.
struct Placed {
    assignment: LaneAssignment,
    lane_key: KeyPath,
    /// Path of the source table (`serial[0]`), to tell sources apart.
    source: KeyPath,
}

#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, key: KeyPath, reason: impl Into<String>) {
        self.0.push(Issue {
            key,
            reason: reason.into(),
        });
    }
}

const ID_RULE: &str =
    "use 1–64 characters A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit";

fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_valid_slug(id: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    id.len() <= 63
        && id.starts_with(ok_char)
        && id.ends_with(ok_char)
        && id.chars().all(|c| ok_char(c) || c == '-')
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Config {
    /// Every semantic problem of this configuration (empty = valid).
    ///
    /// Checks ranges, allowed values, URL rules and cross-references (unique
    /// ids, lane maps that overlap). It does not read files: `password_file`
    /// and `ca_file` are checked by the loader.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Issues::default();
        self.check_node(&mut out);
        self.check_spool(&mut out);
        self.check_clips(&mut out);
        if let Some(uplink) = &self.uplink {
            check_uplink(uplink, &mut out);
        }
        self.check_aggregation(&mut out);
        self.check_http(&mut out);
        self.check_sources(&mut out);
        out.0
    }

    /// The resolved lane maps of all sources, in source order.
    pub fn lane_assignments(&self) -> Vec<LaneAssignment> {
        self.placed_lanes()
            .into_iter()
            .map(|p| p.assignment)
            .collect()
    }

    /// Ids of all sources in file order: serial, mqtt, camera, simulated.
    pub fn source_ids(&self) -> Vec<&str> {
        self.sources().into_iter().map(|(_, id)| id).collect()
    }

    fn sources(&self) -> Vec<(KeyPath, &str)> {
        let root = KeyPath::root();
        let mut all = Vec::new();
        for (i, s) in self.serial.iter().enumerate() {
            all.push((root.key("serial").index(i), s.id.as_str()));
        }
        for (i, s) in self.mqtt.iter().enumerate() {
            all.push((root.key("mqtt").index(i), s.id.as_str()));
        }
        for (i, s) in self.camera.iter().enumerate() {
            all.push((root.key("camera").index(i), s.id.as_str()));
        }
        for (i, s) in self.simulated.iter().enumerate() {
            all.push((root.key("simulated").index(i), s.id.as_str()));
        }
        all
    }

    fn check_node(&self, out: &mut Issues) {
        let base = KeyPath::root().key("node");
        let node = &self.node;
        if !is_valid_slug(&node.edge_id) {
            out.push(
                base.key("edge_id"),
                format!(
                    "invalid edge id {:?}: use 1–63 characters a-z, 0-9 and '-', starting and ending with a letter or digit",
                    node.edge_id
                ),
            );
        }
        if let Some(site) = &node.site_id {
            if !is_valid_id(site) {
                out.push(
                    base.key("site_id"),
                    format!("invalid site id {site:?}: {ID_RULE}"),
                );
            }
        }
        if let Some(loc) = &node.location {
            let base = base.key("location");
            if !(-90.0..=90.0).contains(&loc.lat) {
                out.push(
                    base.key("lat"),
                    format!("latitude {} is outside -90 to 90", loc.lat),
                );
            }
            if !(-180.0..=180.0).contains(&loc.lon) {
                out.push(
                    base.key("lon"),
                    format!("longitude {} is outside -180 to 180", loc.lon),
                );
            }
        }
    }

    fn check_clips(&self, out: &mut Issues) {
        let base = KeyPath::root().key("clips");
        if !self.clips.dir.is_absolute() {
            out.push(
                base.key("dir"),
                format!("{:?} must be an absolute path", self.clips.dir),
            );
        }
        if self.clips.max_bytes < MIN_CLIPS_BYTES {
            out.push(
                base.key("max_bytes"),
                format!(
                    "{} is below the minimum of {MIN_CLIPS_BYTES}",
                    self.clips.max_bytes
                ),
            );
        }
    }

    fn check_spool(&self, out: &mut Issues) {
        let base = KeyPath::root().key("spool");
        let spool = &self.spool;
        if !spool.dir.is_absolute() {
            out.push(
                base.key("dir"),
                format!(
                    "{:?} is not an absolute path (the daemon's working directory is not defined)",
                    spool.dir
                ),
            );
        }
        if spool.max_bytes < MIN_SPOOL_BYTES {
            out.push(
                base.key("max_bytes"),
                format!(
                    "{} is below the minimum of {MIN_SPOOL_BYTES}",
                    spool.max_bytes
                ),
            );
        }
        if spool.segment_bytes < MIN_SEGMENT_BYTES {
            out.push(
                base.key("segment_bytes"),
                format!(
                    "{} is below the minimum of {MIN_SEGMENT_BYTES}",
                    spool.segment_bytes
                ),
            );
        } else if spool.max_bytes >= MIN_SPOOL_BYTES
            && spool.segment_bytes.bytes() > spool.max_bytes.bytes() / 2
        {
            out.push(
                base.key("segment_bytes"),
                format!(
                    "{} is more than half of max_bytes ({}); the spool must hold at least two segments",
                    spool.segment_bytes, spool.max_bytes
                ),
            );
        }
        if spool.fsync_interval_ms > MAX_FSYNC_INTERVAL_MS {
            out.push(
                base.key("fsync_interval_ms"),
                format!(
                    "{} is above the maximum of {MAX_FSYNC_INTERVAL_MS}",
                    spool.fsync_interval_ms
                ),
            );
        }
    }

    fn check_aggregation(&self, out: &mut Issues) {
        let base = KeyPath::root().key("aggregation");
        let agg = &self.aggregation;
        if !ALLOWED_INTERVALS_S.contains(&agg.interval_s) {
            out.push(
                base.key("interval_s"),
                format!(
                    "interval {} s is not allowed (allowed: {})",
                    agg.interval_s,
                    list(&ALLOWED_INTERVALS_S)
                ),
            );
        }
        if agg.allowed_lateness_s > MAX_ALLOWED_LATENESS_S {
            out.push(
                base.key("allowed_lateness_s"),
                format!(
                    "{} is above the maximum of {MAX_ALLOWED_LATENESS_S}",
                    agg.allowed_lateness_s
                ),
            );
        }
        if agg.max_clock_skew_s > MAX_CLOCK_SKEW_S {
            out.push(
                base.key("max_clock_skew_s"),
                format!(
                    "{} is above the maximum of {MAX_CLOCK_SKEW_S}",
                    agg.max_clock_skew_s
                ),
            );
        }
    }

    fn check_http(&self, out: &mut Issues) {
        if self.http.listen.port() == 0 {
            out.push(
                KeyPath::root().key("http").key("listen"),
                "port 0 would pick a random port; the metrics scraper needs a fixed one",
            );
        }
    }

    fn check_sources(&self, out: &mut Issues) {
        let sources = self.sources();
        if sources.is_empty() {
            out.push(
                KeyPath::root(),
                "no sources configured: add at least one [[serial]], [[mqtt]], [[camera]] or [[simulated]] table",
            );
        }
        let mut seen: HashMap<&str, &KeyPath> = HashMap::new();
        for (path, id) in &sources {
            let key = path.key("id");
            if !is_valid_id(id) {
                out.push(key, format!("invalid source id {id:?}: {ID_RULE}"));
            } else if let Some(first) = seen.get(id) {
                out.push(
                    key,
                    format!("duplicate source id {id:?} (already used by {first}.id)"),
                );
            } else {
                seen.insert(id, path);
            }
        }

        let mut ports: HashMap<&std::path::Path, usize> = HashMap::new();
        for (i, s) in self.serial.iter().enumerate() {
            let base = KeyPath::root().key("serial").index(i);
            check_serial(s, &base, out);
            if let Some(first) = ports.get(s.port.as_path()) {
                out.push(
                    base.key("port"),
                    format!(
                        "port {:?} is already used by serial[{first}]; one port serves one source",
                        s.port
                    ),
                );
            } else {
                ports.insert(&s.port, i);
            }
        }

        let mut sessions: HashMap<(String, u16, String), usize> = HashMap::new();
        for (i, m) in self.mqtt.iter().enumerate() {
            let base = KeyPath::root().key("mqtt").index(i);
            check_mqtt(m, &base, out);
            let client_id = m.client_id(&self.node);
            let session = (
                m.url.host_str().unwrap_or_default().to_ascii_lowercase(),
                m.port(),
                client_id.clone(),
            );
            if let Some(first) = sessions.get(&session) {
                out.push(
                    base.key("client_id"),
                    format!(
                        "client id {client_id:?} is already used by mqtt[{first}] on the same broker; the broker would disconnect one of them"
                    ),
                );
            } else {
                sessions.insert(session, i);
            }
        }

        for (i, c) in self.camera.iter().enumerate() {
            check_camera(c, &KeyPath::root().key("camera").index(i), out);
        }
        for (i, s) in self.simulated.iter().enumerate() {
            check_simulated(s, &KeyPath::root().key("simulated").index(i), out);
        }

        let mut claimed: HashMap<(String, u16), (KeyPath, KeyPath)> = HashMap::new();
        for placed in self.placed_lanes() {
            let a = &placed.assignment;
            if a.lane == 0 || a.lane > MAX_ROAD_LANE {
                continue; // reported by the lane map check
            }
            let slot = (a.detector_id.clone(), a.lane);
            if let Some((first, first_source)) = claimed.get(&slot) {
                let same_id_elsewhere = first_source != &placed.source
                    && seen
                        .get(a.source_id.as_str())
                        .is_some_and(|p| **p != placed.source);
                if same_id_elsewhere {
                    continue; // a consequence of the duplicate source id reported above
                }
                out.push(
                    placed.lane_key,
                    format!(
                        "lane {} of detector {:?} is already mapped by {first}",
                        a.lane, a.detector_id
                    ),
                );
            } else {
                claimed.insert(slot, (placed.lane_key, placed.source));
            }
        }
    }

    fn placed_lanes(&self) -> Vec<Placed> {
        let mut all = Vec::new();
        let mut place = |map: &LaneMap, src: KeyPath, source: &str, topic, default_det: &str| {
            let base = match topic {
                Some(t) => src.key("topics").index(t).key("lanes"),
                None => src.key("lanes"),
            };
            for (i, e) in map.entries().iter().enumerate() {
                all.push(Placed {
                    source: src.clone(),
                    assignment: LaneAssignment {
                        source_id: source.to_owned(),
                        topic,
                        device: e.device.clone(),
                        detector_id: e.detector_id.as_deref().unwrap_or(default_det).to_owned(),
                        lane: e.lane,
                    },
                    lane_key: map.lane_path(&base, i),
                });
            }
        };
        let root = KeyPath::root();
        for (i, s) in self.serial.iter().enumerate() {
            if let Some(map) = &s.lanes {
                place(
                    map,
                    root.key("serial").index(i),
                    &s.id,
                    None,
                    s.detector_id(),
                );
            }
        }
        for (i, m) in self.mqtt.iter().enumerate() {
            for (t, topic) in m.topics.iter().enumerate() {
                if let Some(map) = &topic.lanes {
                    let det = topic.detector_id.as_deref().unwrap_or(&m.id);
                    place(map, root.key("mqtt").index(i), &m.id, Some(t), det);
                }
            }
        }
        for (i, c) in self.camera.iter().enumerate() {
            if let (true, Some(map)) = (c.metadata, &c.lanes) {
                let det = c.detector_id.as_deref().unwrap_or(&c.id);
                place(map, root.key("camera").index(i), &c.id, None, det);
            }
        }
        for (i, s) in self.simulated.iter().enumerate() {
            for lane in 1..=s.lanes.min(MAX_SIMULATED_LANES) {
                all.push(Placed {
                    assignment: LaneAssignment {
                        source_id: s.id.clone(),
                        topic: None,
                        device: DeviceLane::Number(u32::from(lane)),
                        detector_id: s.detector_id().to_owned(),
                        lane,
                    },
                    lane_key: root.key("simulated").index(i).key("lanes"),
                    source: root.key("simulated").index(i),
                });
            }
        }
        all
    }
}

fn check_uplink(uplink: &Uplink, out: &mut Issues) {
    let base = KeyPath::root().key("uplink");
    let url_key = base.key("database_url");
    let url = &uplink.database_url;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        out.push(
            url_key.clone(),
            format!(
                "scheme must be postgres:// or postgresql://, not {}://",
                url.scheme()
            ),
        );
    } else {
        if url.password().is_some() {
            out.push(
                url_key.clone(),
                "the URL must not embed a password; set uplink.password_file (or uplink.password, or INGEST__UPLINK__PASSWORD)",
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            out.push(url_key.clone(), "the URL has no host");
        }
        if url.username().is_empty() {
            out.push(
                url_key.clone(),
                "the URL has no user name (postgres://USER@HOST/DATABASE)",
            );
        }
        if url.path().trim_start_matches('/').is_empty() {
            out.push(
                url_key.clone(),
                "the URL has no database name (postgres://USER@HOST/DATABASE)",
            );
        }
        for (name, _) in url.query_pairs() {
            match name.as_ref() {
                "password" => out.push(
                    url_key.clone(),
                    "the URL must not embed a password; set uplink.password_file (or uplink.password, or INGEST__UPLINK__PASSWORD)",
                ),
                "sslmode" | "sslrootcert" | "sslcert" | "sslkey" => out.push(
                    url_key.clone(),
                    format!("URL parameter {name:?} is not used; configure TLS in [uplink.tls]"),
                ),
                _ => {}
            }
        }
    }
    check_password_pair(
        &base,
        uplink.password.as_ref(),
        uplink.password_file.is_some(),
        out,
    );
    if uplink.tls.ca_file.is_some() && uplink.tls.mode != TlsMode::VerifyFull {
        out.push(
            base.key("tls").key("ca_file"),
            format!(
                "ca_file is only used with mode = \"verify-full\" (mode is {:?})",
                uplink.tls.mode.as_str()
            ),
        );
    }
    if !(1..=100_000).contains(&uplink.batch_max_samples) {
        out.push(
            base.key("batch_max_samples"),
            format!("{} is outside 1 to 100000", uplink.batch_max_samples),
        );
    }
    if !(100..=600_000).contains(&uplink.batch_max_age_ms) {
        out.push(
            base.key("batch_max_age_ms"),
            format!("{} is outside 100 to 600000", uplink.batch_max_age_ms),
        );
    }
    if uplink.retry_backoff_min_ms < 10 {
        out.push(
            base.key("retry_backoff_min_ms"),
            format!("{} is below the minimum of 10", uplink.retry_backoff_min_ms),
        );
    }
    if uplink.retry_backoff_max_ms > 3_600_000 {
        out.push(
            base.key("retry_backoff_max_ms"),
            format!(
                "{} is above the maximum of 3600000 (1 h)",
                uplink.retry_backoff_max_ms
            ),
        );
    } else if uplink.retry_backoff_max_ms < uplink.retry_backoff_min_ms {
        out.push(
            base.key("retry_backoff_max_ms"),
            format!(
                "{} is below retry_backoff_min_ms ({})",
                uplink.retry_backoff_max_ms, uplink.retry_backoff_min_ms
            ),
        );
    }
}

fn check_password_pair(
    base: &KeyPath,
    password: Option<&crate::Secret>,
    has_file: bool,
    out: &mut Issues,
) {
    match password {
        Some(_) if has_file => out.push(
            base.key("password"),
            "set either password or password_file, not both",
        ),
        Some(p) if p.is_empty() => out.push(base.key("password"), "the password is empty"),
        _ => {}
    }
}

fn check_credentials(
    base: &KeyPath,
    username: Option<&String>,
    password: Option<&crate::Secret>,
    has_file: bool,
    out: &mut Issues,
) {
    check_password_pair(base, password, has_file, out);
    if (password.is_some() || has_file) && username.is_none() {
        let key = if password.is_some() {
            "password"
        } else {
            "password_file"
        };
        out.push(base.key(key), "a password needs a username");
    }
}

/// Checks a URL's scheme, host and the absence of credentials.
fn check_url(
    url: &Url,
    key: &KeyPath,
    schemes: &[&str],
    credentials_hint: &str,
    out: &mut Issues,
) -> bool {
    if !schemes.contains(&url.scheme()) {
        let allowed: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        out.push(
            key.clone(),
            format!(
                "scheme must be {}, not {}://",
                allowed.join(" or "),
                url.scheme()
            ),
        );
        return false;
    }
    if url.password().is_some() {
        out.push(
            key.clone(),
            format!("the URL must not embed a password; {credentials_hint}"),
        );
    } else if !url.username().is_empty() {
        out.push(
            key.clone(),
            format!("the URL must not embed a user name; {credentials_hint}"),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        out.push(key.clone(), "the URL has no host");
    }
    true
}

fn check_lane_map(
    map: &LaneMap,
    base: &KeyPath,
    names_allowed: bool,
    names_hint: &str,
    out: &mut Issues,
) {
    if map.is_empty() {
        out.push(base.clone(), "the lane map is empty; map at least one lane");
    }
    let mut devices: HashMap<&DeviceLane, usize> = HashMap::new();
    for (i, e) in map.entries().iter().enumerate() {
        if e.lane == 0 {
            out.push(
                map.lane_path(base, i),
                format!("lane 0: road lanes are numbered from 1 to {MAX_ROAD_LANE}"),
            );
        } else if e.lane > MAX_ROAD_LANE {
            out.push(
                map.lane_path(base, i),
                format!("lane {} is out of range (1 to {MAX_ROAD_LANE})", e.lane),
            );
        }
        if let (DeviceLane::Name(name), false) = (&e.device, names_allowed) {
            out.push(
                map.device_path(base, i),
                format!("device lane {name:?} is not a number; {names_hint}"),
            );
        }
        if let DeviceLane::Name(name) = &e.device {
            if name.is_empty() {
                out.push(map.device_path(base, i), "the device lane name is empty");
            }
        }
        if let Some(first) = devices.get(&e.device) {
            out.push(
                map.device_path(base, i),
                format!(
                    "device lane {} is mapped twice (also by {})",
                    e.device,
                    map.entry_path(base, *first)
                ),
            );
        } else {
            devices.insert(&e.device, i);
        }
        if let Some(det) = &e.detector_id {
            if !is_valid_id(det) {
                out.push(
                    map.detector_path(base, i),
                    format!("invalid detector id {det:?}: {ID_RULE}"),
                );
            }
        }
    }
}

fn check_detector_id(base: &KeyPath, detector_id: Option<&String>, out: &mut Issues) {
    if let Some(det) = detector_id {
        if !is_valid_id(det) {
            out.push(
                base.key("detector_id"),
                format!("invalid detector id {det:?}: {ID_RULE}"),
            );
        }
    }
}

fn check_serial(s: &SerialSource, base: &KeyPath, out: &mut Issues) {
    if !s.port.is_absolute() {
        out.push(
            base.key("port"),
            format!(
                "{:?} is not an absolute device path (e.g. \"/dev/ttyUSB0\")",
                s.port
            ),
        );
    }
    if !STANDARD_BAUD_RATES.contains(&s.baud) {
        out.push(
            base.key("baud"),
            format!(
                "unsupported baud rate {} (supported: {})",
                s.baud,
                list(&STANDARD_BAUD_RATES)
            ),
        );
    }
    if !matches!(s.data_bits, 7 | 8) {
        out.push(
            base.key("data_bits"),
            format!("{} data bits is not supported (use 7 or 8)", s.data_bits),
        );
    }
    if !matches!(s.stop_bits, 1 | 2) {
        out.push(
            base.key("stop_bits"),
            format!("{} stop bits is not supported (use 1 or 2)", s.stop_bits),
        );
    }
    let proto = s.protocol;
    match (proto.address_range(), s.address) {
        (None, Some(_)) => out.push(
            base.key("address"),
            format!("protocol {proto} has no device address; remove address"),
        ),
        (Some((_, _, true)), None) => out.push(
            base.key("address"),
            format!("protocol {proto} needs a device address; set address"),
        ),
        (Some((lo, hi, _)), Some(a)) if !(lo..=hi).contains(&a) => {
            let what = match proto {
                Protocol::Ss105 => "drop number",
                Protocol::Ft12Tls => "link address (255 is broadcast)",
                Protocol::Ss125 => "destination id",
                _ => "sensor id",
            };
            out.push(
                base.key("address"),
                format!("address {a} is out of range for {proto}: {what} must be {lo} to {hi}"),
            );
        }
        _ => {}
    }
    match s.poll_period_ms {
        Some(_) if !proto.is_polled() => {
            let polled: Vec<&str> = Protocol::ALL
                .iter()
                .filter(|p| p.is_polled())
                .map(|p| p.as_str())
                .collect();
            out.push(
                base.key("poll_period_ms"),
                format!(
                    "protocol {proto} is not polled (the device sends on its own); remove poll_period_ms (polled protocols: {})",
                    polled.join(", ")
                ),
            );
        }
        Some(ms) if !(100..=60_000).contains(&ms) => out.push(
            base.key("poll_period_ms"),
            format!("{ms} is outside 100 to 60000"),
        ),
        _ => {}
    }
    check_detector_id(base, s.detector_id.as_ref(), out);
    match &s.lanes {
        None => out.push(
            base.key("lanes"),
            "required key is missing: map device lanes to road lanes, e.g. lanes = { 1 = 1, 2 = 2 }",
        ),
        Some(map) => check_lane_map(
            map,
            &base.key("lanes"),
            false,
            "serial detectors number their lanes",
            out,
        ),
    }
}

/// Checks an MQTT topic filter (MQTT 3.1.1 §4.7).
fn topic_filter_problem(filter: &str) -> Option<String> {
    if filter.is_empty() {
        return Some("the topic filter is empty".into());
    }
    if filter.len() > 65_535 {
        return Some("the topic filter is longer than 65535 bytes".into());
    }
    if filter.contains('\0') {
        return Some("the topic filter contains a NUL character".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len().saturating_sub(1);
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Some(format!(
                "invalid topic filter {filter:?}: '#' must be a whole level and the last one (e.g. \"site/a4/#\")"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Some(format!(
                "invalid topic filter {filter:?}: '+' must be a whole level (e.g. \"sensors/+/vehicles\")"
            ));
        }
    }
    None
}

fn check_mqtt(m: &MqttSource, base: &KeyPath, out: &mut Issues) {
    let url_key = base.key("url");
    let hint = "use username and password or password_file";
    if check_url(&m.url, &url_key, &["mqtt", "mqtts"], hint, out) {
        if !matches!(m.url.path(), "" | "/")
            || m.url.query().is_some()
            || m.url.fragment().is_some()
        {
            out.push(
                url_key.clone(),
                "a broker URL has only a host and a port (mqtt://HOST:PORT); topics go in [[mqtt.topics]]",
            );
        }
        if m.ca_file.is_some() && !m.is_tls() {
            out.push(
                base.key("ca_file"),
                "ca_file is only used with mqtts:// URLs",
            );
        }
        for (key, set) in [
            ("client_cert_file", m.client_cert_file.is_some()),
            ("client_key_file", m.client_key_file.is_some()),
        ] {
            if set && !m.is_tls() {
                out.push(
                    base.key(key),
                    format!("{key} is only used with mqtts:// URLs"),
                );
            }
        }
        match (&m.client_cert_file, &m.client_key_file) {
            (Some(_), None) => out.push(
                base.key("client_key_file"),
                "client_cert_file is set: client_key_file must be set too",
            ),
            (None, Some(_)) => out.push(
                base.key("client_cert_file"),
                "client_key_file is set: client_cert_file must be set too",
            ),
            _ => {}
        }
    }
    if let Some(id) = &m.client_id {
        if id.is_empty()
            || id.len() > 128
            || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            out.push(
                base.key("client_id"),
                format!("invalid client id {id:?}: use 1–128 printable characters without spaces"),
            );
        }
    }
    check_credentials(
        base,
        m.username.as_ref(),
        m.password.as_ref(),
        m.password_file.is_some(),
        out,
    );
    if !(5..=3600).contains(&m.keep_alive_s) {
        out.push(
            base.key("keep_alive_s"),
            format!("{} is outside 5 to 3600", m.keep_alive_s),
        );
    }
    if m.topics.is_empty() {
        out.push(
            base.key("topics"),
            "no topics: add at least one [[mqtt.topics]] table with filter, format and lanes",
        );
    }
    let mut filters: HashMap<&str, usize> = HashMap::new();
    for (t, topic) in m.topics.iter().enumerate() {
        let tb = base.key("topics").index(t);
        if let Some(reason) = topic_filter_problem(&topic.filter) {
            out.push(tb.key("filter"), reason);
        } else if let Some(first) = filters.get(topic.filter.as_str()) {
            out.push(
                tb.key("filter"),
                format!(
                    "filter {:?} is already subscribed by {}",
                    topic.filter,
                    base.key("topics").index(*first)
                ),
            );
        } else {
            filters.insert(&topic.filter, t);
        }
        if topic.qos > 1 {
            let reason = if topic.qos == 2 {
                "QoS 2 is not supported (use 0 or 1)".to_owned()
            } else {
                format!("QoS {} does not exist (use 0 or 1)", topic.qos)
            };
            out.push(tb.key("qos"), reason);
        }
        check_detector_id(&tb, topic.detector_id.as_ref(), out);
        match &topic.lanes {
            None => out.push(
                tb.key("lanes"),
                "required key is missing: map payload lanes to road lanes, e.g. lanes = { 1 = 1, 2 = 2 }",
            ),
            Some(map) => check_lane_map(
                map,
                &tb.key("lanes"),
                topic.format == PayloadFormat::OnvifCounter,
                &format!(
                    "{} payloads number their lanes (names are for onvif_counter)",
                    topic.format.as_str()
                ),
                out,
            ),
        }
    }
}

fn check_camera(c: &CameraSource, base: &KeyPath, out: &mut Issues) {
    let hint = "use username and password or password_file";
    check_url(&c.url, &base.key("url"), &["rtsp", "rtsps"], hint, out);
    check_credentials(
        base,
        c.username.as_ref(),
        c.password.as_ref(),
        c.password_file.is_some(),
        out,
    );
    if c.pre_event_s > MAX_PRE_EVENT_S {
        out.push(
            base.key("pre_event_s"),
            format!(
                "{} is above the maximum of {MAX_PRE_EVENT_S}",
                c.pre_event_s
            ),
        );
    }
    if c.post_event_s > MAX_POST_EVENT_S {
        out.push(
            base.key("post_event_s"),
            format!(
                "{} is above the maximum of {MAX_POST_EVENT_S}",
                c.post_event_s
            ),
        );
    }
    if !(100..=100_000).contains(&c.max_bitrate_kbps) {
        out.push(
            base.key("max_bitrate_kbps"),
            format!("{} is outside 100 to 100000", c.max_bitrate_kbps),
        );
    }
    if !(2..=300).contains(&c.down_after_s) {
        out.push(
            base.key("down_after_s"),
            format!("{} is outside 2 to 300", c.down_after_s),
        );
    }
    if !c.clip_rules.is_empty() && !c.metadata {
        out.push(
            base.key("clip_rules"),
            "clip rules are ONVIF analytics rules: they need metadata = true",
        );
    }
    check_detector_id(base, c.detector_id.as_ref(), out);
    match (&c.lanes, c.metadata) {
        (None, true) => out.push(
            base.key("lanes"),
            "metadata = true needs a lane map: ONVIF rule name → road lane, e.g. lanes = { \"Line1\" = 1 }",
        ),
        (Some(_), false) => out.push(
            base.key("lanes"),
            "lanes are only used with metadata = true",
        ),
        (Some(map), true) => check_lane_map(map, &base.key("lanes"), true, "", out),
        (None, false) => {}
    }
}

fn check_simulated(s: &SimulatedSource, base: &KeyPath, out: &mut Issues) {
    if !(1..=MAX_SIMULATED_LANES).contains(&s.lanes) {
        out.push(
            base.key("lanes"),
            format!("{} lanes is outside 1 to {MAX_SIMULATED_LANES}", s.lanes),
        );
    }
    if s.vehicles_per_hour > 3000 {
        out.push(
            base.key("vehicles_per_hour"),
            format!(
                "{} is above the maximum of 3000 per lane",
                s.vehicles_per_hour
            ),
        );
    }
    if !(5.0..=200.0).contains(&s.mean_speed_kmh) {
        out.push(
            base.key("mean_speed_kmh"),
            format!("{} is outside 5 to 200", s.mean_speed_kmh),
        );
    }
    check_detector_id(base, s.detector_id.as_ref(), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters() {
        for ok in [
            "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/a", "a//b", "$SYS/#",
        ] {
            assert_eq!(topic_filter_problem(ok), None, "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a/b+", "+a/b", "##"] {
            assert!(topic_filter_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn slugs_and_ids() {
        assert!(is_valid_slug("a4-km12-north"));
        assert!(is_valid_slug("x"));
        assert!(!is_valid_slug("A4"));
        assert!(!is_valid_slug("-a"));
        assert!(!is_valid_slug("a-"));
        assert!(!is_valid_slug(""));
        assert!(is_valid_id("MI-12.3_a"));
        assert!(!is_valid_id("_a"));
        assert!(!is_valid_id("a b"));
    }
}
