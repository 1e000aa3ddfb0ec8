//! `egpu demo`: the emulated eGPU end to end — open the bridge, bring up PCIe, then move data
//! host → BAR → host and host → SRAM → GPU → SRAM → host, verifying every byte.

use bytes::Bytes;
use egpu::link::{
    format_size, BarKind, BarMmio, BarRegion, EmulatedCopyEngine, Function, LinkError, LinkStats,
    Place,
};
use egpu::DeviceName;

use crate::device;
use crate::error::CliError;

pub fn run(gpu: &str) -> Result<(), CliError> {
    let card = device::emulated_card(gpu)?;
    println!("== egpu demo: an emulated ASM2464PD bridge with an emulated GPU behind it ==\n");
    let mut bridge = device::open(&DeviceName::Emu(card))?;
    let info = bridge.bridge_info();
    println!(
        "opened {} ({:04x}:{:04x}, \"{}\"), PCIe link up (LTSSM 0x{:02x})",
        info.name,
        info.vendor_id,
        info.product_id,
        info.product.as_deref().unwrap_or("?"),
        bridge.ltssm()?
    );
    let topology = bridge.bring_up()?;
    println!("\nPCIe topology:\n{topology}");
    let gpu = topology.gpu().ok_or(LinkError::NoGpu)?.clone();
    let vram = largest_prefetchable(&gpu)
        .ok_or_else(|| CliError::Verify(format!("{} has no prefetchable BAR", gpu.bdf)))?;
    let mmio =
        mmio_bar(&gpu).ok_or_else(|| CliError::Verify(format!("{} has no MMIO BAR", gpu.bdf)))?;
    println!(
        "GPU {} at {}: VRAM aperture {} at {:#x}, registers at {:#x}\n",
        gpu.name(),
        gpu.bdf,
        format_size(vram.size),
        vram.address,
        mmio.address
    );

    // 1. Through the VRAM BAR with streaming TLPs.
    let before = bridge.stats();
    let sent = pattern(8 << 20, 1);
    BarMmio::new(bridge.link(), vram).write_bytes(0, sent.clone())?;
    let back = BarMmio::new(bridge.link(), vram).read(0, sent.len())?;
    verify("VRAM BAR round trip", &sent, &back)?;
    report("8 MiB host → VRAM BAR → host (F0 streaming write + read)", bridge.stats() - before);

    // 2. Register-style writes, coalesced: 256 adjacent dword writes leave as one stream.
    let before = bridge.stats();
    let mut bar = BarMmio::new(bridge.link(), vram);
    let mut batch = bar.batch();
    for i in 0..256u32 {
        batch.write32(0x100_0000 + 4 * u64::from(i), i.wrapping_mul(0x9E37_79B9))?;
    }
    batch.submit()?;
    let back = bar.read(0x100_0000, 1024)?;
    let expected: Vec<u8> =
        (0..256u32).flat_map(|i| i.wrapping_mul(0x9E37_79B9).to_le_bytes()).collect();
    verify("coalesced dword writes", &expected, &back)?;
    report("256 dword writes coalesced + read back", bridge.stats() - before);

    // 3. Through GPU-visible memory (the bridge SRAM, F2 DMA) and the GPU's copy engine.
    let engine = EmulatedCopyEngine { mmio };
    let data = pattern(256 << 10, 2);
    let window = bridge.link().dma_alloc(data.len() as u64)?;
    let before = bridge.stats();
    bridge.link().dma_write(&window, 0, data.clone())?;
    engine.copy(
        bridge.link(),
        Place::Bus(window.bus_address),
        Place::Vram(64 << 20),
        data.len() as u32,
    )?;
    let landed = BarMmio::new(bridge.link(), vram).read(64 << 20, data.len())?;
    verify("host → SRAM → GPU copy → VRAM", &data, &landed)?;
    report(
        "256 KiB host → SRAM (F2) → GPU DMA → VRAM, checked through the BAR",
        bridge.stats() - before,
    );

    let before = bridge.stats();
    let pending = bridge.link().dma_read_begin(&window, 0, data.len())?;
    engine.copy(
        bridge.link(),
        Place::Vram(64 << 20),
        Place::Bus(window.bus_address),
        data.len() as u32,
    )?;
    if let Some(release) = pending.release {
        engine.fence(bridge.link(), release.bus_address, release.value)?;
    }
    bridge.link().flush()?;
    let back = bridge.link().dma_read_finish(pending)?;
    verify("VRAM → GPU DMA → SRAM → host", &data, &back)?;
    report(
        "256 KiB VRAM → GPU DMA → SRAM → host (F2 read released by a GPU write to the CQ page)",
        bridge.stats() - before,
    );
    let status = engine.status(bridge.link())?;
    if status != 0 {
        return Err(CliError::Verify(format!("the GPU copy engine reported status {status}")));
    }
    println!("\nall data verified.");
    Ok(())
}

/// The GPU's largest prefetchable memory BAR: the VRAM aperture.
pub fn largest_prefetchable(gpu: &Function) -> Option<BarRegion> {
    largest_memory_bar(gpu, true)
}

/// The GPU's largest non-prefetchable memory BAR: its registers.
pub fn mmio_bar(gpu: &Function) -> Option<BarRegion> {
    largest_memory_bar(gpu, false)
}

fn largest_memory_bar(gpu: &Function, prefetchable: bool) -> Option<BarRegion> {
    gpu.bars
        .iter()
        .filter(|bar| bar.prefetchable == prefetchable && bar.kind != BarKind::Io)
        .max_by_key(|bar| bar.size)
        .map(|bar| BarRegion { address: bar.address, size: bar.size })
}

/// Deterministic, position-dependent bytes, so a misplaced chunk cannot pass as right.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn verify(what: &str, expected: &[u8], actual: &[u8]) -> Result<(), CliError> {
    if expected.len() != actual.len() {
        return Err(CliError::Verify(format!(
            "{what}: {} bytes came back, {} were sent",
            actual.len(),
            expected.len()
        )));
    }
    if let Some(at) = expected.iter().zip(actual).position(|(a, b)| a != b) {
        return Err(CliError::Verify(format!(
            "{what}: first difference at byte {at:#x} (sent {:#04x}, got {:#04x})",
            expected[at], actual[at]
        )));
    }
    Ok(())
}

fn report(step: &str, stats: LinkStats) {
    println!(
        "ok  {step}\n    {} USB transfers ({} control OUT, {} control IN, {} bulk OUT, {} bulk IN), {} bytes out, {} bytes in",
        stats.transfers(),
        stats.control_out,
        stats.control_in,
        stats.bulk_out,
        stats.bulk_in,
        stats.bytes_out,
        stats.bytes_in
    );
}
