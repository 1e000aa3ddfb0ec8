//! NVRTC, loaded at run time: CUDA C → CUBIN for a given `sm_XX`, with an on-disk cache.
//!
//! Where NVRTC is looked for, in order: `EGPU_NVRTC` (the library file or its folder);
//! `CUDA_HOME`/`CUDA_PATH`, `/usr/local/cuda*/lib64`; the dynamic loader's search path; finally
//! the Python site-packages of `python3` (PyPI wheels `nvidia-cuda-nvrtc-cu12` →
//! `nvidia/cuda_nvrtc/lib/libnvrtc.so.12`, `nvidia-cuda-nvrtc` 13.x → `nvidia/cu13/lib/…`),
//! asked only when nothing before it loads.
//! Reference nv-driver.md §5.

use libloading::Library;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Environment variable naming the NVRTC library (or its folder).
pub const NVRTC_ENV: &str = "EGPU_NVRTC";
/// Environment variable naming the compile cache folder.
pub const CACHE_ENV: &str = "EGPU_CACHE_DIR";

/// How to get NVRTC, for error messages.
pub const HOW_TO_GET_NVRTC: &str =
    "install it with `pip install nvidia-cuda-nvrtc-cu12` (or a CUDA toolkit), \
or point EGPU_NVRTC at libnvrtc.so";

/// NVRTC failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NvrtcError {
    /// No NVRTC library could be loaded.
    #[error("NVRTC not found (tried: {tried}); {HOW_TO_GET_NVRTC}")]
    NotFound {
        /// Paths and names tried, comma separated.
        tried: String,
    },
    /// The library loaded but lacks a function.
    #[error("{library}: missing symbol {symbol}: {source}")]
    MissingSymbol {
        /// Library path.
        library: String,
        /// Symbol name.
        symbol: &'static str,
        /// Loader error.
        source: libloading::Error,
    },
    /// An NVRTC call returned an error code.
    #[error("{call} failed: {message} (nvrtcResult {code})")]
    Call {
        /// The NVRTC function.
        call: &'static str,
        /// nvrtcResult value.
        code: i32,
        /// nvrtcGetErrorString text.
        message: String,
    },
    /// Compilation failed; `log` is NVRTC's program log.
    #[error("compiling {name} for {options} failed:\n{log}")]
    Compile {
        /// Program name.
        name: String,
        /// Options used.
        options: String,
        /// Compiler log.
        log: String,
    },
    /// Source, name or option contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which input.
        what: &'static str,
    },
    /// The cache folder could not be used.
    #[error("compile cache {path}: {source}")]
    Cache {
        /// Path involved.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
}

type NvrtcResult = c_int;
type Program = *mut std::ffi::c_void;

struct Api {
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult,
    create: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    log: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    cubin_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    cubin: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    destroy: unsafe extern "C" fn(*mut Program) -> NvrtcResult,
    error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
}

/// A loaded NVRTC.
pub struct Nvrtc {
    api: Api,
    path: String,
    version: (i32, i32),
    // Keeps the function pointers in `api` valid.
    _library: Library,
}

impl std::fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvrtc").field("path", &self.path).field("version", &self.version).finish()
    }
}

/// Library paths/names to try before asking Python: `EGPU_NVRTC`, CUDA installs, then the
/// dynamic loader's own search path.
fn direct_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(value) = std::env::var_os(NVRTC_ENV) {
        let p = PathBuf::from(value);
        if p.is_dir() {
            for name in SONAMES {
                out.push(p.join(name));
            }
        } else {
            out.push(p);
        }
    }
    let mut cuda_dirs: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|v| PathBuf::from(v).join("lib64"))
        .collect();
    if let Ok(entries) = std::fs::read_dir("/usr/local") {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("cuda"))
            })
            .map(|p| p.join("lib64"))
            .collect();
        // Newest first: cuda-13.0 before cuda-12.9.
        found.sort_by(|a, b| b.cmp(a));
        cuda_dirs.extend(found);
    }
    for dir in cuda_dirs {
        for name in SONAMES {
            let p = dir.join(name);
            if p.exists() {
                out.push(p);
            }
        }
    }
    // Bare sonames: the dynamic loader's own search path.
    out.extend(SONAMES.iter().map(PathBuf::from));
    out
}

/// NVRTC sonames, newest first.
const SONAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

/// NVRTC inside Python's site-packages (the PyPI wheels), found by asking `python3`.
fn python_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in python_site_dirs() {
        for rel in [
            "nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
            "nvidia/cu13/lib/libnvrtc.so.13",
            "nvidia/cuda_nvrtc/lib/libnvrtc.so.13",
        ] {
            let p = dir.join(rel);
            if p.exists() {
                out.push(p);
            }
        }
    }
    out
}

/// site-packages folders of `python3`, if Python is installed.
fn python_site_dirs() -> Vec<PathBuf> {
    let script = "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]+sys.path: print(p)";
    let Ok(output) = std::process::Command::new("python3").args(["-c", script]).output() else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.dedup();
    dirs
}

impl Nvrtc {
    /// Load the first NVRTC found (see the module docs for the search order). Python is only
    /// started when no other candidate loads.
    pub fn load() -> Result<Nvrtc, NvrtcError> {
        let mut tried = Vec::new();
        for stage in [direct_candidates as fn() -> Vec<PathBuf>, python_candidates] {
            if let Some(nvrtc) = Nvrtc::load_first(&stage(), &mut tried) {
                return Ok(nvrtc);
            }
        }
        Err(NvrtcError::NotFound { tried: tried.join(", ") })
    }

    /// One NVRTC per major version found anywhere in the search order (tests compile with
    /// every compiler a user might have: CUDA 12 and 13 write different cubin ABIs).
    pub fn load_each_version() -> Vec<Nvrtc> {
        let mut found: Vec<Nvrtc> = Vec::new();
        for candidate in direct_candidates().into_iter().chain(python_candidates()) {
            // SAFETY: as in `load`.
            let Ok(library) = (unsafe { Library::new(&candidate) }) else { continue };
            let Ok(nvrtc) = Nvrtc::from_library(library, candidate.display().to_string()) else {
                continue;
            };
            if !found.iter().any(|n| n.version.0 == nvrtc.version.0) {
                found.push(nvrtc);
            }
        }
        found
    }

    /// The first of `candidates` that loads, recording the ones that do not in `tried`.
    fn load_first(candidates: &[PathBuf], tried: &mut Vec<String>) -> Option<Nvrtc> {
        for candidate in candidates {
            // SAFETY: loading NVRTC runs its initialisers; it is a plain C library without
            // unusual load-time side effects.
            let loaded = unsafe { Library::new(candidate) }.ok().and_then(|library| {
                Nvrtc::from_library(library, candidate.display().to_string()).ok()
            });
            match loaded {
                Some(nvrtc) => return Some(nvrtc),
                // Absent, or a library without NVRTC's functions: try the next one.
                None => tried.push(candidate.display().to_string()),
            }
        }
        None
    }

    /// Load NVRTC from an explicit path.
    pub fn load_from(path: &Path) -> Result<Nvrtc, NvrtcError> {
        // SAFETY: as in `load`.
        let library = unsafe { Library::new(path) }
            .map_err(|_| NvrtcError::NotFound { tried: path.display().to_string() })?;
        Nvrtc::from_library(library, path.display().to_string())
    }

    fn from_library(library: Library, path: String) -> Result<Nvrtc, NvrtcError> {
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the symbol is NVRTC's documented C function with the signature of the
                // field it is stored in (nvrtc.h); the Library outlives the pointer (kept in self).
                let s =
                    unsafe { library.get($name) }.map_err(|source| NvrtcError::MissingSymbol {
                        library: path.clone(),
                        symbol: std::str::from_utf8(&$name[..$name.len() - 1]).unwrap_or("?"),
                        source,
                    })?;
                *s
            }};
        }
        let api = Api {
            version: sym!(b"nvrtcVersion\0"),
            create: sym!(b"nvrtcCreateProgram\0"),
            compile: sym!(b"nvrtcCompileProgram\0"),
            log_size: sym!(b"nvrtcGetProgramLogSize\0"),
            log: sym!(b"nvrtcGetProgramLog\0"),
            cubin_size: sym!(b"nvrtcGetCUBINSize\0"),
            cubin: sym!(b"nvrtcGetCUBIN\0"),
            destroy: sym!(b"nvrtcDestroyProgram\0"),
            error_string: sym!(b"nvrtcGetErrorString\0"),
        };
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        let code = unsafe { (api.version)(&raw mut major, &raw mut minor) };
        let mut nvrtc = Nvrtc { api, path, version: (0, 0), _library: library };
        nvrtc.check("nvrtcVersion", code)?;
        nvrtc.version = (major, minor);
        Ok(nvrtc)
    }

    /// Path of the loaded library.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// NVRTC (CUDA) version, e.g. (12, 9).
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    fn check(&self, call: &'static str, code: NvrtcResult) -> Result<(), NvrtcError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any code.
        let message = unsafe {
            let p = (self.api.error_string)(code);
            if p.is_null() {
                "unknown".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Err(NvrtcError::Call { call, code, message })
    }

    /// Compile CUDA C `source` (program `name`) with `options`; returns the CUBIN.
    pub fn compile(
        &self,
        source: &str,
        name: &str,
        options: &[String],
    ) -> Result<Vec<u8>, NvrtcError> {
        let c_source = CString::new(source).map_err(|_| NvrtcError::Nul { what: "source" })?;
        let c_name = CString::new(name).map_err(|_| NvrtcError::Nul { what: "program name" })?;
        let c_options: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()).map_err(|_| NvrtcError::Nul { what: "option" }))
            .collect::<Result<_, _>>()?;
        let option_ptrs: Vec<*const c_char> = c_options.iter().map(|o| o.as_ptr()).collect();
        let mut program: Program = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated strings; no headers (count 0, null arrays).
        let code = unsafe {
            (self.api.create)(
                &raw mut program,
                c_source.as_ptr(),
                c_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        self.check("nvrtcCreateProgram", code)?;
        let result = self.compile_program(program, name, options, &option_ptrs);
        // SAFETY: `program` was created above and is destroyed once.
        unsafe { (self.api.destroy)(&raw mut program) };
        result
    }

    fn compile_program(
        &self,
        program: Program,
        name: &str,
        options: &[String],
        option_ptrs: &[*const c_char],
    ) -> Result<Vec<u8>, NvrtcError> {
        // SAFETY: `program` is live; the option pointers outlive the call.
        let code = unsafe {
            (self.api.compile)(program, option_ptrs.len() as c_int, option_ptrs.as_ptr())
        };
        if code != 0 {
            let mut size = 0usize;
            // SAFETY: valid out-pointer, then a buffer of exactly the reported size.
            let log = unsafe {
                (self.api.log_size)(program, &raw mut size);
                let mut buf = vec![0u8; size.max(1)];
                (self.api.log)(program, buf.as_mut_ptr().cast());
                String::from_utf8_lossy(&buf).trim_end_matches('\0').to_string()
            };
            return Err(NvrtcError::Compile {
                name: name.to_string(),
                options: options.join(" "),
                log,
            });
        }
        let mut size = 0usize;
        // SAFETY: valid out-pointer.
        self.check("nvrtcGetCUBINSize", unsafe { (self.api.cubin_size)(program, &raw mut size) })?;
        let mut cubin = vec![0u8; size];
        // SAFETY: buffer of the size NVRTC reported.
        self.check("nvrtcGetCUBIN", unsafe {
            (self.api.cubin)(program, cubin.as_mut_ptr().cast())
        })?;
        Ok(cubin)
    }

    /// Compile for `sm_XX` (e.g. 90), going through the on-disk cache in [`cache_dir`].
    pub fn compile_for_sm(
        &self,
        source: &str,
        name: &str,
        sm: u32,
        extra: &[String],
    ) -> Result<Vec<u8>, NvrtcError> {
        self.compile_cached(source, name, sm, extra, &cache_dir())
    }

    /// Compile for `sm_XX` through the cache folder `dir`: a file named by [`cache_key`] of
    /// source, options and compiler version.
    pub fn compile_cached(
        &self,
        source: &str,
        name: &str,
        sm: u32,
        extra: &[String],
        dir: &Path,
    ) -> Result<Vec<u8>, NvrtcError> {
        let mut options = vec![format!("--gpu-architecture=sm_{sm}")];
        options.extend_from_slice(extra);
        let dir = dir.to_path_buf();
        let key = cache_key(source, &options, self.version);
        let path = dir.join(format!("{key}.cubin"));
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(bytes);
        }
        let cubin = self.compile(source, name, &options)?;
        std::fs::create_dir_all(&dir)
            .map_err(|source| NvrtcError::Cache { path: dir.clone(), source })?;
        // Write then rename so a concurrent reader never sees a partial file.
        let tmp = dir.join(format!("{key}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &cubin)
            .map_err(|source| NvrtcError::Cache { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path)
            .map_err(|source| NvrtcError::Cache { path: path.clone(), source })?;
        Ok(cubin)
    }
}

/// The compile cache folder: `EGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/egpu/nvrtc`, else
/// `~/.cache/egpu/nvrtc`, else a folder under the system temp dir.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("egpu/nvrtc");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache/egpu/nvrtc");
    }
    std::env::temp_dir().join("egpu-nvrtc")
}

/// Cache key: 128-bit FNV-1a over source, options and compiler version, as 32 hex digits.
/// (std's hasher is not stable across Rust releases, so a fixed algorithm is used.)
pub fn cache_key(source: &str, options: &[String], version: (i32, i32)) -> String {
    fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut h = seed;
        for part in parts {
            for &b in part.iter().chain((part.len() as u64).to_le_bytes().iter()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
        h
    }
    let version = format!("{}.{}", version.0, version.1);
    let joined = options.join("\u{1}");
    let parts: [&[u8]; 3] = [source.as_bytes(), joined.as_bytes(), version.as_bytes()];
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325, &parts),
        fnv(0x6c62_272e_07bb_0142, &parts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_changes_with_every_input() {
        let opts = vec!["--gpu-architecture=sm_90".to_string()];
        let base = cache_key("a", &opts, (12, 9));
        assert_eq!(base.len(), 32);
        assert_eq!(base, cache_key("a", &opts, (12, 9)));
        assert_ne!(base, cache_key("b", &opts, (12, 9)));
        assert_ne!(base, cache_key("a", &["--gpu-architecture=sm_89".to_string()], (12, 9)));
        assert_ne!(base, cache_key("a", &opts, (13, 0)));
        // Boundaries between parts matter: ("ab", "") differs from ("a", "b").
        assert_ne!(cache_key("ab", &[], (1, 0)), cache_key("a", &["b".to_string()], (1, 0)));
    }

    #[test]
    fn missing_library_error_says_how_to_get_one() {
        let err = Nvrtc::load_from(Path::new("/nonexistent/libnvrtc.so.12")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pip install nvidia-cuda-nvrtc-cu12"), "{text}");
        assert!(text.contains("EGPU_NVRTC"), "{text}");
    }
}
