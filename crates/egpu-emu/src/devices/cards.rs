//! Card installers and the ports above the slot (§1.3), as data.
//!
//! The ASM2464 front-end's own switch: bus 0 dev 0 upstream port, bus 1 dev 0 downstream port
//! (§1.3: "the fw repo's scan shows an ASM2461 switch"; the device ID is not given, so both
//! ports use 0x2461 `[U]`). The in-process link has one root port instead, as a PCIe host
//! (or a VM: QEMU's pcie-root-port 1B36:000C) would. Below the slot, Navi 31 brings its own
//! switch 1002:1478 / 1002:1479 with the GPU and HDMI audio below it (bus 4 behind the
//! bridge); GA102 sits directly in the slot (bus 2 behind the bridge, PR #17369 `gpu_bus=2`).

use super::audio::HdmiAudio;
use super::gpu::{Backing, GpuFunction};
use super::switch::SwitchPort;
use super::ConfigBuilder;
use crate::config::GpuKind;
use crate::pcie::config_space::{LinkInfo, PortType};
use crate::pcie::header::{BarSlot, Rebar};
use crate::pcie::{Fabric, FnId};

const CLASS_VGA: u32 = 0x03_00_00;
const VENDOR_ASMEDIA: u16 = 0x1B21;
const VENDOR_AMD: u16 = 0x1002;
const VENDOR_NVIDIA: u16 = 0x10DE;
const VENDOR_REDHAT_QEMU: u16 = 0x1B36;

pub(crate) const PM_AT: u16 = 0x48;
pub(crate) const PCIE_AT: u16 = 0x58;
const AER_AT: u16 = 0x100;
/// REBAR sits after AER, so a driver must walk the extended list rather than assume 0x100.
const REBAR_AT: u16 = 0x200;

const MIB: u64 = 1 << 20;

fn link(max_speed: u8, max_width: u8, cur_speed: u8, cur_width: u8) -> LinkInfo {
    LinkInfo { max_speed, max_width, cur_speed, cur_width }
}

/// A Gen4 x16 link trained at full speed.
pub(crate) fn gen4x16() -> LinkInfo {
    link(4, 16, 4, 16)
}

fn port(fabric: &mut Fabric, parent: Option<FnId>, port: SwitchPort) -> FnId {
    fabric.attach(parent, 0, 0, Box::new(port))
}

/// The ASM2464's internal switch below its TLP engine; returns the downstream port (the slot).
pub(crate) fn asm2464_switch(fabric: &mut Fabric) -> FnId {
    let up = port(
        fabric,
        None,
        SwitchPort::new(
            "ASMedia switch upstream port 1B21:2461",
            VENDOR_ASMEDIA,
            0x2461,
            PortType::UpstreamSwitchPort,
            link(4, 4, 3, 4),
        ),
    );
    port(
        fabric,
        Some(up),
        SwitchPort::new(
            "ASMedia switch downstream port 1B21:2461",
            VENDOR_ASMEDIA,
            0x2461,
            PortType::DownstreamSwitchPort,
            link(4, 4, 3, 4),
        ),
    )
}

/// A root port on the root bus, as on a PCIe host; returns it (the slot).
pub(crate) fn root_port(fabric: &mut Fabric) -> FnId {
    port(
        fabric,
        None,
        SwitchPort::new(
            "root port 1B36:000C",
            VENDOR_REDHAT_QEMU,
            0x000C,
            PortType::RootPort,
            gen4x16(),
        ),
    )
}

/// Plug the card `kind` into the slot below `slot`; returns the GPU function, if any.
pub(crate) fn install(
    fabric: &mut Fabric,
    slot: FnId,
    kind: GpuKind,
    vram_size: u64,
) -> Option<FnId> {
    let gpu = match kind {
        GpuKind::None => return None,
        GpuKind::Navi31 => navi31(fabric, slot, vram_size),
        GpuKind::Ga102 => ga102(fabric, slot, vram_size),
    };
    fabric.set_gpu(gpu);
    Some(gpu)
}

fn mem(size: u64, is64: bool, prefetchable: bool, backing: Backing) -> (BarSlot, Option<Backing>) {
    (BarSlot::mem(size, is64, prefetchable), Some(backing))
}

const UPPER: (BarSlot, Option<Backing>) = (BarSlot::Upper, None);

/// AMD Navi 31 (RX 7900 XTX): its own switch, the GPU and HDMI audio.
fn navi31(fabric: &mut Fabric, slot: FnId, vram_size: u64) -> FnId {
    let usp = port(
        fabric,
        Some(slot),
        SwitchPort::new(
            "AMD switch upstream port 1002:1478",
            VENDOR_AMD,
            0x1478,
            PortType::UpstreamSwitchPort,
            link(4, 16, 3, 4),
        ),
    );
    let dsp = port(
        fabric,
        Some(usp),
        SwitchPort::new(
            "AMD switch downstream port 1002:1479",
            VENDOR_AMD,
            0x1479,
            PortType::DownstreamSwitchPort,
            gen4x16(),
        ),
    );
    let b = ConfigBuilder::new(VENDOR_AMD, 0x744C, CLASS_VGA, 0xC8, false)
        .multifunction()
        .interrupt_pin(1)
        .pm_cap(PM_AT)
        .pcie_cap(PCIE_AT, PortType::Endpoint, true, gen4x16())
        .aer_cap(AER_AT)
        // §5: REBAR on BAR0; default 256 MiB, up to 32 GiB (encodings 8..=15).
        .rebar_cap(REBAR_AT, 0, 8..=15, 8);
    let bars = [
        mem(256 * MIB, true, true, Backing::Vram),
        UPPER,
        // §5: BAR2 doorbells 2 MiB, BAR5 MMIO 1 MiB.
        mem(2 * MIB, true, true, Backing::Plain),
        UPPER,
        (BarSlot::Io { size: 256 }, None),
        mem(MIB, false, false, Backing::Mmio),
    ];
    let rebar = Some(Rebar { cap: REBAR_AT, bar: 0 });
    let gpu = GpuFunction::new("GPU 1002:744C (Navi 31)", b, bars, rebar, vram_size);
    let g = fabric.attach(Some(dsp), 0, 0, Box::new(gpu));
    fabric.attach(Some(dsp), 0, 1, Box::new(HdmiAudio::new(VENDOR_AMD, 0xAB30)));
    g
}

/// NVIDIA GA102 (RTX 3090): GPU and HDMI audio directly in the slot.
fn ga102(fabric: &mut Fabric, slot: FnId, vram_size: u64) -> FnId {
    let b = ConfigBuilder::new(VENDOR_NVIDIA, 0x2204, CLASS_VGA, 0xA1, false)
        .multifunction()
        .interrupt_pin(1)
        .pm_cap(PM_AT)
        .pcie_cap(PCIE_AT, PortType::Endpoint, true, link(4, 16, 3, 4))
        .aer_cap(AER_AT)
        // REBAR on BAR1 (VRAM); 64 MiB..32 GiB supported `[U]`, default 256 MiB.
        .rebar_cap(REBAR_AT, 1, 6..=15, 8);
    let bars = [
        // BAR0 MMIO 16 MiB; GA102 has no doorbell BAR in this model.
        mem(16 * MIB, false, false, Backing::Mmio),
        mem(256 * MIB, true, true, Backing::Vram),
        UPPER,
        mem(32 * MIB, true, true, Backing::Plain),
        UPPER,
        (BarSlot::Io { size: 128 }, None),
    ];
    let rebar = Some(Rebar { cap: REBAR_AT, bar: 1 });
    let gpu = GpuFunction::new("GPU 10DE:2204 (GA102)", b, bars, rebar, vram_size);
    let g = fabric.attach(Some(slot), 0, 0, Box::new(gpu));
    fabric.attach(Some(slot), 0, 1, Box::new(HdmiAudio::new(VENDOR_NVIDIA, 0x1AEF)));
    g
}
