//! AMD RDNA3 (gfx11) and RDNA4 (gfx12) machine code: a decoder, a disassembler printing LLVM's
//! syntax, and a wave32 interpreter whose memory and dispatch state a card model supplies.

pub mod decode;
pub mod disasm;
pub mod elf;
pub mod interp;
pub mod objdump;

pub use decode::{decode, decode_all, Arch, Class, DecodeError, Inst};
pub use disasm::format;
pub use interp::{hsa_user_sgprs, run, Dispatch, ExecError, Fault, FlatMemory, Memory, Stats};
