//! Pushbuffer method encoding, GPFIFO entries and the methods egpu sends (host semaphores,
//! compute launch, copy engine). All plain data: build dwords, test them, then submit.
//!
//! Facts: reference nv-driver.md §2.1–§2.3; headers `cla16f.h`/`clc56f.h` (method header,
//! GP_ENTRY), `clc86f.h` (host SEM_*), `clcbc0.h` (compute), `clc8b5.h` (copy).

use thiserror::Error;

/// Why a method or entry cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// Method byte offset must be 4-aligned and below 0x4000 (12-bit dword address).
    #[error("method offset 0x{0:x} is not a 4-aligned offset below 0x4000")]
    BadMethod(u32),
    /// Subchannel is 3 bits.
    #[error("subchannel {0} is above 7")]
    BadSubchannel(u8),
    /// The dword count field is 13 bits.
    #[error("{0} data dwords do not fit a method header's 13-bit count")]
    TooManyDwords(usize),
    /// An immediate value is 13 bits.
    #[error("immediate value 0x{0:x} does not fit 13 bits")]
    ImmediateTooLarge(u32),
    /// A GPFIFO entry reaches only 40-bit addresses.
    #[error("pushbuffer address 0x{0:x} is not 4-aligned or not below 2^40")]
    BadPushbufferAddress(u64),
    /// A GPFIFO entry's length field is 21 bits (dwords).
    #[error("pushbuffer of {0} dwords is longer than a GPFIFO entry can describe")]
    PushbufferTooLong(usize),
}

/// `SEC_OP` of a method header (bits 31:29).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SecOp {
    /// `INC_METHOD`: data dwords go to method, method+4, …
    IncMethod = 1,
    /// `NON_INC_METHOD`: every data dword goes to the same method.
    NonIncMethod = 3,
    /// `IMMD_DATA_METHOD`: 13-bit data inside the header, no payload.
    ImmdDataMethod = 4,
    /// `ONE_INC`: first dword to method, the rest to method+4.
    OneInc = 5,
}

fn header(op: SecOp, subchannel: u8, method: u32, count_or_data: u32) -> Result<u32, EncodeError> {
    if !method.is_multiple_of(4) || method >= 0x4000 {
        return Err(EncodeError::BadMethod(method));
    }
    if subchannel > 7 {
        return Err(EncodeError::BadSubchannel(subchannel));
    }
    Ok(((op as u32) << 29)
        | ((count_or_data & 0x1FFF) << 16)
        | (u32::from(subchannel) << 13)
        | (method >> 2))
}

/// A method header for `count` data dwords (`INC`, `NON_INC` or `ONE_INC`).
pub fn method_header(
    op: SecOp,
    subchannel: u8,
    method: u32,
    count: usize,
) -> Result<u32, EncodeError> {
    if count > 0x1FFF {
        return Err(EncodeError::TooManyDwords(count));
    }
    header(op, subchannel, method, count as u32)
}

/// An immediate-data method header (`IMMD_DATA_METHOD`, 13-bit value, no payload).
pub fn immediate_header(subchannel: u8, method: u32, value: u32) -> Result<u32, EncodeError> {
    if value > 0x1FFF {
        return Err(EncodeError::ImmediateTooLarge(value));
    }
    header(SecOp::ImmdDataMethod, subchannel, method, value)
}

/// A GPFIFO entry (`NVC56F_GP_ENTRY0/1`, reference §2.1): pushbuffer at `address` (4-aligned,
/// below 2^40), `dwords` long; `subroutine` sets LEVEL (tinygrad does), `sync` waits first.
pub fn gpfifo_entry(
    address: u64,
    dwords: usize,
    subroutine: bool,
    sync: bool,
) -> Result<u64, EncodeError> {
    if !address.is_multiple_of(4) || address >= 1 << 40 {
        return Err(EncodeError::BadPushbufferAddress(address));
    }
    if dwords >= 1 << 21 {
        return Err(EncodeError::PushbufferTooLong(dwords));
    }
    let entry0 = (address as u32) & !3; // GET bits 31:2, FETCH bit 0 = 0 (unconditional)
    let entry1 = ((address >> 32) as u32 & 0xFF)
        | (u32::from(subroutine) << 9)
        | ((dwords as u32) << 10)
        | (u32::from(sync) << 31);
    Ok(u64::from(entry0) | (u64::from(entry1) << 32))
}

/// Subchannel conventions (reference §2.2).
pub mod subchannel {
    /// Host / GPFIFO class methods.
    pub const HOST: u8 = 0;
    /// The compute object.
    pub const COMPUTE: u8 = 1;
    /// The copy-engine object.
    pub const COPY: u8 = 4;
}

/// Host (GPFIFO class) methods, identical in C56F/C86F/C96F (reference §2.3, `clc86f.h`).
pub mod host {
    /// `NVC86F_SET_OBJECT` (0x0 on any subchannel binds a class).
    pub const SET_OBJECT: u32 = 0x0000;
    /// `NON_STALL_INTERRUPT`.
    pub const NON_STALL_INTERRUPT: u32 = 0x0020;
    /// `MEM_OP_A`.
    pub const MEM_OP_A: u32 = 0x0028;
    /// `SEM_ADDR_LO`.
    pub const SEM_ADDR_LO: u32 = 0x005C;
    /// `SEM_ADDR_HI`.
    pub const SEM_ADDR_HI: u32 = 0x0060;
    /// `SEM_PAYLOAD_LO`.
    pub const SEM_PAYLOAD_LO: u32 = 0x0064;
    /// `SEM_PAYLOAD_HI`.
    pub const SEM_PAYLOAD_HI: u32 = 0x0068;
    /// `SEM_EXECUTE`.
    pub const SEM_EXECUTE: u32 = 0x006C;
    /// `WFI`.
    pub const WFI: u32 = 0x0078;
    /// `WFI_SCOPE_ALL`: wait for all work of the channel's engine, not only this subcontext's.
    pub const WFI_SCOPE_ALL: u32 = 1;
    /// SEM_EXECUTE OPERATION (2:0) = RELEASE.
    pub const SEM_EXECUTE_OPERATION_RELEASE: u32 = 1;
    /// SEM_EXECUTE OPERATION = ACQ_CIRC_GEQ (wrap-safe ≥).
    pub const SEM_EXECUTE_OPERATION_ACQ_CIRC_GEQ: u32 = 3;
    /// SEM_EXECUTE RELEASE_WFI (bit 20).
    pub const SEM_EXECUTE_RELEASE_WFI: u32 = 1 << 20;
    /// SEM_EXECUTE PAYLOAD_SIZE_64BIT (bit 24).
    pub const SEM_EXECUTE_PAYLOAD_SIZE_64BIT: u32 = 1 << 24;
    /// SEM_EXECUTE RELEASE_TIMESTAMP_EN (bit 25).
    pub const SEM_EXECUTE_RELEASE_TIMESTAMP: u32 = 1 << 25;
    /// USERD offset of GP_GET (written by the GPU).
    pub const USERD_GP_GET: usize = 0x88;
    /// USERD offset of GP_PUT (written by us).
    pub const USERD_GP_PUT: usize = 0x8C;
    /// Usermode (doorbell) register `NOTIFY_CHANNEL_PENDING`.
    pub const USERMODE_NOTIFY_CHANNEL_PENDING: usize = 0x90;
    /// Usermode `TIME_0` / `TIME_1` (ns global timer).
    pub const USERMODE_TIME_0: usize = 0x80;
}

/// Compute class methods, identical in C6C0/C7C0/C9C0/CBC0/CEC0 (reference §2.3, `clcbc0.h`).
pub mod compute {
    /// `SET_SHADER_SHARED_MEMORY_WINDOW_A` (upper) / `_B` at +4.
    pub const SET_SHADER_SHARED_MEMORY_WINDOW_A: u32 = 0x02A0;
    /// `SEND_PCAS_A` (QMD address >> 8).
    pub const SEND_PCAS_A: u32 = 0x02B4;
    /// `SEND_SIGNALING_PCAS2_B`.
    pub const SEND_SIGNALING_PCAS2_B: u32 = 0x02C0;
    /// `SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A` (B, C follow).
    pub const SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A: u32 = 0x02E4;
    /// `SET_SHADER_LOCAL_MEMORY_A` (B follows).
    pub const SET_SHADER_LOCAL_MEMORY_A: u32 = 0x0790;
    /// `SET_SHADER_LOCAL_MEMORY_WINDOW_A` (B follows).
    pub const SET_SHADER_LOCAL_MEMORY_WINDOW_A: u32 = 0x07B0;
    /// `INVALIDATE_SHADER_CACHES_NO_WFI`.
    pub const INVALIDATE_SHADER_CACHES_NO_WFI: u32 = 0x1698;
    /// PCAS_ACTION = INVALIDATE_COPY_SCHEDULE.
    pub const PCAS_ACTION_INVALIDATE_COPY_SCHEDULE: u32 = 3;
    /// PCAS_ACTION = PREFETCH_SCHEDULE (tinygrad's choice).
    pub const PCAS_ACTION_PREFETCH_SCHEDULE: u32 = 9;
    /// INVALIDATE_SHADER_CACHES_NO_WFI: INSTRUCTION | GLOBAL_DATA | CONSTANT.
    pub const INVALIDATE_INSTRUCTION_GLOBAL_CONSTANT: u32 = 0x1011;
}

/// Copy-engine methods, identical in C6B5/C7B5/C8B5/C9B5 (reference §2.3, `clc8b5.h`).
pub mod copy {
    /// `SET_SEMAPHORE_A` (address upper).
    pub const SET_SEMAPHORE_A: u32 = 0x0240;
    /// `SET_SEMAPHORE_B` (address lower).
    pub const SET_SEMAPHORE_B: u32 = 0x0244;
    /// `SET_SEMAPHORE_PAYLOAD`.
    pub const SET_SEMAPHORE_PAYLOAD: u32 = 0x0248;
    /// `LAUNCH_DMA`.
    pub const LAUNCH_DMA: u32 = 0x0300;
    /// `OFFSET_IN_UPPER` (then LOWER, OUT_UPPER, OUT_LOWER).
    pub const OFFSET_IN_UPPER: u32 = 0x0400;
    /// `LINE_LENGTH_IN`.
    pub const LINE_LENGTH_IN: u32 = 0x0418;
    /// `LINE_COUNT`.
    pub const LINE_COUNT: u32 = 0x041C;
}

/// Fields of the copy engine's `LAUNCH_DMA` (`clc8b5.h` NVC8B5_LAUNCH_DMA_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaunchDma {
    /// DATA_TRANSFER_TYPE (1:0): 0 none, 1 pipelined, 2 non-pipelined.
    pub data_transfer_type: u32,
    /// FLUSH_ENABLE (2).
    pub flush_enable: bool,
    /// SEMAPHORE_TYPE (4:3): 0 none, 1 one-word, 2 four-word (with timestamp).
    pub semaphore_type: u32,
    /// SRC_MEMORY_LAYOUT (7): 1 pitch.
    pub src_pitch: bool,
    /// DST_MEMORY_LAYOUT (8): 1 pitch.
    pub dst_pitch: bool,
    /// MULTI_LINE_ENABLE (9).
    pub multi_line: bool,
    /// SEMAPHORE_PAYLOAD_SIZE (27): 1 = 64-bit.
    pub semaphore_payload_64: bool,
}

impl LaunchDma {
    /// The method data dword.
    pub fn encode(self) -> u32 {
        (self.data_transfer_type & 3)
            | (u32::from(self.flush_enable) << 2)
            | ((self.semaphore_type & 3) << 3)
            | (u32::from(self.src_pitch) << 7)
            | (u32::from(self.dst_pitch) << 8)
            | (u32::from(self.multi_line) << 9)
            | (u32::from(self.semaphore_payload_64) << 27)
    }
}

/// The largest single copy-engine line; longer copies are split (tinygrad uses 2 GiB).
pub const MAX_COPY_CHUNK: u64 = 1 << 31;

/// A pushbuffer under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushBuffer {
    dwords: Vec<u32>,
}

impl PushBuffer {
    /// An empty pushbuffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded dwords.
    pub fn dwords(&self) -> &[u32] {
        &self.dwords
    }

    /// Empty it, keeping its capacity for the next submission.
    pub fn clear(&mut self) {
        self.dwords.clear();
    }

    /// Append an incrementing method with its data.
    pub fn inc(
        &mut self,
        subchannel: u8,
        method: u32,
        data: &[u32],
    ) -> Result<&mut Self, EncodeError> {
        let h = method_header(SecOp::IncMethod, subchannel, method, data.len())?;
        self.dwords.push(h);
        self.dwords.extend_from_slice(data);
        Ok(self)
    }

    /// Append a non-incrementing method with its data (all to one method).
    pub fn non_inc(
        &mut self,
        subchannel: u8,
        method: u32,
        data: &[u32],
    ) -> Result<&mut Self, EncodeError> {
        let h = method_header(SecOp::NonIncMethod, subchannel, method, data.len())?;
        self.dwords.push(h);
        self.dwords.extend_from_slice(data);
        Ok(self)
    }

    /// Append an immediate-data method.
    pub fn immediate(
        &mut self,
        subchannel: u8,
        method: u32,
        value: u32,
    ) -> Result<&mut Self, EncodeError> {
        self.dwords.push(immediate_header(subchannel, method, value)?);
        Ok(self)
    }

    /// Bind `class` to `subchannel` (SET_OBJECT).
    pub fn set_object(&mut self, subchannel: u8, class: u32) -> Result<&mut Self, EncodeError> {
        self.inc(subchannel, host::SET_OBJECT, &[class])
    }

    /// Host semaphore release of a 64-bit `value` at `address` after prior work (WFI), with a
    /// GPU timestamp at `address + 8`.
    pub fn semaphore_release(
        &mut self,
        address: u64,
        value: u64,
    ) -> Result<&mut Self, EncodeError> {
        let exec = host::SEM_EXECUTE_OPERATION_RELEASE
            | host::SEM_EXECUTE_RELEASE_WFI
            | host::SEM_EXECUTE_PAYLOAD_SIZE_64BIT
            | host::SEM_EXECUTE_RELEASE_TIMESTAMP;
        // No NON_STALL_INTERRUPT after it: waiters poll the value, so an interrupt per release
        // would only cost the host CPU time.
        self.inc(
            subchannel::HOST,
            host::SEM_ADDR_LO,
            &[address as u32, (address >> 32) as u32, value as u32, (value >> 32) as u32, exec],
        )
    }

    /// Host wait-for-idle: later methods start only after all earlier work has finished.
    pub fn wait_for_idle(&mut self) -> Result<&mut Self, EncodeError> {
        self.inc(subchannel::HOST, host::WFI, &[host::WFI_SCOPE_ALL])
    }

    /// Host semaphore acquire: stall the channel until the 64-bit value at `address` is ≥ `value`.
    pub fn semaphore_acquire(
        &mut self,
        address: u64,
        value: u64,
    ) -> Result<&mut Self, EncodeError> {
        let exec = host::SEM_EXECUTE_OPERATION_ACQ_CIRC_GEQ | host::SEM_EXECUTE_PAYLOAD_SIZE_64BIT;
        self.inc(
            subchannel::HOST,
            host::SEM_ADDR_LO,
            &[address as u32, (address >> 32) as u32, value as u32, (value >> 32) as u32, exec],
        )
    }

    /// Launch the QMD at `qmd_address` (256-B aligned) on the compute subchannel.
    pub fn launch_qmd(&mut self, qmd_address: u64) -> Result<&mut Self, EncodeError> {
        self.inc(
            subchannel::COMPUTE,
            compute::INVALIDATE_SHADER_CACHES_NO_WFI,
            &[compute::INVALIDATE_INSTRUCTION_GLOBAL_CONSTANT],
        )?;
        self.inc(subchannel::COMPUTE, compute::SEND_PCAS_A, &[(qmd_address >> 8) as u32])?;
        self.inc(
            subchannel::COMPUTE,
            compute::SEND_SIGNALING_PCAS2_B,
            &[compute::PCAS_ACTION_PREFETCH_SCHEDULE],
        )
    }

    /// Copy `len` bytes from `src` to `dst` (GPU VAs) on the copy subchannel, in ≤2 GiB lines.
    pub fn copy(&mut self, src: u64, dst: u64, len: u64) -> Result<&mut Self, EncodeError> {
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(MAX_COPY_CHUNK);
            let (s, d) = (src + done, dst + done);
            self.inc(
                subchannel::COPY,
                copy::OFFSET_IN_UPPER,
                &[(s >> 32) as u32, s as u32, (d >> 32) as u32, d as u32],
            )?;
            self.inc(subchannel::COPY, copy::LINE_LENGTH_IN, &[chunk as u32])?;
            let launch = LaunchDma {
                data_transfer_type: 2,
                src_pitch: true,
                dst_pitch: true,
                ..LaunchDma::default()
            };
            self.inc(subchannel::COPY, copy::LAUNCH_DMA, &[launch.encode()])?;
            done += chunk;
        }
        Ok(self)
    }

    /// Copy-engine semaphore release: 32-bit `value` at `address` (four-word: + timestamp) after a flush.
    pub fn copy_semaphore_release(
        &mut self,
        address: u64,
        value: u32,
    ) -> Result<&mut Self, EncodeError> {
        self.inc(
            subchannel::COPY,
            copy::SET_SEMAPHORE_A,
            &[(address >> 32) as u32, address as u32, value],
        )?;
        let launch = LaunchDma { flush_enable: true, semaphore_type: 2, ..LaunchDma::default() };
        self.inc(subchannel::COPY, copy::LAUNCH_DMA, &[launch.encode()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Extract bits hi..=lo of a dword.
    fn bits(v: u32, hi: u32, lo: u32) -> u32 {
        (v >> lo) & ((1u64 << (hi - lo + 1)) - 1) as u32
    }

    #[test]
    fn wait_for_idle_is_one_host_wfi_with_scope_all() {
        // NVC86F_WFI 0x78, _SCOPE 0:0, _SCOPE_ALL 1 (clc86f.h).
        let mut pb = PushBuffer::new();
        pb.wait_for_idle().unwrap();
        let [h, data] = pb.dwords() else { panic!("{:x?}", pb.dwords()) };
        assert_eq!((bits(*h, 31, 29), bits(*h, 28, 16), bits(*h, 11, 0)), (1, 1, 0x78 >> 2));
        assert_eq!(*data, 1);
    }

    #[test]
    fn method_header_fields_follow_cla16f() {
        // NVA16F_DMA_METHOD_ADDRESS 11:0, _SUBCHANNEL 15:13, _METHOD_COUNT 28:16, _SEC_OP 31:29.
        let h = method_header(SecOp::IncMethod, 1, 0x2B4, 1).unwrap();
        assert_eq!(bits(h, 11, 0), 0x2B4 >> 2);
        assert_eq!(bits(h, 15, 13), 1);
        assert_eq!(bits(h, 28, 16), 1);
        assert_eq!(bits(h, 31, 29), 1);
        // tinygrad's INC form: (2<<28)|(count<<16)|(subc<<13)|(mthd>>2).
        assert_eq!(h, (2 << 28) | (1 << 16) | (1 << 13) | (0x2B4 >> 2));
        let n = method_header(SecOp::NonIncMethod, 4, 0x400, 0x1FFF).unwrap();
        assert_eq!(
            (bits(n, 31, 29), bits(n, 28, 16), bits(n, 15, 13), bits(n, 11, 0)),
            (3, 0x1FFF, 4, 0x100)
        );
        let o = method_header(SecOp::OneInc, 7, 0x3FFC, 2).unwrap();
        assert_eq!((bits(o, 31, 29), bits(o, 15, 13), bits(o, 11, 0)), (5, 7, 0xFFF));
        let i = immediate_header(0, 0x20, 0x1ABC).unwrap();
        assert_eq!((bits(i, 31, 29), bits(i, 28, 16), bits(i, 11, 0)), (4, 0x1ABC, 8));
    }

    #[test]
    fn method_header_rejects_what_does_not_fit() {
        assert_eq!(
            method_header(SecOp::IncMethod, 0, 0x4000, 1),
            Err(EncodeError::BadMethod(0x4000))
        );
        assert_eq!(method_header(SecOp::IncMethod, 0, 0x2, 1), Err(EncodeError::BadMethod(2)));
        assert_eq!(method_header(SecOp::IncMethod, 8, 0, 1), Err(EncodeError::BadSubchannel(8)));
        assert_eq!(
            method_header(SecOp::IncMethod, 0, 0, 0x2000),
            Err(EncodeError::TooManyDwords(0x2000))
        );
        assert_eq!(immediate_header(0, 0, 0x2000), Err(EncodeError::ImmediateTooLarge(0x2000)));
    }

    #[test]
    fn gpfifo_entry_fields_follow_clc56f() {
        // GP_ENTRY0: FETCH 0, GET 31:2 (VA 31:2); GP_ENTRY1: GET_HI 7:0, LEVEL 9, LENGTH 30:10, SYNC 31.
        let va = 0xAB_1234_5678u64;
        let e = gpfifo_entry(va, 0x1234, true, false).unwrap();
        let (e0, e1) = (e as u32, (e >> 32) as u32);
        assert_eq!(bits(e0, 0, 0), 0);
        assert_eq!(e0 & !3, 0x1234_5678);
        assert_eq!(bits(e1, 7, 0), 0xAB);
        assert_eq!(bits(e1, 9, 9), 1);
        assert_eq!(bits(e1, 30, 10), 0x1234);
        assert_eq!(bits(e1, 31, 31), 0);
        // tinygrad: (va/4 << 2) | (len << 42) | (1 << 41).
        assert_eq!(e, ((va / 4) << 2) | (0x1234 << 42) | (1 << 41));
        assert_eq!(bits((gpfifo_entry(0x1000, 1, false, true).unwrap() >> 32) as u32, 31, 31), 1);
        assert_eq!(
            gpfifo_entry(1 << 40, 1, true, false),
            Err(EncodeError::BadPushbufferAddress(1 << 40))
        );
        assert_eq!(
            gpfifo_entry(0x1002, 1, true, false),
            Err(EncodeError::BadPushbufferAddress(0x1002))
        );
        assert_eq!(
            gpfifo_entry(0x1000, 1 << 21, true, false),
            Err(EncodeError::PushbufferTooLong(1 << 21))
        );
    }

    #[test]
    fn semaphore_release_and_acquire_match_reference_values() {
        let mut pb = PushBuffer::new();
        pb.semaphore_release(0x12_3456_7890, 0x1_0000_0002).unwrap();
        let d = pb.dwords();
        assert_eq!(d[0], method_header(SecOp::IncMethod, 0, 0x5C, 5).unwrap());
        assert_eq!(&d[1..6], &[0x3456_7890, 0x12, 2, 1, 0x0310_0001]); // reference §2.3 "signal"
        assert_eq!(d.len(), 6, "no interrupt after the release");
        let mut pb = PushBuffer::new();
        pb.semaphore_acquire(0x1000, 7).unwrap();
        assert_eq!(pb.dwords()[5], 0x0100_0003); // reference §2.3 "wait"
    }

    #[test]
    fn copy_engine_launch_dma_fields_follow_clc8b5() {
        // tinygrad's memcpy LAUNCH_DMA = 0x182, copy signal = 0x14 (reference §2.3).
        let memcpy = LaunchDma {
            data_transfer_type: 2,
            src_pitch: true,
            dst_pitch: true,
            ..Default::default()
        };
        assert_eq!(memcpy.encode(), 0x182);
        let signal = LaunchDma { flush_enable: true, semaphore_type: 2, ..Default::default() };
        assert_eq!(signal.encode(), 0x14);
        let all = LaunchDma {
            data_transfer_type: 3,
            flush_enable: true,
            semaphore_type: 3,
            src_pitch: true,
            dst_pitch: true,
            multi_line: true,
            semaphore_payload_64: true,
        };
        // DATA_TRANSFER_TYPE 1:0, FLUSH_ENABLE 2:2, SEMAPHORE_TYPE 4:3, SRC/DST_MEMORY_LAYOUT 7/8,
        // MULTI_LINE_ENABLE 9:9, SEMAPHORE_PAYLOAD_SIZE 27:27.
        assert_eq!(all.encode(), 0b11 | 1 << 2 | 0b11 << 3 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 27);
    }

    #[test]
    fn copies_split_into_two_gib_lines() {
        let mut pb = PushBuffer::new();
        let len = MAX_COPY_CHUNK * 2 + 5;
        pb.copy(0x1_0000_0000, 0x20_0000_0000, len).unwrap();
        // Per line: header+4 offsets, header+length, header+launch = 9 dwords.
        assert_eq!(pb.dwords().len(), 27);
        let line = |i: usize| &pb.dwords()[i * 9..(i + 1) * 9];
        assert_eq!(line(0)[6], MAX_COPY_CHUNK as u32);
        assert_eq!(line(2)[6], 5);
        let src2 = 0x1_0000_0000 + 2 * MAX_COPY_CHUNK;
        assert_eq!((line(2)[1], line(2)[2]), ((src2 >> 32) as u32, src2 as u32));
        assert_eq!(line(1)[8], 0x182);
        assert_eq!(line(0)[0], method_header(SecOp::IncMethod, 4, 0x400, 4).unwrap());
    }

    #[test]
    fn qmd_launch_sends_pcas_with_shifted_address() {
        let mut pb = PushBuffer::new();
        pb.launch_qmd(0x12_3456_7800).unwrap();
        let d = pb.dwords();
        assert_eq!(d[1], 0x1011);
        assert_eq!(d[2], method_header(SecOp::IncMethod, 1, 0x2B4, 1).unwrap());
        assert_eq!(d[3], 0x1234_5678);
        assert_eq!(d[5], 9);
    }
}
