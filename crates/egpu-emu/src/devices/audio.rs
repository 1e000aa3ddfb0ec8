//! The HDMI audio function of a graphics card: identity, capabilities and one BAR of plain
//! registers (no audio is modelled).

use super::{ConfigBuilder, ConfigHeader, DeviceModel, ResetKind, Upstream};
use crate::pcie::config_space::PortType;
use crate::pcie::header::BarSlot;
use crate::sparse::SparseMem;

const CLASS_HDA: u32 = 0x04_03_00;

/// HDMI audio function (function 1 of the card).
pub(crate) struct HdmiAudio {
    label: String,
    header: ConfigHeader,
    registers: SparseMem,
}

impl HdmiAudio {
    pub fn new(vendor: u16, device: u16) -> Self {
        let builder = ConfigBuilder::new(vendor, device, CLASS_HDA, 0x00, false)
            .interrupt_pin(2)
            .pm_cap(super::cards::PM_AT)
            .pcie_cap(super::cards::PCIE_AT, PortType::Endpoint, false, super::cards::gen4x16());
        let size = 16 << 10;
        let mut bars = [BarSlot::Unused; 6];
        bars[0] = BarSlot::mem(size, false, false);
        Self {
            label: format!("HDMI audio {vendor:04X}:{device:04X}"),
            header: ConfigHeader::endpoint(builder, bars, None),
            registers: SparseMem::new(size),
        }
    }
}

impl DeviceModel for HdmiAudio {
    fn label(&self) -> &str {
        &self.label
    }

    fn header(&self) -> &ConfigHeader {
        &self.header
    }

    fn header_mut(&mut self) -> &mut ConfigHeader {
        &mut self.header
    }

    fn bar_read(&mut self, _bar: usize, offset: u64, out: &mut [u8]) {
        self.registers.read(offset, out);
    }

    fn bar_write(&mut self, _bar: usize, offset: u64, data: &[u8], _upstream: &mut Upstream<'_>) {
        self.registers.write(offset, data);
    }

    fn reset(&mut self, kind: ResetKind) {
        if kind == ResetKind::PowerLoss {
            self.registers.clear();
        }
    }
}
