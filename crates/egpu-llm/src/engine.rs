//! Driving a loaded model the way a chat program or a server does: one [`Engine`] (weights and
//! tokenizer), [`Conversation`]s whose KV cache survives between turns (a new prompt reuses the
//! cached prefix it shares), stop strings, cancellation and prompt progress through a callback.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::chat::{render_chat, ChatError, ChatMessage};
use crate::cpu::CpuBackend;
use crate::gguf::{GgufError, GgufFile};
use crate::model::{Model, Session};
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;
use crate::LlmError;

/// What `egpu run` / `egpu serve` print about a model at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// `general.name`, else the file name.
    pub name: String,
    /// `general.architecture`.
    pub arch: String,
    /// Parameters (elements of all tensors).
    pub params: u64,
    /// The weight type holding most of the bytes (e.g. `Q4_1`).
    pub quant: String,
    /// The model's training context.
    pub context_length: usize,
}

impl ModelInfo {
    /// Parameters as `135M` / `1.5B`.
    pub fn params_human(&self) -> String {
        let p = self.params as f64;
        if p >= 1e9 {
            format!("{:.1}B", p / 1e9)
        } else {
            format!("{:.0}M", p / 1e6)
        }
    }
}

/// How a model is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// `cpu`, `auto` (the best device that can run a model: today always the CPU), or a
    /// runtime device name (`nv:0`, `emu:navi31`, …), which says why it cannot run a model yet.
    pub device: String,
    /// CPU threads (0: all cores).
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { device: "cpu".into(), threads: 0 }
    }
}

/// A loaded model with its tokenizer.
pub struct Engine {
    /// The transformer on its backend.
    pub model: Model<CpuBackend>,
    /// The tokenizer from the same file.
    pub tokenizer: Tokenizer,
    /// What the model is.
    pub info: ModelInfo,
    /// Seconds the load took.
    pub load_secs: f64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model wrote its end-of-text / end-of-turn token.
    EndOfText,
    /// A stop string appeared.
    Stop,
    /// The token limit was reached.
    Length,
    /// The KV cache is full.
    ContextFull,
    /// The callback asked to stop (Ctrl-C, a client that went away).
    Cancelled,
}

/// One generation's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to generate (None: until the end of text or a full context).
    pub max_tokens: Option<usize>,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// Strings that end the answer; they are not part of the text.
    pub stop: Vec<String>,
    /// Tokens per prefill chunk.
    pub batch: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: None, sampler: SamplerConfig::default(), stop: Vec::new(), batch: 64 }
    }
}

/// What the callback of [`Engine::generate`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Prompt tokens evaluated so far (of `total` new ones; cached ones are not counted).
    Prompt {
        /// Evaluated.
        done: usize,
        /// To evaluate.
        total: usize,
    },
    /// A piece of the answer.
    Text(&'a str),
}

/// Timings and counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationStats {
    /// Prompt tokens (all of them, cached or not).
    pub prompt_tokens: usize,
    /// Prompt tokens that were evaluated (the rest came from the cache).
    pub prompt_evaluated: usize,
    /// Seconds spent evaluating the prompt.
    pub prompt_secs: f64,
    /// Tokens generated.
    pub generated: usize,
    /// Forward passes after the prompt (the first token comes from the prompt's logits).
    pub decode_steps: usize,
    /// Seconds spent in those passes and in sampling.
    pub decode_secs: f64,
}

impl GenerationStats {
    /// Milliseconds per evaluated prompt token and tokens/s, if any was evaluated.
    pub fn prompt_rate(&self) -> Option<(f64, f64)> {
        rate(self.prompt_evaluated, self.prompt_secs)
    }

    /// Milliseconds per decode step and tokens/s, if any step ran.
    pub fn decode_rate(&self) -> Option<(f64, f64)> {
        rate(self.decode_steps, self.decode_secs)
    }
}

fn rate(n: usize, secs: f64) -> Option<(f64, f64)> {
    (n > 0 && secs > 0.0).then(|| (secs * 1e3 / n as f64, n as f64 / secs))
}

/// The result of [`Engine::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The answer text (without a stop string).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Counts and timings.
    pub stats: GenerationStats,
}

/// A KV cache plus the tokens in it, kept between turns.
pub struct Conversation {
    session: Session<CpuBackend>,
    tokens: Vec<u32>,
}

impl Conversation {
    /// Positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.session.capacity()
    }

    /// Tokens in the cache.
    pub fn cached(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets everything (`/clear`).
    pub fn clear(&mut self) {
        self.session.truncate(0);
        self.tokens.clear();
    }
}

/// Check that `device` can run a model: `cpu` and `auto` can; a runtime device name is
/// parsed and opened, and the error says precisely why it cannot (yet).
pub fn check_device(device: &str) -> Result<(), LlmError> {
    if matches!(device, "cpu" | "auto") {
        return Ok(());
    }
    let failed = |source| LlmError::Device { device: device.to_string(), source };
    let name: egpu::DeviceName = device.parse().map_err(failed)?;
    let opened = egpu::Device::open(&name.to_string()).map_err(failed)?;
    let properties = opened.properties();
    Err(LlmError::NoGpuBackend {
        device: device.to_string(),
        name: properties.name.clone(),
        architecture: properties.architecture.clone(),
    })
}

impl Engine {
    /// Opens `path`, reads the tokenizer and loads the weights; `progress(done, total)` in bytes.
    pub fn load(
        path: &Path,
        options: &LoadOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, LlmError> {
        check_device(&options.device)?;
        let started = Instant::now();
        let file = Arc::new(open_model_file(path)?);
        let in_file = |source: LlmError| LlmError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| in_file(e.into()))?;
        let backend = crate::cpu::CpuBackend::new(options.threads)?;
        let model = Model::load(&file, backend, progress).map_err(|e| in_file(e.into()))?;
        let info = model_info(&file, path, model.config.context_length);
        Ok(Self { model, tokenizer, info, load_secs: started.elapsed().as_secs_f64() })
    }

    /// A conversation with an empty cache of `capacity` positions (capped at the model's).
    pub fn conversation(&self, capacity: usize) -> Result<Conversation, LlmError> {
        let capacity = capacity.clamp(1, self.info.context_length);
        Ok(Conversation { session: self.model.session(capacity)?, tokens: Vec::new() })
    }

    /// The chat prompt for `messages` (with the assistant's turn opened), by `template` or the
    /// model's own.
    pub fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
    ) -> Result<String, LlmError> {
        let template =
            template.or(self.tokenizer.chat_template.as_deref()).ok_or(ChatError::NoTemplate)?;
        let name = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.token_text(i)).unwrap_or("").to_owned()
        };
        Ok(render_chat(
            template,
            messages,
            true,
            &name(self.tokenizer.bos),
            &name(self.tokenizer.eos),
        )?)
    }

    /// Tokens of a prompt: a rendered chat (its template writes BOS itself) or plain text
    /// (BOS added as the model asks).
    pub fn tokenize(&self, text: &str, rendered_chat: bool) -> Result<Vec<u32>, LlmError> {
        let mut ids = self.tokenizer.encode(text, !rendered_chat, true)?;
        if ids.is_empty() {
            ids.extend(self.tokenizer.bos);
        }
        if ids.is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        Ok(ids)
    }

    /// Runs `prompt` in `conv` (reusing the cached prefix it shares) and generates an answer.
    /// `on_event` sees prompt progress and each piece of text; returning `Break` cancels.
    pub fn generate(
        &self,
        conv: &mut Conversation,
        prompt: &[u32],
        options: &GenerateOptions,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Outcome, LlmError> {
        let capacity = conv.capacity();
        if prompt.is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        if prompt.len() >= capacity {
            return Err(LlmError::PromptTooLong { prompt: prompt.len(), capacity });
        }
        options.sampler.validate()?;
        // Reuse the shared prefix, but evaluate at least one token: its logits start the answer.
        let shared = conv.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let keep = shared.min(prompt.len() - 1);
        conv.session.truncate(keep);
        conv.tokens.truncate(keep);

        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            prompt_evaluated: 0,
            prompt_secs: 0.0,
            generated: 0,
            decode_steps: 0,
            decode_secs: 0.0,
        };
        let outcome = |text: String, finish, stats| Ok(Outcome { text, finish, stats });
        let fresh = &prompt[keep..];
        let started = Instant::now();
        let mut logits = Vec::new();
        let batch = options.batch.max(1);
        for part in fresh.chunks(batch) {
            logits = self.model.forward(&mut conv.session, part, batch)?;
            conv.tokens.extend_from_slice(part);
            stats.prompt_evaluated += part.len();
            stats.prompt_secs = started.elapsed().as_secs_f64();
            let progress = Event::Prompt { done: stats.prompt_evaluated, total: fresh.len() };
            if on_event(progress).is_break() {
                return outcome(String::new(), FinishReason::Cancelled, stats);
            }
        }

        let mut sampler = Sampler::new(options.sampler.clone());
        let mut decoder = self.tokenizer.stream_decoder();
        let mut stop = StopMatcher::new(&options.stop);
        let mut text = String::new();
        let decode_start = Instant::now();
        let mut history = prompt.to_vec();
        let finish = loop {
            if options.max_tokens.is_some_and(|max| stats.generated >= max) {
                break FinishReason::Length;
            }
            let next = sampler.sample(&logits, &history);
            if self.tokenizer.is_end_of_generation(next) {
                break FinishReason::EndOfText;
            }
            stats.generated += 1;
            history.push(next);
            let (emit, hit) = stop.push(&decoder.push(next));
            text.push_str(&emit);
            if !emit.is_empty() && on_event(Event::Text(&emit)).is_break() {
                break FinishReason::Cancelled;
            }
            if hit {
                break FinishReason::Stop;
            }
            if conv.session.position() >= capacity {
                break FinishReason::ContextFull;
            }
            if options.max_tokens.is_some_and(|max| stats.generated >= max) {
                break FinishReason::Length;
            }
            logits = self.model.forward(&mut conv.session, &[next], 1)?;
            conv.tokens.push(next);
            stats.decode_steps += 1;
        };
        stats.decode_secs = decode_start.elapsed().as_secs_f64();
        if finish != FinishReason::Stop {
            let (emit, _) = stop.push(&decoder.finish());
            let rest = emit + &stop.flush();
            if !rest.is_empty() && finish != FinishReason::Cancelled {
                let _ = on_event(Event::Text(&rest));
                text.push_str(&rest);
            }
        }
        outcome(text, finish, stats)
    }
}

/// Opens a model file with errors that say what the path is and name it.
fn open_model_file(path: &Path) -> Result<GgufFile, LlmError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(LlmError::NotAFile { path: path.to_path_buf(), what: "a directory" })
        }
        Ok(m) if !m.is_file() => {
            return Err(LlmError::NotAFile { path: path.to_path_buf(), what: "not a regular file" })
        }
        _ => {}
    }
    GgufFile::open(path).map_err(|e| match e {
        // The I/O error already names the path.
        GgufError::Io { .. } => e.into(),
        _ => LlmError::InFile { path: path.to_path_buf(), source: Box::new(e.into()) },
    })
}

fn model_info(file: &GgufFile, path: &Path, context_length: usize) -> ModelInfo {
    let name = file
        .get_str_opt("general.name")
        .ok()
        .flatten()
        .map(str::to_owned)
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let arch = file.get_str("general.architecture").unwrap_or("?").to_owned();
    let params = file.tensors.iter().map(|t| t.n_elements()).sum();
    let mut by_type: Vec<(String, u64)> = Vec::new();
    for t in &file.tensors {
        let ty = t.ggml_type.to_string();
        match by_type.iter_mut().find(|(n, _)| *n == ty) {
            Some((_, bytes)) => *bytes += t.size,
            None => by_type.push((ty, t.size)),
        }
    }
    let quant = by_type.into_iter().max_by_key(|(_, b)| *b).map(|(n, _)| n).unwrap_or_default();
    ModelInfo { name, arch, params, quant, context_length }
}

/// Finds stop strings in streamed text, holding back a tail that could still become one.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds a piece; returns the text that is safe to show and whether a stop string was hit
    /// (then the text ends just before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        let first_hit = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min();
        if let Some(at) = first_hit {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest tail that is the start of some stop string.
        let hold = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let out = self.pending[..hold].to_owned();
        self.pending.drain(..hold);
        (out, false)
    }

    /// Whatever is held back (the text ended without completing a stop string).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_across_pieces() {
        let mut m = StopMatcher::new(&["\n\n".into(), "END".into()]);
        assert_eq!(m.push("Hello E"), ("Hello ".into(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("Dless"), (String::new(), true), "E+N+D completes END");
        let mut m = StopMatcher::new(&["END".into()]);
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.push("x"), ("ENx".into(), false), "a broken prefix is released");
        assert_eq!(m.push("é E"), ("é ".into(), false));
        assert_eq!(m.flush(), "E");
        let mut m = StopMatcher::new(&[]);
        assert_eq!(m.push("a"), ("a".into(), false));
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn every_runtime_device_name_is_accepted_and_says_why_it_cannot_run_a_model() {
        assert!(check_device("cpu").is_ok());
        assert!(check_device("auto").is_ok());
        match check_device("gpu0") {
            Err(LlmError::Device { device, source: egpu::Error::BadDeviceName { .. } }) => {
                assert_eq!(device, "gpu0");
            }
            other => panic!("a malformed name is the runtime's parse error, got {other:?}"),
        }
        // A name the runtime knows but cannot open yet carries the runtime's reason.
        match check_device("emu:navi31") {
            Err(LlmError::Device { source: egpu::Error::Unavailable { why, .. }, .. }) => {
                assert!(why.contains("AMD driver"), "{why}");
            }
            other => panic!("emu:navi31 has no driver yet, got {other:?}"),
        }
    }
}
