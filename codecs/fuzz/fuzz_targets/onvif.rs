#![no_main]
use codecs::onvif::{
    self, CountTracker, MAX_COUNTER_STEP, MAX_ITEMS, MAX_NAME_CHARS, MetadataEncoding,
    RuleEventKind,
};
use libfuzzer_sys::fuzz_target;

// ONVIF metadata documents and event notifications (any root `parse` takes): any bytes, plain
// or as a gzip payload, parse or fail with an error; what parses stays within the documented
// bounds, and its events, fed twice to a counter tracker, stand for one vehicle per crossing
// and at most MAX_COUNTER_STEP per counter event.
fuzz_target!(|data: &[u8]| {
    for encoding in [MetadataEncoding::Xml, MetadataEncoding::Gzip] {
        if let Ok(doc) = onvif::decode(data, encoding) {
            let objects: usize = doc.frames.iter().map(|f| f.objects.len()).sum();
            assert!(objects + doc.events.len() <= MAX_ITEMS);
            for e in &doc.events {
                assert!(e.rule.chars().count() <= MAX_NAME_CHARS);
            }
            let _ = doc.vehicles().count();
            let mut tracker = CountTracker::new();
            for e in &doc.events {
                let n = tracker.vehicles(e.counter_id(), e);
                match e.kind {
                    RuleEventKind::LineCrossed => assert_eq!(n, 1),
                    RuleEventKind::Counter => assert!(n <= MAX_COUNTER_STEP),
                }
            }
            for e in doc
                .events
                .iter()
                .filter(|e| e.kind == RuleEventKind::Counter)
            {
                let again = tracker.vehicles(e.counter_id(), e);
                assert!(again <= MAX_COUNTER_STEP);
            }
        }
    }
});
