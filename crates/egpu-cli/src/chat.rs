//! `egpu run`: one prompt and its answer, or (no prompt, on a terminal) an interactive chat
//! that keeps the conversation in the KV cache between turns.

use std::io::{IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

use egpu_llm::chat::ChatMessage;
use egpu_llm::engine::{Conversation, Event, FinishReason, GenerateOptions, GenerationStats};
use egpu_llm::run::prompt_tokens;
use egpu_llm::Engine;

use crate::args::{resolve_seed, RunArgs};
use crate::error::CliError;

/// Set by Ctrl-C while an answer is being generated: stops that answer.
static STOP: AtomicBool = AtomicBool::new(false);
/// Whether an answer is being generated (otherwise Ctrl-C ends the program as usual).
static GENERATING: AtomicBool = AtomicBool::new(false);

pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let mut args = args.clone();
    args.normalize().map_err(CliError::Usage)?;
    let args = &args;
    args.model.note_ignored();
    let prompt = read_prompt(args)?;
    let interactive = prompt.is_none();
    install_ctrl_c()?;

    let engine = load(&args.model)?;
    let ctx = args.model.context(engine.info.context_length).map_err(CliError::Usage)?;
    let sampler = args.sampling.config();
    let template = args.model.chat_template.as_deref();
    if interactive && template.is_none() && engine.tokenizer.chat_template.is_none() {
        return Err(CliError::Usage(
            "the model has no chat template, so there is no interactive chat; give a prompt, or --chat-template".into(),
        ));
    }
    let info = &engine.info;
    eprintln!(
        "{}: {} {} parameters, {} | context {ctx} of {} | seed {} | {} threads",
        info.name,
        info.arch,
        info.params_human(),
        info.quant,
        info.context_length,
        sampler.seed,
        threads_used(args.model.threads),
    );
    let mut options = GenerateOptions {
        max_tokens: args.max_tokens(),
        sampler,
        stop: args.reverse_prompt.clone(),
        batch: args.model.batch,
    };
    let mut conv = engine.conversation(ctx)?;
    let mut totals = Totals::default();
    let result = match prompt {
        Some(prompt) => {
            let ids =
                prompt_tokens(&engine, &prompt, args.format(), args.system.as_deref(), template)?;
            answer(&engine, &mut conv, &ids, &options, &mut totals, args.verbose).map(|_| ())
        }
        None => chat_loop(&engine, &mut conv, args, &mut options, &mut totals),
    };
    eprintln!("{}", totals.summary(engine.load_secs));
    result?;
    if totals.interrupted && !interactive {
        // Like other programs stopped by Ctrl-C (after the statistics were printed).
        std::process::exit(130);
    }
    Ok(())
}

fn read_prompt(args: &RunArgs) -> Result<Option<String>, CliError> {
    let from_stdin = || {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("reading the prompt from standard input: {e}")))?;
        Ok::<_, CliError>(text)
    };
    let text = match (&args.prompt_arg, &args.prompt, &args.file) {
        (Some(p), _, _) => p.clone(),
        (_, Some(p), _) if p == "-" => from_stdin()?,
        (_, Some(p), _) => p.clone(),
        (_, _, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("reading the prompt file {}: {e}", path.display()))
        })?,
        (None, None, None) if std::io::stdin().is_terminal() => return Ok(None),
        (None, None, None) => from_stdin()?,
    };
    if text.trim().is_empty() {
        return Err(CliError::Usage("the prompt is empty".into()));
    }
    Ok(Some(text))
}

fn install_ctrl_c() -> Result<(), CliError> {
    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::SeqCst) && !STOP.swap(true, Ordering::SeqCst) {
            return; // the answer stops; the statistics are printed
        }
        std::process::exit(130);
    })
    .map_err(|e| CliError::Usage(format!("installing the Ctrl-C handler: {e}")))
}

/// Loads the model with a progress line on a terminal.
pub fn load(args: &crate::args::ModelArgs) -> Result<Engine, CliError> {
    let path = args.path();
    let show = std::io::stderr().is_terminal();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut last = u64::MAX;
    let engine = Engine::load(&path, &args.load_options(), &mut |done, total| {
        let pct = done * 100 / total.max(1);
        if show && pct != last {
            last = pct;
            eprint!("\rloading {name}: {pct:3}%");
        }
    })?;
    if show {
        eprint!("\r\x1b[2K");
    }
    Ok(engine)
}

#[derive(Default)]
struct Totals {
    prompt_tokens: usize,
    prompt_secs: f64,
    decode_steps: usize,
    decode_secs: f64,
    generated: usize,
    interrupted: bool,
}

impl Totals {
    fn add(&mut self, s: &GenerationStats) {
        self.prompt_tokens += s.prompt_evaluated;
        self.prompt_secs += s.prompt_secs;
        self.decode_steps += s.decode_steps;
        self.decode_secs += s.decode_secs;
        self.generated += s.generated;
    }

    fn summary(&self, load_secs: f64) -> String {
        let rate = |n: usize, secs: f64| {
            if n == 0 || secs <= 0.0 {
                "n/a".to_string()
            } else {
                format!("{:.1} ms/token, {:.1} tokens/s", secs * 1e3 / n as f64, n as f64 / secs)
            }
        };
        let decode = if self.generated > 0 && self.decode_steps == 0 {
            "n/a (one token comes from the prompt pass)".to_string()
        } else {
            rate(self.decode_steps, self.decode_secs)
        };
        format!(
            "load {:.0} ms | prompt {}: {} | decode {}: {}",
            load_secs * 1e3,
            plural(self.prompt_tokens, "token"),
            rate(self.prompt_tokens, self.prompt_secs),
            plural(self.generated, "token"),
            decode,
        )
    }
}

fn threads_used(asked: usize) -> usize {
    match asked {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    }
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Generates one answer to stdout; prompt progress on a terminal's stderr; Ctrl-C stops it.
fn answer(
    engine: &Engine,
    conv: &mut Conversation,
    ids: &[u32],
    options: &GenerateOptions,
    totals: &mut Totals,
    verbose: bool,
) -> Result<String, CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let progress = std::io::stderr().is_terminal();
    let mut shown_progress = false;
    let mut write_error = None;
    STOP.store(false, Ordering::SeqCst);
    GENERATING.store(true, Ordering::SeqCst);
    let result = engine.generate(conv, ids, options, &mut |event| {
        match event {
            Event::Prompt { done, total } if progress && total > options.batch => {
                eprint!("\rprompt: {done}/{total} tokens");
                shown_progress = true;
                if done == total {
                    eprint!("\r\x1b[2K");
                }
            }
            Event::Prompt { .. } => {}
            Event::Text(text) => {
                if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    write_error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        if STOP.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    GENERATING.store(false, Ordering::SeqCst);
    if shown_progress {
        eprint!("\r\x1b[2K");
    }
    let outcome = result?;
    if let Some(e) = write_error {
        return Err(egpu_llm::LlmError::Output(e).into());
    }
    let _ = writeln!(out);
    let _ = out.flush();
    totals.add(&outcome.stats);
    if verbose {
        let s = &outcome.stats;
        let mut one = Totals::default();
        one.add(s);
        eprintln!(
            "[{} cached, {}]",
            plural(s.prompt_tokens - s.prompt_evaluated, "prompt token"),
            one.summary(0.0).trim_start_matches("load 0 ms | ")
        );
    }
    match outcome.finish {
        FinishReason::Cancelled => {
            totals.interrupted = true;
            eprintln!("[interrupted]");
        }
        FinishReason::ContextFull => eprintln!(
            "[stopped: the context of {} positions is full; raise -c/--ctx-size, or /clear in a chat]",
            conv.capacity()
        ),
        FinishReason::Length => {
            let limit = plural(outcome.stats.generated, "token");
            eprintln!("[stopped: the -n/--n-predict limit of {limit} is reached]");
        }
        FinishReason::EndOfText | FinishReason::Stop => {}
    }
    Ok(outcome.text)
}

const HELP: &str = "\
/bye              end the chat (or Ctrl-D)
/clear            forget the conversation
/set temp T       temperature (also top-k, top-p, min-p, repeat-penalty, seed, system)
/?                this help
Ctrl-C stops the current answer.";

fn chat_loop(
    engine: &Engine,
    conv: &mut Conversation,
    args: &RunArgs,
    options: &mut GenerateOptions,
    totals: &mut Totals,
) -> Result<(), CliError> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| CliError::Usage(format!("starting the line editor: {e}")))?;
    let mut system = args.system.clone();
    let mut messages: Vec<ChatMessage> = Vec::new();
    let mut turn = 0u64;
    let base_seed = options.sampler.seed;
    eprintln!("Chat with the model. /? for help, /bye or Ctrl-D to end.");
    loop {
        let line = match editor.readline(">>> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                eprintln!("(Use Ctrl-D or /bye to end the chat.)");
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::Usage(format!("reading the terminal: {e}"))),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        if let Some(command) = line.strip_prefix('/') {
            let mut words = command.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("bye"), ..) => break,
                (Some("clear"), ..) => {
                    messages.clear();
                    conv.clear();
                    eprintln!("Cleared the conversation.");
                }
                (Some("?" | "help"), ..) => eprintln!("{HELP}"),
                (Some("set"), Some("system"), Some(text)) => {
                    system = Some(text.to_owned());
                    eprintln!("System message set.");
                }
                (Some("set"), Some(name), Some(value)) => match set(options, name, value.trim()) {
                    Ok(()) => eprintln!("Set {name} to {value}."),
                    Err(e) => eprintln!("{e}"),
                },
                _ => eprintln!("Unknown command `{line}`.\n{HELP}"),
            }
            continue;
        }
        messages.push(ChatMessage::new("user", line));
        let mut all = Vec::new();
        if let Some(system) = &system {
            all.push(ChatMessage::new("system", system));
        }
        all.extend(messages.iter().cloned());
        let text = engine.chat_prompt(&all, args.model.chat_template.as_deref())?;
        let ids = engine.tokenize(&text, true)?;
        if ids.len() >= conv.capacity() {
            messages.pop();
            eprintln!(
                "The conversation ({}) no longer fits the context of {}; /clear to start over, or raise -c.",
                plural(ids.len(), "token"),
                conv.capacity()
            );
            continue;
        }
        turn += 1;
        options.sampler.seed = base_seed.wrapping_add(turn);
        let reply = answer(engine, conv, &ids, options, totals, args.verbose)?;
        messages.push(ChatMessage::new("assistant", &reply));
    }
    Ok(())
}

/// `/set NAME VALUE`, with the same ranges as the flags.
fn set(options: &mut GenerateOptions, name: &str, value: &str) -> Result<(), String> {
    let mut next = options.sampler.clone();
    let float = || value.parse::<f32>().map_err(|_| format!("`{value}` is not a number"));
    let int = || value.parse::<i128>().map_err(|_| format!("`{value}` is not a whole number"));
    match name {
        "temp" | "temperature" => next.temperature = float()?,
        "top-k" | "top_k" => next.top_k = usize::try_from(int()?).map_err(|_| "top-k is 0 or more".to_string())?,
        "top-p" | "top_p" => next.top_p = float()?,
        "min-p" | "min_p" => next.min_p = float()?,
        "repeat-penalty" | "repeat_penalty" => next.repeat_penalty = float()?,
        "seed" => next.seed = resolve_seed(int()?),
        other => {
            return Err(format!(
                "Unknown setting `{other}`; use temp, top-k, top-p, min-p, repeat-penalty, seed or system."
            ))
        }
    }
    next.validate().map_err(|e| e.to_string())?;
    options.sampler = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_checks_ranges() {
        let mut o = GenerateOptions::default();
        assert!(set(&mut o, "temp", "0.2").is_ok());
        assert_eq!(o.sampler.temperature, 0.2);
        assert!(set(&mut o, "temp", "nan").unwrap_err().contains("allowed"));
        assert!(set(&mut o, "min-p", "2").is_err());
        assert_eq!(o.sampler.min_p, 0.0, "a refused value leaves the setting alone");
        assert!(set(&mut o, "colour", "1").is_err());
        assert_eq!(plural(1, "token"), "1 token");
        assert_eq!(plural(2, "token"), "2 tokens");
    }
}
