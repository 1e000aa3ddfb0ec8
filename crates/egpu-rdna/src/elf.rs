//! HSA code objects (AMDGPU ELF): the text section, kernel symbols and kernel descriptors.

use crate::decode::Arch;
use object::{Object, ObjectSection, ObjectSymbol};

/// Why a code object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an AMDGPU ELF code object: {0}")]
    Parse(#[from] object::Error),
    #[error("ELF machine {0:#x} is not AMDGPU (0xe0)")]
    NotAmdgpu(u16),
    #[error("unsupported GPU (ELF e_flags mach {0:#x}); supported: gfx11 (0x41-0x4a), gfx12 (0x4c, 0x4e)")]
    UnsupportedGpu(u32),
    #[error("code object has no .text section")]
    NoText,
    #[error("kernel {0:?} not found; kernels in this object: {1}")]
    NoKernel(String, String),
    #[error("kernel descriptor {0}.kd is out of the object's bounds")]
    BadDescriptor(String),
}

/// The 64-byte kernel descriptor (`NAME.kd`), fields as rdna-isa.md §3 lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelDescriptor {
    pub group_segment_size: u32,
    pub private_segment_size: u32,
    pub kernarg_size: u32,
    pub entry_offset: i64,
    pub rsrc3: u32,
    pub rsrc1: u32,
    pub rsrc2: u32,
    pub properties: u16,
}

impl KernelDescriptor {
    /// Parses the 64 descriptor bytes.
    pub fn parse(b: &[u8]) -> Option<KernelDescriptor> {
        let u32_at =
            |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        let e = b.get(16..24)?;
        Some(KernelDescriptor {
            group_segment_size: u32_at(0)?,
            private_segment_size: u32_at(4)?,
            kernarg_size: u32_at(8)?,
            entry_offset: i64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]),
            rsrc3: u32_at(44)?,
            rsrc1: u32_at(48)?,
            rsrc2: u32_at(52)?,
            properties: u16::from_le_bytes([*b.get(56)?, *b.get(57)?]),
        })
    }
}

/// One kernel of a code object.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    /// Address (ELF virtual address) of the first instruction.
    pub entry: u64,
    /// Size of the code in bytes (from the symbol).
    pub size: u64,
    pub descriptor: KernelDescriptor,
}

/// A parsed code object: its text section and kernels.
#[derive(Clone, Debug)]
pub struct CodeObject {
    pub arch: Arch,
    pub text_addr: u64,
    pub text: Vec<u8>,
    pub kernels: Vec<Kernel>,
}

impl CodeObject {
    /// Parses a code object; every offset is bounds-checked.
    pub fn parse(data: &[u8]) -> Result<CodeObject, ElfError> {
        let file = object::File::parse(data)?;
        let (machine, flags) = match file.flags() {
            object::FileFlags::Elf { e_flags, .. } => (elf_machine(data), e_flags),
            _ => (0, 0),
        };
        if machine != 0xE0 {
            return Err(ElfError::NotAmdgpu(machine));
        }
        let mach = flags & 0xFF;
        let arch = Arch::from_elf_mach(mach).ok_or(ElfError::UnsupportedGpu(mach))?;
        let text = file.section_by_name(".text").ok_or(ElfError::NoText)?;
        let text_addr = text.address();
        let text_bytes = text.data()?.to_vec();
        let mut kernels = Vec::new();
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            let Some(kname) = name.strip_suffix(".kd") else { continue };
            let kd_bytes = symbol_bytes(&file, &sym, 64)
                .ok_or_else(|| ElfError::BadDescriptor(kname.into()))?;
            let descriptor = KernelDescriptor::parse(&kd_bytes)
                .ok_or_else(|| ElfError::BadDescriptor(kname.into()))?;
            let entry = (sym.address() as i64).wrapping_add(descriptor.entry_offset) as u64;
            let size =
                file.symbols().find(|s| s.name() == Ok(kname)).map(|s| s.size()).unwrap_or(0);
            kernels.push(Kernel { name: kname.to_string(), entry, size, descriptor });
        }
        kernels.sort_by_key(|k| k.entry);
        Ok(CodeObject { arch, text_addr, text: text_bytes, kernels })
    }

    /// The kernel of that name, or an error listing the names.
    pub fn kernel(&self, name: &str) -> Result<&Kernel, ElfError> {
        self.kernels.iter().find(|k| k.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.kernels.iter().map(|k| k.name.as_str()).collect();
            ElfError::NoKernel(name.into(), names.join(", "))
        })
    }

    /// The code bytes of a kernel (from its entry to the symbol's end, or to the end of .text).
    pub fn kernel_code(&self, k: &Kernel) -> &[u8] {
        let start = k.entry.checked_sub(self.text_addr).map(|o| o as usize);
        let Some(start) = start.filter(|s| *s <= self.text.len()) else { return &[] };
        let end = if k.size > 0 { start.saturating_add(k.size as usize) } else { self.text.len() };
        &self.text[start..end.min(self.text.len())]
    }
}

fn elf_machine(data: &[u8]) -> u16 {
    data.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(0)
}

fn symbol_bytes(file: &object::File, sym: &object::Symbol, len: u64) -> Option<Vec<u8>> {
    let idx = sym.section_index()?;
    let sec = file.section_by_index(idx).ok()?;
    let data = sec.data().ok()?;
    let off = sym.address().checked_sub(sec.address())?;
    let end = off.checked_add(len)?;
    data.get(off as usize..end as usize).map(|s| s.to_vec())
}
