//! What the remote link costs on loopback: a server thread serving the emulator's in-process
//! Navi 31, a client measuring latency per synchronous operation and streaming throughput
//! (Noise NN; with EGPU_SHARE_KEY set, NNpsk0). Build with --release for meaningful numbers.

use std::time::Instant;

use bytes::Bytes;
use egpu_emu::{EmulatedFabric, GpuKind};
use egpu_hal::PcieLink;
use egpu_link::pcie::fabric::{self, FabricOptions};
use egpu_remote::{ClientConfig, Key, RemoteLink, Server, ServerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = Key::from_env()?;
    let fabric = EmulatedFabric::with_gpu(GpuKind::Navi31);
    let config = ServerConfig { key: key.clone(), ..ServerConfig::default() };
    let server = Server::bind("127.0.0.1:0".parse()?, config)?;
    let port = server.local_addr().port();
    let mut local = fabric.link();
    std::thread::spawn(move || server.serve(&mut local));
    let mut link =
        RemoteLink::connect("127.0.0.1", port, &ClientConfig { key, ..ClientConfig::default() })?;
    let topology = fabric::bring_up(&mut link, &FabricOptions::default())?;
    let gpu = topology.gpu().ok_or("no GPU")?;
    let vram = gpu.bar(0).ok_or("no BAR0")?.address;
    println!("remote link on loopback, {}", link.channel());

    let ops = 5000;
    let start = Instant::now();
    for _ in 0..ops {
        link.config_read32(gpu.bdf, 0)?;
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ops);
    println!("config read            {us:8.1} µs/op (1 round trip)");
    let start = Instant::now();
    for i in 0..ops {
        link.mem_write(vram + 4 * u64::from(i), 4, i)?;
    }
    link.flush()?;
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ops);
    println!("posted dword write     {us:8.2} µs/op ({ops} writes + 1 flush = 1 round trip)");

    let len = 256usize << 20;
    let data: Bytes = (0..len).map(|i| i as u8).collect::<Vec<u8>>().into();
    let start = Instant::now();
    link.mem_write_bytes(vram, data.clone())?;
    link.flush()?;
    let s = start.elapsed().as_secs_f64();
    println!("streaming write        {:8.0} MB/s (256 MiB, 1 round trip)", len as f64 / s / 1e6);
    let start = Instant::now();
    let back = link.mem_read(vram, len)?;
    let s = start.elapsed().as_secs_f64();
    assert_eq!(back, data);
    println!("streaming read         {:8.0} MB/s (256 MiB, 1 round trip)", len as f64 / s / 1e6);
    // The same through the in-process link directly: what the emulator itself costs.
    let mut direct = fabric.link();
    let start = Instant::now();
    direct.mem_write_bytes(vram, data.clone())?;
    let w = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let back = direct.mem_read(vram, len)?;
    let r = start.elapsed().as_secs_f64();
    assert_eq!(back, data);
    println!(
        "in-process, no remote  {:8.0} MB/s write, {:.0} MB/s read (the emulator's own cost)",
        len as f64 / w / 1e6,
        len as f64 / r / 1e6
    );
    let stats = link.stats();
    println!(
        "socket bytes out/in    {} / {} ({} round trips in all)",
        stats.wire.bytes_out, stats.wire.bytes_in, stats.round_trips
    );
    Ok(())
}
