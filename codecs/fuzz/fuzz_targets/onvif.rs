#![no_main]
use codecs::onvif::{self, MetadataEncoding, MAX_ITEMS, MAX_NAME_CHARS};
use libfuzzer_sys::fuzz_target;

// ONVIF metadata documents: any bytes, plain or as a gzip payload, parse or fail with an
// error; what parses stays within the documented bounds.
fuzz_target!(|data: &[u8]| {
    for encoding in [MetadataEncoding::Xml, MetadataEncoding::Gzip] {
        if let Ok(doc) = onvif::decode(data, encoding) {
            let objects: usize = doc.frames.iter().map(|f| f.objects.len()).sum();
            assert!(objects + doc.events.len() <= MAX_ITEMS);
            for e in &doc.events {
                assert!(e.rule.chars().count() <= MAX_NAME_CHARS);
            }
            let _ = doc.vehicles().count();
        }
    }
});
