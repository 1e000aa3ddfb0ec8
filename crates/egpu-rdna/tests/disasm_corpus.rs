//! Our disassembly of every corpus kernel equals llvm-objdump-19's, instruction by instruction.

mod common;

use egpu_rdna::elf::CodeObject;
use std::process::Command;

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// (address, text) of each instruction llvm-objdump prints.
fn objdump(path: &std::path::Path) -> Vec<(u64, String)> {
    let out =
        Command::new("llvm-objdump-19").arg("-d").arg(path).output().expect("run llvm-objdump-19");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut v = Vec::new();
    for line in text.lines() {
        if !line.starts_with('\t') {
            continue;
        }
        let Some(pos) = line.rfind("// ") else { continue };
        let (inst, rest) = line.split_at(pos);
        let addr = rest[3..].split(':').next().and_then(|a| u64::from_str_radix(a.trim(), 16).ok());
        if let Some(addr) = addr {
            v.push((addr, normalise(inst)));
        }
    }
    v
}

#[test]
fn corpus_disassembly_matches_llvm_objdump() {
    if !common::have_tool("clang-19") || !common::have_tool("llvm-objdump-19") {
        return;
    }
    let mut total = 0;
    let mut bad = Vec::new();
    for arch in common::ARCHS {
        for k in common::KERNELS {
            let path = common::build(k, arch);
            let data = std::fs::read(&path).unwrap();
            let co = CodeObject::parse(&data).unwrap();
            let theirs = objdump(&path);
            for (a, t) in &theirs {
                total += 1;
                let off = (a - co.text_addr) as usize;
                let mine = match egpu_rdna::decode(co.arch, &co.text[off..], *a) {
                    Ok(inst) => match egpu_rdna::disasm::try_format(&inst) {
                        Ok(t) => normalise(&t),
                        Err(e) => format!("unprintable: {e}"),
                    },
                    Err(e) => format!("error: {e}"),
                };
                if &mine != t {
                    bad.push(format!("{k} {arch} {a:#x}: ours `{mine}` llvm `{t}`"));
                }
            }
            // Decoding the whole text sequentially lands on the same boundaries.
            let ours = egpu_rdna::decode_all(co.arch, &co.text, co.text_addr);
            if let Ok(ours) = ours {
                let a: Vec<u64> = ours.iter().map(|(a, _)| *a).collect();
                let b: Vec<u64> = theirs.iter().map(|(a, _)| *a).collect();
                assert_eq!(a, b, "{k} {arch}: instruction boundaries differ");
            }
        }
    }
    assert!(bad.is_empty(), "{} of {total} differ:\n{}", bad.len(), bad.join("\n"));
    assert!(total > 1000, "the corpus has {total} instructions");
}

#[test]
fn listing_of_a_kernel_and_bad_objects() {
    if !common::have_tool("clang-19") {
        return;
    }
    let path = common::build("reduce", "gfx1100");
    let data = std::fs::read(&path).unwrap();
    let mut out = Vec::new();
    egpu_rdna::objdump::write_listing(&data, Some("reduce_sum"), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("<reduce_sum>:"), "{text}");
    assert!(text.contains("s_barrier"), "{text}");
    assert!(text.contains("s_endpgm"), "{text}");
    let mut sink = Vec::new();
    let err = egpu_rdna::objdump::write_listing(&data, Some("nope"), &mut sink).unwrap_err();
    assert!(err.to_string().contains("reduce_sum"), "{err}");
    // Truncated and garbage objects are errors, not panics.
    for cut in [0, 16, 64, 1000, data.len() / 2] {
        let _ = egpu_rdna::objdump::write_listing(&data[..cut], None, &mut Vec::new());
    }
    assert!(egpu_rdna::objdump::write_listing(b"not an elf", None, &mut Vec::new()).is_err());
}

#[test]
fn interpreter_implements_every_corpus_instruction() {
    if !common::have_tool("clang-19") {
        return;
    }
    let mut missing = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for arch in common::ARCHS {
        for k in common::KERNELS {
            let data = std::fs::read(common::build(k, arch)).unwrap();
            let co = CodeObject::parse(&data).unwrap();
            for (_, inst) in egpu_rdna::decode_all(co.arch, &co.text, co.text_addr).unwrap() {
                seen.insert(inst.info.mnemonic);
                if !egpu_rdna::interp::implemented(inst.info.mnemonic) {
                    missing.insert(format!("{arch} {}", inst.info.mnemonic));
                }
            }
        }
    }
    eprintln!("{} distinct mnemonics in the corpus", seen.len());
    assert!(missing.is_empty(), "not implemented: {missing:?}");
}

#[test]
fn dpp_is_refused_cleanly() {
    // v_mov_b32_dpp v0, v1 quad_perm:[0,1,2,3] row_mask:0xf bank_mask:0xf (src0 = 250 + a DPP dword).
    let bytes = [0xFA, 0x02, 0x00, 0x7E, 0x01, 0xE4, 0x00, 0xFF];
    for arch in [egpu_rdna::Arch::Gfx11, egpu_rdna::Arch::Gfx12] {
        assert!(matches!(
            egpu_rdna::decode(arch, &bytes, 0x40),
            Err(egpu_rdna::DecodeError::UnsupportedEncoding { addr: 0x40, .. })
        ));
    }
}
