//! Fuzz the bridge protocol and the PCIe fabric bring-up with arbitrary device answers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    egpu_link::hostile::exercise(data);
});
