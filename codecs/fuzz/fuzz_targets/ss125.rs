#![no_main]
use codecs::ss125::Ss125;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codecs_fuzz::check_stream(Ss125::metric(), data);
    codecs_fuzz::check_stream(Ss125::imperial().with_interval_s(30), data);
});
