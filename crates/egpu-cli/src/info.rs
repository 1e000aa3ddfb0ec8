//! `egpu info DEVICE`: firmware, link state and the PCIe topology.

use egpu_link::asm2464::wire::LTSSM_L0;

use crate::device::{self, DeviceArgs};
use crate::error::CliError;

pub fn run(args: &DeviceArgs) -> Result<(), CliError> {
    if let Some(index) = args.device.as_deref().and_then(crate::gpu::parse_nv) {
        return crate::gpu::info(index);
    }
    let target = args.target()?;
    let mut bridge = device::open(&target)?;
    let info = bridge.link.info().clone();
    println!("bridge      {} ({:04x}:{:04x})", info.name, info.vendor_id, info.product_id);
    println!(
        "firmware    {} by {}, serial {}",
        info.product.as_deref().unwrap_or("?"),
        info.manufacturer.as_deref().unwrap_or("?"),
        info.serial.as_deref().unwrap_or("?")
    );
    if let Some(speed) = info.speed {
        println!("usb         {speed}");
    }
    let ltssm = bridge.link.ltssm()?;
    println!(
        "pcie link   LTSSM 0x{ltssm:02x}{}",
        if ltssm == LTSSM_L0 { " (L0: up)" } else { " (down)" }
    );
    if let Ok((millivolts, milliamps)) = bridge.link.power_monitor() {
        println!(
            "power       {:.2} V, {:.2} A",
            f64::from(millivolts) / 1000.0,
            f64::from(milliamps) / 1000.0
        );
    }
    let topology = bridge.bring_up()?;
    println!("\nPCIe topology behind the bridge:");
    print!("{topology}");
    match topology.gpu() {
        Some(gpu) => println!("\nGPU at {}: {}", gpu.bdf, gpu.name()),
        None => println!("\nno GPU found behind the bridge"),
    }
    Ok(())
}
