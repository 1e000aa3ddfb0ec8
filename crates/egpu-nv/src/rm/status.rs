//! RM status codes (`NV_STATUS`) as a typed value with the vendor's names.

use std::fmt;

include!("status_table.rs");

/// An `NV_STATUS` value returned by the resource manager (or by UVM in `rmStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmStatus(pub u32);

impl RmStatus {
    /// `NV_OK`.
    pub const OK: RmStatus = RmStatus(0);
    /// `NV_ERR_INVALID_ARGUMENT`.
    pub const INVALID_ARGUMENT: RmStatus = RmStatus(0x1F);
    /// `NV_ERR_INVALID_CLASS`.
    pub const INVALID_CLASS: RmStatus = RmStatus(0x22);
    /// `NV_ERR_INVALID_PARAM_STRUCT`.
    pub const INVALID_PARAM_STRUCT: RmStatus = RmStatus(0x3A);
    /// `NV_ERR_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: RmStatus = RmStatus(0x56);

    /// The vendor's name (`NV_ERR_INVALID_CLASS`), if the code is known.
    pub fn name(self) -> Option<&'static str> {
        STATUS_NAMES.iter().find(|(code, _, _)| *code == self.0).map(|(_, name, _)| *name)
    }

    /// The vendor's one-line description, if the code is known.
    pub fn description(self) -> Option<&'static str> {
        STATUS_NAMES.iter().find(|(code, _, _)| *code == self.0).map(|(_, _, text)| *text)
    }

    /// `Ok(())` for `NV_OK`, otherwise the status as an error value.
    pub fn check(self) -> Result<(), RmStatus> {
        if self == RmStatus::OK {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for RmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.description()) {
            (Some(name), Some(text)) => write!(f, "{name} (0x{:x}: {text})", self.0),
            _ => write!(f, "unknown NV_STATUS 0x{:x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_nvstatuscodes_h() {
        // Values from the reference §1.1 and nvstatuscodes.h.
        for (code, name) in [
            (0x00, "NV_OK"),
            (0x1B, "NV_ERR_INSUFFICIENT_PERMISSIONS"),
            (0x1F, "NV_ERR_INVALID_ARGUMENT"),
            (0x22, "NV_ERR_INVALID_CLASS"),
            (0x3A, "NV_ERR_INVALID_PARAM_STRUCT"),
            (0x51, "NV_ERR_NO_MEMORY"),
            (0x56, "NV_ERR_NOT_SUPPORTED"),
            (0xFFFF, "NV_ERR_GENERIC"),
        ] {
            assert_eq!(RmStatus(code).name(), Some(name), "code 0x{code:x}");
        }
        assert_eq!(RmStatus(0x1234_5678).name(), None);
        assert!(RmStatus(0x1234_5678).to_string().contains("0x12345678"));
        assert!(RmStatus::INVALID_CLASS.to_string().starts_with("NV_ERR_INVALID_CLASS (0x22"));
    }

    #[test]
    fn table_has_no_duplicate_codes_or_names() {
        let mut codes: Vec<u32> = STATUS_NAMES.iter().map(|r| r.0).collect();
        let mut names: Vec<&str> = STATUS_NAMES.iter().map(|r| r.1).collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!(codes.len(), n);
        assert_eq!(names.len(), n);
        assert!(n > 100);
    }

    #[test]
    fn check_passes_only_ok() {
        assert_eq!(RmStatus::OK.check(), Ok(()));
        assert_eq!(RmStatus::NOT_SUPPORTED.check(), Err(RmStatus::NOT_SUPPORTED));
    }
}
