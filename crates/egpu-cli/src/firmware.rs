//! `egpu firmware check`: the flags; the check itself is egpu-amd's.

use std::path::PathBuf;

use egpu_amd::firmware::CheckOptions;

/// `egpu firmware check` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct FirmwareCheckArgs {
    /// Chip (Navi31, gfx1100, ...) or "all".
    #[arg(long, default_value = "all")]
    pub chip: String,
    /// Firmware directory (default: /lib/firmware/amdgpu).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl From<FirmwareCheckArgs> for CheckOptions {
    fn from(args: FirmwareCheckArgs) -> Self {
        CheckOptions { chip: args.chip, dir: args.dir }
    }
}
