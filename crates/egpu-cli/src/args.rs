//! Flags of `egpu run` and `egpu serve`, named as llama.cpp names them, each checked against its
//! range when parsed (the error states the range).

use std::path::PathBuf;

use clap::Args;
use egpu_llm::sampler::SamplerConfig;

/// Largest `-n`: far beyond any context, so only a typo hits it.
const MAX_PREDICT: i64 = 1 << 20;
/// Largest `-c` accepted before the model says its own (checked again against the model).
const MAX_CTX: usize = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// GGUF model file (or -m).
    #[arg(value_name = "MODEL.gguf", required_unless_present = "model_flag")]
    pub model: Option<PathBuf>,
    /// GGUF model file, as llama.cpp's -m.
    #[arg(short = 'm', long = "model", value_name = "MODEL.gguf")]
    pub model_flag: Option<PathBuf>,
    /// Context size in tokens; 0: the model's own [default: 4096, at most the model's].
    #[arg(short = 'c', long = "ctx-size", visible_alias = "ctx", value_name = "N", value_parser = ctx_size)]
    pub ctx: Option<usize>,
    /// CPU threads; 0: one per core.
    #[arg(short = 't', long, default_value_t = 0, value_name = "N", value_parser = threads)]
    pub threads: usize,
    /// Tokens per prompt-processing chunk.
    #[arg(short = 'b', long = "batch-size", visible_alias = "batch", default_value_t = 64, value_name = "N", value_parser = batch)]
    pub batch: usize,
    /// Device to run on: cpu, auto, or a name from `egpu list` (nv:0, emu:navi31, …).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Layers to offload to a GPU (accepted for llama.cpp compatibility; ignored with a note).
    #[arg(
        long = "n-gpu-layers",
        visible_alias = "ngl",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n_gpu_layers: Option<i64>,
    /// A Jinja chat template to use instead of the model's tokenizer.chat_template.
    #[arg(long, value_name = "JINJA")]
    pub chat_template: Option<String>,
}

impl ModelArgs {
    /// The model named both ways is an error (`egpu serve -m A.gguf B.gguf`).
    pub fn check_once(&self) -> Result<(), String> {
        match (&self.model, &self.model_flag) {
            (Some(a), Some(b)) => Err(format!(
                "the model is given twice ({} and -m {}); give it once",
                a.display(),
                b.display()
            )),
            _ => Ok(()),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.model.clone().or_else(|| self.model_flag.clone()).unwrap_or_default()
    }

    pub fn load_options(&self) -> egpu_llm::LoadOptions {
        egpu_llm::LoadOptions { device: self.device.clone(), threads: self.threads }
    }

    /// The context to allocate: `-c 0` is the model's; the default is 4096 capped at the model's.
    pub fn context(&self, model_max: usize) -> Result<usize, String> {
        match self.ctx {
            None => Ok(egpu_llm::run::DEFAULT_CTX.min(model_max)),
            Some(0) => Ok(model_max),
            Some(n) if n > model_max => Err(format!(
                "-c/--ctx-size {n} is larger than the model's context of {model_max}; allowed 16 to {model_max}, or 0 for the model's"
            )),
            Some(n) => Ok(n),
        }
    }

    /// llama.cpp's GPU-offload flag means nothing here yet; say so instead of erroring.
    pub fn note_ignored(&self) {
        if self.n_gpu_layers.is_some() {
            eprintln!("note: -ngl/--n-gpu-layers is ignored; egpu runs models on the CPU for now");
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Temperature, 0 to 100; 0: greedy (always the most likely token).
    #[arg(long = "temp", default_value_t = 0.8, value_name = "T", value_parser = temperature, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep only the K most likely tokens; 0: off.
    #[arg(long, default_value_t = 40, value_name = "K", value_parser = top_k)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probabilities add up to P, above 0 up to 1; 1: off.
    #[arg(long, default_value_t = 0.95, value_name = "P", value_parser = top_p, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one, 0 to 1; 0: off.
    #[arg(long, default_value_t = 0.05, value_name = "P", value_parser = min_p, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n, above 0 up to 10; 1: off.
    #[arg(long, default_value_t = 1.0, value_name = "X", value_parser = repeat_penalty, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over, 0 to 65536.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = repeat_last_n)]
    pub repeat_last_n: usize,
    /// Random seed, 0 to 2^64-1; -1: from the clock.
    #[arg(short = 's', long, default_value_t = -1, value_name = "N", value_parser = seed, allow_negative_numbers = true)]
    pub seed: i128,
}

impl SamplingArgs {
    /// The sampler settings and the seed actually used.
    pub fn config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: resolve_seed(self.seed),
        }
    }
}

/// -1 becomes a seed from the clock.
pub fn resolve_seed(seed: i128) -> u64 {
    if seed >= 0 {
        return seed as u64;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Arguments of `egpu run`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Without a prompt on a terminal, `egpu run` starts an interactive chat: /bye or Ctrl-D ends it, \
/clear forgets the conversation, /set temp 0.2 changes a setting, Ctrl-C stops the current answer.

Examples:
  egpu run model.gguf \"Why is the sky blue?\" --temp 0
  egpu run -m model.gguf -f prompt.txt -n 256
  echo \"Hello\" | egpu run model.gguf -p -")]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (or -p / -f); none on a terminal: interactive chat.
    #[arg(value_name = "PROMPT", conflicts_with_all = ["prompt", "file"])]
    pub prompt_arg: Option<String>,
    /// The prompt text; `-` reads it from standard input.
    #[arg(
        short = 'p',
        long,
        value_name = "TEXT",
        conflicts_with = "file",
        allow_hyphen_values = true
    )]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Tokens to generate per answer; -1: until the model ends or the context is full.
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, value_name = "N", value_parser = n_predict, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Stop the answer when this text appears (repeatable).
    #[arg(short = 'r', long = "reverse-prompt", value_name = "TEXT", allow_hyphen_values = true)]
    pub reverse_prompt: Vec<String>,
    /// System message (chat format).
    #[arg(long = "system", visible_alias = "sys", value_name = "TEXT")]
    pub system: Option<String>,
    /// Always wrap the prompt in the chat template (default: when the model has one).
    #[arg(long, conflicts_with = "raw")]
    pub chat: bool,
    /// Plain text completion: no chat template.
    #[arg(long)]
    pub raw: bool,
    /// After each answer, print its token counts (new and cached) and speeds.
    #[arg(long)]
    pub verbose: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

impl RunArgs {
    /// With -m, the first plain argument is the prompt (`egpu run -m M.gguf "Hi"`).
    pub fn normalize(&mut self) -> Result<(), String> {
        if self.model.model_flag.is_none() {
            return Ok(());
        }
        let Some(first) = self.model.model.take() else { return Ok(()) };
        if self.prompt_arg.is_some() || self.prompt.is_some() || self.file.is_some() {
            return Err(format!(
                "the model is given twice ({} and -m); give it once, then the prompt",
                first.display()
            ));
        }
        self.prompt_arg = Some(first.to_string_lossy().into_owned());
        Ok(())
    }

    pub fn max_tokens(&self) -> Option<usize> {
        usize::try_from(self.n_predict).ok()
    }

    pub fn format(&self) -> egpu_llm::run::PromptFormat {
        use egpu_llm::run::PromptFormat;
        match (self.chat, self.raw) {
            (true, _) => PromptFormat::Chat,
            (_, true) => PromptFormat::Raw,
            _ => PromptFormat::Auto,
        }
    }
}

/// Arguments of `egpu serve`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Endpoints: GET / (chat page), POST /v1/chat/completions, POST /v1/completions, GET /v1/models, \
GET /health. Requests are answered one at a time in arrival order.

Examples:
  egpu serve model.gguf                      # http://127.0.0.1:8080/
  EGPU_API_KEY=secret egpu serve model.gguf --host 0.0.0.0")]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on; anything but loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0: any free port (printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 (or set EGPU_API_KEY).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Name the model is served as [default: the file name without .gguf].
    #[arg(long, value_name = "NAME")]
    pub alias: Option<String>,
    /// Most tokens one request may ask for (max_tokens), 1 to 1048576.
    #[arg(long, default_value_t = 4096, value_name = "N", value_parser = max_tokens_limit)]
    pub max_tokens_limit: usize,
    /// Largest request body in bytes, 1024 to 67108864.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES", value_parser = body_limit)]
    pub max_body_bytes: usize,
    /// Requests that may wait for the model; more get 503, 1 to 1024.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = queue_limit)]
    pub queue: usize,
    /// Sampling for requests that leave a field out (a request's own fields win).
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not {what}"))
}

fn float_in(s: &str, ok: impl Fn(f32) -> bool, range: &str) -> Result<f32, String> {
    let v: f32 = number(s, "a number")?;
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range; allowed {range}"))
    }
}

fn int_in<T>(s: &str, lo: T, hi: T, extra: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = number(s, "a whole number")?;
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(format!("{v} is out of range; allowed {lo} to {hi}{extra}"))
    }
}

fn temperature(s: &str) -> Result<f32, String> {
    let (lo, hi) = egpu_llm::sampler::ranges::TEMPERATURE;
    float_in(s, |v| (lo..=hi).contains(&v), "0 to 100 (0: greedy)")
}

fn top_p(s: &str) -> Result<f32, String> {
    float_in(s, |v| v > 0.0 && v <= 1.0, "above 0 up to 1 (1: off)")
}

fn min_p(s: &str) -> Result<f32, String> {
    float_in(s, |v| (0.0..=1.0).contains(&v), "0 to 1 (0: off)")
}

fn repeat_penalty(s: &str) -> Result<f32, String> {
    let (lo, hi) = egpu_llm::sampler::ranges::REPEAT_PENALTY;
    float_in(s, |v| v > lo && v <= hi, "above 0 up to 10 (1: off)")
}

fn top_k(s: &str) -> Result<usize, String> {
    int_in(s, 0, 1 << 20, " (0: off)")
}

fn repeat_last_n(s: &str) -> Result<usize, String> {
    int_in(s, 0, 65536, "")
}

fn seed(s: &str) -> Result<i128, String> {
    let v: i128 = number(s, "a whole number")?;
    if v == -1 || (0..=i128::from(u64::MAX)).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range; allowed 0 to {}, or -1 for a seed from the clock",
            u64::MAX
        ))
    }
}

fn n_predict(s: &str) -> Result<i64, String> {
    let v: i64 = number(s, "a whole number")?;
    if v == -1 || (1..=MAX_PREDICT).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range; allowed 1 to {MAX_PREDICT}, or -1 for no limit (until the model ends or the context is full)"
        ))
    }
}

fn ctx_size(s: &str) -> Result<usize, String> {
    let v: usize = number(s, "a whole number")?;
    if v == 0 || (16..=MAX_CTX).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range; allowed 16 to the model's context (at most {MAX_CTX}), or 0 for the model's"))
    }
}

fn threads(s: &str) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    int_in(s, 0, cores, &format!(" (the cores of this machine; 0: all {cores})"))
}

fn batch(s: &str) -> Result<usize, String> {
    int_in(s, 1, 4096, "")
}

fn max_tokens_limit(s: &str) -> Result<usize, String> {
    int_in(s, 1, MAX_PREDICT as usize, "")
}

fn body_limit(s: &str) -> Result<usize, String> {
    int_in(s, 1024, 64 << 20, "")
}

fn queue_limit(s: &str) -> Result<usize, String> {
    int_in(s, 1, 1024, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced_and_named() {
        assert!(temperature("nan").unwrap_err().contains("allowed 0 to 100"));
        assert!(temperature("-1").is_err());
        assert_eq!(temperature("0"), Ok(0.0));
        assert!(min_p("2").unwrap_err().contains("allowed 0 to 1"));
        assert!(top_p("5").is_err() && top_p("0").is_err());
        assert!(repeat_penalty("0").unwrap_err().contains("above 0"));
        assert_eq!(seed("-1"), Ok(-1));
        assert!(seed("-2").is_err());
        assert_eq!(seed("18446744073709551615"), Ok(i128::from(u64::MAX)));
        assert!(n_predict("0").unwrap_err().contains("-1 for no limit"));
        assert!(threads("1000").unwrap_err().contains("cores"));
        assert!(ctx_size("3").is_err());
        assert!(number::<u32>("x", "a whole number").is_err());
    }
}
