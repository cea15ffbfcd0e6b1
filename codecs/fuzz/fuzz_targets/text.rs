#![no_main]
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;

// The line formats: IRIS .vlog and PeMS 30-second CSV.
fuzz_target!(|data: &[u8]| {
    let date = NaiveDate::from_ymd_opt(2026, 11, 26).expect("valid date");
    codecs_fuzz::check_stream(codecs::vlog::Vlog::new(date, 1), data);
    codecs_fuzz::check_stream(codecs::pems::Pems::new(), data);
});
