#![no_main]
use codecs::mqtt::{FiwareForm, decode_fiware, decode_vehicle_events, encode_fiware, encode_vehicle_events};
use libfuzzer_sys::fuzz_target;

// MQTT JSON payloads: any bytes decode or fail with an error, and what decodes re-encodes to
// a payload that decodes the same.
fuzz_target!(|data: &[u8]| {
    if let Ok(events) = decode_vehicle_events(data) {
        if let Ok(wire) = encode_vehicle_events(&events) {
            assert_eq!(decode_vehicle_events(&wire).expect("re-encoded events decode"), events);
        }
    }
    if let Ok(observed) = decode_fiware(data) {
        for o in observed {
            for form in [FiwareForm::KeyValues, FiwareForm::Normalized] {
                if let Ok(wire) = encode_fiware(&o, form) {
                    let again = decode_fiware(&wire).expect("re-encoded entity decodes");
                    assert_eq!(again, vec![o.clone()]);
                }
            }
        }
    }
});
