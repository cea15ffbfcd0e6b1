#![no_main]
use libfuzzer_sys::fuzz_target;

// The TLS payload of an FT1.2 frame: any bytes decode or fail cleanly, and whatever decodes
// re-encodes to something that decodes the same.
fuzz_target!(|data: &[u8]| {
    if let Ok(user_data) = codecs::tls::decode_user_data(data) {
        let mut out = Vec::new();
        if codecs::tls::encode_user_data(&user_data, &mut out).is_ok() {
            let again = codecs::tls::decode_user_data(&out).expect("re-encoded payload decodes");
            assert_eq!(again, user_data);
        }
        let mut obs = Vec::new();
        codecs::Observations::observations(&user_data, &mut obs);
    }
});
