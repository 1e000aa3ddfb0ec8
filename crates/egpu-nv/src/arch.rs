//! GPU architectures: which classes, QMD version and constant-bank layout each one uses.
//!
//! Facts: reference nv-driver.md §1.5 (classes, QMD, cbuf0 param base), §2.5 (cbuf0 layout).
//! Only what has run on hardware is marked verified; nothing is yet (no GPU was used while this
//! was written): Hopper is the first target, the others are built from the documents.

use crate::qmd::QmdVersion;
use crate::rm::class;

/// An NVIDIA compute architecture family egpu knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// GA100 (sm_80).
    AmpereGa100,
    /// GA10x (sm_86).
    AmpereGa10x,
    /// AD10x (sm_89).
    Ada,
    /// GH100 (sm_90).
    Hopper,
    /// GB10x (sm_100).
    BlackwellGb10x,
    /// GB20x (sm_120).
    BlackwellGb20x,
}

impl Arch {
    /// From the GR_GET_INFO SM_VERSION value (0x800, 0x806, 0x809, 0x900, 0xA00, 0xC00). GB20x
    /// answers 0xA04 (`NV2080_CTRL_GR_INFO_SM_VERSION_10_04`), though NVRTC calls it sm_120.
    pub fn from_sm_version(sm: u32) -> Option<Arch> {
        Some(match sm {
            0x800 => Arch::AmpereGa100,
            0x806..=0x808 => Arch::AmpereGa10x,
            0x809 => Arch::Ada,
            0x900 => Arch::Hopper,
            0xA04 => Arch::BlackwellGb20x,
            0xA00..=0xAFF => Arch::BlackwellGb10x,
            0xC00..=0xCFF => Arch::BlackwellGb20x,
            _ => return None,
        })
    }

    /// From a cubin's ELF `e_flags` SM field (80, 86, 89, 90, 100, 120).
    pub fn from_sm(sm: u32) -> Option<Arch> {
        Arch::from_sm_version(((sm / 10) << 8) | (sm % 10))
    }

    /// `sm_XX` number NVRTC is asked for on this family's reference part.
    pub fn sm(self) -> u32 {
        match self {
            Arch::AmpereGa100 => 80,
            Arch::AmpereGa10x => 86,
            Arch::Ada => 89,
            Arch::Hopper => 90,
            Arch::BlackwellGb10x => 100,
            Arch::BlackwellGb20x => 120,
        }
    }

    /// GPFIFO channel class, most preferred first.
    pub fn gpfifo_classes(self) -> &'static [u32] {
        match self {
            Arch::Hopper => &[class::HOPPER_CHANNEL_GPFIFO_A, class::AMPERE_CHANNEL_GPFIFO_A],
            Arch::BlackwellGb10x => &[class::BLACKWELL_CHANNEL_GPFIFO_A],
            Arch::BlackwellGb20x => {
                &[class::BLACKWELL_CHANNEL_GPFIFO_B, class::BLACKWELL_CHANNEL_GPFIFO_A]
            }
            _ => &[class::AMPERE_CHANNEL_GPFIFO_A],
        }
    }

    /// Compute class.
    pub fn compute_class(self) -> u32 {
        match self {
            Arch::AmpereGa100 => class::AMPERE_COMPUTE_A,
            Arch::AmpereGa10x => class::AMPERE_COMPUTE_B,
            Arch::Ada => class::ADA_COMPUTE_A,
            Arch::Hopper => class::HOPPER_COMPUTE_A,
            Arch::BlackwellGb10x => class::BLACKWELL_COMPUTE_A,
            Arch::BlackwellGb20x => class::BLACKWELL_COMPUTE_B,
        }
    }

    /// Copy-engine class.
    pub fn copy_class(self) -> u32 {
        match self {
            Arch::AmpereGa100 => class::AMPERE_DMA_COPY_A,
            Arch::AmpereGa10x | Arch::Ada => class::AMPERE_DMA_COPY_B,
            Arch::Hopper => class::HOPPER_DMA_COPY_A,
            Arch::BlackwellGb10x => class::BLACKWELL_DMA_COPY_A,
            Arch::BlackwellGb20x => class::BLACKWELL_DMA_COPY_B,
        }
    }

    /// Usermode (doorbell) class, most preferred first.
    pub fn usermode_classes(self) -> &'static [u32] {
        match self {
            Arch::Hopper => &[class::HOPPER_USERMODE_A, class::TURING_USERMODE_A],
            Arch::BlackwellGb10x | Arch::BlackwellGb20x => {
                &[class::BLACKWELL_USERMODE_A, class::HOPPER_USERMODE_A]
            }
            _ => &[class::AMPERE_USERMODE_A, class::TURING_USERMODE_A],
        }
    }

    /// QMD layout version.
    pub fn qmd_version(self) -> QmdVersion {
        match self {
            Arch::AmpereGa100 | Arch::AmpereGa10x | Arch::Ada => QmdVersion::V03,
            Arch::Hopper => QmdVersion::V04,
            Arch::BlackwellGb10x | Arch::BlackwellGb20x => QmdVersion::V05,
        }
    }

    /// Offset of the first kernel parameter in constant bank 0.
    pub fn cbuf0_param_base(self) -> u32 {
        match self {
            Arch::AmpereGa100 | Arch::AmpereGa10x | Arch::Ada => 0x160,
            Arch::Hopper => 0x210,
            Arch::BlackwellGb10x | Arch::BlackwellGb20x => 0x380,
        }
    }

    /// Whether the cubin's `.nv.shared.K` size already includes the 1 KiB reserved block
    /// (sm_90 does, reference §2.5; sm_8x does not; Blackwell unknown, assumed like Hopper).
    pub fn shared_section_includes_reserved(self) -> bool {
        !matches!(self, Arch::AmpereGa100 | Arch::AmpereGa10x | Arch::Ada)
    }

    /// Shared-memory carve-outs in KiB the SM can be configured to (largest is the maximum).
    pub fn shared_carveouts_kib(self) -> &'static [u32] {
        match self {
            // GA10x/AD10x: up to 100 KiB (reference §2.4, tinygrad).
            Arch::AmpereGa10x | Arch::Ada => &[0, 8, 16, 32, 64, 100],
            // GA100: up to 164 KiB; Hopper: up to 228 KiB (CUDA docs; [U] in the reference).
            Arch::AmpereGa100 => &[0, 8, 16, 32, 64, 100, 132, 164],
            Arch::Hopper | Arch::BlackwellGb10x => &[0, 8, 16, 32, 64, 100, 132, 164, 196, 228],
            Arch::BlackwellGb20x => &[0, 8, 16, 32, 64, 100],
        }
    }

    /// True once this family has passed the GPU test suite on real hardware.
    pub fn verified_on_hardware(self) -> bool {
        false
    }
}

/// SM_CONFIG_SHARED_MEM_SIZE encoding: KiB / 4 + 1 (reference §2.4).
pub fn sm_config_encoding(kib: u32) -> u32 {
    kib / 4 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm_versions_map_to_families() {
        assert_eq!(Arch::from_sm_version(0x900), Some(Arch::Hopper));
        assert_eq!(Arch::from_sm_version(0x806), Some(Arch::AmpereGa10x));
        assert_eq!(Arch::from_sm_version(0x750), None);
        assert_eq!(Arch::from_sm_version(0xA00), Some(Arch::BlackwellGb10x));
        assert_eq!(Arch::from_sm_version(0xA04), Some(Arch::BlackwellGb20x));
        for arch in [
            Arch::AmpereGa100,
            Arch::AmpereGa10x,
            Arch::Ada,
            Arch::Hopper,
            Arch::BlackwellGb10x,
            Arch::BlackwellGb20x,
        ] {
            assert_eq!(Arch::from_sm(arch.sm()), Some(arch));
        }
    }

    #[test]
    fn hopper_uses_hopper_classes_and_qmd_v04() {
        // Reference §1.5: GH100 exposes only HOPPER_COMPUTE_A / HOPPER_DMA_COPY_A.
        let h = Arch::Hopper;
        assert_eq!((h.compute_class(), h.copy_class()), (0xCBC0, 0xC8B5));
        assert_eq!(h.gpfifo_classes()[0], 0xC86F);
        assert_eq!(h.usermode_classes()[0], 0xC661);
        assert_eq!(h.qmd_version(), QmdVersion::V04);
        assert_eq!(h.cbuf0_param_base(), 0x210);
        assert_eq!(Arch::Ada.cbuf0_param_base(), 0x160);
        assert_eq!(sm_config_encoding(228), 58);
        assert_eq!(sm_config_encoding(100), 0x1A);
    }
}
