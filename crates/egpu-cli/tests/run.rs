//! `egpu run` as a user meets it: every flag checked against its range, no panic, clear
//! errors for bad model files, llama.cpp's flags, the statistics line, a closed pipe, and the
//! interactive chat and prompt progress in a pseudo-terminal.

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};

use common::{egpu_bin, python_has, run_script, smollm2};

fn egpu(args: &[&str]) -> Output {
    Command::new(egpu_bin()).args(args).stdin(Stdio::null()).output().expect("egpu runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refused flag: exit status 2 (usage), the allowed range named, no panic.
fn refused(args: &[&str], expect: &str) {
    let out = egpu(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "egpu {args:?}: {err}");
    assert!(err.contains(expect), "egpu {args:?}: expected {expect:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn out_of_range_flags_are_refused_with_the_range() {
    // Checked by the argument parser, before the model is opened.
    let m = "model.gguf";
    refused(&["run", m, "-p", "x", "--min-p", "2"], "allowed 0 to 1");
    refused(&["run", m, "-p", "x", "--temp", "nan"], "allowed 0 to 100");
    refused(&["run", m, "-p", "x", "--temp=-1"], "allowed 0 to 100");
    refused(&["run", m, "-p", "x", "--temp", "-1"], "allowed 0 to 100");
    refused(&["run", m, "-p", "x", "--repeat-penalty", "0"], "allowed above 0 up to 10");
    refused(&["run", m, "-p", "x", "--top-p", "5"], "allowed above 0 up to 1");
    refused(&["run", m, "-p", "x", "--threads", "1000"], "the cores of this machine");
    refused(&["run", m, "-p", "x", "-n", "0"], "-1 for no limit");
    refused(&["run", m, "-p", "x", "--seed", "-2"], "-1 for a seed from the clock");
    refused(&["run", m, "-p", "x", "-c", "5"], "allowed 16 to");
    refused(&["run", m, "-p", "x", "--top-k", "-3"], "");
    refused(&["serve", m, "--port", "70000"], "70000");
    refused(&["serve", m, "--max-tokens-limit", "0"], "allowed 1 to");
    refused(&["bench", "link", "--emulated", "--size-mib", "0"], "1..=65536");
    refused(&["bench", "link", "--emulated", "--size-mib", "100000"], "1..=65536");
    refused(&["bench", "link", "--emulated", "--ops", "0"], "1..=1000000");
    refused(&["demo", "--gpu", "foo"], "[possible values: navi31, ga102, none]");
}

#[test]
fn emulated_bench_size_is_bounded_by_host_memory() {
    let out = egpu(&["bench", "link", "--emulated", "--size-mib", "4096"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("allowed 1 to 1024"), "{err}");
}

#[test]
fn help_texts_name_only_what_the_commands_take() {
    let out = String::from_utf8(egpu(&["bench", "link", "--help"]).stdout).unwrap();
    assert!(!out.contains("nv:"), "bench link refuses nv:N, so its help must not offer it:\n{out}");
    assert!(out.contains("emu:ga102"), "{out}");
    let out = String::from_utf8(egpu(&["run", "--help"]).stdout).unwrap();
    for flag in [
        "-m, --model",
        "-c, --ctx-size",
        "-n, --n-predict",
        "-f, --file",
        "-s, --seed",
        "--temp",
        "--top-k",
        "--top-p",
        "--min-p",
        "--repeat-penalty",
        "-r, --reverse-prompt",
        "--chat-template",
        "--n-gpu-layers",
        "interactive chat",
        "/clear",
        "Ctrl-C",
        "0 to 100",
        "-1: from the clock",
    ] {
        assert!(out.contains(flag), "`egpu run --help` lacks {flag:?}:\n{out}");
    }
    let out = String::from_utf8(egpu(&["serve", "--help"]).stdout).unwrap();
    for flag in
        ["--host", "--port", "--api-key", "EGPU_API_KEY", "/v1/chat/completions", "chat page"]
    {
        assert!(out.contains(flag), "`egpu serve --help` lacks {flag:?}:\n{out}");
    }
}

#[test]
fn bad_model_paths_say_what_is_wrong() {
    let dir = std::env::temp_dir();
    let out = egpu(&["run", dir.to_str().unwrap(), "-p", "x"]);
    let err = stderr(&out);
    assert!(err.contains("is a directory") && !err.contains("os error 19"), "{err}");

    let out = egpu(&["run", "/no/such/model.gguf", "-p", "x"]);
    let err = stderr(&out);
    assert!(err.contains("/no/such/model.gguf"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "a cause printed twice:\n{err}");
}

#[test]
fn truncated_model_names_the_file_and_the_truncation() {
    let Some(model) = smollm2("truncated_model_names_the_file_and_the_truncation") else { return };
    let bytes = std::fs::read(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for len in [100_000, bytes.len() - 1000] {
        let cut = dir.path().join(format!("cut-{len}.gguf"));
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let out = egpu(&["run", cut.to_str().unwrap(), "-p", "x"]);
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains(&format!("cut-{len}.gguf")), "{err}");
        assert!(err.contains("truncated"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line, no repeated cause:\n{err}");
    }
}

#[test]
fn a_run_reports_counts_and_speeds_and_takes_llama_cpp_flags() {
    let Some(model) = smollm2("a_run_reports_counts_and_speeds_and_takes_llama_cpp_flags") else {
        return;
    };
    let m = model.to_str().unwrap();
    // -n 1: one token, which comes from the prompt pass: no decode speed to report (not 0.0).
    let out = egpu(&[
        "run",
        "-m",
        m,
        "-p",
        "The capital of France is",
        "--raw",
        "-n",
        "1",
        "-s",
        "-1",
        "-t",
        "2",
        "-ngl",
        "99",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("-ngl/--n-gpu-layers is ignored"), "{err}");
    assert!(err.contains("llama 135M parameters, Q4_1 | context 4096 of 8192 | seed "), "{err}");
    assert!(err.contains("decode 1 token: n/a"), "{err}");
    assert!(!err.contains("1 tokens") && !err.contains("0.0 tokens/s"), "{err}");
    assert!(
        err.contains("[stopped: -n/--n-predict 1 tokens reached]") || err.contains("reached"),
        "{err}"
    );

    // Greedy chat answer, the prompt from a file; a reverse prompt stops before itself.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "What is the capital of France?").unwrap();
    let f = file.to_str().unwrap();
    let out = egpu(&["run", m, "-f", f, "--temp", "0", "-t", "2", "-n", "16"]);
    let answer = String::from_utf8(out.stdout).unwrap();
    assert!(answer.contains("Paris"), "{answer}");
    let out = egpu(&["run", m, "-f", f, "--temp", "0", "-t", "2", "-n", "16", "-r", "Paris"]);
    let cut = String::from_utf8(out.stdout).unwrap();
    assert_eq!(cut.trim_end(), answer[..answer.find("Paris").unwrap()].trim_end());

    // The prompt from standard input with -p -.
    let mut child = Command::new(egpu_bin())
        .args(["run", m, "-p", "-", "--temp", "0", "-t", "2", "-n", "16"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"What is the capital of France?").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), answer);

    // A small context fills up, and the run says so.
    let out =
        egpu(&["run", m, "-p", "1, 2, 3, 4, 5,", "--raw", "-c", "24", "--temp", "0", "-t", "2"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("the context of 24 positions is full"), "{err}");
    // With -m, the first plain argument is the prompt.
    let out = egpu(&[
        "run",
        "-m",
        m,
        "What is the capital of France?",
        "--temp",
        "0",
        "-t",
        "2",
        "-n",
        "16",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), answer);
    let out = egpu(&["run", "-m", m, m, "-p", "x"]);
    assert!(stderr(&out).contains("given twice"), "{}", stderr(&out));
    // --chat-template replaces the model's template.
    let out = egpu(&[
        "run",
        m,
        "-p",
        "x",
        "--chat-template",
        "{{ raise_exception('custom template used') }}",
    ]);
    assert!(stderr(&out).contains("custom template used"), "{}", stderr(&out));
    let out = egpu(&["run", m, "-p", "x", "-c", "100000"]);
    assert!(stderr(&out).contains("larger than the model's context of 8192"), "{}", stderr(&out));
}

/// Reads the first output of `egpu ARGS`, closes the pipe, and checks that the program ended
/// quietly (no "Broken pipe" panic or error message).
fn closed_pipe_is_quiet(args: &[&str], must_succeed: bool) {
    let mut child = Command::new(egpu_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first bytes, not a line: a model's answer may have no newline for a long time.
    let mut first = [0u8; 8];
    let n = child.stdout.take().unwrap().read(&mut first).unwrap();
    assert!(n > 0, "egpu {args:?} printed nothing");
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "egpu {args:?}: {err}");
    #[cfg(unix)]
    if must_succeed {
        use std::os::unix::process::ExitStatusExt;
        // Either it had finished, or SIGPIPE ended it as it ends `cat`.
        assert!(
            out.status.success() || out.status.signal() == Some(libc_sigpipe()),
            "{:?}",
            out.status
        );
    }
}

#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn a_closed_pipe_ends_quietly() {
    closed_pipe_is_quiet(&["info", "--emulated"], true);
    closed_pipe_is_quiet(&["demo"], true);
    // Fails (exit 1) on a machine without the AMD firmware, but never over the pipe.
    closed_pipe_is_quiet(&["firmware", "check"], false);
    if let Some(model) = smollm2("a_closed_pipe_ends_quietly") {
        closed_pipe_is_quiet(
            &[
                "run",
                model.to_str().unwrap(),
                "-p",
                "1, 2, 3, 4, 5,",
                "--raw",
                "--temp",
                "0",
                "-t",
                "2",
                "-n",
                "200",
            ],
            true,
        );
    }
}

#[test]
fn interactive_chat_in_a_pseudo_terminal() {
    let test = "interactive_chat_in_a_pseudo_terminal";
    let Some(model) = smollm2(test) else { return };
    if !python_has(&["pexpect"], test) {
        return;
    }
    run_script("interactive_chat.py", &[egpu_bin(), model.to_str().unwrap()]);
}

#[test]
fn long_prompt_shows_progress_and_ctrl_c_keeps_the_statistics() {
    let test = "long_prompt_shows_progress_and_ctrl_c_keeps_the_statistics";
    let Some(model) = smollm2(test) else { return };
    if !python_has(&["pexpect"], test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.txt");
    let numbers: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    std::fs::write(&file, numbers.join(", ") + ",").unwrap();
    run_script("one_shot_tty.py", &[egpu_bin(), model.to_str().unwrap(), file.to_str().unwrap()]);
}
