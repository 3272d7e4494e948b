#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| penny_fuzz::environment(data));
