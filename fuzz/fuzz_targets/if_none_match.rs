#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| penny_fuzz::if_none_match(data));
