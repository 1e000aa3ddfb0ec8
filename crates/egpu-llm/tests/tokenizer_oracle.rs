//! The byte-level BPE tokenizer and the chat template on SmolLM2's real vocabulary, against
//! Hugging Face `tokenizers` (token ids) and Python's jinja2 (chat template), both fed from the
//! same GGUF by the PyPI `gguf` package.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{python, python_has, reference_script, smollm2_gguf};
use egpu_llm::chat::{render_chat, ChatMessage};
use egpu_llm::gguf::GgufFile;
use egpu_llm::tokenizer::Tokenizer;

const TEXTS: &[&str] = &[
    "Hello world",
    "The capital of France is Paris.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "Numbers: 3.14159, 2024-06-01, 1,000,000 and 42nd",
    "Accents: héllo wörld, naïve café, Ærøskøbing, ñandú",
    "Emoji: 😀🚀👍🏽 and a family 👨‍👩‍👧",
    "日本語のテキスト and 中文 and 한국어",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n",
    "def f(a, b):\n\treturn a ** b  # power\n",
    "it's they're we've I'm you'll he'd IT'S",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "weird <|im_end|<|im_start|> nesting <|endoftext|>",
    "",
    " ",
    "\u{a0}non-breaking\u{2003}em space\u{3000}ideographic",
];

fn oracle(script: &str, gguf: &std::path::Path, input: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(python())
        .arg(reference_script(script))
        .arg(gguf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("oracle prints JSON")
}

#[test]
fn smollm2_token_ids_match_hf_tokenizers_and_round_trip() {
    let name = "smollm2_token_ids_match_hf_tokenizers_and_round_trip";
    let Some(path) = smollm2_gguf(name) else { return };
    if !python_has(&["gguf", "tokenizers"], "pip install gguf tokenizers", name) {
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos, tok.eos, tok.add_bos), (Some(1), Some(2), false));
    let expected = oracle("bpe_tokenize.py", &path, &serde_json::json!(TEXTS));
    for (text, want) in TEXTS.iter().zip(expected.as_array().unwrap()) {
        let want: Vec<u32> =
            want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text, true, true).unwrap();
        assert_eq!(got, want, "ids for {text:?}");
        assert_eq!(tok.decode(&got, true), *text, "round trip of {text:?}");
        // Streaming decode gives the same text, whatever the split of multi-byte characters.
        let mut stream = tok.stream_decoder();
        let mut streamed: String = got.iter().map(|&id| stream.push(id)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, tok.decode(&got, false));
    }
}

#[test]
fn the_documented_prompt_encodes_to_the_documented_ids() {
    // compute-ml.md section 4 lists these ids for the SmolLM2 chat prompt.
    let Some(path) = smollm2_gguf("the_documented_prompt_encodes_to_the_documented_ids") else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    let ids = tok
        .encode(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            true,
            true,
        )
        .unwrap();
    assert_eq!(ids, [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]);
    // Without special parsing, the markers are plain text.
    let plain = tok.encode("<|im_start|>", false, false).unwrap();
    assert!(plain.len() > 1 && !plain.contains(&1));
}

#[test]
fn smollm2_chat_template_matches_jinja2() {
    let name = "smollm2_chat_template_matches_jinja2";
    let Some(path) = smollm2_gguf(name) else { return };
    if !python_has(&["gguf", "jinja2"], "pip install gguf jinja2", name) {
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let template = tok.chat_template.clone().expect("SmolLM2 has a chat template");
    let conversations = [
        (vec![ChatMessage::new("user", "What is the capital of France?")], true),
        (
            vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
                ChatMessage::new("assistant", "Hello!"),
                ChatMessage::new("user", "Emoji 😀?"),
            ],
            false,
        ),
    ];
    let input: Vec<serde_json::Value> = conversations
        .iter()
        .map(|(msgs, gen)| {
            serde_json::json!({
                "messages": msgs.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
                "add_generation_prompt": gen,
            })
        })
        .collect();
    let expected = oracle("chat_template.py", &path, &serde_json::json!(input));
    for ((msgs, gen), want) in conversations.iter().zip(expected.as_array().unwrap()) {
        let got = render_chat(&template, msgs, *gen, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(got, want.as_str().unwrap());
    }
}

#[test]
fn sentencepiece_vocab_matches_sentencepiece() {
    let name = "sentencepiece_vocab_matches_sentencepiece";
    if !python_has(&["gguf", "sentencepiece"], "pip install gguf sentencepiece", name) {
        return;
    }
    let texts = [
        "hello world",
        "the lazy fox jumps",
        "naïve café crème",
        "  two  spaces and\ttab",
        "x😀y and 日本",
        "new\nline",
        "Zebra QUIZ 12345",
        "",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(python())
        .arg(reference_script("spm_fixture.py"))
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().unwrap().write_all(serde_json::json!(texts).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "spm_fixture.py: {}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<Vec<u32>> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ids.json")).unwrap())
            .unwrap();
    let file = GgufFile::open(dir.path().join("spm.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(
        (tok.bos, tok.eos, tok.add_bos),
        (Some(1), Some(2), true),
        "SentencePiece adds BOS by default"
    );
    for (text, want) in texts.iter().zip(&expected) {
        let got = tok.encode(text, false, false).unwrap();
        assert_eq!(&got, want, "ids for {text:?}");
        assert_eq!(tok.decode(&got, false), *text, "round trip of {text:?}");
    }
    let with_bos = tok.encode("hello", true, false).unwrap();
    assert_eq!(with_bos[0], 1);
}
