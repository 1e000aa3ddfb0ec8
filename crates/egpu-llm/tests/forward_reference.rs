//! Acceptance test: egpu's CPU backend against the NumPy reference forward
//! (tests/reference/forward.py, from compute-ml.md appendix A) on the real SmolLM2-135M Q4_1 GGUF.
//!
//! Both sides dequantize the same packed weights and compute in f32, so they differ only by
//! summation order (egpu's decode path also quantizes activations, to two 16-bit levels per
//! element, about 31 bits: see `qdot`). Stated tolerance: every logit of every step within 1e-3
//! absolute of the reference (logits span about ±30; measured: under 1e-4, 5.1e-5 worst), and
//! the greedy tokens identical.

mod common;

use std::sync::Arc;

use common::{python_has, read_f32, run_script, smollm2_gguf};
use egpu_llm::cpu::CpuBackend;
use egpu_llm::gguf::GgufFile;
use egpu_llm::model::Model;
use egpu_llm::sampler::argmax;
use egpu_llm::tokenizer::Tokenizer;

const LOGIT_TOLERANCE: f32 = 1e-3;
const N_GEN: usize = 8;
const PROMPTS: &[&str] = &[
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, there was a little",
];

#[test]
fn greedy_tokens_and_logits_match_the_numpy_reference() {
    let name = "greedy_tokens_and_logits_match_the_numpy_reference";
    let Some(path) = smollm2_gguf(name) else { return };
    if !python_has(&["gguf", "numpy"], "pip install gguf numpy", name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n_gen = N_GEN.to_string();
    let mut args = vec![path.to_str().unwrap(), dir.path().to_str().unwrap(), n_gen.as_str()];
    args.extend_from_slice(PROMPTS);
    run_script("forward.py", &args);

    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let model = Model::load(&file, CpuBackend::new(0).unwrap(), &mut |_, _| {}).unwrap();
    for (i, prompt) in PROMPTS.iter().enumerate() {
        let ids_text = std::fs::read_to_string(dir.path().join(format!("{i}.ids"))).unwrap();
        let mut lines = ids_text.lines();
        let parse =
            |l: &str| l.split_whitespace().map(|v| v.parse::<u32>().unwrap()).collect::<Vec<_>>();
        let ref_prompt = parse(lines.next().unwrap());
        let ref_gen = parse(lines.next().unwrap());
        let ref_logits = read_f32(&dir.path().join(format!("{i}.logits")));
        let vocab = model.config.vocab_size;
        assert_eq!(ref_logits.len() % vocab, 0);

        let ids = tok.encode(prompt, true, true).unwrap();
        assert_eq!(ids, ref_prompt, "prompt {i} tokenizes like the reference");
        let mut session = model.session(256).unwrap();
        // Chunks of 5 exercise the multi-token prefill path and its chunk boundaries.
        let mut logits = model.forward(&mut session, &ids, 5).unwrap();
        let mut gen = Vec::new();
        for (step, want) in ref_logits.chunks_exact(vocab).enumerate() {
            let worst = logits.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            eprintln!("prompt {i} step {step}: max |logit diff| {worst:.2e}");
            assert!(worst <= LOGIT_TOLERANCE, "prompt {i} step {step}: max |logit diff| {worst}");
            let t = argmax(&logits);
            gen.push(t);
            if step + 1 < ref_logits.len() / vocab {
                logits = model.forward(&mut session, &[t], 5).unwrap();
            }
        }
        assert_eq!(gen, ref_gen, "prompt {i}: greedy tokens ({:?})", tok.decode(&gen, true));
    }
}

#[test]
fn prefill_chunking_does_not_change_the_result() {
    let Some(path) = smollm2_gguf("prefill_chunking_does_not_change_the_result") else { return };
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let model = Model::load(&file, CpuBackend::new(2).unwrap(), &mut |_, _| {}).unwrap();
    let ids = tok.encode("The quick brown fox jumps over the lazy dog", false, false).unwrap();
    let run = |chunk| {
        let mut s = model.session(64).unwrap();
        model.forward(&mut s, &ids, chunk).unwrap()
    };
    let one_by_one = run(1);
    let all_at_once = run(64);
    let worst =
        one_by_one.iter().zip(&all_at_once).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-3, "token-by-token vs one prefill: {worst}");
    // The context limit is enforced with an error naming the sizes.
    let mut s = model.session(4).unwrap();
    let err = model.forward(&mut s, &ids, 8).unwrap_err().to_string();
    assert!(err.contains("context full"), "{err}");
}

#[test]
fn run_command_streams_a_greedy_chat_answer() {
    use egpu_llm::run::{PromptFormat, RunOptions};
    let Some(path) = smollm2_gguf("run_command_streams_a_greedy_chat_answer") else { return };
    let mut opts = RunOptions::new(&path, "What is the capital of France?");
    opts.format = PromptFormat::Chat;
    opts.generate.max_tokens = Some(12);
    opts.load.threads = 2;
    let mut out = Vec::new();
    let outcome = egpu_llm::run::generate(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(text, outcome.text);
    assert!(!text.contains("<|im_end|>"), "generation stops at the end-of-turn token: {text:?}");
    let stats = outcome.stats;
    assert!(stats.generated >= 1 && stats.generated <= 12);
    assert!(stats.prompt_tokens > 10 && stats.prompt_rate().is_some());

    // A wrong device and a non-GGUF file give errors that name what was found.
    let mut bad = opts.clone();
    bad.load.device = "vulkan".into();
    let e = egpu_llm::run::generate(&bad, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("vulkan"), "{e}");
    let mut bad = opts.clone();
    bad.model = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let e = egpu_llm::run::generate(&bad, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("bad magic") && e.contains("Cargo.toml"), "{e}");
}
