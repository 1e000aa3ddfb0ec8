//! Parses the real firmware of Debian's firmware-amd-graphics 20250410 and checks the component
//! lists against reference §3.1/§3.2. Skips (with a message) when the package is not installed.

use std::path::Path;

use egpu_amd::chips::{by_name, CHIPS};
use egpu_amd::firmware::*;
use egpu_amd::regs::psp::psp_gfx_fw_type as Fw;

const DIR: &str = "/lib/firmware/amdgpu";

fn have_firmware() -> bool {
    let needed = ["gc_11_0_0_mec.bin", "gc_12_0_1_mec.bin"];
    if needed.iter().all(|file| Path::new(DIR).join(file).exists()) {
        return true;
    }
    let message = format!("{DIR} lacks the RDNA3/RDNA4 files; install firmware-amd-graphics 20250410 (bookworm-backports, non-free-firmware)");
    // CI installs the firmware and sets EGPU_REQUIRE_ORACLES so that nothing skips there.
    if std::env::var_os("EGPU_REQUIRE_ORACLES").is_some() {
        panic!("{message} (EGPU_REQUIRE_ORACLES is set)");
    }
    // Past the test harness's output capture, so that the skip shows in the run.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: {message}\n").as_bytes(),
    );
    false
}

fn names(f: &FirmwareFile) -> Vec<&'static str> {
    f.components.iter().map(|c| c.name).collect()
}

#[test]
fn every_required_file_parses_for_all_five_chips() {
    if !have_firmware() {
        return;
    }
    let report = firmware_report(&CheckOptions { chip: "all".into(), dir: None }).expect("report");
    println!("{report}");
    assert_eq!(report.chips.len(), 5);
    for c in &report.chips {
        for f in &c.files {
            if f.needed.required {
                assert!(f.result.is_ok(), "{}: {:?}", f.needed.file, f.result);
            }
        }
    }
    assert!(report.ok());
}

/// Reference §3.1 sizes and §3.2 component lists.
#[test]
fn component_lists_match_reference() {
    if !have_firmware() {
        return;
    }
    let dir = Path::new(DIR);
    let get = |chip: &str, file: &str| {
        let chip = by_name(chip).expect("chip");
        let needed = firmware_set(chip).into_iter().find(|n| n.file == file).expect("in set");
        check_file(dir, chip, &needed).expect("parses")
    };
    // sOS bootloader lists (§3.2), in our load order (§2.7), TOC and RL after.
    assert_eq!(
        names(&get("Navi31", "psp_13_0_0_sos.bin")),
        ["KDB", "SPL", "SYS_DRV", "SOS", "TOC", "RL"]
    );
    assert_eq!(
        names(&get("Navi33", "psp_13_0_7_sos.bin")),
        ["KDB", "SPL", "SYS_DRV", "SOS", "TOC"]
    );
    assert_eq!(
        names(&get("Navi32", "psp_13_0_10_sos.bin")),
        ["KDB", "SYS_DRV", "SOC_DRV", "INTF_DRV", "DBG_DRV", "RAS_DRV", "SOS", "TOC", "RL"]
    );
    assert_eq!(
        names(&get("Navi44", "psp_14_0_2_sos.bin")),
        ["KDB", "SPL", "SYS_DRV", "SOC_DRV", "INTF_DRV", "DBG_DRV", "IPKEYMGR_DRV", "SOS", "TOC"]
    );
    assert_eq!(
        names(&get("Navi48", "psp_14_0_3_sos.bin")),
        [
            "KDB",
            "SPL",
            "SYS_DRV",
            "SOC_DRV",
            "INTF_DRV",
            "DBG_DRV",
            "RAS_DRV",
            "IPKEYMGR_DRV",
            "SOS",
            "TOC",
            "RL"
        ]
    );
    // §3.2 example cut of gc_11_0_0_mec.bin: code 0x100..0x41400, stack 0x41400..0x63400.
    let mec = get("Navi31", "gc_11_0_0_mec.bin");
    assert_eq!(mec.len, 406528);
    assert_eq!(
        (mec.components[0].offset, mec.components[0].offset + mec.components[0].size),
        (0x100, 0x41400)
    );
    assert_eq!(
        (mec.components[1].offset, mec.components[1].offset + mec.components[1].size),
        (0x41400, 0x63400)
    );
    assert_eq!(mec.components[0].load, Load::IpFw(Fw::GFX_FW_TYPE_RS64_MEC));
    // §2.9: start 0x0007_0000_0000_3000.
    assert_eq!(mec.start_addr, Some(0x0007_0000_0000_3000));
    // RLC: gfx11 v2.3 (IRAM, DRAM, P, V, G), gfx12 v2.2 (IRAM, DRAM, G).
    let rlc11 = get("Navi31", "gc_11_0_0_rlc.bin");
    assert_eq!(rlc11.header_version, (2, 3));
    assert_eq!(names(&rlc11), ["RLC IRAM", "RLC DRAM", "RLC P", "RLC V", "RLC G"]);
    let rlc12 = get("Navi48", "gc_12_0_1_rlc.bin");
    assert_eq!(rlc12.header_version, (2, 2));
    assert_eq!(names(&rlc12), ["RLC IRAM", "RLC DRAM", "RLC G"]);
    // SDMA: 6.x v2.0 TH1 then TH0; 7.x v3.0 TH0 only.
    let s6 = get("Navi31", "sdma_6_0_0.bin");
    assert_eq!(s6.header_version, (2, 0));
    let loads: Vec<Load> = s6.components.iter().map(|c| c.load).collect();
    assert_eq!(
        loads,
        [Load::IpFw(Fw::GFX_FW_TYPE_SDMA_UCODE_TH1), Load::IpFw(Fw::GFX_FW_TYPE_SDMA_UCODE_TH0)]
    );
    let s7 = get("Navi44", "sdma_7_0_0.bin");
    assert_eq!(s7.header_version, (3, 0));
    assert_eq!(s7.components.len(), 1);
    // SMU: 13.x v2.1, 14.x v2.0; one payload to GFX_FW_TYPE_SMU.
    assert_eq!(get("Navi31", "smu_13_0_0.bin").header_version, (2, 1));
    let smu14 = get("Navi44", "smu_14_0_2.bin");
    assert_eq!(smu14.header_version, (2, 0));
    assert_eq!(smu14.len, 333236);
    assert_eq!(smu14.components[0].load, Load::IpFw(Fw::GFX_FW_TYPE_SMU));
    // IMU: IRAM then DRAM, 0x10200 each.
    let imu = get("Navi33", "gc_11_0_2_imu.bin");
    assert_eq!(imu.components.iter().map(|c| c.size).collect::<Vec<_>>(), [0x10200, 0x10200]);
    assert_eq!(imu.components[1].offset, 0x100 + 0x10200);
    // §3.1 file sizes.
    for (chip, file, size) in [
        ("Navi31", "psp_13_0_0_sos.bin", 268304),
        ("Navi32", "psp_13_0_10_sos.bin", 360352),
        ("Navi32", "gc_11_0_3_rlc.bin", 179104),
        ("Navi33", "smu_13_0_7.bin", 287080),
        ("Navi44", "gc_12_0_0_pfp.bin", 351696),
        ("Navi48", "psp_14_0_3_sos.bin", 435632),
        ("Navi48", "sdma_7_0_1.bin", 46336),
    ] {
        assert_eq!(get(chip, file).len, size, "{file}");
    }
}

fn mec() -> Option<Vec<u8>> {
    if !have_firmware() {
        return None;
    }
    Some(std::fs::read(Path::new(DIR).join("gc_11_0_0_mec.bin")).expect("read"))
}

#[test]
fn truncated_file_names_file_field_and_expectation() {
    let Some(bytes) = mec() else { return };
    let err = parse("gc_11_0_0_mec.bin", Kind::Mec, &bytes[..bytes.len() - 100]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("gc_11_0_0_mec.bin")
            && msg.contains("size_bytes")
            && msg.contains("file length"),
        "{msg}"
    );
    let err = parse("gc_11_0_0_mec.bin", Kind::Mec, &bytes[..20]).unwrap_err();
    assert!(
        matches!(err, FirmwareError::Truncated { field: "common_firmware_header", .. }),
        "{err}"
    );
}

#[test]
fn corrupted_offset_is_out_of_bounds() {
    let Some(mut bytes) = mec() else { return };
    // gfx_firmware_header_v2_0.data_offset_bytes at byte 48: point it past the end.
    let off = egpu_amd::regs::ucode::gfx_firmware_header_v2_0::data_offset_bytes.offset;
    bytes[off..off + 4].copy_from_slice(&0x0010_0000u32.to_le_bytes());
    let err = parse("gc_11_0_0_mec.bin", Kind::Mec, &bytes).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            FirmwareError::OutOfBounds { field: "data_offset_bytes + data_size_bytes", .. }
        ),
        "{msg}"
    );
    assert!(msg.contains("gc_11_0_0_mec.bin"), "{msg}");
}

#[test]
fn wrong_type_file_is_rejected() {
    let Some(bytes) = mec() else { return };
    // An RS64 (v2.0) file handed to the IMU parser.
    let err = parse("gc_11_0_0_mec.bin", Kind::Imu, &bytes).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("header_version") && msg.contains("v1.0 for a IMU file"), "{msg}");
    // The right header, the wrong chip: gfx11 MEC checked as Navi44's.
    let dir = std::env::temp_dir().join(format!("egpu-amd-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    std::fs::write(dir.join("gc_12_0_0_mec.bin"), &bytes).expect("write");
    let chip = by_name("Navi44").expect("chip");
    let needed = firmware_set(chip).into_iter().find(|n| n.kind == Kind::Mec).expect("mec");
    let err = check_file(&dir, chip, &needed).unwrap_err();
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.to_string().contains("ip_version_major is 11, expected 12"), "{err}");
}

#[test]
fn missing_directory_reports_install_hint() {
    let dir = std::env::temp_dir().join("egpu-amd-no-such-dir");
    let report =
        firmware_report(&CheckOptions { chip: "gfx1101".into(), dir: Some(dir) }).expect("report");
    assert!(!report.ok());
    let text = report.to_string();
    assert!(
        text.contains("psp_13_0_10_sos.bin") && text.contains("firmware-amd-graphics"),
        "{text}"
    );
    assert!(matches!(
        firmware_report(&CheckOptions { chip: "Navi99".into(), dir: None }),
        Err(CheckError::UnknownChip(_))
    ));
    assert_eq!(CHIPS.len(), 5);
}
