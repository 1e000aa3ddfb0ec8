//! Host setup for USB access: on Linux a udev rule that lets the logged-in user (and group
//! `plugdev`) open the bridge without root and keeps USB autosuspend off for it
//! (docs/reference/usb-bridge.md §9.3 user checklist, §11).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::discover::{BOOTLOADER_ID, CUSTOM_FIRMWARE_IDS, STOCK_FIRMWARE_IDS};

/// Where [`install_udev_rule`] puts the rule. It sorts before systemd's 73-seat-late.rules,
/// which turns the `uaccess` tag into an ACL for the active session.
pub const UDEV_RULE_PATH: &str = "/etc/udev/rules.d/70-egpu.rules";

/// How long one `udevadm` call may take; both calls return as soon as udev has queued the work.
const UDEVADM_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of host setup. Each says what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SetupError {
    /// Installing the rule needs root and this process is not.
    #[error("writing {} needs root: run `sudo egpu setup --install`", path.display())]
    NotRoot {
        /// The rules file that would have been written.
        path: PathBuf,
    },

    /// Writing the rules file failed.
    #[error("cannot write {}: {source}; is udev installed (/etc/udev/rules.d must exist)?", path.display())]
    Write {
        /// The rules file being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// `udevadm` (reload or trigger) failed after the rule was written.
    #[error("`{command}` failed: {reason}; the rule is in place at {}, so replugging the bridge (or rebooting) applies it", path.display())]
    Udevadm {
        /// The command line that was run.
        command: String,
        /// Its exit status and stderr, or why it could not run or finish.
        reason: String,
        /// The rules file that was installed.
        path: PathBuf,
    },

    /// Not Linux: there is no udev to configure.
    #[error("udev rules exist only on Linux; {advice}")]
    Unsupported {
        /// What to do instead on this platform.
        advice: &'static str,
    },
}

/// The udev rules file granting access to the bridge IDs egpu uses: the custom firmware, the
/// stock firmware (so it can be flashed) and the custom firmware's DFU bootstub.
pub fn udev_rule() -> String {
    let mut text = String::from(
        "# egpu: user-space access to ASMedia ASM2464PD USB3-to-PCIe bridges.\n\
         # Written by `egpu setup --install`; reinstalling overwrites edits.\n\
         #\n\
         # MODE/GROUP       members of group plugdev may open the bridge's usbfs node.\n\
         # TAG+=\"uaccess\"   so may the user of the active local session (systemd-logind);\n\
         #                  this file must sort before 73-seat-late.rules for that.\n\
         # power/control    \"on\" disables USB autosuspend for the bridge: after a suspend the\n\
         #                  link can come back degraded and bulk DMA to the bridge fails.\n\
         #\n\
         # Apply without replugging: udevadm control --reload-rules && udevadm trigger\n",
    );
    let groups: [(&str, &[(u16, u16)]); 3] = [
        (
            "custom firmware (github.com/tinygrad/asm2464pd-firmware, handmade/)",
            &CUSTOM_FIRMWARE_IDS,
        ),
        (
            "stock ASMedia firmware, listed so the custom firmware can be flashed",
            &STOCK_FIRMWARE_IDS,
        ),
        ("DFU bootstub of the custom firmware", &[BOOTLOADER_ID]),
    ];
    for (title, ids) in groups {
        let _ = writeln!(text, "\n# {title}");
        for (vendor, product) in ids {
            let _ = writeln!(
                text,
                "ACTION!=\"remove\", SUBSYSTEM==\"usb\", ENV{{DEVTYPE}}==\"usb_device\", \
                 ATTR{{idVendor}}==\"{vendor:04x}\", ATTR{{idProduct}}==\"{product:04x}\", \
                 MODE=\"0660\", GROUP=\"plugdev\", TAG+=\"uaccess\", ATTR{{power/control}}=\"on\""
            );
        }
    }
    text
}

/// Install [`udev_rule`] at [`UDEV_RULE_PATH`] and make udev apply it to attached devices.
/// Needs root. Returns the path written.
pub fn install_udev_rule() -> Result<PathBuf, SetupError> {
    if !cfg!(target_os = "linux") {
        return Err(SetupError::Unsupported {
            advice: if cfg!(target_os = "macos") {
                "on macOS no setup is needed for the custom firmware; run egpu with sudo if \
                 opening the bridge is denied"
            } else {
                "on Windows bind the WinUSB driver to the bridge with Zadig (zadig.akeo.ie)"
            },
        });
    }
    let path = PathBuf::from(UDEV_RULE_PATH);
    write_rule(&path, &udev_rule())?;
    for args in [&["control", "--reload-rules"][..], &["trigger", "--subsystem-match=usb"][..]] {
        run_with_deadline("udevadm", args, UDEVADM_TIMEOUT).map_err(|reason| {
            SetupError::Udevadm {
                command: format!("udevadm {}", args.join(" ")),
                reason,
                path: path.clone(),
            }
        })?;
    }
    Ok(path)
}

/// Write `text` to `path` through a temporary file and a rename, so udev never reads half a
/// rule.
fn write_rule(path: &Path, text: &str) -> Result<(), SetupError> {
    let staging = path.with_extension("rules.tmp");
    std::fs::write(&staging, text)
        .and_then(|()| std::fs::rename(&staging, path))
        .map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: io::Error) -> SetupError {
    match source.kind() {
        io::ErrorKind::PermissionDenied => SetupError::NotRoot { path: path.to_owned() },
        _ => SetupError::Write { path: path.to_owned(), source },
    }
}

/// Run `program args…`, killing it if it is still running after `timeout`. The error text
/// says what went wrong.
fn run_with_deadline(program: &str, args: &[&str], timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(program).args(args).spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{program} not found (is systemd-udev installed?)"),
        _ => format!("cannot start {program}: {e}"),
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().map_err(|e| format!("waiting for {program}: {e}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("{program} exited with {status}")),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {timeout:?} and was stopped"));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule lines of `rule` that match `vendor:product` (lowercase, as udev compares them).
    fn lines_for<'a>(rule: &'a str, vendor: &str, product: &str) -> Vec<&'a str> {
        let ids = format!("ATTR{{idVendor}}==\"{vendor}\", ATTR{{idProduct}}==\"{product}\"");
        rule.lines().filter(|line| !line.starts_with('#') && line.contains(&ids)).collect()
    }

    #[test]
    fn rule_covers_every_bridge_id_in_lowercase_hex() {
        let rule = udev_rule();
        for (vendor, product) in [
            ("add1", "0001"),
            ("3801", "0001"),
            ("174c", "2464"),
            ("174c", "2463"),
            ("add1", "b007"),
        ] {
            let lines = lines_for(&rule, vendor, product);
            assert_eq!(lines.len(), 1, "{vendor}:{product} should have exactly one rule line");
            let line = lines[0];
            assert!(line.contains("SUBSYSTEM==\"usb\""), "{line}");
            assert!(line.contains("MODE=\"0660\""), "{line}");
            assert!(line.contains("GROUP=\"plugdev\""), "{line}");
            assert!(line.contains("TAG+=\"uaccess\""), "{line}");
            assert!(line.contains("ATTR{power/control}=\"on\""), "{line}");
        }
        assert!(!rule.contains("ADD1") && !rule.contains("174C"), "udev compares lowercase hex");
        assert_eq!(rule.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count(), 5);
    }

    #[test]
    fn rule_explains_itself_in_a_comment_header() {
        let rule = udev_rule();
        assert!(rule.starts_with("# egpu"));
        assert!(rule.contains("autosuspend"));
    }

    #[test]
    fn rule_is_written_whole_to_the_target() {
        let dir = std::env::temp_dir().join(format!("egpu-usb-setup-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("70-egpu.rules");
        write_rule(&path, &udev_rule()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), udev_rule());
        assert!(!dir.join("70-egpu.rules.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn permission_denied_asks_for_sudo() {
        let err = write_error(Path::new(UDEV_RULE_PATH), io::ErrorKind::PermissionDenied.into());
        assert!(matches!(err, SetupError::NotRoot { .. }));
        assert!(err.to_string().contains("sudo"), "{err}");
        let err = write_error(Path::new("/nonexistent/x.rules"), io::ErrorKind::NotFound.into());
        assert!(err.to_string().contains("/nonexistent/x.rules"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn helper_commands_report_failure_and_absence() {
        assert_eq!(run_with_deadline("true", &[], Duration::from_secs(60)), Ok(()));
        let failed = run_with_deadline("false", &[], Duration::from_secs(60)).unwrap_err();
        assert!(failed.contains("exited with"), "{failed}");
        let missing =
            run_with_deadline("egpu-no-such-program", &[], Duration::from_secs(60)).unwrap_err();
        assert!(missing.contains("not found"), "{missing}");
    }
}
