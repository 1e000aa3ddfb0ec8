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

/// `egpu bench nv:N`.
pub fn bench(args: &GpuBenchArgs) -> Result<(), CliError> {
    let name = args.device.as_deref().ok_or_else(|| {
        CliError::Usage("name a GPU (`egpu bench nv:0`) or use `egpu bench link DEVICE`".into())
    })?;
    let index = parse_nv(name).ok_or_else(|| {
        CliError::Usage(format!(
            "`{name}` is not a GPU name; use nv:N, or `egpu bench link {name}` for a bridge"
        ))
    })?;
    let bytes = args.copy_mib << 20;
    if args.cuda_peer {
        let spec = egpu_nv::bench::PeerSpec {
            pci_bus_id: args.pci.clone().ok_or_else(|| {
                CliError::Usage("--cuda-peer needs --pci BUS_ID and --sm N".into())
            })?,
            sm: args.sm.ok_or_else(|| CliError::Usage("--cuda-peer needs --sm N".into()))?,
        };
        print!("{}", egpu_nv::cuda_peer::run(&spec, bytes)?);
        return Ok(());
    }
    let (ours, spec) = egpu_nv::bench::run(index, bytes)?;
    if args.no_peer {
        print!("{ours}");
        return Ok(());
    }
    let mut peer_args = vec![
        "bench".to_string(),
        name.to_string(),
        "--cuda-peer".into(),
        "--copy-mib".into(),
        args.copy_mib.to_string(),
    ];
    peer_args.extend(spec.args());
    match egpu_nv::bench::run_peer_process(&peer_args) {
        Ok(cuda) => print!("{}", egpu_nv::bench::Comparison { ours, cuda }),
        Err(e) => {
            print!("{ours}");
            println!("(no CUDA comparison: {e})");
        }
    }
    Ok(())
}
