//! AMD RDNA3/RDNA4 chip knowledge for egpu: generated register, packet and firmware-interface
//! tables (from the Linux amdgpu headers), the chip database, the IP discovery parser and the
//! firmware parsers.

pub mod chips;
pub mod discovery;
pub mod firmware;
pub mod layout;
pub mod regs;
