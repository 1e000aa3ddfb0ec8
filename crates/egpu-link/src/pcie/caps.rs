//! Capability-list walkers. The lists come from the device, so they are untrusted: pointers
//! are bounds-checked and loops are cut off.

use super::regs::*;
use super::{Bdf, PcieLink};
use crate::LinkError;

/// One entry of a capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (standard: 8 bits; extended: 16 bits).
    pub id: u16,
    /// Offset of the capability header in configuration space.
    pub offset: u16,
    /// Whether it sits in the extended list (offset ≥ 0x100).
    pub extended: bool,
}

/// At most 48 standard capabilities fit in the 192 bytes above the header.
const MAX_STANDARD: usize = 48;
/// At most (4096 − 256) / 4 extended capability headers fit.
const MAX_EXTENDED: usize = 960;

/// Walk the standard list (from 0x34) and, when `extended` is set, the extended list (from
/// 0x100, PCIe only).
pub fn capabilities(
    link: &mut dyn PcieLink,
    bdf: Bdf,
    extended: bool,
) -> Result<Vec<Capability>, LinkError> {
    let mut found = Vec::new();
    let status = link.config_read16(bdf, PCI_STATUS)?;
    if status & PCI_STATUS_CAP_LIST != 0 {
        let mut pointer = (link.config_read(bdf, PCI_CAPABILITY_LIST, 1)? as u16) & 0xFC;
        while pointer != 0 {
            if !(0x40..PCI_CFG_SPACE_SIZE).contains(&pointer) || found.len() >= MAX_STANDARD {
                return Err(bad_list(bdf, "standard", pointer));
            }
            let header = link.config_read16(bdf, pointer)?;
            found.push(Capability { id: header & 0xFF, offset: pointer, extended: false });
            pointer = (header >> 8) & 0xFC;
        }
    }
    if extended {
        let mut pointer = PCI_CFG_SPACE_SIZE;
        let mut seen = 0;
        loop {
            let header = link.config_read32(bdf, pointer)?;
            // An all-zero header means "no extended capabilities"; all-ones means the function
            // has no extended space (conventional PCI behind a bridge).
            if header == 0 || header == u32::MAX {
                break;
            }
            seen += 1;
            if seen > MAX_EXTENDED {
                return Err(bad_list(bdf, "extended", pointer));
            }
            found.push(Capability { id: header as u16, offset: pointer, extended: true });
            let next = ((header >> 20) & 0xFFC) as u16;
            if next == 0 {
                break;
            }
            if next < PCI_CFG_SPACE_SIZE {
                return Err(bad_list(bdf, "extended", next));
            }
            pointer = next;
        }
    }
    Ok(found)
}

/// Offset of the first capability with `id` in the standard list.
pub fn find_standard(link: &mut dyn PcieLink, bdf: Bdf, id: u8) -> Result<Option<u16>, LinkError> {
    Ok(capabilities(link, bdf, false)?
        .into_iter()
        .find(|cap| !cap.extended && cap.id == u16::from(id))
        .map(|cap| cap.offset))
}

/// Offset of the first capability with `id` in the extended list.
pub fn find_extended(link: &mut dyn PcieLink, bdf: Bdf, id: u16) -> Result<Option<u16>, LinkError> {
    Ok(capabilities(link, bdf, true)?
        .into_iter()
        .find(|cap| cap.extended && cap.id == id)
        .map(|cap| cap.offset))
}

fn bad_list(bdf: Bdf, which: &str, pointer: u16) -> LinkError {
    LinkError::Config {
        op: format!("walking the {which} capability list"),
        bdf,
        reason: format!(
            "pointer 0x{pointer:03X} is out of range or the list loops; the device's configuration space looks corrupt"
        ),
    }
}

/// Human name of a capability, for `egpu info`.
pub fn capability_name(cap: &Capability) -> &'static str {
    match (cap.extended, cap.id) {
        (false, 0x01) => "Power Management",
        (false, 0x05) => "MSI",
        (false, 0x09) => "Vendor Specific",
        (false, 0x0D) => "Bridge Subsystem Vendor ID",
        (false, 0x10) => "PCI Express",
        (false, 0x11) => "MSI-X",
        (true, 0x01) => "Advanced Error Reporting",
        (true, 0x02) => "Virtual Channel",
        (true, 0x03) => "Device Serial Number",
        (true, 0x0B) => "Vendor Specific",
        (true, 0x0E) => "ARI",
        (true, 0x10) => "SR-IOV",
        (true, 0x15) => "Resizable BAR",
        (true, 0x18) => "Latency Tolerance Reporting",
        (true, 0x19) => "Secondary PCI Express",
        (true, 0x1E) => "L1 PM Substates",
        (true, 0x25) => "Data Link Feature",
        (true, 0x26) => "Physical Layer 16.0 GT/s",
        _ => "other",
    }
}
