//! Architecture variants on tiny random models written by the PyPI `gguf` writer, against the
//! independent NumPy forward in tests/reference/tiny_model.py: qwen2 (q/k/v biases, NeoX RoPE,
//! untied output), qwen3 (per-head q/k norm, head width != embedding / heads) and llama with
//! partial rotation, linear RoPE scaling and rope_freqs factors. Weights mix F32, Q8_0, Q4_0 and
//! Q5_1. Tolerance: 1e-3 absolute on logits of magnitude ~10 (both sides are f32).

mod common;

use std::sync::Arc;

use common::{python_has, read_f32, run_script};
use egpu_llm::cpu::CpuBackend;
use egpu_llm::gguf::GgufFile;
use egpu_llm::model::{Arch, Model};

const IDS: [u32; 7] = [5, 17, 3, 88, 40, 2, 9];

fn check(arch: &str, expected_arch: Arch) {
    let name = format!("arch_variants::{arch}");
    if !python_has(&["gguf", "numpy"], "pip install gguf numpy", &name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = IDS.iter().map(u32::to_string).collect();
    let mut args = vec![dir.path().to_str().unwrap(), arch];
    args.extend(ids.iter().map(String::as_str));
    run_script("tiny_model.py", &args);
    let reference = read_f32(&dir.path().join("logits.f32"));
    let file = Arc::new(GgufFile::open(dir.path().join("tiny.gguf")).unwrap());
    let model = Model::load(&file, CpuBackend::new(2).unwrap(), &mut |_, _| {}).unwrap();
    assert_eq!(model.config.arch, expected_arch);
    let vocab = model.config.vocab_size;
    assert_eq!(reference.len(), IDS.len() * vocab);

    // Prefill all but the last token, then decode the last one through the KV cache.
    let mut session = model.session(16).unwrap();
    let n = IDS.len();
    let after_prefill = model.forward(&mut session, &IDS[..n - 1], 4).unwrap();
    let after_decode = model.forward(&mut session, &IDS[n - 1..], 4).unwrap();
    for (got, pos) in [(after_prefill, n - 2), (after_decode, n - 1)] {
        let want = &reference[pos * vocab..(pos + 1) * vocab];
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let spread = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(spread > 1.0, "{arch}: reference logits should not be trivial");
        assert!(worst < 1e-3, "{arch} position {pos}: max |logit diff| {worst}");
    }
}

#[test]
fn llama_with_partial_rotation_linear_scaling_and_rope_freqs() {
    check("llama", Arch::Llama);
}

#[test]
fn qwen2_with_biases_and_untied_output() {
    check("qwen2", Arch::Qwen2);
}

#[test]
fn qwen3_with_qk_norm_and_wide_heads() {
    check("qwen3", Arch::Qwen3);
}

#[test]
fn unsupported_architecture_and_rope_scaling_are_named() {
    use egpu_llm::gguf::{GgufBuilder, MetaValue};
    use egpu_llm::model::ModelConfig;
    let f = GgufFile::from_bytes(
        GgufBuilder::new().meta("general.architecture", MetaValue::String("mamba".into())).build(),
    )
    .unwrap();
    let e = ModelConfig::from_gguf(&f).unwrap_err().to_string();
    assert!(e.contains("\"mamba\""), "{e}");

    let base = |embd_type: egpu_llm::quant::GgmlType, embd_bytes: usize| {
        let mut b =
            GgufBuilder::new().meta("general.architecture", MetaValue::String("llama".into()));
        for (k, v) in [
            ("llama.block_count", 1u32),
            ("llama.embedding_length", 256),
            ("llama.feed_forward_length", 8),
            ("llama.attention.head_count", 2),
            ("llama.context_length", 16),
        ] {
            b = b.meta(k, MetaValue::U32(v));
        }
        b.meta("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5)).tensor(
            "token_embd.weight",
            &[256, 4],
            embd_type,
            vec![0; embd_bytes],
        )
    };
    use egpu_llm::quant::GgmlType;
    let yarn =
        base(GgmlType::F32, 4096).meta("llama.rope.scaling.type", MetaValue::String("yarn".into()));
    let e = ModelConfig::from_gguf(&GgufFile::from_bytes(yarn.build()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("yarn"), "{e}");

    let iq = Arc::new(GgufFile::from_bytes(base(GgmlType::IQ2_XXS, 4 * 66).build()).unwrap());
    let e = Model::load(&iq, CpuBackend::new(1).unwrap(), &mut |_, _| {}).unwrap_err().to_string();
    assert!(e.contains("token_embd.weight") && e.contains("IQ2_XXS"), "{e}");
}
