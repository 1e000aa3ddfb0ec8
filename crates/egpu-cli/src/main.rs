//! `egpu`: drive an external GPU from user space.

mod args;
mod bench;
mod chat;
mod demo;
mod device;
mod disasm;
mod error;
mod firmware;
mod gpu;
mod info;
mod list;
mod serve;
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
    /// Show a device: a bridge's firmware, link state and PCIe topology, a link's function, or
    /// a GPU's properties.
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
    /// Run a GGUF language model: answer PROMPT, or chat interactively without one.
    Run(args::RunArgs),
    /// Serve a GGUF model over an OpenAI-compatible HTTP API, with a chat page at /.
    Serve(args::ServeArgs),
    /// Disassemble an AMD (gfx11/gfx12) code object in LLVM's syntax.
    Disasm(disasm::DisasmArgs),
    /// AMD GPU firmware files.
    Firmware {
        #[command(subcommand)]
        what: FirmwareCommand,
    },
}

#[derive(Subcommand)]
enum FirmwareCommand {
    /// Per chip: each firmware file the boot needs, its components, versions, sizes and soundness.
    Check(firmware::FirmwareCheckArgs),
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
    #[command(mut_arg("device", |a| a.help(
        "Bridge from `egpu list`: usb:BUS-ADDR, emu, emu:navi31, emu:ga102 or emu:none"
    )))]
    Link(bench::BenchArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Which GPU the emulated eGPU carries.
    #[arg(long, default_value = "navi31", value_parser = ["navi31", "ga102", "none"])]
    gpu: String,
}

#[derive(Args)]
struct SetupArgs {
    /// Write the rule to /etc/udev/rules.d and reload udev (needs root).
    #[arg(long)]
    install: bool,
}

fn main() -> ExitCode {
    // llama.cpp spells GPU offload `-ngl`, which is not a clap short flag.
    let argv = std::env::args_os().map(|a| if a == "-ngl" { "--n-gpu-layers".into() } else { a });
    let cli = Cli::parse_from(argv);
    if !matches!(cli.command, Command::Serve(_)) {
        end_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::List(args) => list::run(args.emulated),
        Command::Info(args) => info::run(&args),
        Command::Bench { what: Some(BenchCommand::Link(args)), .. } => bench::run(&args),
        Command::Bench { what: None, gpu } => gpu::bench(&gpu),
        Command::Demo(args) => demo::run(&args.gpu),
        Command::Share(args) => share::run(&args),
        Command::Setup(args) => setup(args.install),
        Command::Run(args) => chat::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Disasm(args) => disasm::run(&args),
        Command::Firmware { what: FirmwareCommand::Check(args) } => {
            egpu_amd::firmware::firmware_check(&args.into()).map_err(CliError::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error_report(&error));
            ExitCode::FAILURE
        }
    }
}

/// How a card in a PCIe slot is taken from its kernel driver: egpu never does it silently.
const PCI_UNBIND_ADVICE: &str = "\
# Cards in a PCIe slot (pci:DOMAIN:BUS:DEV.FN, Linux): egpu drives a card only when no kernel
# driver owns it, and never unbinds one itself. Stop everything using the GPU (display server,
# compute jobs), then as root, with ADDR from `egpu list` (e.g. 0000:03:00.0) and DRIVER from
# its `kernel driver:` line (amdgpu):
#     echo ADDR > /sys/bus/pci/drivers/DRIVER/unbind
# `echo ADDR > /sys/bus/pci/drivers/DRIVER/bind` (or a reboot) gives the card back. egpu maps
# its BARs through /sys/bus/pci/devices/ADDR/resourceN and needs root for that; GPU-visible
# memory uses locked pages by physical address, which assumes no IOMMU translation.";

fn setup(install: bool) -> Result<(), CliError> {
    if !install {
        print!("{}", egpu::setup::udev_rule());
        eprintln!(
            "\n# Install with `sudo egpu setup --install` (writes {}), then replug the bridge.",
            egpu::setup::UDEV_RULE_PATH
        );
        eprintln!("{}", PCI_UNBIND_ADVICE);
        return Ok(());
    }
    let path = egpu::setup::install_udev_rule()
        .map_err(|e| CliError::Usage(format!("installing the udev rule: {e}")))?;
    println!("installed {}; udev reloaded. Replug the bridge.", path.display());
    Ok(())
}

/// `error: ...` plus each cause whose text the lines above do not already contain (most of
/// our errors embed their cause in their own message).
fn error_report(error: &dyn std::error::Error) -> String {
    let mut report = format!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !report.contains(&text) {
            report.push_str(&format!("\n  caused by: {text}"));
        }
        source = cause.source();
    }
    report
}

/// A closed stdout (`egpu ... | head -1`) ends the program quietly, as it ends `cat`: Rust
/// ignores SIGPIPE, which turns every later print into a panic; the default action exits.
/// Not for `serve`, whose sockets must survive clients that hang up.
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread is
    // started; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening x: {0}")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Plain(#[source] std::io::Error);

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = || std::io::Error::other("No such device");
        assert_eq!(error_report(&Outer(io())), "error: opening x: No such device");
        assert_eq!(error_report(&Plain(io())), "error: outer\n  caused by: No such device");
    }
}
