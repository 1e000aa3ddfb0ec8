//! A transport whose "device" answers from a byte string: every reply length, reply byte and
//! transfer outcome is taken from the input. The fuzz target and the hostile-device tests drive
//! the protocol layer and the fabric bring-up with it, because a bridge (or whatever sits on
//! the USB port) is untrusted: no answer may make egpu panic or loop forever.

use std::time::Duration;

use egpu_usb::{Completion, DeviceInfo, InFlight, Tag, Transfer, UsbError, UsbSpeed, UsbTransport};

/// Replies drawn from `input`; once it runs out, every transfer times out.
pub struct HostileTransport<'a> {
    info: DeviceInfo,
    input: &'a [u8],
    inflight: InFlight,
    /// Transfers submitted so far; bounded so that a reply stream that keeps a retry loop
    /// going still ends.
    pub submitted: usize,
}

/// Transfers after which the hostile device stops answering.
const MAX_TRANSFERS: usize = 20_000;

impl<'a> HostileTransport<'a> {
    /// A device whose every outcome and reply byte is taken from `input` in order; once it
    /// runs out (or after `MAX_TRANSFERS` transfers), every transfer times out.
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            info: DeviceInfo {
                name: "hostile".into(),
                vendor_id: 0xADD1,
                product_id: 0x0001,
                manufacturer: None,
                product: Some("custom hostile".into()),
                serial: None,
                speed: Some(UsbSpeed::SuperPlus),
            },
            input,
            inflight: InFlight::new(),
            submitted: 0,
        }
    }

    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.input.split_first()?;
        self.input = rest;
        Some(first)
    }

    /// One outcome byte decides the transfer's fate (rarely a failure, so walks go deep);
    /// an F0 completion reply is built from four data bytes and a verdict byte, so every
    /// completion status and ret_status the firmware can send is reachable; other IN data is
    /// raw input bytes.
    fn reply(&mut self, transfer: &Transfer) -> Result<Completion, UsbError> {
        let timeout =
            || UsbError::Timeout { transfer: transfer.to_string(), after: Duration::ZERO };
        if self.submitted > MAX_TRANSFERS {
            return Err(timeout());
        }
        let outcome = self.byte().ok_or_else(timeout)?;
        match outcome {
            0 => return Err(timeout()),
            1 => return Err(UsbError::Stall { transfer: transfer.to_string() }),
            2 => return Err(UsbError::Disconnected { transfer: transfer.to_string() }),
            _ => {}
        }
        let asked = transfer.requested_len();
        match transfer {
            Transfer::ControlIn { setup, length: 8 } if setup.request == 0xF0 => {
                let mut reply = [0u8; 8];
                for byte in &mut reply[..4] {
                    *byte = self.byte().unwrap_or(0);
                }
                let verdict = self.byte().unwrap_or(0);
                match verdict {
                    0..=223 => {}
                    224..=239 => reply[4] = 0b001 << 5,
                    240..=247 => reply[4] = 0b010 << 5,
                    248..=251 => reply[4] = 0b100 << 5,
                    252 => reply[7] = 1,
                    253 => reply[7] = 0xFF,
                    _ => {
                        for byte in &mut reply[4..] {
                            *byte = self.byte().unwrap_or(0);
                        }
                    }
                }
                // Rarely a short reply.
                let len = if outcome == 3 { 5 } else { 8 };
                Ok(Completion::In(reply[..len].to_vec()))
            }
            Transfer::ControlIn { .. } | Transfer::BulkIn { .. } => {
                let len = if outcome == 3 { asked / 2 } else { asked };
                let mut data = Vec::with_capacity(len);
                for _ in 0..len {
                    data.push(self.byte().unwrap_or(0));
                }
                Ok(Completion::In(data))
            }
            other => Ok(Completion::Out { length: other.requested_len() }),
        }
    }
}

impl UsbTransport for HostileTransport<'_> {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, transfer: Transfer, _timeout: Duration) -> Result<Tag, UsbError> {
        self.submitted += 1;
        let tag = self.inflight.begin();
        let result = self.reply(&transfer);
        self.inflight.finish(tag, result);
        Ok(tag)
    }

    fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError> {
        self.inflight.collect(tag).unwrap_or(Err(UsbError::UnknownTag(tag)))
    }

    fn reset_interface(&mut self) -> Result<(), UsbError> {
        self.inflight.clear();
        Ok(())
    }

    fn clear_halt(&mut self, _endpoint: u8) -> Result<(), UsbError> {
        Ok(())
    }
}

/// How far [`exercise`] got, so tests can show their inputs reach the deep paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// The bridge was not even opened.
    Nothing,
    /// The bridge opened, but the PCIe fabric walk failed.
    Opened,
    /// The fabric walk finished but found no GPU.
    FabricUp,
    /// A display-class function was found behind the bridge.
    GpuFound,
}

/// Open a bridge on `input`'s answers, bring up the fabric and touch the GPU's BARs. The
/// result does not matter; returning at all (no panic, no hang) is the property.
pub fn exercise(input: &[u8]) -> Reached {
    use crate::pcie::bar::{BarMmio, BarRegion};
    use crate::pcie::fabric::{self, FabricOptions};
    use crate::{Asm2464, Asm2464Config, PcieLink};

    let config = Asm2464Config {
        retry_backoff: Duration::ZERO,
        config_retry_backoff: Duration::ZERO,
        link_poll_interval: Duration::ZERO,
        // One LTSSM poll after power-on: how far an input gets must not depend on the clock.
        link_up_timeout: Duration::ZERO,
        ..Default::default()
    };
    let Ok(mut link) = Asm2464::open(HostileTransport::new(input), config) else {
        return Reached::Nothing;
    };
    let Ok(topology) = fabric::bring_up(&mut link, &FabricOptions::default()) else {
        return Reached::Opened;
    };
    let _ = topology.to_string();
    let mut reached = Reached::FabricUp;
    if let Some(gpu) = topology.gpu() {
        reached = Reached::GpuFound;
        for bar in &gpu.bars {
            let region = BarRegion { address: bar.address, size: bar.size };
            let mut mmio = BarMmio::new(&mut link, region);
            let _ = mmio.read32(0);
            let _ = mmio.read(0, 64.min(bar.size as usize) & !3);
            let _ = mmio.write32(0, 1);
        }
    }
    let _ = link.flush();
    let _ = link.arm_sram_read(4096).and_then(|pending| link.finish_sram_read(pending));
    reached
}
