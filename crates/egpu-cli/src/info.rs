//! `egpu info DEVICE`: for a bridge, its firmware, link state and the PCIe topology; for a GPU
//! behind a kernel driver, what the runtime reports.

use egpu::link::OpenLink;
use egpu::{Device, DeviceName, DeviceQuery};

use crate::device::{self, DeviceArgs};
use crate::error::CliError;

pub fn run(args: &DeviceArgs) -> Result<(), CliError> {
    let target = args.target()?;
    if matches!(target, DeviceName::Nv(_)) {
        return gpu_info(&target);
    }
    let mut bridge = device::open(&target)?;
    if bridge.remote_info().is_some() {
        return remote_info(&target, bridge);
    }
    let Some(info) = bridge.bridge_info() else {
        let topology = bridge.bring_up()?;
        println!("{} through the {} link:", target, bridge.link().kind());
        print!("{topology}");
        return Ok(());
    };
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
    let ltssm = bridge.ltssm()?;
    println!(
        "pcie link   LTSSM 0x{ltssm:02x}{}",
        if OpenLink::is_link_up(ltssm) { " (L0: up)" } else { " (down)" }
    );
    if let Ok((millivolts, milliamps)) = bridge.power_monitor() {
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

/// A device served by `egpu share`: the server, the channel and the topology behind it.
fn remote_info(target: &DeviceName, mut link: OpenLink) -> Result<(), CliError> {
    if let Some(remote) = link.remote_info() {
        println!("remote      {target} at {} ({})", remote.server, remote.channel);
        println!("serving     {}{}", remote.kind, if remote.emulated { " (emulated)" } else { "" });
    }
    let topology = link.bring_up()?;
    println!("\nPCIe topology behind the remote link:");
    print!("{topology}");
    match topology.gpu() {
        Some(gpu) => println!("\nGPU at {}: {}", gpu.bdf, gpu.name()),
        None => println!("\nno GPU found behind the remote link"),
    }
    Ok(())
}

/// A GPU the runtime opens itself (`nv:N`): its listing and its properties.
fn gpu_info(target: &DeviceName) -> Result<(), CliError> {
    let found = egpu::devices(&DeviceQuery::default());
    let entry = found.devices.iter().find(|entry| entry.name == *target).ok_or_else(|| {
        let notes = found.notes.join("; ");
        CliError::Usage(format!("no device {target}; `egpu list` shows what is attached ({notes})"))
    })?;
    println!("{}", entry.summary);
    for line in &entry.details {
        println!("{line}");
    }
    let device = Device::open(&target.to_string())?;
    let properties = device.properties();
    println!("architecture  {}", properties.architecture);
    println!("memory        {} MiB", properties.memory_bytes >> 20);
    println!("compute units {}", properties.compute_units);
    Ok(())
}
