//! ONVIF rule events under every root and prefix a camera or bridge may choose, and the
//! counter tracker against a simulated device counter.
// Helpers and strategies outside #[test] fns unwrap too; clippy.toml only covers test fns.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use codecs::onvif::{CountTracker, PropertyOperation, RuleEvent, RuleEventKind, parse};
use proptest::prelude::*;

const WSNT: &str = "http://docs.oasis-open.org/wsn/b-2";
const TT: &str = "http://www.onvif.org/ver10/schema";
const TOPICS: &str = "http://www.onvif.org/ver10/topics";

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Namespace prefixes of one document: `None` is the default namespace (no prefix).
#[derive(Debug, Clone)]
struct Prefixes {
    wsnt: Option<String>,
    tt: String,
    topic: String,
}

impl Prefixes {
    fn q(p: Option<&str>, local: &str) -> String {
        p.map_or_else(|| local.to_owned(), |p| format!("{p}:{local}"))
    }
    fn wsnt(&self, local: &str) -> String {
        Self::q(self.wsnt.as_deref(), local)
    }
    fn tt(&self, local: &str) -> String {
        Self::q(Some(&self.tt), local)
    }
    fn declarations(&self) -> String {
        let wsnt = match &self.wsnt {
            Some(p) => format!(r#"xmlns:{p}="{WSNT}""#),
            None => format!(r#"xmlns="{WSNT}""#),
        };
        format!(
            r#"{wsnt} xmlns:{}="{TT}" xmlns:{}="{TOPICS}""#,
            self.tt, self.topic
        )
    }
}

fn notification(e: &RuleEvent, p: &Prefixes) -> String {
    let topic = match e.kind {
        RuleEventKind::LineCrossed => "RuleEngine/LineDetector/Crossed",
        RuleEventKind::Counter => "RuleEngine/CountAggregation/Counter",
    };
    let mut attrs = String::new();
    if let Some(t) = e.time {
        attrs += &format!(r#" UtcTime="{}""#, t.to_rfc3339());
    }
    if let Some(op) = e.operation {
        let op = match op {
            PropertyOperation::Initialized => "Initialized",
            PropertyOperation::Changed => "Changed",
            PropertyOperation::Deleted => "Deleted",
        };
        attrs += &format!(r#" PropertyOperation="{op}""#);
    }
    let item = |name: &str, value: &str| {
        format!(
            r#"<{} Name="{name}" Value="{}"/>"#,
            p.tt("SimpleItem"),
            escape(value)
        )
    };
    let mut source = String::new();
    if let Some(v) = &e.video_source {
        source += &item("VideoSourceConfigurationToken", v);
    }
    if let Some(a) = &e.analytics_configuration {
        source += &item("VideoAnalyticsConfigurationToken", a);
    }
    source += &item("Rule", &e.rule);
    let mut data = String::new();
    if let Some(o) = &e.object_id {
        data += &item("ObjectId", o);
    }
    if let Some(c) = e.count {
        data += &item("Count", &c.to_string());
    }
    format!(
        "<{nm}>\n<{topic_el} Dialect=\"http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet\"> {tp}:{topic} </{topic_el}>\
         <{msg}><{ttm}{attrs}><{src}>{source}</{src}><{dat}>{data}</{dat}></{ttm}></{msg}></{nm}>",
        nm = p.wsnt("NotificationMessage"),
        topic_el = p.wsnt("Topic"),
        tp = p.topic,
        msg = p.wsnt("Message"),
        ttm = p.tt("Message"),
        src = p.tt("Source"),
        dat = p.tt("Data"),
    )
}

/// The events as one document under `root` (0: bare message or `Notify`, 1: `Notify`,
/// 2: `MetadataStream`, 3: SOAP envelope).
fn document(events: &[RuleEvent], p: &Prefixes, root: u8) -> String {
    let notes: String = events.iter().map(|e| notification(e, p)).collect();
    let ns = p.declarations();
    let notify = |ns: &str| format!("<{n} {ns}>{notes}</{n}>", n = p.wsnt("Notify"),);
    match root {
        0 if events.len() == 1 => {
            let open = format!("<{}", p.wsnt("NotificationMessage"));
            notes.replacen(&open, &format!("{open} {ns}"), 1)
        }
        0 | 1 => notify(&ns),
        2 => format!(
            "<{ms} {ns}><{ev}>{notes}</{ev}></{ms}>",
            ms = p.tt("MetadataStream"),
            ev = p.tt("Event"),
        ),
        _ => format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header/><env:Body>{}</env:Body></env:Envelope>"#,
            notify(&ns)
        ),
    }
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 _&<>\"'./-]{1,40}"
}

fn prefix() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

fn prefixes() -> impl Strategy<Value = Prefixes> {
    (proptest::option::of(prefix()), prefix(), prefix())
        .prop_filter("distinct prefixes", |(w, t, p)| {
            t != p && w.as_ref().is_none_or(|w| w != t && w != p) && t != "env" && p != "env"
        })
        .prop_map(|(wsnt, tt, topic)| Prefixes { wsnt, tt, topic })
}

fn rule_event() -> impl Strategy<Value = RuleEvent> {
    (
        prop_oneof![
            Just(RuleEventKind::LineCrossed),
            Just(RuleEventKind::Counter)
        ],
        name(),
        proptest::option::of(0i64..10_000_000),
        proptest::option::of(name()),
        any::<u32>(),
        proptest::option::of(prop_oneof![
            Just(PropertyOperation::Initialized),
            Just(PropertyOperation::Changed),
            Just(PropertyOperation::Deleted),
        ]),
        proptest::option::of(name()),
        proptest::option::of(name()),
    )
        .prop_map(|(kind, rule, ms, object, count, operation, vs, va)| {
            let counter = kind == RuleEventKind::Counter;
            RuleEvent {
                kind,
                rule,
                time: ms.map(|ms| base_time() + TimeDelta::milliseconds(ms)),
                object_id: object.filter(|_| !counter),
                count: counter.then_some(u64::from(count)),
                operation: operation.filter(|_| counter),
                video_source: vs,
                analytics_configuration: va,
            }
        })
}

/// A device's line counter over time.
#[derive(Debug, Clone)]
enum Step {
    /// This many objects pass the line.
    Pass(u64),
    /// The counter goes back to 0 (reset time, restart).
    Reset,
    /// The device publishes its count.
    Report,
    /// A copy of the report this many reports back arrives again (redelivery).
    Stale(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            // At most 59 × 14 objects between two reports: below MAX_COUNTER_STEP.
            4 => (0u64..15).prop_map(Step::Pass),
            1 => Just(Step::Reset),
            4 => Just(Step::Report),
            1 => (1usize..5).prop_map(Step::Stale),
        ],
        1..60,
    )
}

/// Runs the device, feeding its reports to a tracker: (vehicles counted, objects that
/// passed after the first report, whether the counter reset after the first report).
fn run(steps: &[Step]) -> (u64, u64, bool) {
    let mut tracker = CountTracker::new();
    let mut count = 0u64;
    let mut clock = base_time();
    let mut reports: Vec<RuleEvent> = Vec::new();
    let (mut counted, mut passed, mut reset) = (0, 0, false);
    for step in steps {
        clock += TimeDelta::seconds(1);
        match step {
            Step::Pass(n) => {
                count += n;
                if !reports.is_empty() {
                    passed += n;
                }
            }
            Step::Reset => {
                count = 0;
                reset |= !reports.is_empty();
            }
            Step::Report => {
                let e = RuleEvent {
                    kind: RuleEventKind::Counter,
                    rule: "Lane1Count".into(),
                    time: Some(clock),
                    object_id: None,
                    count: Some(count),
                    operation: Some(if reports.is_empty() {
                        PropertyOperation::Initialized
                    } else {
                        PropertyOperation::Changed
                    }),
                    video_source: None,
                    analytics_configuration: None,
                };
                counted += tracker.vehicles("Lane1Count", &e);
                reports.push(e);
            }
            Step::Stale(back) => {
                if let Some(old) = reports
                    .len()
                    .checked_sub(*back)
                    .and_then(|i| reports.get(i))
                {
                    counted += tracker.vehicles("Lane1Count", &old.clone());
                }
            }
        }
    }
    // Objects that passed after the last report were never reported.
    let mut unreported = 0;
    for step in steps.iter().rev() {
        match step {
            Step::Report => break,
            Step::Pass(n) => unreported += n,
            Step::Reset | Step::Stale(_) => {}
        }
    }
    if reports.is_empty() {
        return (counted, 0, reset);
    }
    (counted, passed - unreported, reset)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn events_read_back_under_any_root_and_prefixes(
        events in proptest::collection::vec(rule_event(), 1..6),
        p in prefixes(),
        root in 0u8..4,
    ) {
        let xml = document(&events, &p, root);
        let doc = parse(xml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {xml}")))?;
        prop_assert_eq!(&doc.events, &events, "{}", xml);
        prop_assert_eq!(doc.other_notifications, 0);
    }

    #[test]
    fn damaged_documents_are_errors_or_documents_never_panics(
        events in proptest::collection::vec(rule_event(), 1..4),
        p in prefixes(),
        root in 0u8..4,
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut xml = document(&events, &p, root).into_bytes();
        for (at, byte, how) in damage {
            let i = at.index(xml.len() + 1);
            match how {
                0 if i < xml.len() => xml[i] = byte,
                1 => xml.insert(i, byte),
                _ => xml.truncate(i),
            }
        }
        if let Ok(doc) = parse(&xml) {
            prop_assert!(doc.events.len() <= codecs::onvif::MAX_ITEMS);
        }
    }

    /// Whatever the device does (resets, redeliveries of old reports), the tracker never
    /// counts more vehicles than passed after its first report, and counts exactly those
    /// that were reported when the counter did not reset.
    #[test]
    fn counter_increments_never_invent_vehicles(steps in steps()) {
        let (counted, passed, reset) = run(&steps);
        prop_assert!(counted <= passed, "counted {} of {} passed", counted, passed);
        if !reset {
            prop_assert_eq!(counted, passed);
        }
    }
}

#[test]
fn a_replayed_window_resumes_the_baseline_it_left() {
    // The daemon replays the raw messages of its last moments at start: feeding the same
    // reports again to a fresh tracker counts what followed the first of them, and a live
    // report after that continues from the last replayed count.
    let report = |count: u64, s: i64| RuleEvent {
        kind: RuleEventKind::Counter,
        rule: "R".into(),
        time: Some(base_time() + TimeDelta::seconds(s)),
        object_id: None,
        count: Some(count),
        operation: Some(PropertyOperation::Changed),
        video_source: None,
        analytics_configuration: None,
    };
    let window = [report(50, 0), report(53, 10), report(54, 20)];
    let mut before = CountTracker::new();
    let mut restarted = CountTracker::new();
    let first_run: u64 = window.iter().map(|e| before.vehicles("R", e)).sum();
    let replayed: u64 = window.iter().map(|e| restarted.vehicles("R", e)).sum();
    assert_eq!((first_run, replayed), (4, 4));
    assert_eq!(restarted.vehicles("R", &report(56, 30)), 2);
}
