//! `egpu run` without the egpu binary: `cargo run --release -p egpu-llm --example run -- MODEL.gguf -p "Hello"`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: egpu_llm::RunArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = egpu_llm::run(&cli.run) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
