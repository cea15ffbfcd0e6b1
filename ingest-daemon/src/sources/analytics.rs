//! ONVIF analytics rule events → vehicle events on configured lanes, for both carriers: a
//! camera's metadata track ([`super::camera`]) and `onvif_counter` MQTT topics
//! ([`super::mqtt`]).
//!
//! A lane map names rules (`"Lane1Crossing" = 1`). Each rule gets a device lane number of its
//! detector, after the numbers the detector's other lanes already use ([`route_rules`]), so
//! that the aggregator's numeric lane maps work unchanged. How many vehicles an event stands
//! for is [`codecs::onvif::CountTracker`]'s word: a line crossing is one (unless the same
//! document classes the crossing object as something other than a vehicle), a counter's rise
//! over its last count is that many; its first count, a reset (a count that went down) and
//! stale copies count nothing. Counters are kept apart by stream (the MQTT topic name; a
//! camera has one stream per session), rule, and the rule's video source and analytics
//! configuration tokens.

use anyhow::bail;
use codecs::model::VehicleEvent;
use codecs::onvif::{CountTracker, CounterId, MetadataStream, RuleEventKind};
use edge_config::{CameraSource, DeviceLane, LaneMapping};

/// Detectors being planned, one ring each: (detector id, (device lane, road lane) pairs).
pub type Detectors = Vec<(String, Vec<(u16, u16)>)>;

/// Where one rule's vehicles go: (rule name, ring index, device lane).
pub type RuleRoute = (String, usize, u16);

/// Where each rule's vehicles go.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRoutes {
    pub rules: Vec<RuleRoute>,
    /// Ring and device lane (one that no lane map of the ring's detector names) for the
    /// events of rules the map does not name: the aggregator counts them as unmapped, as it
    /// does for unmapped lanes of other payloads. `None`: they are dropped unseen.
    pub unmapped: Option<(usize, u16)>,
}

/// The rule a lane map entry names (a name of digits was read as a number: still a name).
pub fn rule_name(device: &DeviceLane) -> String {
    match device {
        DeviceLane::Name(n) => n.clone(),
        DeviceLane::Number(n) => n.to_string(),
    }
}

/// The index of detector `id` in `detectors`, added when new.
pub fn ring_of(id: &str, detectors: &mut Detectors) -> usize {
    detectors.iter().position(|d| d.0 == id).unwrap_or_else(|| {
        detectors.push((id.to_owned(), Vec::new()));
        detectors.len() - 1
    })
}

/// A device lane that none of `pairs` uses.
pub fn free_device_lane(pairs: &[(u16, u16)]) -> Option<u16> {
    (0..=u16::MAX).find(|d| !pairs.iter().any(|p| p.0 == *d))
}

/// Routes the rules of a lane map: each entry's rule gets the next device lane of its
/// detector (entry's `detector_id`, else `default_detector`) above those the detector
/// already uses, adding detectors to `detectors` as needed. Returns the routes and the ring
/// of `default_detector` when an entry feeds it. Device lanes of other (numbered) lane maps
/// must be in `detectors` before.
pub fn route_rules(
    entries: &[LaneMapping],
    default_detector: &str,
    detectors: &mut Detectors,
) -> anyhow::Result<(Vec<RuleRoute>, Option<usize>)> {
    let mut rules = Vec::new();
    let mut default_ring = None;
    for entry in entries {
        let det = entry.detector_id.as_deref().unwrap_or(default_detector);
        let ring = ring_of(det, detectors);
        if det == default_detector {
            default_ring = Some(ring);
        }
        let Some(pairs) = detectors.get_mut(ring).map(|d| &mut d.1) else {
            bail!("detector {det:?} has no ring");
        };
        let device = match pairs.iter().map(|p| p.0).max() {
            None => 1,
            Some(top) => match top.checked_add(1) {
                Some(d) => d,
                None => bail!("detector {det:?} has too many lanes"),
            },
        };
        pairs.push((device, entry.lane));
        rules.push((rule_name(&entry.device), ring, device));
    }
    Ok((rules, default_ring))
}

/// Where a camera's rules go.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsPlan {
    /// The camera's own detectors, one ring each.
    pub detectors: Detectors,
    /// Events of rules the map does not name are dropped (a camera's other rules, such as
    /// its clip triggers, are not traffic).
    pub routes: RuleRoutes,
}

/// The plan of a camera with `metadata = true`; `None` without.
pub fn plan(src: &CameraSource) -> anyhow::Result<Option<AnalyticsPlan>> {
    let Some(map) = src.lanes.as_ref().filter(|_| src.metadata) else {
        return Ok(None);
    };
    let mut detectors = Detectors::new();
    let (rules, _) = route_rules(map.entries(), src.detector_id(), &mut detectors)
        .map_err(|e| anyhow::anyhow!("camera {:?}: {e}", src.id))?;
    if rules.is_empty() {
        bail!("camera {:?}: metadata = true needs lanes", src.id);
    }
    Ok(Some(AnalyticsPlan {
        detectors,
        routes: RuleRoutes {
            rules,
            unmapped: None,
        },
    }))
}

/// What a document held besides the vehicles it yielded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Vehicle objects in the document's analytics frames.
    pub vehicle_objects: u64,
    /// Line crossings of objects the document classes as something other than a vehicle.
    pub non_vehicle_crossings: u64,
    /// Events of rules the map does not name.
    pub unmapped: u64,
}

/// Turns parsed documents into vehicle events per ring.
#[derive(Debug)]
pub struct Analytics {
    routes: RuleRoutes,
    /// Last count per (stream, counter).
    counts: CountTracker<(String, CounterId)>,
}

impl Analytics {
    pub fn new(routes: RuleRoutes) -> Self {
        Self {
            routes,
            counts: CountTracker::new(),
        }
    }

    pub fn routes(&self) -> &RuleRoutes {
        &self.routes
    }

    /// Forgets counter baselines (a new session whose counts may start anywhere).
    pub fn reset(&mut self) {
        self.counts.clear();
    }

    /// Vehicle events of one document of `stream` as (ring index, event). An event of a
    /// rule the map does not name goes to the unmapped route, one per event, if there is one.
    pub fn events(
        &mut self,
        stream: &str,
        doc: &MetadataStream,
        out: &mut Vec<(usize, VehicleEvent)>,
    ) -> Tally {
        let mut tally = Tally {
            vehicle_objects: doc.vehicles().count() as u64,
            ..Tally::default()
        };
        for e in &doc.events {
            let Some((_, ring, device)) = self.routes.rules.iter().find(|r| r.0 == e.rule) else {
                if let Some((ring, lane)) = self.routes.unmapped {
                    tally.unmapped += 1;
                    let event = VehicleEvent {
                        time: e.time,
                        ..VehicleEvent::on_lane(lane)
                    };
                    out.push((ring, event));
                }
                continue;
            };
            let mut class = None;
            if e.kind == RuleEventKind::LineCrossed {
                let object = e.object_id.as_deref().and_then(|id| doc.object(id));
                if object.is_some_and(|o| o.class.is_some() && !o.is_vehicle()) {
                    tally.non_vehicle_crossings += 1;
                    continue;
                }
                class = object.and_then(|o| o.vehicle_class());
            }
            let vehicles = self.counts.vehicles((stream.to_owned(), e.counter_id()), e);
            for _ in 0..vehicles {
                let event = VehicleEvent {
                    time: e.time,
                    class,
                    ..VehicleEvent::on_lane(*device)
                };
                out.push((*ring, event));
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use codecs::onvif::{PropertyOperation, RuleEvent, TrackedObject};

    use super::*;

    fn camera(lanes: &str) -> CameraSource {
        let text = format!(
            "[node]\nedge_id = \"e\"\n[[camera]]\nid = \"cam\"\n\
             url = \"rtsp://127.0.0.1/x\"\nmetadata = true\nlanes = {lanes}\n"
        );
        edge_config::Config::from_str_named("t.toml", &text, std::iter::empty())
            .unwrap()
            .camera
            .remove(0)
    }

    fn rule(kind: RuleEventKind, rule: &str, count: Option<u64>, init: bool) -> RuleEvent {
        RuleEvent {
            kind,
            rule: rule.into(),
            time: None,
            object_id: None,
            count,
            operation: Some(if init {
                PropertyOperation::Initialized
            } else {
                PropertyOperation::Changed
            }),
            video_source: None,
            analytics_configuration: None,
        }
    }

    fn lanes(out: &[(usize, VehicleEvent)]) -> Vec<(usize, u16)> {
        out.iter().map(|(r, e)| (*r, e.lane)).collect()
    }

    #[test]
    fn crossings_and_counter_steps_become_vehicles_on_their_lanes() {
        let plan = plan(&camera(
            r#"{ "L1" = 1, "L2" = { lane = 2, detector_id = "other" } }"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(plan.detectors.len(), 2);
        let mut a = Analytics::new(plan.routes);
        let mut doc = MetadataStream {
            events: vec![
                rule(RuleEventKind::LineCrossed, "L1", None, false),
                rule(RuleEventKind::LineCrossed, "unmapped", None, false),
                rule(RuleEventKind::Counter, "L2", Some(10), true),
            ],
            ..MetadataStream::default()
        };
        let mut out = Vec::new();
        let tally = a.events("", &doc, &mut out);
        assert_eq!(lanes(&out), vec![(0, 1)]);
        assert_eq!(tally.unmapped, 0, "a camera drops other rules unseen");
        doc.events = vec![rule(RuleEventKind::Counter, "L2", Some(13), false)];
        out.clear();
        a.events("", &doc, &mut out);
        assert_eq!(lanes(&out), vec![(1, 1); 3]);
        // A counter that went back is a new baseline, not negative traffic.
        doc.events = vec![rule(RuleEventKind::Counter, "L2", Some(2), false)];
        out.clear();
        a.events("", &doc, &mut out);
        assert!(out.is_empty());
        // After a reset (a new session) the first count is a baseline again.
        a.reset();
        doc.events = vec![rule(RuleEventKind::Counter, "L2", Some(9), false)];
        a.events("", &doc, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn counters_of_different_streams_and_sources_are_kept_apart() {
        let routes = RuleRoutes {
            rules: vec![("C".into(), 0, 4)],
            unmapped: Some((0, 0)),
        };
        let mut a = Analytics::new(routes);
        let doc = |count, source: &str| MetadataStream {
            events: vec![RuleEvent {
                video_source: Some(source.into()),
                ..rule(RuleEventKind::Counter, "C", Some(count), false)
            }],
            ..MetadataStream::default()
        };
        let mut out = Vec::new();
        for (stream, count, source) in [
            ("cams/1", 10, "vs1"),
            ("cams/2", 500, "vs1"),
            ("cams/1", 700, "vs2"),
            ("cams/1", 12, "vs1"),
            ("cams/2", 501, "vs1"),
            ("cams/1", 701, "vs2"),
        ] {
            a.events(stream, &doc(count, source), &mut out);
        }
        assert_eq!(lanes(&out), vec![(0, 4); 4]);
        // Other rules go to the unmapped route, one per event.
        out.clear();
        let other = MetadataStream {
            events: vec![
                rule(RuleEventKind::Counter, "X", Some(5), false),
                rule(RuleEventKind::LineCrossed, "Y", None, false),
            ],
            ..MetadataStream::default()
        };
        let tally = a.events("cams/1", &other, &mut out);
        assert_eq!(tally.unmapped, 2);
        assert_eq!(lanes(&out), vec![(0, 0); 2]);
    }

    #[test]
    fn rules_take_device_lanes_above_those_their_detector_uses() {
        let map = camera(r#"{ "A" = 1, "B" = { lane = 2, detector_id = "d2" }, "7" = 3 }"#)
            .lanes
            .unwrap();
        let mut detectors: Detectors = vec![("cam".into(), vec![(0, 4), (5, 5)])];
        let (rules, default_ring) = route_rules(map.entries(), "cam", &mut detectors).unwrap();
        // (The table form lists its entries by key.)
        assert_eq!(
            rules,
            vec![("7".into(), 0, 6), ("A".into(), 0, 7), ("B".into(), 1, 1)]
        );
        assert_eq!(default_ring, Some(0));
        assert_eq!(detectors[0].1, vec![(0, 4), (5, 5), (6, 3), (7, 1)]);
        assert_eq!(free_device_lane(&detectors[0].1), Some(1));
        assert_eq!(free_device_lane(&[(0, 1), (1, 2)]), Some(2));
    }

    #[test]
    fn crossings_by_non_vehicles_are_not_counted() {
        let mut a = Analytics::new(plan(&camera(r#"{ "L1" = 1 }"#)).unwrap().unwrap().routes);
        let mut crossing = rule(RuleEventKind::LineCrossed, "L1", None, false);
        crossing.object_id = Some("5".into());
        let doc = MetadataStream {
            events: vec![crossing],
            frames: vec![codecs::onvif::AnalyticsFrame {
                time: None,
                objects: vec![TrackedObject {
                    id: "5".into(),
                    class: Some("Human".into()),
                    likelihood: None,
                    vehicle_type: None,
                }],
            }],
            ..MetadataStream::default()
        };
        let mut out = Vec::new();
        let tally = a.events("", &doc, &mut out);
        assert!(out.is_empty());
        assert_eq!(tally.non_vehicle_crossings, 1);
        assert_eq!(tally.vehicle_objects, 0);
    }
}
