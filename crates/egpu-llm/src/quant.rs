//! ggml tensor element types: block layouts, dequantization, and dot products that work on the
//! packed blocks directly.
//!
//! Block layouts are the ggml ones (`ggml-common.h`); every block is decoded from its bytes with
//! explicit little-endian reads, so nothing here depends on struct layout or alignment.

use std::fmt;

/// Errors from decoding tensor data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// The type is known (it has a size) but egpu cannot decode it.
    #[error(
        "tensor type {0} is not supported by egpu (supported: F32, F16, BF16, F64, I8, I16, I32, \
         Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K); re-quantize the \
         model to one of these"
    )]
    Unsupported(GgmlType),
    /// The byte slice does not hold a whole number of blocks for the element count.
    #[error("{ty} data: {elements} elements need {expected} bytes, got {got}")]
    SizeMismatch {
        /// Element type.
        ty: GgmlType,
        /// Number of elements asked for.
        elements: usize,
        /// Bytes the elements need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The element count is not a multiple of the block size.
    #[error("{ty}: {elements} elements is not a multiple of the block size {block}")]
    PartialBlock {
        /// Element type.
        ty: GgmlType,
        /// Number of elements asked for.
        elements: usize,
        /// Block size of the type.
        block: usize,
    },
}

macro_rules! ggml_types {
    ($($variant:ident = $id:literal, $name:literal, $block:literal, $size:literal;)*) => {
        /// A ggml tensor element type (`enum ggml_type`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum GgmlType {
            $(
                #[doc = concat!("`GGML_TYPE_", $name, "` (id ", stringify!($id), ")")]
                $variant,
            )*
        }

        impl GgmlType {
            /// Every type this reader knows, in id order.
            pub const ALL: &'static [GgmlType] = &[$(GgmlType::$variant),*];

            /// The type for a ggml type id.
            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The ggml type id.
            pub fn id(self) -> u32 {
                match self { $(Self::$variant => $id,)* }
            }

            /// The name as ggml spells it (`Q4_K`, `BF16`, ...).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Elements per block.
            pub fn block_size(self) -> u64 {
                match self { $(Self::$variant => $block,)* }
            }

            /// Bytes per block.
            pub fn type_size(self) -> u64 {
                match self { $(Self::$variant => $size,)* }
            }
        }
    };
}

ggml_types! {
    F32 = 0, "F32", 1, 4;
    F16 = 1, "F16", 1, 2;
    Q4_0 = 2, "Q4_0", 32, 18;
    Q4_1 = 3, "Q4_1", 32, 20;
    Q5_0 = 6, "Q5_0", 32, 22;
    Q5_1 = 7, "Q5_1", 32, 24;
    Q8_0 = 8, "Q8_0", 32, 34;
    Q8_1 = 9, "Q8_1", 32, 36;
    Q2_K = 10, "Q2_K", 256, 84;
    Q3_K = 11, "Q3_K", 256, 110;
    Q4_K = 12, "Q4_K", 256, 144;
    Q5_K = 13, "Q5_K", 256, 176;
    Q6_K = 14, "Q6_K", 256, 210;
    Q8_K = 15, "Q8_K", 256, 292;
    IQ2_XXS = 16, "IQ2_XXS", 256, 66;
    IQ2_XS = 17, "IQ2_XS", 256, 74;
    IQ3_XXS = 18, "IQ3_XXS", 256, 98;
    IQ1_S = 19, "IQ1_S", 256, 50;
    IQ4_NL = 20, "IQ4_NL", 32, 18;
    IQ3_S = 21, "IQ3_S", 256, 110;
    IQ2_S = 22, "IQ2_S", 256, 82;
    IQ4_XS = 23, "IQ4_XS", 256, 136;
    I8 = 24, "I8", 1, 1;
    I16 = 25, "I16", 1, 2;
    I32 = 26, "I32", 1, 4;
    I64 = 27, "I64", 1, 8;
    F64 = 28, "F64", 1, 8;
    IQ1_M = 29, "IQ1_M", 256, 56;
    BF16 = 30, "BF16", 1, 2;
    TQ1_0 = 34, "TQ1_0", 256, 54;
    TQ2_0 = 35, "TQ2_0", 256, 66;
    MXFP4 = 39, "MXFP4", 32, 17;
    NVFP4 = 40, "NVFP4", 64, 36;
    Q1_0 = 41, "Q1_0", 128, 18;
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl GgmlType {
    /// Whether egpu can dequantize this type and take dot products with it.
    pub fn is_supported(self) -> bool {
        block_kernel(self).is_some()
    }

    /// Bytes needed for `elements` elements, if `elements` is a whole number of blocks.
    pub fn bytes_for(self, elements: usize) -> Result<usize, QuantError> {
        let block = self.block_size() as usize;
        if !elements.is_multiple_of(block) {
            return Err(QuantError::PartialBlock { ty: self, elements, block });
        }
        Ok(elements / block * self.type_size() as usize)
    }
}

/// Converts IEEE half-precision bits to f32 (exact; handles subnormals, infinities and NaN).
///
/// Branch-free: shifting the exponent and mantissa into f32 position and multiplying by 2^112
/// rebiases normals and normalizes subnormals in one step; infinities and NaNs are patched with
/// a select.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let scaled = f32::from_bits(em << 13) * f32::from_bits(0x7780_0000); // 2^112
    let bits = if em >= 0x7c00 { 0x7f80_0000 | ((em & 0x3ff) << 13) } else { scaled.to_bits() };
    f32::from_bits(bits | sign)
}

/// Converts f32 to IEEE half-precision bits, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = u32::from(rem > mid || (rem == mid && half & 1 == 1));
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    let round = u32::from(rem > 0x1000 || (rem == 0x1000 && half & 1 == 1));
    sign | (half + round) as u16
}

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Decodes one block of `ty` (given as exactly `type_size` bytes) into `block_size` floats.
type BlockDecoder = fn(&[u8], &mut [f32]);

fn block_kernel(ty: GgmlType) -> Option<BlockDecoder> {
    Some(match ty {
        GgmlType::F32 => |b, o| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, o| o[0] = f16_at(b, 0),
        GgmlType::BF16 => {
            |b, o| o[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }
        GgmlType::F64 => |b, o| {
            o[0] = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32;
        },
        GgmlType::I8 => |b, o| o[0] = f32::from(b[0] as i8),
        GgmlType::I16 => |b, o| o[0] = f32::from(i16::from_le_bytes([b[0], b[1]])),
        GgmlType::I32 => |b, o| o[0] = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
        GgmlType::Q4_0 => dequant_q4_0,
        GgmlType::Q4_1 => dequant_q4_1,
        GgmlType::Q5_0 => dequant_q5_0,
        GgmlType::Q5_1 => dequant_q5_1,
        GgmlType::Q8_0 => dequant_q8_0,
        GgmlType::Q2_K => dequant_q2_k,
        GgmlType::Q3_K => dequant_q3_k,
        GgmlType::Q4_K => dequant_q4_k,
        GgmlType::Q5_K => dequant_q5_k,
        GgmlType::Q6_K => dequant_q6_k,
        GgmlType::Q8_K => dequant_q8_k,
        _ => return None,
    })
}

fn dequant_q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        o[j] = (f32::from(qs[j] & 0xf) - 8.0) * d;
        o[j + 16] = (f32::from(qs[j] >> 4) - 8.0) * d;
    }
}

fn dequant_q4_1(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        o[j] = f32::from(qs[j] & 0xf) * d + m;
        o[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

fn dequant_q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        o[j] = ((u32::from(qs[j] & 0xf) | h0) as i32 - 16) as f32 * d;
        o[j + 16] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn dequant_q5_1(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        o[j] = (u32::from(qs[j] & 0xf) | h0) as f32 * d + m;
        o[j + 16] = (u32::from(qs[j] >> 4) | h1) as f32 * d + m;
    }
}

fn dequant_q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for (out, &q) in o[..32].iter_mut().zip(&b[2..34]) {
        *out = f32::from(q as i8) * d;
    }
}

fn dequant_q2_k(b: &[u8], o: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    let mut out = 0;
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for sub in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0xf);
                let ml = dmin * f32::from(sc >> 4);
                for l in 0..16 {
                    o[out] = dl * f32::from((q[sub * 16 + l] >> shift) & 3) - ml;
                    out += 1;
                }
            }
        }
    }
}

pub(crate) fn q3_k_scales(raw: &[u8]) -> [i8; 16] {
    // Twelve bytes hold sixteen 6-bit scales: low nibbles in bytes 0-7, high two bits in 8-11.
    let mut out = [0i8; 16];
    for (i, s) in out.iter_mut().enumerate() {
        let low = if i < 8 { raw[i] & 0xf } else { raw[i - 8] >> 4 };
        let high = (raw[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = ((low | (high << 4)) as i8).wrapping_sub(32);
    }
    out
}

fn dequant_q3_k(b: &[u8], o: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for sub in 0..2 {
                let dl = d * f32::from(scales[is]);
                is += 1;
                for l in 0..16 {
                    let i = sub * 16 + l;
                    let low = i32::from((q[i] >> shift) & 3);
                    let high = if hmask[i] & m != 0 { 0 } else { 4 };
                    o[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, from the 12 packed bytes.
#[inline]
pub(crate) fn k4_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn dequant_q4_k(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let (sc1, m1) = k4_scale_min(2 * chunk, scales);
        let (sc2, m2) = k4_scale_min(2 * chunk + 1, scales);
        let (d1, min1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, min2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let base = chunk * 64;
        for l in 0..32 {
            o[base + l] = d1 * f32::from(q[l] & 0xf) - min1;
            o[base + 32 + l] = d2 * f32::from(q[l] >> 4) - min2;
        }
    }
}

fn dequant_q5_k(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let (sc1, m1) = k4_scale_min(2 * chunk, scales);
        let (sc2, m2) = k4_scale_min(2 * chunk + 1, scales);
        let (d1, min1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, min2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let base = chunk * 64;
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            o[base + l] = d1 * f32::from((q[l] & 0xf) + h1) - min1;
            o[base + 32 + l] = d2 * f32::from((q[l] >> 4) + h2) - min2;
        }
    }
}

fn dequant_q6_k(b: &[u8], o: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let base = half * 128;
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            o[base + l] = d * f32::from(sc[is] as i8) * q1 as f32;
            o[base + l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
            o[base + l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
            o[base + l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
        }
    }
}

fn dequant_q8_k(b: &[u8], o: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (out, &q) in o[..256].iter_mut().zip(&b[4..260]) {
        *out = f32::from(q as i8) * d;
    }
}

fn check_sizes(ty: GgmlType, data: &[u8], elements: usize) -> Result<BlockDecoder, QuantError> {
    let kernel = block_kernel(ty).ok_or(QuantError::Unsupported(ty))?;
    let expected = ty.bytes_for(elements)?;
    if data.len() != expected {
        return Err(QuantError::SizeMismatch { ty, elements, expected, got: data.len() });
    }
    Ok(kernel)
}

/// Dequantizes `data` (packed `ty` blocks) into `out`; `out.len()` is the element count.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let kernel = check_sizes(ty, data, out.len())?;
    let block = ty.block_size() as usize;
    for (bytes, o) in data.chunks_exact(ty.type_size() as usize).zip(out.chunks_exact_mut(block)) {
        kernel(bytes, o);
    }
    Ok(())
}

/// Dequantizes into a new vector of `elements` floats.
pub fn dequantize_to_vec(
    ty: GgmlType,
    data: &[u8],
    elements: usize,
) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0.0; elements];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}

/// A row decoder checked once for a type and row length, so that the hot loop needs no checks.
#[derive(Clone, Copy)]
pub struct RowKernel {
    ty: GgmlType,
    decode: BlockDecoder,
    row_len: usize,
    row_bytes: usize,
}

impl fmt::Debug for RowKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowKernel")
            .field("ty", &self.ty)
            .field("row_len", &self.row_len)
            .field("row_bytes", &self.row_bytes)
            .finish()
    }
}

impl RowKernel {
    /// A kernel for rows of `row_len` elements of type `ty`.
    pub fn new(ty: GgmlType, row_len: usize) -> Result<Self, QuantError> {
        let decode = block_kernel(ty).ok_or(QuantError::Unsupported(ty))?;
        let row_bytes = ty.bytes_for(row_len)?;
        Ok(Self { ty, decode, row_len, row_bytes })
    }

    /// Element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Elements per row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Decodes one row. `row.len()` must be `row_bytes()` and `out.len()` `row_len()`.
    pub fn dequantize_row(&self, row: &[u8], out: &mut [f32]) {
        let block = self.ty.block_size() as usize;
        for (bytes, o) in
            row.chunks_exact(self.ty.type_size() as usize).zip(out.chunks_exact_mut(block))
        {
            (self.decode)(bytes, o);
        }
    }

    /// `out[i]` = dot product of packed row `i` of `rows` with `x`, for `out.len()` rows
    /// (the decode path: weights stay packed, each block is decoded in registers).
    pub fn dot_rows(&self, rows: &[u8], x: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::qdot::Isa::host().has_avx2() {
            // SAFETY: `dot_rows_avx2` only requires AVX2 and FMA, which `Isa::host` found (once)
            // on this CPU.
            unsafe { self.dot_rows_avx2(rows, x, out) };
            return;
        }
        self.dot_rows_body::<false>(rows, x, out);
    }

    /// The same safe code as `dot_rows_body`, compiled for 8-wide AVX2 vectors and fused
    /// multiply-adds instead of the 4-wide SSE2 baseline (no global `-C target-cpu` needed).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dot_rows_avx2(&self, rows: &[u8], x: &[f32], out: &mut [f32]) {
        self.dot_rows_body::<true>(rows, x, out);
    }

    #[inline(always)]
    fn dot_rows_body<const FMA: bool>(&self, rows: &[u8], x: &[f32], out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(self.row_bytes)) {
            *o = self.dot_with::<FMA>(row, x);
        }
    }

    /// The prefill path: for each packed row `r` of `rows`, decodes it once and writes its dot
    /// product with each of the `xs.len() / row_len()` token rows of `xs` to
    /// `out[r * tokens + t]`. Rows go four at a time so that each token row is read once per
    /// four weight rows; `scratch` must hold `4 * row_len()` floats.
    pub fn dot_rows_tokens(&self, rows: &[u8], xs: &[f32], scratch: &mut [f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::qdot::Isa::host().has_avx2() {
            // SAFETY: `dot_rows_tokens_avx2` only requires AVX2 and FMA, which `Isa::host` found
            // (once) on this CPU.
            unsafe { self.dot_rows_tokens_avx2(rows, xs, scratch, out) };
            return;
        }
        self.dot_rows_tokens_body::<false>(rows, xs, scratch, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dot_rows_tokens_avx2(&self, rows: &[u8], xs: &[f32], scratch: &mut [f32], out: &mut [f32]) {
        self.dot_rows_tokens_body::<true>(rows, xs, scratch, out);
    }

    #[inline(always)]
    fn dot_rows_tokens_body<const FMA: bool>(
        &self,
        rows: &[u8],
        xs: &[f32],
        scratch: &mut [f32],
        out: &mut [f32],
    ) {
        let n = self.row_len;
        let tokens = xs.len() / n;
        if tokens == 0 || scratch.len() < 4 * n {
            return;
        }
        let rb = self.row_bytes;
        let n_rows = (rows.len() / rb).min(out.len() / tokens);
        let mut r = 0;
        while r + 4 <= n_rows {
            for (i, w) in scratch[..4 * n].chunks_exact_mut(n).enumerate() {
                self.dequantize_row(&rows[(r + i) * rb..(r + i + 1) * rb], w);
            }
            let (w0, rest) = scratch[..4 * n].split_at(n);
            let (w1, rest) = rest.split_at(n);
            let (w2, w3) = rest.split_at(n);
            for (t, x) in xs.chunks_exact(n).enumerate() {
                let d = dot4_f32::<FMA>([w0, w1, w2, w3], x);
                for (i, v) in d.iter().enumerate() {
                    out[(r + i) * tokens + t] = *v;
                }
            }
            r += 4;
        }
        for r in r..n_rows {
            self.dequantize_row(&rows[r * rb..(r + 1) * rb], &mut scratch[..n]);
            for (t, x) in xs.chunks_exact(n).enumerate() {
                out[r * tokens + t] = dot_f32(&scratch[..n], x);
            }
        }
    }

    /// Dot product of one packed row with `x` (`x.len()` must be `row_len()`).
    #[inline(always)]
    pub fn dot(&self, row: &[u8], x: &[f32]) -> f32 {
        self.dot_with::<false>(row, x)
    }

    #[inline(always)]
    fn dot_with<const FMA: bool>(&self, row: &[u8], x: &[f32]) -> f32 {
        debug_assert_eq!(row.len(), self.row_bytes);
        debug_assert_eq!(x.len(), self.row_len);
        match self.ty {
            GgmlType::Q4_0 => dot_q4_0::<FMA>(row, x),
            GgmlType::Q4_1 => dot_q4_1::<FMA>(row, x),
            GgmlType::Q5_0 => dot_q5_0::<FMA>(row, x),
            GgmlType::Q5_1 => dot_q5_1::<FMA>(row, x),
            GgmlType::Q8_0 => dot_q8_0::<FMA>(row, x),
            GgmlType::F32 => dot_f32_bytes(row, x),
            _ => self.dot_by_blocks(row, x),
        }
    }

    /// Generic path: decode one block at a time into a stack buffer and accumulate.
    #[inline(always)]
    fn dot_by_blocks(&self, row: &[u8], x: &[f32]) -> f32 {
        let block = self.ty.block_size() as usize;
        let mut buf = [0f32; 256];
        let mut acc = 0f32;
        for (bytes, xs) in row.chunks_exact(self.ty.type_size() as usize).zip(x.chunks_exact(block))
        {
            let b = &mut buf[..block];
            (self.decode)(bytes, b);
            acc += dot_f32(b, xs);
        }
        acc
    }
}

#[inline(always)]
fn fused<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    // `mul_add` is one instruction where FMA is enabled and a slow library call elsewhere.
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Four dot products of equal-length rows with one `x`, reading `x` once.
#[inline(always)]
fn dot4_f32<const FMA: bool>(w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    let n = x.len();
    let (xc, xr) = x.as_chunks::<16>();
    let (w0, _) = w[0][..n].as_chunks::<16>();
    let (w1, _) = w[1][..n].as_chunks::<16>();
    let (w2, _) = w[2][..n].as_chunks::<16>();
    let (w3, _) = w[3][..n].as_chunks::<16>();
    let (mut a0, mut a1, mut a2, mut a3) = ([0f32; 16], [0f32; 16], [0f32; 16], [0f32; 16]);
    for i in 0..xc.len().min(w0.len()).min(w1.len()).min(w2.len()).min(w3.len()) {
        let xv = &xc[i];
        for l in 0..16 {
            a0[l] = fused::<FMA>(w0[i][l], xv[l], a0[l]);
            a1[l] = fused::<FMA>(w1[i][l], xv[l], a1[l]);
            a2[l] = fused::<FMA>(w2[i][l], xv[l], a2[l]);
            a3[l] = fused::<FMA>(w3[i][l], xv[l], a3[l]);
        }
    }
    let tail = n - xr.len();
    let mut out = [0f32; 4];
    for (o, (a, row)) in out.iter_mut().zip([a0, a1, a2, a3].iter().zip(w)) {
        *o = a.iter().sum::<f32>() + row[tail..n].iter().zip(xr).map(|(p, q)| p * q).sum::<f32>();
    }
    out
}

/// f32 dot product with sixteen independent lanes so that the compiler vectorizes it.
#[inline(always)]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ac, ar) = a[..n].as_chunks::<16>();
    let (bc, br) = b[..n].as_chunks::<16>();
    let mut acc = [0f32; 16];
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

#[inline(always)]
fn dot_f32_bytes(row: &[u8], x: &[f32]) -> f32 {
    let (rc, _) = row.as_chunks::<4>();
    let mut acc = [0f32; 8];
    for (i, (w, xv)) in rc.iter().zip(x).enumerate() {
        acc[i % 8] += f32::from_le_bytes(*w) * xv;
    }
    acc.iter().sum()
}

/// Decoder of one 32-element block of `N` bytes. A trait (rather than a function argument) so
/// that the call is static and always inlined into the vectorized loop.
trait Decode32<const N: usize> {
    fn decode(b: &[u8; N], w: &mut [f32; 32]);
}

/// Lane-parallel accumulation for the 32-element block formats: `lanes[j]` collects
/// contributions of elements `j` and `j + 16` of every block; one horizontal sum at the end.
#[inline(always)]
fn dot_blocks32<const N: usize, D: Decode32<N>, const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let (blocks, _) = row.as_chunks::<N>();
    let (xs, _) = x.as_chunks::<32>();
    let mut lanes = [0f32; 16];
    let mut w = [0f32; 32];
    for (b, xb) in blocks.iter().zip(xs) {
        D::decode(b, &mut w);
        for j in 0..16 {
            lanes[j] = fused::<FMA>(w[j + 16], xb[j + 16], fused::<FMA>(w[j], xb[j], lanes[j]));
        }
    }
    lanes.iter().sum()
}

struct BlockQ40;

impl Decode32<18> for BlockQ40 {
    #[inline(always)]
    fn decode(b: &[u8; 18], w: &mut [f32; 32]) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            w[j] = (f32::from(b[2 + j] & 0xf) - 8.0) * d;
            w[j + 16] = (f32::from(b[2 + j] >> 4) - 8.0) * d;
        }
    }
}

#[inline(always)]
fn dot_q4_0<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    dot_blocks32::<18, BlockQ40, FMA>(row, x)
}

struct BlockQ41;

impl Decode32<20> for BlockQ41 {
    #[inline(always)]
    fn decode(b: &[u8; 20], w: &mut [f32; 32]) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for j in 0..16 {
            w[j] = f32::from(b[4 + j] & 0xf) * d + m;
            w[j + 16] = f32::from(b[4 + j] >> 4) * d + m;
        }
    }
}

#[inline(always)]
fn dot_q4_1<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    dot_blocks32::<20, BlockQ41, FMA>(row, x)
}

struct BlockQ50;

impl Decode32<22> for BlockQ50 {
    #[inline(always)]
    fn decode(b: &[u8; 22], w: &mut [f32; 32]) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            w[j] = ((u32::from(b[6 + j] & 0xf) | h0) as f32 - 16.0) * d;
            w[j + 16] = ((u32::from(b[6 + j] >> 4) | h1) as f32 - 16.0) * d;
        }
    }
}

#[inline(always)]
fn dot_q5_0<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    dot_blocks32::<22, BlockQ50, FMA>(row, x)
}

struct BlockQ51;

impl Decode32<24> for BlockQ51 {
    #[inline(always)]
    fn decode(b: &[u8; 24], w: &mut [f32; 32]) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            w[j] = (u32::from(b[8 + j] & 0xf) | h0) as f32 * d + m;
            w[j + 16] = (u32::from(b[8 + j] >> 4) | h1) as f32 * d + m;
        }
    }
}

#[inline(always)]
fn dot_q5_1<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    dot_blocks32::<24, BlockQ51, FMA>(row, x)
}

struct BlockQ80;

impl Decode32<34> for BlockQ80 {
    #[inline(always)]
    fn decode(b: &[u8; 34], w: &mut [f32; 32]) {
        let d = f16_at(b, 0);
        for j in 0..32 {
            w[j] = f32::from(b[2 + j] as i8) * d;
        }
    }
}

#[inline(always)]
fn dot_q8_0<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    dot_blocks32::<34, BlockQ80, FMA>(row, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        // Every finite half survives a round trip through f32.
        for h in 0..=0xffffu16 {
            let f = f16_to_f32(h);
            if f.is_finite() {
                assert_eq!(f32_to_f16(f), h, "half {h:#06x}");
            }
        }
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00, "ties round to even");
    }

    #[test]
    fn q8_0_block_decodes_by_hand() {
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f32_to_f16(0.5).to_le_bytes());
        for i in 0..32 {
            block[2 + i] = (i as i8 - 16) as u8;
        }
        let out = dequantize_to_vec(GgmlType::Q8_0, &block, 32).unwrap();
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, (i as f32 - 16.0) * 0.5);
        }
    }

    #[test]
    fn size_errors_are_reported() {
        assert_eq!(
            dequantize_to_vec(GgmlType::Q4_0, &[0; 17], 32),
            Err(QuantError::SizeMismatch {
                ty: GgmlType::Q4_0,
                elements: 32,
                expected: 18,
                got: 17
            })
        );
        assert_eq!(
            dequantize_to_vec(GgmlType::Q4_K, &[0; 144], 100),
            Err(QuantError::PartialBlock { ty: GgmlType::Q4_K, elements: 100, block: 256 })
        );
        assert_eq!(
            dequantize_to_vec(GgmlType::IQ2_XXS, &[0; 66], 256),
            Err(QuantError::Unsupported(GgmlType::IQ2_XXS))
        );
    }

    #[test]
    fn ids_round_trip() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None, "Q4_2 was removed from ggml");
    }
}
