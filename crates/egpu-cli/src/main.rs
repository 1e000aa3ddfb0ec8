//! `egpu`: drive an external GPU from user space.

mod bench;
mod demo;
mod device;
mod error;
mod gpu;
mod info;
mod list;
mod share;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::device::DeviceArgs;
use crate::error::CliError;

#[derive(Parser)]
#[command(
    name = "egpu",
    version,
    about = "Drive an external GPU from user space: USB3 bridge, PCIe, compute"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every device: USB bridges, GPUs behind a kernel driver, and with --emulated the
    /// emulated ones.
    List(ListArgs),
    /// Show a bridge's firmware, link state and the PCIe topology behind it.
    Info(DeviceArgs),
    /// Measure the link (`egpu bench link DEVICE`) or a GPU (`egpu bench nv:0`).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
        #[command(flatten)]
        gpu: gpu::GpuBenchArgs,
    },
    /// Bring up the emulated eGPU, show it and round-trip data through a BAR and the bridge SRAM.
    Demo(DemoArgs),
    /// Serve a local device to other machines (they open it as remote:HOST:PORT).
    Share(share::ShareArgs),
    /// Linux: print (or install) the udev rule that lets your user open the bridge.
    Setup(SetupArgs),
    /// Run a GGUF language model: stream its answer to PROMPT, then prompt and decode tokens/s.
    Run(egpu_llm::RunArgs),
    /// AMD GPU firmware files.
    Firmware {
        #[command(subcommand)]
        what: FirmwareCommand,
    },
}

#[derive(Subcommand)]
enum FirmwareCommand {
    /// Per chip: each firmware file the boot needs, its components, versions, sizes and soundness.
    Check(egpu_amd::firmware::FirmwareCheckArgs),
}

#[derive(Args)]
struct ListArgs {
    /// Also list the emulated devices.
    #[arg(long)]
    emulated: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per operation: USB transfers, bytes on the wire, time and host CPU cost.
    Link(bench::BenchArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Which GPU the emulated eGPU carries: navi31 or ga102.
    #[arg(long, default_value = "navi31")]
    gpu: String,
}

#[derive(Args)]
struct SetupArgs {
    /// Write the rule to /etc/udev/rules.d and reload udev (needs root).
    #[arg(long)]
    install: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List(args) => list::run(args.emulated),
        Command::Info(args) => info::run(&args),
        Command::Bench { what: Some(BenchCommand::Link(args)), .. } => bench::run(&args),
        Command::Bench { what: None, gpu } => gpu::bench(&gpu),
        Command::Demo(args) => demo::run(&args.gpu),
        Command::Share(args) => share::run(&args),
        Command::Setup(args) => setup(args.install),
        Command::Run(args) => egpu_llm::run(&args).map_err(CliError::from),
        Command::Firmware { what: FirmwareCommand::Check(args) } => {
            egpu_amd::firmware::firmware_check(&args).map_err(CliError::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn setup(install: bool) -> Result<(), CliError> {
    if !install {
        print!("{}", egpu::setup::udev_rule());
        eprintln!(
            "\n# Install with `sudo egpu setup --install` (writes {}), then replug the bridge.",
            egpu::setup::UDEV_RULE_PATH
        );
        return Ok(());
    }
    let path = egpu::setup::install_udev_rule()
        .map_err(|e| CliError::Usage(format!("installing the udev rule: {e}")))?;
    println!("installed {}; udev reloaded. Replug the bridge.", path.display());
    Ok(())
}
