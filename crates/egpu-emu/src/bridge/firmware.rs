//! The custom firmware's vendor requests (§3), its TLP engine (§4.1–4.5) and the F2 DMA
//! engine (§4.6–4.7), executed against the emulated memories and fabric.

use std::time::Duration;

use bytes::Bytes;

use super::{Emu, VisTarget, SRAM_SIZE, SRAM_SLOT_SIZE, XDATA_LTSSM, XDATA_STREAM_BUFFER};
use crate::pcie::{ConfigRead, Segment};
use crate::tlp::{byte_count_1dw, classify, is_4dw, TlpKind, CPL_CRS, CPL_SUCCESS, CPL_UR};

/// §3: read bank-0 XDATA.
pub const REQ_XDATA_READ: u8 = 0xE4;
/// §3: write one XDATA byte.
pub const REQ_XDATA_WRITE: u8 = 0xE5;
/// §3: issue a PCIe TLP (single or streaming).
pub const REQ_TLP: u8 = 0xF0;
/// §3: arm the SRAM DMA engine (bulk OUT write or bulk IN read).
pub const REQ_SRAM_DMA: u8 = 0xF2;
/// §3: PCIe slot power and link training.
pub const REQ_PCIE_POWER: u8 = 0xF3;
/// §3: the power monitor (millivolts, milliamps).
pub const REQ_POWER_MONITOR: u8 = 0xC0;

/// §3 F3 "wait up to 20×100 ms for three consecutive LTSSM==0x78 samples": the request takes
/// three samples when the link trains at once, the full 2 s when it does not.
const F3_ON_TRAINED: Duration = Duration::from_millis(300);
const F3_ON_UNTRAINED: Duration = Duration::from_millis(2000);

/// §3 C0 reply while PCIe power is on: 12 V slot rail, a plausible idle current `[U]`.
const MONITOR_MV: u16 = 12_000;
const MONITOR_MA: i16 = 1_500;

/// What the TLP engine holds after a mode-0 request, for F0 IN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EngineResult {
    /// Posted TLP, stream, or nothing yet: the firmware's poll for a completion times out.
    NoCompletion,
    /// Non-posted TLP that got no completion (link down, malformed).
    Timeout,
    /// A completion arrived.
    Completed { status: u8, byte_count: u16, with_data: bool },
}

/// Mode-1 stream being fed by bulk OUT (§4.4).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamWrite {
    pub addr: u64,
    pub fmt: u8,
    pub byte_enables: u8,
    pub remaining: u64,
}

/// Mode-2 stream being drained by bulk IN (§4.5).
#[derive(Clone, Debug)]
pub(crate) struct StreamRead {
    /// Address of the next dword to read.
    pub addr: u64,
    pub fmt: u8,
    /// Bytes not yet read from PCIe.
    pub unread: u64,
    /// Bytes read ahead into XDATA 0x8000 but not yet delivered.
    pub prefetched: Vec<u8>,
}

/// Who EP 0x02's data goes to.
#[derive(Clone, Debug, Default)]
pub(crate) enum OutSink {
    #[default]
    Idle,
    Stream(StreamWrite),
    F2Write {
        offset: usize,
        remaining: usize,
    },
}

/// Where EP 0x81's data comes from.
#[derive(Clone, Debug, Default)]
pub(crate) enum InSource {
    #[default]
    Idle,
    Stream(StreamRead),
    F2Read {
        offset: usize,
        remaining: usize,
        released: bool,
    },
}

/// Firmware-side state.
#[derive(Debug)]
pub(crate) struct FirmwareState {
    pub out_sink: OutSink,
    pub in_source: InSource,
    /// Reset mid-F2-transfer on firmware before #75: the DMA engine ignores further arms.
    pub f2_wedged: bool,
    pub last: EngineResult,
    /// The TLP engine's data register: it keeps its old value when a read fails, which is
    /// why failed streaming reads return stale data (§4.5).
    pub engine_data: u32,
}

impl Default for FirmwareState {
    fn default() -> Self {
        Self {
            out_sink: OutSink::Idle,
            in_source: InSource::Idle,
            f2_wedged: false,
            last: EngineResult::NoCompletion,
            engine_data: 0,
        }
    }
}

impl FirmwareState {
    /// §4.7: a PCIe write into the CQ window releases an armed F2 read. Any value and any
    /// offset in the page releases (§4.7 "any dword write suffices" `[U]`); a write before the
    /// arm is not remembered `[U]`.
    pub fn cq_written(&mut self) {
        if let InSource::F2Read { released, .. } = &mut self.in_source {
            *released = true;
        }
    }

    pub fn f2_busy(&self) -> bool {
        matches!(self.out_sink, OutSink::F2Write { .. })
            || matches!(self.in_source, InSource::F2Read { .. })
    }

    fn clear_f2(&mut self) {
        if matches!(self.out_sink, OutSink::F2Write { .. }) {
            self.out_sink = OutSink::Idle;
        }
        if matches!(self.in_source, InSource::F2Read { .. }) {
            self.in_source = InSource::Idle;
        }
    }

    /// Drop mode-1/2 streaming state; returns whether a stream was active.
    pub fn cancel_streams(&mut self) -> bool {
        let mut cancelled = false;
        if matches!(self.out_sink, OutSink::Stream(_)) {
            self.out_sink = OutSink::Idle;
            cancelled = true;
        }
        if matches!(self.in_source, InSource::Stream(_)) {
            self.in_source = InSource::Idle;
            cancelled = true;
        }
        cancelled
    }
}

/// Bytes of a stream from `at` (at most `len`) before a 3DW address would wrap at 4 GiB.
fn unwrapped(at: u64, fmt: u8, len: usize) -> usize {
    let room = if is_4dw(fmt) { u64::MAX - at } else { (1u64 << 32) - at };
    (len as u64).min(room.max(4)) as usize
}

/// Address of the TLP `bytes` after `addr` in a stream: 4DW streams auto-increment the
/// 64-bit address (§4.4); a 3DW header carries only 32 bits, so it wraps `[U]`.
pub(crate) fn advance(addr: u64, fmt: u8, bytes: u64) -> u64 {
    if is_4dw(fmt) {
        addr.wrapping_add(bytes)
    } else {
        addr.wrapping_add(bytes) & 0xFFFF_FFFF
    }
}

/// How a vendor request ends.
pub(crate) enum ControlOutcome {
    /// Status stage ACKed (OUT) or data returned (IN).
    Ack,
    Data(Vec<u8>),
    /// The firmware does not answer; the host times out.
    Ignored,
    /// Protocol STALL on EP0.
    Stall,
    /// Answered, but later than the transfer's timeout allows.
    Late,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// §4.4/§4.6: an OUT transfer for an armed transfer of `remaining` bytes is accepted if it
/// finishes it exactly, or is a whole number of max-size packets short of it (USB cannot
/// tell one transfer from two that end on packet boundaries). Anything else ends in a short
/// or surplus packet the firmware cannot place.
pub(crate) fn out_length_fits(len: usize, remaining: u64, max_packet: usize) -> bool {
    len > 0
        && ((len as u64) == remaining
            || ((len as u64) < remaining && len.is_multiple_of(max_packet)))
}

impl Emu {
    // ------------------------------------------------------------ vendor requests (§3)

    pub(crate) fn vendor_out(
        &mut self,
        request: u8,
        value: u16,
        index: u16,
        data: &[u8],
        timeout: Duration,
    ) -> ControlOutcome {
        if self.cfg.is_stock_firmware() {
            self.stats.unknown_requests += 1;
            return ControlOutcome::Ignored;
        }
        match request {
            REQ_XDATA_WRITE => {
                self.stats.e5_requests += 1;
                // §3: value in wIndex low byte, bank in the high byte. A data stage is not
                // part of E5; it is ignored `[U]`.
                self.xdata_write((index >> 8) as u8, value, index as u8);
                ControlOutcome::Ack
            }
            REQ_TLP => self.f0_out(value, index, data),
            REQ_SRAM_DMA => {
                self.f2_arm(value, index);
                ControlOutcome::Ack
            }
            REQ_PCIE_POWER => {
                self.stats.f3_requests += 1;
                let took = if value & 1 != 0 {
                    self.power_on();
                    if self.link.up() {
                        F3_ON_TRAINED
                    } else {
                        F3_ON_UNTRAINED
                    }
                } else {
                    self.power_off();
                    Duration::ZERO
                };
                if took > timeout {
                    ControlOutcome::Late
                } else {
                    ControlOutcome::Ack
                }
            }
            _ => {
                self.stats.unknown_requests += 1;
                // §1.1: unknown vendor OUT requests with wLength 0 are ACKed with a ZLP;
                // others are ignored.
                if data.is_empty() {
                    ControlOutcome::Ack
                } else {
                    ControlOutcome::Ignored
                }
            }
        }
    }

    pub(crate) fn vendor_in(
        &mut self,
        request: u8,
        value: u16,
        index: u16,
        length: u16,
    ) -> ControlOutcome {
        if self.cfg.is_stock_firmware() {
            self.stats.unknown_requests += 1;
            return ControlOutcome::Ignored;
        }
        let length = usize::from(length);
        match request {
            REQ_XDATA_READ => {
                self.stats.e4_requests += 1;
                let limit = self.cfg.e4_limit();
                if length > limit
                    && !self.cfg.speed.is_superspeed()
                    && self.cfg.hs_e4_over_limit_times_out
                {
                    return ControlOutcome::Ignored;
                }
                // §3: clamp to 512 (SS) / 64 (HS) and return fewer bytes silently.
                let n = length.min(limit);
                let bank = (index >> 8) as u8;
                let out: Vec<u8> =
                    (0..n).map(|i| self.xdata_read(bank, value.wrapping_add(i as u16))).collect();
                let covers_ltssm =
                    bank == 0 && (0..n).any(|i| value.wrapping_add(i as u16) == XDATA_LTSSM);
                if covers_ltssm && self.link.powered && self.link.training_polls_left > 0 {
                    self.link.training_polls_left -= 1;
                }
                ControlOutcome::Data(out)
            }
            REQ_TLP => {
                self.stats.f0_in_requests += 1;
                let mut reply = self.f0_reply().to_vec();
                reply.truncate(length);
                ControlOutcome::Data(reply)
            }
            REQ_POWER_MONITOR if self.cfg.power_monitor => {
                self.stats.c0_requests += 1;
                let (mv, ma) = if self.link.powered { (MONITOR_MV, MONITOR_MA) } else { (0, 0) };
                let mut reply = [mv.to_le_bytes(), ma.to_le_bytes()].concat();
                reply.truncate(length);
                ControlOutcome::Data(reply)
            }
            _ => {
                self.stats.unknown_requests += 1;
                ControlOutcome::Ignored
            }
        }
    }

    // ------------------------------------------------------------ F0 (§3, §4.2–4.5)

    fn f0_out(&mut self, value: u16, index: u16, data: &[u8]) -> ControlOutcome {
        self.stats.f0_out_requests += 1;
        // §3: 12 bytes {addr_lo, addr_hi, value}, little-endian. The firmware has no way to
        // parse anything shorter; the emulator STALLs so the mistake is loud `[U]`.
        if data.len() != 12 {
            return ControlOutcome::Stall;
        }
        let addr = u64::from(le32(&data[0..4])) | (u64::from(le32(&data[4..8])) << 32);
        // A TLP header has no address bits 1:0 (§4.1: the address sent is address & ~3).
        let stream_addr = addr & !3;
        let word = le32(&data[8..12]);
        let fmt = value as u8;
        let byte_enables = (value >> 8) as u8;
        // §3: any F0 OUT first cancels an in-flight streaming transfer.
        if self.fw.cancel_streams() {
            self.stats.streams_cancelled += 1;
        }
        // Earlier stream TLPs left the bridge before this request was handled.
        self.flush_visibility(false);
        match index & 0b11 {
            0 => {
                self.fw.last = self.issue_tlp(fmt, byte_enables, addr, word);
                self.mirror_engine_registers(fmt, byte_enables, addr, word);
            }
            1 => {
                self.fw.last = EngineResult::NoCompletion;
                if word > 0 {
                    self.fw.out_sink = OutSink::Stream(StreamWrite {
                        addr: stream_addr,
                        fmt,
                        byte_enables,
                        remaining: u64::from(word) * 4,
                    });
                }
            }
            2 => {
                self.fw.last = EngineResult::NoCompletion;
                if word > 0 {
                    self.arm_stream_read(stream_addr, fmt, u64::from(word) * 4);
                }
            }
            // Mode 3 is undefined (§3 defines 0–2); the firmware does nothing `[U]`.
            _ => {}
        }
        ControlOutcome::Ack
    }

    /// §1.2: the engine registers as the firmware leaves them (address and data big-endian).
    fn mirror_engine_registers(&mut self, fmt: u8, byte_enables: u8, addr: u64, word: u32) {
        let x = &mut self.mem.xdata;
        x[0xB210] = fmt;
        x[0xB217] = byte_enables;
        x[0xB218..0xB21C].copy_from_slice(&(addr as u32).to_be_bytes());
        x[0xB21C..0xB220].copy_from_slice(&((addr >> 32) as u32).to_be_bytes());
        let (data, header, cpl_type, status) = match self.fw.last {
            EngineResult::Completed { status, byte_count, with_data } => (
                self.fw.engine_data,
                (u16::from(status) << 13) | (byte_count & 0xFFF),
                u8::from(with_data),
                0b10,
            ),
            EngineResult::Timeout => (self.fw.engine_data, 0, 0, 0b01),
            EngineResult::NoCompletion => (word, 0, 0, 0b10),
        };
        x[0xB220..0xB224].copy_from_slice(&data.to_be_bytes());
        x[0xB22A..0xB22C].copy_from_slice(&header.to_be_bytes());
        x[0xB284] = cpl_type;
        x[0xB296] = status;
    }

    /// §3 F0 IN: data LE, completion header high byte (status in bits 7:5), low byte,
    /// completion type (0xB284: bit 0 = carries data), ret_status.
    fn f0_reply(&mut self) -> [u8; 8] {
        let mut reply = match self.fw.last {
            EngineResult::Completed { status, byte_count, with_data } => {
                let header = (u16::from(status) << 13) | (byte_count & 0xFFF);
                let d = self.fw.engine_data.to_le_bytes();
                let [hi, lo] = header.to_be_bytes();
                [d[0], d[1], d[2], d[3], hi, lo, u8::from(with_data), 0]
            }
            // ret_status 0xFF = timeout, bytes 0–6 zeroed.
            _ => [0, 0, 0, 0, 0, 0, 0, 0xFF],
        };
        if let Some(status) = self.faults.take_f0_ret() {
            reply[7] = status;
            if status == 0xFF {
                reply[..7].fill(0);
            }
        }
        reply
    }

    /// Fire one TLP (§4.1: at most one dword). Returns what F0 IN will see.
    pub(crate) fn issue_tlp(
        &mut self,
        fmt: u8,
        byte_enables: u8,
        addr: u64,
        word: u32,
    ) -> EngineResult {
        self.stats.tlps += 1;
        let kind = classify(fmt);
        let posted = kind.is_posted();
        let no_completion = |emu: &mut Emu| {
            if posted {
                emu.stats.posted_writes_dropped += 1;
                EngineResult::NoCompletion
            } else {
                emu.stats.tlp_timeouts += 1;
                EngineResult::Timeout
            }
        };
        if !self.link.up() {
            return no_completion(self);
        }
        let memory = matches!(kind, TlpKind::MemRead | TlpKind::MemWrite);
        if memory && is_4dw(fmt) && addr >> 32 == 0 {
            // §4.1: illegal header form, tolerated by AMD.
            self.stats.tlps_4dw_below_4gib += 1;
            if self.cfg.reject_4dw_below_4gib {
                return no_completion(self);
            }
        }
        let addr = if is_4dw(fmt) && memory { addr & !3 } else { addr & 0xFFFF_FFFC };
        if posted {
            if kind == TlpKind::MemWrite && !self.mem_write_dword(addr, word, byte_enables) {
                self.stats.posted_writes_dropped += 1;
            }
            return EngineResult::NoCompletion;
        }
        if let Some(status) = self.faults.take_completion() {
            return self.completion(status.bits(), None, byte_enables);
        }
        match kind {
            TlpKind::ConfigRead { type1 } => {
                if self.faults.take_config_retry() {
                    return self.completion(CPL_CRS, None, byte_enables);
                }
                let Some(fid) = self.route_config_addr(addr, type1) else {
                    return self.completion(CPL_UR, None, byte_enables);
                };
                match self.fabric.config_read(fid, (addr & 0xFFC) as u16) {
                    ConfigRead::Retry => self.completion(CPL_CRS, None, byte_enables),
                    ConfigRead::Data(data) => self.completion(CPL_SUCCESS, Some(data), 0xF),
                }
            }
            TlpKind::ConfigWrite { type1 } => {
                let Some(fid) = self.route_config_addr(addr, type1) else {
                    return self.completion(CPL_UR, None, byte_enables);
                };
                let reg = (addr & 0xFFC) as u16;
                let crs = self.cfg.crs_reads_after_reset;
                self.fabric.config_write(fid, reg, word, byte_enables, crs);
                self.completion(CPL_SUCCESS, None, 0xF)
            }
            TlpKind::MemRead => {
                let mut b = [0u8; 4];
                match self.fabric.read_segment(addr, &mut b) {
                    // §4.1: reads return the whole dword; the driver shifts.
                    Segment::Decoded(_) => {
                        self.completion(CPL_SUCCESS, Some(u32::from_le_bytes(b)), byte_enables)
                    }
                    Segment::Undecoded(_) => self.completion(CPL_UR, None, byte_enables),
                }
            }
            _ => self.completion(CPL_UR, None, byte_enables),
        }
    }

    fn completion(&mut self, status: u8, data: Option<u32>, byte_enables: u8) -> EngineResult {
        if status == CPL_UR {
            self.stats.unsupported_requests += 1;
        }
        if let Some(d) = data {
            self.fw.engine_data = d;
        }
        let byte_count = if data.is_some() { byte_count_1dw(byte_enables) } else { 4 };
        EngineResult::Completed { status, byte_count, with_data: data.is_some() }
    }

    /// §4.2: address = bus<<24 | dev<<19 | fn<<16 | register.
    fn route_config_addr(&self, addr: u64, type1: bool) -> Option<usize> {
        let bus = (addr >> 24) as u8;
        let dev = ((addr >> 19) & 0x1F) as u8;
        let func = ((addr >> 16) & 0x7) as u8;
        self.fabric.route_config(bus, dev, func, type1)
    }

    /// One MWr dword with byte enables (§4.1): only enabled bytes change. Returns false when
    /// nothing decoded it.
    fn mem_write_dword(&mut self, addr: u64, word: u32, byte_enables: u8) -> bool {
        let (fabric, mut host) = self.split();
        fabric.write_dword(addr, word, byte_enables, &mut host)
    }

    // ------------------------------------------------------------ streams (§4.4, §4.5)

    /// Count the `dwords` TLPs of a stream from `addr` (§4.1: one per dword) and those of them
    /// with an illegal 4DW header below 4 GiB; returns the latter.
    fn count_stream_tlps(&mut self, addr: u64, fmt: u8, dwords: u64) -> u64 {
        self.stats.tlps += dwords;
        let below = if is_4dw(fmt) && addr >> 32 == 0 {
            dwords.min(((1u64 << 32) - addr).div_ceil(4))
        } else {
            0
        };
        self.stats.tlps_4dw_below_4gib += below;
        below
    }

    /// Mode-1 data reaching PCIe: one MWr per dword (§4.4), routed once per decoded range.
    pub(crate) fn emit_stream_write(&mut self, addr: u64, fmt: u8, byte_enables: u8, data: &[u8]) {
        let dwords = (data.len() / 4) as u64;
        let below = self.count_stream_tlps(addr, fmt, dwords);
        if !self.link.up() || classify(fmt) != TlpKind::MemWrite {
            self.stats.posted_writes_dropped += dwords;
            return;
        }
        let mut off = 0usize;
        if self.cfg.reject_4dw_below_4gib && below > 0 {
            self.stats.posted_writes_dropped += below;
            off = (below * 4) as usize;
        }
        let len = dwords as usize * 4;
        while off < len {
            let at = advance(addr, fmt, off as u64);
            if byte_enables & 0xF != 0xF {
                if !self.mem_write_dword(at, le32(&data[off..off + 4]), byte_enables) {
                    self.stats.posted_writes_dropped += 1;
                }
                off += 4;
                continue;
            }
            let end = off + unwrapped(at, fmt, len - off);
            let (fabric, mut host) = self.split();
            match fabric.write_segment(at, &data[off..end], &mut host) {
                Segment::Decoded(n) => off += n,
                Segment::Undecoded(n) => {
                    self.stats.posted_writes_dropped += (n / 4) as u64;
                    off += n;
                }
            }
        }
    }

    /// Mode-2 reads into `out` (a whole number of dwords), one MRd per dword (§4.5).
    /// Failures are silent: the engine's stale data register fills in (§4.5).
    fn stream_read_into(&mut self, addr: u64, fmt: u8, out: &mut [u8]) {
        self.count_stream_tlps(addr, fmt, (out.len() / 4) as u64);
        let mut off = 0usize;
        while off < out.len() {
            let at = advance(addr, fmt, off as u64);
            let malformed = self.cfg.reject_4dw_below_4gib && is_4dw(fmt) && at >> 32 == 0;
            if !self.link.up() || malformed {
                self.stats.tlp_timeouts += 1;
                out[off..off + 4].copy_from_slice(&self.fw.engine_data.to_le_bytes());
                off += 4;
                continue;
            }
            if classify(fmt) != TlpKind::MemRead {
                self.stats.unsupported_requests += 1;
                out[off..off + 4].copy_from_slice(&self.fw.engine_data.to_le_bytes());
                off += 4;
                continue;
            }
            // Per-dword faults act dword by dword; otherwise a whole decoded range at once.
            let per_dword = self.faults.per_dword_read_faults();
            let end = if per_dword { off + 4 } else { off + unwrapped(at, fmt, out.len() - off) };
            let forced = if per_dword { self.faults.take_completion() } else { None };
            let segment = match forced {
                Some(status) => {
                    if status.bits() == CPL_UR {
                        self.stats.unsupported_requests += 1;
                    }
                    Segment::Undecoded(0)
                }
                None => self.fabric.read_segment(at, &mut out[off..end]),
            };
            let n = match segment {
                Segment::Decoded(n) => {
                    self.fw.engine_data = le32(&out[off + n - 4..off + n]);
                    n
                }
                Segment::Undecoded(n) => {
                    if forced.is_none() {
                        self.stats.unsupported_requests += (n / 4) as u64;
                    }
                    let stale = self.fw.engine_data.to_le_bytes();
                    let n = n.max(4);
                    for d in out[off..off + n].chunks_exact_mut(4) {
                        d.copy_from_slice(&stale);
                    }
                    n
                }
            };
            if self.faults.garbage_reads > 0 {
                for d in out[off..off + n].chunks_exact_mut(4) {
                    if self.faults.garbage_reads == 0 {
                        break;
                    }
                    self.faults.garbage_reads -= 1;
                    let v = !le32(d);
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            off += n;
        }
    }

    /// §4.5 step 1: the firmware reads the first chunk right away into XDATA 0x8000.
    /// Reads return whole dwords whatever the byte enables say (§4.1: the driver shifts).
    fn arm_stream_read(&mut self, addr: u64, fmt: u8, bytes: u64) {
        let mut s = StreamRead { addr, fmt, unread: bytes, prefetched: Vec::new() };
        self.prefetch(&mut s);
        self.fw.in_source = InSource::Stream(s);
    }

    /// Read the next chunk of a stream ahead (≤256 dwords SS, ≤128 HS).
    fn prefetch(&mut self, s: &mut StreamRead) {
        let chunk = (self.cfg.stream_read_chunk_dwords() as u64 * 4).min(s.unread) as usize;
        if chunk == 0 || !s.prefetched.is_empty() {
            return;
        }
        let mut buf = vec![0u8; chunk];
        self.stream_read_into(s.addr, s.fmt, &mut buf);
        let at = usize::from(XDATA_STREAM_BUFFER);
        self.mem.xdata[at..at + chunk].copy_from_slice(&buf);
        s.addr = advance(s.addr, s.fmt, chunk as u64);
        s.unread -= chunk as u64;
        s.prefetched = buf;
    }

    // ------------------------------------------------------------ F2 (§4.6, §4.7)

    fn f2_arm(&mut self, value: u16, index: u16) {
        self.stats.f2_requests += 1;
        if self.fw.f2_wedged {
            // The engine is stuck (reset mid-transfer, firmware < #75): nothing moves.
            return;
        }
        if self.fw.f2_busy() {
            // §12.4 re-arming while busy: the engine is reprogrammed; the old job is lost.
            self.stats.f2_rearmed_while_busy += 1;
            self.fw.clear_f2();
        }
        // §3: bit 15 direction (1 = SRAM→host), bits 14:0 sectors of 512 B; wIndex low byte
        // start slot (16 KiB), high byte slot count (0 → 1). The slot count only bounds the
        // NVMe engine's slot range; data runs on contiguously from the start slot `[U]`.
        let to_host = value & 0x8000 != 0;
        let bytes = usize::from(value & 0x7FFF) * 512;
        let start_slot = usize::from(index & 0xFF);
        if bytes == 0 {
            return;
        }
        if to_host {
            if matches!(self.fw.in_source, InSource::Stream(_)) {
                self.stats.streams_cancelled += 1;
            }
            // §4.7 / PR #17369: reads always start at slot 0.
            let offset =
                if self.cfg.f2_read_from_start_slot { start_slot * SRAM_SLOT_SIZE } else { 0 };
            self.fw.in_source = InSource::F2Read { offset, remaining: bytes, released: false };
        } else {
            if matches!(self.fw.out_sink, OutSink::Stream(_)) {
                self.stats.streams_cancelled += 1;
            }
            self.fw.out_sink =
                OutSink::F2Write { offset: start_slot * SRAM_SLOT_SIZE, remaining: bytes };
        }
    }

    // ------------------------------------------------------------ bulk data

    /// Bulk OUT on EP 0x02. `None` = nothing armed (the endpoint NAKs).
    pub(crate) fn bulk_out_data(&mut self, data: &Bytes) -> Option<Result<(), &'static str>> {
        let max_packet = self.cfg.bulk_max_packet();
        let len = data.len();
        match self.fw.out_sink.clone() {
            OutSink::Idle => None,
            OutSink::F2Write { offset, remaining } => {
                if !out_length_fits(len, remaining as u64, max_packet) {
                    self.fw.out_sink = OutSink::Idle;
                    return Some(Err("F2 write: bulk OUT length does not match the armed sector count (§4.6: exactly sectors×512 bytes)"));
                }
                if offset + len > SRAM_SIZE {
                    self.fw.out_sink = OutSink::Idle;
                    return Some(Err("F2 write runs past the end of the 512 KiB SRAM"));
                }
                self.deliver(VisTarget::Sram { offset }, data.clone());
                let left = remaining - len;
                self.fw.out_sink = if left == 0 {
                    OutSink::Idle
                } else {
                    OutSink::F2Write { offset: offset + len, remaining: left }
                };
                Some(Ok(()))
            }
            OutSink::Stream(s) => {
                if !out_length_fits(len, s.remaining, max_packet) || !len.is_multiple_of(4) {
                    self.fw.out_sink = OutSink::Idle;
                    self.stats.streams_cancelled += 1;
                    return Some(Err("mode-1 stream: bulk OUT length does not match the armed dword count ×4 (§4.4)"));
                }
                let target =
                    VisTarget::Stream { addr: s.addr, fmt: s.fmt, byte_enables: s.byte_enables };
                self.deliver(target, data.clone());
                let left = s.remaining - len as u64;
                self.fw.out_sink = if left == 0 {
                    OutSink::Idle
                } else {
                    OutSink::Stream(StreamWrite {
                        addr: advance(s.addr, s.fmt, len as u64),
                        remaining: left,
                        ..s
                    })
                };
                Some(Ok(()))
            }
        }
    }

    /// Bulk IN on EP 0x81. `None` = nothing to send yet (NAK: nothing armed, or an F2 read
    /// waiting for its CQ release).
    pub(crate) fn bulk_in_data(&mut self, length: usize) -> Option<Result<Vec<u8>, BulkInError>> {
        let max_packet = self.cfg.bulk_max_packet();
        match std::mem::take(&mut self.fw.in_source) {
            InSource::Idle => None,
            src @ InSource::F2Read { released: false, .. } => {
                self.fw.in_source = src;
                None
            }
            InSource::F2Read { offset, remaining, released: true } => {
                if length < remaining && !length.is_multiple_of(max_packet) {
                    // The device sends a full packet the host buffer cannot hold.
                    return Some(Err(BulkInError::Babble));
                }
                let n = length.min(remaining);
                if offset + n > SRAM_SIZE {
                    return Some(Err(BulkInError::OutOfRange));
                }
                let data = self.mem.sram[offset..offset + n].to_vec();
                if remaining > n {
                    self.fw.in_source = InSource::F2Read {
                        offset: offset + n,
                        remaining: remaining - n,
                        released: true,
                    };
                }
                Some(Ok(data))
            }
            InSource::Stream(mut s) => {
                let total = s.prefetched.len() as u64 + s.unread;
                if (length as u64) < total && !length.is_multiple_of(max_packet) {
                    self.stats.streams_cancelled += 1;
                    return Some(Err(BulkInError::Babble));
                }
                let n = (length as u64).min(total) as usize;
                let from_prefetch = n.min(s.prefetched.len());
                let mut data = Vec::with_capacity(n);
                data.extend(s.prefetched.drain(..from_prefetch));
                let direct = n - from_prefetch;
                if direct > 0 {
                    data.resize(n, 0);
                    self.stream_read_into(s.addr, s.fmt, &mut data[from_prefetch..]);
                    s.addr = advance(s.addr, s.fmt, direct as u64);
                    s.unread -= direct as u64;
                }
                // §4.5 step 2: each IN completion triggers the next chunk's reads.
                self.prefetch(&mut s);
                if !s.prefetched.is_empty() || s.unread > 0 {
                    self.fw.in_source = InSource::Stream(s);
                }
                Some(Ok(data))
            }
        }
    }

    /// SET_INTERFACE / SET_CONFIGURATION side effects (§1.1): streaming state cleared; the F2
    /// DMA state is reset by firmware ≥ #75, wedged by older firmware if it was mid-transfer.
    pub(crate) fn usb_reset_side_effects(&mut self) {
        if self.fw.cancel_streams() {
            self.stats.streams_cancelled += 1;
        }
        if self.fw.f2_busy() {
            if !self.cfg.f2_reset_clears_dma {
                self.fw.f2_wedged = true;
            }
            self.fw.clear_f2();
        }
    }
}

/// How a bulk IN that had data to send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BulkInError {
    /// Host buffer not a whole number of packets and shorter than the data: overflow.
    Babble,
    /// F2 read past the end of SRAM.
    OutOfRange,
}
