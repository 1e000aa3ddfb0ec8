//! One prompt, one answer: what `egpu run MODEL PROMPT` does, as plain options (the CLI parses
//! its flags into [`RunOptions`]).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use crate::chat::ChatMessage;
use crate::engine::{Engine, Event, GenerateOptions, LoadOptions, Outcome};
use crate::LlmError;

/// How the prompt text becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptFormat {
    /// The chat template when the model has one, else plain text.
    #[default]
    Auto,
    /// Always the chat template (an error if there is none).
    Chat,
    /// Plain text completion.
    Raw,
}

/// Everything one run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// GGUF model file.
    pub model: PathBuf,
    /// Prompt text.
    pub prompt: String,
    /// Chat template or plain text.
    pub format: PromptFormat,
    /// System message (chat format only).
    pub system: Option<String>,
    /// A chat template to use instead of the model's.
    pub chat_template: Option<String>,
    /// Context positions (None: 4096, capped at the model's).
    pub ctx: Option<usize>,
    /// Generation settings.
    pub generate: GenerateOptions,
    /// Device and threads.
    pub load: LoadOptions,
}

/// Default context when none is asked for (llama.cpp's default).
pub const DEFAULT_CTX: usize = 4096;

impl RunOptions {
    /// Options with defaults for `model` and `prompt`.
    pub fn new(model: impl Into<PathBuf>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: prompt.into(),
            format: PromptFormat::Auto,
            system: None,
            chat_template: None,
            ctx: None,
            generate: GenerateOptions::default(),
            load: LoadOptions::default(),
        }
    }
}

/// The prompt's tokens by `format` (chat: system message, if any, then the user's).
pub fn prompt_tokens(
    engine: &Engine,
    prompt: &str,
    format: PromptFormat,
    system: Option<&str>,
    chat_template: Option<&str>,
) -> Result<Vec<u32>, LlmError> {
    let has_template = chat_template.is_some() || engine.tokenizer.chat_template.is_some();
    let chat = match format {
        PromptFormat::Auto => has_template,
        PromptFormat::Chat => true,
        PromptFormat::Raw => false,
    };
    if !chat {
        return engine.tokenize(prompt, false);
    }
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", prompt));
    let text = engine.chat_prompt(&messages, chat_template)?;
    engine.tokenize(&text, true)
}

/// Loads the model, runs the prompt and writes the answer to `out`.
pub fn generate(options: &RunOptions, out: &mut dyn Write) -> Result<Outcome, LlmError> {
    options.generate.sampler.validate()?;
    let engine = Engine::load(&options.model, &options.load, &mut |_, _| {})?;
    let ids = prompt_tokens(
        &engine,
        &options.prompt,
        options.format,
        options.system.as_deref(),
        options.chat_template.as_deref(),
    )?;
    let mut conv = engine.conversation(options.ctx.unwrap_or(DEFAULT_CTX))?;
    let mut failure = None;
    let outcome = engine.generate(&mut conv, &ids, &options.generate, &mut |event| {
        if let Event::Text(text) = event {
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    match failure {
        Some(e) => Err(LlmError::Output(e)),
        None => Ok(outcome),
    }
}
