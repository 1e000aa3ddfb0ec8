//! Fuzz the cubin parser and image relocation: any input must give Ok or a typed error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cubin) = egpu_nv::cubin::Cubin::parse(data) {
        for kernel in &cubin.kernels {
            let _ = egpu_nv::launch::max_threads_for(kernel);
            let _ = cubin.constant0_template(kernel);
        }
        let _ = cubin.image.at(0x10_0000_0000);
    }
});
