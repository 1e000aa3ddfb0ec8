//! Any byte string must parse or fail with an error, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = egpu_amd::discovery::parse(data);
});
