//! egpu's model runner: a GGUF reader, tokenizers built from the GGUF vocabulary, the llama-family
//! transformer written against an op-level [`backend::Backend`], a multi-threaded CPU reference
//! backend, samplers, and the generation loop behind `egpu run` and `egpu serve`
//! ([`engine::Engine`], [`run::RunOptions`]).

pub mod backend;
pub mod chat;
pub mod cpu;
pub mod engine;
pub mod gguf;
pub mod model;
pub mod qdot;
pub mod quant;
pub mod run;
pub mod sampler;
pub mod tokenizer;

pub use engine::{Engine, GenerateOptions, LoadOptions};
pub use run::RunOptions;

/// Errors of the model runner, one variant per layer below it.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Reading the GGUF file failed.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// Building or using the tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    /// Rendering the chat template failed.
    #[error(transparent)]
    Chat(#[from] chat::ChatError),
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    /// The device name does not parse, or the device cannot be opened; the runtime says why.
    #[error("cannot run a model on {device}")]
    Device {
        /// The device name as given.
        device: String,
        /// The runtime's error (bad name, not attached, no driver, …).
        #[source]
        source: egpu::Error,
    },
    /// The device opened, but the model runner has no GPU backend for it yet.
    #[error("{device} ({name}, {architecture}) is reachable, but the model runner has no GPU backend yet; use --device cpu")]
    NoGpuBackend {
        /// The device name.
        device: String,
        /// What the device calls itself.
        name: String,
        /// Its ISA target.
        architecture: String,
    },
    /// The prompt produced no tokens and the model has no BOS token.
    #[error("the prompt is empty and the model has no BOS token to start from")]
    EmptyPrompt,
    /// A sampling setting is out of range.
    #[error(transparent)]
    Sampler(#[from] sampler::SamplerError),
    /// The model path is not a regular file.
    #[error("model {}: is {what}; give the path of a .gguf file", path.display())]
    NotAFile {
        /// The path given.
        path: std::path::PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// Reading or loading a model file failed.
    #[error("model {}: {source}{}", path.display(), truncation_hint(source))]
    InFile {
        /// The model file.
        path: std::path::PathBuf,
        /// What failed.
        source: Box<LlmError>,
    },
    /// The prompt does not fit the context.
    #[error(
        "the prompt is {prompt} tokens long but the context holds {capacity} positions, which leaves \
         no room for an answer; shorten the prompt or raise -c/--ctx"
    )]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context positions.
        capacity: usize,
    },
    /// Writing the generated text failed.
    #[error("writing generated text: {0}")]
    Output(#[source] std::io::Error),
}

/// A hint for parse errors that come from a file cut short (an interrupted download).
fn truncation_hint(error: &LlmError) -> &'static str {
    let gguf = match error {
        LlmError::Gguf(e) => e,
        LlmError::Model(model::ModelError::Gguf(e)) => e,
        LlmError::Tokenizer(tokenizer::TokenizerError::Metadata(e)) => e,
        _ => return "",
    };
    match gguf {
        gguf::GgufError::Truncated { .. } | gguf::GgufError::AbsurdCount { .. } => {
            " (the file is shorter than its header says: it is truncated, e.g. an interrupted download)"
        }
        _ => "",
    }
}
