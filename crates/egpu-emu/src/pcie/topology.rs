//! The functions behind the bridge for each [`GpuKind`], as data (§1.3).
//!
//! bus 0 dev 0: ASMedia switch upstream port; bus 1 dev 0: ASMedia downstream port (§1.3:
//! "the fw repo's scan shows an ASM2461 switch"; the device ID is not given, so both ports use
//! 0x2461 `[U]`). Navi 31 then has its own switch 1002:1478 / 1002:1479 and the GPU on bus 4;
//! GA102 sits directly on bus 2 (PR #17369 `gpu_bus=2`).

use super::config_space::{ConfigBuilder, LinkInfo, PortType};
use super::{Attach, BarRole, BarSlot, Fabric, FnId, Function, Rebar};
use crate::config::GpuKind;
use crate::sparse::SparseMem;

const CLASS_BRIDGE_PCI: u32 = 0x06_04_00;
const CLASS_VGA: u32 = 0x03_00_00;
const CLASS_HDA: u32 = 0x04_03_00;
const VENDOR_ASMEDIA: u16 = 0x1B21;
const VENDOR_AMD: u16 = 0x1002;
const VENDOR_NVIDIA: u16 = 0x10DE;

const PM_AT: u16 = 0x48;
const PCIE_AT: u16 = 0x58;
const AER_AT: u16 = 0x100;
/// REBAR sits after AER, so a driver must walk the extended list rather than assume 0x100.
const REBAR_AT: u16 = 0x200;

const MIB: u64 = 1 << 20;

fn link(max_speed: u8, max_width: u8, cur_speed: u8, cur_width: u8) -> LinkInfo {
    LinkInfo { max_speed, max_width, cur_speed, cur_width }
}

fn bridge(label: &str, vendor: u16, device: u16, port: PortType, l: LinkInfo) -> Function {
    let cfg = ConfigBuilder::new(vendor, device, CLASS_BRIDGE_PCI, 0x01, true)
        .pm_cap(PM_AT)
        .pcie_cap(PCIE_AT, port, false, l)
        .finish();
    Function {
        label: label.to_string(),
        cfg,
        children: Some(Vec::new()),
        bars: [BarSlot::Unused; 6],
        rebar: None,
        crs_remaining: 0,
        plain: (0..6).map(|_| None).collect(),
    }
}

fn endpoint(
    label: &str,
    builder: ConfigBuilder,
    bars: [BarSlot; 6],
    rebar: Option<Rebar>,
) -> Function {
    let mut f = Function {
        label: label.to_string(),
        cfg: builder.finish(),
        children: None,
        bars,
        rebar,
        crs_remaining: 0,
        plain: (0..6).map(|_| None).collect(),
    };
    for (i, slot) in bars.iter().enumerate() {
        if let BarSlot::Mem { role: BarRole::Plain, .. } = slot {
            f.plain[i] = Some(SparseMem::new(f.bar_size(i)));
        }
    }
    // BAR type bits are part of the reset state.
    f.remask_bars();
    f.cfg.capture_reset_image();
    f
}

fn mem(size: u64, is64: bool, prefetchable: bool, role: BarRole) -> BarSlot {
    BarSlot::Mem { size, is64, prefetchable, role }
}

fn audio(vendor: u16, device: u16) -> Function {
    let b = ConfigBuilder::new(vendor, device, CLASS_HDA, 0x00, false)
        .interrupt_pin(2)
        .pm_cap(PM_AT)
        .pcie_cap(PCIE_AT, PortType::Endpoint, false, link(4, 16, 4, 16));
    let bars = [
        mem(16 << 10, false, false, BarRole::Plain),
        BarSlot::Unused,
        BarSlot::Unused,
        BarSlot::Unused,
        BarSlot::Unused,
        BarSlot::Unused,
    ];
    endpoint(&format!("HDMI audio {vendor:04X}:{device:04X}"), b, bars, None)
}

/// Build the fabric for `gpu`.
pub(crate) fn build(gpu: GpuKind) -> Fabric {
    let mut funcs: Vec<Function> = Vec::new();
    let mut push = |f: Function| -> FnId {
        funcs.push(f);
        funcs.len() - 1
    };
    let asm_up = push(bridge(
        "ASMedia switch upstream port 1B21:2461",
        VENDOR_ASMEDIA,
        0x2461,
        PortType::UpstreamSwitchPort,
        link(4, 4, 3, 4),
    ));
    let asm_down = push(bridge(
        "ASMedia switch downstream port 1B21:2461",
        VENDOR_ASMEDIA,
        0x2461,
        PortType::DownstreamSwitchPort,
        link(4, 4, 3, 4),
    ));
    let mut path = vec![asm_up, asm_down];
    let mut attach: Vec<(FnId, Attach)> = vec![(asm_up, Attach { dev: 0, func: 0, id: asm_down })];

    let gpu = match gpu {
        GpuKind::None => None,
        GpuKind::Navi31 => {
            let usp = push(bridge(
                "AMD switch upstream port 1002:1478",
                VENDOR_AMD,
                0x1478,
                PortType::UpstreamSwitchPort,
                link(4, 16, 3, 4),
            ));
            let dsp = push(bridge(
                "AMD switch downstream port 1002:1479",
                VENDOR_AMD,
                0x1479,
                PortType::DownstreamSwitchPort,
                link(4, 16, 4, 16),
            ));
            let b = ConfigBuilder::new(VENDOR_AMD, 0x744C, CLASS_VGA, 0xC8, false)
                .multifunction()
                .interrupt_pin(1)
                .pm_cap(PM_AT)
                .pcie_cap(PCIE_AT, PortType::Endpoint, true, link(4, 16, 4, 16))
                .aer_cap(AER_AT)
                // §5: REBAR on BAR0; default 256 MiB, up to 32 GiB (encodings 8..=15).
                .rebar_cap(REBAR_AT, 0, 8..=15, 8);
            let bars = [
                mem(256 * MIB, true, true, BarRole::Vram),
                BarSlot::Upper,
                mem(2 * MIB, true, true, BarRole::Doorbell),
                BarSlot::Upper,
                BarSlot::Io { size: 256 },
                mem(MIB, false, false, BarRole::Mmio),
            ];
            let g = push(endpoint(
                "GPU 1002:744C (Navi 31)",
                b,
                bars,
                Some(Rebar { cap: REBAR_AT, bar: 0 }),
            ));
            let a = push(audio(VENDOR_AMD, 0xAB30));
            attach.push((asm_down, Attach { dev: 0, func: 0, id: usp }));
            attach.push((usp, Attach { dev: 0, func: 0, id: dsp }));
            attach.push((dsp, Attach { dev: 0, func: 0, id: g }));
            attach.push((dsp, Attach { dev: 0, func: 1, id: a }));
            path.extend([usp, dsp]);
            Some(g)
        }
        GpuKind::Ga102 => {
            let b = ConfigBuilder::new(VENDOR_NVIDIA, 0x2204, CLASS_VGA, 0xA1, false)
                .multifunction()
                .interrupt_pin(1)
                .pm_cap(PM_AT)
                .pcie_cap(PCIE_AT, PortType::Endpoint, true, link(4, 16, 3, 4))
                .aer_cap(AER_AT)
                // REBAR on BAR1 (VRAM); 64 MiB..32 GiB supported `[U]`, default 256 MiB.
                .rebar_cap(REBAR_AT, 1, 6..=15, 8);
            let bars = [
                mem(16 * MIB, false, false, BarRole::Mmio),
                mem(256 * MIB, true, true, BarRole::Vram),
                BarSlot::Upper,
                mem(32 * MIB, true, true, BarRole::Plain),
                BarSlot::Upper,
                BarSlot::Io { size: 128 },
            ];
            let g = push(endpoint(
                "GPU 10DE:2204 (GA102)",
                b,
                bars,
                Some(Rebar { cap: REBAR_AT, bar: 1 }),
            ));
            let a = push(audio(VENDOR_NVIDIA, 0x1AEF));
            attach.push((asm_down, Attach { dev: 0, func: 0, id: g }));
            attach.push((asm_down, Attach { dev: 0, func: 1, id: a }));
            Some(g)
        }
    };
    for (parent, child) in attach {
        if let Some(children) = funcs[parent].children.as_mut() {
            children.push(child);
        }
    }
    Fabric { funcs, root: vec![Attach { dev: 0, func: 0, id: asm_up }], gpu, gpu_path: path }
}
