//! `egpu run`: load a GGUF model, tokenize the prompt, generate, and stream the text.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::chat::{render_chat, ChatMessage};
use crate::cpu::CpuBackend;
use crate::gguf::GgufFile;
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;
use crate::LlmError;

/// Arguments of `egpu run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// GGUF model file.
    #[arg(value_name = "MODEL.gguf")]
    pub model: PathBuf,
    /// Prompt text.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Maximum number of tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Top-k sampling (0: off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (nucleus) sampling (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p sampling (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Device to run on.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (0: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Context size in tokens (default: prompt + n-predict, capped at the model's).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Tokens per prefill chunk.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

/// Prompt and decode throughput of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStats {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens per second.
    pub prompt_tps: f64,
    /// Generated tokens.
    pub decode_tokens: usize,
    /// Generated tokens per second (excluding the first, which the prefill produced).
    pub decode_tps: f64,
}

/// Runs `egpu run`: streams the generated text to stdout and ends with prompt and decode
/// tokens/s (on stderr, so that stdout carries only the text).
pub fn run(args: &RunArgs) -> Result<(), LlmError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stats = generate(args, &mut out)?;
    writeln!(out).map_err(LlmError::Output)?;
    eprintln!(
        "prompt: {} tokens, {:.1} tokens/s | decode: {} tokens, {:.1} tokens/s",
        stats.prompt_tokens, stats.prompt_tps, stats.decode_tokens, stats.decode_tps
    );
    Ok(())
}

/// The body of [`run`], writing the text to `out`; returns the throughput.
pub fn generate(args: &RunArgs, out: &mut dyn Write) -> Result<RunStats, LlmError> {
    if args.device != "cpu" {
        return Err(LlmError::UnsupportedDevice(args.device.clone()));
    }
    let file = Arc::new(GgufFile::open(&args.model)?);
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let backend = CpuBackend::new(args.threads)?;

    let bar = indicatif::ProgressBar::new(file.tensors.iter().map(|t| t.size).sum());
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg} [{bar:40}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(
        args.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    let model = Model::load(&file, backend, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();

    let text = if args.chat {
        let template =
            tokenizer.chat_template.as_deref().ok_or(crate::chat::ChatError::NoTemplate)?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", &args.prompt));
        let name =
            |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or("").to_owned();
        render_chat(template, &messages, true, &name(tokenizer.bos), &name(tokenizer.eos))?
    } else {
        args.prompt.clone()
    };
    // Chat templates usually write BOS themselves; only add it for plain prompts.
    let mut ids = tokenizer.encode(&text, !args.chat, true)?;
    if ids.is_empty() {
        ids.extend(tokenizer.bos);
    }
    if ids.is_empty() {
        return Err(LlmError::EmptyPrompt);
    }
    let capacity = args
        .ctx
        .unwrap_or(ids.len() + args.n_predict)
        .min(model.config.context_length.max(ids.len() + 1));
    if ids.len() >= capacity {
        return Err(LlmError::PromptTooLong { prompt: ids.len(), capacity });
    }
    let mut session = model.session(capacity)?;
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: args.repeat_last_n,
        seed: args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        }),
    });

    let started = Instant::now();
    let mut logits = model.forward(&mut session, &ids, args.batch)?;
    let prompt_secs = started.elapsed().as_secs_f64();
    let mut history = ids.clone();
    let mut decoder = tokenizer.stream_decoder();
    let decode_start = Instant::now();
    let mut generated = 0;
    let mut decode_steps = 0;
    for _ in 0..args.n_predict {
        let next = sampler.sample(&logits, &history);
        if tokenizer.is_end_of_generation(next) {
            break;
        }
        generated += 1;
        history.push(next);
        out.write_all(decoder.push(next).as_bytes()).map_err(LlmError::Output)?;
        out.flush().map_err(LlmError::Output)?;
        if generated == args.n_predict || session.position() >= session.capacity() {
            break;
        }
        logits = model.forward(&mut session, &[next], 1)?;
        decode_steps += 1;
    }
    out.write_all(decoder.finish().as_bytes()).map_err(LlmError::Output)?;
    let decode_secs = decode_start.elapsed().as_secs_f64();
    Ok(RunStats {
        prompt_tokens: ids.len(),
        prompt_tps: ids.len() as f64 / prompt_secs.max(1e-9),
        decode_tokens: generated,
        decode_tps: decode_steps as f64 / decode_secs.max(1e-9),
    })
}
