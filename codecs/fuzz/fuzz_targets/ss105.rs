#![no_main]
use codecs::ss105::Ss105;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codecs_fuzz::check_stream(Ss105::default(), data);
});
