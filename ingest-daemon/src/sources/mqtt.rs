//! `[[mqtt]]` sources: one broker connection (rumqttc, plain TCP), its topic subscriptions,
//! and the PUBACK only once a message is durable.
//!
//! # Session
//! The client id is fixed ([`MqttSource::client_id`]) and `clean_session` comes from the
//! configuration (default `false`): the broker keeps the subscriptions and queues QoS 1
//! messages while the daemon is away, and delivers them when it comes back. Every CONNACK
//! (re)subscribes each topic filter at its QoS (0 or 1). One `run_once` is one connection:
//! a connection error ends it and [`super::run_source`] reconnects after its jittered
//! backoff with a fresh event loop. `mqtts://` connects over TLS (rustls with the ring
//! provider): the broker's certificate is verified against `ca_file` when set, else against
//! the system's CA store, and its name against the URL's host.
//!
//! # Acknowledgement: a PUBACK means "durable on this box"
//! Acks are manual (`MqttOptions::set_manual_acks`). For each PUBLISH:
//! 1. the message (source id, topic, QoS, payload; arrival time as the record's append
//!    time) is sent to the spool writer as a `Raw` record ([`RawAppend`], format in
//!    [`RawMessage`]);
//! 2. its payload is decoded and the events pushed into the ring(s) for the aggregator, as
//!    for any source;
//! 3. the PUBACK is sent only when the writer reports the raw record fsynced. The writer
//!    fsyncs within 50 ms of the first waiting record or once 64 wait
//!    ([`crate::pipeline::RAW_SYNC_WITHIN`], [`crate::pipeline::RAW_SYNC_EVERY`]). Acks
//!    go out in arrival order (MQTT 3.1.1 §4.6).
//!
//! A payload that does not decode is counted per source by error kind
//! ([`SourceCounters::note_decode_error`]), logged at most once per
//! [`LOG_EVERY`] without its text, and **still acknowledged** once durable as raw: a poison
//! message must not come back forever. A message too large to ever fit a spool record is
//! counted (`too_long`) and acknowledged without being stored (it never could be).
//!
//! # What is and is not covered
//! - Acked ⇒ the raw message is on disk (fsynced). A `kill -9` or a power cut before the
//!   ack: the broker redelivers it (persistent session, QoS 1), so nothing is lost.
//! - The *sample* of an acked message's bin is written only when the bin closes. A crash
//!   before that would lose the bin's sample although the raw message is durable: at
//!   start, the raw messages of the bins still open at the stop are **replayed** from the
//!   spool before the first connection ([`super::replay`]), and the lanes' series resume
//!   after the newest spooled bin, so no event is counted twice.
//! - Duplicates: a message received and spooled but not acked before a crash or
//!   disconnect is delivered again, flagged DUP. Raw records then hold it twice; its
//!   events are counted once when its first copy is in the replay window (a DUP message
//!   whose topic and payload match a replayed one is not counted again:
//!   `ingest_source_redeliveries_skipped_total`). A DUP after a mere disconnect (no
//!   restart) is counted: the packet id is reused by the broker and identifies nothing
//!   after a reconnect, and identical payloads (same lane, no `ts`) are legitimately
//!   distinct vehicles. Publishers that set `ts` make a duplicate recognisable downstream.
//! - Spool full: raw records are evicted before samples (see the spool); an acked raw
//!   message may thus be evicted later, by design.
//!
//! # Topics, detectors and lanes
//! Each topic has a format and a lane map (payload lane number → road lane, optionally a
//! detector id per entry; default the topic's `detector_id`, else the source id). Each
//! detector of a source gets its own ring; the payload's `detector` member is not used
//! for routing (the topic and the lane map are the configuration's word). Events of a
//! lane the map does not name go to the topic's detector and are counted as unmapped by
//! the aggregator. `vehicle_json` is decoded with [`codecs::mqtt::decode_vehicle_events`]
//! into [`SourceItem::Vehicle`]s; `fiware` with [`codecs::mqtt::decode_fiware`]: each
//! `TrafficFlowObserved` entity becomes a [`SourceItem::Interval`] (its `laneId` mapped like
//! a vehicle's lane; device time = `dateObservedFrom`, interval = `dateObservedTo` −
//! `dateObservedFrom`; arrival = box time).
//!
//! `onvif_counter` payloads are ONVIF event notifications (a `wsnt:NotificationMessage`,
//! several in a `wsnt:Notify`, or a `tt:MetadataStream`), parsed by [`codecs::onvif::parse`]
//! and mapped by the same code as a camera's metadata track ([`super::analytics`]): the
//! lane map names rules, a `LineDetector/Crossed` event is one [`SourceItem::Vehicle`] on its
//! rule's lane, a `CountAggregation/Counter` event is as many as its count rose since the
//! last count of the same counter. Device time = `UtcTime`. Counter baselines are kept per
//! (MQTT topic name, rule, the rule's video source and analytics configuration), in memory,
//! across reconnections: the first count of a counter after a start only sets its baseline
//! (its running value is not new traffic), a count that went down is a reset (a new
//! baseline, no vehicles), and a copy older than the baseline counts nothing
//! ([`codecs::onvif::CountTracker`]). At start the replayed messages of the window rebuild the
//! baselines before the first live message; a counter whose last message before the stop is
//! older than the window loses the rise up to its first message after the start (never
//! counted twice). Events of rules the map does not name go to the topic's detector, one per
//! event, on a device lane no map names: counted as unmapped by the aggregator, like an
//! unmapped lane of the other formats.
//!
//! # Liveness and progress
//! While connected, every ring gets a mark every [`ALIVE_EVERY`]: [`SourceItem::Alive`] when
//! only `vehicle_json` and `onvif_counter` topics feed its detector (a connected, quiet topic
//! is an empty road), [`SourceItem::Progress`] when any `fiware` topic does. Interval-report
//! lanes must not be marked alive (see the aggregator's notes on `mark_alive`, and the
//! serial source's interval protocols); the progress mark still lets the pipeline's
//! watermark advance when the device is quiet. A detector fed by both kinds thus gets no
//! liveness for its per-vehicle lanes: give such topics their own `detector_id`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use edge_config::{DeviceLane, MqttSource, Node, PayloadFormat};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::analytics::{self, Analytics, Detectors, RuleRoutes, ring_of};
use super::replay::SourceReplay;
use super::{RingSender, Source, SourceItem};
use crate::aggregate::LaneMap;
use crate::clock::PipelineClock;
use crate::counters::SourceCounters;
use crate::pipeline::RawAppend;

/// A liveness mark is pushed to every ring this often while connected.
pub const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// At most one decode-error log line per source this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// rumqttc's request channel (subscribes and acks). Acks never exceed the broker's
/// in-flight window, far below this.
const REQUEST_CAPACITY: usize = 1024;
/// Free ring slots the replay waits for before each message (one message's events and a
/// liveness mark fit in it unless the payload is an unusually large array).
const REPLAY_ROOM: usize = 256;
/// Largest incoming MQTT packet accepted (also bounded by the spool's record size).
const MAX_PACKET: usize = 256 * 1024;
/// Version byte in front of every raw MQTT record.
pub const RAW_VERSION: u8 = 1;

/// The payload of a raw MQTT spool record: [`RAW_VERSION`], then postcard of this struct.
/// The arrival time is the record's append time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMessage {
    pub source_id: String,
    pub topic: String,
    pub qos: u8,
    pub payload: Vec<u8>,
}

impl RawMessage {
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = vec![RAW_VERSION];
        out.extend(postcard::to_allocvec(self).context("cannot encode a raw MQTT record")?);
        Ok(out)
    }

    /// Decodes a record written by [`RawMessage::encode`]; `None` for anything else.
    pub fn decode(record: &[u8]) -> Option<Self> {
        match record.split_first() {
            Some((&RAW_VERSION, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }
}

/// What a topic's payloads are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicFormat {
    /// The project's per-vehicle JSON events.
    VehicleJson,
    /// FIWARE `TrafficFlowObserved` entities (interval reports).
    Fiware,
    /// ONVIF event notifications; the index of the topic's [`RuleRoutes`] in
    /// [`MqttPlan::rule_routes`].
    OnvifCounter(usize),
}

/// One subscription, resolved.
#[derive(Debug, Clone)]
struct TopicPlan {
    filter: String,
    qos: QoS,
    /// Ring of the topic's own detector (unmapped lanes go there).
    default_ring: usize,
    /// (payload lane, ring index); empty for `onvif_counter` (rules are routed by name).
    lanes: Vec<(u16, usize)>,
    format: TopicFormat,
}

/// How a `[[mqtt]]` table maps onto detectors and rings.
#[derive(Debug, Clone)]
pub struct MqttPlan {
    /// One ring per entry, in this order: (detector id, its lane map).
    pub detectors: Vec<(String, LaneMap)>,
    topics: Vec<TopicPlan>,
    /// Per `onvif_counter` topic: where its rules' vehicles go.
    rule_routes: Vec<RuleRoutes>,
    /// Per ring: true when a `fiware` topic feeds it (progress marks, never liveness).
    interval_rings: Vec<bool>,
    /// For `mqtts://`: the TLS client configuration (trusted CAs).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The TLS client configuration for a broker: trust `ca_file` (PEM) when given, else the
/// system's CA store; present the client certificate when one is configured.
fn tls_config(src: &MqttSource) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let ca_file = src.ca_file.as_deref();

    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("bad PEM certificate in {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("unusable CA certificate in {}", path.display()))?;
            }
        }
        None => {
            // Certificates the system store cannot parse are skipped, as browsers do.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        bail!("no trusted CA certificate for mqtts:// (set ca_file)");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots);
    let config = match (&src.client_cert_file, &src.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| {
                    format!("cannot read the client certificate {}", cert_file.display())
                })?;
            if chain.is_empty() {
                bail!("no certificate in {}", cert_file.display());
            }
            // The key's bytes never reach an error message: only its file name does.
            let key = PrivateKeyDer::from_pem_file(key_file)
                .with_context(|| format!("cannot read the client key {}", key_file.display()))?;
            builder.with_client_auth_cert(chain, key).with_context(|| {
                format!(
                    "the client key {} does not fit the certificate {}",
                    key_file.display(),
                    cert_file.display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Resolves topics, lane maps and TLS trust; refuses what this build cannot run (QoS 2) and
/// lane maps that contradict each other.
///
/// Numbered lane maps (`vehicle_json`, `fiware`) are resolved first; the rules of
/// `onvif_counter` topics then get device lanes of their detectors above those numbers
/// ([`analytics::route_rules`]), and each such topic a device lane no map of its detector
/// names, for the events of other rules.
pub fn plan(src: &MqttSource) -> anyhow::Result<MqttPlan> {
    let tls = if src.is_tls() {
        Some(tls_config(src)?)
    } else {
        None
    };
    let mut detectors = Detectors::new();
    let mut topics = Vec::new();
    for t in &src.topics {
        let qos = match t.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            q => bail!("topic {:?}: QoS {q} is not supported", t.filter),
        };
        let format = match t.format {
            PayloadFormat::VehicleJson => TopicFormat::VehicleJson,
            PayloadFormat::Fiware => TopicFormat::Fiware,
            // Routed below, once every numbered lane is known.
            PayloadFormat::OnvifCounter => {
                topics.push(TopicPlan {
                    filter: t.filter.clone(),
                    qos,
                    default_ring: 0,
                    lanes: Vec::new(),
                    format: TopicFormat::OnvifCounter(0),
                });
                continue;
            }
        };
        let topic_detector = t.detector_id.as_deref().unwrap_or(&src.id);
        let mut lanes = Vec::new();
        let mut default_ring = None;
        for entry in t.lanes.iter().flat_map(|m| m.entries()) {
            let device = match &entry.device {
                DeviceLane::Number(n) => u16::try_from(*n)
                    .map_err(|_| anyhow!("topic {:?}: device lane {n} is too large", t.filter))?,
                DeviceLane::Name(name) => {
                    bail!("topic {:?}: lane {name:?} must be a number", t.filter)
                }
            };
            let det = entry.detector_id.as_deref().unwrap_or(topic_detector);
            let ring = ring_of(det, &mut detectors);
            if det == topic_detector {
                default_ring = Some(ring);
            }
            if let Some(pairs) = detectors.get_mut(ring).map(|d| &mut d.1)
                && !pairs.contains(&(device, entry.lane))
            {
                pairs.push((device, entry.lane));
            }
            lanes.push((device, ring));
        }
        let default_ring = match default_ring.or_else(|| lanes.first().map(|l| l.1)) {
            Some(r) => r,
            None => bail!("topic {:?} has no lanes", t.filter),
        };
        topics.push(TopicPlan {
            filter: t.filter.clone(),
            qos,
            default_ring,
            lanes,
            format,
        });
    }
    let mut rule_routes = Vec::new();
    for (t, topic) in src.topics.iter().zip(topics.iter_mut()) {
        if t.format != PayloadFormat::OnvifCounter {
            continue;
        }
        let topic_detector = t.detector_id.as_deref().unwrap_or(&src.id);
        let entries = t.lanes.as_ref().map_or(&[][..], |m| m.entries());
        let (rules, default_ring) = analytics::route_rules(entries, topic_detector, &mut detectors)
            .map_err(|e| anyhow!("topic {:?}: {e}", t.filter))?;
        topic.default_ring = match default_ring.or_else(|| rules.first().map(|r| r.1)) {
            Some(r) => r,
            None => bail!("topic {:?} has no lanes", t.filter),
        };
        topic.format = TopicFormat::OnvifCounter(rule_routes.len());
        rule_routes.push(RuleRoutes {
            rules,
            unmapped: None,
        });
    }
    // Only now is every device lane of every detector known.
    for topic in &topics {
        if let TopicFormat::OnvifCounter(i) = topic.format
            && let Some(routes) = rule_routes.get_mut(i)
        {
            let pairs = detectors
                .get(topic.default_ring)
                .map_or(&[][..], |d| &d.1[..]);
            routes.unmapped = analytics::free_device_lane(pairs).map(|l| (topic.default_ring, l));
        }
    }
    let mut interval_rings = vec![false; detectors.len()];
    for t in topics.iter().filter(|t| t.format == TopicFormat::Fiware) {
        for ring in t.lanes.iter().map(|l| l.1).chain([t.default_ring]) {
            if let Some(r) = interval_rings.get_mut(ring) {
                *r = true;
            }
        }
    }
    let detectors = detectors
        .into_iter()
        .map(|(id, pairs)| {
            LaneMap::from_pairs(pairs)
                .map(|m| (id.clone(), m))
                .map_err(|e| anyhow!("the topics' lane maps of detector {id:?} disagree: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(MqttPlan {
        detectors,
        topics,
        rule_routes,
        interval_rings,
        tls,
    })
}

/// True when `topic` matches the subscription `filter` (`+` one level, `#` the rest).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// At most one log line per [`LOG_EVERY`], telling how many were held back.
#[derive(Debug, Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A running `[[mqtt]]` source.
#[derive(Debug)]
pub struct Mqtt {
    id: String,
    options: MqttOptions,
    plan: MqttPlan,
    rings: Vec<RingSender>,
    raw: mpsc::Sender<RawAppend>,
    clock: PipelineClock,
    counters: Arc<SourceCounters>,
    /// Largest raw record the spool takes.
    max_record: usize,
    log_limit: LogLimit,
    /// Messages of the bins open at the last stop, replayed before the first connection.
    replay: SourceReplay,
    /// Per `onvif_counter` topic: its rules' routes and counter baselines (per topic name
    /// and rule), kept across reconnections.
    analytics: Vec<Analytics>,
}

/// A received message waiting for its raw record's fsync before its PUBACK.
type PendingAck = (oneshot::Receiver<u64>, Publish);

impl Mqtt {
    /// `rings`: one per `plan.detectors` entry, in that order. `max_record`: the spool's
    /// largest payload ([`crate::spool::SpoolConfig::max_payload_bytes`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        src: &MqttSource,
        node: &Node,
        plan: MqttPlan,
        rings: Vec<RingSender>,
        raw: mpsc::Sender<RawAppend>,
        clock: PipelineClock,
        counters: Arc<SourceCounters>,
        max_record: u64,
        replay: SourceReplay,
    ) -> Self {
        let host = src.url.host_str().unwrap_or("localhost").to_owned();
        let mut options = MqttOptions::new(src.client_id(node), host, src.port());
        let max_record = usize::try_from(max_record).unwrap_or(usize::MAX);
        let max_packet = MAX_PACKET.min(max_record);
        options
            .set_clean_session(src.clean_session)
            .set_keep_alive(Duration::from_secs(u64::from(src.keep_alive_s)))
            .set_manual_acks(true)
            .set_request_channel_capacity(REQUEST_CAPACITY)
            .set_max_packet_size(max_packet, max_packet);
        if let Some(user) = &src.username {
            let password = src.password().map(|p| p.expose().to_owned());
            options.set_credentials(user.clone(), password.unwrap_or_default());
        }
        if let Some(tls) = &plan.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::clone(tls),
            )));
        }
        let analytics = plan
            .rule_routes
            .iter()
            .cloned()
            .map(Analytics::new)
            .collect();
        Self {
            id: src.id.clone(),
            options,
            plan,
            rings,
            raw,
            clock,
            counters,
            max_record,
            log_limit: LogLimit::default(),
            replay,
            analytics,
        }
    }

    /// A liveness mark for per-vehicle rings, a progress mark for interval-report rings.
    fn push_alive(&mut self, at: DateTime<Utc>) {
        for (i, ring) in self.rings.iter_mut().enumerate() {
            if self.plan.interval_rings.get(i).copied().unwrap_or(false) {
                ring.push(SourceItem::Progress(at));
            } else {
                ring.push(SourceItem::Alive(at));
            }
        }
    }

    /// Spools, decodes and queues one PUBLISH for its ack.
    async fn on_publish(
        &mut self,
        client: &AsyncClient,
        publish: Publish,
        pending: &mut VecDeque<PendingAck>,
    ) -> anyhow::Result<()> {
        let arrival = self.clock.now();
        let raw = RawMessage {
            source_id: self.id.clone(),
            topic: publish.topic.clone(),
            qos: publish.qos as u8,
            payload: publish.payload.to_vec(),
        }
        .encode()?;
        if raw.len() > self.max_record {
            self.decode_error(&publish.topic, "too_long", 0, "larger than a spool record");
            client.try_ack(&publish).context("cannot queue a PUBACK")?;
            return Ok(());
        }
        let (durable, rx) = oneshot::channel();
        let request = RawAppend {
            appended_at: arrival,
            payload: raw,
            durable,
        };
        self.raw
            .send(request)
            .await
            .map_err(|_| anyhow!("the spool writer has stopped"))?;
        pending.push_back((rx, publish.clone()));
        if publish.dup && self.replay.is_redelivery(&publish.topic, &publish.payload) {
            self.counters
                .redeliveries_skipped_total
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.dispatch(&publish.topic, &publish.payload, arrival);
        Ok(())
    }

    /// Replays the spooled messages of the bins open at the last stop, through the same
    /// decoding as live ones. Waits for room in the rings rather than dropping: the
    /// aggregator is already draining them.
    async fn replay_spooled(&mut self, shutdown: &CancellationToken) {
        let messages = std::mem::take(&mut self.replay.messages);
        let total = messages.len();
        for m in messages {
            while self.rings.iter().any(|r| r.vacant_len() < REPLAY_ROOM) {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            self.push_alive(m.arrival);
            self.dispatch(&m.message.topic, &m.message.payload, m.arrival);
            self.counters
                .replayed_messages_total
                .fetch_add(1, Ordering::Relaxed);
        }
        if total > 0 {
            info!(
                messages = total,
                "replayed the spooled messages of the bins open at the last stop"
            );
        }
    }

    /// Decodes one message's payload and pushes its events into the ring(s) of its topic.
    fn dispatch(&mut self, topic_name: &str, payload: &[u8], arrival: DateTime<Utc>) {
        let Some(topic) = self
            .plan
            .topics
            .iter()
            .find(|t| filter_matches(&t.filter, topic_name))
        else {
            self.decode_error(topic_name, "unsupported", 0, "no subscription matches");
            return;
        };
        let ring_of_lane = |lane: u16| {
            topic
                .lanes
                .iter()
                .find(|l| l.0 == lane)
                .map_or(topic.default_ring, |l| l.1)
        };
        let decoded = match topic.format {
            TopicFormat::Fiware => codecs::mqtt::decode_fiware(payload).map(|entities| {
                entities
                    .iter()
                    .map(|e| {
                        let item = SourceItem::Interval {
                            report: e.to_report(),
                            arrival,
                        };
                        (ring_of_lane(e.lane_id), item)
                    })
                    .collect::<Vec<_>>()
            }),
            TopicFormat::VehicleJson => {
                codecs::mqtt::decode_vehicle_events(payload).map(|events| {
                    events
                        .iter()
                        .map(|m| {
                            let item = SourceItem::Vehicle {
                                event: m.to_event(),
                                arrival,
                            };
                            (ring_of_lane(m.lane), item)
                        })
                        .collect()
                })
            }
            TopicFormat::OnvifCounter(i) => codecs::onvif::parse(payload).map(|doc| {
                let mut out = Vec::new();
                if let Some(a) = self.analytics.get_mut(i) {
                    // Counters are kept per topic name: one filter may match many cameras.
                    a.events(topic_name, &doc, &mut out);
                }
                out.into_iter()
                    .map(|(ring, event)| (ring, SourceItem::Vehicle { event, arrival }))
                    .collect()
            }),
        };
        match decoded {
            Ok(items) => {
                for (ring, item) in items {
                    if let Some(tx) = self.rings.get_mut(ring) {
                        tx.push(item);
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                self.decode_error(topic_name, e.kind.label(), e.offset, &reason);
            }
        }
    }

    fn decode_error(&mut self, topic: &str, kind: &'static str, offset: usize, reason: &str) {
        self.counters.note_decode_error(kind);
        if let Some(suppressed) = self.log_limit.allow() {
            // The reason names the member and offset, never the payload text.
            warn!(
                topic,
                kind,
                offset,
                reason,
                suppressed,
                "MQTT payload not decoded; acknowledged, kept as raw"
            );
        }
    }
}

/// The oldest pending ack's durability; pending forever when none waits.
async fn first_durable(
    pending: &mut VecDeque<PendingAck>,
) -> Result<u64, oneshot::error::RecvError> {
    match pending.front_mut() {
        Some((rx, _)) => rx.await,
        None => std::future::pending().await,
    }
}

impl Source for Mqtt {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run_once(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        if !self.replay.messages.is_empty() {
            self.replay_spooled(shutdown).await;
        }
        let (client, mut events) = AsyncClient::new(self.options.clone(), REQUEST_CAPACITY);
        let mut pending: VecDeque<PendingAck> = VecDeque::new();
        let mut alive = tokio::time::interval(ALIVE_EVERY);
        alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut connected = false;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Unacked messages stay with the broker and come again next time.
                    let _ = client.try_disconnect();
                    return Ok(());
                }
                durable = first_durable(&mut pending) => {
                    let (_, publish) = pending.pop_front().context("no pending ack")?;
                    durable.map_err(|_| anyhow!("the spool writer stopped before an fsync"))?;
                    client.try_ack(&publish).context("cannot queue a PUBACK")?;
                }
                event = events.poll() => match event.context("MQTT connection")? {
                    Event::Incoming(Packet::ConnAck(ack)) => {
                        info!(session_present = ack.session_present, "MQTT connected");
                        connected = true;
                        let subs = self.plan.topics.iter().map(|t| {
                            rumqttc::SubscribeFilter::new(t.filter.clone(), t.qos)
                        });
                        client.try_subscribe_many(subs).context("cannot subscribe")?;
                        self.push_alive(self.clock.now());
                    }
                    // Only from here on does the broker deliver (and, with a persistent
                    // session, keep) the topics' messages.
                    Event::Incoming(Packet::SubAck(ack)) => {
                        info!(return_codes = ?ack.return_codes, "MQTT subscribed");
                    }
                    Event::Incoming(Packet::Publish(publish)) => {
                        self.on_publish(&client, publish, &mut pending).await?;
                    }
                    Event::Incoming(Packet::Disconnect) => bail!("the broker disconnected"),
                    _ => {}
                },
                _ = alive.tick() => {
                    if connected {
                        self.push_alive(self.clock.now());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_a_broker() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(!filter_matches("a/b/c", "a/b"));
        assert!(filter_matches("a/+/c", "a/x/c"));
        assert!(!filter_matches("a/+/c", "a/x/d"));
        assert!(filter_matches("a/#", "a/x/y"));
        assert!(filter_matches("#", "a"));
        assert!(filter_matches("+", "a"));
        assert!(!filter_matches("+", "a/b"));
    }

    #[test]
    fn raw_records_round_trip() {
        let m = RawMessage {
            source_id: "b".into(),
            topic: "t/1".into(),
            qos: 1,
            payload: b"{\"lane\":1}".to_vec(),
        };
        assert_eq!(RawMessage::decode(&m.encode().unwrap()), Some(m));
        assert_eq!(RawMessage::decode(b"\x02xx"), None);
        assert_eq!(RawMessage::decode(b""), None);
    }

    fn source(toml: &str) -> MqttSource {
        let text = format!("[node]\nedge_id = \"e\"\n{toml}");
        let config = edge_config::Config::from_str_with_files(
            "t.toml",
            &text,
            Vec::new(),
            &edge_config::HostFiles,
        )
        .unwrap();
        config.mqtt.into_iter().next().unwrap()
    }

    #[test]
    fn plans_one_ring_per_detector() {
        let src = source(
            r#"
[[mqtt]]
id = "b"
url = "mqtt://127.0.0.1"
[[mqtt.topics]]
filter = "a/+"
format = "vehicle_json"
lanes = { 1 = 1, 2 = { lane = 2, detector_id = "other" } }
[[mqtt.topics]]
filter = "c"
format = "vehicle_json"
qos = 0
detector_id = "other"
lanes = { 3 = 3 }
"#,
        );
        let p = plan(&src).unwrap();
        let ids: Vec<&str> = p.detectors.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(ids, ["b", "other"]);
        assert_eq!(p.detectors[1].1.pairs(), [(2, 2), (3, 3)]);
        assert_eq!(p.topics[1].default_ring, 1);
        assert_eq!(p.topics[1].qos, QoS::AtMostOnce);

        assert_eq!(p.interval_rings, [false, false]);
        assert!(p.rule_routes.is_empty());
    }

    #[test]
    fn onvif_counter_rules_get_device_lanes_of_their_own() {
        // The ONVIF topic comes first, but its rules are numbered after the numbered lanes
        // of the detector it shares with the radar topic below it.
        let src = source(
            r#"
[[mqtt]]
id = "b"
url = "mqtt://127.0.0.1"
[[mqtt.topics]]
filter = "cams/+/events"
format = "onvif_counter"
detector_id = "cam"
lanes = { "Lane1Crossing" = 1, "Lane2Count" = 2, "Far" = { lane = 4, detector_id = "radar" } }
[[mqtt.topics]]
filter = "radar/vehicles"
format = "vehicle_json"
detector_id = "radar"
lanes = { 0 = 1, 1 = 2, 2 = 3 }
"#,
        );
        let p = plan(&src).unwrap();
        let ids: Vec<&str> = p.detectors.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(ids, ["radar", "cam"]);
        assert_eq!(p.detectors[0].1.pairs(), [(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(p.detectors[1].1.pairs(), [(1, 1), (2, 2)]);
        assert_eq!(p.topics[0].format, TopicFormat::OnvifCounter(0));
        assert_eq!(p.topics[0].default_ring, 1);
        assert_eq!(
            p.rule_routes,
            [RuleRoutes {
                rules: vec![
                    ("Far".into(), 0, 3),
                    ("Lane1Crossing".into(), 1, 1),
                    ("Lane2Count".into(), 1, 2),
                ],
                // Other rules go to the topic's detector, on a lane its map does not name.
                unmapped: Some((1, 0)),
            }]
        );
        let unmapped = p.rule_routes[0].unmapped.unwrap();
        assert_eq!(p.detectors[1].1.road_lane(unmapped.1), None);
        assert_eq!(p.interval_rings, [false, false]);
    }

    #[test]
    fn fiware_topics_make_their_rings_progress_only() {
        let src = source(
            r#"
[[mqtt]]
id = "b"
url = "mqtt://127.0.0.1"
[[mqtt.topics]]
filter = "v"
format = "vehicle_json"
detector_id = "radar"
lanes = { 1 = 1 }
[[mqtt.topics]]
filter = "f"
format = "fiware"
detector_id = "loops"
lanes = { 1 = 1, 2 = 2 }
"#,
        );
        let p = plan(&src).unwrap();
        let ids: Vec<&str> = p.detectors.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(ids, ["radar", "loops"]);
        assert_eq!(p.interval_rings, [false, true]);
        assert_eq!(p.topics[1].format, TopicFormat::Fiware);
    }
}
