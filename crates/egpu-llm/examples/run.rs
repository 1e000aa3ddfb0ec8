//! A prompt through the model runner without the egpu binary:
//! `cargo run --release -p egpu-llm --example run -- MODEL.gguf "Hello"` (greedy, 64 tokens).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, prompt] = args.as_slice() else {
        eprintln!("usage: run MODEL.gguf PROMPT");
        std::process::exit(2);
    };
    let mut options = egpu_llm::RunOptions::new(model, prompt.as_str());
    options.generate.max_tokens = Some(64);
    match egpu_llm::run::generate(&options, &mut std::io::stdout()) {
        Ok(_) => println!(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
