//! The `egpu` binary end to end on the emulated eGPU, and its behaviour on a machine with no
//! bridge attached.

use assert_cmd::Command;

fn egpu() -> Command {
    Command::cargo_bin("egpu").expect("the egpu binary is built")
}

/// A skip line written past the test harness's capture, so that it shows beside "ok".
fn skip_line(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn stdout_of(args: &[&str]) -> String {
    let output = egpu().args(args).output().expect("egpu runs");
    assert!(
        output.status.success(),
        "egpu {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn demo_verifies_both_round_trips() {
    let out = stdout_of(&["demo"]);
    assert!(out.contains("04:00.0 [1002:744c]"), "{out}");
    assert_eq!(out.matches("\nok  ").count(), 4, "{out}");
    assert!(out.contains("all data verified"), "{out}");
}

#[test]
fn demo_runs_with_the_nvidia_like_card() {
    let out = stdout_of(&["demo", "--gpu", "ga102"]);
    assert!(out.contains("02:00.0 [10de:2204]"), "{out}");
    assert!(out.contains("all data verified"), "{out}");
}

#[test]
fn info_shows_firmware_link_and_topology() {
    let out = stdout_of(&["info", "--emulated"]);
    assert!(out.contains("custom v0.1"), "{out}");
    assert!(out.contains("LTSSM 0x78 (L0: up)"), "{out}");
    assert!(out.contains("BAR0 32 GiB 64-bit prefetchable"), "{out}");
    assert!(out.contains("GPU at 04:00.0"), "{out}");
    let out = stdout_of(&["info", "emu:ga102"]);
    assert!(out.contains("GPU at 02:00.0"), "{out}");
}

#[test]
fn bench_link_reports_transfers_per_operation() {
    let out = stdout_of(&["bench", "link", "--emulated", "--size-mib", "8", "--ops", "50"]);
    assert!(
        out.contains(
            "SRAM DMA write (F2 + bulk OUT), 256 KiB windows      2.00 USB transfers per 256 KiB"
        ),
        "{out}"
    );
    assert!(
        out.contains("config read (F0 CfgRd + F0 IN)                       2.00 USB transfers/op"),
        "{out}"
    );
    assert!(out.contains("% of the 10 Gb/s wire time"), "{out}");
}

/// `tinygpu:0` against the emulated TinyGPU server (one DMA segment per buffer, which the
/// client needs), found through `$APL_REMOTE_SOCK` as tinygrad finds the app's: round trips
/// per operation from the link's own counters, and no USB columns.
#[cfg(target_os = "linux")]
#[test]
fn bench_link_reports_round_trips_on_the_tinygpu_link() {
    use egpu_emu::{EmulatedTinyGpuServer, GpuKind, TinyGpuServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tinygpu.sock");
    let config = TinyGpuServerConfig::new(GpuKind::Navi31).with_max_segments(1);
    let server = EmulatedTinyGpuServer::start_with(&socket, config).unwrap();
    let output = egpu()
        .args(["bench", "link", "tinygpu:0", "--size-mib", "8", "--ops", "50"])
        .env("APL_REMOTE_SOCK", &socket)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}\n{}", String::from_utf8_lossy(&output.stderr));
    // One CFG_READ / MMIO_READ each; MMIO_WRITE is posted, and the flush after 50 of them is
    // one CFG_READ.
    assert!(out.contains(&format!("{:<52} 1.00 round trips/op", "config read")), "{out}");
    assert!(out.contains(&format!("{:<52} 1.00 round trips/op", "checked dword read")), "{out}");
    assert!(out.contains(&format!("{:<52} 0.02 round trips/op", "posted dword write")), "{out}");
    assert!(out.contains("DMA read, 256 KiB"), "the host reads its mapping directly: {out}");
    assert!(!out.contains("USB"), "{out}");
    // The server saw as many requests as the link counted, and more than the ops above.
    assert!(server.stats().requests > 150, "{:?}", server.stats());
}

#[test]
fn list_without_a_usb_bridge_points_at_the_emulator() {
    // On CI and build machines there is no USB bus; a machine with a bridge lists it instead.
    let out = stdout_of(&["list"]);
    if !out.contains("usb:") {
        assert!(out.contains("No USB bridges found"), "{out}");
        assert!(out.contains("--emulated"), "{out}");
    } else {
        skip_line("SKIP: a USB bridge is attached, so the no-bridge message is not shown");
    }
    let out = stdout_of(&["list", "--emulated"]);
    assert!(out.contains("emu:navi31 "), "{out}");
}

#[test]
fn bad_device_names_are_clear_errors() {
    let output = egpu().args(["info", "emu:rtx9090"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown emulated GPU"), "{stderr}");
}

#[test]
fn setup_prints_the_udev_rule() {
    let out = stdout_of(&["setup"]);
    assert!(out.contains("add1") && out.contains("0001"), "{out}");
    assert!(out.contains("power/control"), "{out}");
}

#[test]
fn list_says_cleanly_when_there_is_no_nvidia_kernel_driver() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        skip_line("SKIP: this machine has nvidia.ko loaded; the GPU suite covers it");
        return;
    }
    let out = stdout_of(&["list"]);
    assert!(out.contains("no NVIDIA kernel driver"), "{out}");
    let output = egpu().args(["info", "nv:0"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no NVIDIA kernel driver"));
}
