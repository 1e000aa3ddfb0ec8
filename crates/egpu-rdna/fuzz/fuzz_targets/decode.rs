//! Random bytes through the decoder and both printers, for gfx11 and gfx12: never a panic.
#![no_main]

use egpu_rdna::{decode_all, disasm, Arch};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for arch in [Arch::Gfx11, Arch::Gfx12] {
        let mut off = 0;
        while off < data.len() {
            match egpu_rdna::decode(arch, &data[off..], off as u64) {
                Ok(inst) => {
                    let _ = disasm::try_format(&inst);
                    let _ = disasm::format(&inst);
                    off += inst.len as usize;
                }
                Err(_) => off += 4,
            }
        }
        let _ = decode_all(arch, data, 0);
    }
    let _ = egpu_rdna::elf::CodeObject::parse(data);
    let mut sink = std::io::sink();
    let _ = egpu_rdna::objdump::write_listing(data, None, &mut sink);
});
