//! Feeds arbitrary bytes to the GGUF reader, then decodes every tensor it accepted.
//! Run with `cargo +nightly fuzz run gguf_parse` from `crates/egpu-llm`.
#![no_main]

use egpu_llm::gguf::GgufFile;
use egpu_llm::quant::dequantize_to_vec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return };
    for info in &file.tensors {
        // Bound the work per input; sizes were checked against the input length already.
        if info.n_elements() > 1 << 16 {
            continue;
        }
        let data = file.data_of(info).expect("the reader bounds-checks every tensor it accepts");
        let _ = dequantize_to_vec(info.ggml_type, data, info.n_elements() as usize);
    }
    let _ = egpu_llm::tokenizer::Tokenizer::from_gguf(&file);
});
