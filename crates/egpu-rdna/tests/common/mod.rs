//! Shared by the tests: builds kernels/amd/*.hip with clang-19 into target/amd-corpus.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const ARCHS: [&str; 2] = ["gfx1100", "gfx1201"];
pub const KERNELS: [&str; 6] = ["elementwise", "reduce", "dot_i8", "matmul", "softmax", "alu"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether a tool runs; when it does not, the test says so and skips, unless
/// EGPU_REQUIRE_ORACLES=1 (CI), where a missing oracle fails the run.
pub fn have_tool(tool: &str) -> bool {
    let ok =
        Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        if std::env::var("EGPU_REQUIRE_ORACLES").as_deref() == Ok("1") {
            panic!("{tool} is required (EGPU_REQUIRE_ORACLES=1): apt-get install clang-19 lld-19 llvm-19");
        }
        // Past the test harness's output capture, so that the skip shows in the run.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("skipping: {tool} not installed (apt-get install clang-19 lld-19 llvm-19)\n")
                .as_bytes(),
        );
    }
    ok
}

/// Compiles one corpus kernel for one GPU; returns the code object's path (cached by mtime).
pub fn build(kernel: &str, arch: &str) -> PathBuf {
    let root = repo_root();
    let src = root.join("kernels/amd").join(format!("{kernel}.hip"));
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("amd-corpus");
    std::fs::create_dir_all(&out_dir).expect("create target/amd-corpus");
    let out = out_dir.join(format!("{kernel}-{arch}.hsaco"));
    let newer = |a: &Path, b: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(a), m(b)), (Some(x), Some(y)) if x >= y)
    };
    let header = root.join("kernels/amd/common.h");
    if newer(&out, &src) && newer(&out, &header) {
        return out;
    }
    // Tests of one binary run on several threads and may build the same kernel at once: each
    // build writes its own file and renames it into place (the last one wins, all are equal).
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let build = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = out.with_extension(format!("tmp{}-{build}", std::process::id()));
    let st = Command::new("clang-19")
        .args(["-x", "hip", "--cuda-device-only", "-nogpulib", "-nogpuinc"])
        .arg(format!("--offload-arch={arch}"))
        .args(["-O3", "-std=c++17", "--no-gpu-bundle-output", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .status()
        .expect("run clang-19");
    assert!(st.success(), "clang-19 failed on {}", src.display());
    std::fs::rename(&tmp, &out).expect("move code object into place");
    out
}
