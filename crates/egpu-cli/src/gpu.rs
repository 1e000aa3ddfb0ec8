//! GPUs reached through a vendor kernel driver: today NVIDIA's nvidia.ko (`nv:N`).

use clap::Args;

use crate::error::CliError;

#[derive(Args)]
pub struct GpuBenchArgs {
    /// GPU to measure: nv:N from `egpu list`.
    pub device: Option<String>,
    /// MiB moved by each copy-bandwidth measurement.
    #[arg(long, default_value_t = 256)]
    pub copy_mib: u64,
    /// Measure only egpu, not the CUDA driver API beside it.
    #[arg(long)]
    pub no_peer: bool,
    /// Internal: measure the CUDA driver API and print its report (run as a child process).
    #[arg(long, hide = true)]
    pub cuda_peer: bool,
    /// Internal: the peer's GPU, by PCI bus id.
    #[arg(long, hide = true)]
    pub pci: Option<String>,
    /// Internal: the SM the peer compiles for.
    #[arg(long, hide = true)]
    pub sm: Option<u32>,
}

/// `nv:3` → 3, by the runtime's device-name rules.
pub fn parse_nv(name: &str) -> Option<u32> {
    match name.parse::<egpu::DeviceName>() {
        Ok(egpu::DeviceName::Nv(index)) => Some(index),
        _ => None,
    }
}

/// Most MiB one copy measurement may move: three buffers of it are allocated (one pinned).
const MAX_COPY_MIB: u64 = 16 << 10;

/// `egpu bench nv:N`: the runtime (`egpu::Device` on nv:N) measured, and beside it the CUDA
/// driver API in a child process running this command with `--cuda-peer`.
pub fn bench(args: &GpuBenchArgs) -> Result<(), CliError> {
    let name = args.device.as_deref().ok_or_else(|| {
        CliError::Usage("name a GPU (`egpu bench nv:0`) or use `egpu bench link DEVICE`".into())
    })?;
    if parse_nv(name).is_none() {
        return Err(CliError::Usage(format!(
            "`{name}` is not a GPU name; use nv:N, or `egpu bench link {name}` for a bridge"
        )));
    }
    if !(1..=MAX_COPY_MIB).contains(&args.copy_mib) {
        return Err(CliError::Usage(format!(
            "--copy-mib {} is out of range: 1 to {MAX_COPY_MIB}",
            args.copy_mib
        )));
    }
    let bytes = args.copy_mib << 20;
    if args.cuda_peer {
        let spec = egpu::bench::PeerSpec {
            pci_bus_id: args.pci.clone().ok_or_else(|| {
                CliError::Usage("--cuda-peer needs --pci BUS_ID and --sm N".into())
            })?,
            sm: args.sm.ok_or_else(|| CliError::Usage("--cuda-peer needs --sm N".into()))?,
        };
        print!("{}", egpu::bench::run_peer(&spec, bytes)?);
        return Ok(());
    }
    let (ours, spec) = egpu::bench::run(name, bytes)?;
    if args.no_peer {
        print!("{ours}");
        return Ok(());
    }
    let Some(spec) = spec else {
        print!("{ours}");
        println!("(no CUDA comparison: the runtime reports no PCI address for {name})");
        return Ok(());
    };
    let mut peer_args = vec![
        "bench".to_string(),
        name.to_string(),
        "--cuda-peer".into(),
        "--copy-mib".into(),
        args.copy_mib.to_string(),
    ];
    peer_args.extend(spec.args());
    match egpu::bench::run_peer_process(&peer_args) {
        Ok(cuda) => print!("{}", egpu::bench::Comparison { ours, cuda }),
        Err(e) => {
            print!("{ours}");
            println!("(no CUDA comparison: {e})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(device: &str, copy_mib: u64) -> GpuBenchArgs {
        GpuBenchArgs {
            device: Some(device.into()),
            copy_mib,
            no_peer: true,
            cuda_peer: false,
            pci: None,
            sm: None,
        }
    }

    fn usage(result: Result<(), CliError>) -> String {
        match result {
            Err(CliError::Usage(text)) => text,
            Err(other) => panic!("expected a usage error, got {other}"),
            Ok(()) => panic!("expected a usage error"),
        }
    }

    #[test]
    fn copy_size_is_checked_before_any_device_is_opened() {
        for mib in [0, MAX_COPY_MIB + 1, u64::MAX] {
            let text = usage(bench(&args("nv:0", mib)));
            assert!(text.contains("--copy-mib") && text.contains("1 to 16384"), "{text}");
        }
    }

    #[test]
    fn only_gpu_names_are_benchmarked() {
        let text = usage(bench(&args("usb:3-2", 256)));
        assert!(text.contains("nv:N") && text.contains("egpu bench link usb:3-2"), "{text}");
        assert_eq!(parse_nv("nv:3"), Some(3));
        assert_eq!(parse_nv("amd:0"), None);
    }
}
