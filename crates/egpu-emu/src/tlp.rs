//! TLP header facts the bridge's engine needs (§4.1, PCIe Base spec §2.2).

/// What a Fmt/Type byte (F0 OUT wValue low byte) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlpKind {
    MemRead,
    MemWrite,
    ConfigRead {
        type1: bool,
    },
    ConfigWrite {
        type1: bool,
    },
    /// 0x30–0x37 / 0x70–0x77: posted, no effect in this model.
    Message,
    /// Anything else (I/O, locked reads, atomics...): posted or not by the §4.1 rule.
    Other {
        posted: bool,
    },
}

impl TlpKind {
    /// §4.1: memory writes (`fmt & 0xDF == 0x40`) and messages (`fmt & 0xB8 == 0x30`) are
    /// posted; everything else expects a completion.
    pub fn is_posted(self) -> bool {
        matches!(self, TlpKind::MemWrite | TlpKind::Message | TlpKind::Other { posted: true })
    }
}

/// §4.1 encodings: 0x00/0x20 MRd 3DW/4DW, 0x40/0x60 MWr, 0x04/0x05 CfgRd0/1, 0x44/0x45
/// CfgWr0/1, 0x30–0x37/0x70–0x77 messages.
pub(crate) fn classify(fmt: u8) -> TlpKind {
    match fmt {
        0x00 | 0x20 => TlpKind::MemRead,
        0x40 | 0x60 => TlpKind::MemWrite,
        0x04 => TlpKind::ConfigRead { type1: false },
        0x05 => TlpKind::ConfigRead { type1: true },
        0x44 => TlpKind::ConfigWrite { type1: false },
        0x45 => TlpKind::ConfigWrite { type1: true },
        f if f & 0xB8 == 0x30 => TlpKind::Message,
        f => TlpKind::Other { posted: f & 0xDF == 0x40 },
    }
}

/// Fmt bit 5 set = 4DW header (64-bit address) for memory requests.
pub(crate) fn is_4dw(fmt: u8) -> bool {
    fmt & 0x20 != 0
}

/// Byte Count of the completion to a 1-DW read with these first-DW byte enables
/// (PCIe Base spec Table 2-38 "Calculating Byte Count from Length and Byte Enables").
pub(crate) fn byte_count_1dw(be: u8) -> u16 {
    match be & 0xF {
        0b1001 | 0b1011 | 0b1101 | 0b1111 => 4,
        0b0101 | 0b0111 => 3,
        0b1010 | 0b1110 => 3,
        0b0011 | 0b0110 | 0b1100 => 2,
        _ => 1,
    }
}

/// Completion status field values (PCIe Base spec §2.2.9).
pub(crate) const CPL_SUCCESS: u8 = 0b000;
pub(crate) const CPL_UR: u8 = 0b001;
pub(crate) const CPL_CRS: u8 = 0b010;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_rule_matches_section_4_1() {
        for fmt in 0..=255u8 {
            let posted = fmt & 0xDF == 0x40 || fmt & 0xB8 == 0x30;
            assert_eq!(classify(fmt).is_posted(), posted, "fmt 0x{fmt:02X}");
        }
    }

    #[test]
    fn byte_counts() {
        assert_eq!(byte_count_1dw(0xF), 4);
        assert_eq!(byte_count_1dw(0b0110), 2);
        assert_eq!(byte_count_1dw(0b0100), 1);
        assert_eq!(byte_count_1dw(0b0111), 3);
        assert_eq!(byte_count_1dw(0), 1);
    }
}
