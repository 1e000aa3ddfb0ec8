//! egpu's model runner: a GGUF reader, tokenizers built from the GGUF vocabulary, the llama-family
//! transformer written against an op-level [`backend::Backend`], a multi-threaded CPU reference
//! backend, samplers, and the `egpu run` command ([`run()`], [`RunArgs`]).

pub mod backend;
pub mod chat;
pub mod cpu;
pub mod gguf;
pub mod model;
pub mod qdot;
pub mod quant;
pub mod run;
pub mod sampler;
pub mod tokenizer;

pub use run::{run, RunArgs, RunStats};

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
    /// The requested device has no backend yet.
    #[error("device {0:?} is not available to `egpu run` yet; use --device cpu")]
    UnsupportedDevice(String),
    /// The prompt produced no tokens and the model has no BOS token.
    #[error("the prompt is empty and the model has no BOS token to start from")]
    EmptyPrompt,
    /// The prompt does not fit the context.
    #[error("the prompt has {prompt} tokens but the context holds {capacity}; shorten it or raise --ctx")]
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
