//! CUBIN (NVIDIA ELF) parser: kernels, `.nv.info` attributes, constant bank 0, and a loadable
//! image with relocations applied.
//!
//! Facts: reference nv-driver.md §2.5 (section names, EIATTR numbers, relocation types), checked
//! against cubins NVRTC 12.9 makes for sm_80/86/89/90 (see tests/cubin_nvrtc.rs). Cubins are
//! untrusted bytes: every read is bounds-checked and failures are typed [`CubinError`]s.

use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, SectionIndex, SymbolIndex};
use std::collections::BTreeMap;
use thiserror::Error;

/// `EM_CUDA`.
pub const EM_CUDA: u16 = 190;
/// `SHT_CUDA_INFO` (`.nv.info*`).
pub const SHT_CUDA_INFO: u32 = 0x7000_0000;

/// EIATTR attribute numbers used here (reference §2.5).
pub mod eiattr {
    /// `EIATTR_PARAM_CBANK` {u32 sym, u16 offset, u16 size}.
    pub const PARAM_CBANK: u8 = 0x0A;
    /// `EIATTR_MAX_THREADS` {u32 x, y, z} from `__launch_bounds__`.
    pub const MAX_THREADS: u8 = 0x05;
    /// `EIATTR_REQNTID` {u32 x, y, z}.
    pub const REQNTID: u8 = 0x10;
    /// `EIATTR_FRAME_SIZE` {u32 sym, u32 bytes}.
    pub const FRAME_SIZE: u8 = 0x11;
    /// `EIATTR_MIN_STACK_SIZE` {u32 sym, u32 bytes}.
    pub const MIN_STACK_SIZE: u8 = 0x12;
    /// `EIATTR_KPARAM_INFO` {u32 index, u16 ordinal, u16 offset, u32 flags(size in 31:18)}.
    pub const KPARAM_INFO: u8 = 0x17;
    /// `EIATTR_CBANK_PARAM_SIZE` (HVAL).
    pub const CBANK_PARAM_SIZE: u8 = 0x19;
    /// `EIATTR_MAXREG_COUNT` (HVAL).
    pub const MAXREG_COUNT: u8 = 0x1B;
    /// `EIATTR_MAX_STACK_SIZE` {u32 sym, u32 bytes}.
    pub const MAX_STACK_SIZE: u8 = 0x23;
    /// `EIATTR_REGCOUNT` {u32 sym, u32 regs}.
    pub const REGCOUNT: u8 = 0x2F;
    /// `EIATTR_NUM_BARRIERS` (HVAL): named barriers used. NVRTC 13 writes this; NVRTC 12 puts
    /// the count in the `.text.K` section flags instead.
    pub const NUM_BARRIERS: u8 = 0x4C;
}

/// Why a cubin was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CubinError {
    /// Not an ELF64 little-endian file, or a malformed one.
    #[error("not a valid ELF64 cubin: {0}")]
    Elf(String),
    /// ELF, but not for the CUDA machine.
    #[error("ELF machine is {0}, expected EM_CUDA (190)")]
    NotCuda(u16),
    /// A `.nv.info` record runs past its section.
    #[error("{section}: record at offset {offset} runs past the section end ({size} bytes)")]
    TruncatedInfo {
        /// Section name.
        section: String,
        /// Offset of the record.
        offset: usize,
        /// Section size.
        size: usize,
    },
    /// A `.nv.info` attribute payload is shorter than its attribute needs.
    #[error("{section}: attribute 0x{attr:02x} payload is {got} bytes, expected at least {want}")]
    ShortAttribute {
        /// Section name.
        section: String,
        /// EIATTR number.
        attr: u8,
        /// Payload length.
        got: usize,
        /// Bytes needed.
        want: usize,
    },
    /// Parameter info contradicts itself (overlap, beyond the parameter block).
    #[error("kernel {kernel}: parameter {ordinal} at {offset}+{size} is outside the {param_bytes}-byte parameter block")]
    BadParam {
        /// Kernel name.
        kernel: String,
        /// Parameter ordinal.
        ordinal: u16,
        /// Offset.
        offset: u32,
        /// Size.
        size: u32,
        /// Parameter block size.
        param_bytes: u32,
    },
    /// A `.nv.info` attribute names a symbol the symbol table does not have.
    #[error("{section}: attribute 0x{attr:02x} names symbol {index}, which does not exist")]
    UnknownSymbol {
        /// Section name.
        section: String,
        /// EIATTR number.
        attr: u8,
        /// Symbol index.
        index: u32,
    },
    /// A kernel without `EIATTR_REGCOUNT`: its QMD cannot be built.
    #[error("kernel {kernel}: the cubin gives no register count (EIATTR_REGCOUNT)")]
    MissingRegisterCount {
        /// Kernel name.
        kernel: String,
    },
    /// A kernel's code or constant section is not part of the loadable image.
    #[error("kernel {kernel}: section {section} is not an allocated PROGBITS section")]
    NotLoaded {
        /// Kernel name.
        kernel: String,
        /// Section name.
        section: String,
    },
    /// A constant bank the QMD has no slot for.
    #[error("section {section} uses constant bank {bank}; the QMD binds banks 0-7")]
    ConstantBank {
        /// Section name.
        section: String,
        /// Bank number.
        bank: u32,
    },
    /// A relocation type the loader does not know.
    #[error("relocation type {r_type} in section {section} is not supported (only R_CUDA_64 = 2, 0x38, 0x39)")]
    UnsupportedRelocation {
        /// Section being relocated.
        section: String,
        /// ELF relocation type.
        r_type: u32,
    },
    /// A relocation points outside its section or at a symbol that is not loaded.
    #[error("relocation at offset 0x{offset:x} in {section} is out of range or names an unloaded symbol")]
    BadRelocation {
        /// Section being relocated.
        section: String,
        /// Offset within the section.
        offset: u64,
    },
}

fn elf_err(e: object::Error) -> CubinError {
    CubinError::Elf(e.to_string())
}

/// One kernel parameter, from `EIATTR_KPARAM_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelParam {
    /// Position in the kernel's signature.
    pub ordinal: u16,
    /// Byte offset from the start of the parameter block.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// A constant bank other than 0 a kernel reads (`.nv.constantN` shared by all kernels, or
/// `.nv.constantN.K`): `__constant__` data is bank 3, global-address tables bank 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstantBank {
    /// Bank number (1-7).
    pub bank: u8,
    /// Offset of the section in the loadable image.
    pub offset: u64,
    /// Size in bytes.
    pub bytes: u32,
}

/// Most constant-bank slots a QMD has.
pub const CONSTANT_BANKS: u32 = 8;

/// One kernel (`.text.K`) and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CubinKernel {
    /// Symbol name (mangled unless `extern "C"`).
    pub name: String,
    /// Offset of the kernel's first instruction (`.text.K`) in the loadable image.
    pub code_offset: u64,
    /// Code size in bytes.
    pub code_bytes: u64,
    /// Registers per thread (`EIATTR_REGCOUNT`).
    pub registers: u32,
    /// Parameters sorted by ordinal.
    pub params: Vec<KernelParam>,
    /// Offset of the parameters in constant bank 0 (`EIATTR_PARAM_CBANK`; 0x160 sm_8x, 0x210 sm_90).
    pub param_base: u32,
    /// Size of the parameter block in bytes.
    pub param_bytes: u32,
    /// Size of `.nv.constant0.K` (0 if absent).
    pub constant0_bytes: u32,
    /// Offset of `.nv.constant0.K` (the cbuf0 template) in the loadable image, if present.
    pub constant0_offset: Option<u64>,
    /// Size of `.nv.shared.K` (static shared memory, as the section states it).
    pub shared_bytes: u32,
    /// Per-thread local memory (stack/frame) in bytes.
    pub local_bytes: u32,
    /// `__launch_bounds__` / `reqntid` limit, if any.
    pub max_threads: Option<[u32; 3]>,
    /// Named barriers the kernel uses (`.text.K` section flags bits 26:20, or
    /// `EIATTR_NUM_BARRIERS`).
    pub barriers: u32,
    /// Constant banks other than 0 it reads, bound from the image at launch.
    pub constant_banks: Vec<ConstantBank>,
}

/// A parsed cubin: its kernels and the image to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cubin {
    /// SM version from `e_flags` (80, 86, 89, 90, …).
    pub sm: u32,
    /// The kernels, in section order.
    pub kernels: Vec<CubinKernel>,
    /// The loadable image, relocated at upload time by [`Image::at`].
    pub image: Image,
}

/// One `.nv.info` record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InfoRecord<'a> {
    attr: u8,
    /// Inline value for HVAL/BVAL records.
    value: u16,
    /// Payload for SVAL records.
    payload: &'a [u8],
}

fn parse_info<'a>(section: &str, data: &'a [u8]) -> Result<Vec<InfoRecord<'a>>, CubinError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data.get(at..at + 4).ok_or(CubinError::TruncatedInfo {
            section: section.to_string(),
            offset: at,
            size: data.len(),
        })?;
        let (format, attr, value) =
            (header[0], header[1], u16::from_le_bytes([header[2], header[3]]));
        at += 4;
        let payload: &[u8] = if format == 4 {
            let end = at + value as usize;
            let p = data.get(at..end).ok_or(CubinError::TruncatedInfo {
                section: section.to_string(),
                offset: at - 4,
                size: data.len(),
            })?;
            at = end;
            p
        } else {
            &[]
        };
        records.push(InfoRecord { attr, value, payload });
    }
    Ok(records)
}

fn u32_at(section: &str, attr: u8, p: &[u8], off: usize) -> Result<u32, CubinError> {
    p.get(off..off + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or(
        CubinError::ShortAttribute {
            section: section.to_string(),
            attr,
            got: p.len(),
            want: off + 4,
        },
    )
}

fn u16_at(section: &str, attr: u8, p: &[u8], off: usize) -> Result<u16, CubinError> {
    p.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or(
        CubinError::ShortAttribute {
            section: section.to_string(),
            attr,
            got: p.len(),
            want: off + 2,
        },
    )
}

/// How a relocation writes the target address into the image (reference §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocationKind {
    /// `R_CUDA_64` (2): the absolute 64-bit address.
    Absolute64,
    /// 0x38: the low 32 bits, into the upper word of a 64-bit instruction slot.
    Low32InUpperWord,
    /// 0x39: the high 32 bits, into the upper word of a 64-bit instruction slot.
    High32InUpperWord,
}

impl RelocationKind {
    fn from_elf(r_type: u32) -> Option<RelocationKind> {
        match r_type {
            2 => Some(RelocationKind::Absolute64),
            0x38 => Some(RelocationKind::Low32InUpperWord),
            0x39 => Some(RelocationKind::High32InUpperWord),
            _ => None,
        }
    }
}

/// One relocation, resolved against the image layout: at `at`, write `base + target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocation {
    /// Offset in the image of the 8-byte slot patched (checked to lie inside it).
    pub at: usize,
    /// How the address is written.
    pub kind: RelocationKind,
    /// Image offset the address points at (symbol + addend).
    pub target: u64,
}

/// A cubin laid out for upload: every allocated PROGBITS section at a 128-byte aligned offset,
/// ≥4 KiB of zero slack after the last code (instruction prefetch reads ahead, reference
/// §2.5), and the relocations to apply once the GPU address is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Unrelocated bytes.
    pub bytes: Vec<u8>,
    /// Offset in `bytes` of each loaded section, by ELF section index.
    pub section_offsets: BTreeMap<usize, u64>,
    /// Relocations, all inside `bytes`.
    pub relocations: Vec<Relocation>,
}

/// Prefetch slack after the image.
pub const IMAGE_SLACK: usize = 0x1000;

/// Largest image accepted. Real cubins are a few MiB; section headers are untrusted and may
/// claim huge zero-filled sections or point many sections at the same bytes, so the total is
/// bounded before anything is allocated.
pub const MAX_IMAGE_BYTES: usize = 512 << 20;

fn check_image_size(offset: usize, len: usize) -> Result<(), CubinError> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_IMAGE_BYTES => Ok(()),
        _ => Err(CubinError::Elf(format!("loadable image over {MAX_IMAGE_BYTES} bytes"))),
    }
}

/// Stack per thread assumed for a kernel whose size the compiler cannot bound (recursion:
/// `EIATTR_MIN_STACK_SIZE` 0xFFFFFFFF), CUDA's default `cudaLimitStackSize`.
pub const UNBOUNDED_STACK_BYTES: u32 = 1024;

fn is_global_data(name: &str) -> bool {
    name == ".nv.global" || name.starts_with(".nv.global.")
}

/// `N` of `.nv.constantN` / `.nv.constantN.K`, and the kernel name if per-kernel.
fn constant_bank_of(name: &str) -> Option<(u32, Option<&str>)> {
    let rest = name.strip_prefix(".nv.constant")?;
    let (digits, kernel) = match rest.split_once('.') {
        Some((digits, kernel)) => (digits, Some(kernel)),
        None => (rest, None),
    };
    Some((digits.parse().ok()?, kernel))
}

impl Image {
    /// The image relocated for the GPU address `base`.
    pub fn at(&self, base: u64) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        for r in &self.relocations {
            let value = base.wrapping_add(r.target);
            // `at + 8 <= len` was checked when the relocation was parsed.
            let slot = &mut bytes[r.at..r.at + 8];
            match r.kind {
                RelocationKind::Absolute64 => slot.copy_from_slice(&value.to_le_bytes()),
                RelocationKind::Low32InUpperWord => {
                    slot[4..].copy_from_slice(&(value as u32).to_le_bytes());
                }
                RelocationKind::High32InUpperWord => {
                    slot[4..].copy_from_slice(&((value >> 32) as u32).to_le_bytes());
                }
            }
        }
        bytes
    }
}

type Elf<'a> = ElfFile64<'a, object::Endianness>;

/// `ELFOSABI_CUDA` of the newer cubin ABI.
const ELFOSABI_CUDA_V2: u8 = 0x41;

/// The SM version in `e_flags`: bits 7:0 in the classic cubin ABI (OSABI 0x33, ABI version 7,
/// what NVRTC 12 writes for sm_8x/sm_90), bits 15:8 in the newer one (OSABI 0x41, ABI version
/// 8: NVRTC 13 for every SM, NVRTC 12 for Blackwell; e.g. 0x0600_5A04 is sm_90).
pub fn sm_from_flags(os_abi: u8, abi_version: u8, e_flags: u32) -> u32 {
    if os_abi == ELFOSABI_CUDA_V2 || abi_version >= 8 {
        (e_flags >> 8) & 0xFF
    } else {
        e_flags & 0xFF
    }
}

/// Lay out the allocated PROGBITS sections and resolve relocations (not yet applied).
fn layout_image(elf: &Elf<'_>) -> Result<Image, CubinError> {
    let endian = elf.endian();
    let mut bytes = Vec::new();
    let mut section_offsets = BTreeMap::new();
    for section in elf.sections() {
        let sh = section.elf_section_header();
        let alloc = sh.sh_flags(endian) & u64::from(object::elf::SHF_ALLOC) != 0;
        let offset = bytes.len().next_multiple_of(128);
        match sh.sh_type(endian) {
            object::elf::SHT_PROGBITS if alloc => {
                let data = section.data().map_err(elf_err)?;
                check_image_size(offset, data.len())?;
                bytes.resize(offset, 0);
                bytes.extend_from_slice(data);
            }
            // Zero-initialised `__device__` variables: room in the image, all zeros. (Other
            // NOBITS sections, `.nv.shared.K` and the like, describe on-chip memory.)
            object::elf::SHT_NOBITS if alloc && section.name().is_ok_and(is_global_data) => {
                let size = usize::try_from(section.size()).unwrap_or(usize::MAX);
                check_image_size(offset, size)?;
                bytes.resize(offset + size, 0);
            }
            _ => continue,
        }
        section_offsets.insert(section.index().0, offset as u64);
    }
    bytes.resize(bytes.len() + IMAGE_SLACK, 0);

    let mut relocations = Vec::new();
    for section in elf.sections() {
        let Some(&section_offset) = section_offsets.get(&section.index().0) else { continue };
        let section_name = section.name().unwrap_or("?");
        for (offset, reloc) in section.relocations() {
            let bad = || CubinError::BadRelocation { section: section_name.to_string(), offset };
            let RelocationFlags::Elf { r_type } = reloc.flags() else { return Err(bad()) };
            let kind = RelocationKind::from_elf(r_type).ok_or_else(|| {
                CubinError::UnsupportedRelocation { section: section_name.to_string(), r_type }
            })?;
            let object::RelocationTarget::Symbol(sym_index) = reloc.target() else {
                return Err(bad());
            };
            let symbol = elf.symbol_by_index(sym_index).map_err(|_| bad())?;
            let sym_section = symbol.section_index().ok_or_else(bad)?;
            let sym_offset = section_offsets.get(&sym_section.0).ok_or_else(bad)?;
            let target =
                sym_offset.wrapping_add(symbol.address()).wrapping_add(reloc.addend() as u64);
            let at = section_offset
                .checked_add(offset)
                .and_then(|at| usize::try_from(at).ok())
                .filter(|&at| at.checked_add(8).is_some_and(|end| end <= bytes.len()))
                .ok_or_else(bad)?;
            relocations.push(Relocation { at, kind, target });
        }
    }
    Ok(Image { bytes, section_offsets, relocations })
}

impl Cubin {
    /// Parse a cubin: kernels, their metadata, and the loadable image.
    pub fn parse(data: &[u8]) -> Result<Cubin, CubinError> {
        let elf = Elf::parse(data).map_err(elf_err)?;
        let endian = elf.endian();
        let header = elf.elf_header();
        let machine = header.e_machine(endian);
        if machine != EM_CUDA {
            return Err(CubinError::NotCuda(machine));
        }
        let ident = header.e_ident();
        let sm = sm_from_flags(ident.os_abi, ident.abi_version, header.e_flags(endian));
        let image = layout_image(&elf)?;

        let symbol_name = |section: &str, attr: u8, index: u32| -> Result<String, CubinError> {
            elf.symbol_by_index(SymbolIndex(index as usize))
                .ok()
                .and_then(|s| s.name().ok().map(str::to_string))
                .ok_or(CubinError::UnknownSymbol { section: section.to_string(), attr, index })
        };

        // Global .nv.info: per-kernel attributes keyed by symbol name.
        let mut registers: BTreeMap<String, u32> = BTreeMap::new();
        let mut local: BTreeMap<String, u32> = BTreeMap::new();
        let mut sections_by_name: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for section in elf.sections() {
            let name = section.name().map_err(elf_err)?.to_string();
            sections_by_name.insert(name.clone(), (section.index().0, section.size()));
            if name == ".nv.info" {
                let data = section.data().map_err(elf_err)?;
                for record in parse_info(&name, data)? {
                    match record.attr {
                        eiattr::REGCOUNT => {
                            let sym = u32_at(&name, record.attr, record.payload, 0)?;
                            let regs = u32_at(&name, record.attr, record.payload, 4)?;
                            registers.insert(symbol_name(&name, record.attr, sym)?, regs);
                        }
                        eiattr::MIN_STACK_SIZE | eiattr::FRAME_SIZE | eiattr::MAX_STACK_SIZE => {
                            let sym = u32_at(&name, record.attr, record.payload, 0)?;
                            let bytes = match u32_at(&name, record.attr, record.payload, 4)? {
                                u32::MAX => UNBOUNDED_STACK_BYTES,
                                bytes => bytes,
                            };
                            let entry =
                                local.entry(symbol_name(&name, record.attr, sym)?).or_insert(0);
                            *entry = (*entry).max(bytes);
                        }
                        _ => {}
                    }
                }
            }
        }

        let mut kernels = Vec::new();
        for section in elf.sections() {
            let name = section.name().map_err(elf_err)?;
            let Some(kernel) = name.strip_prefix(".text.") else { continue };
            let not_loaded = |section: &str| CubinError::NotLoaded {
                kernel: kernel.to_string(),
                section: section.to_string(),
            };
            let code_offset =
                *image.section_offsets.get(&section.index().0).ok_or_else(|| not_loaded(name))?;
            let registers = *registers
                .get(kernel)
                .ok_or_else(|| CubinError::MissingRegisterCount { kernel: kernel.to_string() })?;
            let mut k = CubinKernel {
                name: kernel.to_string(),
                code_offset,
                code_bytes: section.size(),
                registers,
                params: Vec::new(),
                param_base: 0,
                param_bytes: 0,
                constant0_bytes: 0,
                constant0_offset: None,
                shared_bytes: 0,
                local_bytes: local.get(kernel).copied().unwrap_or(0),
                max_threads: None,
                barriers: ((section.elf_section_header().sh_flags(endian) >> 20) & 0x7F) as u32,
                constant_banks: Vec::new(),
            };
            for (bank_name, &(index, size)) in &sections_by_name {
                let Some((bank, owner)) = constant_bank_of(bank_name) else { continue };
                if bank == 0 || owner.is_some_and(|owner| owner != kernel) {
                    continue;
                }
                if bank >= CONSTANT_BANKS {
                    return Err(CubinError::ConstantBank { section: bank_name.clone(), bank });
                }
                let offset =
                    *image.section_offsets.get(&index).ok_or_else(|| not_loaded(bank_name))?;
                k.constant_banks.push(ConstantBank {
                    bank: bank as u8,
                    offset,
                    bytes: u32::try_from(size)
                        .map_err(|_| CubinError::Elf("constant bank too large".into()))?,
                });
            }
            let constant0_name = format!(".nv.constant0.{kernel}");
            if let Some(&(index, size)) = sections_by_name.get(&constant0_name) {
                let offset = *image
                    .section_offsets
                    .get(&index)
                    .ok_or_else(|| not_loaded(&constant0_name))?;
                k.constant0_offset = Some(offset);
                k.constant0_bytes = u32::try_from(size)
                    .map_err(|_| CubinError::Elf("constant bank too large".into()))?;
            }
            if let Some(&(_, size)) = sections_by_name.get(&format!(".nv.shared.{kernel}")) {
                k.shared_bytes = u32::try_from(size)
                    .map_err(|_| CubinError::Elf("shared section too large".into()))?;
            }
            let info_name = format!(".nv.info.{kernel}");
            if let Some(&(index, _)) = sections_by_name.get(&info_name) {
                let info = elf.section_by_index(SectionIndex(index)).map_err(elf_err)?;
                let data = info.data().map_err(elf_err)?;
                for record in parse_info(&info_name, data)? {
                    let p = record.payload;
                    match record.attr {
                        eiattr::PARAM_CBANK => {
                            k.param_base = u32::from(u16_at(&info_name, record.attr, p, 4)?);
                            k.param_bytes = u32::from(u16_at(&info_name, record.attr, p, 6)?);
                        }
                        eiattr::CBANK_PARAM_SIZE if k.param_bytes == 0 => {
                            k.param_bytes = u32::from(record.value);
                        }
                        eiattr::KPARAM_INFO => {
                            let ordinal = u16_at(&info_name, record.attr, p, 4)?;
                            let offset = u32::from(u16_at(&info_name, record.attr, p, 6)?);
                            let flags = u32_at(&info_name, record.attr, p, 8)?;
                            k.params.push(KernelParam {
                                ordinal,
                                offset,
                                size: (flags >> 18) & 0x3FFF,
                            });
                        }
                        eiattr::NUM_BARRIERS => {
                            k.barriers = k.barriers.max(u32::from(record.value));
                        }
                        eiattr::MAX_THREADS | eiattr::REQNTID => {
                            let dims = [
                                u32_at(&info_name, record.attr, p, 0)?,
                                u32_at(&info_name, record.attr, p, 4)?,
                                u32_at(&info_name, record.attr, p, 8)?,
                            ];
                            k.max_threads = Some(dims);
                        }
                        _ => {}
                    }
                }
            }
            k.params.sort_by_key(|p| p.ordinal);
            for p in &k.params {
                if p.offset.checked_add(p.size).is_none_or(|end| end > k.param_bytes) {
                    return Err(CubinError::BadParam {
                        kernel: k.name.clone(),
                        ordinal: p.ordinal,
                        offset: p.offset,
                        size: p.size,
                        param_bytes: k.param_bytes,
                    });
                }
            }
            kernels.push(k);
        }
        Ok(Cubin { sm, kernels, image })
    }

    /// The kernel named `name`.
    pub fn kernel(&self, name: &str) -> Option<&CubinKernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// A kernel's cbuf0 template (`.nv.constant0.K` as loaded), empty if it has none.
    pub fn constant0_template(&self, kernel: &CubinKernel) -> &[u8] {
        let Some(offset) = kernel.constant0_offset else { return &[] };
        let start = offset as usize;
        // The section was copied whole into the image at `offset`, so the range is inside.
        &self.image.bytes[start..start + kernel.constant0_bytes as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_records_parse_and_bounds_check() {
        // HVAL CBANK_PARAM_SIZE = 0x20, then SVAL PARAM_CBANK {sym 3, off 0x210, size 0x20}.
        let mut data = vec![3, eiattr::CBANK_PARAM_SIZE, 0x20, 0];
        data.extend([4, eiattr::PARAM_CBANK, 8, 0, 3, 0, 0, 0, 0x10, 0x02, 0x20, 0]);
        let records = parse_info(".nv.info.k", &data).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].attr, records[0].value), (eiattr::CBANK_PARAM_SIZE, 0x20));
        assert_eq!(u16_at("s", 0, records[1].payload, 4).unwrap(), 0x210);
        // Payload claims 9 bytes, only 8 present.
        let mut short = data.clone();
        short[6] = 9;
        assert!(matches!(
            parse_info(".nv.info.k", &short),
            Err(CubinError::TruncatedInfo { offset: 4, .. })
        ));
        // A dangling partial header.
        assert!(matches!(
            parse_info("s", &[1, 2, 3]),
            Err(CubinError::TruncatedInfo { offset: 0, .. })
        ));
        assert!(matches!(
            u32_at("s", 7, &[1, 2], 0),
            Err(CubinError::ShortAttribute { attr: 7, want: 4, .. })
        ));
    }

    #[test]
    fn sm_is_read_by_abi() {
        // NVRTC 12.9 sm_90 (OSABI 0x33, ABI 7) and NVRTC 13 sm_90 / NVRTC 12.9 sm_100 and
        // sm_120 (OSABI 0x41, ABI 8), e_flags as those compilers write them.
        assert_eq!(sm_from_flags(0x33, 7, 0x005A_055A), 90);
        assert_eq!(sm_from_flags(0x41, 8, 0x0600_5A04), 90);
        assert_eq!(sm_from_flags(0x41, 8, 0x0600_6402), 100);
        assert_eq!(sm_from_flags(0x41, 8, 0x0600_7802), 120);
    }

    #[test]
    fn rejects_non_elf_and_non_cuda() {
        assert!(matches!(Cubin::parse(b"not an elf"), Err(CubinError::Elf(_))));
        assert!(matches!(Cubin::parse(&[]), Err(CubinError::Elf(_))));
        // A minimal ELF64 header for x86-64 (machine 62) with no sections.
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // little endian
        h[6] = 1; // EV_CURRENT
        h[16] = 1; // ET_REL
        h[18] = 62;
        h[20] = 1;
        h[52] = 64; // e_ehsize
        assert_eq!(Cubin::parse(&h), Err(CubinError::NotCuda(62)));
        h[18] = 190;
        let empty = Cubin::parse(&h).unwrap();
        assert_eq!((empty.sm, empty.kernels.len()), (0, 0));
        assert_eq!(empty.image.bytes.len(), IMAGE_SLACK);
    }
}
