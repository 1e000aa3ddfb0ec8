//! One egpu process per bridge: an exclusive advisory lock on a file named after the bridge's
//! bus and address in the temp directory (tinygrad does the same, usb-bridge.md §2 step 1).
//!
//! The lock belongs to the open file, so it is released when the process exits however it
//! exits; the file itself stays (deleting it on release would let two processes lock two
//! different files of the same name).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::UsbError;

/// Holds the bridge's lock until dropped.
#[derive(Debug)]
pub struct BridgeLock {
    file: File,
    path: PathBuf,
}

impl BridgeLock {
    /// The lock file for the bridge at `bus`/`address`, in `dir`.
    pub fn path_in(dir: &Path, bus: &str, address: u8) -> PathBuf {
        dir.join(format!("egpu-usb-{bus}-{address}.lock"))
    }

    /// Take the lock for the bridge at `bus`/`address` (its name is `name`) in the system temp
    /// directory. Fails with [`UsbError::Busy`] while any other holder (another process, or
    /// another `BridgeLock` in this one) has it.
    pub fn acquire(bus: &str, address: u8, name: &str) -> Result<BridgeLock, UsbError> {
        Self::acquire_in(&std::env::temp_dir(), bus, address, name)
    }

    /// [`BridgeLock::acquire`] with the lock file in `dir`.
    pub fn acquire_in(
        dir: &Path,
        bus: &str,
        address: u8,
        name: &str,
    ) -> Result<BridgeLock, UsbError> {
        let path = Self::path_in(dir, bus, address);
        let open_error = |e: std::io::Error| UsbError::Open {
            name: name.into(),
            reason: format!("cannot open lock file {}: {e}", path.display()),
        };
        // Another user's lock file in a shared /tmp may not be writable; locking needs only a
        // read handle, so fall back to one (the holder's pid then cannot be recorded).
        let (mut file, writable) = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                (File::open(&path).map_err(open_error)?, false)
            }
            Err(e) => return Err(open_error(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder_pid(&mut file);
                let name = match holder {
                    Some(pid) => format!("{name} (held by pid {pid})"),
                    None => name.to_owned(),
                };
                return Err(UsbError::Busy { name, lock: path });
            }
            Err(TryLockError::Error(e)) => {
                return Err(UsbError::Open {
                    name: name.into(),
                    reason: format!("cannot lock {}: {e}", path.display()),
                })
            }
        }
        if writable {
            // Best effort: the pid only makes the Busy message more helpful.
            let _ = file
                .set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| writeln!(file, "{}", std::process::id()))
                .and_then(|()| file.flush());
        }
        Ok(BridgeLock { file, path })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BridgeLock {
    fn drop(&mut self) {
        // Clear the pid while still holding the lock; closing the file releases it.
        let _ = self.file.set_len(0);
    }
}

/// The pid a holder wrote into the lock file, if it is readable (Windows' mandatory byte-range
/// locks make it unreadable to others, which is fine).
fn read_holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A fresh directory per test so parallel tests and real bridges never share a lock file.
    fn scratch_dir() -> PathBuf {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "egpu-usb-lock-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn second_holder_in_the_same_process_is_refused_until_release() {
        let dir = scratch_dir();
        let first = BridgeLock::acquire_in(&dir, "1", 4, "usb:1-4").unwrap();
        assert_eq!(first.path(), dir.join("egpu-usb-1-4.lock"));

        match BridgeLock::acquire_in(&dir, "1", 4, "usb:1-4") {
            Err(UsbError::Busy { name, lock }) => {
                assert_eq!(lock, dir.join("egpu-usb-1-4.lock"));
                assert!(name.contains(&format!("pid {}", std::process::id())), "{name}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Another bridge's lock is independent.
        let other = BridgeLock::acquire_in(&dir, "1", 5, "usb:1-5").unwrap();

        drop(first);
        let again = BridgeLock::acquire_in(&dir, "1", 4, "usb:1-4").unwrap();
        drop((again, other));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn busy_message_names_the_lock_file() {
        let dir = scratch_dir();
        let held = BridgeLock::acquire_in(&dir, "2", 9, "usb:2-9").unwrap();
        let err = BridgeLock::acquire_in(&dir, "2", 9, "usb:2-9").unwrap_err().to_string();
        assert!(err.contains("egpu-usb-2-9.lock"), "{err}");
        assert!(err.contains("in use by another egpu process"), "{err}");
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Run by `lock_held_by_a_child_process_is_refused` in a child process: take the lock named
    /// by the environment, say so on stdout, and hold it until stdin closes.
    #[test]
    #[ignore = "helper run as a child process by lock_held_by_a_child_process_is_refused"]
    fn child_lock_holder() {
        let Ok(dir) = std::env::var("EGPU_USB_LOCK_TEST_DIR") else {
            // Past the test harness's output capture, so that the skip shows in the run.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                "SKIP: runs only as the child of lock_held_by_a_child_process_is_refused\n"
                    .as_bytes(),
            );
            return;
        };
        let _lock = BridgeLock::acquire_in(Path::new(&dir), "7", 3, "usb:7-3").unwrap();
        println!("locked {}", std::process::id());
        // Holds until the parent closes our stdin (or dies, which closes it too).
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }

    #[test]
    fn lock_held_by_a_child_process_is_refused() {
        let dir = scratch_dir();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lock::tests::child_lock_holder", "--ignored", "--nocapture"])
            .env("EGPU_USB_LOCK_TEST_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child_pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
        // The harness prints its own lines too; read until the holder reports the lock (or the
        // child exits, which ends the stream).
        let reported = lines.by_ref().find(|line| line.starts_with("locked "));
        assert_eq!(reported, Some(format!("locked {child_pid}")));

        match BridgeLock::acquire_in(&dir, "7", 3, "usb:7-3") {
            Err(UsbError::Busy { name, .. }) => {
                assert!(name.contains(&format!("pid {child_pid}")), "{name}");
            }
            other => panic!("expected Busy while the child holds the lock, got {other:?}"),
        }

        drop(child.stdin.take());
        // Keep reading so the child's last lines never hit a closed pipe.
        lines.for_each(drop);
        assert!(child.wait().unwrap().success());
        // The child is gone, so its lock went with it.
        BridgeLock::acquire_in(&dir, "7", 3, "usb:7-3").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
