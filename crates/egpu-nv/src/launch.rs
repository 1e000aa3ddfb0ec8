//! Per-launch data: constant bank 0 (cbuf0) contents and the QMD built from a cubin kernel.
//!
//! cbuf0 layout (reference nv-driver.md §2.5, confirmed there by disassembling NVRTC output):
//! up to sm_90 0x00/0x04/0x08 blockDim, 0x0C/0x10/0x14 gridDim, 0x18 shared window, 0x20 local
//! window, 0x28 initial stack pointer; Blackwell moves them (see [`Cbuf0Layout`]); parameters
//! from the arch's param base (0x160 sm_8x, 0x210 sm_90, 0x380 Blackwell).

use crate::arch::{sm_config_encoding, Arch};
use crate::cubin::CubinKernel;
use crate::qmd::{Qmd, QmdError, QmdField};
use thiserror::Error;

/// Where the driver-written constants sit in constant bank 0 (reference §2.5; Blackwell's from
/// nvdisasm of NVRTC sm_100/sm_120 output, agreeing with tinygrad).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cbuf0Layout {
    /// blockDim.x (y at +4, z at +8).
    pub block_dim: usize,
    /// gridDim.x (y at +4, z at +8).
    pub grid_dim: usize,
    /// Shared-memory window base (u64); sm_8x reads it (`cvta`), sm_90 uses SR_SWINHI.
    pub shared_window: usize,
    /// Local-memory window base (u64).
    pub local_window: usize,
    /// Initial stack pointer (u32).
    pub stack_pointer: usize,
}

impl Cbuf0Layout {
    /// The layout `arch`'s compiler expects.
    pub fn of(arch: Arch) -> Cbuf0Layout {
        match arch {
            Arch::BlackwellGb10x | Arch::BlackwellGb20x => Cbuf0Layout {
                block_dim: 0x360,
                grid_dim: 0x370,
                shared_window: 0x2F0,
                local_window: 0x2F8,
                stack_pointer: 0x37C,
            },
            _ => Cbuf0Layout {
                block_dim: 0x00,
                grid_dim: 0x0C,
                shared_window: 0x18,
                local_window: 0x20,
                stack_pointer: 0x28,
            },
        }
    }
}

/// Initial stack pointer: the top of the 16 MiB local window less 0x240 bytes the ABI keeps
/// above the stack (tinygrad's value; nvdisasm shows frames growing down from it).
pub const STACK_POINTER_VALUE: u32 = 0x00FF_FDC0;
/// Local memory each thread needs above its stack frame: the window's top down to the initial
/// stack pointer.
pub const STACK_RESERVE: u32 = 0x0100_0000 - STACK_POINTER_VALUE;

/// GPU VA windows (reference §1.4): unbacked holes the SM maps shared/local memory into.
pub const SHARED_WINDOW_BASE: u64 = 0x7294_0000_0000;
/// Local-memory window base.
pub const LOCAL_WINDOW_BASE: u64 = 0x7293_0000_0000;

/// Why a launch cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LaunchError {
    /// Argument block size differs from the kernel's parameter block.
    #[error("kernel {kernel}: argument block is {got} bytes, the cubin says {want}")]
    ArgumentBlockSize {
        /// Kernel.
        kernel: String,
        /// Bytes given.
        got: usize,
        /// Bytes the cubin declares.
        want: u32,
    },
    /// The cubin's parameter base disagrees with the architecture's.
    #[error("kernel {kernel}: parameters at cbuf0+0x{got:x}, the {arch:?} layout puts them at 0x{want:x}")]
    ParamBase {
        /// Kernel.
        kernel: String,
        /// Architecture.
        arch: Arch,
        /// Cubin's offset.
        got: u32,
        /// Expected offset.
        want: u32,
    },
    /// Geometry out of the hardware's range.
    #[error("kernel {kernel}: {why}")]
    Geometry {
        /// Kernel.
        kernel: String,
        /// What is wrong.
        why: String,
    },
    /// A QMD field rejected a value.
    #[error(transparent)]
    Qmd(#[from] QmdError),
}

/// Most threads per block the hardware takes.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;

/// Check launch geometry against hardware limits (reference §2.5 resource checks) and the
/// kernel's register use and launch bounds.
pub fn check_geometry(
    kernel: &CubinKernel,
    grid: [u32; 3],
    block: [u32; 3],
) -> Result<(), LaunchError> {
    let bad = |why: String| LaunchError::Geometry { kernel: kernel.name.clone(), why };
    if grid.contains(&0) || block.contains(&0) {
        return Err(bad(format!("grid {grid:?} / block {block:?} has a zero dimension")));
    }
    if block[0] > 1024 || block[1] > 1024 || block[2] > 64 {
        return Err(bad(format!("block {block:?} exceeds (1024, 1024, 64)")));
    }
    if grid[0] > 0x7FFF_FFFF || grid[1] > 65535 || grid[2] > 65535 {
        return Err(bad(format!("grid {grid:?} exceeds (2^31-1, 65535, 65535)")));
    }
    let threads = u64::from(block[0]) * u64::from(block[1]) * u64::from(block[2]);
    let limit = max_threads_for(kernel);
    if threads > u64::from(limit) {
        return Err(bad(format!("{threads} threads per block, at most {limit} for this kernel")));
    }
    Ok(())
}

/// Most threads per block a kernel may use: register file limit (reference §2.5), launch
/// bounds, and the hardware's 1024.
pub fn max_threads_for(kernel: &CubinKernel) -> u32 {
    // The counts come from the cubin (untrusted): widen so no value can overflow.
    let regs = u64::from(kernel.registers.max(1));
    let per_warp = (regs * 32).next_multiple_of(256);
    let by_regs = ((65536 / per_warp) / 4) * 4 * 32;
    let by_bounds = kernel
        .max_threads
        .map(|dims| dims.iter().fold(1u64, |total, &d| total.saturating_mul(u64::from(d.max(1)))))
        .unwrap_or(u64::MAX);
    by_regs.min(by_bounds).min(u64::from(MAX_THREADS_PER_BLOCK)) as u32
}

/// Build a kernel's cbuf0: the cubin's `.nv.constant0.K` template (or zeros), launch dims,
/// windows, stack pointer and the argument block at the parameter base.
pub fn build_cbuf0(
    arch: Arch,
    kernel: &CubinKernel,
    template: &[u8],
    grid: [u32; 3],
    block: [u32; 3],
    args: &[u8],
) -> Result<Vec<u8>, LaunchError> {
    let mut cb = Vec::new();
    build_cbuf0_into(&mut cb, arch, kernel, template, grid, block, args)?;
    Ok(cb)
}

/// [`build_cbuf0`] into `cb` (cleared first), so a launch can reuse one buffer.
pub fn build_cbuf0_into(
    cb: &mut Vec<u8>,
    arch: Arch,
    kernel: &CubinKernel,
    template: &[u8],
    grid: [u32; 3],
    block: [u32; 3],
    args: &[u8],
) -> Result<(), LaunchError> {
    if args.len() != kernel.param_bytes as usize {
        return Err(LaunchError::ArgumentBlockSize {
            kernel: kernel.name.clone(),
            got: args.len(),
            want: kernel.param_bytes,
        });
    }
    let base = arch.cbuf0_param_base();
    if kernel.param_bytes > 0 && kernel.param_base != base {
        return Err(LaunchError::ParamBase {
            kernel: kernel.name.clone(),
            arch,
            got: kernel.param_base,
            want: base,
        });
    }
    let layout = Cbuf0Layout::of(arch);
    let size = (base as usize + args.len()).max(template.len()).next_multiple_of(16);
    cb.clear();
    cb.resize(size, 0);
    cb[..template.len()].copy_from_slice(template);
    let put32 = |cb: &mut [u8], at: usize, v: u32| cb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    for i in 0..3 {
        put32(cb, layout.block_dim + 4 * i, block[i]);
        put32(cb, layout.grid_dim + 4 * i, grid[i]);
    }
    cb[layout.shared_window..layout.shared_window + 8]
        .copy_from_slice(&SHARED_WINDOW_BASE.to_le_bytes());
    cb[layout.local_window..layout.local_window + 8]
        .copy_from_slice(&LOCAL_WINDOW_BASE.to_le_bytes());
    put32(cb, layout.stack_pointer, STACK_POINTER_VALUE);
    cb[base as usize..base as usize + args.len()].copy_from_slice(args);
    Ok(())
}

/// Everything a QMD needs about one launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmdLaunch {
    /// GPU address of the kernel's first instruction.
    pub program_address: u64,
    /// GPU address of the program image (for the constant banks other than 0 it holds).
    pub image_address: u64,
    /// GPU address of cbuf0 (64-byte aligned on V04/V05).
    pub cbuf0_address: u64,
    /// cbuf0 size in bytes.
    pub cbuf0_bytes: u32,
    /// Grid in blocks.
    pub grid: [u32; 3],
    /// Block in threads.
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes.
    pub dynamic_shared_bytes: u32,
    /// Per-thread local memory the device has configured (SLM), in bytes.
    pub local_bytes_per_thread: u32,
    /// Release semaphore written when the grid completes: (address, 64-bit payload).
    pub release: Option<(u64, u64)>,
}

/// Build the QMD for `kernel` (reference §2.4 "per-program QMD", ported to V04/V05).
pub fn build_qmd(arch: Arch, kernel: &CubinKernel, launch: &QmdLaunch) -> Result<Qmd, LaunchError> {
    use QmdField::*;
    check_geometry(kernel, launch.grid, launch.block)?;
    let version = arch.qmd_version();
    let mut q = Qmd::new(version);
    let reserved = if arch.shared_section_includes_reserved() { 0 } else { 0x400 };
    let shared = kernel
        .shared_bytes
        .checked_add(reserved)
        .and_then(|bytes| bytes.checked_add(launch.dynamic_shared_bytes))
        .and_then(|bytes| bytes.checked_next_multiple_of(128))
        .ok_or_else(|| LaunchError::Geometry {
            kernel: kernel.name.clone(),
            why: "shared memory size overflows 32 bits".into(),
        })?;
    let shared_kib = shared.div_ceil(1024);
    let carveouts = arch.shared_carveouts_kib();
    let max_kib = *carveouts.last().unwrap_or(&0);
    let config_kib =
        carveouts.iter().copied().find(|&c| c >= shared_kib && c >= 32).unwrap_or(max_kib);
    if shared_kib > max_kib {
        return Err(LaunchError::Geometry {
            kernel: kernel.name.clone(),
            why: format!("{shared} bytes of shared memory, the SM has at most {max_kib} KiB"),
        });
    }
    if version != crate::qmd::QmdVersion::V03 {
        q.set(QmdType, 2)?; // GRID_CTA ([U] on Hopper: NVK leaves 0; reference §8 item 4)
    } else {
        q.set(SmGlobalCachingEnable, 1)?;
    }
    q.set(QmdGroupId, 0x3F)?;
    for f in [
        InvalidateTextureHeaderCache,
        InvalidateTextureSamplerCache,
        InvalidateTextureDataCache,
        InvalidateShaderDataCache,
    ] {
        q.set(f, 1)?;
    }
    q.set(ApiVisibleCallLimit, 1)?;
    q.set(SamplerIndex, 1)?;
    q.set(CwdMembarType, 1)?; // L1_SYSMEMBAR: results visible before the release
                              // At least one: bar.sync 0 is always usable.
    q.set(BarrierCount, u64::from(kernel.barriers.max(1)))?;
    q.set(RegisterCount, u64::from(kernel.registers))?;
    q.set(SassVersion, u64::from(((arch.sm() / 10) << 4) | (arch.sm() % 10)))?;
    q.set(GridWidth, u64::from(launch.grid[0]))?;
    q.set(GridHeight, u64::from(launch.grid[1]))?;
    q.set(GridDepth, u64::from(launch.grid[2]))?;
    q.set(CtaThreadDimension0, u64::from(launch.block[0]))?;
    q.set(CtaThreadDimension1, u64::from(launch.block[1]))?;
    q.set(CtaThreadDimension2, u64::from(launch.block[2]))?;
    q.set_shared_memory_bytes(shared)?;
    q.set(MinSmConfigSharedMemSize, u64::from(sm_config_encoding(config_kib)))?;
    q.set(TargetSmConfigSharedMemSize, u64::from(sm_config_encoding(config_kib)))?;
    q.set(MaxSmConfigSharedMemSize, u64::from(sm_config_encoding(max_kib)))?;
    q.set_local_memory_bytes(launch.local_bytes_per_thread)?;
    q.set_program_address(launch.program_address)?;
    q.set_constant_buffer(0, launch.cbuf0_address, launch.cbuf0_bytes)?;
    q.set(ConstantBufferInvalidate(0), 1)?;
    // `__constant__` data (bank 3), address tables (bank 4) and the like, from the image.
    for bank in &kernel.constant_banks {
        let bytes = bank.bytes.next_multiple_of(16);
        q.set_constant_buffer(bank.bank, launch.image_address + bank.offset, bytes)?;
        q.set(ConstantBufferInvalidate(bank.bank), 1)?;
    }
    if let Some((address, payload)) = launch.release {
        q.set_release(0, address, payload)?;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmd::QmdVersion;

    fn kernel(param_bytes: u32, base: u32) -> CubinKernel {
        CubinKernel {
            name: "k".into(),
            code_offset: 0,
            code_bytes: 256,
            registers: 16,
            params: vec![],
            param_base: base,
            param_bytes,
            constant0_bytes: base + param_bytes,
            constant0_offset: None,
            shared_bytes: 0x500,
            local_bytes: 0,
            max_threads: None,
            barriers: 0,
            constant_banks: vec![],
        }
    }

    #[test]
    fn cbuf0_holds_dims_windows_stack_and_args() {
        let k = kernel(16, 0x210);
        let args: Vec<u8> = (1..=16).collect();
        let cb =
            build_cbuf0(Arch::Hopper, &k, &[0xEE; 0x220], [7, 8, 9], [32, 2, 1], &args).unwrap();
        let u32_at = |o: usize| u32::from_le_bytes(cb[o..o + 4].try_into().unwrap());
        assert_eq!([u32_at(0), u32_at(4), u32_at(8)], [32, 2, 1]);
        assert_eq!([u32_at(0xC), u32_at(0x10), u32_at(0x14)], [7, 8, 9]);
        assert_eq!(u64::from_le_bytes(cb[0x20..0x28].try_into().unwrap()), LOCAL_WINDOW_BASE);
        assert_eq!(u32_at(0x28), 0xFFFDC0);
        assert_eq!(&cb[0x210..0x220], &args[..]);
        assert_eq!(cb[0x30], 0xEE, "template bytes outside the driver fields survive");
        assert_eq!(STACK_RESERVE, 0x240);
        assert!(matches!(
            build_cbuf0(Arch::Hopper, &k, &[], [1; 3], [1; 3], &[0; 8]),
            Err(LaunchError::ArgumentBlockSize { got: 8, want: 16, .. })
        ));
        assert!(matches!(
            build_cbuf0(Arch::Ada, &k, &[], [1; 3], [1; 3], &args),
            Err(LaunchError::ParamBase { got: 0x210, want: 0x160, .. })
        ));
    }

    #[test]
    fn blackwell_cbuf0_moves_the_driver_constants() {
        // nvdisasm of NVRTC sm_100/sm_120 output: blockDim c[0][0x360], gridDim c[0][0x370],
        // stack pointer c[0][0x37c], local window c[0][0x2f8].
        let k = kernel(8, 0x380);
        let cb =
            build_cbuf0(Arch::BlackwellGb20x, &k, &[], [5, 6, 7], [64, 2, 1], &[0xAB; 8]).unwrap();
        let u32_at = |o: usize| u32::from_le_bytes(cb[o..o + 4].try_into().unwrap());
        assert_eq!([u32_at(0x360), u32_at(0x364), u32_at(0x368)], [64, 2, 1]);
        assert_eq!([u32_at(0x370), u32_at(0x374), u32_at(0x378)], [5, 6, 7]);
        assert_eq!(u32_at(0x37C), STACK_POINTER_VALUE);
        assert_eq!(u64::from_le_bytes(cb[0x2F8..0x300].try_into().unwrap()), LOCAL_WINDOW_BASE);
        assert_eq!(&cb[0x380..0x388], &[0xAB; 8]);
        assert_eq!(&cb[..0x2F0], &[0; 0x2F0][..], "nothing at the Hopper offsets");
    }

    #[test]
    fn hopper_qmd_carries_launch_fields() {
        let mut k = kernel(16, 0x210);
        k.barriers = 2;
        k.constant_banks = vec![crate::cubin::ConstantBank { bank: 3, offset: 0x800, bytes: 20 }];
        let launch = QmdLaunch {
            image_address: 0x10_0000_0000,
            program_address: 0x10_0000_1000,
            cbuf0_address: 0x10_0002_0000,
            cbuf0_bytes: 0x220,
            grid: [100, 2, 1],
            block: [256, 1, 1],
            dynamic_shared_bytes: 0x1000,
            local_bytes_per_thread: 0,
            release: Some((0x10_0003_0000, 5)),
        };
        let q = build_qmd(Arch::Hopper, &k, &launch).unwrap();
        assert_eq!(q.version(), QmdVersion::V04);
        assert_eq!(q.get(QmdField::GridWidth), 100);
        assert_eq!(q.get(QmdField::CtaThreadDimension0), 256);
        assert_eq!(q.get(QmdField::RegisterCount), 16);
        assert_eq!(q.get(QmdField::SassVersion), 0x90);
        // sm_90 .nv.shared already includes the reserved 1 KiB: 0x500 + 0x1000 dynamic.
        assert_eq!(q.get(QmdField::SharedMemorySize), 0x1500);
        assert_eq!(q.get(QmdField::TargetSmConfigSharedMemSize), u64::from(sm_config_encoding(32)));
        assert_eq!(q.get(QmdField::MaxSmConfigSharedMemSize), 58);
        assert_eq!(
            q.get(QmdField::ConstantBufferAddrLower(0)),
            (0x10_0002_0000u64 >> 6) & 0xFFFF_FFFF
        );
        assert_eq!(q.get(QmdField::ReleaseSemaphorePayloadLower(0)), 5);
        assert_eq!(q.get(QmdField::BarrierCount), 2);
        // Bank 3 bound at image + 0x800, 20 bytes rounded to 32.
        assert_eq!(q.get(QmdField::ConstantBufferValid(3)), 1);
        assert_eq!(
            q.get(QmdField::ConstantBufferAddrLower(3)),
            ((0x10_0000_0800u64) >> 6) & 0xFFFF_FFFF
        );
        assert_eq!(q.get(QmdField::ConstantBufferSizeShifted4(3)), 32 >> 4);
        assert_eq!(q.get(QmdField::ConstantBufferValid(4)), 0);
        // Ada adds the 1 KiB reserved block itself.
        let ada = build_qmd(Arch::Ada, &kernel(16, 0x160), &launch).unwrap();
        assert_eq!(ada.get(QmdField::SharedMemorySize), 0x1900);
        assert_eq!(ada.get(QmdField::SassVersion), 0x89);
    }

    #[test]
    fn geometry_limits() {
        let k = kernel(0, 0x210);
        assert!(check_geometry(&k, [1, 1, 1], [1024, 1, 1]).is_ok());
        for (grid, block) in [
            ([0, 1, 1], [1, 1, 1]),
            ([1, 1, 1], [1025, 1, 1]),
            ([1, 65536, 1], [1, 1, 1]),
            ([1, 1, 1], [1, 1, 65]),
        ] {
            assert!(
                matches!(check_geometry(&k, grid, block), Err(LaunchError::Geometry { .. })),
                "{grid:?} {block:?}"
            );
        }
        let mut heavy = kernel(0, 0x210);
        heavy.registers = 255; // 255*32 → 8192 per warp → 8 warps → 256 threads
        assert_eq!(max_threads_for(&heavy), 256);
        heavy.max_threads = Some([128, 1, 1]);
        assert_eq!(max_threads_for(&heavy), 128);
    }
}
