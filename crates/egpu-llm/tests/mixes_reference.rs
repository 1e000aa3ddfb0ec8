//! The quant mixes people download (llama.cpp's Q4_K_M, Q5_K_M, Q6_K of SmolLM2-135M, which
//! put Q4_K/Q5_K/Q6_K/Q5_0/Q5_1/Q8_0 tensors side by side) against the NumPy reference forward
//! (tests/reference/forward.py, weights dequantized by the PyPI `gguf` package).
//!
//! The models are made by tests/reference/make_mixes.py (F32 re-export with `gguf`, then
//! llama.cpp's quantizer through `llama-cpp-python`); `.ci/run` makes them and points
//! `EGPU_TEST_MIXES` at the folder. Stated tolerance as in forward_reference.rs: every logit of
//! every step within 1e-3 of the reference, and the same greedy tokens.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{python_has, read_f32, run_script, skip};
use egpu_llm::cpu::CpuBackend;
use egpu_llm::gguf::GgufFile;
use egpu_llm::model::Model;
use egpu_llm::sampler::argmax;
use egpu_llm::tokenizer::Tokenizer;

const LOGIT_TOLERANCE: f32 = 1e-3;
const PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn every_mix_matches_the_numpy_reference() {
    let name = "every_mix_matches_the_numpy_reference";
    let Some(dir) = std::env::var_os("EGPU_TEST_MIXES").map(PathBuf::from) else {
        skip(format!(
            "SKIP {name}: set EGPU_TEST_MIXES to a folder made by tests/reference/make_mixes.py \
             (needs `pip install llama-cpp-python`)"
        ));
        return;
    };
    if !python_has(&["gguf", "numpy"], "pip install gguf numpy", name) {
        return;
    }
    for mix in ["q4_k_m", "q5_k_m", "q6_k"] {
        let path = dir.join(format!("smollm2-{mix}.gguf"));
        assert!(path.is_file(), "{} is missing; run make_mixes.py", path.display());
        let out = tempfile::tempdir().unwrap();
        run_script(
            "forward.py",
            &[path.to_str().unwrap(), out.path().to_str().unwrap(), "6", PROMPT],
        );
        let ids_text = std::fs::read_to_string(out.path().join("0.ids")).unwrap();
        let mut lines = ids_text.lines();
        let parse =
            |l: &str| l.split_whitespace().map(|v| v.parse::<u32>().unwrap()).collect::<Vec<_>>();
        let (ref_prompt, ref_gen) = (parse(lines.next().unwrap()), parse(lines.next().unwrap()));
        let ref_logits = read_f32(&out.path().join("0.logits"));

        let file = Arc::new(GgufFile::open(&path).unwrap());
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let model = Model::load(&file, CpuBackend::new(0).unwrap(), &mut |_, _| {}).unwrap();
        let vocab = model.config.vocab_size;
        let ids = tok.encode(PROMPT, true, true).unwrap();
        assert_eq!(ids, ref_prompt, "{mix}: prompt tokenizes like the reference");
        let mut session = model.session(128).unwrap();
        let mut logits = model.forward(&mut session, &ids, 8).unwrap();
        let mut gen = Vec::new();
        for (step, want) in ref_logits.chunks_exact(vocab).enumerate() {
            let worst = logits.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            eprintln!("{mix} step {step}: max |logit diff| {worst:.2e}");
            assert!(worst <= LOGIT_TOLERANCE, "{mix} step {step}: max |logit diff| {worst}");
            let t = argmax(&logits);
            gen.push(t);
            if step + 1 < ref_logits.len() / vocab {
                logits = model.forward(&mut session, &[t], 8).unwrap();
            }
        }
        assert_eq!(gen, ref_gen, "{mix}: greedy tokens ({:?})", tok.decode(&gen, true));
    }
}
