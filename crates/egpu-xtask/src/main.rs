//! `cargo xtask` — project generators.
//!
//! `cargo xtask regen [--check] [--src DIR]` reads the amdgpu headers of Debian's
//! `linux-source-6.12` (extracted by `crates/egpu-xtask/setup-sources.sh`) and writes the
//! generated tables of `crates/egpu-amd/src/regs/`. With `--check` it regenerates in memory and
//! fails on any difference with the committed files.

mod cheader;
mod gen;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask regen [--check] [--src DIR]
  --src DIR   the extracted linux-source-6.12 tree (default: target/amd-src/linux-source-6.12,
              or $EGPU_AMD_SRC); populate it with `sudo sh crates/egpu-xtask/setup-sources.sh`
  --check     regenerate in memory and fail if the committed files differ";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // crates/egpu-xtask -> workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

fn run(args: &[String]) -> Result<(), String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.to_string());
    };
    if cmd != "regen" {
        return Err(format!("unknown command `{cmd}`\n{USAGE}"));
    }
    let root = workspace_root();
    let mut check = false;
    let mut src = std::env::var_os("EGPU_AMD_SRC").map(PathBuf::from);
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => check = true,
            "--src" => match it.next() {
                Some(dir) => src = Some(PathBuf::from(dir)),
                None => return Err(format!("--src needs a directory\n{USAGE}")),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    let src = src.unwrap_or_else(|| root.join("target/amd-src/linux-source-6.12"));
    let version = gen::verify_source(&src)?;
    eprintln!("xtask: reading amdgpu headers of Linux {version} from {}", src.display());
    let files = gen::generate(&src).map_err(|e| e.to_string())?;
    let out_dir = root.join("crates/egpu-amd/src/regs");
    if check {
        let mut stale = Vec::new();
        for (name, text) in &files {
            let path = out_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(old) if old == *text => {}
                Ok(_) => stale.push(format!("{} differs", path.display())),
                Err(e) => stale.push(format!("{}: {e}", path.display())),
            }
        }
        if !stale.is_empty() {
            return Err(format!(
                "generated tables are stale (run `cargo xtask regen` and commit):\n  {}",
                stale.join("\n  ")
            ));
        }
        eprintln!("xtask: {} generated files match the headers", files.len());
    } else {
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
        let mut total = 0;
        for (name, text) in &files {
            let path = out_dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            total += text.len();
        }
        eprintln!(
            "xtask: wrote {} files ({} KiB) to {}",
            files.len(),
            total / 1024,
            out_dir.display()
        );
    }
    Ok(())
}
