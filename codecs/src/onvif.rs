//! ONVIF analytics metadata and event notifications, pure.
//!
//! Two carriers, one result ([`MetadataStream`]):
//!
//! - A camera with on-board analytics sends, in an RTP track of payload type
//!   `vnd.onvif.metadata` (or `vnd.onvif.metadata.gzip`), one XML document per RTP marker
//!   bit, rooted at `tt:MetadataStream` (ONVIF Streaming Specification).
//! - Cameras and ONVIF-to-MQTT bridges publish the event notifications themselves: one
//!   `wsnt:NotificationMessage`, several inside a `wsnt:Notify` (OASIS WS-BaseNotification,
//!   as the ONVIF Core Specification's event service sends them, also inside a SOAP
//!   `Envelope`), or a whole `tt:MetadataStream`. [`parse`] takes any of these roots.
//!
//! What the daemon counts vehicles from:
//!
//! - events (`wsnt:NotificationMessage`, inside `tt:Event` in a metadata stream) whose topic
//!   is `tns1:RuleEngine/LineDetector/Crossed` (one object crossed a rule's line) or
//!   `tns1:RuleEngine/CountAggregation/Counter` (the line counting rule's running count,
//!   `Data` SimpleItem `Count`, "objects counted since the last reset"; a property, so
//!   `PropertyOperation` says `Initialized`, `Changed` or `Deleted`), each with
//!   `tt:Message/@UtcTime`. The `Source` SimpleItems name the rule (`Rule`) and its inputs
//!   (`VideoSourceConfigurationToken` and `VideoAnalyticsConfigurationToken` in the Analytics
//!   Service Specification up to 20.12, `VideoSource` and `AnalyticsConfiguration` from
//!   21.06 on); `Data` SimpleItem `ObjectId` names the crossing object;
//! - object tracks (`tt:VideoAnalytics/tt:Frame/tt:Object`) with their class: ONVIF 2.x
//!   `tt:Class/tt:Type` (attribute `Likelihood`) or ONVIF 1.x
//!   `tt:Class/tt:ClassCandidate/{tt:Type,tt:Likelihood}`, and `tt:VehicleInfo/tt:Type`.
//!
//! [`CountTracker`] turns rule events into vehicles: a crossing is one vehicle, a counter's
//! running count becomes increments per counter (see its documentation for resets and
//! restarts).
//!
//! Element names are matched by local name, and topics after their namespace prefix, because
//! cameras bind the namespaces to prefixes of their choosing (or to none: a default
//! namespace). Everything else in a document (PTZ status, shapes, other topics) is skipped;
//! notifications of other topics are counted.
//!
//! Bounds: a payload or an unzipped document above [`MAX_DOCUMENT_BYTES`] is refused (the
//! gunzip stops reading there: no gzip bomb), nesting deeper than [`MAX_DEPTH`] is refused,
//! at most [`MAX_ITEMS`] events and objects are kept per document, and names are cut at
//! [`MAX_NAME_CHARS`]. No entity is expanded beyond XML's predefined ones.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::io::Read;

use chrono::{DateTime, NaiveDateTime, Utc};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::model::VehicleClass;

/// Largest payload and largest (unzipped) document accepted, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most events, and most objects, kept from one document.
pub const MAX_ITEMS: usize = 4096;
/// Names (rules, object ids, class types) longer than this are cut.
pub const MAX_NAME_CHARS: usize = 128;
/// Local names of the document roots [`parse`] accepts: a metadata stream, a
/// WS-BaseNotification `Notify` or a single `NotificationMessage`, and a SOAP envelope
/// (whose body carries a `Notify`).
pub const ROOTS: [&str; 4] = [
    "MetadataStream",
    "Notify",
    "NotificationMessage",
    "Envelope",
];

/// How the RTP track encodes its documents (its SDP `rtpmap` encoding name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataEncoding {
    /// `vnd.onvif.metadata`: plain XML.
    Xml,
    /// `vnd.onvif.metadata.gzip`: gzip-compressed XML.
    Gzip,
}

impl MetadataEncoding {
    /// From an SDP encoding name (case-insensitive); `None` for the EXI forms and others.
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("vnd.onvif.metadata") {
            Some(Self::Xml)
        } else if name.eq_ignore_ascii_case("vnd.onvif.metadata.gzip") {
            Some(Self::Gzip)
        } else {
            None
        }
    }
}

/// What kind of rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEventKind {
    /// `tns1:RuleEngine/LineDetector/Crossed`: one object crossed the rule's line.
    LineCrossed,
    /// `tns1:RuleEngine/CountAggregation/Counter`: the rule's running count.
    Counter,
}

/// `tt:Message/@PropertyOperation` of a property event (counters are properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyOperation {
    /// The property's state as it is (sent when a subscription or stream starts, or when
    /// the property is created), not a change.
    Initialized,
    /// The property changed.
    Changed,
    /// The property no longer exists (the rule was removed).
    Deleted,
}

impl PropertyOperation {
    fn from_attr(value: &str) -> Option<Self> {
        match value.trim() {
            "Initialized" => Some(Self::Initialized),
            "Changed" => Some(Self::Changed),
            "Deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One analytics rule event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEvent {
    pub kind: RuleEventKind,
    /// The rule's name (`Source` SimpleItem `Rule`); empty when the camera sent none.
    pub rule: String,
    /// `tt:Message/@UtcTime`, by the camera's clock.
    pub time: Option<DateTime<Utc>>,
    /// `Data` SimpleItem `ObjectId` (line crossings).
    pub object_id: Option<String>,
    /// `Data` SimpleItem `Count` (counters).
    pub count: Option<u64>,
    /// `tt:Message/@PropertyOperation`, when stated.
    pub operation: Option<PropertyOperation>,
    /// `Source` SimpleItem `VideoSourceConfigurationToken` (or `VideoSource`).
    pub video_source: Option<String>,
    /// `Source` SimpleItem `VideoAnalyticsConfigurationToken` (or `AnalyticsConfiguration`).
    pub analytics_configuration: Option<String>,
}

impl RuleEvent {
    /// `PropertyOperation="Initialized"`: the state as it is, not a change.
    pub fn is_initialized(&self) -> bool {
        self.operation == Some(PropertyOperation::Initialized)
    }

    /// The running counter this event reports on.
    pub fn counter_id(&self) -> CounterId {
        CounterId {
            rule: self.rule.clone(),
            video_source: self.video_source.clone(),
            analytics_configuration: self.analytics_configuration.clone(),
        }
    }
}

/// Which running counter an event reports: its rule, and the source items that tell rules
/// of the same name on different video sources or analytics configurations apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterId {
    pub rule: String,
    pub video_source: Option<String>,
    pub analytics_configuration: Option<String>,
}

/// One tracked object in an analytics frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedObject {
    /// `@ObjectId`.
    pub id: String,
    /// The most likely class type (`Vehicle`, `Human`, `Car`, …), as the camera names it.
    pub class: Option<String>,
    /// Its likelihood, 0–1, when stated.
    pub likelihood: Option<f32>,
    /// `tt:VehicleInfo/tt:Type` (`Car`, `Bus`, `Truck`, `Motorcycle`, …).
    pub vehicle_type: Option<String>,
}

/// Class types that mean a vehicle (ONVIF 2.x `ObjectType` and common vendor words).
const VEHICLE_TYPES: [&str; 8] = [
    "Vehicle",
    "Car",
    "Bus",
    "Truck",
    "Motorcycle",
    "Van",
    "Motorbike",
    "Lorry",
];

impl TrackedObject {
    /// True when the object's class or vehicle type names a vehicle.
    pub fn is_vehicle(&self) -> bool {
        let is = |t: &Option<String>| {
            t.as_deref()
                .is_some_and(|t| VEHICLE_TYPES.iter().any(|v| v.eq_ignore_ascii_case(t)))
        };
        is(&self.class) || is(&self.vehicle_type)
    }

    /// The length class its vehicle type suggests (a car is short, a bus medium, a truck
    /// long); `None` for a plain `Vehicle` or a type not known here.
    pub fn vehicle_class(&self) -> Option<VehicleClass> {
        let t = self
            .vehicle_type
            .as_deref()
            .or(self.class.as_deref())?
            .to_ascii_lowercase();
        match t.as_str() {
            "motorcycle" | "motorbike" => Some(VehicleClass::Motorcycle),
            "car" | "van" => Some(VehicleClass::Short),
            "bus" => Some(VehicleClass::Medium),
            "truck" | "lorry" => Some(VehicleClass::Long),
            _ => None,
        }
    }
}

/// One `tt:VideoAnalytics/tt:Frame`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsFrame {
    /// `@UtcTime`.
    pub time: Option<DateTime<Utc>>,
    pub objects: Vec<TrackedObject>,
}

/// What one `tt:MetadataStream` document says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataStream {
    pub frames: Vec<AnalyticsFrame>,
    pub events: Vec<RuleEvent>,
    /// Notifications of topics not interpreted here.
    pub other_notifications: u32,
    /// Events or objects beyond [`MAX_ITEMS`], dropped.
    pub dropped_items: u32,
}

impl MetadataStream {
    /// Vehicle objects of every frame, with the frame's time.
    pub fn vehicles(&self) -> impl Iterator<Item = (Option<DateTime<Utc>>, &TrackedObject)> {
        self.frames.iter().flat_map(|f| {
            f.objects
                .iter()
                .filter(|o| o.is_vehicle())
                .map(move |o| (f.time, o))
        })
    }

    /// The class of a tracked object by id, if any frame of this document describes it.
    pub fn object(&self, id: &str) -> Option<&TrackedObject> {
        self.frames
            .iter()
            .flat_map(|f| f.objects.iter())
            .find(|o| o.id == id)
    }
}

/// Decodes one RTP metadata payload: gunzips it when `encoding` says so, then parses it.
pub fn decode(payload: &[u8], encoding: MetadataEncoding) -> Result<MetadataStream, DecodeError> {
    match encoding {
        MetadataEncoding::Xml => parse(payload),
        MetadataEncoding::Gzip => parse(&gunzip(payload)?),
    }
}

/// Gunzips a payload, refusing one whose content exceeds [`MAX_DOCUMENT_BYTES`].
pub fn gunzip(payload: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if payload.len() > MAX_DOCUMENT_BYTES {
        return Err(DecodeError::new(0, DecodeErrorKind::TooLong(payload.len())));
    }
    let mut out = Vec::new();
    let limit = u64::try_from(MAX_DOCUMENT_BYTES).unwrap_or(u64::MAX) + 1;
    flate2::read::GzDecoder::new(payload)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::field(0, "gzip", e.to_string()))?;
    if out.len() > MAX_DOCUMENT_BYTES {
        return Err(DecodeError::new(0, DecodeErrorKind::TooLong(out.len())));
    }
    Ok(out)
}

/// Where the parser is inside an element it interprets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextTarget {
    None,
    Topic,
    ClassType,
    CandidateLikelihood,
    VehicleType,
}

#[derive(Debug, Default)]
struct Notification {
    topic: String,
    time: Option<DateTime<Utc>>,
    operation: Option<PropertyOperation>,
    rule: Option<String>,
    video_source: Option<String>,
    analytics_configuration: Option<String>,
    object_id: Option<String>,
    count: Option<String>,
}

#[derive(Debug, Default)]
struct ObjectBuilder {
    id: String,
    /// (type, likelihood) candidates.
    candidates: Vec<(String, Option<f32>)>,
    vehicle_type: Option<String>,
}

/// Parses one document rooted at any of [`ROOTS`] (`tt:MetadataStream`, `wsnt:Notify`,
/// `wsnt:NotificationMessage`, SOAP `Envelope`).
pub fn parse(xml: &[u8]) -> Result<MetadataStream, DecodeError> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(DecodeError::new(0, DecodeErrorKind::TooLong(xml.len())));
    }
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut out = MetadataStream::default();
    // Local names of the open elements.
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut frame: Option<AnalyticsFrame> = None;
    let mut object: Option<ObjectBuilder> = None;
    let mut note: Option<Notification> = None;
    let mut text_target = TextTarget::None;
    let mut text = String::new();
    let mut saw_root = false;
    let mut buf = Vec::new();

    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| DecodeError::field(offset, "xml", e.to_string()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name().as_ref().to_vec();
                if !saw_root {
                    if !ROOTS.iter().any(|r| r.as_bytes() == name.as_slice()) {
                        return Err(DecodeError::field(
                            offset,
                            "root",
                            "the document is not a tt:MetadataStream, wsnt:Notify or \
                             wsnt:NotificationMessage",
                        ));
                    }
                    saw_root = true;
                }
                let parent = stack.last().map(Vec::as_slice);
                on_start(
                    &name,
                    parent,
                    e,
                    offset,
                    &mut frame,
                    &mut object,
                    &mut note,
                    &mut text_target,
                )?;
                text.clear();
                if empty {
                    on_end(
                        &name,
                        &mut out,
                        &mut frame,
                        &mut object,
                        &mut note,
                        &mut text_target,
                        &text,
                    );
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(DecodeError::field(
                            offset,
                            "depth",
                            format!("elements nested deeper than {MAX_DEPTH}"),
                        ));
                    }
                    stack.push(name);
                }
            }
            Event::Text(t) => {
                if text_target != TextTarget::None {
                    let s = t
                        .unescape()
                        .map_err(|e| DecodeError::field(offset, "text", e.to_string()))?;
                    push_capped(&mut text, &s);
                }
            }
            Event::CData(t) => {
                if text_target != TextTarget::None {
                    push_capped(&mut text, &String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                let Some(name) = stack.pop() else {
                    return Err(DecodeError::field(offset, "xml", "unbalanced end tag"));
                };
                on_end(
                    &name,
                    &mut out,
                    &mut frame,
                    &mut object,
                    &mut note,
                    &mut text_target,
                    &text,
                );
                text.clear();
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
        buf.clear();
    }
    let end = xml.len();
    if !saw_root {
        return Err(DecodeError::field(
            end,
            "root",
            "no element in the document",
        ));
    }
    if !stack.is_empty() {
        return Err(DecodeError::field(
            end,
            "xml",
            "the document ends inside an element",
        ));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn on_start(
    name: &[u8],
    parent: Option<&[u8]>,
    e: &BytesStart<'_>,
    offset: usize,
    frame: &mut Option<AnalyticsFrame>,
    object: &mut Option<ObjectBuilder>,
    note: &mut Option<Notification>,
    text_target: &mut TextTarget,
) -> Result<(), DecodeError> {
    *text_target = TextTarget::None;
    match name {
        b"Frame" if parent == Some(b"VideoAnalytics") => {
            *frame = Some(AnalyticsFrame {
                time: attr(e, b"UtcTime", offset)?.as_deref().and_then(parse_time),
                objects: Vec::new(),
            });
        }
        b"Object" if frame.is_some() => {
            *object = Some(ObjectBuilder {
                id: attr(e, b"ObjectId", offset)?.unwrap_or_default(),
                ..ObjectBuilder::default()
            });
        }
        b"Type" if object.is_some() => match parent {
            Some(b"Class") => {
                let likelihood = attr(e, b"Likelihood", offset)?.and_then(|l| l.parse().ok());
                if let Some(o) = object.as_mut() {
                    o.candidates.push((String::new(), likelihood));
                }
                *text_target = TextTarget::ClassType;
            }
            Some(b"ClassCandidate") => {
                if let Some(o) = object.as_mut() {
                    // The candidate's likelihood may come before or after its type.
                    match o.candidates.last_mut() {
                        Some((t, _)) if t.is_empty() => {}
                        _ => o.candidates.push((String::new(), None)),
                    }
                }
                *text_target = TextTarget::ClassType;
            }
            Some(b"VehicleInfo") => *text_target = TextTarget::VehicleType,
            _ => {}
        },
        b"ClassCandidate" if object.is_some() => {
            if let Some(o) = object.as_mut() {
                o.candidates.push((String::new(), None));
            }
        }
        b"Likelihood" if object.is_some() && parent == Some(b"ClassCandidate") => {
            *text_target = TextTarget::CandidateLikelihood;
        }
        b"NotificationMessage" => *note = Some(Notification::default()),
        b"Topic" if note.is_some() => *text_target = TextTarget::Topic,
        b"Message" if note.is_some() => {
            if let Some(n) = note.as_mut() {
                if let Some(t) = attr(e, b"UtcTime", offset)? {
                    n.time = parse_time(&t);
                }
                if let Some(op) = attr(e, b"PropertyOperation", offset)? {
                    n.operation = PropertyOperation::from_attr(&op);
                }
            }
        }
        b"SimpleItem" if note.is_some() => {
            let item = attr(e, b"Name", offset)?;
            let value = attr(e, b"Value", offset)?;
            if let (Some(n), Some(item), Some(value)) = (note.as_mut(), item, value) {
                match (parent, item.as_str()) {
                    (Some(b"Source"), "Rule") => n.rule = Some(value),
                    (Some(b"Source"), "VideoSourceConfigurationToken" | "VideoSource") => {
                        n.video_source = Some(value);
                    }
                    (
                        Some(b"Source"),
                        "VideoAnalyticsConfigurationToken" | "AnalyticsConfiguration",
                    ) => n.analytics_configuration = Some(value),
                    (Some(b"Data"), "ObjectId") => n.object_id = Some(value),
                    (Some(b"Data"), "Count") => n.count = Some(value),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn on_end(
    name: &[u8],
    out: &mut MetadataStream,
    frame: &mut Option<AnalyticsFrame>,
    object: &mut Option<ObjectBuilder>,
    note: &mut Option<Notification>,
    text_target: &mut TextTarget,
    text: &str,
) {
    match *text_target {
        TextTarget::Topic => {
            if let Some(n) = note.as_mut() {
                n.topic = text.trim().to_owned();
            }
        }
        TextTarget::ClassType => {
            if let Some((t, _)) = object.as_mut().and_then(|o| o.candidates.last_mut()) {
                *t = text.trim().to_owned();
            }
        }
        TextTarget::CandidateLikelihood => {
            if let Some((_, l)) = object.as_mut().and_then(|o| o.candidates.last_mut()) {
                *l = text.trim().parse().ok();
            }
        }
        TextTarget::VehicleType => {
            if let Some(o) = object.as_mut() {
                o.vehicle_type = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
            }
        }
        TextTarget::None => {}
    }
    *text_target = TextTarget::None;
    match name {
        b"Object" => {
            if let (Some(o), Some(f)) = (object.take(), frame.as_mut()) {
                if f.objects.len() + out.events.len() >= MAX_ITEMS {
                    out.dropped_items = out.dropped_items.saturating_add(1);
                } else {
                    f.objects.push(finish_object(o));
                }
            }
        }
        b"Frame" => {
            if let Some(f) = frame.take() {
                out.frames.push(f);
            }
        }
        b"NotificationMessage" => {
            if let Some(n) = note.take() {
                finish_notification(n, out);
            }
        }
        _ => {}
    }
}

fn finish_object(o: ObjectBuilder) -> TrackedObject {
    let best = o
        .candidates
        .into_iter()
        .filter(|(t, _)| !t.is_empty())
        .fold(None::<(String, Option<f32>)>, |best, c| match &best {
            Some((_, Some(b))) if c.1.is_none_or(|l| l <= *b) => best,
            Some((_, None)) if c.1.is_none() => best,
            _ => Some(c),
        });
    let (class, likelihood) = best.map_or((None, None), |(t, l)| (Some(t), l));
    TrackedObject {
        id: o.id,
        class,
        likelihood,
        vehicle_type: o.vehicle_type,
    }
}

fn finish_notification(n: Notification, out: &mut MetadataStream) {
    // The topic's namespace prefix is the camera's choice: compare what follows it.
    let topic = n.topic.split_once(':').map_or(n.topic.as_str(), |(_, t)| t);
    let kind = match topic {
        "RuleEngine/LineDetector/Crossed" => RuleEventKind::LineCrossed,
        "RuleEngine/CountAggregation/Counter" => RuleEventKind::Counter,
        _ => {
            out.other_notifications = out.other_notifications.saturating_add(1);
            return;
        }
    };
    if out.events.len() + out.frames.iter().map(|f| f.objects.len()).sum::<usize>() >= MAX_ITEMS {
        out.dropped_items = out.dropped_items.saturating_add(1);
        return;
    }
    out.events.push(RuleEvent {
        kind,
        rule: n.rule.unwrap_or_default(),
        time: n.time,
        object_id: n.object_id,
        count: n.count.and_then(|c| c.trim().parse().ok()),
        operation: n.operation,
        video_source: n.video_source,
        analytics_configuration: n.analytics_configuration,
    });
}

/// Most vehicles one counter change may stand for: a larger jump is a counter that was set
/// to another value (or another counter answering to the same name), not traffic.
pub const MAX_COUNTER_STEP: u64 = 1000;
/// Most running counters one [`CountTracker`] follows. Events of counters beyond it count no
/// vehicles (their baseline is never known), so a flood of rule names cannot grow it.
pub const MAX_COUNTERS: usize = 4096;

/// Turns rule events into vehicles.
///
/// - A `LineDetector/Crossed` event is one vehicle (whether its object is a vehicle is the
///   caller's business: see [`MetadataStream::object`]).
/// - A `CountAggregation/Counter` event carries a running count ("objects counted since the
///   last reset", reset at configured times of day or when the device restarts). The tracker
///   keeps, per counter (a key of the caller's choice, e.g. the topic and
///   [`RuleEvent::counter_id`]), the last count and its time, and an event stands for the
///   increase over it:
///   - the **first** count of a counter (after [`CountTracker::new`], [`CountTracker::clear`]
///     or a `Deleted` event) only sets the baseline: a running counter's value is not
///     new traffic, so a restart of the reader never counts it again;
///   - a count **up** by `n` (however it is flagged: an `Initialized` re-announcement of a
///     counter already followed continues it) is `n` vehicles; a jump above
///     [`MAX_COUNTER_STEP`] moves the baseline and counts nothing;
///   - a count **down** is a reset (a reset time, a device restart): it becomes the new
///     baseline and counts nothing. The objects counted between the reset and that event are
///     lost rather than guessed: the device may also have restored an older count, and
///     counting it would invent vehicles;
///   - an event whose `UtcTime` is **older** than the baseline's is a stale copy (an MQTT
///     redelivery, a retained message, out-of-order delivery) or comes from a device clock
///     that was set back: it counts nothing; a lower or equal count leaves the baseline as
///     it is, a higher one becomes the baseline (so a clock set back costs one step, and a
///     copy from before a reset can only make the next steps smaller);
///   - `Deleted` forgets the counter; an event without a (numeric) count changes nothing.
///
///   So the vehicles counted never exceed the objects the device counted, and equal them
///   while the counter neither resets nor jumps.
#[derive(Debug, Clone)]
pub struct CountTracker<K> {
    baselines: HashMap<K, Baseline>,
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    count: u64,
    time: Option<DateTime<Utc>>,
}

impl<K> Default for CountTracker<K> {
    fn default() -> Self {
        Self {
            baselines: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> CountTracker<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every baseline (a new stream whose counts may start anywhere).
    pub fn clear(&mut self) {
        self.baselines.clear();
    }

    /// Counters with a baseline.
    pub fn len(&self) -> usize {
        self.baselines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.baselines.is_empty()
    }

    /// How many vehicles `event` stands for; `key` names its counter (unused for crossings).
    pub fn vehicles(&mut self, key: K, event: &RuleEvent) -> u64 {
        match event.kind {
            RuleEventKind::LineCrossed => 1,
            RuleEventKind::Counter => self.counter_step(key, event),
        }
    }

    fn counter_step(&mut self, key: K, event: &RuleEvent) -> u64 {
        if event.operation == Some(PropertyOperation::Deleted) {
            self.baselines.remove(&key);
            return 0;
        }
        let Some(count) = event.count else {
            return 0;
        };
        let now = Baseline {
            count,
            time: event.time,
        };
        let full = self.baselines.len() >= MAX_COUNTERS;
        let last = match self.baselines.entry(key) {
            Entry::Vacant(v) => {
                if !full {
                    v.insert(now);
                }
                return 0;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        let older = matches!((now.time, last.time), (Some(t), Some(l)) if t < l);
        if older {
            // A stale copy, or the device clock was set back: never traffic. A higher count
            // still moves the baseline (it cannot be older than the device's state).
            if count > last.count {
                *last = now;
            }
            return 0;
        }
        let step = count.saturating_sub(last.count);
        *last = now;
        if step > MAX_COUNTER_STEP { 0 } else { step }
    }
}

/// An attribute's unescaped value, cut at [`MAX_NAME_CHARS`].
fn attr(e: &BytesStart<'_>, key: &[u8], offset: usize) -> Result<Option<String>, DecodeError> {
    for a in e.attributes() {
        let a = a.map_err(|err| DecodeError::field(offset, "attribute", err.to_string()))?;
        if a.key.local_name().as_ref() == key {
            let v = a
                .unescape_value()
                .map_err(|err| DecodeError::field(offset, "attribute", err.to_string()))?;
            let mut s = String::new();
            push_capped(&mut s, &v);
            return Ok(Some(s));
        }
    }
    Ok(None)
}

fn push_capped(s: &mut String, more: &str) {
    let room = MAX_NAME_CHARS.saturating_sub(s.chars().count());
    s.extend(more.chars().take(room));
}

/// `xs:dateTime`; without a zone it is taken as UTC (cameras that omit it mean UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/onvif/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn line_crossings_with_their_rule_object_and_time() {
        let doc = parse(&fixture("line_crossed.xml")).unwrap();
        assert_eq!(doc.events.len(), 2);
        let e = &doc.events[0];
        assert_eq!(e.kind, RuleEventKind::LineCrossed);
        assert_eq!(e.rule, "Lane1Crossing");
        assert_eq!(e.object_id.as_deref(), Some("1042"));
        assert_eq!(e.time, t("2026-11-26T08:15:02.340Z"));
        assert_eq!(e.operation, None);
        assert_eq!(e.video_source.as_deref(), Some("VideoSourceToken"));
        assert_eq!(
            e.analytics_configuration.as_deref(),
            Some("VideoAnalyticsToken")
        );
        assert_eq!(doc.events[1].rule, "Lane2Crossing");
        // The document's track tells the crossing object is a truck.
        let o = doc.object("1042").unwrap();
        assert!(o.is_vehicle());
        assert_eq!(o.vehicle_class(), Some(VehicleClass::Long));
        assert_eq!(
            doc.other_notifications, 1,
            "the motion alarm is not a rule event"
        );
    }

    #[test]
    fn counters_and_their_initial_state() {
        let doc = parse(&fixture("counter.xml")).unwrap();
        let counts: Vec<_> = doc
            .events
            .iter()
            .map(|e| (e.kind, e.rule.as_str(), e.count, e.is_initialized()))
            .collect();
        assert_eq!(
            counts,
            vec![
                (RuleEventKind::Counter, "Lane1Count", Some(118), true),
                (RuleEventKind::Counter, "Lane2Count", Some(97), false),
            ]
        );
        assert_eq!(doc.events[1].time, t("2026-11-26T08:16:00Z"));
    }

    #[test]
    fn object_tracks_in_both_class_forms() {
        let doc = parse(&fixture("objects.xml")).unwrap();
        assert_eq!(doc.frames.len(), 2);
        assert_eq!(doc.frames[0].time, t("2026-11-26T08:15:02.300Z"));
        let all: Vec<_> = doc.frames.iter().flat_map(|f| &f.objects).collect();
        let summary: Vec<_> = all
            .iter()
            .map(|o| (o.id.as_str(), o.class.as_deref(), o.is_vehicle()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("7", Some("Vehicle"), true),
                ("8", Some("Human"), false),
                // ONVIF 1.x candidates: the likelier one wins.
                ("9", Some("Vehicle"), true),
            ]
        );
        assert_eq!(all[0].likelihood, Some(0.93));
        assert_eq!(all[0].vehicle_class(), Some(VehicleClass::Short));
        assert_eq!(all[2].likelihood, Some(0.8));
        assert_eq!(doc.vehicles().count(), 2);
    }

    fn summary(doc: &MetadataStream) -> Vec<(RuleEventKind, &str, Option<u64>)> {
        doc.events
            .iter()
            .map(|e| (e.kind, e.rule.as_str(), e.count))
            .collect()
    }

    #[test]
    fn a_notify_carries_several_notifications() {
        let doc = parse(&fixture("notify.xml")).unwrap();
        assert_eq!(
            summary(&doc),
            vec![
                (RuleEventKind::LineCrossed, "Lane1Crossing", None),
                (RuleEventKind::Counter, "Lane3Count", Some(412)),
            ]
        );
        let crossing = &doc.events[0];
        assert_eq!(crossing.object_id.as_deref(), Some("2211"));
        assert_eq!(crossing.time, t("2026-11-26T08:15:02.340Z"));
        let counter = &doc.events[1];
        assert_eq!(counter.operation, Some(PropertyOperation::Changed));
        assert_eq!(
            counter.counter_id(),
            CounterId {
                rule: "Lane3Count".into(),
                video_source: Some("VideoSourceConfig_1".into()),
                analytics_configuration: Some("VideoAnalyticsConfig_1".into()),
            }
        );
        assert_eq!(
            doc.other_notifications, 1,
            "an occupancy counter is not a flow count"
        );
        assert!(doc.frames.is_empty());
    }

    #[test]
    fn a_bare_notification_message_in_a_default_namespace() {
        let doc = parse(&fixture("notification_message.xml")).unwrap();
        let [e] = doc.events.as_slice() else {
            panic!("{doc:?}")
        };
        assert_eq!(e.kind, RuleEventKind::Counter);
        assert_eq!(e.rule, "Lane 2 & 3 count");
        assert_eq!(e.count, Some(1048));
        assert!(e.is_initialized());
        assert_eq!(e.time, t("2026-11-26T08:16:00.120Z"));
        assert_eq!(e.video_source.as_deref(), Some("vs-2"));
        assert_eq!(e.analytics_configuration.as_deref(), Some("va-2"));
    }

    #[test]
    fn a_notify_inside_a_soap_envelope() {
        let doc = parse(&fixture("soap_notify.xml")).unwrap();
        assert_eq!(
            summary(&doc),
            vec![(RuleEventKind::LineCrossed, "Lane2Crossing", None)]
        );
        assert_eq!(doc.other_notifications, 0);
    }

    #[test]
    fn every_root_of_the_same_notification_gives_the_same_events() {
        let note = r#"<wsnt:NotificationMessage><wsnt:Topic>tns1:RuleEngine/LineDetector/Crossed</wsnt:Topic>
            <wsnt:Message><tt:Message UtcTime="2026-11-26T08:00:00Z"><tt:Source>
            <tt:SimpleItem Name="Rule" Value="L1"/></tt:Source></tt:Message></wsnt:Message>
            </wsnt:NotificationMessage>"#;
        let ns = r#"xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tt="http://www.onvif.org/ver10/schema""#;
        let bare = note.replacen(
            "<wsnt:NotificationMessage>",
            &format!("<wsnt:NotificationMessage {ns}>"),
            1,
        );
        let docs = [
            bare,
            format!("<wsnt:Notify {ns}>{note}</wsnt:Notify>"),
            format!("<tt:MetadataStream {ns}><tt:Event>{note}</tt:Event></tt:MetadataStream>"),
            format!(
                "<s:Envelope {ns} xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><wsnt:Notify>{note}</wsnt:Notify></s:Body></s:Envelope>"
            ),
        ];
        let first = parse(docs[0].as_bytes()).unwrap();
        assert_eq!(first.events.len(), 1);
        for d in &docs[1..] {
            assert_eq!(parse(d.as_bytes()).unwrap(), first, "{d}");
        }
    }

    fn counter(count: u64, at: &str, op: Option<PropertyOperation>) -> RuleEvent {
        RuleEvent {
            kind: RuleEventKind::Counter,
            rule: "C".into(),
            time: t(at),
            object_id: None,
            count: Some(count),
            operation: op,
            video_source: None,
            analytics_configuration: None,
        }
    }

    #[test]
    fn counts_become_increments_and_a_reset_invents_nothing() {
        let mut tracker = CountTracker::new();
        let changed = Some(PropertyOperation::Changed);
        let mut steps = Vec::new();
        for (count, at, op) in [
            // The first count only sets the baseline: it is the counter's history.
            (
                118,
                "2026-11-26T08:00:00Z",
                Some(PropertyOperation::Initialized),
            ),
            (121, "2026-11-26T08:00:10Z", changed),
            (121, "2026-11-26T08:00:20Z", changed),
            (125, "2026-11-26T08:00:30Z", changed),
            // A stale copy (older time, lower count) is ignored, the baseline stays.
            (119, "2026-11-26T08:00:05Z", changed),
            (126, "2026-11-26T08:00:40Z", changed),
            // Reset at midnight (or a restart): a new baseline, no vehicles.
            (2, "2026-11-26T08:00:50Z", changed),
            (5, "2026-11-26T08:01:00Z", changed),
            // A re-announced state of a followed counter continues it.
            (
                7,
                "2026-11-26T08:01:10Z",
                Some(PropertyOperation::Initialized),
            ),
            // A jump beyond MAX_COUNTER_STEP is not traffic; counting resumes after it.
            (7 + MAX_COUNTER_STEP + 1, "2026-11-26T08:01:20Z", changed),
            (MAX_COUNTER_STEP + 10, "2026-11-26T08:01:30Z", changed),
        ] {
            steps.push(tracker.vehicles("C", &counter(count, at, op)));
        }
        assert_eq!(steps, [0, 3, 0, 4, 0, 1, 0, 3, 2, 0, 2]);
        // Deleted forgets the counter: its next count is a baseline again.
        let deleted = counter(0, "2026-11-26T08:02:00Z", Some(PropertyOperation::Deleted));
        assert_eq!(tracker.vehicles("C", &deleted), 0);
        assert!(tracker.is_empty());
        assert_eq!(
            tracker.vehicles("C", &counter(40, "2026-11-26T08:03:00Z", changed)),
            0
        );
        assert_eq!(
            tracker.vehicles("C", &counter(41, "2026-11-26T08:03:10Z", changed)),
            1
        );
        // The device clock set back: the first count under it counts nothing but moves the
        // baseline, so counting goes on from there.
        assert_eq!(
            tracker.vehicles("C", &counter(60, "2026-11-26T07:03:00Z", changed)),
            0
        );
        assert_eq!(
            tracker.vehicles("C", &counter(61, "2026-11-26T07:03:10Z", changed)),
            1
        );
    }

    #[test]
    fn counters_are_kept_apart_by_key_and_crossings_are_one_vehicle_each() {
        let mut tracker = CountTracker::new();
        let changed = Some(PropertyOperation::Changed);
        assert_eq!(
            tracker.vehicles(("a", "C"), &counter(10, "2026-11-26T08:00:00Z", changed)),
            0
        );
        assert_eq!(
            tracker.vehicles(("b", "C"), &counter(500, "2026-11-26T08:00:00Z", changed)),
            0
        );
        assert_eq!(
            tracker.vehicles(("a", "C"), &counter(12, "2026-11-26T08:00:01Z", changed)),
            2
        );
        assert_eq!(
            tracker.vehicles(("b", "C"), &counter(501, "2026-11-26T08:00:01Z", changed)),
            1
        );
        let mut crossing = counter(0, "2026-11-26T08:00:02Z", None);
        crossing.kind = RuleEventKind::LineCrossed;
        crossing.count = None;
        assert_eq!(tracker.vehicles(("a", "L"), &crossing), 1);
        assert_eq!(tracker.len(), 2, "crossings keep no state");
        // Without a time a lower count cannot be told from a reset: it is one.
        let mut untimed = counter(3, "2026-11-26T08:00:03Z", changed);
        untimed.time = None;
        assert_eq!(tracker.vehicles(("a", "C"), &untimed), 0);
        assert_eq!(
            tracker.vehicles(("a", "C"), &counter(4, "2026-11-26T08:00:04Z", changed)),
            1
        );
        // No count, no change.
        let mut empty = counter(0, "2026-11-26T08:00:05Z", changed);
        empty.count = None;
        assert_eq!(tracker.vehicles(("a", "C"), &empty), 0);
        assert_eq!(
            tracker.vehicles(("a", "C"), &counter(5, "2026-11-26T08:00:06Z", changed)),
            1
        );
    }

    #[test]
    fn the_tracker_follows_a_bounded_number_of_counters() {
        let mut tracker = CountTracker::new();
        let changed = Some(PropertyOperation::Changed);
        for i in 0..MAX_COUNTERS + 10 {
            tracker.vehicles(i, &counter(1, "2026-11-26T08:00:00Z", changed));
        }
        assert_eq!(tracker.len(), MAX_COUNTERS);
        // A counter beyond the bound never gets a baseline, so never counts.
        let late = MAX_COUNTERS + 1;
        assert_eq!(
            tracker.vehicles(late, &counter(9, "2026-11-26T08:00:01Z", changed)),
            0
        );
        assert_eq!(
            tracker.vehicles(0, &counter(4, "2026-11-26T08:00:01Z", changed)),
            3
        );
        tracker.clear();
        assert!(tracker.is_empty());
    }

    #[test]
    fn gzip_payloads_are_unzipped() {
        let xml = fixture("line_crossed.xml");
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&xml).unwrap();
        let gz = z.finish().unwrap();
        assert_eq!(
            decode(&gz, MetadataEncoding::Gzip).unwrap(),
            decode(&xml, MetadataEncoding::Xml).unwrap()
        );
        assert_eq!(
            MetadataEncoding::from_encoding_name("VND.ONVIF.METADATA.GZIP"),
            Some(MetadataEncoding::Gzip)
        );
        assert_eq!(
            MetadataEncoding::from_encoding_name("vnd.onvif.metadata.exi.onvif"),
            None
        );
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_unzipping_it_all() {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 16];
        for _ in 0..40 {
            z.write_all(&zeros).unwrap();
        }
        let gz = z.finish().unwrap();
        let err = decode(&gz, MetadataEncoding::Gzip).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::TooLong(n) if n == MAX_DOCUMENT_BYTES + 1));
        assert!(decode(b"not gzip", MetadataEncoding::Gzip).is_err());
    }

    #[test]
    fn bad_documents_are_errors_with_an_offset() {
        for (doc, field) in [
            (&b"<a/>"[..], "root"),
            (
                b"<wsnt:Subscribe xmlns:wsnt=\"http://docs.oasis-open.org/wsn/b-2\"/>",
                "root",
            ),
            (b"<Notify><NotificationMessage>", "xml"),
            (b"", "root"),
            (b"<tt:MetadataStream><tt:Event>", "xml"),
            (b"<tt:MetadataStream></tt:Event>", "xml"),
        ] {
            let err = parse(doc).unwrap_err();
            match err.kind {
                DecodeErrorKind::Field { field: f, .. } => assert_eq!(f, field, "{doc:?}"),
                other => panic!("{doc:?}: {other:?}"),
            }
        }
        let deep = format!(
            "<MetadataStream>{}{}</MetadataStream>",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(deep.as_bytes()).is_err());
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(
            parse(&huge).unwrap_err().kind,
            DecodeErrorKind::TooLong(_)
        ));
    }

    #[test]
    fn the_error_carries_where_it_was_found() {
        let doc = b"<tt:MetadataStream>\n  <tt:Event>\n  </tt:Frame>";
        let err = parse(doc).unwrap_err();
        assert!(err.offset > 20, "{err}");
    }

    #[test]
    fn names_are_capped() {
        let long = "x".repeat(1000);
        let doc = format!(
            r#"<MetadataStream><Event><NotificationMessage><Topic>tns1:RuleEngine/LineDetector/Crossed</Topic>
            <Message><Message UtcTime="2026-11-26T08:00:00"><Source><SimpleItem Name="Rule" Value="{long}"/></Source>
            </Message></Message></NotificationMessage></Event></MetadataStream>"#
        );
        let parsed = parse(doc.as_bytes()).unwrap();
        assert_eq!(parsed.events[0].rule.len(), MAX_NAME_CHARS);
        assert_eq!(parsed.events[0].time, t("2026-11-26T08:00:00Z"));
    }

    #[test]
    fn any_prefix_of_a_document_is_an_error_or_a_document_never_a_panic() {
        for name in ["line_crossed.xml", "notify.xml", "soap_notify.xml"] {
            let xml = fixture(name);
            for n in 0..xml.len() {
                let _ = parse(&xml[..n]);
            }
        }
    }
}
