//! `egpu disasm CODE_OBJECT [--kernel NAME]`: prints a code object's instructions in LLVM's
//! syntax (the work is egpu-rdna's).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;

#[derive(Args)]
pub struct DisasmArgs {
    /// An AMDGPU code object (HSACO ELF) for gfx11 (RDNA3) or gfx12 (RDNA4).
    code_object: PathBuf,
    /// Only this kernel (the symbol name, without `.kd`).
    #[arg(long)]
    kernel: Option<String>,
}

pub fn run(args: &DisasmArgs) -> Result<(), CliError> {
    let path = &args.code_object;
    let data = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = egpu_rdna::objdump::write_listing(&data, args.kernel.as_deref(), &mut out)
        .and_then(|()| Ok(out.flush()?));
    match result {
        Ok(()) => Ok(()),
        // `egpu disasm x | head` closes the pipe: end quietly.
        Err(egpu_rdna::objdump::ListingError::Io(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        Err(e) => Err(CliError::Usage(format!("{}: {e}", path.display()))),
    }
}
