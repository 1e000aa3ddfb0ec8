//! The generation loop on the real SmolLM2-135M: a conversation's next turn reuses the KV cache
//! and answers exactly as a fresh cache does; cancellation, stop strings and a full context end
//! an answer with the right reason.

mod common;

use std::ops::ControlFlow;

use common::smollm2_gguf;
use egpu_llm::chat::ChatMessage;
use egpu_llm::engine::{Event, FinishReason, GenerateOptions};
use egpu_llm::{Engine, LoadOptions};

fn greedy(max: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(max), ..Default::default() }
}

#[test]
fn next_turn_reuses_the_cache_and_matches_a_fresh_run() {
    let Some(path) = smollm2_gguf("next_turn_reuses_the_cache_and_matches_a_fresh_run") else {
        return;
    };
    let engine =
        Engine::load(&path, &LoadOptions { threads: 2, ..Default::default() }, &mut |_, _| {})
            .unwrap();
    assert_eq!((engine.info.arch.as_str(), engine.info.quant.as_str()), ("llama", "Q4_1"));
    assert!((130_000_000..140_000_000).contains(&engine.info.params), "{}", engine.info.params);
    let mut messages = vec![ChatMessage::new("user", "What is the capital of France?")];
    let ids =
        |m: &[ChatMessage]| engine.tokenize(&engine.chat_prompt(m, None).unwrap(), true).unwrap();
    let mut conv = engine.conversation(512).unwrap();
    let first = engine
        .generate(&mut conv, &ids(&messages), &greedy(16), &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert!(first.text.contains("Paris"), "{first:?}");
    assert_eq!(first.stats.prompt_evaluated, first.stats.prompt_tokens);

    messages.push(ChatMessage::new("assistant", &first.text));
    messages.push(ChatMessage::new("user", "And of Italy?"));
    let second_ids = ids(&messages);
    let mut streamed = String::new();
    let second = engine
        .generate(&mut conv, &second_ids, &greedy(12), &mut |e| {
            if let Event::Text(t) = e {
                streamed.push_str(t);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(streamed, second.text);
    let cached = second.stats.prompt_tokens - second.stats.prompt_evaluated;
    assert!(cached >= first.stats.prompt_tokens, "cached {cached} of {:?}", second.stats);

    let mut fresh = engine.conversation(512).unwrap();
    let again = engine
        .generate(&mut fresh, &second_ids, &greedy(12), &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(again.text, second.text, "a reused cache answers as a fresh one");
    assert_eq!(again.stats.prompt_evaluated, second_ids.len());

    // Cancelling after the first piece of text.
    let mut pieces = 0;
    let cancelled = engine
        .generate(&mut fresh, &second_ids, &greedy(12), &mut |e| {
            if matches!(e, Event::Text(_)) {
                pieces += 1;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        (cancelled.finish, pieces, cancelled.stats.generated),
        (FinishReason::Cancelled, 1, 1)
    );

    // A stop string: the text ends before it.
    let mut opts = greedy(16);
    opts.stop = vec!["Paris".into()];
    let first_ids = ids(&messages[..1]);
    let stopped =
        engine.generate(&mut fresh, &first_ids, &opts, &mut |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(stopped.finish, FinishReason::Stop);
    assert_eq!(stopped.text, first.text[..first.text.find("Paris").unwrap()]);

    // A context just larger than the prompt fills up.
    let mut small = engine.conversation(first_ids.len() + 3).unwrap();
    let full = engine
        .generate(&mut small, &first_ids, &GenerateOptions::default(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(full.finish, FinishReason::ContextFull);
    assert!(full.stats.generated >= 3, "{:?}", full.stats);
    let err = engine
        .generate(&mut small, &second_ids, &greedy(1), &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(err.to_string().contains("no room for an answer"), "{err}");
}
