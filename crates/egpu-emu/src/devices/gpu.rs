//! The GPU function of today's card models (Navi 31, GA102), as far as this crate models it:
//! memory behind its BARs and an emulator-only copy engine. Real vendor register models (AMD
//! SDMA, NVIDIA CE) come as models of their own (see [`super`]).

use super::{ConfigBuilder, ConfigHeader, DeviceModel, ResetKind, Upstream};
use crate::error::DmaError;
use crate::pcie::header::{BarSlot, Rebar};
use crate::sparse::SparseMem;

/// An emulator-only DMA engine in the GPU's MMIO BAR (Navi 31 BAR5, GA102 BAR0) at
/// [`copy_engine::BASE`].
///
/// **This is not a real AMD or NVIDIA register block.** It is a stand-in for SDMA / the copy
/// engine so tests can make "the GPU" move data between VRAM and the bridge's memories and
/// write the CQ release (§4.7, §7.2) through the same PCIe rules a real engine obeys
/// (bus-master gating, upstream decode of SRAM and the queue pages; host memory regions on
/// the in-process link). All registers are
/// little-endian and reached with ordinary memory TLPs.
pub mod copy_engine {
    /// Offset of the block inside the MMIO BAR.
    pub const BASE: u64 = 0xF_0000;
    /// u64: source (VRAM offset, or PCIe bus address with [`FLAG_SRC_PCIE`]).
    pub const SRC: u64 = 0x00;
    /// u64: destination (VRAM offset, or PCIe bus address with [`FLAG_DST_PCIE`]).
    pub const DST: u64 = 0x08;
    /// u32: bytes to copy.
    pub const LENGTH: u64 = 0x10;
    /// u32: [`FLAG_SRC_PCIE`] | [`FLAG_DST_PCIE`].
    pub const FLAGS: u64 = 0x14;
    /// u32: write 1 to run the copy synchronously; reads 0 afterwards.
    pub const GO: u64 = 0x18;
    /// u32: [`STATUS_OK`] or [`STATUS_ERROR`] after the last copy or fence.
    pub const STATUS: u64 = 0x1C;
    /// u64: PCIe bus address the fence dword goes to.
    pub const FENCE_ADDR: u64 = 0x20;
    /// u32: value of the fence dword.
    pub const FENCE_VALUE: u64 = 0x28;
    /// u32: write 1 to write FENCE_VALUE to FENCE_ADDR (one dword, upstream DMA).
    pub const FENCE_GO: u64 = 0x2C;
    /// Size of the register block.
    pub const SIZE: u64 = 0x30;
    /// FLAGS bit 0: SRC is a PCIe bus address (else a VRAM offset).
    pub const FLAG_SRC_PCIE: u32 = 1 << 0;
    /// FLAGS bit 1: DST is a PCIe bus address (else a VRAM offset).
    pub const FLAG_DST_PCIE: u32 = 1 << 1;
    /// STATUS: idle / last operation succeeded.
    pub const STATUS_OK: u32 = 0;
    /// STATUS: last operation failed (e.g. DMA rejected, VRAM range out of bounds).
    pub const STATUS_ERROR: u32 = 1;
}

/// What backs one BAR of the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// Device-local memory (sparse, `vram_size` bytes).
    Vram,
    /// Register aperture: plain memory plus the copy engine at [`copy_engine::BASE`].
    Mmio,
    /// Plain memory of the BAR's size (doorbell pages, other apertures).
    Plain,
}

/// A GPU function with VRAM, an MMIO BAR holding the copy engine, and plain-memory BARs.
pub(crate) struct GpuFunction {
    label: String,
    header: ConfigHeader,
    backing: [Option<Backing>; 6],
    vram: SparseMem,
    mmio: SparseMem,
    plain: [Option<SparseMem>; 6],
}

impl GpuFunction {
    /// A GPU with these BARs (each with what backs it) and `vram_size` bytes of VRAM.
    pub fn new(
        label: &str,
        builder: ConfigBuilder,
        bars: [(BarSlot, Option<Backing>); 6],
        rebar: Option<Rebar>,
        vram_size: u64,
    ) -> Self {
        let header = ConfigHeader::endpoint(builder, bars.map(|(slot, _)| slot), rebar);
        let backing = bars.map(|(_, b)| b);
        let mut mmio_size = 0;
        let mut plain: [Option<SparseMem>; 6] = Default::default();
        for (i, b) in backing.iter().enumerate() {
            match b {
                Some(Backing::Mmio) => mmio_size = header.bar_size(i),
                Some(Backing::Plain) => plain[i] = Some(SparseMem::new(header.bar_size(i))),
                _ => {}
            }
        }
        Self {
            label: label.to_string(),
            header,
            backing,
            vram: SparseMem::new(vram_size),
            mmio: SparseMem::new(mmio_size),
            plain,
        }
    }

    fn ce_read32(&self, reg: u64) -> u32 {
        self.mmio.read_u32(copy_engine::BASE + reg)
    }

    fn ce_read64(&self, reg: u64) -> u64 {
        u64::from(self.ce_read32(reg)) | (u64::from(self.ce_read32(reg + 4)) << 32)
    }

    fn ce_write32(&mut self, reg: u64, value: u32) {
        self.mmio.write_u32(copy_engine::BASE + reg, value);
    }

    /// MMIO BAR write: plain memory, except that completing a write to the copy engine's GO
    /// or FENCE_GO register with the value 1 runs it. Writes are split at those registers so
    /// a stream that programs the whole block runs the copy before the fence.
    fn mmio_write(&mut self, offset: u64, data: &[u8], upstream: &mut Upstream<'_>) {
        let end = offset.saturating_add(data.len() as u64);
        if end <= copy_engine::BASE || offset >= copy_engine::BASE + copy_engine::SIZE {
            self.mmio.write(offset, data);
            return;
        }
        let go_end = copy_engine::BASE + copy_engine::GO + 4;
        let fence_end = copy_engine::BASE + copy_engine::FENCE_GO + 4;
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let cut =
                [go_end, fence_end].into_iter().find(|&c| c > at && c < at + rest.len() as u64);
            let n = cut.map_or(rest.len(), |c| (c - at) as usize);
            let (piece, tail) = rest.split_at(n);
            self.mmio.write(at, piece);
            let piece_end = at + n as u64;
            let touches = |reg: u64| {
                let r = copy_engine::BASE + reg;
                at < r + 4 && piece_end > r
            };
            for reg in [copy_engine::GO, copy_engine::FENCE_GO] {
                if touches(reg) {
                    self.copy_engine_trigger(reg, upstream);
                }
            }
            at = piece_end;
            rest = tail;
        }
    }

    fn copy_engine_trigger(&mut self, reg: u64, upstream: &mut Upstream<'_>) {
        if self.ce_read32(reg) != 1 {
            return;
        }
        let ok = if reg == copy_engine::GO {
            self.run_copy(upstream)
        } else {
            let addr = self.ce_read64(copy_engine::FENCE_ADDR);
            let value = self.ce_read32(copy_engine::FENCE_VALUE);
            upstream.write(addr, &value.to_le_bytes()).is_ok()
        };
        self.ce_write32(reg, 0);
        let status = if ok { copy_engine::STATUS_OK } else { copy_engine::STATUS_ERROR };
        self.ce_write32(copy_engine::STATUS, status);
    }

    /// The copy itself: validated in full first, then moved straight between VRAM and host
    /// memory (no staging buffer but for VRAM-to-VRAM and host-to-host, which go through a
    /// small bounce buffer).
    fn run_copy(&mut self, upstream: &mut Upstream<'_>) -> bool {
        let src = self.ce_read64(copy_engine::SRC);
        let dst = self.ce_read64(copy_engine::DST);
        let len = self.ce_read32(copy_engine::LENGTH) as usize;
        let flags = self.ce_read32(copy_engine::FLAGS);
        let src_bus = flags & copy_engine::FLAG_SRC_PCIE != 0;
        let dst_bus = flags & copy_engine::FLAG_DST_PCIE != 0;
        let vram_size = self.vram.size();
        let vram_ok = |off: u64| off.checked_add(len as u64).is_some_and(|e| e <= vram_size);
        if (!src_bus && !vram_ok(src)) || (!dst_bus && !vram_ok(dst)) {
            return false;
        }
        if (src_bus && upstream.check(src, len).is_err())
            || (dst_bus && upstream.check(dst, len).is_err())
        {
            return false;
        }
        let vram = &mut self.vram;
        match (src_bus, dst_bus) {
            (false, true) => upstream.write_with(dst, len, |out| vram.read(src, out)).is_ok(),
            (true, false) => upstream.read_with(src, len, |data| vram.write(dst, data)).is_ok(),
            (false, false) => bounce(len, |at, buf| {
                vram.read(src + at, buf);
                vram.write(dst + at, buf);
                Ok::<(), DmaError>(())
            })
            .is_ok(),
            (true, true) => bounce(len, |at, buf| {
                upstream.read(src + at, buf)?;
                upstream.write(dst + at, buf)
            })
            .is_ok(),
        }
    }
}

/// Move `len` bytes in pieces through a 4 KiB stack buffer: `step(offset, piece)`.
fn bounce<E>(len: usize, mut step: impl FnMut(u64, &mut [u8]) -> Result<(), E>) -> Result<(), E> {
    let mut buf = [0u8; 4096];
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(buf.len());
        step(done as u64, &mut buf[..n])?;
        done += n;
    }
    Ok(())
}

impl DeviceModel for GpuFunction {
    fn label(&self) -> &str {
        &self.label
    }

    fn header(&self) -> &ConfigHeader {
        &self.header
    }

    fn header_mut(&mut self) -> &mut ConfigHeader {
        &mut self.header
    }

    fn bar_read(&mut self, bar: usize, offset: u64, out: &mut [u8]) {
        let mem = match self.backing.get(bar).copied().flatten() {
            Some(Backing::Vram) => Some(&self.vram),
            Some(Backing::Mmio) => Some(&self.mmio),
            Some(Backing::Plain) => self.plain[bar].as_ref(),
            None => None,
        };
        match mem {
            Some(m) => m.read(offset, out),
            None => out.fill(0),
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8], upstream: &mut Upstream<'_>) {
        match self.backing.get(bar).copied().flatten() {
            Some(Backing::Vram) => self.vram.write(offset, data),
            Some(Backing::Mmio) => self.mmio_write(offset, data, upstream),
            Some(Backing::Plain) => {
                if let Some(m) = self.plain[bar].as_mut() {
                    m.write(offset, data);
                }
            }
            None => {}
        }
    }

    fn reset(&mut self, kind: ResetKind) {
        if kind == ResetKind::PowerLoss {
            self.vram.clear();
            self.mmio.clear();
            for m in self.plain.iter_mut().flatten() {
                m.clear();
            }
        }
    }

    fn local_memory(&self) -> Option<&SparseMem> {
        Some(&self.vram)
    }

    fn local_memory_mut(&mut self) -> Option<&mut SparseMem> {
        Some(&mut self.vram)
    }
}
