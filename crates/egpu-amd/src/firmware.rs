//! Firmware file parsers (reference §3): each file is cut into the payloads the PSP loads,
//! with every size and offset checked against the header and the file length. Layouts come
//! from the generated `regs::ucode` tables; PSP firmware types from `regs::psp`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::chips::{Chip, Family, CHIPS};
use crate::layout::{LeInt, Scalar};
use crate::regs::psp::{psp_bootloader_cmd as Bl, psp_gfx_fw_type as Fw};
use crate::regs::ucode as u;

/// Where Linux keeps the amdgpu firmware.
pub const DEFAULT_FIRMWARE_DIR: &str = "/lib/firmware/amdgpu";
/// How to install the firmware these parsers are tested against.
pub const INSTALL_HINT: &str =
    "install Debian's firmware-amd-graphics 20250410 from bookworm-backports \
     (non-free-firmware): sudo sh crates/egpu-xtask/setup-sources.sh";

/// Why a firmware file was rejected. Every variant names the file and the header field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirmwareError {
    /// The file could not be read.
    #[error("firmware {file}: cannot read: {source}; {INSTALL_HINT}")]
    Io {
        /// The firmware file, as given (path or name).
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file ends before a header field.
    #[error("firmware {file}: truncated: field {field} at byte {offset:#x} needs {need} bytes, file has {len}")]
    Truncated {
        /// The firmware file, as given (path or name).
        file: String,
        /// The header field, as named in `regs::ucode`.
        field: &'static str,
        /// Byte offset of the field in the file.
        offset: usize,
        /// Bytes the field needs from `offset`.
        need: usize,
        /// The file's length in bytes.
        len: usize,
    },
    /// A header field has a value the format does not allow here.
    #[error("firmware {file}: field {field} is {found}, expected {expected}")]
    Mismatch {
        /// The firmware file, as given (path or name).
        file: String,
        /// The header field, as named in `regs::ucode`.
        field: &'static str,
        /// The value read, formatted.
        found: String,
        /// What the format allows here, in words.
        expected: String,
    },
    /// A payload described by the header lies outside the file.
    #[error("firmware {file}: {field} describes bytes {start:#x}..{end:#x}, beyond the file length {len:#x}")]
    OutOfBounds {
        /// The firmware file, as given (path or name).
        file: String,
        /// The header field, as named in `regs::ucode`.
        field: &'static str,
        /// First byte of the payload, as the header gives it.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The file's length in bytes.
        len: usize,
    },
}

/// What the driver does with a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Sent to the PSP bootloader with this command (C2PMSG_35) before sOS runs.
    Bootloader(Bl),
    /// The sOS itself (`PSP_BL__LOAD_SOSDRV`), always last of the bootloader stages.
    Sos,
    /// Sent with `GFX_CMD_ID_LOAD_TOC`.
    Toc,
    /// Sent with `GFX_CMD_ID_LOAD_IP_FW` and this firmware type.
    IpFw(Fw),
    /// Shipped in the file but not loaded by this driver.
    NotLoaded,
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Bootloader(c) => write!(f, "bootloader {}", c.name().unwrap_or("?")),
            Load::Sos => f.write_str("bootloader PSP_BL__LOAD_SOSDRV"),
            Load::Toc => f.write_str("GFX_CMD_ID_LOAD_TOC"),
            Load::IpFw(t) => write!(f, "LOAD_IP_FW {}", t.name().unwrap_or("?")),
            Load::NotLoaded => f.write_str("not loaded"),
        }
    }
}

/// One payload cut out of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Short name (e.g. "SOS", "MEC code", "RLC_G").
    pub name: &'static str,
    /// What happens to it.
    pub load: Load,
    /// Byte offset in the file.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Version where the header states one per payload.
    pub version: Option<u32>,
}

/// The kind of firmware file, which selects the header layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `psp_*_sos.bin`.
    PspSos,
    /// `psp_*_ta.bin`.
    PspTa,
    /// `smu_*.bin`.
    Smu,
    /// `sdma_*.bin`.
    Sdma,
    /// `gc_*_pfp.bin` (RS64).
    Pfp,
    /// `gc_*_me.bin` (RS64).
    Me,
    /// `gc_*_mec.bin` (RS64).
    Mec,
    /// `gc_*_imu.bin`.
    Imu,
    /// `gc_*_rlc.bin`.
    Rlc,
    /// `gc_*_mes*.bin`.
    Mes,
}

/// A parsed firmware file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareFile {
    /// File name (for messages).
    pub file: String,
    /// Kind.
    pub kind: Kind,
    /// File length.
    pub len: usize,
    /// `header_version_major.minor`.
    pub header_version: (u16, u16),
    /// `ip_version_major.minor`.
    pub ip_version: (u16, u16),
    /// `ucode_version`.
    pub ucode_version: u32,
    /// Payloads in the order the PSP loads them.
    pub components: Vec<Component>,
    /// RS64 program-counter start (`ucode_start_addr_hi:lo`), for CP_*_PRGRM_CNTR_START.
    pub start_addr: Option<u64>,
}

struct Reader<'a> {
    file: &'a str,
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn get<T: LeInt + Into<u64>>(
        &self,
        f: Scalar<T>,
        field: &'static str,
    ) -> Result<T, FirmwareError> {
        f.read(self.bytes).ok_or(FirmwareError::Truncated {
            file: self.file.to_string(),
            field,
            offset: f.offset,
            need: T::SIZE,
            len: self.bytes.len(),
        })
    }
    fn get_at(
        &self,
        f: Scalar<u32>,
        base: usize,
        field: &'static str,
    ) -> Result<u32, FirmwareError> {
        f.read_at(self.bytes, base).ok_or(FirmwareError::Truncated {
            file: self.file.to_string(),
            field,
            offset: base.saturating_add(f.offset),
            need: 4,
            len: self.bytes.len(),
        })
    }
    fn header_len(&self, need: usize, field: &'static str) -> Result<(), FirmwareError> {
        if self.bytes.len() < need {
            return Err(FirmwareError::Truncated {
                file: self.file.to_string(),
                field,
                offset: 0,
                need,
                len: self.bytes.len(),
            });
        }
        Ok(())
    }
    fn range(
        &self,
        field: &'static str,
        start: u64,
        size: u64,
    ) -> Result<(usize, usize), FirmwareError> {
        let end = start.saturating_add(size);
        if end > self.bytes.len() as u64 || size == 0 {
            if size == 0 {
                return Err(FirmwareError::Mismatch {
                    file: self.file.to_string(),
                    field,
                    found: "0 bytes".into(),
                    expected: "a non-empty payload".into(),
                });
            }
            return Err(FirmwareError::OutOfBounds {
                file: self.file.to_string(),
                field,
                start,
                end,
                len: self.bytes.len(),
            });
        }
        Ok((start as usize, size as usize))
    }
    fn mismatch(
        &self,
        field: &'static str,
        found: impl fmt::Display,
        expected: impl Into<String>,
    ) -> FirmwareError {
        FirmwareError::Mismatch {
            file: self.file.to_string(),
            field,
            found: found.to_string(),
            expected: expected.into(),
        }
    }
}

fn comp(
    name: &'static str,
    load: Load,
    (offset, size): (usize, usize),
    version: Option<u32>,
) -> Component {
    Component { name, load, offset, size, version }
}

/// The expected `ip_version_major` per kind for a chip family.
fn expected_ip_major(kind: Kind, family: Family) -> u16 {
    match (kind, family) {
        (Kind::PspSos | Kind::PspTa | Kind::Smu, Family::Rdna3) => 13,
        (Kind::PspSos | Kind::PspTa | Kind::Smu, Family::Rdna4) => 14,
        (Kind::Sdma, Family::Rdna3) => 6,
        (Kind::Sdma, Family::Rdna4) => 7,
        (_, Family::Rdna3) => 11,
        (_, Family::Rdna4) => 12,
    }
}

/// Parses `bytes` (the content of `file`) as a firmware file of `kind`.
pub fn parse(file: &str, kind: Kind, bytes: &[u8]) -> Result<FirmwareFile, FirmwareError> {
    let r = Reader { file, bytes };
    use u::common_firmware_header as c;
    r.header_len(c::SIZE, "common_firmware_header")?;
    let size_bytes = r.get(c::size_bytes, "size_bytes")?;
    if size_bytes as usize != bytes.len() {
        return Err(r.mismatch(
            "size_bytes",
            size_bytes,
            format!("the file length {}", bytes.len()),
        ));
    }
    let header_size = r.get(c::header_size_bytes, "header_size_bytes")? as usize;
    let hv = (
        r.get(c::header_version_major, "header_version_major")?,
        r.get(c::header_version_minor, "header_version_minor")?,
    );
    let ipv = (
        r.get(c::ip_version_major, "ip_version_major")?,
        r.get(c::ip_version_minor, "ip_version_minor")?,
    );
    let ucode_version = r.get(c::ucode_version, "ucode_version")?;
    let ucode_size = r.get(c::ucode_size_bytes, "ucode_size_bytes")?;
    let array_off = r.get(c::ucode_array_offset_bytes, "ucode_array_offset_bytes")?;
    if (array_off as usize) < header_size || header_size < c::SIZE {
        return Err(r.mismatch(
            "ucode_array_offset_bytes",
            format!("{array_off:#x} (header_size_bytes {header_size})"),
            "an offset past the header, and a header of at least 32 bytes",
        ));
    }
    let expect_hv = |ok: &[(u16, u16)], what: &str| -> Result<(), FirmwareError> {
        if ok.contains(&hv) {
            Ok(())
        } else {
            let list: Vec<String> = ok.iter().map(|(a, b)| format!("v{a}.{b}")).collect();
            Err(r.mismatch(
                "header_version",
                format!("v{}.{}", hv.0, hv.1),
                format!("{} for a {what} file", list.join(" or ")),
            ))
        }
    };
    let need_header = |size: usize| -> Result<(), FirmwareError> {
        if header_size < size {
            return Err(r.mismatch(
                "header_size_bytes",
                header_size,
                format!("at least {size} for header v{}.{}", hv.0, hv.1),
            ));
        }
        r.header_len(size, "versioned header")
    };
    let code =
        r.range("ucode_array_offset_bytes + ucode_size_bytes", array_off.into(), ucode_size.into());
    let mut components = Vec::new();
    let mut start_addr = None;
    match kind {
        Kind::PspSos | Kind::PspTa => {
            expect_hv(&[(2, 0), (2, 1)], if kind == Kind::PspSos { "PSP sOS" } else { "PSP TA" })?;
            let (count_f, desc_off) = if hv.1 == 1 {
                (
                    u::psp_firmware_header_v2_1::psp_fw_bin_count,
                    u::psp_firmware_header_v2_1::psp_fw_bin::OFFSET,
                )
            } else {
                (
                    u::psp_firmware_header_v2_0::psp_fw_bin_count,
                    u::psp_firmware_header_v2_0::psp_fw_bin::OFFSET,
                )
            };
            need_header(desc_off)?;
            let count = r.get(count_f, "psp_fw_bin_count")? as usize;
            let stride = u::psp_fw_bin_desc::SIZE;
            let fits = count
                .checked_mul(stride)
                .and_then(|n| n.checked_add(desc_off))
                .is_some_and(|end| end <= array_off as usize);
            if count == 0 || !fits {
                return Err(r.mismatch(
                    "psp_fw_bin_count",
                    count,
                    "1 or more descriptors that fit before the payload",
                ));
            }
            for i in 0..count {
                let base = desc_off + i * stride;
                let ty = r.get_at(u::psp_fw_bin_desc::fw_type, base, "psp_fw_bin_desc.fw_type")?;
                let ver =
                    r.get_at(u::psp_fw_bin_desc::fw_version, base, "psp_fw_bin_desc.fw_version")?;
                let off = r.get_at(
                    u::psp_fw_bin_desc::offset_bytes,
                    base,
                    "psp_fw_bin_desc.offset_bytes",
                )?;
                let size =
                    r.get_at(u::psp_fw_bin_desc::size_bytes, base, "psp_fw_bin_desc.size_bytes")?;
                let range = r.range(
                    "psp_fw_bin_desc offset_bytes + size_bytes",
                    u64::from(array_off) + u64::from(off),
                    size.into(),
                )?;
                let (name, load) = if kind == Kind::PspTa {
                    (ta_name(ty), Load::NotLoaded)
                } else {
                    sos_component(ty).ok_or_else(|| {
                        r.mismatch("psp_fw_bin_desc.fw_type", ty, "a psp_fw_type of 1..=11")
                    })?
                };
                components.push(comp(name, load, range, Some(ver)));
            }
            if kind == Kind::PspSos {
                // Bootloader order of reference §2.7: KDB, SPL, SYS_DRV, SOC, INTF, DBG, RAS, IPKEYMGR, SOS; TOC after.
                components.sort_by_key(|c| sos_order(c.name));
                if !components.iter().any(|c| c.load == Load::Sos) {
                    return Err(r.mismatch(
                        "psp_fw_bin_desc.fw_type",
                        "no PSP_FW_TYPE_PSP_SOS entry",
                        "an sOS binary",
                    ));
                }
            }
        }
        Kind::Smu => {
            expect_hv(&[(1, 0), (2, 0), (2, 1)], "SMU")?;
            need_header(u::smc_firmware_header_v1_0::SIZE)?;
            components.push(comp("SMU", Load::IpFw(Fw::GFX_FW_TYPE_SMU), code?, None));
        }
        Kind::Sdma => match hv {
            (2, 0) => {
                use u::sdma_firmware_header_v2_0 as s;
                need_header(s::SIZE)?;
                let ctl = r.range(
                    "ctl_ucode_offset + ctl_ucode_size_bytes",
                    r.get(s::ctl_ucode_offset, "ctl_ucode_offset")?.into(),
                    r.get(s::ctl_ucode_size_bytes, "ctl_ucode_size_bytes")?.into(),
                )?;
                let ctx = r.range(
                    "ucode_array_offset_bytes + ctx_ucode_size_bytes",
                    array_off.into(),
                    r.get(s::ctx_ucode_size_bytes, "ctx_ucode_size_bytes")?.into(),
                )?;
                components.push(comp(
                    "SDMA ctl (TH1)",
                    Load::IpFw(Fw::GFX_FW_TYPE_SDMA_UCODE_TH1),
                    ctl,
                    None,
                ));
                components.push(comp(
                    "SDMA ctx (TH0)",
                    Load::IpFw(Fw::GFX_FW_TYPE_SDMA_UCODE_TH0),
                    ctx,
                    None,
                ));
            }
            (3, 0) => {
                use u::sdma_firmware_header_v3_0 as s;
                need_header(s::SIZE)?;
                let code = r.range(
                    "ucode_array_offset_bytes + ucode_size_bytes (v3)",
                    array_off.into(),
                    r.get(s::ucode_size_bytes, "sdma v3 ucode_size_bytes")?.into(),
                )?;
                components.push(comp(
                    "SDMA (TH0)",
                    Load::IpFw(Fw::GFX_FW_TYPE_SDMA_UCODE_TH0),
                    code,
                    None,
                ));
            }
            _ => expect_hv(&[(2, 0), (3, 0)], "SDMA 6/7")?,
        },
        Kind::Pfp | Kind::Me | Kind::Mec => {
            expect_hv(&[(2, 0)], "RS64 CP")?;
            use u::gfx_firmware_header_v2_0 as g;
            need_header(g::SIZE)?;
            let (code_t, stack_t, code_n, stack_n) = match kind {
                Kind::Pfp => (
                    Fw::GFX_FW_TYPE_RS64_PFP,
                    Fw::GFX_FW_TYPE_RS64_PFP_P0_STACK,
                    "PFP code",
                    "PFP P0 stack",
                ),
                Kind::Me => (
                    Fw::GFX_FW_TYPE_RS64_ME,
                    Fw::GFX_FW_TYPE_RS64_ME_P0_STACK,
                    "ME code",
                    "ME P0 stack",
                ),
                _ => (
                    Fw::GFX_FW_TYPE_RS64_MEC,
                    Fw::GFX_FW_TYPE_RS64_MEC_P0_STACK,
                    "MEC code",
                    "MEC P0 stack",
                ),
            };
            let code = r.range(
                "ucode_array_offset_bytes + ucode_size_bytes (v2)",
                array_off.into(),
                r.get(g::ucode_size_bytes, "gfx v2 ucode_size_bytes")?.into(),
            )?;
            let stack = r.range(
                "data_offset_bytes + data_size_bytes",
                r.get(g::data_offset_bytes, "data_offset_bytes")?.into(),
                r.get(g::data_size_bytes, "data_size_bytes")?.into(),
            )?;
            components.push(comp(code_n, Load::IpFw(code_t), code, None));
            components.push(comp(stack_n, Load::IpFw(stack_t), stack, None));
            let lo = r.get(g::ucode_start_addr_lo, "ucode_start_addr_lo")?;
            let hi = r.get(g::ucode_start_addr_hi, "ucode_start_addr_hi")?;
            start_addr = Some(u64::from(hi) << 32 | u64::from(lo));
        }
        Kind::Imu => {
            expect_hv(&[(1, 0)], "IMU")?;
            use u::imu_firmware_header_v1_0 as m;
            need_header(m::SIZE)?;
            let iram = r.get(m::imu_iram_ucode_size_bytes, "imu_iram_ucode_size_bytes")?;
            let dram = r.get(m::imu_dram_ucode_size_bytes, "imu_dram_ucode_size_bytes")?;
            let i = r.range(
                "ucode_array_offset_bytes + imu_iram_ucode_size_bytes",
                array_off.into(),
                iram.into(),
            )?;
            let d = r.range(
                "IMU DRAM (after IRAM) + imu_dram_ucode_size_bytes",
                u64::from(array_off) + u64::from(iram),
                dram.into(),
            )?;
            components.push(comp("IMU IRAM", Load::IpFw(Fw::GFX_FW_TYPE_IMU_I), i, None));
            components.push(comp("IMU DRAM", Load::IpFw(Fw::GFX_FW_TYPE_IMU_D), d, None));
        }
        Kind::Rlc => {
            expect_hv(&[(2, 2), (2, 3), (2, 4)], "RLC (gfx11/gfx12)")?;
            use u::rlc_firmware_header_v2_2 as v22;
            use u::rlc_firmware_header_v2_3 as v23;
            need_header(if hv.1 >= 3 { v23::SIZE } else { v22::SIZE })?;
            let part = |off: Scalar<u32>,
                        size: Scalar<u32>,
                        field: &'static str|
             -> Result<(usize, usize), FirmwareError> {
                r.range(field, r.get(off, field)?.into(), r.get(size, field)?.into())
            };
            components.push(comp(
                "RLC IRAM",
                Load::IpFw(Fw::GFX_FW_TYPE_RLC_IRAM),
                part(
                    v22::rlc_iram_ucode_offset_bytes,
                    v22::rlc_iram_ucode_size_bytes,
                    "rlc_iram_ucode_offset/size",
                )?,
                None,
            ));
            components.push(comp(
                "RLC DRAM",
                Load::IpFw(Fw::GFX_FW_TYPE_RLC_DRAM_BOOT),
                part(
                    v22::rlc_dram_ucode_offset_bytes,
                    v22::rlc_dram_ucode_size_bytes,
                    "rlc_dram_ucode_offset/size",
                )?,
                None,
            ));
            if hv.1 >= 3 {
                components.push(comp(
                    "RLC P",
                    Load::IpFw(Fw::GFX_FW_TYPE_RLC_P),
                    part(
                        v23::rlcp_ucode_offset_bytes,
                        v23::rlcp_ucode_size_bytes,
                        "rlcp_ucode_offset/size",
                    )?,
                    Some(r.get(v23::rlcp_ucode_version, "rlcp_ucode_version")?),
                ));
                components.push(comp(
                    "RLC V",
                    Load::IpFw(Fw::GFX_FW_TYPE_RLC_V),
                    part(
                        v23::rlcv_ucode_offset_bytes,
                        v23::rlcv_ucode_size_bytes,
                        "rlcv_ucode_offset/size",
                    )?,
                    Some(r.get(v23::rlcv_ucode_version, "rlcv_ucode_version")?),
                ));
            }
            components.push(comp("RLC G", Load::IpFw(Fw::GFX_FW_TYPE_RLC_G), code?, None));
        }
        Kind::Mes => {
            expect_hv(&[(1, 0)], "MES")?;
            use u::mes_firmware_header_v1_0 as m;
            need_header(m::SIZE)?;
            let code = r.range(
                "mes_ucode_offset_bytes + mes_ucode_size_bytes",
                r.get(m::mes_ucode_offset_bytes, "mes_ucode_offset_bytes")?.into(),
                r.get(m::mes_ucode_size_bytes, "mes_ucode_size_bytes")?.into(),
            )?;
            let data = r.range(
                "mes_ucode_data_offset_bytes + mes_ucode_data_size_bytes",
                r.get(m::mes_ucode_data_offset_bytes, "mes_ucode_data_offset_bytes")?.into(),
                r.get(m::mes_ucode_data_size_bytes, "mes_ucode_data_size_bytes")?.into(),
            )?;
            components.push(comp("MES code", Load::NotLoaded, code, None));
            components.push(comp("MES data", Load::NotLoaded, data, None));
        }
    }
    Ok(FirmwareFile {
        file: file.to_string(),
        kind,
        len: bytes.len(),
        header_version: hv,
        ip_version: ipv,
        ucode_version,
        components,
        start_addr,
    })
}

fn sos_component(ty: u32) -> Option<(&'static str, Load)> {
    use crate::regs::ucode::psp_fw_type as T;
    Some(match u::psp_fw_type(ty) {
        T::PSP_FW_TYPE_PSP_SOS => ("SOS", Load::Sos),
        T::PSP_FW_TYPE_PSP_SYS_DRV => ("SYS_DRV", Load::Bootloader(Bl::PSP_BL__LOAD_SYSDRV)),
        T::PSP_FW_TYPE_PSP_KDB => ("KDB", Load::Bootloader(Bl::PSP_BL__LOAD_KEY_DATABASE)),
        T::PSP_FW_TYPE_PSP_TOC => ("TOC", Load::Toc),
        T::PSP_FW_TYPE_PSP_SPL => ("SPL", Load::Bootloader(Bl::PSP_BL__LOAD_TOS_SPL_TABLE)),
        T::PSP_FW_TYPE_PSP_RL => ("RL", Load::NotLoaded),
        T::PSP_FW_TYPE_PSP_SOC_DRV => ("SOC_DRV", Load::Bootloader(Bl::PSP_BL__LOAD_SOCDRV)),
        T::PSP_FW_TYPE_PSP_INTF_DRV => ("INTF_DRV", Load::Bootloader(Bl::PSP_BL__LOAD_INTFDRV)),
        T::PSP_FW_TYPE_PSP_DBG_DRV => ("DBG_DRV", Load::Bootloader(Bl::PSP_BL__LOAD_DBGDRV)),
        T::PSP_FW_TYPE_PSP_RAS_DRV => ("RAS_DRV", Load::Bootloader(Bl::PSP_BL__LOAD_RASDRV)),
        T::PSP_FW_TYPE_PSP_IPKEYMGR_DRV => {
            ("IPKEYMGR_DRV", Load::Bootloader(Bl::PSP_BL__LOAD_IPKEYMGRDRV))
        }
        _ => return None,
    })
}

fn sos_order(name: &str) -> usize {
    [
        "KDB",
        "SPL",
        "SYS_DRV",
        "SOC_DRV",
        "INTF_DRV",
        "DBG_DRV",
        "RAS_DRV",
        "IPKEYMGR_DRV",
        "SOS",
        "TOC",
        "RL",
    ]
    .iter()
    .position(|n| *n == name)
    .unwrap_or(usize::MAX)
}

fn ta_name(ty: u32) -> &'static str {
    use crate::regs::ucode::ta_fw_type as T;
    match u::ta_fw_type(ty) {
        T::TA_FW_TYPE_PSP_ASD => "ASD",
        T::TA_FW_TYPE_PSP_XGMI => "XGMI",
        T::TA_FW_TYPE_PSP_RAS => "RAS",
        T::TA_FW_TYPE_PSP_HDCP => "HDCP",
        T::TA_FW_TYPE_PSP_DTM => "DTM",
        T::TA_FW_TYPE_PSP_RAP => "RAP",
        T::TA_FW_TYPE_PSP_SECUREDISPLAY => "SECUREDISPLAY",
        _ => "unknown TA",
    }
}

/// One file of a chip's firmware set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeededFile {
    /// File name in the amdgpu firmware directory.
    pub file: String,
    /// Kind.
    pub kind: Kind,
    /// False for files shipped but not loaded by egpu (TA, MES); reported, not required.
    pub required: bool,
}

/// The files a chip's bring-up reads, in PSP load order (reference §3.1/§3.2): sOS, SMU, SDMA,
/// [gfx12: PFP, ME], MEC, IMU, RLC; then the optional TA and MES files.
pub fn firmware_set(chip: &Chip) -> Vec<NeededFile> {
    let gc = chip.gc.underscored();
    let mp = chip.mp.underscored();
    let mut v = vec![
        (format!("psp_{mp}_sos.bin"), Kind::PspSos, true),
        (format!("smu_{mp}.bin"), Kind::Smu, true),
        (format!("sdma_{}.bin", chip.sdma.underscored()), Kind::Sdma, true),
    ];
    if chip.family == Family::Rdna4 {
        v.push((format!("gc_{gc}_pfp.bin"), Kind::Pfp, true));
        v.push((format!("gc_{gc}_me.bin"), Kind::Me, true));
    }
    v.push((format!("gc_{gc}_mec.bin"), Kind::Mec, true));
    v.push((format!("gc_{gc}_imu.bin"), Kind::Imu, true));
    v.push((format!("gc_{gc}_rlc.bin"), Kind::Rlc, true));
    v.push((format!("psp_{mp}_ta.bin"), Kind::PspTa, false));
    let mes = if chip.family == Family::Rdna4 {
        format!("gc_{gc}_uni_mes.bin")
    } else {
        format!("gc_{gc}_mes_2.bin")
    };
    v.push((mes, Kind::Mes, false));
    v.into_iter().map(|(file, kind, required)| NeededFile { file, kind, required }).collect()
}

/// Reads and parses one needed file from `dir`, also checking its IP version against the chip.
pub fn check_file(
    dir: &Path,
    chip: &Chip,
    needed: &NeededFile,
) -> Result<FirmwareFile, FirmwareError> {
    let path = dir.join(&needed.file);
    let bytes = std::fs::read(&path)
        .map_err(|source| FirmwareError::Io { file: path.display().to_string(), source })?;
    let parsed = parse(&needed.file, needed.kind, &bytes)?;
    let want = expected_ip_major(needed.kind, chip.family);
    if parsed.ip_version.0 != want {
        return Err(FirmwareError::Mismatch {
            file: needed.file.clone(),
            field: "ip_version_major",
            found: parsed.ip_version.0.to_string(),
            expected: format!("{want} for {} ({})", chip.name, chip.gfx_target),
        });
    }
    Ok(parsed)
}

/// What `egpu firmware check` examines (the CLI's flags map onto this).
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Chip (Navi31, gfx1100, ...) or "all".
    pub chip: String,
    /// Firmware directory; `None` means [`DEFAULT_FIRMWARE_DIR`].
    pub dir: Option<PathBuf>,
}

/// Outcome for one file.
#[derive(Debug)]
pub struct FileReport {
    /// What was needed.
    pub needed: NeededFile,
    /// The parse result.
    pub result: Result<FirmwareFile, FirmwareError>,
}

/// Outcome for one chip.
#[derive(Debug)]
pub struct ChipReport {
    /// The chip.
    pub chip: &'static Chip,
    /// One entry per needed file.
    pub files: Vec<FileReport>,
}

impl ChipReport {
    /// True when every required file is present and sound.
    pub fn ok(&self) -> bool {
        self.files.iter().all(|f| !f.needed.required || f.result.is_ok())
    }
}

/// What `egpu firmware check` found.
#[derive(Debug)]
pub struct FirmwareReport {
    /// Directory examined.
    pub dir: PathBuf,
    /// Per chip.
    pub chips: Vec<ChipReport>,
}

impl FirmwareReport {
    /// True when every chip's required files are sound.
    pub fn ok(&self) -> bool {
        self.chips.iter().all(ChipReport::ok)
    }
}

/// Errors of the check command itself (not of individual files, which are reported).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// `--chip` named nothing known.
    #[error("firmware check: unknown chip `{0}`; use one of Navi31, Navi32, Navi33, Navi44, Navi48, a gfx target, or all")]
    UnknownChip(String),
    /// Some required file is missing or unsound (the report says which).
    #[error("firmware check: some required firmware files are missing or unsound (see above); {INSTALL_HINT}")]
    Failed,
}

/// Checks the firmware of the chips selected by `args` and returns the report.
pub fn firmware_report(args: &CheckOptions) -> Result<FirmwareReport, CheckError> {
    let chips: Vec<&'static Chip> = if args.chip.eq_ignore_ascii_case("all") {
        CHIPS.iter().collect()
    } else {
        vec![crate::chips::by_name(&args.chip)
            .ok_or_else(|| CheckError::UnknownChip(args.chip.clone()))?]
    };
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_FIRMWARE_DIR));
    let chips = chips
        .into_iter()
        .map(|chip| ChipReport {
            chip,
            files: firmware_set(chip)
                .into_iter()
                .map(|needed| {
                    let result = check_file(&dir, chip, &needed);
                    FileReport { needed, result }
                })
                .collect(),
        })
        .collect();
    Ok(FirmwareReport { dir, chips })
}

/// `egpu firmware check`: prints the report and fails if a required file is missing or unsound.
pub fn firmware_check(args: &CheckOptions) -> Result<(), CheckError> {
    let report = firmware_report(args)?;
    print!("{report}");
    if report.ok() {
        Ok(())
    } else {
        Err(CheckError::Failed)
    }
}

impl fmt::Display for FirmwareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "firmware directory: {}", self.dir.display())?;
        for c in &self.chips {
            let ids: Vec<String> =
                c.chip.pci_ids.iter().map(|(id, _)| format!("1002:{id:04x}")).collect();
            writeln!(
                f,
                "{} ({}, GC {}, MP {}, SDMA {}; {}): {}",
                c.chip.name,
                c.chip.gfx_target,
                c.chip.gc,
                c.chip.mp,
                c.chip.sdma,
                ids.join(" "),
                if c.ok() { "ok" } else { "MISSING OR BAD FIRMWARE" }
            )?;
            for fr in &c.files {
                let tag = if fr.needed.required { "" } else { " (optional, not loaded)" };
                match &fr.result {
                    Ok(p) => {
                        writeln!(
                            f,
                            "  ok   {}{tag}: {} bytes, header v{}.{}, ip {}.{}, ucode {:#x}{}",
                            fr.needed.file,
                            p.len,
                            p.header_version.0,
                            p.header_version.1,
                            p.ip_version.0,
                            p.ip_version.1,
                            p.ucode_version,
                            p.start_addr.map(|a| format!(", start {a:#x}")).unwrap_or_default()
                        )?;
                        for comp in &p.components {
                            let ver = comp.version.map(|v| format!(" v{v:#x}")).unwrap_or_default();
                            writeln!(
                                f,
                                "         {:<14} {:#08x}+{:#08x}{ver} -> {}",
                                comp.name, comp.offset, comp.size, comp.load
                            )?;
                        }
                    }
                    Err(e) => writeln!(f, "  FAIL {}{tag}: {e}", fr.needed.file)?,
                }
            }
        }
        Ok(())
    }
}
