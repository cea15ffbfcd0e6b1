#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for address_len in 0..=2 {
        if let Some(codec) = codecs::ft12::Ft12::with_address_len(address_len) {
            codecs_fuzz::check_stream(codec, data);
        }
    }
});
