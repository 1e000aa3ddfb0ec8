//! `egpu bench link DEVICE`: what each link operation costs — round trips (on every link that
//! has messages), USB transfers and bytes on the wire (on the USB bridge), wall time and the
//! host's own CPU time. On the emulated bridge the transport has no
//! latency, and the time spent inside the emulator (the "device") is measured and subtracted,
//! so what remains is the cost of our protocol stack on the host.

use std::time::{Duration, Instant};

use clap::Args;
use egpu::link::{
    format_size, BarMmio, EmulatedCopyEngine, LinkCounters, LinkError, LinkStats, OpenLink,
};

use crate::demo::{largest_prefetchable, mmio_bar, pattern};
use crate::device::{self, DeviceArgs};
use crate::error::CliError;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// MiB moved by each streaming and DMA measurement, 1 to 65536 (the emulated eGPU holds
    /// the data in host memory: at most 1024 there).
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
    pub size_mib: usize,
    /// Operations per single-TLP measurement, 1 to 1000000.
    #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub ops: usize,
}

/// The emulated VRAM lives in host memory; more than this risks the OOM killer on small machines.
const EMULATED_MAX_MIB: usize = 1024;

/// 1 GiB at a 10 Gb/s line rate (the ASM2464PD on USB 3.2 Gen 2).
const WIRE_SECONDS_PER_GIB_10G: f64 = (1u64 << 30) as f64 * 8.0 / 10e9;

struct Row {
    name: String,
    ops: u64,
    bytes: u64,
    stats: LinkStats,
    /// `None` on a link that counts nothing (mapped BARs).
    counters: Option<LinkCounters>,
    wall: Duration,
    host_cpu: Option<Duration>,
}

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let target = args.device.target()?;
    if matches!(target, egpu::DeviceName::Emu(_)) && args.size_mib > EMULATED_MAX_MIB {
        return Err(CliError::Usage(format!(
            "--size-mib {} is more than the emulated eGPU can hold in host memory; allowed 1 to {EMULATED_MAX_MIB}",
            args.size_mib
        )));
    }
    let mut bridge = device::open(&target)?;
    let topology = bridge.bring_up()?;
    let gpu = topology.gpu().ok_or(LinkError::NoGpu)?.clone();
    let vram = largest_prefetchable(&gpu).ok_or_else(|| {
        CliError::Usage(format!("{} has no prefetchable BAR to stream into", gpu.bdf))
    })?;
    let size = (args.size_mib << 20).min(vram.size as usize);
    let ops = args.ops.max(1);
    // The USB bridge's rows name the transfers each operation takes; other links get plain
    // names.
    let usb = bridge.is_usb();
    let label = |usb_name: &str, plain: &str| if usb { usb_name } else { plain }.to_string();
    let what = match bridge.remote_info() {
        Some(remote) => format!(
            "remote link to {}{}, {}",
            remote.kind,
            if remote.emulated { " (emulated)" } else { "" },
            remote.channel
        ),
        None if bridge.is_emulated() => "emulated, zero-latency transport".into(),
        None => "real hardware".into(),
    };
    println!(
        "link benchmark on {} ({what}), GPU {} at {}; {} per streaming run",
        bridge.name(),
        gpu.name(),
        gpu.bdf,
        format_size(size as u64)
    );
    let mut rows = Vec::new();

    rows.push(measure(
        &mut bridge,
        &label("config read (F0 CfgRd + F0 IN)", "config read"),
        ops as u64,
        0,
        |b| {
            for _ in 0..ops {
                b.link().config_read32(gpu.bdf, 0)?;
            }
            Ok(())
        },
    )?);
    let name = label("checked dword read (F0 MRd + F0 IN)", "checked dword read");
    rows.push(measure(&mut bridge, &name, ops as u64, 0, |b| {
        for i in 0..ops {
            b.link().mem_read32(vram.address + 4 * i as u64)?;
        }
        Ok(())
    })?);
    rows.push(measure(
        &mut bridge,
        &label("posted dword write (F0 MWr)", "posted dword write"),
        ops as u64,
        0,
        |b| {
            for i in 0..ops {
                b.link().mem_write(vram.address + 4 * i as u64, 4, i as u32)?;
            }
            b.link().flush()
        },
    )?);

    let call = 64usize << 20;
    let source = pattern(call.min(size), 7);
    rows.push(measure(
        &mut bridge,
        &label("streaming write (F0 mode 1), 64 MiB per call", "streaming write, 64 MiB per call"),
        1,
        size as u64,
        |b| {
            let mut offset = 0;
            while offset < size {
                let len = source.len().min(size - offset);
                BarMmio::new(b.link(), vram).write_bytes(offset as u64, source.slice(..len))?;
                offset += len;
            }
            b.link().flush()
        },
    )?);

    let read_call = bridge.stream_chunk();
    rows.push(measure(
        &mut bridge,
        &if usb {
            "streaming read (F0 mode 2), 1 MiB per call".to_string()
        } else {
            format!("streaming read, {} per call", format_size(read_call as u64))
        },
        1,
        size as u64,
        |b| {
            let mut offset = 0;
            while offset < size {
                let len = read_call.min(size - offset);
                let data = BarMmio::new(b.link(), vram).read(offset as u64, len)?;
                std::hint::black_box(&data);
                offset += len;
            }
            Ok(())
        },
    )?);

    // Two 256 KiB windows of GPU-visible memory (bridge SRAM slots 0-15 and 16-31), used in
    // turn as the copy pipeline does.
    let window = 256usize << 10;
    let staging = pattern(window, 9);
    let pieces = size.div_ceil(window) as u64;
    let windows =
        [bridge.link().dma_alloc(window as u64)?, bridge.link().dma_alloc(window as u64)?];
    rows.push(measure(
        &mut bridge,
        &label("SRAM DMA write (F2 + bulk OUT), 256 KiB windows", "DMA write, 256 KiB windows"),
        pieces,
        pieces * window as u64,
        |b| {
            for piece in 0..pieces {
                b.link().dma_write(&windows[piece as usize % 2], 0, staging.clone())?;
            }
            b.link().flush()
        },
    )?);

    // Where the host reads GPU-visible memory directly no release is needed; elsewhere only
    // the emulator's copy engine can make it here.
    if bridge.has_emulated_gpu() || bridge.link().dma_info().host_reads_directly {
        let mmio =
            mmio_bar(&gpu).ok_or_else(|| CliError::Usage("the GPU has no MMIO BAR".into()))?;
        let engine = EmulatedCopyEngine { mmio };
        rows.push(measure(
            &mut bridge,
            &label("SRAM DMA read (F2 + bulk IN, GPU release), 256 KiB", "DMA read, 256 KiB"),
            pieces,
            pieces * window as u64,
            |b| {
                for _ in 0..pieces {
                    let pending = b.link().dma_read_begin(&windows[0], 0, window)?;
                    if let Some(release) = pending.release {
                        engine.fence(b.link(), release.bus_address, release.value)?;
                    }
                    let data = b.link().dma_read_finish(pending)?;
                    std::hint::black_box(&data);
                }
                Ok(())
            },
        )?);
    } else {
        println!("(SRAM DMA read skipped: the GPU must release it, which needs the GPU driver's copy engine)");
    }

    print_rows(&rows, usb);
    if rows.iter().all(|row| row.counters.is_none()) {
        println!(
            "round trips: not counted on this link ({}): its BARs are mapped into this process, so accesses are loads and stores, not messages",
            bridge.link().kind()
        );
    }
    Ok(())
}

fn measure(
    bridge: &mut OpenLink,
    name: &str,
    ops: u64,
    bytes: u64,
    body: impl FnOnce(&mut OpenLink) -> Result<(), LinkError>,
) -> Result<Row, CliError> {
    bridge.reset_device_time();
    let before = bridge.stats();
    let counters_before = bridge.counters();
    let cpu_before = process_cpu_time();
    let start = Instant::now();
    body(bridge)?;
    let wall = start.elapsed();
    let stats = bridge.stats() - before;
    let counters = bridge.counters().zip(counters_before).map(|(after, before)| after - before);
    let host_cpu = match bridge.device_time() {
        // Single-threaded emulation: every moment not spent in the emulator is host work.
        Some(device_time) => Some(wall.saturating_sub(device_time)),
        None => match (cpu_before, process_cpu_time()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
    };
    Ok(Row { name: name.to_string(), ops, bytes, stats, counters, wall, host_cpu })
}

/// A count for the table, or "n/a" where the link counts nothing.
fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| v.to_string())
}

fn print_rows(rows: &[Row], usb: bool) {
    // The USB bridge shows its transfers; other links their requests and bytes.
    let (requests, bytes) = if usb { ("USB xfers", "wire bytes") } else { ("requests", "bytes") };
    println!(
        "\n{:<52} {:>9} {:>12} {:>12} {:>11} {:>11} {:>13}",
        "operation", "ops", requests, bytes, "round trips", "wall", "host CPU"
    );
    for row in rows {
        let (requests, bytes) = if usb {
            (
                row.stats.transfers().to_string(),
                (row.stats.bytes_out + row.stats.bytes_in).to_string(),
            )
        } else {
            (
                count(row.counters.map(|c| c.requests)),
                count(row.counters.map(|c| c.bytes_out + c.bytes_in)),
            )
        };
        println!(
            "{:<52} {:>9} {:>12} {:>12} {:>11} {:>11} {:>13}",
            row.name,
            row.ops,
            requests,
            bytes,
            count(row.counters.map(|c| c.round_trips)),
            format!("{:.1} ms", row.wall.as_secs_f64() * 1e3),
            row.host_cpu
                .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
                .unwrap_or("n/a".into()),
        );
    }
    println!();
    for row in rows {
        let Some(counters) = row.counters else { continue };
        if row.bytes == 0 {
            let per_op = counters.round_trips as f64 / row.ops as f64;
            println!("{:<52} {per_op:.2} round trips/op", row.name);
        } else {
            let per_256k = counters.round_trips as f64 * f64::from(256u32 << 10) / row.bytes as f64;
            println!("{:<52} {per_256k:.2} round trips per 256 KiB", row.name);
        }
    }
    if !usb {
        return;
    }
    println!();
    for row in rows {
        if row.bytes == 0 {
            let per_op = row.wall.as_secs_f64() * 1e6 / row.ops as f64;
            println!(
                "{:<52} {:.2} USB transfers/op, {:.2} µs/op wall",
                row.name,
                row.stats.transfers() as f64 / row.ops as f64,
                per_op
            );
            continue;
        }
        let gib = row.bytes as f64 / (1u64 << 30) as f64;
        let per_256k = row.stats.transfers() as f64 * f64::from(256u32 << 10) / row.bytes as f64;
        let mut line = format!("{:<52} {:.2} USB transfers per 256 KiB", row.name, per_256k);
        if let Some(cpu) = row.host_cpu {
            let per_gib = cpu.as_secs_f64() / gib;
            line += &format!(
                ", host CPU {:.1} ms/GiB = {:.1}% of the 10 Gb/s wire time ({:.0} ms/GiB)",
                per_gib * 1e3,
                per_gib / WIRE_SECONDS_PER_GIB_10G * 100.0,
                WIRE_SECONDS_PER_GIB_10G * 1e3
            );
        }
        println!("{line}");
    }
}

/// User + system CPU time of this process.
#[cfg(unix)]
fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer we pass, which points at
    // properly sized, writable memory; we read it only when the call reports success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let to_duration = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    Some(to_duration(usage.ru_utime) + to_duration(usage.ru_stime))
}

#[cfg(not(unix))]
fn process_cpu_time() -> Option<Duration> {
    None
}
