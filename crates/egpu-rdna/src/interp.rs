//! A wave32 interpreter for gfx11/gfx12 compute kernels.
//!
//! A card model plugs in through [`Memory`] (every global/flat access and every instruction
//! fetch goes through it, so a GPU page-table walker can sit behind it) and describes a
//! dispatch as plain data ([`Dispatch`]). Every failure is an [`ExecError`], never a panic.
//! Instructions are decoded once per kernel (on first execution) and cached by address.

use crate::decode::{self, Arch, Class, DecodeError, Field, Inst, Spec};
use crate::disasm;
use std::collections::HashMap;

/// A memory access the memory system refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} of {len} bytes at {va:#x}: {reason}", if *.write { "write" } else { "read" })]
pub struct Fault {
    pub va: u64,
    pub len: usize,
    pub write: bool,
    pub reason: String,
}

/// GPU virtual memory as the shader cores see it.
pub trait Memory {
    fn read(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault>;
    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), Fault>;
}

/// A flat memory at a base address: the simplest [`Memory`], for tests and tools.
#[derive(Clone, Debug)]
pub struct FlatMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl FlatMemory {
    pub fn new(base: u64, size: usize) -> FlatMemory {
        FlatMemory { base, bytes: vec![0; size] }
    }

    fn range(&self, va: u64, len: usize, write: bool) -> Result<std::ops::Range<usize>, Fault> {
        let fault = || Fault {
            va,
            len,
            write,
            reason: format!(
                "outside the mapped range {:#x}..{:#x}",
                self.base,
                self.base.saturating_add(self.bytes.len() as u64)
            ),
        };
        let off = va.checked_sub(self.base).ok_or_else(fault)?;
        let end = off.checked_add(len as u64).ok_or_else(fault)?;
        if end > self.bytes.len() as u64 {
            return Err(fault());
        }
        Ok(off as usize..end as usize)
    }
}

impl Memory for FlatMemory {
    fn read(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let r = self.range(va, buf.len(), false)?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, va: u64, data: &[u8]) -> Result<(), Fault> {
        let r = self.range(va, data.len(), true)?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

/// Everything the command processor hands the shader array for one dispatch.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub arch: Arch,
    /// GPU VA of the first instruction (COMPUTE_PGM_LO/HI plus the entry offset).
    pub entry: u64,
    pub rsrc1: u32,
    pub rsrc2: u32,
    pub rsrc3: u32,
    /// COMPUTE_USER_DATA_* values, loaded into s0.. (at most RSRC2.USER_SGPR of them).
    pub user_sgprs: Vec<u32>,
    /// Number of workgroups in x, y, z.
    pub grid: [u32; 3],
    /// Work-items per workgroup in x, y, z.
    pub block: [u32; 3],
    /// LDS bytes per workgroup.
    pub lds_size: u32,
    /// Private (scratch) bytes per work-item.
    pub scratch_per_lane: u32,
    /// Upper bound of wave-instructions for the whole dispatch.
    pub step_budget: u64,
}

/// User SGPR values in HSA order for the enabled `kernel_code_properties` bits (rdna-isa.md §4):
/// private segment buffer (4, left zero: gfx11+ scratch is architected), dispatch ptr (2),
/// queue ptr (2), kernarg segment ptr (2), dispatch id (2), flat scratch init (2, zero),
/// private segment size (1).
pub fn hsa_user_sgprs(
    properties: u16,
    kernarg: u64,
    dispatch_ptr: u64,
    queue_ptr: u64,
    scratch_per_lane: u32,
) -> Vec<u32> {
    let mut v = Vec::new();
    let pair = |v: &mut Vec<u32>, x: u64| {
        v.push(x as u32);
        v.push((x >> 32) as u32);
    };
    if properties & 1 != 0 {
        v.extend([0; 4]);
    }
    if properties & 2 != 0 {
        pair(&mut v, dispatch_ptr);
    }
    if properties & 4 != 0 {
        pair(&mut v, queue_ptr);
    }
    if properties & 8 != 0 {
        pair(&mut v, kernarg);
    }
    if properties & 16 != 0 {
        pair(&mut v, 0);
    }
    if properties & 32 != 0 {
        pair(&mut v, 0);
    }
    if properties & 64 != 0 {
        v.push(scratch_per_lane);
    }
    v
}

/// Why a dispatch stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    #[error("bad dispatch: {0}")]
    BadDispatch(String),
    #[error("instruction fetch at {pc:#x}: {source}")]
    Fetch { pc: u64, source: Fault },
    #[error("undecodable instruction at {pc:#x}: {source}")]
    Decode { pc: u64, source: DecodeError },
    #[error("instruction not implemented at {pc:#x}: {text} (dwords {words:08x?})")]
    Unimplemented { pc: u64, text: String, words: Vec<u32> },
    #[error("memory fault by `{text}` at pc {pc:#x}: {fault}")]
    Memory { pc: u64, text: String, fault: Fault },
    #[error("scratch access out of range by `{text}` at pc {pc:#x}: offset {offset:#x}, lane has {size} bytes")]
    Scratch { pc: u64, text: String, offset: u64, size: u32 },
    #[error("step budget of {budget} wave-instructions exceeded (at pc {pc:#x})")]
    StepBudget { budget: u64, pc: u64 },
    #[error("s_code_end executed at {pc:#x}: control fell off the end of the kernel")]
    CodeEnd { pc: u64 },
    #[error("workgroup {wg:?}: waves wait at different barriers and can never all arrive")]
    Deadlock { wg: [u32; 3] },
}

/// Counters of a finished dispatch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub wave_instructions: u64,
    pub waves: u64,
    pub workgroups: u64,
}

// Scalar register file slots (the SSRC/SDST codes): s0-s105, vcc, ttmp, null, m0, exec.
const VCC: usize = 106;
const TTMP: usize = 108;
const NULL: usize = 124;
const EXEC: usize = 126;

/// A pre-decoded operand.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    V(u16),
    S(u16),
    Const(u32),
    Const64(u64),
    Scc,
    Vccz,
    Execz,
}

/// Operations the interpreter implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
enum K {
    // SOPP / control
    Nop,
    EndPgm,
    CodeEnd,
    Branch,
    CbrScc0,
    CbrScc1,
    CbrVccz,
    CbrVccnz,
    CbrExecz,
    CbrExecnz,
    Barrier,
    // SALU
    SMov32,
    SMov64,
    SCmov32,
    SAddU32,
    SAddcU32,
    SSubU32,
    SSubbU32,
    SAddI32,
    SSubI32,
    SAddU64,
    SSubU64,
    SMulU64,
    SMulI32,
    SMulHiU32,
    SMulHiI32,
    SAnd32,
    SOr32,
    SXor32,
    SAndN1_32,
    SOrN1_32,
    SNand32,
    SNor32,
    SXnor32,
    SAnd64,
    SOr64,
    SXor64,
    SAndN1_64,
    SLshl32,
    SLshr32,
    SAshr32,
    SLshl64,
    SLshr64,
    SAshr64,
    SLshlAdd(u8),
    SMinI32,
    SMinU32,
    SMaxI32,
    SMaxU32,
    SCsel32,
    SCsel64,
    SAbsI32,
    SBrev32,
    SNot32,
    SNot64,
    SCtz32,
    SClz32,
    SBcnt1_32,
    SBfeU32,
    SBfeI32,
    SSext8,
    SSext16,
    SPackLL,
    SAndSaveexec,
    SOrSaveexec,
    SAndNot1Saveexec,
    SCmpI32(Cmp),
    SCmpU32(Cmp),
    SCmpU64(Cmp),
    SMovk,
    SAddk,
    SMulk,
    SCmpkI32(Cmp),
    SCmpkU32(Cmp),
    SFAdd,
    SFSub,
    SFMul,
    SCvtF32I32,
    SCvtF32U32,
    SCvtI32F32,
    SCvtU32F32,
    // SMEM
    SLoad(u8),
    // VALU
    VMov,
    VCndmask,
    VReadfirstlane,
    VReadlane,
    VWritelane,
    VAddF32,
    VSubF32,
    VSubrevF32,
    VMulF32,
    VMaxF32,
    VMinF32,
    VFmaF32,
    VFmacF32,
    VFmamkF32,
    VFmaakF32,
    VLdexpF32,
    VRcpF32,
    VRsqF32,
    VSqrtF32,
    VExpF32,
    VLogF32,
    VRndneF32,
    VFloorF32,
    VCeilF32,
    VTruncF32,
    VFractF32,
    VCvtF32I32,
    VCvtF32U32,
    VCvtI32F32,
    VCvtU32F32,
    VCvtF16F32,
    VCvtF32F16,
    VDivScaleF32,
    VDivFmasF32,
    VDivFixupF32,
    VAddNc,
    VSubNc,
    VSubrevNc,
    VAddCo,
    VSubCo,
    VSubrevCo,
    VAddCoCi,
    VSubCoCi,
    VSubrevCoCi,
    VAnd,
    VOr,
    VXor,
    VNot,
    VLshlrev,
    VLshrrev,
    VAshrrev,
    VLshlrev64,
    VLshrrev64,
    VAshrrev64,
    VBfeU,
    VBfeI,
    VBfi,
    VBfrev,
    VAdd3,
    VLshlAdd,
    VAddLshl,
    VLshlOr,
    VOr3,
    VAndOr,
    VXad,
    VMulLo,
    VMulHiU,
    VMulHiI,
    VMulU24,
    VMulI24,
    VMadU24,
    VMadU64U32,
    VMadI64I32,
    VPerm,
    VMaxI,
    VMinI,
    VMaxU,
    VMinU,
    VMbcntLo,
    VMbcntHi,
    VDot4I32Iu8,
    VDot4U32U8,
    VCmpF32(Cmp),
    VCmpI32(Cmp),
    VCmpU32(Cmp),
    VCmpClassF32,
    // LDS
    DsLoad(u8),
    DsStore(u8),
    DsLoad2(u8),
    DsStore2(u8),
    DsAddU32,
    DsAddRtnU32,
    DsBpermute,
    DsPermute,
    // memory
    GLoad(MemTy),
    GStore(MemTy),
    GAtomic(Atom),
    ScrLoad(MemTy),
    ScrStore(MemTy),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    F,
    Lt,
    Eq,
    Le,
    Gt,
    Lg,
    Ge,
    O,
    U,
    Nge,
    Nlg,
    Ngt,
    Nle,
    Neq,
    Nlt,
    T,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MemTy {
    U8,
    I8,
    U16,
    I16,
    D(u8),
}

impl MemTy {
    fn bytes(self) -> usize {
        match self {
            MemTy::U8 | MemTy::I8 => 1,
            MemTy::U16 | MemTy::I16 => 2,
            MemTy::D(n) => 4 * n as usize,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    Add,
    Sub,
    Swap,
    Cmpswap,
    MaxI,
    MinI,
    MaxU,
    MinU,
    And,
    Or,
    Xor,
}

/// One pre-decoded instruction.
#[derive(Clone, Debug)]
struct Op {
    k: K,
    len: u8,
    /// Destination register (VGPR number or scalar slot).
    d: u16,
    /// Second destination (VOPD's Y vdst, VOP3SD's sdst).
    d2: u16,
    s: [Src; 3],
    /// Source modifiers: bit i abs of src i, bit 4+i neg of src i.
    mods: u8,
    clamp: bool,
    /// Immediate: SOPP simm16, memory offsets, SMEM offset.
    imm: i64,
    imm2: i64,
    /// Memory: saddr slot or NULL; VOPC: writes EXEC.
    flag: u16,
    /// VOPD's Y half.
    y: Option<Box<Op>>,
}

fn cmp_of(s: &str) -> Option<Cmp> {
    Some(match s {
        "f" => Cmp::F,
        "lt" => Cmp::Lt,
        "eq" => Cmp::Eq,
        "le" => Cmp::Le,
        "gt" => Cmp::Gt,
        "lg" | "ne" => Cmp::Lg,
        "ge" => Cmp::Ge,
        "o" => Cmp::O,
        "u" => Cmp::U,
        "nge" => Cmp::Nge,
        "nlg" => Cmp::Nlg,
        "ngt" => Cmp::Ngt,
        "nle" => Cmp::Nle,
        "neq" => Cmp::Neq,
        "nlt" => Cmp::Nlt,
        "t" | "tru" => Cmp::T,
        _ => return None,
    })
}

fn cmp_f(c: Cmp, a: f32, b: f32) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let o = a.partial_cmp(&b);
    let lt = o == Some(Less);
    let eq = o == Some(Equal);
    let gt = o == Some(Greater);
    match c {
        Cmp::F => false,
        Cmp::Lt => lt,
        Cmp::Eq => eq,
        Cmp::Le => lt || eq,
        Cmp::Gt => gt,
        Cmp::Lg => lt || gt,
        Cmp::Ge => gt || eq,
        Cmp::O => o.is_some(),
        Cmp::U => o.is_none(),
        // The N forms are true on unordered operands.
        Cmp::Nge => !(gt || eq),
        Cmp::Nlg => !(lt || gt),
        Cmp::Ngt => !gt,
        Cmp::Nle => !(lt || eq),
        Cmp::Neq => !eq,
        Cmp::Nlt => !lt,
        Cmp::T => true,
    }
}

fn cmp_ord<T: PartialOrd>(c: Cmp, a: T, b: T) -> bool {
    match c {
        Cmp::F => false,
        Cmp::Lt => a < b,
        Cmp::Eq => a == b,
        Cmp::Le => a <= b,
        Cmp::Gt => a > b,
        Cmp::Lg | Cmp::Neq => a != b,
        Cmp::Ge => a >= b,
        _ => true,
    }
}

fn mem_ty(suffix: &str) -> Option<MemTy> {
    Some(match suffix {
        "u8" => MemTy::U8,
        "i8" => MemTy::I8,
        "u16" => MemTy::U16,
        "i16" => MemTy::I16,
        "b8" => MemTy::U8,
        "b16" => MemTy::U16,
        "b32" => MemTy::D(1),
        "b64" => MemTy::D(2),
        "b96" => MemTy::D(3),
        "b128" => MemTy::D(4),
        _ => return None,
    })
}

/// Maps a mnemonic (suffixes folded) to the operation, if implemented.
fn kind_of(mn: &str) -> Option<K> {
    use K::*;
    let m = mn.trim_end_matches("_e32").trim_end_matches("_e64");
    let m = m.strip_prefix("v_dual_").map(|r| format!("v_{r}"));
    let m = m.as_deref().unwrap_or(mn.trim_end_matches("_e32").trim_end_matches("_e64"));
    if let Some(rest) = m.strip_prefix("s_cmp_") {
        let (c, ty) = rest.split_once('_')?;
        let c = cmp_of(c)?;
        return Some(match ty {
            "i32" => SCmpI32(c),
            "u32" => SCmpU32(c),
            "u64" => SCmpU64(c),
            _ => return None,
        });
    }
    if let Some(rest) = m.strip_prefix("s_cmpk_") {
        let (c, ty) = rest.split_once('_')?;
        let c = cmp_of(c)?;
        return Some(if ty == "i32" { SCmpkI32(c) } else { SCmpkU32(c) });
    }
    if let Some(rest) = m.strip_prefix("v_cmp_").or_else(|| m.strip_prefix("v_cmpx_")) {
        let (c, ty) = rest.split_once('_')?;
        if c == "class" {
            return (ty == "f32").then_some(VCmpClassF32);
        }
        let c = cmp_of(c)?;
        return Some(match ty {
            "f32" => VCmpF32(c),
            "i32" => VCmpI32(c),
            "u32" => VCmpU32(c),
            _ => return None,
        });
    }
    for (pre, load) in [
        ("global_load_", true),
        ("flat_load_", true),
        ("global_store_", false),
        ("flat_store_", false),
    ] {
        if let Some(ty) = m.strip_prefix(pre) {
            let t = mem_ty(ty)?;
            return Some(if load { GLoad(t) } else { GStore(t) });
        }
    }
    for (pre, load) in [("scratch_load_", true), ("scratch_store_", false)] {
        if let Some(ty) = m.strip_prefix(pre) {
            let t = mem_ty(ty)?;
            return Some(if load { ScrLoad(t) } else { ScrStore(t) });
        }
    }
    if let Some(a) = m.strip_prefix("global_atomic_").or_else(|| m.strip_prefix("flat_atomic_")) {
        return Some(GAtomic(match a {
            "add_u32" => Atom::Add,
            "sub_u32" => Atom::Sub,
            "swap_b32" => Atom::Swap,
            "cmpswap_b32" => Atom::Cmpswap,
            "max_i32" => Atom::MaxI,
            "min_i32" => Atom::MinI,
            "max_u32" => Atom::MaxU,
            "min_u32" => Atom::MinU,
            "and_b32" => Atom::And,
            "or_b32" => Atom::Or,
            "xor_b32" => Atom::Xor,
            _ => return None,
        }));
    }
    if let Some(n) = m.strip_prefix("s_load_b").or_else(|| m.strip_prefix("s_load_dword")) {
        let bits: u32 = n.parse().ok()?;
        return Some(SLoad((bits / 32) as u8));
    }
    Some(match m {
        "s_nop"
        | "s_waitcnt"
        | "s_waitcnt_vscnt"
        | "s_waitcnt_vmcnt"
        | "s_waitcnt_lgkmcnt"
        | "s_waitcnt_expcnt"
        | "s_waitcnt_depctr"
        | "s_clause"
        | "s_delay_alu"
        | "s_sendmsg"
        | "s_set_inst_prefetch_distance"
        | "s_wait_loadcnt"
        | "s_wait_storecnt"
        | "s_wait_dscnt"
        | "s_wait_kmcnt"
        | "s_wait_samplecnt"
        | "s_wait_bvhcnt"
        | "s_wait_expcnt"
        | "s_wait_loadcnt_dscnt"
        | "s_wait_storecnt_dscnt"
        | "s_wait_alu"
        | "s_wait_idle"
        | "s_sleep"
        | "s_barrier_signal"
        | "buffer_gl0_inv"
        | "buffer_gl1_inv"
        | "global_inv"
        | "global_wb"
        | "global_wbinv"
        | "s_dcache_inv"
        | "s_icache_inv" => Nop,
        "s_endpgm" => EndPgm,
        "s_code_end" => CodeEnd,
        "s_branch" => Branch,
        "s_cbranch_scc0" => CbrScc0,
        "s_cbranch_scc1" => CbrScc1,
        "s_cbranch_vccz" => CbrVccz,
        "s_cbranch_vccnz" => CbrVccnz,
        "s_cbranch_execz" => CbrExecz,
        "s_cbranch_execnz" => CbrExecnz,
        "s_barrier" | "s_barrier_wait" => Barrier,
        "s_mov_b32" => SMov32,
        "s_mov_b64" => SMov64,
        "s_cmov_b32" => SCmov32,
        "s_add_u32" | "s_add_co_u32" => SAddU32,
        "s_addc_u32" | "s_add_co_ci_u32" => SAddcU32,
        "s_sub_u32" | "s_sub_co_u32" => SSubU32,
        "s_subb_u32" | "s_sub_co_ci_u32" => SSubbU32,
        "s_add_i32" | "s_add_co_i32" => SAddI32,
        "s_sub_i32" | "s_sub_co_i32" => SSubI32,
        "s_add_nc_u64" => SAddU64,
        "s_sub_nc_u64" => SSubU64,
        "s_mul_u64" => SMulU64,
        "s_mul_i32" => SMulI32,
        "s_mul_hi_u32" => SMulHiU32,
        "s_mul_hi_i32" => SMulHiI32,
        "s_and_b32" => SAnd32,
        "s_or_b32" => SOr32,
        "s_xor_b32" => SXor32,
        "s_and_not1_b32" => SAndN1_32,
        "s_or_not1_b32" => SOrN1_32,
        "s_nand_b32" => SNand32,
        "s_nor_b32" => SNor32,
        "s_xnor_b32" => SXnor32,
        "s_and_b64" => SAnd64,
        "s_or_b64" => SOr64,
        "s_xor_b64" => SXor64,
        "s_and_not1_b64" => SAndN1_64,
        "s_lshl_b32" => SLshl32,
        "s_lshr_b32" => SLshr32,
        "s_ashr_i32" => SAshr32,
        "s_lshl_b64" => SLshl64,
        "s_lshr_b64" => SLshr64,
        "s_ashr_i64" => SAshr64,
        "s_lshl1_add_u32" => SLshlAdd(1),
        "s_lshl2_add_u32" => SLshlAdd(2),
        "s_lshl3_add_u32" => SLshlAdd(3),
        "s_lshl4_add_u32" => SLshlAdd(4),
        "s_min_i32" => SMinI32,
        "s_min_u32" => SMinU32,
        "s_max_i32" => SMaxI32,
        "s_max_u32" => SMaxU32,
        "s_cselect_b32" => SCsel32,
        "s_cselect_b64" => SCsel64,
        "s_abs_i32" => SAbsI32,
        "s_brev_b32" => SBrev32,
        "s_not_b32" => SNot32,
        "s_not_b64" => SNot64,
        "s_ctz_i32_b32" => SCtz32,
        "s_clz_i32_u32" => SClz32,
        "s_bcnt1_i32_b32" => SBcnt1_32,
        "s_bfe_u32" => SBfeU32,
        "s_bfe_i32" => SBfeI32,
        "s_sext_i32_i8" => SSext8,
        "s_sext_i32_i16" => SSext16,
        "s_pack_ll_b32_b16" => SPackLL,
        "s_and_saveexec_b32" => SAndSaveexec,
        "s_or_saveexec_b32" => SOrSaveexec,
        "s_and_not1_saveexec_b32" => SAndNot1Saveexec,
        "s_movk_i32" => SMovk,
        "s_addk_i32" | "s_addk_co_i32" => SAddk,
        "s_mulk_i32" => SMulk,
        "s_add_f32" => SFAdd,
        "s_sub_f32" => SFSub,
        "s_mul_f32" => SFMul,
        "s_cvt_f32_i32" => SCvtF32I32,
        "s_cvt_f32_u32" => SCvtF32U32,
        "s_cvt_i32_f32" => SCvtI32F32,
        "s_cvt_u32_f32" => SCvtU32F32,
        "v_mov_b32" => VMov,
        "v_cndmask_b32" => VCndmask,
        "v_readfirstlane_b32" => VReadfirstlane,
        "v_readlane_b32" => VReadlane,
        "v_writelane_b32" => VWritelane,
        "v_add_f32" => VAddF32,
        "v_sub_f32" => VSubF32,
        "v_subrev_f32" => VSubrevF32,
        "v_mul_f32" => VMulF32,
        "v_max_f32" | "v_max_num_f32" => VMaxF32,
        "v_min_f32" | "v_min_num_f32" => VMinF32,
        "v_fma_f32" => VFmaF32,
        "v_fmac_f32" => VFmacF32,
        "v_fmamk_f32" => VFmamkF32,
        "v_fmaak_f32" => VFmaakF32,
        "v_ldexp_f32" => VLdexpF32,
        "v_rcp_f32" | "v_rcp_iflag_f32" => VRcpF32,
        "v_rsq_f32" => VRsqF32,
        "v_sqrt_f32" => VSqrtF32,
        "v_exp_f32" => VExpF32,
        "v_log_f32" => VLogF32,
        "v_rndne_f32" => VRndneF32,
        "v_floor_f32" => VFloorF32,
        "v_ceil_f32" => VCeilF32,
        "v_trunc_f32" => VTruncF32,
        "v_fract_f32" => VFractF32,
        "v_cvt_f32_i32" => VCvtF32I32,
        "v_cvt_f32_u32" => VCvtF32U32,
        "v_cvt_i32_f32" => VCvtI32F32,
        "v_cvt_u32_f32" => VCvtU32F32,
        "v_cvt_f16_f32" => VCvtF16F32,
        "v_cvt_f32_f16" => VCvtF32F16,
        "v_div_scale_f32" => VDivScaleF32,
        "v_div_fmas_f32" => VDivFmasF32,
        "v_div_fixup_f32" => VDivFixupF32,
        "v_add_nc_u32" => VAddNc,
        "v_sub_nc_u32" => VSubNc,
        "v_subrev_nc_u32" => VSubrevNc,
        "v_add_co_u32" => VAddCo,
        "v_sub_co_u32" => VSubCo,
        "v_subrev_co_u32" => VSubrevCo,
        "v_add_co_ci_u32" => VAddCoCi,
        "v_sub_co_ci_u32" => VSubCoCi,
        "v_subrev_co_ci_u32" => VSubrevCoCi,
        "v_and_b32" => VAnd,
        "v_or_b32" => VOr,
        "v_xor_b32" => VXor,
        "v_not_b32" => VNot,
        "v_lshlrev_b32" => VLshlrev,
        "v_lshrrev_b32" => VLshrrev,
        "v_ashrrev_i32" => VAshrrev,
        "v_lshlrev_b64" => VLshlrev64,
        "v_lshrrev_b64" => VLshrrev64,
        "v_ashrrev_i64" => VAshrrev64,
        "v_bfe_u32" => VBfeU,
        "v_bfe_i32" => VBfeI,
        "v_bfi_b32" => VBfi,
        "v_bfrev_b32" => VBfrev,
        "v_add3_u32" => VAdd3,
        "v_lshl_add_u32" => VLshlAdd,
        "v_add_lshl_u32" => VAddLshl,
        "v_lshl_or_b32" => VLshlOr,
        "v_or3_b32" => VOr3,
        "v_and_or_b32" => VAndOr,
        "v_xad_u32" => VXad,
        "v_mul_lo_u32" => VMulLo,
        "v_mul_hi_u32" => VMulHiU,
        "v_mul_hi_i32" => VMulHiI,
        "v_mul_u32_u24" => VMulU24,
        "v_mul_i32_i24" => VMulI24,
        "v_mad_u32_u24" => VMadU24,
        "v_mad_u64_u32" | "v_mad_co_u64_u32" => VMadU64U32,
        "v_mad_i64_i32" | "v_mad_co_i64_i32" => VMadI64I32,
        "v_perm_b32" => VPerm,
        "v_max_i32" => VMaxI,
        "v_min_i32" => VMinI,
        "v_max_u32" => VMaxU,
        "v_min_u32" => VMinU,
        "v_mbcnt_lo_u32_b32" => VMbcntLo,
        "v_mbcnt_hi_u32_b32" => VMbcntHi,
        "v_dot4_i32_iu8" => VDot4I32Iu8,
        "v_dot4_u32_u8" => VDot4U32U8,
        "ds_load_b32" => DsLoad(1),
        "ds_load_b64" => DsLoad(2),
        "ds_load_b96" => DsLoad(3),
        "ds_load_b128" => DsLoad(4),
        "ds_store_b32" => DsStore(1),
        "ds_store_b64" => DsStore(2),
        "ds_store_b96" => DsStore(3),
        "ds_store_b128" => DsStore(4),
        "ds_load_2addr_b32" => DsLoad2(1),
        "ds_load_2addr_stride64_b32" => DsLoad2(64),
        "ds_store_2addr_b32" => DsStore2(1),
        "ds_store_2addr_stride64_b32" => DsStore2(64),
        "ds_add_u32" => DsAddU32,
        "ds_add_rtn_u32" => DsAddRtnU32,
        "ds_bpermute_b32" => DsBpermute,
        "ds_permute_b32" => DsPermute,
        _ => return None,
    })
}

/// Inline constants and special scalar sources.
fn scalar_src(arch: Arch, code: u32, literal: Option<u32>, f64op: bool) -> Src {
    let _ = arch;
    match code {
        0..=123 | 125..=127 => Src::S(code as u16),
        124 => Src::Const(0),
        128..=192 => Src::Const(code - 128),
        193..=208 => Src::Const((-(code as i32 - 192)) as u32),
        // Apertures (src_shared_base ...): where a flat address selects LDS or scratch.
        235 => Src::Const64(SHARED_BASE),
        236 => Src::Const64(SHARED_BASE + 0xFFFF_FFFF),
        237 => Src::Const64(PRIVATE_BASE),
        238 => Src::Const64(PRIVATE_BASE + 0xFFFF_FFFF),
        240..=248 => {
            let f: f32 =
                [0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 0.159_154_94][(code - 240) as usize];
            if f64op {
                Src::Const64((f as f64).to_bits())
            } else {
                Src::Const(f.to_bits())
            }
        }
        251 => Src::Vccz,
        252 => Src::Execz,
        253 => Src::Scc,
        255 => Src::Const(literal.unwrap_or(0)),
        _ => Src::Const(0),
    }
}

/// Apertures of the flat address space (our choice; kernels read them from src_*_base).
pub const SHARED_BASE: u64 = 0x1000_0000_0000_0000;
pub const PRIVATE_BASE: u64 = 0x2000_0000_0000_0000;

fn bits(w: u32, lo: u32, n: u32) -> u32 {
    (w >> lo) & ((1u32 << n) - 1)
}

fn sext(v: u32, n: u32) -> i64 {
    let s = 64 - n;
    ((u64::from(v) << s) as i64) >> s
}

/// Pre-decodes one instruction into an [`Op`]; None when the interpreter lacks it.
fn lower(inst: &Inst) -> Option<Op> {
    let k = kind_of(inst.info.mnemonic)?;
    let w = inst.w;
    let lit = inst.literal;
    let mut op = Op {
        k,
        len: inst.len,
        d: 0,
        d2: NULL as u16,
        s: [Src::Const(0); 3],
        mods: 0,
        clamp: false,
        imm: 0,
        imm2: 0,
        flag: 0,
        y: None,
    };
    let arch = inst.arch;
    let src9 = |code: u32| {
        if code >= 256 {
            Src::V((code - 256) as u16)
        } else {
            scalar_src(arch, code, lit, false)
        }
    };
    match inst.class {
        Class::Sopp => op.imm = i64::from(w[0] as u16 as i16),
        Class::Sopk => {
            op.d = bits(w[0], 16, 7) as u16;
            op.imm = i64::from(w[0] as u16 as i16);
            op.s[0] = Src::S(op.d);
        }
        Class::Sop1 | Class::Sop2 | Class::Sopc => {
            op.d = bits(w[0], 16, 7) as u16;
            op.s[0] = scalar_src(arch, bits(w[0], 0, 8), lit, false);
            op.s[1] = scalar_src(arch, bits(w[0], 8, 8), lit, false);
        }
        Class::Smem => {
            op.d = bits(w[0], 6, 7) as u16;
            op.s[0] = Src::S((bits(w[0], 0, 6) * 2) as u16);
            let soff = bits(w[1], 25, 7);
            op.s[1] = if soff == 124 { Src::Const(0) } else { scalar_src(arch, soff, None, false) };
            op.imm = match arch {
                Arch::Gfx11 => sext(bits(w[1], 0, 21), 21),
                Arch::Gfx12 => sext(bits(w[1], 0, 24), 24),
            };
        }
        Class::Vop1 | Class::Vop2 | Class::Vopc => {
            op.d = bits(w[0], 17, 8) as u16;
            op.s[0] = src9(bits(w[0], 0, 9));
            op.s[1] = Src::V(bits(w[0], 9, 8) as u16);
            if inst.class == Class::Vopc {
                op.d = VCC as u16;
                op.flag = u16::from(inst.info.mnemonic.starts_with("v_cmpx"));
            }
            match k {
                // Carry ops and cndmask read VCC as a third source, carry-outs go to VCC.
                K::VCndmask | K::VAddCoCi | K::VSubCoCi | K::VSubrevCoCi => {
                    op.s[2] = Src::S(VCC as u16);
                    op.d2 = VCC as u16;
                }
                K::VFmacF32 => op.s[2] = Src::V(op.d),
                K::VFmamkF32 => {
                    op.s[2] = op.s[1];
                    op.s[1] = Src::Const(lit.unwrap_or(0));
                }
                K::VFmaakF32 => op.s[2] = Src::Const(lit.unwrap_or(0)),
                _ => {}
            }
        }
        Class::Vop3 => {
            op.d = bits(w[0], 0, 8) as u16;
            let sd = inst.info.width(Field::Sdst).is_some();
            if sd {
                op.d2 = bits(w[0], 8, 7) as u16;
            } else {
                op.mods = bits(w[0], 8, 3) as u8;
            }
            op.mods |= (bits(w[1], 29, 3) as u8) << 4;
            op.clamp = bits(w[0], 15, 1) != 0;
            let f64s = |f: Field| inst.info.width(f) == Some(2);
            for (i, f) in [Field::Src0, Field::Src1, Field::Src2].into_iter().enumerate() {
                let code = bits(w[1], 9 * i as u32, 9);
                op.s[i] = if code >= 256 {
                    Src::V((code - 256) as u16)
                } else {
                    scalar_src(arch, code, lit, f64s(f))
                };
            }
            if bits(w[1], 27, 2) != 0 || (!sd && bits(w[0], 11, 4) != 0) {
                return None; // omod / op_sel: not modelled
            }
            if matches!(k, K::VCmpF32(_) | K::VCmpI32(_) | K::VCmpU32(_) | K::VCmpClassF32) {
                op.flag = u16::from(inst.info.mnemonic.starts_with("v_cmpx"));
                if op.flag != 0 {
                    op.d = NULL as u16;
                }
            }
            if matches!(k, K::VAddCo | K::VSubCo | K::VSubrevCo) {
                op.s[2] = Src::Const(0);
            }
            if k == K::VFmacF32 {
                op.s[2] = Src::V(op.d);
            }
            if matches!(k, K::VReadlane | K::VReadfirstlane) {
                // A scalar destination.
            }
        }
        Class::Vop3p => {
            op.d = bits(w[0], 0, 8) as u16;
            for i in 0..3 {
                op.s[i] = src9(bits(w[1], 9 * i as u32, 9));
            }
            let neg_lo = bits(w[1], 29, 3);
            match k {
                // neg_lo marks which of A and B are signed bytes.
                K::VDot4I32Iu8 => op.mods = neg_lo as u8,
                K::VDot4U32U8 => {}
                _ => return None,
            }
            op.clamp = bits(w[0], 15, 1) != 0;
        }
        Class::Vopd => {
            let (_, yinfo) = inst.y?;
            let vdstx = bits(w[1], 24, 8);
            let vdsty = (bits(w[1], 17, 7) << 1) | ((vdstx & 1) ^ 1);
            let half = |k: K, d: u32, s0: u32, s1: u32| -> Op {
                let mut h = Op {
                    k,
                    len: 0,
                    d: d as u16,
                    d2: NULL as u16,
                    s: [src9(s0), Src::V(s1 as u16), Src::Const(0)],
                    mods: 0,
                    clamp: false,
                    imm: 0,
                    imm2: 0,
                    flag: 0,
                    y: None,
                };
                match k {
                    K::VFmacF32 => h.s[2] = Src::V(d as u16),
                    K::VFmamkF32 => {
                        h.s[2] = h.s[1];
                        h.s[1] = Src::Const(lit.unwrap_or(0));
                    }
                    K::VFmaakF32 => h.s[2] = Src::Const(lit.unwrap_or(0)),
                    K::VCndmask => {
                        h.s[2] = Src::S(VCC as u16);
                    }
                    _ => {}
                }
                h
            };
            let ky = kind_of(yinfo.mnemonic)?;
            let x = half(k, vdstx, bits(w[0], 0, 9), bits(w[0], 9, 8));
            let y = half(ky, vdsty, bits(w[1], 0, 9), bits(w[1], 9, 8));
            let mut x = x;
            x.len = inst.len;
            x.y = Some(Box::new(y));
            return Some(x);
        }
        Class::Ds => {
            op.d = bits(w[1], 24, 8) as u16;
            op.s[0] = Src::V(bits(w[1], 0, 8) as u16);
            op.s[1] = Src::V(bits(w[1], 8, 8) as u16);
            op.s[2] = Src::V(bits(w[1], 16, 8) as u16);
            let o0 = bits(w[0], 0, 8);
            let o1 = bits(w[0], 8, 8);
            if bits(w[0], 17, 1) != 0 {
                return None; // GDS
            }
            match k {
                K::DsLoad2(_) | K::DsStore2(_) => {
                    op.imm = i64::from(o0);
                    op.imm2 = i64::from(o1);
                }
                _ => op.imm = i64::from(o0 | o1 << 8),
            }
        }
        Class::Flat | Class::Global | Class::Scratch => {
            let f = disasm::flat_fields(inst);
            op.d = f.vdst as u16;
            op.s[0] = Src::V(f.vaddr as u16);
            op.s[1] = Src::V(f.data as u16);
            op.imm = f.offset;
            op.flag = match inst.class {
                Class::Flat => NULL as u16,
                _ => f.saddr as u16,
            };
            if inst.class == Class::Scratch {
                // imm2 = 1: the address has a VGPR part (SVE).
                op.imm2 = i64::from(f.sve);
            }
            if matches!(k, K::GAtomic(_)) {
                op.imm2 = i64::from(f.returns);
            }
        }
        Class::Mubuf => {}
    }
    Some(op)
}

/// A wave's architectural state.
struct Wave {
    sgpr: [u32; 128],
    scc: bool,
    vgpr: Vec<u32>,
    pc: u64,
    done: bool,
    at_barrier: bool,
    scratch: Vec<u8>,
}

impl Wave {
    #[inline]
    fn exec(&self) -> u32 {
        self.sgpr[EXEC]
    }
    #[inline]
    fn s(&self, src: Src) -> u32 {
        match src {
            Src::S(r) => self.sgpr[r as usize],
            Src::Const(c) => c,
            Src::Const64(c) => c as u32,
            Src::Scc => u32::from(self.scc),
            Src::Vccz => u32::from(self.sgpr[VCC] == 0),
            Src::Execz => u32::from(self.sgpr[EXEC] == 0),
            Src::V(r) => self.vgpr[r as usize * 32],
        }
    }
    #[inline]
    fn s64(&self, src: Src) -> u64 {
        match src {
            Src::S(r) if (r as usize) < 127 => {
                u64::from(self.sgpr[r as usize]) | u64::from(self.sgpr[r as usize + 1]) << 32
            }
            Src::Const64(c) => c,
            // Inline integer constants sign-extend to 64 bits.
            Src::Const(c) => c as i32 as i64 as u64,
            other => u64::from(self.s(other)),
        }
    }
    #[inline]
    fn v(&self, src: Src, lane: usize) -> u32 {
        match src {
            Src::V(r) => self.vgpr[r as usize * 32 + lane],
            other => self.s(other),
        }
    }
    #[inline]
    fn v64(&self, src: Src, lane: usize) -> u64 {
        match src {
            Src::V(r) => {
                let i = r as usize * 32 + lane;
                u64::from(self.vgpr[i]) | u64::from(self.vgpr[i + 32]) << 32
            }
            other => self.s64(other),
        }
    }
    /// All 32 lanes of a source.
    #[inline]
    fn lanes(&self, src: Src) -> [u32; 32] {
        match src {
            Src::V(r) => {
                let i = r as usize * 32;
                let mut out = [0u32; 32];
                if let Some(s) = self.vgpr.get(i..i + 32) {
                    out.copy_from_slice(s);
                }
                out
            }
            other => [self.s(other); 32],
        }
    }
    /// All 32 lanes of a float source with its abs/neg modifiers applied.
    #[inline]
    fn flanes(&self, src: Src, mods: u8, i: usize) -> [f32; 32] {
        let raw = self.lanes(src);
        let mut out = [0f32; 32];
        for l in 0..32 {
            out[l] = fmod(mods, i, f32::from_bits(raw[l]));
        }
        out
    }
    /// Writes a VGPR's lanes under EXEC.
    #[inline]
    fn write_lanes(&mut self, r: u16, vals: &[u32; 32]) {
        let exec = self.sgpr[EXEC];
        let i = r as usize * 32;
        let Some(dst) = self.vgpr.get_mut(i..i + 32) else { return };
        if exec == u32::MAX {
            dst.copy_from_slice(vals);
        } else {
            for l in 0..32 {
                if exec >> l & 1 != 0 {
                    dst[l] = vals[l];
                }
            }
        }
    }
    #[inline]
    fn set_s(&mut self, r: u16, v: u32) {
        if r as usize != NULL && (r as usize) < 128 {
            self.sgpr[r as usize] = v;
        }
    }
    #[inline]
    fn set_s64(&mut self, r: u16, v: u64) {
        self.set_s(r, v as u32);
        if r as usize != NULL {
            self.set_s(r + 1, (v >> 32) as u32);
        }
    }
}

/// Applies abs/neg modifiers of source `i` to a float.
#[inline]
fn fmod(mods: u8, i: usize, x: f32) -> f32 {
    let mut x = x;
    if mods >> i & 1 != 0 {
        x = x.abs();
    }
    if mods >> (4 + i) & 1 != 0 {
        x = -x;
    }
    x
}

fn f32_to_f16(x: f32) -> u16 {
    // Round to nearest even; hardware's default rounding mode.
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xFF) as i32;
    let man = b & 0x7F_FFFF;
    if exp == 0xFF {
        return sign | 0x7C00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1FFF;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1F);
    let man = u32::from(h & 0x3FF);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn class_f32(x: f32, mask: u32) -> bool {
    let b = x.to_bits();
    let neg = b >> 31 != 0;
    let idx = if x.is_nan() {
        if b & 0x40_0000 != 0 {
            1
        } else {
            0
        }
    } else if x.is_infinite() {
        if neg {
            2
        } else {
            9
        }
    } else if x == 0.0 {
        if neg {
            5
        } else {
            6
        }
    } else if x.is_subnormal() {
        if neg {
            4
        } else {
            7
        }
    } else if neg {
        3
    } else {
        8
    };
    mask >> idx & 1 != 0
}

/// The kernel cache: instructions lowered on first execution, found by address.
struct Program {
    ops: Vec<Op>,
    index: HashMap<u64, u32>,
    /// Per op: the index of the op that follows it in memory, and of its branch target
    /// (both static), or NONE until first needed.
    next: Vec<u32>,
    taken: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// Runs a whole dispatch: every workgroup, every wave, until all end or one faults.
pub fn run(d: &Dispatch, mem: &mut dyn Memory) -> Result<Stats, ExecError> {
    let user = bits(d.rsrc2, 1, 5) as usize;
    if d.user_sgprs.len() > user.max(16) {
        return Err(ExecError::BadDispatch(format!(
            "{} user SGPR values but RSRC2.USER_SGPR is {user}",
            d.user_sgprs.len()
        )));
    }
    if d.block.contains(&0) || d.grid.contains(&0) {
        return Err(ExecError::BadDispatch(format!(
            "empty dispatch: grid {:?}, block {:?}",
            d.grid, d.block
        )));
    }
    let threads = u64::from(d.block[0]) * u64::from(d.block[1]) * u64::from(d.block[2]);
    if threads > 1024 {
        return Err(ExecError::BadDispatch(format!(
            "{threads} work-items per workgroup; at most 1024"
        )));
    }
    if d.lds_size > 64 * 1024 {
        return Err(ExecError::BadDispatch(format!("LDS size {} > 65536 bytes", d.lds_size)));
    }
    if d.scratch_per_lane > 1 << 20 {
        return Err(ExecError::BadDispatch(format!(
            "scratch {} bytes per lane; at most 1 MiB",
            d.scratch_per_lane
        )));
    }
    // The whole architectural VGPR file (plus room for the tail of a 4-dword tuple at v255), so
    // that no encodable register number indexes outside it.
    let nvgpr = 260;
    let mut prog =
        Program { ops: Vec::new(), index: HashMap::new(), next: Vec::new(), taken: Vec::new() };
    let mut stats = Stats::default();
    let mut budget = d.step_budget;
    let mut lds = vec![0u8; d.lds_size as usize];
    for wz in 0..d.grid[2] {
        for wy in 0..d.grid[1] {
            for wx in 0..d.grid[0] {
                lds.iter_mut().for_each(|b| *b = 0);
                run_workgroup(
                    d,
                    mem,
                    &mut prog,
                    &mut lds,
                    [wx, wy, wz],
                    nvgpr,
                    &mut budget,
                    &mut stats,
                )?;
                stats.workgroups += 1;
            }
        }
    }
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn run_workgroup(
    d: &Dispatch,
    mem: &mut dyn Memory,
    prog: &mut Program,
    lds: &mut [u8],
    wg: [u32; 3],
    nvgpr: usize,
    budget: &mut u64,
    stats: &mut Stats,
) -> Result<(), ExecError> {
    let [bx, by, bz] = d.block;
    let threads = bx * by * bz;
    let nwaves = threads.div_ceil(32);
    let user = bits(d.rsrc2, 1, 5) as usize;
    let tid_fields = bits(d.rsrc2, 11, 2);
    let mut waves: Vec<Wave> = Vec::with_capacity(nwaves as usize);
    for wi in 0..nwaves {
        let mut w = Wave {
            sgpr: [0; 128],
            scc: false,
            vgpr: vec![0; nvgpr * 32],
            pc: d.entry,
            done: false,
            at_barrier: false,
            scratch: vec![0; d.scratch_per_lane as usize * 32],
        };
        for (i, v) in d.user_sgprs.iter().enumerate() {
            w.sgpr[i] = *v;
        }
        // System SGPRs start at USER_SGPR (rdna-isa.md §4), in AMDGPUUsage's order.
        let mut next = user;
        for (bit, val) in [(7, wg[0]), (8, wg[1]), (9, wg[2])] {
            if d.rsrc2 >> bit & 1 != 0 && next < 106 {
                w.sgpr[next] = val;
                next += 1;
            }
        }
        if d.rsrc2 >> 10 & 1 != 0 && next < 106 {
            // Workgroup info: the number of waves in the workgroup in [5:0].
            w.sgpr[next] = nwaves;
            next += 1;
        }
        if d.rsrc2 & 1 != 0 && next < 106 {
            w.sgpr[next] = 0; // private segment wave offset: scratch is per lane here
        }
        if d.arch == Arch::Gfx12 {
            // gfx12: workgroup ids in TTMP9 (x) and TTMP7 (y | z << 16).
            w.sgpr[TTMP + 9] = wg[0];
            w.sgpr[TTMP + 7] = (wg[1] & 0xFFFF) | (wg[2] << 16);
        }
        let mut exec = 0u32;
        for lane in 0..32 {
            let t = wi * 32 + lane;
            if t >= threads {
                break;
            }
            exec |= 1 << lane;
            let (x, y, z) = (t % bx, (t / bx) % by, t / (bx * by));
            let mut v0 = x;
            if tid_fields >= 1 {
                v0 |= y << 10;
            }
            if tid_fields >= 2 {
                v0 |= z << 20;
            }
            w.vgpr[lane as usize] = v0;
        }
        w.sgpr[EXEC] = exec;
        waves.push(w);
    }
    stats.waves += u64::from(nwaves);
    loop {
        let mut progressed = false;
        for w in waves.iter_mut() {
            if w.done || w.at_barrier {
                continue;
            }
            progressed = true;
            run_wave(d, mem, prog, lds, w, budget, stats)?;
        }
        if waves.iter().all(|w| w.done) {
            return Ok(());
        }
        // Every live wave is at the barrier: release them.
        if waves.iter().all(|w| w.done || w.at_barrier) {
            waves.iter_mut().for_each(|w| w.at_barrier = false);
            continue;
        }
        if !progressed {
            return Err(ExecError::Deadlock { wg });
        }
    }
}

fn fetch_lower(
    d: &Dispatch,
    mem: &mut dyn Memory,
    prog: &mut Program,
    pc: u64,
) -> Result<u32, ExecError> {
    if let Some(&i) = prog.index.get(&pc) {
        return Ok(i);
    }
    let mut buf = [0u8; 16];
    // Fetch what is readable: an instruction is at most 16 bytes, the code may end sooner.
    let mut n = 16;
    while n > 0 {
        if mem.read(pc, &mut buf[..n]).is_ok() {
            break;
        }
        n -= 4;
    }
    if n == 0 {
        let source = mem.read(pc, &mut buf[..4]).err().unwrap_or(Fault {
            va: pc,
            len: 4,
            write: false,
            reason: "unreadable".into(),
        });
        return Err(ExecError::Fetch { pc, source });
    }
    let inst =
        decode::decode(d.arch, &buf[..n], pc).map_err(|source| ExecError::Decode { pc, source })?;
    let op = lower(&inst).ok_or_else(|| ExecError::Unimplemented {
        pc,
        text: disasm::format(&inst),
        words: buf[..inst.len as usize]
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })?;
    let i = prog.ops.len() as u32;
    prog.ops.push(op);
    prog.next.push(NONE);
    prog.taken.push(NONE);
    prog.index.insert(pc, i);
    Ok(i)
}

fn run_wave(
    d: &Dispatch,
    mem: &mut dyn Memory,
    prog: &mut Program,
    lds: &mut [u8],
    w: &mut Wave,
    budget: &mut u64,
    stats: &mut Stats,
) -> Result<(), ExecError> {
    // The first op is looked up by address; after that, successors come from the links.
    let mut idx = fetch_lower(d, mem, prog, w.pc)?;
    loop {
        if *budget == 0 {
            return Err(ExecError::StepBudget { budget: d.step_budget, pc: w.pc });
        }
        *budget -= 1;
        stats.wave_instructions += 1;
        let pc = w.pc;
        let op = &prog.ops[idx as usize];
        let next = pc + u64::from(op.len);
        w.pc = next;
        let flow = exec_op(d, mem, lds, w, op, pc)?;
        match flow {
            Flow::Next => {
                let link = prog.next[idx as usize];
                idx = if link != NONE {
                    link
                } else {
                    let n = fetch_lower(d, mem, prog, next)?;
                    prog.next[idx as usize] = n;
                    n
                };
            }
            Flow::Jump => {
                let link = prog.taken[idx as usize];
                idx = if link != NONE {
                    link
                } else {
                    let n = fetch_lower(d, mem, prog, w.pc)?;
                    prog.taken[idx as usize] = n;
                    n
                };
            }
            Flow::End => {
                w.done = true;
                return Ok(());
            }
            Flow::Barrier => {
                w.at_barrier = true;
                return Ok(());
            }
        }
    }
}

enum Flow {
    Next,
    Jump,
    End,
    Barrier,
}

macro_rules! lanes {
    ($w:ident, $lane:ident, $body:block) => {{
        let exec = $w.exec();
        if exec == u32::MAX {
            for $lane in 0..32usize $body
        } else {
            let mut m = exec;
            while m != 0 {
                let $lane = m.trailing_zeros() as usize;
                m &= m - 1;
                $body
            }
        }
    }};
}

#[inline]
fn setv(w: &mut Wave, r: u16, lane: usize, v: u32) {
    if let Some(slot) = w.vgpr.get_mut(r as usize * 32 + lane) {
        *slot = v;
    }
}

fn exec_single(
    d: &Dispatch,
    mem: &mut dyn Memory,
    lds: &mut [u8],
    w: &mut Wave,
    op: &Op,
    pc: u64,
) -> Result<Flow, ExecError> {
    use K::*;
    let s0 = op.s[0];
    let s1 = op.s[1];
    let s2 = op.s[2];
    // Vector ops work on whole 32-lane arrays (sources fetched once, results written under
    // EXEC), which the compiler vectorises; inactive lanes compute harmlessly and are dropped.
    macro_rules! v2 {
        (|$a:ident, $b:ident| $e:expr) => {{
            let (xa, xb) = (w.lanes(s0), w.lanes(s1));
            let mut r = [0u32; 32];
            for l in 0..32 {
                let ($a, $b) = (xa[l], xb[l]);
                r[l] = $e;
            }
            w.write_lanes(op.d, &r);
        }};
    }
    macro_rules! v3 {
        (|$a:ident, $b:ident, $c:ident| $e:expr) => {{
            let (xa, xb, xc) = (w.lanes(s0), w.lanes(s1), w.lanes(s2));
            let mut r = [0u32; 32];
            for l in 0..32 {
                let ($a, $b, $c) = (xa[l], xb[l], xc[l]);
                r[l] = $e;
            }
            w.write_lanes(op.d, &r);
        }};
    }
    macro_rules! f1 {
        (|$a:ident| $e:expr) => {{
            let xa = w.flanes(s0, op.mods, 0);
            let mut r = [0u32; 32];
            for l in 0..32 {
                let $a = xa[l];
                let v: f32 = $e;
                r[l] = if op.clamp { v.clamp(0.0, 1.0) } else { v }.to_bits();
            }
            w.write_lanes(op.d, &r);
        }};
    }
    macro_rules! f2 {
        (|$a:ident, $b:ident| $e:expr) => {{
            let (xa, xb) = (w.flanes(s0, op.mods, 0), w.flanes(s1, op.mods, 1));
            let mut r = [0u32; 32];
            for l in 0..32 {
                let ($a, $b) = (xa[l], xb[l]);
                let v: f32 = $e;
                r[l] = if op.clamp { v.clamp(0.0, 1.0) } else { v }.to_bits();
            }
            w.write_lanes(op.d, &r);
        }};
    }
    macro_rules! f3 {
        (|$a:ident, $b:ident, $c:ident| $e:expr) => {{
            let (xa, xb, xc) =
                (w.flanes(s0, op.mods, 0), w.flanes(s1, op.mods, 1), w.flanes(s2, op.mods, 2));
            let mut r = [0u32; 32];
            for l in 0..32 {
                let ($a, $b, $c) = (xa[l], xb[l], xc[l]);
                let v: f32 = $e;
                r[l] = if op.clamp { v.clamp(0.0, 1.0) } else { v }.to_bits();
            }
            w.write_lanes(op.d, &r);
        }};
    }
    macro_rules! salu {
        (|$a:ident, $b:ident| $e:expr, scc $sc:expr) => {{
            let $a = w.s(s0);
            let $b = w.s(s1);
            let r: u32 = $e;
            w.scc = $sc(r);
            w.set_s(op.d, r);
        }};
    }
    macro_rules! salu64 {
        (|$a:ident, $b:ident| $e:expr, scc $sc:expr) => {{
            let $a = w.s64(s0);
            let $b = w.s64(s1);
            let r: u64 = $e;
            if let Some(sc) = $sc(r) {
                w.scc = sc;
            }
            w.set_s64(op.d, r);
        }};
    }
    let nz = |r: u32| r != 0;
    let branch = |w: &mut Wave, take: bool| -> Flow {
        if take {
            w.pc = (pc as i64 + 4 + op.imm * 4) as u64;
            Flow::Jump
        } else {
            Flow::Next
        }
    };
    match op.k {
        Nop => {}
        EndPgm => return Ok(Flow::End),
        CodeEnd => return Err(ExecError::CodeEnd { pc }),
        Branch => return Ok(branch(w, true)),
        CbrScc0 => return Ok(branch(w, !w.scc)),
        CbrScc1 => return Ok(branch(w, w.scc)),
        CbrVccz => return Ok(branch(w, w.sgpr[VCC] == 0)),
        CbrVccnz => return Ok(branch(w, w.sgpr[VCC] != 0)),
        CbrExecz => return Ok(branch(w, w.exec() == 0)),
        CbrExecnz => return Ok(branch(w, w.exec() != 0)),
        Barrier => return Ok(Flow::Barrier),
        SMov32 => {
            let v = w.s(s0);
            w.set_s(op.d, v);
        }
        SMov64 => {
            let v = w.s64(s0);
            w.set_s64(op.d, v);
        }
        SCmov32 => {
            if w.scc {
                let v = w.s(s0);
                w.set_s(op.d, v);
            }
        }
        SAddU32 => {
            let (r, c) = w.s(s0).overflowing_add(w.s(s1));
            w.scc = c;
            w.set_s(op.d, r);
        }
        SAddcU32 => {
            let r = u64::from(w.s(s0)) + u64::from(w.s(s1)) + u64::from(w.scc);
            w.scc = r >> 32 != 0;
            w.set_s(op.d, r as u32);
        }
        SSubU32 => {
            let (r, c) = w.s(s0).overflowing_sub(w.s(s1));
            w.scc = c;
            w.set_s(op.d, r);
        }
        SSubbU32 => {
            let a = u64::from(w.s(s0));
            let b = u64::from(w.s(s1)) + u64::from(w.scc);
            w.scc = b > a;
            w.set_s(op.d, a.wrapping_sub(b) as u32);
        }
        SAddI32 => {
            let (r, o) = (w.s(s0) as i32).overflowing_add(w.s(s1) as i32);
            w.scc = o;
            w.set_s(op.d, r as u32);
        }
        SSubI32 => {
            let (r, o) = (w.s(s0) as i32).overflowing_sub(w.s(s1) as i32);
            w.scc = o;
            w.set_s(op.d, r as u32);
        }
        SAddU64 => salu64!(|a, b| a.wrapping_add(b), scc | _ | None),
        SSubU64 => salu64!(|a, b| a.wrapping_sub(b), scc | _ | None),
        SMulU64 => salu64!(|a, b| a.wrapping_mul(b), scc | _ | None),
        SMulI32 => {
            let r = (w.s(s0) as i32).wrapping_mul(w.s(s1) as i32);
            w.set_s(op.d, r as u32);
        }
        SMulHiU32 => {
            let r = (u64::from(w.s(s0)) * u64::from(w.s(s1))) >> 32;
            w.set_s(op.d, r as u32);
        }
        SMulHiI32 => {
            let r = (i64::from(w.s(s0) as i32) * i64::from(w.s(s1) as i32)) >> 32;
            w.set_s(op.d, r as u32);
        }
        SAnd32 => salu!(|a, b| a & b, scc nz),
        SOr32 => salu!(|a, b| a | b, scc nz),
        SXor32 => salu!(|a, b| a ^ b, scc nz),
        SAndN1_32 => salu!(|a, b| a & !b, scc nz),
        SOrN1_32 => salu!(|a, b| a | !b, scc nz),
        SNand32 => salu!(|a, b| !(a & b), scc nz),
        SNor32 => salu!(|a, b| !(a | b), scc nz),
        SXnor32 => salu!(|a, b| !(a ^ b), scc nz),
        SAnd64 => salu64!(|a, b| a & b, scc |r: u64| Some(r != 0)),
        SOr64 => salu64!(|a, b| a | b, scc |r: u64| Some(r != 0)),
        SXor64 => salu64!(|a, b| a ^ b, scc |r: u64| Some(r != 0)),
        SAndN1_64 => salu64!(|a, b| a & !b, scc |r: u64| Some(r != 0)),
        SLshl32 => salu!(|a, b| a << (b & 31), scc nz),
        SLshr32 => salu!(|a, b| a >> (b & 31), scc nz),
        SAshr32 => salu!(|a, b| ((a as i32) >> (b & 31)) as u32, scc nz),
        SLshl64 => {
            let r = w.s64(s0) << (w.s(s1) & 63);
            w.scc = r != 0;
            w.set_s64(op.d, r);
        }
        SLshr64 => {
            let r = w.s64(s0) >> (w.s(s1) & 63);
            w.scc = r != 0;
            w.set_s64(op.d, r);
        }
        SAshr64 => {
            let r = ((w.s64(s0) as i64) >> (w.s(s1) & 63)) as u64;
            w.scc = r != 0;
            w.set_s64(op.d, r);
        }
        SLshlAdd(n) => {
            let r = u64::from(w.s(s0) << n) + u64::from(w.s(s1));
            w.scc = r >> 32 != 0;
            w.set_s(op.d, r as u32);
        }
        SMinI32 | SMaxI32 | SMinU32 | SMaxU32 => {
            let (a, b) = (w.s(s0), w.s(s1));
            let first = match op.k {
                SMinI32 => (a as i32) <= (b as i32),
                SMaxI32 => (a as i32) >= (b as i32),
                SMinU32 => a <= b,
                _ => a >= b,
            };
            w.scc = first;
            w.set_s(op.d, if first { a } else { b });
        }
        SCsel32 => {
            let v = if w.scc { w.s(s0) } else { w.s(s1) };
            w.set_s(op.d, v);
        }
        SCsel64 => {
            let v = if w.scc { w.s64(s0) } else { w.s64(s1) };
            w.set_s64(op.d, v);
        }
        SAbsI32 => {
            let r = (w.s(s0) as i32).unsigned_abs();
            w.scc = r != 0;
            w.set_s(op.d, r);
        }
        SBrev32 => {
            let v = w.s(s0).reverse_bits();
            w.set_s(op.d, v);
        }
        SNot32 => {
            let r = !w.s(s0);
            w.scc = r != 0;
            w.set_s(op.d, r);
        }
        SNot64 => {
            let r = !w.s64(s0);
            w.scc = r != 0;
            w.set_s64(op.d, r);
        }
        SCtz32 => {
            let v = w.s(s0);
            w.set_s(op.d, if v == 0 { u32::MAX } else { v.trailing_zeros() });
        }
        SClz32 => {
            let v = w.s(s0);
            w.set_s(op.d, if v == 0 { u32::MAX } else { v.leading_zeros() });
        }
        SBcnt1_32 => {
            let r = w.s(s0).count_ones();
            w.scc = r != 0;
            w.set_s(op.d, r);
        }
        SBfeU32 | SBfeI32 => {
            let (a, b) = (w.s(s0), w.s(s1));
            let off = b & 31;
            let width = (b >> 16) & 0x7F;
            let r = if width == 0 {
                0
            } else if op.k == SBfeU32 {
                let x = a >> off;
                if width >= 32 {
                    x
                } else {
                    x & ((1 << width) - 1)
                }
            } else {
                let sh = 32u32.saturating_sub(width).min(31);
                (((a >> off) << sh) as i32 >> sh) as u32
            };
            w.scc = r != 0;
            w.set_s(op.d, r);
        }
        SSext8 => {
            let v = w.s(s0) as u8 as i8 as i32 as u32;
            w.set_s(op.d, v);
        }
        SSext16 => {
            let v = w.s(s0) as u16 as i16 as i32 as u32;
            w.set_s(op.d, v);
        }
        SPackLL => {
            let v = (w.s(s0) & 0xFFFF) | (w.s(s1) << 16);
            w.set_s(op.d, v);
        }
        SAndSaveexec | SOrSaveexec | SAndNot1Saveexec => {
            let old = w.exec();
            let src = w.s(s0);
            w.set_s(op.d, old);
            let new = match op.k {
                SAndSaveexec => src & old,
                SOrSaveexec => src | old,
                _ => src & !old,
            };
            w.sgpr[EXEC] = new;
            w.scc = new != 0;
        }
        SCmpI32(c) => w.scc = cmp_ord(c, w.s(s0) as i32, w.s(s1) as i32),
        SCmpU32(c) => w.scc = cmp_ord(c, w.s(s0), w.s(s1)),
        SCmpU64(c) => w.scc = cmp_ord(c, w.s64(s0), w.s64(s1)),
        SMovk => w.set_s(op.d, op.imm as i32 as u32),
        SAddk => {
            let (r, o) = (w.s(s0) as i32).overflowing_add(op.imm as i32);
            w.scc = o;
            w.set_s(op.d, r as u32);
        }
        SMulk => {
            let r = (w.s(s0) as i32).wrapping_mul(op.imm as i32);
            w.set_s(op.d, r as u32);
        }
        SCmpkI32(c) => w.scc = cmp_ord(c, w.s(s0) as i32, op.imm as i32),
        SCmpkU32(c) => w.scc = cmp_ord(c, w.s(s0), op.imm as u16 as u32),
        SFAdd | SFSub | SFMul => {
            let (a, b) = (f32::from_bits(w.s(s0)), f32::from_bits(w.s(s1)));
            let r = match op.k {
                SFAdd => a + b,
                SFSub => a - b,
                _ => a * b,
            };
            w.set_s(op.d, r.to_bits());
        }
        SCvtF32I32 => w.set_s(op.d, (w.s(s0) as i32 as f32).to_bits()),
        SCvtF32U32 => w.set_s(op.d, (w.s(s0) as f32).to_bits()),
        SCvtI32F32 => w.set_s(op.d, f32::from_bits(w.s(s0)) as i32 as u32),
        SCvtU32F32 => w.set_s(op.d, f32::from_bits(w.s(s0)) as u32),
        SLoad(n) => {
            let base = w.s64(s0);
            let va = base.wrapping_add(op.imm as u64).wrapping_add(u64::from(w.s(s1))) & !3;
            let mut buf = [0u8; 64];
            let len = 4 * n as usize;
            mem.read(va, &mut buf[..len]).map_err(|fault| ExecError::Memory {
                pc,
                text: format!("s_load_b{}", 32 * n as u32),
                fault,
            })?;
            for i in 0..n as usize {
                let v = u32::from_le_bytes([
                    buf[4 * i],
                    buf[4 * i + 1],
                    buf[4 * i + 2],
                    buf[4 * i + 3],
                ]);
                w.set_s(op.d + i as u16, v);
            }
        }
        VMov => v2!(|a, _b| a),
        VCndmask => {
            // The mask comes from src2 (VOP3: an SGPR) or VCC.
            let mask = w.s(s2);
            lanes!(w, l, {
                let v = if mask >> l & 1 != 0 {
                    fmod(op.mods, 1, f32::from_bits(w.v(s1, l))).to_bits()
                } else {
                    fmod(op.mods, 0, f32::from_bits(w.v(s0, l))).to_bits()
                };
                setv(w, op.d, l, v);
            });
        }
        VReadfirstlane => {
            let exec = w.exec();
            let lane = if exec == 0 { 0 } else { exec.trailing_zeros() as usize };
            let v = w.v(s0, lane);
            w.set_s(op.d, v);
        }
        VReadlane => {
            let lane = (w.s(s1) & 31) as usize;
            let v = w.v(s0, lane);
            w.set_s(op.d, v);
        }
        VWritelane => {
            let lane = (w.s(s1) & 31) as usize;
            let v = w.s(s0);
            setv(w, op.d, lane, v);
        }
        VAddF32 => f2!(|a, b| a + b),
        VSubF32 => f2!(|a, b| a - b),
        VSubrevF32 => f2!(|a, b| b - a),
        VMulF32 => f2!(|a, b| a * b),
        VMaxF32 => f2!(|a, b| if a.is_nan() {
            b
        } else if b.is_nan() {
            a
        } else {
            a.max(b)
        }),
        VMinF32 => f2!(|a, b| if a.is_nan() {
            b
        } else if b.is_nan() {
            a
        } else {
            a.min(b)
        }),
        VFmaF32 | VFmacF32 | VFmamkF32 | VFmaakF32 => f3!(|a, b, c| a.mul_add(b, c)),
        VLdexpF32 => {
            lanes!(w, l, {
                let a = fmod(op.mods, 0, f32::from_bits(w.v(s0, l)));
                let e = w.v(s1, l) as i32;
                setv(w, op.d, l, ldexp(a, e).to_bits());
            });
        }
        VRcpF32 => f1!(|a| 1.0 / a),
        VRsqF32 => f1!(|a| 1.0 / a.sqrt()),
        VSqrtF32 => f1!(|a| a.sqrt()),
        VExpF32 => f1!(|a| a.exp2()),
        VLogF32 => f1!(|a| a.log2()),
        VRndneF32 => f1!(|a| a.round_ties_even()),
        VFloorF32 => f1!(|a| a.floor()),
        VCeilF32 => f1!(|a| a.ceil()),
        VTruncF32 => f1!(|a| a.trunc()),
        VFractF32 => f1!(|a| if a.is_infinite() {
            f32::NAN
        } else {
            (a - a.floor()).min(f32::from_bits(0x3F7F_FFFF))
        }),
        VCvtF32I32 => v2!(|a, _b| (a as i32 as f32).to_bits()),
        VCvtF32U32 => v2!(|a, _b| (a as f32).to_bits()),
        VCvtI32F32 => {
            lanes!(w, l, {
                let a = fmod(op.mods, 0, f32::from_bits(w.v(s0, l)));
                setv(w, op.d, l, a as i32 as u32);
            });
        }
        VCvtU32F32 => {
            lanes!(w, l, {
                let a = fmod(op.mods, 0, f32::from_bits(w.v(s0, l)));
                setv(w, op.d, l, a as u32);
            });
        }
        VCvtF16F32 => {
            lanes!(w, l, {
                let a = fmod(op.mods, 0, f32::from_bits(w.v(s0, l)));
                let old = w.v(Src::V(op.d), l) & 0xFFFF_0000;
                setv(w, op.d, l, old | u32::from(f32_to_f16(a)));
            });
        }
        VCvtF32F16 => v2!(|a, _b| f16_to_f32(a as u16).to_bits()),
        VDivScaleF32 => {
            // Scales numerator or denominator by 2^±64 when the quotient would lose precision;
            // VCC reports that the result needs the fix-up scaling (AMD ISA V_DIV_SCALE_F32).
            let mut vcc = 0u32;
            lanes!(w, l, {
                let a = fmod(op.mods, 0, f32::from_bits(w.v(s0, l)));
                let den = fmod(op.mods, 1, f32::from_bits(w.v(s1, l)));
                let num = fmod(op.mods, 2, f32::from_bits(w.v(s2, l)));
                let (r, flag) = div_scale(a, den, num);
                if flag {
                    vcc |= 1 << l;
                }
                setv(w, op.d, l, r.to_bits());
            });
            let exec = w.exec();
            let slot = if op.d2 as usize == NULL { NULL as u16 } else { op.d2 };
            let old = if (slot as usize) < 128 { w.sgpr[slot as usize] } else { 0 };
            w.set_s(slot, (old & !exec) | vcc);
        }
        VDivFmasF32 => {
            let vcc = w.sgpr[VCC];
            lanes!(w, l, {
                let a = fmod(op.mods, 0, f32::from_bits(w.v(s0, l)));
                let b = fmod(op.mods, 1, f32::from_bits(w.v(s1, l)));
                let c = fmod(op.mods, 2, f32::from_bits(w.v(s2, l)));
                let r = a.mul_add(b, c);
                let r = if vcc >> l & 1 != 0 {
                    if exponent(c) >= 0 {
                        ldexp(r, 64)
                    } else {
                        ldexp(r, -64)
                    }
                } else {
                    r
                };
                setv(w, op.d, l, r.to_bits());
            });
        }
        VDivFixupF32 => f3!(|q, den, num| div_fixup(q, den, num)),
        VAddNc => v2!(|a, b| a.wrapping_add(b)),
        VSubNc => v2!(|a, b| a.wrapping_sub(b)),
        VSubrevNc => v2!(|a, b| b.wrapping_sub(a)),
        VAddCo | VSubCo | VSubrevCo | VAddCoCi | VSubCoCi | VSubrevCoCi => {
            let cin_mask = match op.k {
                VAddCoCi | VSubCoCi | VSubrevCoCi => w.s(s2),
                _ => 0,
            };
            let mut cout = 0u32;
            lanes!(w, l, {
                let a = u64::from(w.v(s0, l));
                let b = u64::from(w.v(s1, l));
                let c = u64::from(cin_mask >> l & 1);
                let (r, carry) = match op.k {
                    VAddCo | VAddCoCi => {
                        let r = a + b + c;
                        (r as u32, r >> 32 != 0)
                    }
                    VSubCo | VSubCoCi => (a.wrapping_sub(b + c) as u32, b + c > a),
                    _ => (b.wrapping_sub(a + c) as u32, a + c > b),
                };
                if carry {
                    cout |= 1 << l;
                }
                setv(w, op.d, l, r);
            });
            let exec = w.exec();
            let dst = op.d2;
            if dst as usize != NULL {
                let old = w.sgpr.get(dst as usize).copied().unwrap_or(0);
                w.set_s(dst, (old & !exec) | cout);
            }
        }
        VAnd => v2!(|a, b| a & b),
        VOr => v2!(|a, b| a | b),
        VXor => v2!(|a, b| a ^ b),
        VNot => v2!(|a, _b| !a),
        VLshlrev => v2!(|a, b| b << (a & 31)),
        VLshrrev => v2!(|a, b| b >> (a & 31)),
        VAshrrev => v2!(|a, b| ((b as i32) >> (a & 31)) as u32),
        VLshlrev64 | VLshrrev64 | VAshrrev64 => {
            lanes!(w, l, {
                let sh = w.v(s0, l) & 63;
                let b = w.v64(s1, l);
                let r = match op.k {
                    VLshlrev64 => b << sh,
                    VLshrrev64 => b >> sh,
                    _ => ((b as i64) >> sh) as u64,
                };
                setv(w, op.d, l, r as u32);
                setv(w, op.d + 1, l, (r >> 32) as u32);
            });
        }
        VBfeU => v3!(|a, b, c| {
            let (off, width) = (b & 31, c & 31);
            if width == 0 {
                0
            } else {
                (a >> off) & ((1u64 << width) - 1) as u32
            }
        }),
        VBfeI => v3!(|a, b, c| {
            let (off, width) = (b & 31, c & 31);
            if width == 0 {
                0
            } else {
                (((a >> off) << (32 - width)) as i32 >> (32 - width)) as u32
            }
        }),
        VBfi => v3!(|a, b, c| (a & b) | (!a & c)),
        VBfrev => v2!(|a, _b| a.reverse_bits()),
        VAdd3 => v3!(|a, b, c| a.wrapping_add(b).wrapping_add(c)),
        VLshlAdd => v3!(|a, b, c| (a << (b & 31)).wrapping_add(c)),
        VAddLshl => v3!(|a, b, c| a.wrapping_add(b) << (c & 31)),
        VLshlOr => v3!(|a, b, c| (a << (b & 31)) | c),
        VOr3 => v3!(|a, b, c| a | b | c),
        VAndOr => v3!(|a, b, c| (a & b) | c),
        VXad => v3!(|a, b, c| (a ^ b).wrapping_add(c)),
        VMulLo => v2!(|a, b| a.wrapping_mul(b)),
        VMulHiU => v2!(|a, b| ((u64::from(a) * u64::from(b)) >> 32) as u32),
        VMulHiI => v2!(|a, b| ((i64::from(a as i32) * i64::from(b as i32)) >> 32) as u32),
        VMulU24 => v2!(|a, b| (a & 0xFF_FFFF).wrapping_mul(b & 0xFF_FFFF)),
        VMulI24 => v2!(|a, b| (((a << 8) as i32 >> 8).wrapping_mul((b << 8) as i32 >> 8)) as u32),
        VMadU24 => v3!(|a, b, c| (a & 0xFF_FFFF).wrapping_mul(b & 0xFF_FFFF).wrapping_add(c)),
        VMadU64U32 | VMadI64I32 => {
            let mut cout = 0u32;
            lanes!(w, l, {
                let (a, b) = (w.v(s0, l), w.v(s1, l));
                let c = w.v64(s2, l);
                let (r, carry) = if op.k == VMadU64U32 {
                    let p = u128::from(a) * u128::from(b) + u128::from(c);
                    (p as u64, p >> 64 != 0)
                } else {
                    let p = i128::from(a as i32) * i128::from(b as i32) + i128::from(c as i64);
                    (p as u64, p != i128::from(p as i64))
                };
                if carry {
                    cout |= 1 << l;
                }
                setv(w, op.d, l, r as u32);
                setv(w, op.d + 1, l, (r >> 32) as u32);
            });
            if op.d2 as usize != NULL {
                let exec = w.exec();
                let old = w.sgpr.get(op.d2 as usize).copied().unwrap_or(0);
                w.set_s(op.d2, (old & !exec) | cout);
            }
        }
        VPerm => v3!(|a, b, c| perm(a, b, c)),
        VMaxI => v2!(|a, b| (a as i32).max(b as i32) as u32),
        VMinI => v2!(|a, b| (a as i32).min(b as i32) as u32),
        VMaxU => v2!(|a, b| a.max(b)),
        VMinU => v2!(|a, b| a.min(b)),
        VMbcntLo => {
            lanes!(w, l, {
                let (a, b) = (w.v(s0, l), w.v(s1, l));
                let below = if l == 0 { 0 } else { a & (u32::MAX >> (32 - l)) };
                setv(w, op.d, l, below.count_ones().wrapping_add(b));
            });
        }
        VMbcntHi => v2!(|_a, b| b), // wave32: no lanes above 31
        VDot4I32Iu8 | VDot4U32U8 => {
            let signed_a = op.k == VDot4I32Iu8 && op.mods & 1 != 0;
            let signed_b = op.k == VDot4I32Iu8 && op.mods & 2 != 0;
            lanes!(w, l, {
                let (a, b, c) = (w.v(s0, l), w.v(s1, l), w.v(s2, l));
                let mut acc = i64::from(c as i32);
                for j in 0..4 {
                    let x = (a >> (8 * j)) & 0xFF;
                    let y = (b >> (8 * j)) & 0xFF;
                    let x = if signed_a { i64::from(x as u8 as i8) } else { i64::from(x) };
                    let y = if signed_b { i64::from(y as u8 as i8) } else { i64::from(y) };
                    acc += x * y;
                }
                let r = if op.k == VDot4U32U8 {
                    let u = acc as u64 & 0x1_FFFF_FFFF;
                    if op.clamp {
                        u.min(u64::from(u32::MAX)) as u32
                    } else {
                        u as u32
                    }
                } else if op.clamp {
                    acc.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32 as u32
                } else {
                    acc as u32
                };
                setv(w, op.d, l, r);
            });
        }
        VCmpF32(_) | VCmpI32(_) | VCmpU32(_) | VCmpClassF32 => {
            let mut res = 0u32;
            lanes!(w, l, {
                let (a, b) = (w.v(s0, l), w.v(s1, l));
                let t = match op.k {
                    VCmpF32(c) => cmp_f(
                        c,
                        fmod(op.mods, 0, f32::from_bits(a)),
                        fmod(op.mods, 1, f32::from_bits(b)),
                    ),
                    VCmpI32(c) => cmp_ord(c, a as i32, b as i32),
                    VCmpU32(c) => cmp_ord(c, a, b),
                    _ => class_f32(fmod(op.mods, 0, f32::from_bits(a)), b),
                };
                if t {
                    res |= 1 << l;
                }
            });
            // Inactive lanes' bits are written as zero.
            if op.flag != 0 {
                w.sgpr[EXEC] = res;
            } else {
                w.set_s(op.d, res);
            }
        }
        DsLoad(_) | DsStore(_) | DsLoad2(_) | DsStore2(_) | DsAddU32 | DsAddRtnU32 => {
            ds_op(lds, w, op);
        }
        DsBpermute | DsPermute => {
            let mut out = [0u32; 32];
            let exec = w.exec();
            let mut written = 0u32;
            for l in 0..32 {
                if exec >> l & 1 == 0 {
                    continue;
                }
                let addr = (w.v(s0, l) as i64 + op.imm) as u32;
                let idx = ((addr >> 2) & 31) as usize;
                if op.k == DsBpermute {
                    // Reading an inactive lane yields zero.
                    out[l] = if exec >> idx & 1 != 0 { w.v(s1, idx) } else { 0 };
                } else {
                    out[idx] = w.v(s1, l);
                    written |= 1 << idx;
                }
            }
            for (l, v) in out.iter().enumerate() {
                if exec >> l & 1 != 0 && (op.k == DsBpermute || written >> l & 1 != 0) {
                    setv(w, op.d, l, *v);
                } else if exec >> l & 1 != 0 {
                    setv(w, op.d, l, 0);
                }
            }
        }
        GLoad(_) | GStore(_) | GAtomic(_) | ScrLoad(_) | ScrStore(_) => {
            mem_op(d, mem, w, op, pc)?;
        }
    }
    Ok(Flow::Next)
}

fn exec_op(
    d: &Dispatch,
    mem: &mut dyn Memory,
    lds: &mut [u8],
    w: &mut Wave,
    op: &Op,
    pc: u64,
) -> Result<Flow, ExecError> {
    let Some(y) = &op.y else {
        return exec_single(d, mem, lds, w, op, pc);
    };
    // VOPD: both halves read their sources before either writes; the destinations differ
    // (their parities differ), so X's result is held back while Y runs on the old values.
    let base = op.d as usize * 32;
    if base + 32 > w.vgpr.len() {
        return exec_single(d, mem, lds, w, op, pc)
            .and_then(|_| exec_single(d, mem, lds, w, y, pc));
    }
    let mut old = [0u32; 32];
    old.copy_from_slice(&w.vgpr[base..base + 32]);
    exec_single(d, mem, lds, w, op, pc)?;
    let mut new = [0u32; 32];
    new.copy_from_slice(&w.vgpr[base..base + 32]);
    w.vgpr[base..base + 32].copy_from_slice(&old);
    exec_single(d, mem, lds, w, y, pc)?;
    w.vgpr[base..base + 32].copy_from_slice(&new);
    Ok(Flow::Next)
}

fn lds_read(lds: &[u8], addr: u64) -> u32 {
    let a = addr as usize;
    // Out-of-range LDS reads return zero (the hardware's bounds rule for LDS).
    match lds.get(a..a + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn lds_write(lds: &mut [u8], addr: u64, v: u32) {
    let a = addr as usize;
    if let Some(b) = lds.get_mut(a..a + 4) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

fn ds_op(lds: &mut [u8], w: &mut Wave, op: &Op) {
    let (s0, s1, s2) = (op.s[0], op.s[1], op.s[2]);
    lanes!(w, l, {
        let base = u64::from(w.v(s0, l));
        match op.k {
            K::DsLoad(n) => {
                let a = base + op.imm as u64;
                for i in 0..n as u64 {
                    let v = lds_read(lds, a + 4 * i);
                    setv(w, op.d + i as u16, l, v);
                }
            }
            K::DsStore(n) => {
                let a = base + op.imm as u64;
                for i in 0..n as u64 {
                    let v = w.v(
                        Src::V(match s1 {
                            Src::V(r) => r + i as u16,
                            _ => 0,
                        }),
                        l,
                    );
                    lds_write(lds, a + 4 * i, v);
                }
            }
            K::DsLoad2(stride) => {
                let unit = 4 * u64::from(stride);
                let a0 = base + op.imm as u64 * unit;
                let a1 = base + op.imm2 as u64 * unit;
                let (v0, v1) = (lds_read(lds, a0), lds_read(lds, a1));
                setv(w, op.d, l, v0);
                setv(w, op.d + 1, l, v1);
            }
            K::DsStore2(stride) => {
                let unit = 4 * u64::from(stride);
                let (v0, v1) = (w.v(s1, l), w.v(s2, l));
                lds_write(lds, base + op.imm as u64 * unit, v0);
                lds_write(lds, base + op.imm2 as u64 * unit, v1);
            }
            K::DsAddU32 | K::DsAddRtnU32 => {
                let a = base + op.imm as u64;
                let old = lds_read(lds, a);
                lds_write(lds, a, old.wrapping_add(w.v(s1, l)));
                if op.k == K::DsAddRtnU32 {
                    setv(w, op.d, l, old);
                }
            }
            _ => {}
        }
    });
}

fn mem_op(
    d: &Dispatch,
    mem: &mut dyn Memory,
    w: &mut Wave,
    op: &Op,
    pc: u64,
) -> Result<(), ExecError> {
    let saddr = op.flag as usize;
    let exec = w.exec();
    for l in 0..32usize {
        if exec >> l & 1 == 0 {
            continue;
        }
        let fault = |fault: Fault| ExecError::Memory { pc, text: format!("{:?}", op.k), fault };
        match op.k {
            K::ScrLoad(t) | K::ScrStore(t) => {
                let mut off = op.imm;
                if op.imm2 != 0 {
                    off += i64::from(w.v(op.s[0], l));
                }
                if saddr != NULL {
                    off += i64::from(w.sgpr[saddr]);
                }
                let len = t.bytes();
                let size = d.scratch_per_lane;
                if off < 0 || off as u64 + len as u64 > u64::from(size) {
                    return Err(ExecError::Scratch {
                        pc,
                        text: format!("{:?}", op.k),
                        offset: off as u64,
                        size,
                    });
                }
                let base = l * size as usize + off as usize;
                if let K::ScrLoad(t) = op.k {
                    let mut buf = [0u8; 16];
                    buf[..len].copy_from_slice(&w.scratch[base..base + len]);
                    write_loaded(w, op.d, l, t, &buf);
                } else {
                    let buf = gather_store(w, op.s[1], l, t);
                    w.scratch[base..base + len].copy_from_slice(&buf[..len]);
                }
            }
            _ => {
                let va = if saddr != NULL && saddr < 127 {
                    let b = u64::from(w.sgpr[saddr]) | u64::from(w.sgpr[saddr + 1]) << 32;
                    b.wrapping_add(u64::from(w.v(op.s[0], l)))
                } else {
                    w.v64(op.s[0], l)
                }
                .wrapping_add(op.imm as u64);
                match op.k {
                    K::GLoad(t) => {
                        let mut buf = [0u8; 16];
                        mem.read(va, &mut buf[..t.bytes()]).map_err(fault)?;
                        write_loaded(w, op.d, l, t, &buf);
                    }
                    K::GStore(t) => {
                        let buf = gather_store(w, op.s[1], l, t);
                        mem.write(va, &buf[..t.bytes()]).map_err(fault)?;
                    }
                    K::GAtomic(a) => {
                        let mut b = [0u8; 4];
                        mem.read(va, &mut b).map_err(fault)?;
                        let old = u32::from_le_bytes(b);
                        let data = w.v(op.s[1], l);
                        let new = match a {
                            Atom::Add => old.wrapping_add(data),
                            Atom::Sub => old.wrapping_sub(data),
                            Atom::Swap => data,
                            Atom::Cmpswap => {
                                let cmp = w.v(
                                    match op.s[1] {
                                        Src::V(r) => Src::V(r + 1),
                                        o => o,
                                    },
                                    l,
                                );
                                if old == cmp {
                                    data
                                } else {
                                    old
                                }
                            }
                            Atom::MaxI => (old as i32).max(data as i32) as u32,
                            Atom::MinI => (old as i32).min(data as i32) as u32,
                            Atom::MaxU => old.max(data),
                            Atom::MinU => old.min(data),
                            Atom::And => old & data,
                            Atom::Or => old | data,
                            Atom::Xor => old ^ data,
                        };
                        mem.write(va, &new.to_le_bytes()).map_err(fault)?;
                        if op.imm2 != 0 {
                            setv(w, op.d, l, old);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn write_loaded(w: &mut Wave, d: u16, l: usize, t: MemTy, buf: &[u8; 16]) {
    match t {
        MemTy::U8 => setv(w, d, l, u32::from(buf[0])),
        MemTy::I8 => setv(w, d, l, buf[0] as i8 as i32 as u32),
        MemTy::U16 => setv(w, d, l, u32::from(u16::from_le_bytes([buf[0], buf[1]]))),
        MemTy::I16 => setv(w, d, l, i16::from_le_bytes([buf[0], buf[1]]) as i32 as u32),
        MemTy::D(n) => {
            for i in 0..n as usize {
                let v = u32::from_le_bytes([
                    buf[4 * i],
                    buf[4 * i + 1],
                    buf[4 * i + 2],
                    buf[4 * i + 3],
                ]);
                setv(w, d + i as u16, l, v);
            }
        }
    }
}

fn gather_store(w: &Wave, s: Src, l: usize, t: MemTy) -> [u8; 16] {
    let mut buf = [0u8; 16];
    let r = match s {
        Src::V(r) => r,
        _ => 0,
    };
    let n = match t {
        MemTy::D(n) => n as usize,
        _ => 1,
    };
    for i in 0..n {
        let v = w.v(Src::V(r + i as u16), l);
        buf[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    buf
}

fn perm(a: u32, b: u32, sel: u32) -> u32 {
    // Byte pool: b is bytes 0-3, a is bytes 4-7.
    let pool = u64::from(b) | u64::from(a) << 32;
    let mut r = 0u32;
    for i in 0..4 {
        let s = (sel >> (8 * i)) & 0xFF;
        let byte = match s {
            0..=7 => ((pool >> (8 * s)) & 0xFF) as u32,
            8..=11 => {
                // Sign of the high byte of each 16-bit half.
                let src_byte = [1, 3, 5, 7][(s - 8) as usize];
                if (pool >> (8 * src_byte + 7)) & 1 != 0 {
                    0xFF
                } else {
                    0
                }
            }
            12 => 0,
            _ => 0xFF,
        };
        r |= byte << (8 * i);
    }
    r
}

fn ldexp(x: f32, e: i32) -> f32 {
    let e = e.clamp(-300, 300);
    (f64::from(x) * 2f64.powi(e)) as f32
}

fn exponent(x: f32) -> i32 {
    ((x.to_bits() >> 23) & 0xFF) as i32 - 127
}

/// V_DIV_SCALE_F32 (AMD's pseudocode): scales an operand by 2^±64 when num/den would lose
/// precision, and reports in VCC that V_DIV_FMAS must undo it.
fn div_scale(s0: f32, den: f32, num: f32) -> (f32, bool) {
    let tiny = |x: f64| x != 0.0 && x.abs() < f64::from(f32::MIN_POSITIVE);
    if den == 0.0
        || num == 0.0
        || den.is_nan()
        || num.is_nan()
        || den.is_infinite()
        || num.is_infinite()
    {
        // V_DIV_FIXUP handles these from the original operands.
        return (f32::NAN, false);
    }
    let (en, ed) = (exponent(num), exponent(den));
    let q = f64::from(num) / f64::from(den);
    let r = 1.0 / f64::from(den);
    if en - ed >= 96 {
        (if s0 == den { ldexp(s0, 64) } else { s0 }, true)
    } else if den.is_subnormal() {
        (ldexp(s0, 64), false)
    } else if tiny(r) && tiny(q) {
        (if s0 == den { ldexp(s0, 64) } else { s0 }, true)
    } else if tiny(r) {
        (ldexp(s0, -64), false)
    } else if tiny(q) {
        (if s0 == num { ldexp(s0, 64) } else { s0 }, true)
    } else if en + 127 <= 23 {
        (ldexp(s0, 64), false)
    } else {
        (s0, false)
    }
}

/// V_DIV_FIXUP_F32: the special cases of num/den, else the quotient as computed.
fn div_fixup(q: f32, den: f32, num: f32) -> f32 {
    let sign = (den.to_bits() ^ num.to_bits()) & 0x8000_0000;
    let signed = |x: f32| f32::from_bits(x.to_bits() & 0x7FFF_FFFF | sign);
    if num.is_nan() {
        num
    } else if den.is_nan() {
        den
    } else if (den == 0.0 && num == 0.0) || (den.is_infinite() && num.is_infinite()) {
        f32::NAN
    } else if den == 0.0 || num.is_infinite() {
        signed(f32::INFINITY)
    } else if den.is_infinite() {
        signed(0.0)
    } else if q.is_nan() {
        signed(f32::INFINITY)
    } else {
        signed(q.abs())
    }
}

/// Reports which opcodes of the tables the interpreter executes (for the closing note).
pub fn implemented(mnemonic: &str) -> bool {
    kind_of(mnemonic).is_some()
}

#[allow(dead_code)]
fn spec_is_sgpr_dst(inst: &Inst) -> bool {
    inst.info.operands.iter().any(|s| matches!(s, Spec::Reg { field: Field::Dst, sgpr: true, .. }))
}
