#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codecs_fuzz::check_stream(codecs::rtms::Rtms, data);
});
