//! `egpu list`: the bridges on the USB bus.

use std::time::Duration;

use egpu_link::asm2464::wire::{xdata_read_setup, LTSSM_L0, XDATA_LTSSM};
use egpu_usb::{discover, Transfer, UsbTransport};

use crate::error::CliError;

pub fn run(emulated: bool) -> Result<(), CliError> {
    let bridges = discover::list_bridges()?;
    if bridges.is_empty() {
        println!("No USB bridges found (looked for ASM2464PD bridges: custom firmware add1:0001 / 3801:0001, stock 174c:2464 / 174c:2463).");
        if !emulated {
            println!("Try the emulated eGPU: `egpu list --emulated`, `egpu info --emulated`, `egpu demo`.");
        }
    }
    for bridge in &bridges {
        println!(
            "{:<12} {:04x}:{:04x}  {:<22} serial {:<10} {}",
            bridge.name,
            bridge.vendor_id,
            bridge.product_id,
            bridge.product.as_deref().unwrap_or("?"),
            bridge.serial.as_deref().unwrap_or("?"),
            bridge.speed.map(|s| s.to_string()).unwrap_or_else(|| "speed unknown".into()),
        );
        println!("             firmware: {}", bridge.firmware);
        if let Some(advice) = bridge.firmware.advice() {
            println!("             {advice}");
        }
        if bridge.firmware.is_usable() {
            println!("             {}", link_state(&bridge.name));
        }
    }
    crate::gpu::list();
    if emulated {
        let mut bridge =
            crate::device::open(&crate::device::Target::Emulated(egpu_emu::GpuKind::Navi31))?;
        let ltssm = bridge.link.ltssm()?;
        let info = bridge.link.info().clone();
        println!(
            "{:<12} {:04x}:{:04x}  {:<22} serial {:<10} emulated, {}",
            "emu",
            info.vendor_id,
            info.product_id,
            info.product.as_deref().unwrap_or("?"),
            info.serial.as_deref().unwrap_or("?"),
            info.speed.map(|s| s.to_string()).unwrap_or_default()
        );
        println!(
            "             link: LTSSM 0x{ltssm:02x}{}; also emu:ga102, emu:none",
            if ltssm == LTSSM_L0 { " (L0, up)" } else { "" }
        );
    }
    Ok(())
}

/// The PCIe link state of a bridge, read without powering anything: one E4 read of the LTSSM
/// register (§1.2 of the bridge reference).
fn link_state(name: &str) -> String {
    let (mut transport, _lock) = match discover::open_bridge(name) {
        Ok(opened) => opened,
        Err(error) => return format!("link: unknown ({error})"),
    };
    let read = Transfer::ControlIn { setup: xdata_read_setup(XDATA_LTSSM, 0), length: 1 };
    match transport.transfer(read, Duration::from_secs(1)).map(|c| c.into_data()) {
        Ok(data) if data.first() == Some(&LTSSM_L0) => "link: PCIe up (LTSSM 0x78, L0)".into(),
        Ok(data) if !data.is_empty() => format!(
            "link: PCIe down (LTSSM 0x{:02x}); `egpu info {name}` powers the slot and trains it",
            data[0]
        ),
        Ok(_) => "link: unknown (empty reply to the LTSSM read)".into(),
        Err(error) => format!("link: unknown ({error})"),
    }
}
