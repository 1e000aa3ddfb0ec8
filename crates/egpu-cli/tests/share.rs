//! `egpu share` end to end: the binary serves the emulated eGPU on 127.0.0.1 (port picked by
//! the system, read from its status line), and the same binary reaches it as
//! `remote:127.0.0.1:PORT` with `egpu info` and `egpu bench link`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn egpu() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("egpu"))
}

/// A running `egpu share`, killed when dropped.
struct Share {
    child: Child,
    port: u16,
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn share(args: &[&str], key: Option<&str>) -> Share {
    let mut command = egpu();
    command.arg("share").args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    command.env_remove("EGPU_SHARE_KEY");
    if let Some(key) = key {
        command.env("EGPU_SHARE_KEY", key);
    }
    // Guarded at once, so the server is killed (and reaped) however the test ends.
    let mut share = Share { child: command.spawn().expect("egpu share starts"), port: 0 };
    let stderr = share.child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => panic!("egpu share printed no `listening on` line within 60 s: {seen:?}"),
        };
        if let Some(rest) = line.strip_prefix("egpu share: listening on 127.0.0.1:") {
            share.port = rest.split(';').next().unwrap().parse().unwrap();
            return share;
        }
        seen.push(line);
    }
}

/// Run a client command; while the server still holds the device for the previous client
/// (its process has exited but the server has not yet read the EOF), try again (bounded).
fn client(args: &[&str], key: Option<&str>) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut command = egpu();
        command.args(args).env_remove("EGPU_SHARE_KEY").env_remove("EGPU_SHARE_KEY_FILE");
        if let Some(key) = key {
            command.env("EGPU_SHARE_KEY", key);
        }
        let output = command.output().expect("egpu runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("in use by") || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn info_and_bench_link_work_through_egpu_share() {
    let server = share(&["emu:navi31", "--listen", "127.0.0.1:0"], None);
    let name = format!("remote:127.0.0.1:{}", server.port);

    let info = client(&["info", &name], None);
    let out = text(&info.stdout);
    assert!(info.status.success(), "{}", text(&info.stderr));
    assert!(out.contains("serving     usb-asm2464 (emulated)"), "{out}");
    assert!(out.contains("Noise_NN_25519_ChaChaPoly_BLAKE2s"), "{out}");
    assert!(out.contains("04:00.0 [1002:744c]"), "{out}");
    assert!(out.contains("BAR0 32 GiB 64-bit prefetchable"), "{out}");

    let bench = client(&["bench", "link", &name, "--size-mib", "4", "--ops", "50"], None);
    let out = text(&bench.stdout);
    assert!(bench.status.success(), "{}", text(&bench.stderr));
    assert!(out.contains("round trips"), "{out}");
    // A read waits once; 50 posted writes and their flush wait once in all.
    assert!(out.contains("config read") && out.contains("1.00 round trips/op"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("posted dword write") && l.contains("0.02 round trips/op")),
        "{out}"
    );
    assert!(!out.contains("F0 CfgRd"), "USB transfer names do not apply: {out}");
}

#[test]
fn a_keyed_share_refuses_clients_without_the_key() {
    let key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    let wrong = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f21";
    let server = share(&["emu:navi31", "--listen", "127.0.0.1:0"], Some(key));
    let name = format!("remote:127.0.0.1:{}", server.port);
    let none = client(&["info", &name], None);
    assert!(!none.status.success());
    assert!(text(&none.stderr).contains("requires a key"), "{}", text(&none.stderr));
    let bad = client(&["info", &name], Some(wrong));
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("key does not match"), "{}", text(&bad.stderr));
    let good = client(&["info", &name], Some(key));
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert!(text(&good.stdout).contains("Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s"));
}

#[test]
fn share_refuses_a_public_address_without_a_key_and_bad_flags() {
    for (args, expected) in [
        (
            vec!["share", "emu", "--listen", "0.0.0.0:0"],
            "refusing to listen on 0.0.0.0:0 without a key",
        ),
        (vec!["share", "emu", "--listen", "localhost"], "--listen localhost: expected IP:PORT"),
        (vec!["share", "emu", "--idle-timeout", "0"], "0 is not in 1..=86400"),
        (vec!["share", "emu", "--key-file", "/nonexistent/key"], "reading /nonexistent/key"),
    ] {
        let output = egpu().args(&args).env_remove("EGPU_SHARE_KEY").output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
