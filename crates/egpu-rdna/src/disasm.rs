//! Printing decoded instructions in LLVM's assembler syntax (as llvm-objdump-19 prints them).

use crate::decode::{Arch, Class, Field, Inst, OpInfo, Spec};
use std::fmt::Write;

/// Name of a scalar operand code (8 bits of SSRC, or the low 256 values of a 9-bit SRC).
fn scalar_name(arch: Arch, code: u32, width: u8, literal: Option<u32>) -> String {
    let w = u32::from(width.max(1));
    match code {
        0..=105 => {
            if w == 1 {
                format!("s{code}")
            } else {
                format!("s[{}:{}]", code, code + w - 1)
            }
        }
        106 => if w == 1 { "vcc_lo" } else { "vcc" }.into(),
        107 => "vcc_hi".into(),
        108..=123 => {
            let t = code - 108;
            if w == 1 {
                format!("ttmp{t}")
            } else {
                format!("ttmp[{}:{}]", t, t + w - 1)
            }
        }
        124 => match arch {
            Arch::Gfx11 | Arch::Gfx12 => "null".into(),
        },
        125 => "m0".into(),
        126 => if w == 1 { "exec_lo" } else { "exec" }.into(),
        127 => "exec_hi".into(),
        128..=192 => format!("{}", code - 128),
        193..=208 => format!("-{}", code - 192),
        235 => "src_shared_base".into(),
        236 => "src_shared_limit".into(),
        237 => "src_private_base".into(),
        238 => "src_private_limit".into(),
        239 => "src_pops_exiting_wave_id".into(),
        240 => "0.5".into(),
        241 => "-0.5".into(),
        242 => "1.0".into(),
        243 => "-1.0".into(),
        244 => "2.0".into(),
        245 => "-2.0".into(),
        246 => "4.0".into(),
        247 => "-4.0".into(),
        248 if w == 2 => "0.15915494309189532".into(),
        248 => "0.15915494".into(),
        251 => "src_vccz".into(),
        252 => "src_execz".into(),
        253 => "src_scc".into(),
        254 => "src_lds_direct".into(),
        255 => match literal {
            Some(l) => format!("0x{l:x}"),
            None => "<missing literal>".into(),
        },
        _ => format!("<reserved {code}>"),
    }
}

fn vgpr_name(n: u32, width: u8) -> String {
    if width <= 1 {
        format!("v{n}")
    } else {
        format!("v[{}:{}]", n, n + u32::from(width) - 1)
    }
}

/// A 9-bit VOP source.
fn src9(arch: Arch, code: u32, width: u8, literal: Option<u32>) -> String {
    if code >= 256 {
        vgpr_name(code - 256, width)
    } else {
        scalar_name(arch, code, width, literal)
    }
}

fn sext(v: u32, bits: u32) -> i64 {
    let s = 64 - bits;
    ((u64::from(v) << s) as i64) >> s
}

fn bits(w: u32, lo: u32, n: u32) -> u32 {
    (w >> lo) & ((1u32 << n) - 1)
}

/// An instruction this disassembler cannot print in LLVM's syntax (it may still execute).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{mnemonic}`: {why}; LLVM's text for this form is not reproduced")]
pub struct Unprintable {
    pub mnemonic: &'static str,
    pub why: &'static str,
}

/// Forms whose LLVM text depends on rules not modelled here: named hardware registers and
/// messages, true16 operand syntax, invalid-register comments for restricted operand classes.
fn check_printable(inst: &Inst) -> Result<(), Unprintable> {
    let info = inst.info;
    let mn = info.mnemonic;
    let no = |why| Err(Unprintable { mnemonic: mn, why });
    let w = inst.w;
    if matches!(
        mn,
        "s_getreg_b32"
            | "s_setreg_b32"
            | "s_setreg_imm32_b32"
            | "s_atc_probe"
            | "s_atc_probe_buffer"
    ) || mn.starts_with("s_prefetch")
        || mn.starts_with("s_sendmsg_rtn")
    {
        return no("named hardware register/message operand");
    }
    if matches!(inst.class, Class::Sopp) {
        let imm = w[0] & 0xFFFF;
        let branch = mn.starts_with("s_branch") || mn.starts_with("s_cbranch");
        match mn {
            "s_sendmsg" | "s_sendmsghalt" if imm != 3 => return no("message name"),
            "s_delay_alu"
                if bits(imm, 0, 4) > 11
                    || bits(imm, 4, 3) > 5
                    || bits(imm, 7, 4) > 11
                    || imm >> 11 != 0 =>
            {
                return no("invalid delay_alu fields")
            }
            _ => {}
        }
        if info.operands.contains(&Spec::ImmDec)
            && !branch
            && imm > 255
            && !matches!(mn, "s_nop" | "s_barrier_wait")
        {
            return no("immediate outside the operand's printable range");
        }
    }
    let is16 = ["f16", "i16", "u16", "b16", "bf16"].iter().any(|t| mn.contains(t));
    if is16
        && matches!(inst.class, Class::Vop1 | Class::Vop2 | Class::Vopc | Class::Vop3 | Class::Vopd)
    {
        return no("16-bit operand syntax (true16 halves, Lo128 register classes)");
    }
    if (mn.starts_with("s_") && is16) || mn.contains("wmma") || mn.contains("swmmac") {
        return no("16-bit scalar float / matrix operand syntax");
    }
    if inst.arch == Arch::Gfx12
        && matches!(inst.class, Class::Flat | Class::Global | Class::Scratch)
    {
        let th = bits(w[1], 20, 3);
        if th >= 3 {
            return no("gfx12 temporal hint names that depend on the scope");
        }
    }
    if inst.class == Class::Vop3 && is_integer_op(mn) && bits(w[1], 29, 3) != 0 {
        return no("neg bits on an integer operation");
    }
    if mn.contains("_mix") && inst.literal.is_some() {
        return no("16-bit literal of a mixed-precision operation");
    }
    if mn.starts_with("v_cvt_pk_u8_f32") || mn.contains("sad_") || mn.contains("qsad") {
        return no("integer source modifiers / register classes");
    }
    // An SGPR-only operand holding a VGPR, or a VGPR-only source holding anything else.
    let vgpr_only_src0 = [
        "v_swap_b32",
        "v_readfirstlane",
        "v_readlane",
        "v_movrel",
        "v_swaprel",
        "v_permlane",
        "v_writelane",
    ]
    .iter()
    .any(|p| mn.starts_with(p));
    if matches!(inst.class, Class::Vop1 | Class::Vop2 | Class::Vopc | Class::Vop3) {
        let src_code = |i: u32| match inst.class {
            Class::Vop3 => bits(w[1], 9 * i, 9),
            _ if i == 0 => bits(w[0], 0, 9),
            _ => 256 + bits(w[0], 9, 8),
        };
        for spec in &info.operands {
            if let Spec::Reg { field, sgpr: true, .. } = *spec {
                let i = match field {
                    Field::Src0 => 0,
                    Field::Src1 => 1,
                    Field::Src2 => 2,
                    _ => continue,
                };
                if src_code(i) >= 256 {
                    return no("VGPR in an SGPR-only operand");
                }
            }
        }
        if vgpr_only_src0 && src_code(0) < 256 && !mn.starts_with("v_writelane") {
            return no("non-VGPR in a VGPR-only operand");
        }
    }
    Ok(())
}

/// LLVM's text of one instruction, or why it cannot be reproduced.
pub fn try_format(inst: &Inst) -> Result<String, Unprintable> {
    check_printable(inst)?;
    Ok(format(inst))
}

/// LLVM text of one instruction (forms [`try_format`] refuses are printed on a best-effort basis).
pub fn format(inst: &Inst) -> String {
    let mut s = String::new();
    let info = inst.info;
    let w = inst.w;
    match inst.class {
        Class::Vopd => {
            let (_, yinfo) = inst.y.expect("VOPD always decodes its Y half");
            let vdstx = bits(w[1], 24, 8);
            let vdsty = (bits(w[1], 17, 7) << 1) | ((vdstx & 1) ^ 1);
            let x = vopd_half(inst, info, vdstx, bits(w[0], 0, 9), bits(w[0], 9, 8));
            let y = vopd_half(inst, yinfo, vdsty, bits(w[1], 0, 9), bits(w[1], 9, 8));
            return format!("{x} :: {y}");
        }
        Class::Sopp | Class::Sopk => {
            s.push_str(info.mnemonic);
            let imm = w[0] & 0xFFFF;
            let mut ops = Vec::new();
            for spec in &info.operands {
                ops.push(match spec {
                    Spec::Reg { width, .. } => {
                        scalar_name(inst.arch, bits(w[0], 16, 7), *width, None)
                    }
                    Spec::Fixed(t) => (*t).to_string(),
                    Spec::ImmDec if imm == 0 && info.mnemonic == "s_endpgm" => continue,
                    // LLVM prints s_barrier_wait immediates above 255 in hex.
                    Spec::ImmDec if imm > 255 && info.mnemonic == "s_barrier_wait" => {
                        format!("0x{imm:x}")
                    }
                    Spec::ImmDec => format!("{imm}"),
                    Spec::ImmHex => format!("0x{imm:x}"),
                    Spec::ImmSpecial => sopp_special(inst.arch, info.mnemonic, imm),
                });
            }
            if !ops.is_empty() {
                s.push(' ');
                s.push_str(&ops.join(", "));
            }
            return s;
        }
        _ => {}
    }
    s.push_str(info.mnemonic);
    let mut ops: Vec<String> = Vec::new();
    let mut mods: Vec<String> = Vec::new();
    match inst.class {
        Class::Sop2 | Class::Sop1 | Class::Sopc => {
            for spec in &info.operands {
                ops.push(match *spec {
                    Spec::Reg { field, width, .. } => {
                        let code = match (inst.class, field) {
                            (Class::Sopc, Field::Src0) | (_, Field::Src0) => bits(w[0], 0, 8),
                            (_, Field::Src1) => bits(w[0], 8, 8),
                            (Class::Sop1, Field::Dst) | (Class::Sop2, Field::Dst) => {
                                bits(w[0], 16, 7)
                            }
                            _ => 0,
                        };
                        scalar_name(inst.arch, code, width, inst.literal)
                    }
                    Spec::Fixed(t) => t.to_string(),
                    _ => continue,
                });
            }
        }
        Class::Smem => smem(inst, &mut ops, &mut mods),
        Class::Vop1 | Class::Vop2 | Class::Vopc => {
            for spec in &info.operands {
                ops.push(match *spec {
                    Spec::Reg { field, width, sgpr } => match field {
                        Field::Dst if sgpr => {
                            scalar_name(inst.arch, bits(w[0], 17, 8), width, None)
                        }
                        Field::Dst => vgpr_name(bits(w[0], 17, 8), width),
                        Field::Src0 => src9(inst.arch, bits(w[0], 0, 9), width, inst.literal),
                        Field::Src1 => vgpr_name(bits(w[0], 9, 8), width),
                        _ => continue,
                    },
                    Spec::Fixed(t) => t.to_string(),
                    _ => continue,
                });
                // VOP2's madmk form: the literal K sits between src0 and vsrc1.
                if inst.class == Class::Vop2
                    && info.mnemonic.contains("fmamk")
                    && matches!(spec, Spec::Reg { field: Field::Src0, .. })
                {
                    ops.push(format!("0x{:x}", inst.literal.unwrap_or(0)));
                }
            }
            if inst.class == Class::Vop2 && info.mnemonic.contains("fmaak") {
                ops.push(format!("0x{:x}", inst.literal.unwrap_or(0)));
            }
        }
        Class::Vop3 => vop3(inst, &mut ops, &mut mods),
        Class::Vop3p => vop3p(inst, &mut ops, &mut mods),
        Class::Ds => ds(inst, &mut ops, &mut mods),
        Class::Flat | Class::Global | Class::Scratch => flat(inst, &mut ops, &mut mods),
        Class::Mubuf => {}
        Class::Vopd | Class::Sopp | Class::Sopk => unreachable!("handled above"),
    }
    if !ops.is_empty() {
        s.push(' ');
        s.push_str(&ops.join(", "));
    }
    for m in mods {
        s.push(' ');
        s.push_str(&m);
    }
    s
}

fn vopd_half(inst: &Inst, info: &OpInfo, vdst: u32, src0: u32, vsrc1: u32) -> String {
    let mut ops = Vec::new();
    for spec in &info.operands {
        ops.push(match spec {
            Spec::Reg { field: Field::Dst, .. } => vgpr_name(vdst, 1),
            Spec::Reg { field: Field::Src0, .. } => src9(inst.arch, src0, 1, inst.literal),
            Spec::Reg { .. } => vgpr_name(vsrc1, 1),
            Spec::Fixed(t) => t.to_string(),
            _ => format!("0x{:x}", inst.literal.unwrap_or(0)),
        });
    }
    format!("{} {}", info.mnemonic, ops.join(", "))
}

fn sopp_special(arch: Arch, mn: &str, imm: u32) -> String {
    match mn {
        "s_waitcnt" => {
            // gfx11: expcnt [2:0], lgkmcnt [9:4], vmcnt [15:10].
            let vm = bits(imm, 10, 6);
            let exp = bits(imm, 0, 3);
            let lgkm = bits(imm, 4, 6);
            let mut parts = Vec::new();
            if vm != 63 {
                parts.push(format!("vmcnt({vm})"));
            }
            if exp != 7 {
                parts.push(format!("expcnt({exp})"));
            }
            if lgkm != 63 {
                parts.push(format!("lgkmcnt({lgkm})"));
            }
            if parts.is_empty() {
                format!("vmcnt({vm}) expcnt({exp}) lgkmcnt({lgkm})")
            } else {
                parts.join(" ")
            }
        }
        "s_delay_alu" => {
            const ID: [&str; 12] = [
                "NO_DEP",
                "VALU_DEP_1",
                "VALU_DEP_2",
                "VALU_DEP_3",
                "VALU_DEP_4",
                "TRANS32_DEP_1",
                "TRANS32_DEP_2",
                "TRANS32_DEP_3",
                "FMA_ACCUM_CYCLE_1",
                "SALU_CYCLE_1",
                "SALU_CYCLE_2",
                "SALU_CYCLE_3",
            ];
            const SKIP: [&str; 6] = ["SAME", "NEXT", "SKIP_1", "SKIP_2", "SKIP_3", "SKIP_4"];
            let id0 = bits(imm, 0, 4) as usize;
            let skip = bits(imm, 4, 3) as usize;
            let id1 = bits(imm, 7, 4) as usize;
            let mut parts = Vec::new();
            if id0 != 0 {
                parts.push(format!("instid0({})", ID.get(id0).unwrap_or(&"?")));
            }
            if skip != 0 {
                parts.push(format!("instskip({})", SKIP.get(skip).unwrap_or(&"?")));
            }
            if id1 != 0 {
                parts.push(format!("instid1({})", ID.get(id1).unwrap_or(&"?")));
            }
            if parts.is_empty() {
                "0".into()
            } else {
                parts.join(" | ")
            }
        }
        "s_sendmsg" | "s_sendmsghalt" => match imm {
            3 => "sendmsg(MSG_DEALLOC_VGPRS)".into(),
            _ => format!("{imm}"),
        },
        "s_waitcnt_depctr" | "s_wait_alu" => {
            // Fields: sa_sdst [0], va_vdst [15:12], va_sdst [11:9], va_ssrc [8], hold_cnt [7],
            // vm_vsrc [4:2], va_vcc [1]; LLVM prints those not at their default (all-ones).
            let fields: [(&str, u32, u32); 7] = [
                ("depctr_hold_cnt", 7, 1),
                ("depctr_sa_sdst", 0, 1),
                ("depctr_va_vdst", 12, 4),
                ("depctr_va_sdst", 9, 3),
                ("depctr_va_ssrc", 8, 1),
                ("depctr_va_vcc", 1, 1),
                ("depctr_vm_vsrc", 2, 3),
            ];
            let mut parts = Vec::new();
            for (name, lo, n) in fields {
                let v = bits(imm, lo, n);
                if v != (1 << n) - 1 {
                    parts.push(format!("{name}({v})"));
                }
            }
            let _ = arch;
            // LLVM names the fields only when the unused bits 6:5 are clear.
            if parts.is_empty() || bits(imm, 5, 2) != 0 {
                format!("0x{imm:x}")
            } else {
                parts.join(" ")
            }
        }
        _ => format!("0x{imm:x}"),
    }
}

fn smem(inst: &Inst, ops: &mut Vec<String>, mods: &mut Vec<String>) {
    let w = inst.w;
    let info = inst.info;
    let sdata = bits(w[0], 6, 7);
    let sbase = bits(w[0], 0, 6) * 2;
    let soffset = bits(w[1], 25, 7);
    let offset = match inst.arch {
        Arch::Gfx11 => sext(bits(w[1], 0, 21), 21),
        Arch::Gfx12 => sext(bits(w[1], 0, 24), 24),
    };
    for spec in &info.operands {
        if let Spec::Reg { field, width, .. } = *spec {
            match field {
                Field::Dst => ops.push(scalar_name(inst.arch, sdata, width, None)),
                Field::Src0 => ops.push(scalar_name(inst.arch, sbase, width, None)),
                _ => {}
            }
        } else if let Spec::Fixed(t) = spec {
            ops.push(t.to_string());
        }
    }
    // s_load_b128 with a base of 8 prints its destination as a fixed token: width from the name.
    if info.width(Field::Dst).is_none() && info.mnemonic.contains("load") {
        let width = dwords_of(info.mnemonic);
        ops.insert(0, scalar_name(inst.arch, sdata, width, None));
    }
    let off_text = |o: i64| {
        if o < 0 {
            format!("-0x{:x}", -o)
        } else {
            format!("0x{o:x}")
        }
    };
    if soffset != 124 {
        ops.push(scalar_name(inst.arch, soffset, 1, None));
        if offset != 0 || inst.arch == Arch::Gfx12 {
            mods.push(format!("offset:{}", off_text(offset)));
        }
    } else if offset == 0 && inst.arch == Arch::Gfx11 {
        ops.push("null".into());
    } else {
        ops.push(off_text(offset));
    }
    match inst.arch {
        Arch::Gfx11 => {
            if bits(w[0], 14, 1) != 0 {
                mods.push("glc".into());
            }
            if bits(w[0], 13, 1) != 0 {
                mods.push("dlc".into());
            }
        }
        Arch::Gfx12 => {
            let th = bits(w[0], 23, 2);
            let scope = bits(w[0], 21, 2);
            if th != 0 {
                let name = match th {
                    1 => "TH_LOAD_NT",
                    2 => "TH_LOAD_HT",
                    _ if scope == 3 => "TH_LOAD_BYPASS",
                    _ => "TH_LOAD_LU",
                };
                mods.push(format!("th:{name}"));
            }
            if scope != 0 {
                mods.push(format!("scope:{}", scope_name(scope)));
            }
        }
    }
}

fn scope_name(s: u32) -> &'static str {
    ["SCOPE_CU", "SCOPE_SE", "SCOPE_DEV", "SCOPE_SYS"][(s & 3) as usize]
}

/// Dwords of data named by a load/store mnemonic suffix (b32 = 1, b64 = 2, ...).
fn dwords_of(mn: &str) -> u8 {
    for (suffix, n) in [("b512", 16), ("b256", 8), ("b128", 4), ("b96", 3), ("b64", 2)] {
        if mn.ends_with(suffix) {
            return n;
        }
    }
    1
}

fn src_mod(text: String, neg: bool, abs: bool) -> String {
    let constant = text.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    match (neg, abs) {
        (true, false) if constant => format!("neg({text})"),
        (false, false) => text,
        (true, false) => format!("-{text}"),
        (false, true) => format!("|{text}|"),
        (true, true) => format!("-|{text}|"),
    }
}

fn list(v: &[u32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn vop3(inst: &Inst, ops: &mut Vec<String>, mods: &mut Vec<String>) {
    let w = inst.w;
    let info = inst.info;
    let is_sd = info.width(Field::Sdst).is_some();
    let abs = if is_sd { 0 } else { bits(w[0], 8, 3) };
    let neg = bits(w[1], 29, 3);
    let is_int = is_integer_op(info.mnemonic);
    for spec in &info.operands {
        ops.push(match *spec {
            Spec::Reg { field, width, sgpr } => {
                let idx = match field {
                    Field::Src0 => 0,
                    Field::Src1 => 1,
                    Field::Src2 => 2,
                    Field::Dst => {
                        let d = bits(w[0], 0, 8);
                        ops.push(if sgpr {
                            scalar_name(inst.arch, d, width, None)
                        } else {
                            vgpr_name(d, width)
                        });
                        continue;
                    }
                    Field::Sdst => {
                        ops.push(scalar_name(inst.arch, bits(w[0], 8, 7), width, None));
                        continue;
                    }
                };
                let code = bits(w[1], 9 * idx, 9);
                let text = if sgpr && code >= 256 {
                    format!("v{}", code - 256)
                } else {
                    src9(inst.arch, code, width, inst.literal)
                };
                if is_int {
                    text
                } else {
                    src_mod(text, neg >> idx & 1 != 0, abs >> idx & 1 != 0)
                }
            }
            Spec::Fixed(t) => t.to_string(),
            _ => continue,
        });
    }
    let nsrc = info.num_srcs();
    if !is_sd {
        let opsel = bits(w[0], 11, 4);
        if opsel != 0 {
            let mut v: Vec<u32> = (0..nsrc as u32).map(|i| opsel >> i & 1).collect();
            v.push(opsel >> 3 & 1);
            mods.push(format!("op_sel:{}", list(&v)));
        }
    }
    if bits(w[0], 15, 1) != 0 {
        mods.push("clamp".into());
    }
    match bits(w[1], 27, 2) {
        1 => mods.push("mul:2".into()),
        2 => mods.push("mul:4".into()),
        3 => mods.push("div:2".into()),
        _ => {}
    }
}

/// Integer VOP3 operations take no float source modifiers.
fn is_integer_op(mn: &str) -> bool {
    !(mn.contains("_f32")
        || mn.contains("_f16")
        || mn.contains("_f64")
        || mn.contains("_bf16")
        || mn.contains("cvt_")
        || mn.contains("_num_")
        || mn.contains("v_cndmask"))
}

fn vop3p(inst: &Inst, ops: &mut Vec<String>, mods: &mut Vec<String>) {
    let w = inst.w;
    let info = inst.info;
    let nsrc = info.num_srcs();
    let neg_lo = bits(w[1], 29, 3);
    let neg_hi = bits(w[0], 8, 3);
    let opsel = bits(w[0], 11, 3);
    let opsel_hi = bits(w[1], 27, 2) | (bits(w[0], 14, 1) << 2);
    let mix = info.mnemonic.contains("_mix");
    for spec in &info.operands {
        ops.push(match *spec {
            Spec::Reg { field: Field::Dst, width, .. } => vgpr_name(bits(w[0], 0, 8), width),
            Spec::Reg { field, width, .. } => {
                let idx = match field {
                    Field::Src0 => 0,
                    Field::Src1 => 1,
                    _ => 2,
                };
                let t = src9(inst.arch, bits(w[1], 9 * idx, 9), width, inst.literal);
                if mix {
                    src_mod(t, neg_lo >> idx & 1 != 0, neg_hi >> idx & 1 != 0)
                } else {
                    t
                }
            }
            Spec::Fixed(t) => t.to_string(),
            _ => continue,
        });
    }
    let n = nsrc as u32;
    let mask = (1u32 << n) - 1;
    let bitsv = |v: u32| -> Vec<u32> { (0..n).map(|i| v >> i & 1).collect() };
    if opsel & mask != 0 {
        mods.push(format!("op_sel:{}", list(&bitsv(opsel))));
    }
    let hi_default = if mix { 0 } else { mask };
    if opsel_hi & mask != hi_default {
        mods.push(format!("op_sel_hi:{}", list(&bitsv(opsel_hi))));
    }
    if !mix {
        if neg_lo & mask != 0 {
            mods.push(format!("neg_lo:{}", list(&bitsv(neg_lo))));
        }
        if neg_hi & mask != 0 {
            mods.push(format!("neg_hi:{}", list(&bitsv(neg_hi))));
        }
    }
    if bits(w[0], 15, 1) != 0 {
        mods.push("clamp".into());
    }
}

fn ds(inst: &Inst, ops: &mut Vec<String>, mods: &mut Vec<String>) {
    let w = inst.w;
    for spec in &inst.info.operands {
        ops.push(match *spec {
            Spec::Reg { field, width, .. } => {
                let n = match field {
                    Field::Dst => bits(w[1], 24, 8),
                    Field::Src0 => bits(w[1], 0, 8),
                    Field::Src1 => bits(w[1], 8, 8),
                    _ => bits(w[1], 16, 8),
                };
                vgpr_name(n, width)
            }
            Spec::Fixed(t) => t.to_string(),
            _ => continue,
        });
    }
    let o0 = bits(w[0], 0, 8);
    let o1 = bits(w[0], 8, 8);
    if inst.info.mnemonic.contains("2addr") {
        if o0 != 0 {
            mods.push(format!("offset0:{o0}"));
        }
        if o1 != 0 {
            mods.push(format!("offset1:{o1}"));
        }
    } else {
        let off = o0 | o1 << 8;
        if off != 0 {
            mods.push(format!("offset:{off}"));
        }
    }
    if bits(w[0], 17, 1) != 0 {
        mods.push("gds".into());
    }
}

/// Fields of a FLAT/GLOBAL/SCRATCH instruction, both generations.
pub(crate) struct FlatFields {
    pub vdst: u32,
    pub vaddr: u32,
    pub data: u32,
    pub saddr: u32,
    pub sve: bool,
    pub offset: i64,
    /// Atomic returns the pre-op value (gfx11 GLC, gfx12 TH bit 0).
    pub returns: bool,
}

pub(crate) fn flat_fields(inst: &Inst) -> FlatFields {
    let w = inst.w;
    let atomic = inst.info.mnemonic.contains("atomic");
    match inst.arch {
        Arch::Gfx11 => FlatFields {
            vdst: bits(w[1], 24, 8),
            vaddr: bits(w[1], 0, 8),
            data: bits(w[1], 8, 8),
            saddr: bits(w[1], 16, 7),
            sve: bits(w[1], 23, 1) != 0,
            offset: if inst.class == Class::Flat {
                i64::from(bits(w[0], 0, 12))
            } else {
                sext(bits(w[0], 0, 13), 13)
            },
            returns: atomic && bits(w[0], 14, 1) != 0,
        },
        Arch::Gfx12 => FlatFields {
            vdst: bits(w[1], 0, 8),
            vaddr: bits(w[2], 0, 8),
            data: bits(w[1], 23, 8),
            saddr: bits(w[0], 0, 7),
            sve: bits(w[1], 17, 1) != 0,
            offset: sext(bits(w[2], 8, 24), 24),
            returns: atomic && bits(w[1], 20, 1) != 0,
        },
    }
}

fn flat(inst: &Inst, ops: &mut Vec<String>, mods: &mut Vec<String>) {
    let f = flat_fields(inst);
    let info = inst.info;
    let w = inst.w;
    if f.returns && info.width(Field::Dst).is_none() {
        let dw = info.width(Field::Src1).unwrap_or(1);
        let dw = if info.mnemonic.contains("cmpswap") { dw / 2 } else { dw };
        ops.push(vgpr_name(f.vdst, dw.max(1)));
    }
    for spec in &info.operands {
        match *spec {
            Spec::Reg { field: Field::Dst, width, .. } => ops.push(vgpr_name(f.vdst, width)),
            Spec::Reg { field: Field::Src0, width, .. } => ops.push(match inst.class {
                Class::Global if f.saddr != 124 => vgpr_name(f.vaddr, 1),
                Class::Scratch if !f.sve => "off".into(),
                _ => vgpr_name(f.vaddr, width),
            }),
            Spec::Reg { field: Field::Src1, width, .. } => ops.push(vgpr_name(f.data, width)),
            Spec::Reg { .. } => {}
            Spec::Fixed("off") => ops.push(match (inst.class, f.saddr) {
                (_, 124) => "off".into(),
                (Class::Global, s) => scalar_name(inst.arch, s, 2, None),
                (_, s) => scalar_name(inst.arch, s, 1, None),
            }),
            Spec::Fixed(t) => ops.push(t.to_string()),
            _ => {}
        }
    }
    if f.offset != 0 {
        mods.push(format!("offset:{}", f.offset));
    }
    match inst.arch {
        Arch::Gfx11 => {
            if bits(w[0], 14, 1) != 0 {
                mods.push("glc".into());
            }
            if bits(w[0], 15, 1) != 0 {
                mods.push("slc".into());
            }
            if bits(w[0], 13, 1) != 0 {
                mods.push("dlc".into());
            }
        }
        Arch::Gfx12 => {
            let th = bits(w[1], 20, 3);
            let scope = bits(w[1], 18, 2);
            if th != 0 {
                let name = if info.mnemonic.contains("atomic") {
                    match th {
                        1 => "TH_ATOMIC_RETURN",
                        2 => "TH_ATOMIC_NT",
                        3 => "TH_ATOMIC_NT_RETURN",
                        4 => "TH_ATOMIC_CASCADE_RT",
                        5 => "TH_ATOMIC_CASCADE_RT_RETURN",
                        6 => "TH_ATOMIC_CASCADE_NT",
                        _ => "TH_ATOMIC_CASCADE_NT_RETURN",
                    }
                } else if info.mnemonic.contains("store") {
                    [
                        "",
                        "TH_STORE_NT",
                        "TH_STORE_HT",
                        "TH_STORE_BYPASS",
                        "TH_STORE_NT_RT",
                        "TH_STORE_RT_NT",
                        "TH_STORE_NT_HT",
                        "TH_STORE_RT_WB",
                    ][th as usize]
                } else {
                    [
                        "",
                        "TH_LOAD_NT",
                        "TH_LOAD_HT",
                        "TH_LOAD_BYPASS",
                        "TH_LOAD_NT_RT",
                        "TH_LOAD_RT_NT",
                        "TH_LOAD_NT_HT",
                        "TH_LOAD_RT_NT",
                    ][th as usize]
                };
                mods.push(format!("th:{name}"));
            }
            if scope != 0 {
                mods.push(format!("scope:{}", scope_name(scope)));
            }
        }
    }
}

/// Writes a listing (address, text) of a decoded range into `out`.
pub fn listing(insts: &[(u64, Inst)], out: &mut String) {
    for (addr, inst) in insts {
        let _ = writeln!(out, "{addr:#010x}: {}", format(inst));
    }
}
