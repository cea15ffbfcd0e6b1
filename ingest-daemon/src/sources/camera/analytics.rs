//! ONVIF analytics → vehicle events on configured lanes.
//!
//! A camera's lane map names its rules (`"Lane1Crossing" = 1`). Each rule gets a device
//! lane number (its position in the map, from 1) so that the aggregator's numeric lane
//! maps work unchanged. Line crossings are one vehicle each, unless the same document
//! describes the crossing object as something other than a vehicle; counters are running
//! totals, so a change of `n` is `n` vehicles, an `Initialized` count or a counter that
//! went down (a camera restart) only sets the baseline.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use anyhow::bail;
use codecs::model::VehicleEvent;
use codecs::onvif::{MetadataStream, RuleEventKind};
use edge_config::{CameraSource, DeviceLane};

use super::health::CameraHealth;

/// Most vehicles one counter change may stand for: a larger jump is a counter that was
/// reset to something else, not traffic.
pub const MAX_COUNTER_STEP: u64 = 1000;

/// Where each rule's vehicles go.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsPlan {
    /// (detector id, (device lane, road lane) pairs), one ring each.
    pub detectors: Vec<(String, Vec<(u16, u16)>)>,
    /// (rule name, ring index, device lane).
    pub rules: Vec<(String, usize, u16)>,
}

/// The plan of a camera with `metadata = true`; `None` without.
pub fn plan(src: &CameraSource) -> anyhow::Result<Option<AnalyticsPlan>> {
    let Some(map) = src.lanes.as_ref().filter(|_| src.metadata) else {
        return Ok(None);
    };
    let mut detectors: Vec<(String, Vec<(u16, u16)>)> = Vec::new();
    let mut rules = Vec::new();
    for (i, entry) in map.entries().iter().enumerate() {
        let name = match &entry.device {
            DeviceLane::Name(n) => n.clone(),
            DeviceLane::Number(n) => n.to_string(),
        };
        let Ok(device) = u16::try_from(i + 1) else {
            bail!("camera {:?}: too many lanes", src.id);
        };
        let det = entry
            .detector_id
            .clone()
            .unwrap_or_else(|| src.detector_id().to_owned());
        let ring = match detectors.iter().position(|d| d.0 == det) {
            Some(r) => r,
            None => {
                detectors.push((det, Vec::new()));
                detectors.len() - 1
            }
        };
        if let Some(d) = detectors.get_mut(ring) {
            d.1.push((device, entry.lane));
        }
        rules.push((name, ring, device));
    }
    if rules.is_empty() {
        bail!("camera {:?}: metadata = true needs lanes", src.id);
    }
    Ok(Some(AnalyticsPlan { detectors, rules }))
}

/// Turns parsed documents into vehicle events per ring.
#[derive(Debug)]
pub struct Analytics {
    plan: AnalyticsPlan,
    /// Last count per counter rule.
    counts: HashMap<String, u64>,
}

impl Analytics {
    pub fn new(plan: AnalyticsPlan) -> Self {
        Self {
            plan,
            counts: HashMap::new(),
        }
    }

    pub fn plan(&self) -> &AnalyticsPlan {
        &self.plan
    }

    /// Forgets counter baselines (a new session may start from another count).
    pub fn reset(&mut self) {
        self.counts.clear();
    }

    /// Vehicle events of one document as (ring index, event); rules not in the map are
    /// ignored.
    pub fn events(
        &mut self,
        doc: &MetadataStream,
        health: &CameraHealth,
        out: &mut Vec<(usize, VehicleEvent)>,
    ) {
        health
            .vehicle_objects_total
            .fetch_add(doc.vehicles().count() as u64, Ordering::Relaxed);
        for e in &doc.events {
            let Some((_, ring, device)) = self.plan.rules.iter().find(|r| r.0 == e.rule) else {
                continue;
            };
            let event = |class| VehicleEvent {
                time: e.time,
                class,
                ..VehicleEvent::on_lane(*device)
            };
            match e.kind {
                RuleEventKind::LineCrossed => {
                    let object = e.object_id.as_deref().and_then(|id| doc.object(id));
                    if object.is_some_and(|o| o.class.is_some() && !o.is_vehicle()) {
                        health
                            .non_vehicle_crossings_total
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    out.push((*ring, event(object.and_then(|o| o.vehicle_class()))));
                }
                RuleEventKind::Counter => {
                    let Some(count) = e.count else { continue };
                    let last = self.counts.insert(e.rule.clone(), count);
                    let step = match last {
                        Some(last) if !e.initialized && count > last => count - last,
                        _ => 0,
                    };
                    if step > MAX_COUNTER_STEP {
                        continue;
                    }
                    for _ in 0..step {
                        out.push((*ring, event(None)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use codecs::onvif::{RuleEvent, TrackedObject};

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
            initialized: init,
        }
    }

    #[test]
    fn crossings_and_counter_steps_become_vehicles_on_their_lanes() {
        let plan = plan(&camera(
            r#"{ "L1" = 1, "L2" = { lane = 2, detector_id = "other" } }"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(plan.detectors.len(), 2);
        let mut a = Analytics::new(plan);
        let health = CameraHealth::default();
        let mut doc = MetadataStream {
            events: vec![
                rule(RuleEventKind::LineCrossed, "L1", None, false),
                rule(RuleEventKind::LineCrossed, "unmapped", None, false),
                rule(RuleEventKind::Counter, "L2", Some(10), true),
            ],
            ..MetadataStream::default()
        };
        let mut out = Vec::new();
        a.events(&doc, &health, &mut out);
        assert_eq!(
            out.iter().map(|(r, e)| (*r, e.lane)).collect::<Vec<_>>(),
            vec![(0, 1)]
        );
        doc.events = vec![rule(RuleEventKind::Counter, "L2", Some(13), false)];
        out.clear();
        a.events(&doc, &health, &mut out);
        assert_eq!(
            out.iter().map(|(r, e)| (*r, e.lane)).collect::<Vec<_>>(),
            vec![(1, 2); 3]
        );
        // A counter that went back is a new baseline, not negative traffic.
        doc.events = vec![rule(RuleEventKind::Counter, "L2", Some(2), false)];
        out.clear();
        a.events(&doc, &health, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn crossings_by_non_vehicles_are_not_counted() {
        let mut a = Analytics::new(plan(&camera(r#"{ "L1" = 1 }"#)).unwrap().unwrap());
        let health = CameraHealth::default();
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
        a.events(&doc, &health, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            health.non_vehicle_crossings_total.load(Ordering::Relaxed),
            1
        );
    }
}
