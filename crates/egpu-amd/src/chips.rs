//! The RDNA3/RDNA4 dGPUs egpu knows (reference §0). Identify a card by the GC version read from
//! discovery; PCI ids and the default IP versions here are for display and for choosing the
//! firmware before discovery has run.

use std::fmt;

/// An IP block version (major.minor.revision) as discovery reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Revision.
    pub rev: u8,
}

impl IpVersion {
    /// A version.
    pub const fn new(major: u8, minor: u8, rev: u8) -> Self {
        IpVersion { major, minor, rev }
    }
    /// The `a_b_c` spelling used in firmware and header names.
    pub fn underscored(&self) -> String {
        format!("{}_{}_{}", self.major, self.minor, self.rev)
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.rev)
    }
}

/// GPU generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// RDNA3, gfx11.
    Rdna3,
    /// RDNA4, gfx12.
    Rdna4,
}

/// One chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chip {
    /// AMD's code name.
    pub name: &'static str,
    /// Generation.
    pub family: Family,
    /// LLVM target (from `amdkfd/kfd_device.c`, not from the GC version digits).
    pub gfx_target: &'static str,
    /// PCI device ids (vendor 0x1002) with marketing names.
    pub pci_ids: &'static [(u16, &'static str)],
    /// GC (graphics/compute) version.
    pub gc: IpVersion,
    /// MP0 (PSP) and MP1 (SMU) version.
    pub mp: IpVersion,
    /// SDMA version.
    pub sdma: IpVersion,
    /// MMHUB, NBIO/NBIF, HDP, OSSSYS versions where the reference confirms them.
    pub other_ips: &'static [(&'static str, IpVersion)],
    /// Whether the MP/SDMA pairing is confirmed (reference §0 marks the others ⚠).
    pub versions_confirmed: bool,
}

const fn v(major: u8, minor: u8, rev: u8) -> IpVersion {
    IpVersion::new(major, minor, rev)
}

/// Every supported chip.
pub static CHIPS: &[Chip] = &[
    Chip {
        name: "Navi31",
        family: Family::Rdna3,
        gfx_target: "gfx1100",
        pci_ids: &[(0x744c, "Radeon RX 7900 XTX/XT/GRE"), (0x7448, "Radeon Pro W7900")],
        gc: v(11, 0, 0),
        mp: v(13, 0, 0),
        sdma: v(6, 0, 0),
        other_ips: &[
            ("MMHUB", v(3, 0, 0)),
            ("NBIO", v(4, 3, 0)),
            ("HDP", v(6, 0, 0)),
            ("OSSSYS", v(6, 0, 0)),
        ],
        versions_confirmed: true,
    },
    Chip {
        name: "Navi32",
        family: Family::Rdna3,
        gfx_target: "gfx1101",
        pci_ids: &[(0x747e, "Radeon RX 7800 XT/7700 XT, Pro W7700")],
        gc: v(11, 0, 3),
        mp: v(13, 0, 10),
        sdma: v(6, 0, 3),
        other_ips: &[],
        versions_confirmed: false,
    },
    Chip {
        name: "Navi33",
        family: Family::Rdna3,
        gfx_target: "gfx1102",
        pci_ids: &[(0x7480, "Radeon RX 7600/7600 XT")],
        gc: v(11, 0, 2),
        mp: v(13, 0, 7),
        sdma: v(6, 0, 2),
        other_ips: &[],
        versions_confirmed: false,
    },
    Chip {
        name: "Navi44",
        family: Family::Rdna4,
        gfx_target: "gfx1200",
        pci_ids: &[(0x7590, "Radeon RX 9060 XT")],
        gc: v(12, 0, 0),
        mp: v(14, 0, 2),
        sdma: v(7, 0, 0),
        other_ips: &[
            ("MMHUB", v(4, 1, 0)),
            ("NBIF", v(6, 3, 1)),
            ("HDP", v(7, 0, 0)),
            ("OSSSYS", v(7, 0, 0)),
        ],
        versions_confirmed: false,
    },
    Chip {
        name: "Navi48",
        family: Family::Rdna4,
        gfx_target: "gfx1201",
        pci_ids: &[(0x7550, "Radeon RX 9070/9070 XT"), (0x7551, "Radeon AI PRO R9700")],
        gc: v(12, 0, 1),
        mp: v(14, 0, 3),
        sdma: v(7, 0, 1),
        other_ips: &[],
        versions_confirmed: false,
    },
];

/// The chip with PCI device id `device` (vendor 0x1002).
pub fn by_pci_id(device: u16) -> Option<&'static Chip> {
    CHIPS.iter().find(|c| c.pci_ids.iter().any(|(id, _)| *id == device))
}

/// The chip called `name` (code name like "Navi31" or gfx target like "gfx1100"; any case).
pub fn by_name(name: &str) -> Option<&'static Chip> {
    CHIPS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name) || c.gfx_target.eq_ignore_ascii_case(name))
}

/// The chip whose GC version is `gc` (the authoritative identification).
pub fn by_gc(gc: IpVersion) -> Option<&'static Chip> {
    CHIPS.iter().find(|c| c.gc == gc)
}

/// LLVM gfx target for a GC version, following `kfd_device.c` (GC 11.0.3 is gfx1101, not
/// gfx1103; the 11.0.1/11.0.4 APUs are gfx1103).
pub fn gfx_target(gc: IpVersion) -> Option<&'static str> {
    Some(match (gc.major, gc.minor, gc.rev) {
        (11, 0, 0) => "gfx1100",
        (11, 0, 2) => "gfx1102",
        (11, 0, 3) => "gfx1101",
        (11, 0, 1) | (11, 0, 4) => "gfx1103",
        (12, 0, 0) => "gfx1200",
        (12, 0, 1) => "gfx1201",
        _ => return None,
    })
}

/// The register-file version to use for a detected IP version: the largest generated version
/// with the same major that is ≤ the detected one (reference §1.2), from `available`.
pub fn register_file_for(detected: IpVersion, available: &[IpVersion]) -> Option<IpVersion> {
    available.iter().copied().filter(|a| a.major == detected.major && *a <= detected).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §0: PCI ids, gfx targets (kfd_device.c mapping, 11.0.3 → gfx1101).
    #[test]
    fn identities_match_reference() {
        assert_eq!(by_pci_id(0x744c).map(|c| c.gfx_target), Some("gfx1100"));
        assert_eq!(by_pci_id(0x747e).map(|c| c.gfx_target), Some("gfx1101"));
        assert_eq!(by_pci_id(0x7480).map(|c| c.gfx_target), Some("gfx1102"));
        assert_eq!(by_pci_id(0x7590).map(|c| c.gfx_target), Some("gfx1200"));
        assert_eq!(by_pci_id(0x7551).map(|c| c.name), Some("Navi48"));
        assert_eq!(by_pci_id(0x1234), None);
        assert_eq!(gfx_target(v(11, 0, 3)), Some("gfx1101"));
        assert_eq!(gfx_target(v(11, 0, 4)), Some("gfx1103"));
        for c in CHIPS {
            assert_eq!(gfx_target(c.gc), Some(c.gfx_target), "{}", c.name);
            assert_eq!(by_gc(c.gc).map(|x| x.name), Some(c.name));
        }
        assert_eq!(by_name("GFX1101").map(|c| c.name), Some("Navi32"));
    }

    /// Reference §1.2: GC 11.0.2 uses gc_11_0_0, GC 11.0.3 its own, GC 12.0.1 uses gc_12_0_0.
    #[test]
    fn register_file_selection() {
        let avail = [v(11, 0, 0), v(11, 0, 3), v(12, 0, 0)];
        assert_eq!(register_file_for(v(11, 0, 2), &avail), Some(v(11, 0, 0)));
        assert_eq!(register_file_for(v(11, 0, 3), &avail), Some(v(11, 0, 3)));
        assert_eq!(register_file_for(v(12, 0, 1), &avail), Some(v(12, 0, 0)));
        assert_eq!(register_file_for(v(10, 3, 0), &avail), None);
    }
}
