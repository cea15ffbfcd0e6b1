//! The configuration schema: one struct per TOML table.
//!
//! Every field's doc comment says whether it is required or what its default
//! is. [`CONFIG.md`](../CONFIG.md) is the same reference for people.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use url::Url;

use crate::lanes::LaneMap;
use crate::secret::Secret;
use crate::size::ByteSize;

/// The whole edge box configuration.
///
/// Built by [`Config::load`] / [`Config::from_str_named`], which also apply
/// environment overrides, read `*_file` secrets and validate.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Required. `[node]`.
    pub node: Node,
    /// Default: every key at its default. `[spool]`.
    pub spool: Spool,
    /// Default: none, i.e. no uplink: samples stay in the spool. `[uplink]`.
    pub uplink: Option<Uplink>,
    /// Default: every key at its default. `[aggregation]`.
    pub aggregation: Aggregation,
    /// Default: every key at its default. `[http]`.
    pub http: Http,
    /// Default: every key at its default. `[clips]`: where camera clips go.
    pub clips: Clips,
    /// Default: none. `[[serial]]`: serial-line detectors.
    pub serial: Vec<SerialSource>,
    /// Default: none. `[[mqtt]]`: MQTT brokers with sensor topics.
    pub mqtt: Vec<MqttSource>,
    /// Default: none. `[[camera]]`: RTSP cameras.
    pub camera: Vec<CameraSource>,
    /// Default: none. `[[simulated]]`: synthetic traffic for demos and tests.
    pub simulated: Vec<SimulatedSource>,
}

// ---------------------------------------------------------------- [node]

/// How road lanes are numbered at this site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneNumbering {
    /// Lane 1 is next to the median (the fast lane), as in PeMS / HPMS practice.
    #[default]
    FromMedian,
    /// Lane 1 is next to the kerb (hard shoulder side).
    FromKerb,
}

impl LaneNumbering {
    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FromMedian => "from_median",
            Self::FromKerb => "from_kerb",
        }
    }
}

/// `[node]`: who this box is and where it stands.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Required. This box's id: a slug of 1–63 characters `a-z`, `0-9` and `-`,
    /// starting and ending with a letter or digit (e.g. `"a4-km12-north"`). It
    /// stamps every batch sent upstream and derives MQTT client ids.
    pub edge_id: String,
    /// Default: the `edge_id`. The measurement site the samples belong to
    /// (1–64 characters `A-Z a-z 0-9 . _ -`). Read it with [`Node::site_id`].
    #[serde(default)]
    pub site_id: Option<String>,
    /// Default: none. Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Default: none. Where the box is.
    #[serde(default)]
    pub location: Option<Location>,
    /// Default: `"from_median"`. How road lane numbers in lane maps count:
    /// `"from_median"` (lane 1 next to the median) or `"from_kerb"`.
    #[serde(default)]
    pub lane_numbering: LaneNumbering,
}

impl Node {
    /// The site id: `site_id` when set, else `edge_id`.
    pub fn site_id(&self) -> &str {
        self.site_id.as_deref().unwrap_or(&self.edge_id)
    }
}

/// `[node.location]`: position of the box.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Required. WGS 84 latitude in degrees (−90 ..= 90).
    pub lat: f64,
    /// Required. WGS 84 longitude in degrees (−180 ..= 180).
    pub lon: f64,
    /// Default: none. Road name or number, e.g. `"A4"`.
    #[serde(default)]
    pub road: Option<String>,
    /// Default: none. Direction of travel or carriageway, e.g. `"northbound"`.
    #[serde(default)]
    pub direction: Option<String>,
}

// ---------------------------------------------------------------- [spool]

/// Default spool directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/ingest-daemon/spool";
/// Smallest allowed `spool.max_bytes`.
pub const MIN_SPOOL_BYTES: ByteSize = ByteSize::mib(8);
/// Smallest allowed `spool.segment_bytes`.
pub const MIN_SEGMENT_BYTES: ByteSize = ByteSize::kib(64);
/// Largest allowed `spool.fsync_interval_ms`.
pub const MAX_FSYNC_INTERVAL_MS: u64 = 10_000;

/// `[spool]`: the durable on-disk queue between the aggregator and the uplink.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spool {
    /// Default: `"/var/lib/ingest-daemon/spool"`. Directory of the segment
    /// files; must be an absolute path.
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Default: `"1GiB"`. Disk space the spool may use; when full, the oldest
    /// raw data goes first and samples last. At least 8 MiB. An integer (bytes)
    /// or a string such as `"512MiB"`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Default: `"4MiB"`. Size at which a segment file is closed and a new one
    /// started. At least 64 KiB and at most half of `max_bytes`.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: ByteSize,
    /// Default: `200`. At most this many milliseconds pass between a record
    /// being written and fsynced; 0 fsyncs every record. Nothing is
    /// acknowledged upstream before its fsync. 0 ..= 10000.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from(DEFAULT_SPOOL_DIR)
}
fn default_max_bytes() -> ByteSize {
    ByteSize::gib(1)
}
fn default_segment_bytes() -> ByteSize {
    ByteSize::mib(4)
}
fn default_fsync_interval_ms() -> u64 {
    200
}

impl Default for Spool {
    fn default() -> Self {
        Self {
            dir: default_spool_dir(),
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            fsync_interval_ms: default_fsync_interval_ms(),
        }
    }
}

impl Spool {
    /// `fsync_interval_ms` as a duration.
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }
}

// ---------------------------------------------------------------- [clips]

/// Smallest `clips.max_bytes`.
pub const MIN_CLIPS_BYTES: ByteSize = ByteSize::mib(16);
/// Default `clips.dir`.
pub const DEFAULT_CLIPS_DIR: &str = "/var/lib/ingest-daemon/clips";

/// `[clips]`: incident clips of the cameras.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clips {
    /// Default: `"/var/lib/ingest-daemon/clips"`. Directory of the MP4 clips;
    /// must be an absolute path.
    #[serde(default = "default_clips_dir")]
    pub dir: PathBuf,
    /// Default: `"2GiB"`. Disk space the clips may use; the oldest clips are
    /// removed first. At least 16 MiB.
    #[serde(default = "default_clips_max_bytes")]
    pub max_bytes: ByteSize,
}

fn default_clips_dir() -> PathBuf {
    PathBuf::from(DEFAULT_CLIPS_DIR)
}
fn default_clips_max_bytes() -> ByteSize {
    ByteSize::gib(2)
}

impl Default for Clips {
    fn default() -> Self {
        Self {
            dir: default_clips_dir(),
            max_bytes: default_clips_max_bytes(),
        }
    }
}

// ---------------------------------------------------------------- [uplink]

/// TLS to the central database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP. Only for a database on the same host or a private link.
    Disable,
    /// Encrypted, but the server certificate is not checked.
    Require,
    /// Encrypted; the certificate must chain to a trusted CA and name the host.
    #[default]
    VerifyFull,
}

impl TlsMode {
    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// `[uplink.tls]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkTls {
    /// Default: `"verify-full"`. One of `"disable"`, `"require"`, `"verify-full"`.
    #[serde(default)]
    pub mode: TlsMode,
    /// Default: none (the system's trusted CAs). PEM file of the CA that signed
    /// the database certificate; only with `mode = "verify-full"`. A relative
    /// path is resolved against `$CREDENTIALS_DIRECTORY`; after loading this
    /// holds the resolved path. Must exist when the configuration is loaded.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[uplink]`: the connection to the central database. Absent = spool only.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// Required. `postgres://USER@HOST[:PORT]/DATABASE`. Must name a user and a
    /// database and must not contain a password (use `password` or
    /// `password_file`) nor `sslmode`/`sslrootcert` parameters (use `[uplink.tls]`).
    #[serde(deserialize_with = "de_url")]
    pub database_url: Url,
    /// Default: none. The database password. Prefer `password_file` or the
    /// `INGEST__UPLINK__PASSWORD` variable to keep it out of the file. Use
    /// [`Uplink::password`] to get the effective password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Default: none. File holding the password (trailing newline trimmed),
    /// e.g. a systemd credential, read when the configuration is loaded.
    /// Relative paths are resolved against `$CREDENTIALS_DIRECTORY`. Not
    /// together with `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Not a TOML key: the content of `password_file`, filled by the loader.
    #[serde(skip)]
    pub password_from_file: Option<Secret>,
    /// Default: `mode = "verify-full"` with the system CAs.
    #[serde(default)]
    pub tls: UplinkTls,
    /// Default: `5000`. Largest batch sent in one COPY. 1 ..= 100000.
    #[serde(default = "default_batch_max_samples")]
    pub batch_max_samples: u32,
    /// Default: `5000`. A batch is sent when its oldest sample is this old,
    /// full or not. 100 ..= 600000.
    #[serde(default = "default_batch_max_age_ms")]
    pub batch_max_age_ms: u64,
    /// Default: `500`. First retry delay after a failed connection or batch;
    /// doubled (with jitter) on each failure. At least 10.
    #[serde(default = "default_retry_backoff_min_ms")]
    pub retry_backoff_min_ms: u64,
    /// Default: `60000`. Retry delay cap; at least `retry_backoff_min_ms`,
    /// at most 3600000 (1 h).
    #[serde(default = "default_retry_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
}

fn default_batch_max_samples() -> u32 {
    5000
}
fn default_batch_max_age_ms() -> u64 {
    5000
}
fn default_retry_backoff_min_ms() -> u64 {
    500
}
fn default_retry_backoff_max_ms() -> u64 {
    60_000
}

impl Uplink {
    /// The effective password: `password`, else the content of `password_file`.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref().or(self.password_from_file.as_ref())
    }

    /// `batch_max_age_ms` as a duration.
    pub fn batch_max_age(&self) -> Duration {
        Duration::from_millis(self.batch_max_age_ms)
    }

    /// `(retry_backoff_min_ms, retry_backoff_max_ms)` as durations.
    pub fn retry_backoff(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.retry_backoff_min_ms),
            Duration::from_millis(self.retry_backoff_max_ms),
        )
    }
}

// ---------------------------------------------------------------- [aggregation]

/// Allowed `aggregation.interval_s` values.
pub const ALLOWED_INTERVALS_S: [u32; 3] = [30, 60, 300];
/// Largest allowed `aggregation.allowed_lateness_s`.
pub const MAX_ALLOWED_LATENESS_S: u32 = 300;
/// Largest allowed `aggregation.max_clock_skew_s`.
pub const MAX_CLOCK_SKEW_S: u32 = 3600;

/// `[aggregation]`: how vehicle events become traffic samples.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// Default: `30`. Bin length in seconds, aligned to the wall clock: 30, 60 or 300.
    #[serde(default = "default_interval_s")]
    pub interval_s: u32,
    /// Default: `10`. A bin closes this many seconds after its end, so that
    /// late events still count. 0 ..= 300.
    #[serde(default = "default_allowed_lateness_s")]
    pub allowed_lateness_s: u32,
    /// Default: `2`. A device time further than this from the box's arrival time is not
    /// trusted: the observation is binned by box time and flagged CLOCK_SKEW. 0 ..= 3600.
    #[serde(default = "default_max_clock_skew_s")]
    pub max_clock_skew_s: u32,
}

fn default_interval_s() -> u32 {
    30
}
fn default_allowed_lateness_s() -> u32 {
    10
}
fn default_max_clock_skew_s() -> u32 {
    2
}

impl Default for Aggregation {
    fn default() -> Self {
        Self {
            interval_s: default_interval_s(),
            allowed_lateness_s: default_allowed_lateness_s(),
            max_clock_skew_s: default_max_clock_skew_s(),
        }
    }
}

// ---------------------------------------------------------------- [http]

/// Default `http.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9108";

/// `[http]`: the `/metrics` and `/health` endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Default: `"127.0.0.1:9108"`. Socket address `IP:PORT` (IPv6 as
    /// `[::1]:9108`); host names are not accepted.
    #[serde(default = "default_listen", deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9108))
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

// ---------------------------------------------------------------- [[serial]]

/// Wire protocol of a serial detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// IEC 60870-5 FT1.2 link frames carrying German TLS telegrams (polled).
    Ft12Tls,
    /// Wavetronix SmartSensor 125 "Z1" binary protocol (polled).
    Ss125,
    /// Wavetronix SmartSensor 105 ASCII protocol (polled).
    Ss105,
    /// RTMS G4 binary protocol (the sensor sends on its own).
    RtmsG4,
    /// IRIS `.vlog` per-vehicle text lines (streamed).
    Vlog,
    /// PeMS 30-second CSV lines (streamed).
    Pems,
}

impl Protocol {
    /// Every protocol, in documentation order.
    pub const ALL: [Protocol; 6] = [
        Self::Ft12Tls,
        Self::Ss125,
        Self::Ss105,
        Self::RtmsG4,
        Self::Vlog,
        Self::Pems,
    ];

    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ft12Tls => "ft12_tls",
            Self::Ss125 => "ss125",
            Self::Ss105 => "ss105",
            Self::RtmsG4 => "rtms_g4",
            Self::Vlog => "vlog",
            Self::Pems => "pems",
        }
    }

    /// True when the box must ask the device for data (`poll_period_ms` applies).
    pub fn is_polled(self) -> bool {
        matches!(self, Self::Ft12Tls | Self::Ss125 | Self::Ss105)
    }

    /// The device addresses the protocol can carry, and whether `address` is
    /// required. `None`: the protocol has no address and `address` must not be set.
    ///
    /// - `ft12_tls`: link address A, one byte; 255 is broadcast → 0 ..= 254, required.
    /// - `ss125`: destination id, u16 → 0 ..= 65535, required.
    /// - `ss105`: 4-digit drop number → 0 ..= 9999, required.
    /// - `rtms_g4`: sensor id, u16 → 0 ..= 65535, optional (frames from other ids are dropped).
    pub fn address_range(self) -> Option<(u32, u32, bool)> {
        match self {
            Self::Ft12Tls => Some((0, 254, true)),
            Self::Ss125 => Some((0, 65_535, true)),
            Self::Ss105 => Some((0, 9_999, true)),
            Self::RtmsG4 => Some((0, 65_535, false)),
            Self::Vlog | Self::Pems => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serial parity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Baud rates accepted for `serial.baud`.
pub const STANDARD_BAUD_RATES: [u32; 8] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200];
/// Default poll period for polled protocols.
pub const DEFAULT_POLL_PERIOD_MS: u64 = 1000;

/// `[[serial]]`: one detector on a serial line.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSource {
    /// Required. Source id, unique across all sources (1–64 characters
    /// `A-Z a-z 0-9 . _ -`, starting with a letter or digit).
    pub id: String,
    /// Required. Absolute device path, e.g. `"/dev/ttyUSB0"` or a stable
    /// `"/dev/serial/by-id/..."` name. Not checked for existence (an adapter may
    /// be plugged in later); one port serves one source.
    pub port: PathBuf,
    /// Required. One of `ft12_tls`, `ss125`, `ss105`, `rtms_g4`, `vlog`, `pems`.
    pub protocol: Protocol,
    /// Default: `9600`. One of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Default: `8`. 7 or 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Default: `"none"`. `"none"`, `"even"` or `"odd"`.
    #[serde(default)]
    pub parity: Parity,
    /// Default: `1`. 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Device address; required for `ft12_tls` (0–254), `ss125` (0–65535) and
    /// `ss105` (drop 0–9999), optional for `rtms_g4` (sensor id 0–65535),
    /// not allowed for `vlog` and `pems`. Default: none.
    #[serde(default)]
    pub address: Option<u32>,
    /// Default: `1000` for the polled protocols (`ft12_tls`, `ss125`, `ss105`);
    /// 100 ..= 60000. Setting it for another protocol is an error, because it
    /// would do nothing. Read it with [`SerialSource::poll_period`].
    #[serde(default)]
    pub poll_period_ms: Option<u64>,
    /// Default: the source `id`. Detector id for lanes whose lane map entry
    /// sets none.
    #[serde(default)]
    pub detector_id: Option<String>,
    /// Required, at least one entry. Device lane number → road lane.
    #[serde(default)]
    pub lanes: Option<LaneMap>,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

impl SerialSource {
    /// The poll period for polled protocols (configured or 1 s), `None` for
    /// protocols where the device sends on its own.
    pub fn poll_period(&self) -> Option<Duration> {
        self.protocol
            .is_polled()
            .then(|| Duration::from_millis(self.poll_period_ms.unwrap_or(DEFAULT_POLL_PERIOD_MS)))
    }

    /// `detector_id`, else `id`.
    pub fn detector_id(&self) -> &str {
        self.detector_id.as_deref().unwrap_or(&self.id)
    }
}

// ---------------------------------------------------------------- [[mqtt]]

/// Payload format of an MQTT topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// The project's JSON per-vehicle event schema.
    VehicleJson,
    /// FIWARE `TrafficFlowObserved` JSON (aggregated).
    Fiware,
    /// ONVIF event notifications (`wsnt:NotificationMessage`, `wsnt:Notify`,
    /// `tt:MetadataStream`) of line-crossing and counting rules, lanes named by rule.
    OnvifCounter,
}

impl PayloadFormat {
    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VehicleJson => "vehicle_json",
            Self::Fiware => "fiware",
            Self::OnvifCounter => "onvif_counter",
        }
    }
}

/// `[[mqtt]]`: one broker connection.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSource {
    /// Required. Source id, unique across all sources.
    pub id: String,
    /// Required. `mqtt://HOST[:PORT]` (default port 1883) or
    /// `mqtts://HOST[:PORT]` (TLS, default port 8883). No user, password,
    /// path or query.
    #[serde(deserialize_with = "de_url")]
    pub url: Url,
    /// Default: `"<edge_id>-<id>"`, e.g. `"a4-km12-north-broker"`; read it with
    /// [`MqttSource::client_id`]. Must be unique per broker: with a persistent
    /// session the broker keeps the subscription and queued messages under it.
    /// 1–128 printable characters without spaces.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Default: none (anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// Default: none. Broker password; needs `username`. Not together with `password_file`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Default: none. File holding the password, as for `uplink.password_file`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Not a TOML key: the content of `password_file`, filled by the loader.
    #[serde(skip)]
    pub password_from_file: Option<Secret>,
    /// Default: none (system CAs). CA certificate (PEM) for `mqtts://`; resolved
    /// and checked like `uplink.tls.ca_file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Default: none. Client certificate (PEM, leaf first, then any intermediates) for
    /// brokers that require one (`mqtts://` only; set together with `client_key_file`).
    /// A relative path is resolved against `$CREDENTIALS_DIRECTORY`, like `ca_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// Default: none. The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `client_cert_file`;
    /// resolved like `ca_file`. Never logged.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Default: `false`: a persistent session, so QoS 1 messages published
    /// while the box was away are delivered on reconnect.
    #[serde(default)]
    pub clean_session: bool,
    /// Default: `30`. MQTT keep-alive in seconds, 5 ..= 3600.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u16,
    /// Required, at least one `[[mqtt.topics]]`.
    #[serde(default)]
    pub topics: Vec<MqttTopic>,
}

fn default_keep_alive_s() -> u16 {
    30
}

impl MqttSource {
    /// The effective password: `password`, else the content of `password_file`.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref().or(self.password_from_file.as_ref())
    }

    /// `client_id`, else `"<edge_id>-<id>"`.
    pub fn client_id(&self, node: &Node) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", node.edge_id, self.id))
    }

    /// True for `mqtts://`.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "mqtts"
    }

    /// The port from the URL, else 8883 for `mqtts://` and 1883 for `mqtt://`.
    pub fn port(&self) -> u16 {
        self.url
            .port()
            .unwrap_or(if self.is_tls() { 8883 } else { 1883 })
    }
}

/// `[[mqtt.topics]]`: one subscription.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTopic {
    /// Required. Topic filter; `+` must fill a whole level and `#` must be
    /// the whole last level (`sensors/+/vehicles`, `site/a4/#`).
    pub filter: String,
    /// Required. `"vehicle_json"`, `"fiware"` or `"onvif_counter"`.
    pub format: PayloadFormat,
    /// Default: `1`. Subscription QoS: 0 or 1 (2 is not supported).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Default: the broker's `id`. Detector id for lanes whose entry sets none.
    #[serde(default)]
    pub detector_id: Option<String>,
    /// Required, at least one entry. Payload lane → road lane; lane numbers
    /// for `vehicle_json` and `fiware`, rule names for `onvif_counter`.
    #[serde(default)]
    pub lanes: Option<LaneMap>,
}

fn default_qos() -> u8 {
    1
}

// ---------------------------------------------------------------- [[camera]]

/// RTSP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// RTP interleaved on the RTSP TCP connection: works through NAT and firewalls.
    #[default]
    Tcp,
    /// RTP over UDP.
    Udp,
}

/// Largest `camera.pre_event_s`.
pub const MAX_PRE_EVENT_S: u32 = 120;
/// Largest `camera.post_event_s`.
pub const MAX_POST_EVENT_S: u32 = 300;

/// `[[camera]]`: one RTSP camera.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSource {
    /// Required. Source id, unique across all sources.
    pub id: String,
    /// Required. `rtsp://HOST[:PORT]/PATH` or `rtsps://...`; no user or
    /// password in the URL (use `username` and `password`/`password_file`).
    #[serde(deserialize_with = "de_url")]
    pub url: Url,
    /// Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// Default: none. Needs `username`. Not together with `password_file`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Default: none. File holding the password, as for `uplink.password_file`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Not a TOML key: the content of `password_file`, filled by the loader.
    #[serde(skip)]
    pub password_from_file: Option<Secret>,
    /// Default: `"tcp"`. `"tcp"` or `"udp"`.
    #[serde(default)]
    pub transport: Transport,
    /// Default: `10`. Seconds of video kept before a trigger, 0 ..= 120.
    #[serde(default = "default_pre_event_s")]
    pub pre_event_s: u32,
    /// Default: `10`. Seconds recorded after a trigger, 0 ..= 300.
    #[serde(default = "default_post_event_s")]
    pub post_event_s: u32,
    /// Default: `false`. Read the ONVIF analytics metadata stream and count
    /// vehicles from it; needs `lanes`.
    #[serde(default)]
    pub metadata: bool,
    /// Default: `8000`. Highest video bitrate expected, kbit/s, 100 ..= 100000.
    /// Sizes the pre-event ring, allocated at start:
    /// `max_bitrate_kbps / 8 × (pre_event_s + 10)` bytes.
    #[serde(default = "default_max_bitrate_kbps")]
    pub max_bitrate_kbps: u32,
    /// Default: `10`. Seconds without a frame after which the camera is
    /// reported down and its session restarted, 2 ..= 300.
    #[serde(default = "default_down_after_s")]
    pub down_after_s: u32,
    /// Default: none. ONVIF rule names whose events start a clip (one at a
    /// time per camera); needs `metadata = true`.
    #[serde(default)]
    pub clip_rules: Vec<String>,
    /// Default: the camera `id`. Detector id for lanes whose entry sets none.
    #[serde(default)]
    pub detector_id: Option<String>,
    /// Required when `metadata = true`, not allowed otherwise. ONVIF rule or
    /// line name → road lane, e.g. `lanes = { "Line1" = 1, "Line2" = 2 }`.
    #[serde(default)]
    pub lanes: Option<LaneMap>,
}

fn default_pre_event_s() -> u32 {
    10
}
fn default_post_event_s() -> u32 {
    10
}
fn default_max_bitrate_kbps() -> u32 {
    8000
}
fn default_down_after_s() -> u32 {
    10
}

impl CameraSource {
    /// The effective password: `password`, else the content of `password_file`.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref().or(self.password_from_file.as_ref())
    }

    /// `detector_id`, else `id`.
    pub fn detector_id(&self) -> &str {
        self.detector_id.as_deref().unwrap_or(&self.id)
    }
}

// ---------------------------------------------------------------- [[simulated]]

/// Largest `simulated.lanes`.
pub const MAX_SIMULATED_LANES: u16 = 8;

/// `[[simulated]]`: synthetic vehicles, for demos without hardware.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedSource {
    /// Required. Source id, unique across all sources.
    pub id: String,
    /// Default: `2`. Number of road lanes simulated, 1 ..= 8; they are road
    /// lanes 1 ..= `lanes`.
    #[serde(default = "default_sim_lanes")]
    pub lanes: u16,
    /// Default: `1`. Random seed; the same seed gives the same traffic.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Default: `1200`. Mean flow per lane in vehicles per hour, 0 ..= 3000.
    #[serde(default = "default_vehicles_per_hour")]
    pub vehicles_per_hour: u32,
    /// Default: `100.0`. Mean speed in km/h, 5 ..= 200.
    #[serde(default = "default_mean_speed_kmh")]
    pub mean_speed_kmh: f64,
    /// Default: the source `id`.
    #[serde(default)]
    pub detector_id: Option<String>,
}

fn default_sim_lanes() -> u16 {
    2
}
fn default_seed() -> u64 {
    1
}
fn default_vehicles_per_hour() -> u32 {
    1200
}
fn default_mean_speed_kmh() -> f64 {
    100.0
}

impl SimulatedSource {
    /// `detector_id`, else `id`.
    pub fn detector_id(&self) -> &str {
        self.detector_id.as_deref().unwrap_or(&self.id)
    }
}

// ---------------------------------------------------------------- helpers

/// Parses a URL; the message never repeats the URL, which may hold a password.
fn de_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    Url::parse(&text).map_err(|e| de::Error::custom(format!("invalid URL ({e})")))
}

fn de_socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        de::Error::custom(format!(
            "invalid socket address {text:?} (expected IP:PORT, e.g. \"127.0.0.1:9108\" or \"[::]:9108\")"
        ))
    })
}
