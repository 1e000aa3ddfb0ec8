//! The Linux PCIe link (`pci:DOMAIN:BUS:DEV.FN`): a card in a PCIe or Thunderbolt slot of a
//! Linux machine, reached through sysfs (amd-driver.md §1.1, tinygrad's `PCIDevice`):
//!
//! - configuration space through `/sys/bus/pci/devices/<address>/config` (pread/pwrite);
//! - BARs mapped from `resourceN` (so [`PcieLink::map_range`] gives direct dword access, and
//!   the transaction methods are plain volatile loads and stores);
//! - GPU-visible host memory as locked pages whose physical addresses come from
//!   `/proc/self/pagemap`. That assumes bus address = physical address, i.e. no IOMMU
//!   translation (IOMMU off or passthrough): it needs root, and the device can then DMA to any
//!   physical address — a card (or a driver bug) can overwrite any memory of the machine.
//!   VFIO type-1 mappings would confine the device to the pages given to it; they are not
//!   implemented yet.
//!
//! A card bound to a kernel driver (amdgpu, nvidia) is refused with the command that unbinds
//! it; egpu never unbinds a driver itself.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;
use egpu_hal::{DmaInfo, DmaRegion, MappedRange, PendingDmaRead};
use memmap2::{MmapOptions, MmapRaw};

use crate::host_memory::MappedRegions;
use crate::pcie::fabric::{Bar, BarKind, Function, Topology};
use crate::pcie::{Bdf, PcieLink};
use crate::LinkError;

/// Where Linux lists PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Linux `IORESOURCE_*` flags in the sysfs `resource` file (include/linux/ioport.h).
const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x0010_0000;

/// The page size of `/proc/self/pagemap` entries.
const PAGE: usize = 4096;
/// A pagemap entry: bit 63 = present, bits 54:0 = page frame number (Documentation/admin-guide/mm/pagemap.rst).
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;

/// A PCI function's address: domain, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0–31.
    pub device: u8,
    /// Function number, 0–7.
    pub function: u8,
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

/// Turns a virtual address of this process into a physical one (the pagemap lookup), so tests
/// can stand in for `/proc/self/pagemap`.
pub trait PhysicalAddresses: Send {
    /// The physical address of the page holding `virtual_address`.
    fn physical(&mut self, virtual_address: usize) -> io::Result<u64>;
}

/// `/proc/self/pagemap` (needs root for the frame numbers; without it they read as 0).
pub struct Pagemap {
    file: File,
}

impl Pagemap {
    /// Open this process's pagemap.
    pub fn open() -> io::Result<Pagemap> {
        Ok(Pagemap { file: File::open("/proc/self/pagemap")? })
    }
}

impl PhysicalAddresses for Pagemap {
    fn physical(&mut self, virtual_address: usize) -> io::Result<u64> {
        let mut entry = [0u8; 8];
        self.file.read_exact_at(&mut entry, (virtual_address / PAGE * 8) as u64)?;
        let entry = u64::from_le_bytes(entry);
        let frame = entry & PAGEMAP_PFN_MASK;
        if entry & PAGEMAP_PRESENT == 0 || frame == 0 {
            return Err(io::Error::other(
                "the page is not present or its frame number is hidden (reading frame numbers \
                 from /proc/self/pagemap needs root)",
            ));
        }
        Ok(frame * PAGE as u64 + (virtual_address % PAGE) as u64)
    }
}

struct MappedBar {
    bar: Bar,
    map: Arc<MmapRaw>,
}

/// A PCIe function reached through Linux sysfs.
pub struct SysfsPciLink {
    address: PciAddress,
    bdf: Bdf,
    config: File,
    function: Function,
    bars: Vec<MappedBar>,
    physical: Box<dyn PhysicalAddresses>,
    host: MappedRegions,
}

fn io_error(op: String) -> impl FnOnce(io::Error) -> LinkError {
    LinkError::transport(op)
}

fn read_hex(path: &Path) -> Result<u64, LinkError> {
    let text = fs::read_to_string(path).map_err(io_error(format!("reading {}", path.display())))?;
    let digits = text.trim().trim_start_matches("0x");
    u64::from_str_radix(digits, 16).map_err(|_| {
        LinkError::Fabric(format!("{} holds {:?}, not a hex number", path.display(), text.trim()))
    })
}

/// Parse the sysfs `resource` file: one `start end flags` line (hex) per resource, the six
/// BARs first. Unused BARs read as zeros; the upper half of a 64-bit BAR has no line of its own
/// that is used.
pub fn parse_resources(text: &str) -> Result<Vec<Bar>, LinkError> {
    let mut bars = Vec::new();
    for (index, line) in text.lines().take(6).enumerate() {
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|field| u64::from_str_radix(field.trim_start_matches("0x"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                LinkError::Fabric(format!("resource line {index} is malformed: {line:?}"))
            })?;
        let [start, end, flags] = fields[..] else {
            return Err(LinkError::Fabric(format!(
                "resource line {index} has {} fields, expected start end flags",
                fields.len()
            )));
        };
        if start == 0 && end == 0 {
            continue;
        }
        if end < start {
            return Err(LinkError::Fabric(format!("resource {index} ends before it starts")));
        }
        let kind = if flags & IORESOURCE_IO != 0 {
            BarKind::Io
        } else if flags & IORESOURCE_MEM == 0 {
            continue;
        } else if flags & IORESOURCE_MEM_64 != 0 {
            BarKind::Mem64
        } else {
            BarKind::Mem32
        };
        bars.push(Bar {
            index: index as u8,
            kind,
            prefetchable: flags & IORESOURCE_PREFETCH != 0,
            size: end - start + 1,
            address: start,
        });
    }
    Ok(bars)
}

impl SysfsPciLink {
    /// Open the function at `address` under `/sys/bus/pci/devices`.
    pub fn open(address: PciAddress) -> Result<SysfsPciLink, LinkError> {
        let pagemap = Pagemap::open().map_err(io_error("opening /proc/self/pagemap".into()))?;
        Self::open_at(Path::new(SYSFS_PCI_DEVICES), address, Box::new(pagemap))
    }

    /// Open the function at `address` under `root` (a fake tree in tests), with `physical` for
    /// the physical addresses of GPU-visible memory.
    pub fn open_at(
        root: &Path,
        address: PciAddress,
        physical: Box<dyn PhysicalAddresses>,
    ) -> Result<SysfsPciLink, LinkError> {
        let dir: PathBuf = root.join(address.to_string());
        if !dir.is_dir() {
            return Err(LinkError::Fabric(format!(
                "no PCI function {address} (looked for {}); `lspci -D` lists the functions",
                dir.display()
            )));
        }
        if let Ok(driver) = fs::read_link(dir.join("driver")) {
            let driver = driver.file_name().map(|n| n.to_string_lossy().into_owned());
            let driver = driver.unwrap_or_default();
            return Err(LinkError::Busy {
                op: format!("opening pci:{address}"),
                reason: format!(
                    "the kernel driver {driver} owns it; egpu must not share a card with it and \
                     never unbinds one itself. Stop what uses the GPU, then as root: echo \
                     {address} > /sys/bus/pci/drivers/{driver}/unbind (`egpu setup` explains)"
                ),
            });
        }
        let vendor_id = read_hex(&dir.join("vendor"))? as u16;
        let device_id = read_hex(&dir.join("device"))? as u16;
        let class = (read_hex(&dir.join("class"))? & 0xFF_FFFF) as u32;
        let resources = fs::read_to_string(dir.join("resource"))
            .map_err(io_error(format!("reading {}/resource", dir.display())))?;
        let bar_list = parse_resources(&resources)?;
        let config = OpenOptions::new().read(true).write(true).open(dir.join("config")).map_err(
            io_error(format!("opening {}/config for writing (needs root)", dir.display())),
        )?;
        let mut bars = Vec::new();
        for bar in bar_list.iter().filter(|bar| bar.kind != BarKind::Io) {
            let path = dir.join(format!("resource{}", bar.index));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_error(format!("opening {} (needs root)", path.display())))?;
            let len = usize::try_from(bar.size).map_err(|_| {
                LinkError::Fabric(format!(
                    "BAR{} of {} bytes cannot be mapped",
                    bar.index, bar.size
                ))
            })?;
            let map = MmapOptions::new()
                .len(len)
                .map_raw(&file)
                .map_err(io_error(format!("mapping {}", path.display())))?;
            bars.push(MappedBar { bar: *bar, map: Arc::new(map) });
        }
        let bdf = Bdf::new(address.bus, address.device, address.function);
        let function = Function {
            bdf,
            vendor_id,
            device_id,
            class,
            revision: 0,
            header_type: 0,
            bars: bar_list,
            capabilities: Vec::new(),
            resizable_bars: Vec::new(),
            bridge: None,
            port_type: None,
        };
        Ok(SysfsPciLink {
            address,
            bdf,
            config,
            function,
            bars,
            physical,
            host: MappedRegions::default(),
        })
    }

    /// The function, with its BARs as the kernel assigned them (no fabric walk: the host's
    /// firmware and kernel set the fabric up).
    pub fn topology(&self) -> Topology {
        Topology { functions: vec![self.function.clone()] }
    }

    /// Where `op` of `len` bytes at bus `address` lands: a mapped BAR and the offset in it.
    fn locate(&self, op: &str, address: u64, len: usize) -> Result<(&MappedBar, usize), LinkError> {
        let end = address.checked_add(len as u64);
        self.bars
            .iter()
            .find(|mapped| {
                address >= mapped.bar.address
                    && end.is_some_and(|end| end <= mapped.bar.address + mapped.bar.size)
            })
            .map(|mapped| (mapped, (address - mapped.bar.address) as usize))
            .ok_or_else(|| LinkError::UnsupportedRequest {
                op: format!("{op} at {address:#x}: no BAR of pci:{} decodes it", self.address),
            })
    }

    fn check_own(&self, op: &str, bdf: Bdf, offset: u16, size: u8) -> Result<(), LinkError> {
        if bdf != self.bdf {
            return Err(LinkError::Config {
                op: op.into(),
                bdf,
                reason: format!("this link reaches only pci:{}", self.address),
            });
        }
        let aligned = matches!(size, 1 | 2 | 4) && usize::from(offset % 4) + usize::from(size) <= 4;
        if !aligned || offset >= 0x1000 {
            return Err(LinkError::Unaligned {
                op: format!("{op} of {bdf}"),
                address: offset.into(),
                len: size.into(),
            });
        }
        Ok(())
    }
}

impl PcieLink for SysfsPciLink {
    fn kind(&self) -> &'static str {
        "linux-pci"
    }

    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        self.check_own("config read", bdf, offset, size)?;
        let mut bytes = [0u8; 4];
        let part = &mut bytes[..usize::from(size)];
        self.config
            .read_exact_at(part, offset.into())
            .map_err(io_error(format!("config read of pci:{} at {offset:#x}", self.address)))?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        self.check_own("config write", bdf, offset, size)?;
        let bytes = value.to_le_bytes();
        self.config
            .write_all_at(&bytes[..usize::from(size)], offset.into())
            .map_err(io_error(format!("config write of pci:{} at {offset:#x}", self.address)))
    }

    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        if !address.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: "memory read".into(), address, len: 4 });
        }
        let (mapped, offset) = self.locate("memory read", address, 4)?;
        // SAFETY: `locate` checked offset + 4 <= the BAR's size, which is the mapping's length;
        // the mapping lives as long as `self`; device memory is read with one volatile access.
        Ok(unsafe { mapped.map.as_ptr().add(offset).cast::<u32>().read_volatile() })
    }

    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        let in_dword = matches!(size, 1 | 2 | 4) && (address % 4) as u8 + size <= 4;
        if !in_dword || !address.is_multiple_of(u64::from(size)) {
            return Err(LinkError::Unaligned {
                op: "memory write".into(),
                address,
                len: size.into(),
            });
        }
        let (mapped, offset) = self.locate("memory write", address, size.into())?;
        // SAFETY: in bounds (checked by `locate`) and naturally aligned for its size (checked
        // above); one volatile store of the access's width, as the device expects.
        unsafe {
            let ptr = mapped.map.as_mut_ptr().add(offset);
            match size {
                1 => ptr.write_volatile(value as u8),
                2 => ptr.cast::<u16>().write_volatile(value as u16),
                _ => ptr.cast::<u32>().write_volatile(value),
            }
        }
        Ok(())
    }

    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        if !address.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: "memory read".into(), address, len });
        }
        let (mapped, offset) = self.locate("memory read", address, len)?;
        let mut out = Vec::with_capacity(len);
        for i in (0..len).step_by(4) {
            // SAFETY: offset + len is inside the mapping (checked by `locate`), dword-aligned.
            let dword =
                unsafe { mapped.map.as_ptr().add(offset + i).cast::<u32>().read_volatile() };
            out.extend_from_slice(&dword.to_le_bytes());
        }
        Ok(out)
    }

    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        if !address.is_multiple_of(4) || !data.len().is_multiple_of(4) {
            return Err(LinkError::Unaligned {
                op: "memory write".into(),
                address,
                len: data.len(),
            });
        }
        let (mapped, offset) = self.locate("memory write", address, data.len())?;
        for (i, dword) in data.chunks_exact(4).enumerate() {
            let value = u32::from_le_bytes([dword[0], dword[1], dword[2], dword[3]]);
            // SAFETY: as in `mem_read`.
            unsafe {
                mapped.map.as_mut_ptr().add(offset + 4 * i).cast::<u32>().write_volatile(value);
            };
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        // Stores to an uncached mapping are posted by the CPU in order; make sure they left.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LinkError> {
        // Nothing is queued on this link; the card itself is reset by its driver.
        Ok(())
    }

    /// Locked host pages, one physically contiguous page each (4 KiB): the pagemap gives one
    /// frame per page and nothing promises neighbours are contiguous.
    fn dma_info(&self) -> DmaInfo {
        DmaInfo {
            total_bytes: u64::MAX,
            granule: PAGE as u64,
            write_alignment: 1,
            host_reads_directly: true,
        }
    }

    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        if size == 0 || size > PAGE as u64 {
            return Err(LinkError::Unsupported {
                op: format!(
                    "GPU-visible memory of {size} bytes (pinned pages give one physically \
                     contiguous 4 KiB page per region; larger regions need VFIO, not done yet)"
                ),
                link: self.kind(),
            });
        }
        let mut memory = MmapOptions::new()
            .len(PAGE)
            .populate()
            .map_anon()
            .map_err(io_error("allocating a GPU-visible page".into()))?;
        memory.fill(0);
        // SAFETY: mlock on a mapping we own, of exactly its length; failure is reported.
        if unsafe { libc::mlock(memory.as_ptr().cast(), PAGE) } != 0 {
            return Err(io_error(
                "locking a GPU-visible page (needs root or RLIMIT_MEMLOCK)".into(),
            )(io::Error::last_os_error()));
        }
        let bus_address = self
            .physical
            .physical(memory.as_ptr() as usize)
            .map_err(io_error("finding the physical address of a GPU-visible page".into()))?;
        Ok(self.host.insert(bus_address, memory))
    }

    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        self.host.remove(&region)
    }

    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        self.host.write(region, offset, &data)
    }

    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        self.host.read_begin(region, offset, len)
    }

    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        self.host.read_finish(&pending)
    }

    fn map_range(&mut self, address: u64, len: u64) -> Result<Option<MappedRange>, LinkError> {
        let len = usize::try_from(len).map_err(|_| LinkError::OutOfRange {
            op: "mapping a BAR range".into(),
            offset: address,
            len: usize::MAX,
            size: 0,
        })?;
        let (mapped, offset) = self.locate("mapping a BAR range", address, len)?;
        let keep: Arc<dyn Send + Sync> = mapped.map.clone();
        // SAFETY: `locate` checked offset + len lies inside the mapping, which `keep` (an Arc
        // of the mmap) keeps alive for every clone of the range; nothing creates references
        // into device memory.
        let range = unsafe {
            let base = NonNull::new(mapped.map.as_mut_ptr().add(offset))
                .ok_or_else(|| LinkError::Fabric("a BAR mapping at address 0".into()))?;
            MappedRange::new(base, len, keep)
        };
        Ok(Some(range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs function directory: the files the link reads, BAR files as sparse files
    /// (mmap of a regular file behaves like the resource file for loads and stores).
    fn fake_function(root: &Path, address: PciAddress) -> PathBuf {
        let dir = root.join(address.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), "0x1002\n").unwrap();
        fs::write(dir.join("device"), "0x744c\n").unwrap();
        fs::write(dir.join("class"), "0x030000\n").unwrap();
        let mut config = vec![0u8; 4096];
        config[0..4].copy_from_slice(&0x744C_1002u32.to_le_bytes());
        fs::write(dir.join("config"), config).unwrap();
        let resources = [
            "0x0000004000000000 0x00000040001fffff 0x000000000014220c", // BAR0 64-bit pref 2 MiB
            "0x0000000000000000 0x0000000000000000 0x0000000000000000",
            "0x0000004000200000 0x00000040003fffff 0x000000000014220c", // BAR2 doorbells
            "0x0000000000000000 0x0000000000000000 0x0000000000000000",
            "0x000000000000e000 0x000000000000e0ff 0x0000000000040101", // BAR4 I/O
            "0x00000000fcc00000 0x00000000fccfffff 0x0000000000040200", // BAR5 MMIO 1 MiB
            "0x0000000000000000 0x0000000000000000 0x0000000000000000", // ROM
        ];
        fs::write(dir.join("resource"), resources.join("\n") + "\n").unwrap();
        for (index, size) in [(0, 2u64 << 20), (2, 2 << 20), (5, 1 << 20)] {
            let file = File::create(dir.join(format!("resource{index}"))).unwrap();
            file.set_len(size).unwrap();
        }
        dir
    }

    struct FakePhysical;
    impl PhysicalAddresses for FakePhysical {
        fn physical(&mut self, virtual_address: usize) -> io::Result<u64> {
            Ok(0x1_0000_0000 + (virtual_address as u64 & 0xFFFF_F000))
        }
    }

    const ADDRESS: PciAddress = PciAddress { domain: 0, bus: 3, device: 0, function: 0 };

    fn open(root: &Path) -> SysfsPciLink {
        SysfsPciLink::open_at(root, ADDRESS, Box::new(FakePhysical)).unwrap()
    }

    #[test]
    fn resources_parse_into_bars_as_the_kernel_assigned_them() {
        let root = tempfile::tempdir().unwrap();
        fake_function(root.path(), ADDRESS);
        let link = open(root.path());
        let topology = link.topology();
        let gpu = topology.gpu().expect("a display-class function");
        assert_eq!((gpu.vendor_id, gpu.device_id), (0x1002, 0x744C));
        let bars: Vec<_> =
            gpu.bars.iter().map(|b| (b.index, b.kind, b.prefetchable, b.size, b.address)).collect();
        assert_eq!(
            bars,
            vec![
                (0, BarKind::Mem64, true, 2 << 20, 0x40_0000_0000),
                (2, BarKind::Mem64, true, 2 << 20, 0x40_0020_0000),
                (4, BarKind::Io, false, 0x100, 0xE000),
                (5, BarKind::Mem32, false, 1 << 20, 0xFCC0_0000),
            ]
        );
        assert!(parse_resources("0x1 0x2").is_err());
        assert!(parse_resources("0x10 0x1 0x200").is_err());
        assert!(parse_resources("zz 0x1 0x200").is_err());
    }

    #[test]
    fn config_space_goes_through_the_config_file_and_only_for_this_function() {
        let root = tempfile::tempdir().unwrap();
        let dir = fake_function(root.path(), ADDRESS);
        let mut link = open(root.path());
        let bdf = Bdf::new(3, 0, 0);
        assert_eq!(link.config_read32(bdf, 0).unwrap(), 0x744C_1002);
        assert_eq!(link.config_read16(bdf, 2).unwrap(), 0x744C);
        link.config_write(bdf, 0x04, 2, 0x0006).unwrap();
        assert_eq!(&fs::read(dir.join("config")).unwrap()[4..6], &[0x06, 0x00]);
        assert!(matches!(link.config_read(Bdf::new(4, 0, 0), 0, 4), Err(LinkError::Config { .. })));
        assert!(matches!(link.config_read(bdf, 3, 2), Err(LinkError::Unaligned { .. })));
        assert!(matches!(link.config_read(bdf, 0x1000, 4), Err(LinkError::Unaligned { .. })));
    }

    #[test]
    fn bar_accesses_land_in_the_resource_files_at_their_offsets() {
        let root = tempfile::tempdir().unwrap();
        let dir = fake_function(root.path(), ADDRESS);
        let mut link = open(root.path());
        link.mem_write(0xFCC0_0010, 4, 0xDEAD_BEEF).unwrap();
        link.mem_write(0xFCC0_0016, 2, 0x1234).unwrap();
        link.mem_write_bytes(0x40_0000_1000, Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]))
            .unwrap();
        link.flush().unwrap();
        assert_eq!(link.mem_read32(0xFCC0_0010).unwrap(), 0xDEAD_BEEF);
        assert_eq!(link.mem_read(0x40_0000_1000, 8).unwrap(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let mmio = fs::read(dir.join("resource5")).unwrap();
        assert_eq!(&mmio[0x10..0x18], &[0xEF, 0xBE, 0xAD, 0xDE, 0, 0, 0x34, 0x12]);
        let vram = fs::read(dir.join("resource0")).unwrap();
        assert_eq!(&vram[0x1000..0x1008], &[1, 2, 3, 4, 5, 6, 7, 8]);

        let mapped = link.map_range(0xFCC0_0000, 0x100).unwrap().expect("sysfs BARs map");
        assert_eq!(mapped.read32(0x10).unwrap(), 0xDEAD_BEEF);
        mapped.write32(0x20, 7).unwrap();
        assert_eq!(link.mem_read32(0xFCC0_0020).unwrap(), 7);
        assert!(mapped.read32(0x100).is_err(), "the range is bounded");

        // Outside every BAR, straddling a BAR's end, or misaligned: refused, nothing touched.
        assert!(matches!(link.mem_read32(0x1000), Err(LinkError::UnsupportedRequest { .. })));
        assert!(link.mem_read(0xFCCF_FFFC, 8).is_err());
        assert!(matches!(link.mem_write(0xFCC0_0011, 2, 0), Err(LinkError::Unaligned { .. })));
    }

    #[test]
    fn a_card_owned_by_a_kernel_driver_is_refused_with_the_unbind_command() {
        let root = tempfile::tempdir().unwrap();
        let dir = fake_function(root.path(), ADDRESS);
        let drivers = root.path().join("drivers/amdgpu");
        fs::create_dir_all(&drivers).unwrap();
        std::os::unix::fs::symlink(&drivers, dir.join("driver")).unwrap();
        let error = SysfsPciLink::open_at(root.path(), ADDRESS, Box::new(FakePhysical))
            .err()
            .expect("refused");
        let text = error.to_string();
        assert!(text.contains("amdgpu"), "{text}");
        assert!(text.contains("/sys/bus/pci/drivers/amdgpu/unbind"), "{text}");
        let missing = PciAddress { bus: 9, ..ADDRESS };
        let error = SysfsPciLink::open_at(root.path(), missing, Box::new(FakePhysical)).err();
        assert!(error.expect("no such function").to_string().contains("0000:09:00.0"));
    }

    #[test]
    fn gpu_visible_memory_is_locked_pages_at_their_physical_address() {
        let root = tempfile::tempdir().unwrap();
        fake_function(root.path(), ADDRESS);
        let mut link = open(root.path());
        let region = match link.dma_alloc(4096) {
            Ok(region) => region,
            Err(error) => {
                // mlock needs RLIMIT_MEMLOCK room; unprivileged containers may have none.
                // Past the test harness's output capture, so that the skip shows in the run.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("SKIP: cannot lock a page here ({error})\n").as_bytes(),
                );
                return;
            }
        };
        assert!(region.bus_address >= 0x1_0000_0000, "the physical address, not the virtual");
        link.dma_write(&region, 100, Bytes::from_static(b"egpu")).unwrap();
        let pending = link.dma_read_begin(&region, 96, 12).unwrap();
        assert_eq!(pending.release, None, "the host reads its own memory directly");
        assert_eq!(link.dma_read_finish(pending).unwrap(), b"\0\0\0\0egpu\0\0\0\0");
        assert!(link.dma_alloc(8192).is_err(), "larger regions need VFIO");
        assert!(link.dma_write(&region, 4094, Bytes::from_static(b"abcd")).is_err());
        link.dma_free(region).unwrap();
        assert!(link.dma_free(region).is_err());
    }
}
