//! GGUF reader (versions 2 and 3): metadata of every type, tensor infos, alignment, and
//! memory-mapped tensor data.
//!
//! The whole file is treated as untrusted bytes: every read goes through a cursor that checks
//! bounds and returns a [`GgufError`] naming the offset and what was expected. Counts read from
//! the file are checked against the bytes that remain before anything is allocated, so an absurd
//! count gives an error instead of an allocation failure.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::quant::GgmlType;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;
/// Nesting limit for arrays of arrays; real files use one level.
const MAX_ARRAY_DEPTH: usize = 8;

/// Errors from reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("opening GGUF file {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A read ran past the end of the file.
    #[error(
        "reading {what} at offset {offset}: needs {need} bytes but the file has {len} bytes \
         (the file is truncated or an offset in it is wrong)"
    )]
    Truncated {
        /// What was being read.
        what: String,
        /// Where the read started.
        offset: u64,
        /// Bytes the read needed.
        need: u64,
        /// Total length of the file.
        len: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("bad magic {found:02x?} at offset 0: expected \"GGUF\" (47 47 55 46); this is not a GGUF file")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The version field names a version this reader does not read.
    #[error("unsupported GGUF version {version}: egpu reads versions 2 and 3{hint}")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
        /// Extra advice (big-endian files, version 1).
        hint: &'static str,
    },
    /// A metadata value carries a type id outside the GGUF specification.
    #[error("metadata key {key:?} at offset {offset}: unknown value type {type_id} (GGUF defines 0..=12)")]
    UnknownValueType {
        /// The key whose value failed.
        key: String,
        /// Offset of the type field.
        offset: u64,
        /// The type id found.
        type_id: u32,
    },
    /// A count in the file cannot possibly fit in the remaining bytes.
    #[error(
        "{what} at offset {offset}: count {count} needs at least {need} bytes but only {remaining} remain"
    )]
    AbsurdCount {
        /// What was being counted.
        what: String,
        /// Offset of the count field.
        offset: u64,
        /// The count found.
        count: u64,
        /// Lower bound of bytes the count implies.
        need: u128,
        /// Bytes left in the file.
        remaining: u64,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at offset {offset}: string is not valid UTF-8")]
    InvalidUtf8 {
        /// What the string was.
        what: String,
        /// Offset of the string bytes.
        offset: u64,
    },
    /// Arrays nest deeper than this reader allows.
    #[error("metadata key {key:?}: arrays nest deeper than {MAX_ARRAY_DEPTH} levels")]
    NestingTooDeep {
        /// The key whose value failed.
        key: String,
    },
    /// The same metadata key appears twice.
    #[error("metadata key {key:?} appears twice (second at offset {offset})")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Offset of the second occurrence.
        offset: u64,
    },
    /// A tensor info is inconsistent.
    #[error("tensor {name:?}: {problem}")]
    BadTensor {
        /// The tensor name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `general.alignment` is not a usable alignment.
    #[error("general.alignment is {found}: expected a non-zero power of two (a u32)")]
    BadAlignment {
        /// The value found, printed.
        found: String,
    },
    /// A required metadata key is missing.
    #[error("metadata key {key:?} is missing{hint}")]
    MissingKey {
        /// The key looked up.
        key: String,
        /// Extra advice.
        hint: String,
    },
    /// A metadata key has a different type than the caller needs.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The key looked up.
        key: String,
        /// The type needed.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A tensor the caller asked for does not exist.
    #[error("tensor {name:?} not found in the GGUF file")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },
}

/// Element type of a metadata value or array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetaType {
    /// `GGUF_TYPE_UINT8`
    U8 = 0,
    /// `GGUF_TYPE_INT8`
    I8 = 1,
    /// `GGUF_TYPE_UINT16`
    U16 = 2,
    /// `GGUF_TYPE_INT16`
    I16 = 3,
    /// `GGUF_TYPE_UINT32`
    U32 = 4,
    /// `GGUF_TYPE_INT32`
    I32 = 5,
    /// `GGUF_TYPE_FLOAT32`
    F32 = 6,
    /// `GGUF_TYPE_BOOL`
    Bool = 7,
    /// `GGUF_TYPE_STRING`
    String = 8,
    /// `GGUF_TYPE_ARRAY`
    Array = 9,
    /// `GGUF_TYPE_UINT64`
    U64 = 10,
    /// `GGUF_TYPE_INT64`
    I64 = 11,
    /// `GGUF_TYPE_FLOAT64`
    F64 = 12,
}

impl MetaType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The smallest number of bytes one value of this type occupies in the file; used to reject
    /// counts that cannot fit before allocating.
    fn min_encoded_size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// u8
    U8(u8),
    /// i8
    I8(i8),
    /// u16
    U16(u16),
    /// i16
    I16(i16),
    /// u32
    U32(u32),
    /// i32
    I32(i32),
    /// f32
    F32(f32),
    /// bool (stored as one byte, 0 or 1)
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// Array of values of one element type.
    Array(MetaType, Vec<MetaValue>),
    /// u64
    U64(u64),
    /// i64
    I64(i64),
    /// f64
    F64(f64),
}

impl MetaValue {
    /// Name of the value's type as the GGUF specification spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "UINT8",
            Self::I8(_) => "INT8",
            Self::U16(_) => "UINT16",
            Self::I16(_) => "INT16",
            Self::U32(_) => "UINT32",
            Self::I32(_) => "INT32",
            Self::F32(_) => "FLOAT32",
            Self::Bool(_) => "BOOL",
            Self::String(_) => "STRING",
            Self::Array(..) => "ARRAY",
            Self::U64(_) => "UINT64",
            Self::I64(_) => "INT64",
            Self::F64(_) => "FLOAT64",
        }
    }

    /// The value as an unsigned integer, if it is an integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer type that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a float or an integer type.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(_, items) => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::U8(v) => write!(f, "{v}"),
            Self::I8(v) => write!(f, "{v}"),
            Self::U16(v) => write!(f, "{v}"),
            Self::I16(v) => write!(f, "{v}"),
            Self::U32(v) => write!(f, "{v}"),
            Self::I32(v) => write!(f, "{v}"),
            Self::F32(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::String(s) => write!(f, "{s:?}"),
            Self::Array(ty, items) => write!(f, "[{ty:?}; {}]", items.len()),
            Self::U64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v}"),
        }
    }
}

/// Where a tensor's bytes live and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one, i.e. the row length.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of all dimensions but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the (memory-mapped) file.
pub struct GgufFile {
    backing: Backing,
    /// Where the file came from (for error messages); `<memory>` for in-memory files.
    pub source: PathBuf,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetaValue)>,
    metadata_index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Alignment of the data section and of every tensor offset.
    pub alignment: u64,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("source", &self.source)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, then parses the header, metadata and tensor infos.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io_err)?;
        // SAFETY: the mapping is read-only and private to this process. If another process
        // truncates the file while it is mapped, reads could fault; that is the documented
        // limitation of every memory-mapped model loader and is accepted here so that weights
        // are not copied into memory.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        Self::parse(Backing::Mapped(map), path.to_path_buf())
    }

    /// Parses a GGUF image held in memory (tests, fuzzing, small files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(Backing::Owned(bytes), PathBuf::from("<memory>"))
    }

    fn parse(backing: Backing, source: PathBuf) -> Result<Self, GgufError> {
        let bytes = backing.bytes();
        let mut cur = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = cur.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = cur.u32("version")?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (this file is big-endian; convert it with a little-endian llama.cpp tool)"
            } else if version == 1 {
                " (version 1 used 32-bit counts; re-convert the model with a current llama.cpp)"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion { version, hint });
        }
        let tensor_count_at = cur.pos;
        let tensor_count = cur.u64("tensor count")?;
        let kv_count_at = cur.pos;
        let kv_count = cur.u64("metadata count")?;
        // Each key-value pair needs at least 8 (key length) + 4 (type) + 1 bytes, and each tensor
        // info at least 8 + 4 + 4 + 8 bytes.
        cur.check_count("metadata count", kv_count_at, kv_count, 13)?;
        cur.check_count("tensor count", tensor_count_at, tensor_count, 24)?;

        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut metadata_index = HashMap::with_capacity(kv_count as usize);
        for _ in 0..kv_count {
            let key_at = cur.pos;
            let key = cur.string("metadata key")?;
            let type_at = cur.pos;
            let type_id = cur.u32("metadata value type")?;
            let ty = MetaType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.clone(),
                offset: type_at as u64,
                type_id,
            })?;
            let value = cur.value(&key, ty, 0)?;
            if metadata_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey { key, offset: key_at as u64 });
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some(other) => {
                return Err(GgufError::BadAlignment {
                    found: format!("{other} ({})", other.type_name()),
                })
            }
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut tensor_index = HashMap::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = cur.string("tensor name")?;
            let n_dims_at = cur.pos;
            let n_dims = cur.u32("tensor dimension count")?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::BadTensor {
                    name,
                    problem: format!(
                        "{n_dims} dimensions at offset {n_dims_at}; ggml allows at most {MAX_DIMS}"
                    ),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(cur.u64("tensor dimension")?);
            }
            let type_id = cur.u32("tensor type")?;
            let offset = cur.u64("tensor data offset")?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::BadTensor {
                name: name.clone(),
                problem: format!(
                    "unknown ggml type id {type_id}; this reader knows ids 0-30, 34, 35 and 39-41 \
                     (a newer llama.cpp type?)"
                ),
            })?;
            let size = tensor_size(&name, &dims, ggml_type)?;
            if offset % alignment != 0 {
                return Err(GgufError::BadTensor {
                    name,
                    problem: format!(
                        "data offset {offset} is not a multiple of the alignment {alignment}"
                    ),
                });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::BadTensor { name, problem: "name appears twice".into() });
            }
            tensors.push(TensorInfo { name, dims, ggml_type, offset, size });
        }

        let data_offset = align_up(cur.pos as u64, alignment);
        let file_len = bytes.len() as u64;
        for t in &tensors {
            let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.size));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::BadTensor {
                        name: t.name.clone(),
                        problem: format!(
                            "data at file offset {} + {} bytes runs past the end of the file ({file_len} bytes); \
                             the file is truncated or the offset is wrong",
                            data_offset.saturating_add(t.offset),
                            t.size
                        ),
                    })
                }
            }
        }
        // A file with no tensors may end right after the header, before the padding.
        if !tensors.is_empty() && data_offset > file_len {
            return Err(GgufError::Truncated {
                what: "tensor data section".into(),
                offset: data_offset,
                need: 0,
                len: file_len,
            });
        }

        Ok(Self {
            backing,
            source,
            version,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The whole file image.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// Looks up a metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.into(), hint: String::new() })
    }

    /// A required unsigned integer value.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64().ok_or(GgufError::WrongType {
            key: key.into(),
            expected: "a non-negative integer",
            found: v.type_name(),
        })
    }

    /// A required float value (integers are accepted too).
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64().ok_or(GgufError::WrongType {
            key: key.into(),
            expected: "a number",
            found: v.type_name(),
        })
    }

    /// A required string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or(GgufError::WrongType {
            key: key.into(),
            expected: "a string",
            found: v.type_name(),
        })
    }

    /// A required array value.
    pub fn get_array(&self, key: &str) -> Result<&[MetaValue], GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or(GgufError::WrongType {
            key: key.into(),
            expected: "an array",
            found: v.type_name(),
        })
    }

    /// An optional value of one type: `Ok(None)` when absent, an error when present with
    /// another type (a wrong-typed key must not silently fall back to a default).
    fn optional<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl Fn(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).ok_or(GgufError::WrongType {
                key: key.into(),
                expected,
                found: v.type_name(),
            }),
        }
    }

    /// An optional string value.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.optional(key, "a string", MetaValue::as_str)
    }

    /// An optional float value (integers are accepted too).
    pub fn get_f64_opt(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.optional(key, "a number", MetaValue::as_f64)
    }

    /// An optional boolean value.
    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.optional(key, "a boolean", MetaValue::as_bool)
    }

    /// Looks up a tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor info and its bytes, or an error naming the missing tensor.
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8]), GgufError> {
        let info =
            self.tensor(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        Ok((info, self.data_of(info)?))
    }

    /// The bytes of a tensor. Infos from this file were bounds-checked when it was parsed; an
    /// info built elsewhere that points outside the file gives an error.
    pub fn data_of(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        let len = self.bytes().len() as u64;
        let start = self.data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(info.size)).filter(|&e| e <= len);
        match (start, end) {
            (Some(s), Some(e)) => Ok(&self.bytes()[s as usize..e as usize]),
            _ => Err(GgufError::Truncated {
                what: format!("data of tensor {:?}", info.name),
                offset: start.unwrap_or(u64::MAX),
                need: info.size,
                len,
            }),
        }
    }
}

fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment).saturating_mul(alignment)
}

fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, GgufError> {
    let bad = |problem: String| GgufError::BadTensor { name: name.into(), problem };
    let mut elements: u64 = 1;
    for &d in dims {
        elements = elements
            .checked_mul(d)
            .filter(|&e| i64::try_from(e).is_ok())
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow the element count")))?;
    }
    let row = dims.first().copied().unwrap_or(1);
    let block = ty.block_size();
    if row % block != 0 {
        return Err(bad(format!(
            "row length {row} is not a multiple of the {} block size {block}",
            ty.name()
        )));
    }
    (elements / block)
        .checked_mul(ty.type_size())
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow the byte size")))
}

/// A bounds-checked little-endian reader over the file image.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, what: &str, n: u64) -> Result<&'a [u8], GgufError> {
        let len = self.bytes.len() as u64;
        let end = (self.pos as u64).checked_add(n).filter(|&e| e <= len).ok_or_else(|| {
            GgufError::Truncated { what: what.into(), offset: self.pos as u64, need: n, len }
        })?;
        let out = &self.bytes[self.pos..end as usize];
        self.pos = end as usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(what, N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn check_count(
        &self,
        what: &str,
        offset: usize,
        count: u64,
        min_each: u64,
    ) -> Result<(), GgufError> {
        let need = u128::from(count) * u128::from(min_each);
        if need > u128::from(self.remaining()) {
            return Err(GgufError::AbsurdCount {
                what: what.into(),
                offset: offset as u64,
                count,
                need,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len_at = self.pos;
        let len = self.u64(what)?;
        self.check_count(&format!("{what} length"), len_at, len, 1)?;
        let at = self.pos as u64;
        let raw = self.take(what, len)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| GgufError::InvalidUtf8 { what: what.into(), offset: at })
    }

    fn value(&mut self, key: &str, ty: MetaType, depth: usize) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.array::<1>(key)?[0]),
            MetaType::I8 => MetaValue::I8(i8::from_le_bytes(self.array(key)?)),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            MetaType::U32 => MetaValue::U32(self.u32(key)?),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            MetaType::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(GgufError::UnknownValueType {
                            key: format!("{key} (bool byte {b} is neither 0 nor 1)"),
                            offset: at as u64,
                            type_id: MetaType::Bool as u32,
                        })
                    }
                }
            }
            MetaType::String => MetaValue::String(self.string(key)?),
            MetaType::U64 => MetaValue::U64(self.u64(key)?),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            MetaType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep { key: key.into() });
                }
                let type_at = self.pos;
                let type_id = self.u32(key)?;
                let elem = MetaType::from_id(type_id).ok_or_else(|| {
                    GgufError::UnknownValueType { key: key.into(), offset: type_at as u64, type_id }
                })?;
                let count_at = self.pos;
                let count = self.u64(key)?;
                self.check_count(
                    &format!("array {key:?}"),
                    count_at,
                    count,
                    elem.min_encoded_size(),
                )?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(key, elem, depth + 1)?);
                }
                MetaValue::Array(elem, items)
            }
        })
    }
}

/// Builds GGUF images in memory; used by tests and by the fuzz target's seed corpus.
#[derive(Debug, Default)]
pub struct GgufBuilder {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
    /// Version written into the header.
    pub version: u32,
}

impl GgufBuilder {
    /// An empty version-3 file.
    pub fn new() -> Self {
        Self { version: 3, ..Self::default() }
    }

    /// Adds a metadata pair.
    pub fn meta(mut self, key: &str, value: MetaValue) -> Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor with raw (already encoded) data.
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }

    /// Serialises the file.
    pub fn build(&self) -> Vec<u8> {
        let alignment = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT);
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_string(&mut out, k);
            out.extend_from_slice(&(value_type(v) as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            put_string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = align_up(offset + data.len() as u64, alignment);
        }
        let data_start = align_up(out.len() as u64, alignment) as usize;
        out.resize(data_start, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off as usize, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

fn value_type(v: &MetaValue) -> MetaType {
    match v {
        MetaValue::U8(_) => MetaType::U8,
        MetaValue::I8(_) => MetaType::I8,
        MetaValue::U16(_) => MetaType::U16,
        MetaValue::I16(_) => MetaType::I16,
        MetaValue::U32(_) => MetaType::U32,
        MetaValue::I32(_) => MetaType::I32,
        MetaValue::F32(_) => MetaType::F32,
        MetaValue::Bool(_) => MetaType::Bool,
        MetaValue::String(_) => MetaType::String,
        MetaValue::Array(..) => MetaType::Array,
        MetaValue::U64(_) => MetaType::U64,
        MetaValue::I64(_) => MetaType::I64,
        MetaValue::F64(_) => MetaType::F64,
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}
