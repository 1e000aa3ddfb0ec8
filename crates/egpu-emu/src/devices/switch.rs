//! Switch ports (type-1 headers): all their behaviour is in the standard header and the
//! fabric's routing (bus numbers, windows, COMMAND).

use super::{ConfigBuilder, ConfigHeader, DeviceModel};
use crate::pcie::config_space::{LinkInfo, PortType};

const CLASS_BRIDGE_PCI: u32 = 0x06_04_00;

/// One upstream or downstream port of a PCIe switch.
pub(crate) struct SwitchPort {
    label: String,
    header: ConfigHeader,
}

impl SwitchPort {
    pub fn new(label: &str, vendor: u16, device: u16, port: PortType, link: LinkInfo) -> Self {
        let builder = ConfigBuilder::new(vendor, device, CLASS_BRIDGE_PCI, 0x01, true)
            .pm_cap(super::cards::PM_AT)
            .pcie_cap(super::cards::PCIE_AT, port, false, link);
        Self { label: label.to_string(), header: ConfigHeader::bridge(builder) }
    }
}

impl DeviceModel for SwitchPort {
    fn label(&self) -> &str {
        &self.label
    }

    fn header(&self) -> &ConfigHeader {
        &self.header
    }

    fn header_mut(&mut self) -> &mut ConfigHeader {
        &mut self.header
    }
}
