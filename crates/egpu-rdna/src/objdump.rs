//! `egpu disasm`: a code object's kernels as LLVM-syntax listings.

use crate::decode::decode;
use crate::disasm::try_format;
use crate::elf::{CodeObject, ElfError};
use std::io::Write;

/// Why a listing could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("writing the listing: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the disassembly of `kernel` (or of every kernel, or of the whole text section when
/// the object names none) in llvm-objdump's layout: text, then `// ADDRESS: DWORDS`.
pub fn write_listing(
    data: &[u8],
    kernel: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ListingError> {
    let co = CodeObject::parse(data)?;
    let ranges: Vec<(String, u64, u64)> = match kernel {
        Some(name) => {
            let k = co.kernel(name)?;
            vec![(k.name.clone(), k.entry, k.entry + co.kernel_code(k).len() as u64)]
        }
        None if co.kernels.is_empty() => {
            vec![(".text".into(), co.text_addr, co.text_addr + co.text.len() as u64)]
        }
        None => co
            .kernels
            .iter()
            .map(|k| (k.name.clone(), k.entry, k.entry + co.kernel_code(k).len() as u64))
            .collect(),
    };
    writeln!(out, "; {} code object, {} kernel(s)", co.arch.mcpu(), co.kernels.len())?;
    for (name, start, end) in ranges {
        writeln!(out, "\n{start:016x} <{name}>:")?;
        let mut addr = start;
        while addr < end {
            let off = (addr - co.text_addr) as usize;
            let end_off = (end - co.text_addr) as usize;
            let bytes = &co.text[off..end_off.min(co.text.len())];
            if bytes.is_empty() {
                break;
            }
            let (text, len) = match decode(co.arch, bytes, addr) {
                Ok(inst) => {
                    let t = try_format(&inst)
                        .unwrap_or_else(|e| format!("{}  ; {e}", crate::disasm::format(&inst)));
                    (t, inst.len as usize)
                }
                Err(e) => {
                    let n = bytes.len().min(4);
                    let mut w = [0u8; 4];
                    w[..n].copy_from_slice(&bytes[..n]);
                    (format!(".long 0x{:08x}  ; {e}", u32::from_le_bytes(w)), n)
                }
            };
            let words: Vec<String> = bytes[..len]
                .chunks(4)
                .map(|c| {
                    let mut w = [0u8; 4];
                    w[..c.len()].copy_from_slice(c);
                    format!("{:08X}", u32::from_le_bytes(w))
                })
                .collect();
            writeln!(out, "\t{text:<50} // {addr:012X}: {}", words.join(" "))?;
            addr += len as u64;
        }
    }
    Ok(())
}
