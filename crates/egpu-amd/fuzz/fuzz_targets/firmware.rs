//! Every firmware parser must accept or reject any byte string without panicking; the first
//! byte picks the parser.
#![no_main]
use egpu_amd::firmware::{parse, Kind};

const KINDS: [Kind; 10] =
    [Kind::PspSos, Kind::PspTa, Kind::Smu, Kind::Sdma, Kind::Pfp, Kind::Me, Kind::Mec, Kind::Imu, Kind::Rlc, Kind::Mes];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((first, rest)) = data.split_first() {
        let _ = parse("fuzz.bin", KINDS[usize::from(*first) % KINDS.len()], rest);
    }
});
