//! Parser for the IP discovery table the PSP bootrom leaves at `vram_size - 64 KiB`
//! (reference §2.1). Layouts come from the generated `regs::discovery` tables.

use crate::chips::IpVersion;
use crate::layout::{Bits, LeInt, Scalar};
use crate::regs::discovery as d;

/// Why a discovery table was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A structure extends past the end of the buffer.
    #[error("discovery: {what} at byte {offset:#x} needs {need} bytes but the table has {len}; read the full {table_size}-byte region", table_size = d::DISCOVERY_TMR_SIZE)]
    Truncated {
        /// Which structure (table header, IP die, IP entry, ...).
        what: &'static str,
        /// Byte offset of the structure in the table.
        offset: usize,
        /// Bytes the structure needs from `offset`.
        need: usize,
        /// Bytes in the buffer given.
        len: usize,
    },
    /// A signature did not match.
    #[error("discovery: {what} signature is {found:#010x}, expected {expected:#010x} (is VRAM readable and the IFWI done? check MP0 C2PMSG_33 bit 31)")]
    BadSignature {
        /// Which structure (table header, IP die, IP entry, ...).
        what: &'static str,
        /// The signature read.
        found: u32,
        /// The signature the format defines (`regs::discovery`).
        expected: u32,
    },
    /// A byte-sum checksum did not match.
    #[error("discovery: {what} checksum is {computed:#06x}, header says {expected:#06x}")]
    BadChecksum {
        /// Which structure (table header, IP die, IP entry, ...).
        what: &'static str,
        /// The byte sum computed over the structure.
        computed: u16,
        /// The checksum stored in the header.
        expected: u16,
    },
    /// A count or version is outside what the format allows.
    #[error("discovery: {what} is {found}, expected {expected}")]
    Invalid {
        /// Which count or version field.
        what: &'static str,
        /// The value read.
        found: u64,
        /// What the format allows, in words.
        expected: &'static str,
    },
}

/// One IP block instance found in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpInstance {
    /// Hardware id (`regs::discovery::hwid`).
    pub hw_id: u16,
    /// Instance number.
    pub instance: u8,
    /// Version major.minor.revision.
    pub version: IpVersion,
    /// Sub-revision (table v3+) or harvest nibble (v1/v2).
    pub sub_revision: u8,
    /// Variant (table v3+).
    pub variant: u8,
    /// Segment base addresses (dword addresses), index = `BASE_IDX`.
    pub bases: Vec<u64>,
    /// True when the harvest table lists this instance as fused off.
    pub harvested: bool,
}

/// GC information (`gc_info_v1_x`, RDNA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcInfo {
    /// Table version major.minor.
    pub version: (u16, u16),
    /// Shader engines.
    pub num_se: u32,
    /// WGPs per shader array (two halves).
    pub num_wgp0_per_sa: u32,
    /// Second half.
    pub num_wgp1_per_sa: u32,
    /// Render backends per SE.
    pub num_rb_per_se: u32,
    /// GL2 channels.
    pub num_gl2c: u32,
    /// Wave size.
    pub wave_size: u32,
    /// Max waves per SIMD.
    pub max_waves_per_simd: u32,
    /// Max scratch slots per CU.
    pub max_scratch_slots_per_cu: u32,
    /// LDS size in KiB.
    pub lds_size: u32,
    /// Shader arrays per SE.
    pub num_sa_per_se: u32,
}

impl GcInfo {
    /// CUs per shader array = 2 × (wgp0 + wgp1) (reference §2.1).
    pub fn cus_per_sa(&self) -> u32 {
        2 * (self.num_wgp0_per_sa + self.num_wgp1_per_sa)
    }
}

/// The typed content of a discovery table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// Binary header version.
    pub version: (u16, u16),
    /// IP discovery table version.
    pub ip_table_version: u16,
    /// Every IP instance of every die.
    pub ips: Vec<IpInstance>,
    /// GC info, when the table has one.
    pub gc_info: Option<GcInfo>,
}

impl Discovery {
    /// The first non-harvested instance `instance` of hardware id `hw_id`.
    pub fn ip(&self, hw_id: u16, instance: u8) -> Option<&IpInstance> {
        self.ips.iter().find(|i| i.hw_id == hw_id && i.instance == instance && !i.harvested)
    }
    /// The GC version (chip identity, reference §0).
    pub fn gc_version(&self) -> Option<IpVersion> {
        self.ip(d::hwid::GC_HWID, 0).map(|i| i.version)
    }
}

fn need(buf: &[u8], what: &'static str, offset: usize, len: usize) -> Result<(), DiscoveryError> {
    match offset.checked_add(len) {
        Some(end) if end <= buf.len() => Ok(()),
        _ => Err(DiscoveryError::Truncated { what, offset, need: len, len: buf.len() }),
    }
}

fn rd<T: LeInt>(
    buf: &[u8],
    f: Scalar<T>,
    base: usize,
    what: &'static str,
) -> Result<T, DiscoveryError> {
    f.read_at(buf, base).ok_or(DiscoveryError::Truncated {
        what,
        offset: base.saturating_add(f.offset),
        need: T::SIZE,
        len: buf.len(),
    })
}

fn rd_bits<T: LeInt>(
    buf: &[u8],
    f: Bits<T>,
    base: usize,
    what: &'static str,
) -> Result<u8, DiscoveryError> {
    let v = f.read_at(buf, base).ok_or(DiscoveryError::Truncated {
        what,
        offset: base.saturating_add(f.offset),
        need: T::SIZE,
        len: buf.len(),
    })?;
    Ok(u8::try_from(v).unwrap_or(u8::MAX))
}

/// Byte sum as the kernel computes it (`amdgpu_discovery_calculate_checksum`).
pub fn checksum(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)))
}

fn verify(
    buf: &[u8],
    what: &'static str,
    offset: usize,
    size: usize,
    expected: u16,
) -> Result<(), DiscoveryError> {
    need(buf, what, offset, size)?;
    let computed = checksum(&buf[offset..offset + size]);
    if computed != expected {
        return Err(DiscoveryError::BadChecksum { what, computed, expected });
    }
    Ok(())
}

/// Parses and verifies a discovery table (signatures and every checksum, like the kernel).
pub fn parse(buf: &[u8]) -> Result<Discovery, DiscoveryError> {
    need(buf, "binary_header", 0, d::binary_header::SIZE)?;
    let sig = rd(buf, d::binary_header::binary_signature, 0, "binary_header.binary_signature")?;
    if sig != d::BINARY_SIGNATURE {
        return Err(DiscoveryError::BadSignature {
            what: "binary_header",
            found: sig,
            expected: d::BINARY_SIGNATURE,
        });
    }
    let version = (
        rd(buf, d::binary_header::version_major, 0, "binary_header.version_major")?,
        rd(buf, d::binary_header::version_minor, 0, "binary_header.version_minor")?,
    );
    let bin_size =
        usize::from(rd(buf, d::binary_header::binary_size, 0, "binary_header.binary_size")?);
    let after_checksum = d::binary_header::binary_checksum.offset + 2;
    if bin_size < d::binary_header::SIZE || bin_size > buf.len() {
        return Err(DiscoveryError::Invalid {
            what: "binary_header.binary_size",
            found: bin_size as u64,
            expected: "at least the header size and at most the buffer length",
        });
    }
    let expected = rd(buf, d::binary_header::binary_checksum, 0, "binary_header.binary_checksum")?;
    verify(buf, "binary", after_checksum, bin_size - after_checksum, expected)?;
    let table = |i: u32| -> Result<(usize, u16), DiscoveryError> {
        let base = d::binary_header::table_list::STRIDE * i as usize;
        Ok((
            usize::from(rd(buf, d::binary_header::table_list::offset, base, "table_info.offset")?),
            rd(buf, d::binary_header::table_list::checksum, base, "table_info.checksum")?,
        ))
    };

    // IP discovery table.
    let (ip_off, ip_sum) = table(d::table::IP_DISCOVERY.0)?;
    need(buf, "ip_discovery_header", ip_off, d::ip_discovery_header::SIZE)?;
    let ip_sig =
        rd(buf, d::ip_discovery_header::signature, ip_off, "ip_discovery_header.signature")?;
    if ip_sig != d::DISCOVERY_TABLE_SIGNATURE {
        return Err(DiscoveryError::BadSignature {
            what: "ip_discovery_header",
            found: ip_sig,
            expected: d::DISCOVERY_TABLE_SIGNATURE,
        });
    }
    let ip_size =
        usize::from(rd(buf, d::ip_discovery_header::size, ip_off, "ip_discovery_header.size")?);
    verify(buf, "ip discovery table", ip_off, ip_size, ip_sum)?;
    let ip_table_version =
        rd(buf, d::ip_discovery_header::version, ip_off, "ip_discovery_header.version")?;
    let num_dies =
        rd(buf, d::ip_discovery_header::num_dies, ip_off, "ip_discovery_header.num_dies")?;
    if usize::from(num_dies) > d::ip_discovery_header::die_info::COUNT {
        return Err(DiscoveryError::Invalid {
            what: "ip_discovery_header.num_dies",
            found: num_dies.into(),
            expected: "at most 16",
        });
    }
    let wide = ip_table_version >= 4
        && rd_bits(
            buf,
            d::ip_discovery_header::base_addr_64_bit,
            ip_off,
            "ip_discovery_header.base_addr_64_bit",
        )? == 1;

    let mut ips = Vec::new();
    for die in 0..usize::from(num_dies) {
        let die_info = ip_off + die * d::ip_discovery_header::die_info::STRIDE;
        let die_off = usize::from(rd(
            buf,
            d::ip_discovery_header::die_info::die_offset,
            die_info,
            "die_info.die_offset",
        )?);
        need(buf, "die_header", die_off, d::die_header::SIZE)?;
        let num_ips = rd(buf, d::die_header::num_ips, die_off, "die_header.num_ips")?;
        let mut at = die_off + d::die_header::SIZE;
        for _ in 0..num_ips {
            need(buf, "ip entry", at, d::ip_v4::base_address.offset)?;
            let n = rd(buf, d::ip_v4::num_base_address, at, "ip.num_base_address")?;
            let (sub_revision, variant) = if ip_table_version >= 3 {
                (
                    rd_bits(buf, d::ip_v4::sub_revision, at, "ip.sub_revision")?,
                    rd_bits(buf, d::ip_v4::variant, at, "ip.variant")?,
                )
            } else {
                (rd_bits(buf, d::ip::harvest, at, "ip.harvest")?, 0)
            };
            let mut bases = Vec::with_capacity(usize::from(n));
            for k in 0..usize::from(n) {
                let v = if wide {
                    d::ip_v4::base_address_64.read_at(buf, at, k)
                } else {
                    d::ip_v4::base_address.read_at(buf, at, k).map(u64::from)
                };
                let width = if wide { 8 } else { 4 };
                bases.push(v.ok_or(DiscoveryError::Truncated {
                    what: "ip base address",
                    offset: at + d::ip_v4::base_address.offset + k * width,
                    need: width,
                    len: buf.len(),
                })?);
            }
            ips.push(IpInstance {
                hw_id: rd(buf, d::ip_v4::hw_id, at, "ip.hw_id")?,
                instance: rd(buf, d::ip_v4::instance_number, at, "ip.instance_number")?,
                version: IpVersion::new(
                    rd(buf, d::ip_v4::major, at, "ip.major")?,
                    rd(buf, d::ip_v4::minor, at, "ip.minor")?,
                    rd(buf, d::ip_v4::revision, at, "ip.revision")?,
                ),
                sub_revision,
                variant,
                bases,
                harvested: false,
            });
            at += d::ip_v4::base_address.offset + usize::from(n) * if wide { 8 } else { 4 };
        }
    }

    // Harvest table.
    let (hv_off, hv_sum) = table(d::table::HARVEST_INFO.0)?;
    if hv_off != 0 {
        verify(buf, "harvest table", hv_off, d::harvest_table::SIZE, hv_sum)?;
        let sig =
            rd(buf, d::harvest_table::header::signature, hv_off, "harvest_info_header.signature")?;
        if sig != d::HARVEST_TABLE_SIGNATURE {
            return Err(DiscoveryError::BadSignature {
                what: "harvest table",
                found: sig,
                expected: d::HARVEST_TABLE_SIGNATURE,
            });
        }
        for i in 0..d::harvest_table::list::COUNT {
            let e = hv_off + i * d::harvest_table::list::STRIDE;
            let hw = rd(buf, d::harvest_table::list::hw_id, e, "harvest_info.hw_id")?;
            if hw == 0 {
                break;
            }
            let inst = rd(
                buf,
                d::harvest_table::list::number_instance,
                e,
                "harvest_info.number_instance",
            )?;
            for ip in ips.iter_mut().filter(|ip| ip.hw_id == hw && ip.instance == inst) {
                ip.harvested = true;
            }
        }
    }

    // GC info.
    let (gc_off, gc_sum) = table(d::table::GC.0)?;
    let gc_info = if gc_off != 0 {
        need(buf, "gpu_info_header", gc_off, d::gpu_info_header::SIZE)?;
        let id = rd(buf, d::gpu_info_header::table_id, gc_off, "gpu_info_header.table_id")?;
        if id != d::GC_TABLE_ID {
            return Err(DiscoveryError::BadSignature {
                what: "gc info",
                found: id,
                expected: d::GC_TABLE_ID,
            });
        }
        let size = rd(buf, d::gpu_info_header::size, gc_off, "gpu_info_header.size")? as usize;
        verify(buf, "gc info table", gc_off, size, gc_sum)?;
        let major =
            rd(buf, d::gpu_info_header::version_major, gc_off, "gpu_info_header.version_major")?;
        let minor =
            rd(buf, d::gpu_info_header::version_minor, gc_off, "gpu_info_header.version_minor")?;
        if major != 1 {
            return Err(DiscoveryError::Invalid {
                what: "gc info version major",
                found: major.into(),
                expected: "1 (RDNA)",
            });
        }
        need(buf, "gc_info_v1_0", gc_off, d::gc_info_v1_0::SIZE)?;
        use d::gc_info_v1_0 as g;
        let f = |s: Scalar<u32>, what| rd(buf, s, gc_off, what);
        Some(GcInfo {
            version: (major, minor),
            num_se: f(g::gc_num_se, "gc_num_se")?,
            num_wgp0_per_sa: f(g::gc_num_wgp0_per_sa, "gc_num_wgp0_per_sa")?,
            num_wgp1_per_sa: f(g::gc_num_wgp1_per_sa, "gc_num_wgp1_per_sa")?,
            num_rb_per_se: f(g::gc_num_rb_per_se, "gc_num_rb_per_se")?,
            num_gl2c: f(g::gc_num_gl2c, "gc_num_gl2c")?,
            wave_size: f(g::gc_wave_size, "gc_wave_size")?,
            max_waves_per_simd: f(g::gc_max_waves_per_simd, "gc_max_waves_per_simd")?,
            max_scratch_slots_per_cu: f(
                g::gc_max_scratch_slots_per_cu,
                "gc_max_scratch_slots_per_cu",
            )?,
            lds_size: f(g::gc_lds_size, "gc_lds_size")?,
            num_sa_per_se: f(g::gc_num_sa_per_se, "gc_num_sa_per_se")?,
        })
    } else {
        None
    };
    Ok(Discovery { version, ip_table_version, ips, gc_info })
}
