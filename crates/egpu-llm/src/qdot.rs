//! Integer dot products of packed weights with quantized activations: [`dot_rows_q`] for the
//! decode path (one token), [`dot_rows_tokens_q`] for many tokens per weight read. (The CPU
//! backend's prefill multiplies decoded f32 rows instead: on this AVX-512 machine that measured
//! 18-26 GMAC/s per core against 9-18 for the blocked integer kernel.)
//!
//! Activations are quantized once per matrix product, in blocks of 32, to two 16-bit quants per
//! element (a coarse quant and its rounding residual at 2^-16 of the step). Every weight type
//! is unpacked, a chunk of up to 256 elements at a time, to 16-bit integers with its integer
//! sub-block scales folded in, a float scale per 32 elements and a float offset per 16:
//!
//! `Σ (d·w + o)·x = Σ_g d_g·e_g·(Σ w·q + Σ w·r / 65536) + Σ_k o_k·s_k`
//!
//! where `x ≈ e_g·(q + r/65536)` in group `g` and `s_k` is the sum of `x` over the 16 elements
//! of half-block `k`. Every integer sum is exact (|w| ≤ 4096 for Q6_K, |q|, |r| ≤ 32767), so
//! the kernels differ from the exact value only by float rounding.
//!
//! Why not 8-bit activations like ggml: the hidden states of these models carry outliers
//! 5-10× the typical magnitude, and on SmolLM2 8-bit blocks moved logits by up to 0.6 (16-bit:
//! 3e-3) and changed greedy tokens. With the residual the activations keep about 31 bits per
//! block.
//!
//! Supported weight types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. The
//! instruction set is chosen once ([`Isa::host`]); the scalar kernels are safe Rust and the
//! reference the SIMD kernels are tested against. Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 keep
//! hand-fused AVX2 decode kernels that skip the unpacking step.

use std::sync::OnceLock;

use crate::quant::{f16_to_f32, k4_scale_min, q3_k_scales, GgmlType};

/// Elements per activation block.
pub const QK: usize = 32;

/// Largest quant.
const QMAX: f32 = 32767.0;

/// Scale of the residual quants relative to the coarse ones.
const RESIDUAL_SCALE: f32 = 1.0 / 65536.0;

/// One quantized block: the coarse quants, then the residual quants.
type Block = [i16; 2 * QK];

/// Elements of one unpacked weight chunk (a K-quant super-block, or eight 32-element blocks).
const CHUNK: usize = 256;

/// Groups of [`QK`] elements in a chunk.
const GROUPS: usize = CHUNK / QK;

/// Tokens whose accumulators a prefill tile keeps: the tile's activations (4 bytes per element)
/// stay in the L2 cache while the weight chunks are reused across them.
const TOKEN_TILE: usize = 32;

/// The instruction set the kernels use, chosen once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa(Level);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Isa {
    /// The best instruction set this CPU has, detected on the first call and cached.
    pub fn host() -> Isa {
        static HOST: OnceLock<Isa> = OnceLock::new();
        *HOST.get_or_init(|| *Isa::available().last().unwrap_or(&Isa(Level::Scalar)))
    }

    /// The portable safe-Rust kernels.
    pub fn scalar() -> Isa {
        Isa(Level::Scalar)
    }

    /// Every instruction set this CPU can run, slowest first (tests compare them all).
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa(Level::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                v.push(Isa(Level::Avx2));
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    v.push(Isa(Level::Avx512Vnni));
                }
            }
        }
        v
    }

    /// Whether this is an AVX2-or-better x86-64 level (the f32 helpers use 8-wide vectors).
    pub fn has_avx2(self) -> bool {
        self.0 != Level::Scalar
    }

    /// Short name for logs and benchmarks.
    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// Activation rows quantized to blocks of [`QK`] elements, each `x ≈ d·(q + r/65536)` with
/// 16-bit `q` and `r`.
#[derive(Debug, Clone, Default)]
pub struct QActivations {
    qs: Vec<Block>,
    d: Vec<f32>,
    /// Sum of each block's values.
    s: Vec<f32>,
    /// Sum of each half-block's values, two per block, then [`CHUNK`] / 16 zeros so that a
    /// kernel may read a whole chunk's worth past the last block.
    s16: Vec<f32>,
    /// Blocks per row.
    nb: usize,
    rows: usize,
}

/// Rounds to the nearest integer (ties to even) for |v| < 2^22 by adding 1.5·2^23, whose low
/// mantissa bits are then the integer: a plain expression the compiler vectorizes (`round` is a
/// libm call on the x86-64 baseline).
#[inline(always)]
fn round_i32(v: f32) -> i32 {
    (v + 12_582_912.0).to_bits() as i32 - 0x4b40_0000
}

impl QActivations {
    /// An empty buffer; [`QActivations::quantize`] sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes one row `x` (`x.len()` a multiple of [`QK`]; a trailing partial block is
    /// ignored), reusing the buffers.
    pub fn quantize(&mut self, x: &[f32]) {
        self.quantize_rows(x, 1);
    }

    /// Quantizes `rows` rows of `x.len() / rows` elements each, reusing the buffers (no
    /// allocation once they have grown to the size): per block `d = max|x| / 32767`,
    /// `q = round(x / d)`, `r = round((x - d·q) / d · 65536)`.
    pub fn quantize_rows(&mut self, x: &[f32], rows: usize) {
        let width = x.len().checked_div(rows).unwrap_or(0);
        let nb = width / QK;
        let total = nb * rows;
        self.nb = nb;
        self.rows = rows;
        self.qs.resize(total, [0; 2 * QK]);
        self.d.resize(total, 0.0);
        self.s.resize(total, 0.0);
        self.s16.clear();
        self.s16.resize(2 * total + CHUNK / 16, 0.0);
        for r in 0..rows {
            let row = &x[r * width..r * width + nb * QK];
            let (xb, _) = row.as_chunks::<QK>();
            let at = r * nb;
            let blocks = xb
                .iter()
                .zip(&mut self.qs[at..at + nb])
                .zip(&mut self.d[at..at + nb])
                .zip(&mut self.s[at..at + nb])
                .zip(self.s16[2 * at..2 * (at + nb)].as_chunks_mut::<2>().0);
            for ((((xs, qs), d), s), s16) in blocks {
                quantize_block(xs, qs, d, s, s16);
            }
        }
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        self.qs.len() * QK
    }

    /// Whether no elements are held.
    pub fn is_empty(&self) -> bool {
        self.qs.is_empty()
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn width(&self) -> usize {
        self.nb * QK
    }

    /// The dequantized values (for tests and error measurements).
    pub fn dequantize(&self) -> Vec<f32> {
        let blocks = self.qs.iter().zip(&self.d);
        blocks
            .flat_map(|(b, &d)| {
                let (q, r) = b.split_at(QK);
                q.iter()
                    .zip(r)
                    .map(move |(&q, &r)| (f64::from(q) + f64::from(r) / 65536.0) as f32 * d)
            })
            .collect()
    }
}

#[inline(always)]
fn quantize_block(xs: &[f32; QK], qs: &mut Block, d: &mut f32, s: &mut f32, s16: &mut [f32; 2]) {
    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = amax / QMAX;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let (coarse, fine) = qs.split_at_mut(QK);
    let mut sums = [(0i32, 0i32); 2];
    for (i, ((q, r), &v)) in coarse.iter_mut().zip(fine.iter_mut()).zip(xs).enumerate() {
        // |v · inv| <= 32767 up to the rounding of `inv`; clamp the last ulp.
        let y = (v * inv).clamp(-QMAX, QMAX);
        let qi = round_i32(y);
        // `y - qi` is exact (Sterbenz), |y - qi| <= 1/2, so |ri| <= 32768.
        let ri = round_i32((y - qi as f32) * 65536.0).clamp(-32767, 32767);
        *q = qi as i16;
        *r = ri as i16;
        sums[i / 16].0 += qi;
        sums[i / 16].1 += ri;
    }
    *d = scale;
    for (h, &(sq, sr)) in s16.iter_mut().zip(&sums) {
        *h = scale * (sq as f32 + sr as f32 * RESIDUAL_SCALE);
    }
    *s = scale * ((sums[0].0 + sums[1].0) as f32 + (sums[0].1 + sums[1].1) as f32 * RESIDUAL_SCALE);
}

/// Whether [`dot_rows_q`] and [`dot_rows_tokens_q`] handle `ty`.
pub fn supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K)
}

/// `out[i]` = dot product of packed row `i` of `rows` (each `row_bytes` long, type `ty`) with
/// the single row `x`, for `out.len()` rows. `ty` must be one [`supports`] accepts, and `x`
/// must hold exactly the row length.
pub fn dot_rows_q(
    isa: Isa,
    ty: GgmlType,
    rows: &[u8],
    row_bytes: usize,
    x: &QActivations,
    out: &mut [f32],
) {
    // A type without an integer kernel would otherwise produce zeros, silently.
    assert!(supports(ty), "dot_rows_q called with {ty:?}, which has no integer kernel");
    debug_assert_eq!(ty.bytes_for(x.width()), Ok(row_bytes));
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 | Level::Avx512Vnni
            if matches!(
                ty,
                GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0
            ) =>
        {
            // SAFETY: an `Isa` above Scalar is only made by `Isa::available`, after checking
            // that the CPU has AVX2, FMA and F16C, the only requirements of `avx2::dot_rows`.
            unsafe { avx2::dot_rows(ty, rows, row_bytes, x, out) }
        }
        _ => dot_rows_tokens_q(isa, ty, rows, row_bytes, x, out),
    }
}

/// The prefill product: for each packed row `r` of `rows` and each activation row `t` of `xs`,
/// `out[r * xs.rows() + t]` = their dot product, for `out.len() / xs.rows()` rows. Each weight
/// chunk is unpacked once per tile of tokens and four weight rows share every activation load.
pub fn dot_rows_tokens_q(
    isa: Isa,
    ty: GgmlType,
    rows: &[u8],
    row_bytes: usize,
    xs: &QActivations,
    out: &mut [f32],
) {
    assert!(supports(ty), "dot_rows_tokens_q called with {ty:?}, which has no integer kernel");
    debug_assert_eq!(ty.bytes_for(xs.width()), Ok(row_bytes));
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => {
            // SAFETY: `Isa(Level::Avx2)` is only made by `Isa::available` after checking for
            // AVX2, FMA and F16C, which is all `avx2::rows_tokens` needs.
            unsafe { avx2::rows_tokens(ty, rows, row_bytes, xs, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vnni => {
            // SAFETY: `Isa(Level::Avx512Vnni)` is only made by `Isa::available` after checking
            // for AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI, which `rows_tokens_vnni` needs.
            unsafe { avx2::rows_tokens_vnni(ty, rows, row_bytes, xs, out) }
        }
        Level::Scalar => rows_tokens_scalar(ty, rows, row_bytes, xs, out),
    }
}

/// Up to [`CHUNK`] weights of one row, unpacked: integer weights with the integer sub-block
/// scales folded in, a float scale per group of 32 and a float offset per 16 elements (zero
/// past the last group).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Chunk {
    w: [i16; CHUNK],
    dg: [f32; GROUPS],
    off: [f32; 2 * GROUPS],
    groups: usize,
}

impl Chunk {
    const ZERO: Chunk =
        Chunk { w: [0; CHUNK], dg: [0.0; GROUPS], off: [0.0; 2 * GROUPS], groups: 0 };
}

/// Bytes of one chunk of `ty` (a K-quant super-block or eight 32-element blocks).
fn chunk_bytes(ty: GgmlType) -> usize {
    let size = ty.type_size() as usize;
    if ty.block_size() as usize == CHUNK {
        size
    } else {
        GROUPS * size
    }
}

/// Whether `ty` has per-sub-block offsets (mins), which need the half-block sums.
fn has_offsets(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_1 | Q5_1 | Q2_K | Q4_K | Q5_K)
}

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Unpacks the 32-element blocks of `bytes` (at most eight of `N` bytes each) with `f`, which
/// fills a block's 32 weights and returns its scale and offset.
#[inline(always)]
fn unpack32<const N: usize>(
    bytes: &[u8],
    c: &mut Chunk,
    f: impl Fn(&[u8; N], &mut [i16; 32]) -> (f32, f32),
) {
    let (blocks, _) = bytes.as_chunks::<N>();
    let groups = blocks.len().min(GROUPS);
    c.groups = groups;
    let (ws, _) = c.w.as_chunks_mut::<32>();
    for (g, (b, w)) in blocks.iter().zip(ws.iter_mut()).enumerate() {
        let (d, m) = f(b, w);
        c.dg[g] = d;
        c.off[2 * g] = m;
        c.off[2 * g + 1] = m;
    }
    c.off[2 * groups..].fill(0.0);
}

/// The five high bits of a Q5_0/Q5_1 block as the bit-4 value of each element.
#[inline(always)]
fn q5_weights(qh: u32, qs: &[u8], w: &mut [i16; 32], bias: i16) {
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        w[j] = i16::from((qs[j] & 0xf) | h0) - bias;
        w[j + 16] = i16::from((qs[j] >> 4) | h1) - bias;
    }
}

/// Unpacks the chunk of row bytes `bytes` (see [`chunk_bytes`]; a row's last chunk of a
/// 32-element type may be shorter) into `c`.
#[inline(always)]
fn unpack(ty: GgmlType, bytes: &[u8], c: &mut Chunk) {
    match ty {
        GgmlType::Q4_0 => unpack32::<18>(bytes, c, |b, w| {
            for j in 0..16 {
                w[j] = i16::from(b[2 + j] & 0xf) - 8;
                w[j + 16] = i16::from(b[2 + j] >> 4) - 8;
            }
            (f16_at(b, 0), 0.0)
        }),
        GgmlType::Q4_1 => unpack32::<20>(bytes, c, |b, w| {
            for j in 0..16 {
                w[j] = i16::from(b[4 + j] & 0xf);
                w[j + 16] = i16::from(b[4 + j] >> 4);
            }
            (f16_at(b, 0), f16_at(b, 2))
        }),
        GgmlType::Q5_0 => unpack32::<22>(bytes, c, |b, w| {
            q5_weights(u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..22], w, 16);
            (f16_at(b, 0), 0.0)
        }),
        GgmlType::Q5_1 => unpack32::<24>(bytes, c, |b, w| {
            q5_weights(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), &b[8..24], w, 0);
            (f16_at(b, 0), f16_at(b, 2))
        }),
        GgmlType::Q8_0 => unpack32::<34>(bytes, c, |b, w| {
            for (wj, &q) in w.iter_mut().zip(&b[2..34]) {
                *wj = i16::from(q as i8);
            }
            (f16_at(b, 0), 0.0)
        }),
        GgmlType::Q2_K => unpack_q2_k(bytes, c),
        GgmlType::Q3_K => unpack_q3_k(bytes, c),
        GgmlType::Q4_K => unpack_q45_k::<false>(bytes, c),
        GgmlType::Q5_K => unpack_q45_k::<true>(bytes, c),
        GgmlType::Q6_K => unpack_q6_k(bytes, c),
        _ => c.groups = 0,
    }
}

/// Layout (ggml-common.h `block_q2_K`): 16 scale bytes (low nibble scale, high nibble min),
/// 64 bytes of 2-bit quants, f16 `d`, f16 `dmin`.
#[inline(always)]
fn unpack_q2_k(b: &[u8], c: &mut Chunk) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for (s, shift) in [0u32, 2, 4, 6].into_iter().enumerate() {
            for sub in 0..2 {
                let is = half * 8 + s * 2 + sub;
                let sc = i16::from(scales[is] & 0xf);
                c.off[is] = -dmin * f32::from(scales[is] >> 4);
                let w = &mut c.w[is * 16..is * 16 + 16];
                for (wl, &ql) in w.iter_mut().zip(&q[sub * 16..sub * 16 + 16]) {
                    *wl = sc * i16::from((ql >> shift) & 3);
                }
            }
        }
    }
    c.dg = [d; GROUPS];
    c.groups = GROUPS;
}

/// Layout (`block_q3_K`): 32 bytes of high-bit masks, 64 bytes of 2-bit quants, 12 bytes of
/// sixteen 6-bit scales, f16 `d`.
#[inline(always)]
fn unpack_q3_k(b: &[u8], c: &mut Chunk) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let scales = q3_k_scales(&b[96..108]);
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for (s, shift) in [0u32, 2, 4, 6].into_iter().enumerate() {
            let m = 1u8 << (half * 4 + s);
            for sub in 0..2 {
                let is = half * 8 + s * 2 + sub;
                let sc = i16::from(scales[is]);
                let w = &mut c.w[is * 16..is * 16 + 16];
                let (ql, hm) = (&q[sub * 16..sub * 16 + 16], &hmask[sub * 16..sub * 16 + 16]);
                for ((wl, &qv), &h) in w.iter_mut().zip(ql).zip(hm) {
                    let low = i16::from((qv >> shift) & 3);
                    let high = if h & m != 0 { 0 } else { 4 };
                    *wl = sc * (low - high);
                }
            }
        }
    }
    c.dg = [f16_at(b, 108); GROUPS];
    c.off = [0.0; 2 * GROUPS];
    c.groups = GROUPS;
}

/// Layout (`block_q4_K`, `block_q5_K`): f16 `d`, f16 `dmin`, 12 bytes of eight 6-bit scales
/// and mins, (Q5_K: 32 bytes of fifth bits), 128 bytes of nibbles.
#[inline(always)]
fn unpack_q45_k<const FIVE: bool>(b: &[u8], c: &mut Chunk) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let (qh, qs) = if FIVE { (&b[16..48], &b[48..176]) } else { (&b[16..48], &b[16..144]) };
    for chunk in 0..4 {
        let (sc1, m1) = k4_scale_min(2 * chunk, scales);
        let (sc2, m2) = k4_scale_min(2 * chunk + 1, scales);
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let (lo, hi) = c.w[chunk * 64..chunk * 64 + 64].split_at_mut(32);
        let (s1, s2) = (i16::from(sc1), i16::from(sc2));
        for l in 0..32 {
            let (h1, h2) = if FIVE {
                (if qh[l] & u1 != 0 { 16 } else { 0 }, if qh[l] & u2 != 0 { 16 } else { 0 })
            } else {
                (0, 0)
            };
            lo[l] = s1 * (i16::from(q[l] & 0xf) + h1);
            hi[l] = s2 * (i16::from(q[l] >> 4) + h2);
        }
        let (o1, o2) = (-dmin * f32::from(m1), -dmin * f32::from(m2));
        c.off[4 * chunk..4 * chunk + 4].copy_from_slice(&[o1, o1, o2, o2]);
    }
    c.dg = [d; GROUPS];
    c.groups = GROUPS;
}

/// Layout (`block_q6_K`): 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed
/// 8-bit scales (one per 16 elements), f16 `d`.
#[inline(always)]
fn unpack_q6_k(b: &[u8], c: &mut Chunk) {
    let sc = &b[192..208];
    for half in 0..2 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[128 + half * 32..128 + half * 32 + 32];
        let base = half * 128;
        for l in 0..32 {
            let q1 = i16::from((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i16::from((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i16::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i16::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            let s = |k: usize| i16::from(sc[(base + l + 32 * k) / 16] as i8);
            c.w[base + l] = s(0) * q1;
            c.w[base + l + 32] = s(1) * q2;
            c.w[base + l + 64] = s(2) * q3;
            c.w[base + l + 96] = s(3) * q4;
        }
    }
    c.dg = [f16_at(b, 208); GROUPS];
    c.off = [0.0; 2 * GROUPS];
    c.groups = GROUPS;
}

/// Number of chunks in a row of `nb` activation blocks.
fn chunks_per_row(ty: GgmlType, nb: usize) -> usize {
    if ty.block_size() as usize == CHUNK {
        nb / GROUPS
    } else {
        nb.div_ceil(GROUPS)
    }
}

/// The bytes of chunk `ch` of a row.
#[inline(always)]
fn chunk_of(row: &[u8], ch: usize, cb: usize) -> &[u8] {
    &row[ch * cb..((ch + 1) * cb).min(row.len())]
}

fn rows_tokens_scalar(
    ty: GgmlType,
    rows: &[u8],
    row_bytes: usize,
    xs: &QActivations,
    out: &mut [f32],
) {
    let tokens = xs.rows;
    if tokens == 0 {
        return;
    }
    let (nb, cb) = (xs.nb, chunk_bytes(ty));
    let offsets = has_offsets(ty);
    let mut c = Chunk::ZERO;
    for (row, o) in rows.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        o.fill(0.0);
        for ch in 0..chunks_per_row(ty, nb) {
            unpack(ty, chunk_of(row, ch, cb), &mut c);
            for (t, acc) in o.iter_mut().enumerate() {
                let first = t * nb + ch * GROUPS;
                for g in 0..c.groups {
                    let (q, r) = xs.qs[first + g].split_at(QK);
                    let w = &c.w[g * QK..(g + 1) * QK];
                    let (mut sq, mut sr) = (0i32, 0i32);
                    for j in 0..QK {
                        sq += i32::from(w[j]) * i32::from(q[j]);
                        sr += i32::from(w[j]) * i32::from(r[j]);
                    }
                    let p = sq as f32 + sr as f32 * RESIDUAL_SCALE;
                    *acc += c.dg[g] * xs.d[first + g] * p;
                }
                if offsets {
                    let s16 = &xs.s16[2 * first..2 * (first + c.groups)];
                    *acc += c.off.iter().zip(s16).map(|(o, s)| o * s).sum::<f32>();
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{
        chunk_bytes, chunk_of, chunks_per_row, has_offsets, unpack, Block, Chunk, QActivations,
        GROUPS, QK, RESIDUAL_SCALE, TOKEN_TILE,
    };
    use crate::quant::{k4_scale_min, GgmlType};

    /// The two halves at the start of a block (`d`, and `m` for Q4_1) as f32 lanes 0 and 1.
    /// The hardware conversion: the scalar bit trick, vectorized by the compiler, multiplies
    /// junk lanes that can be subnormal and then stalls on microcode assists.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn halves(b: &[u8]) -> __m128 {
        let bits = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        _mm_cvtph_ps(_mm_cvtsi32_si128(bits))
    }

    /// Scale and offset of a Q4_0 (`N` = 18) or Q4_1 (`N` = 20) block, with Q4_0's `-8` folded
    /// into the offset.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4_scale_min<const N: usize, const MIN: bool, const FIVE: bool>(b: &[u8; N]) -> (f32, f32) {
        let dm = halves(b);
        let d = _mm_cvtss_f32(dm);
        if MIN {
            (d, _mm_cvtss_f32(_mm_movehdup_ps(dm)))
        } else if FIVE {
            (d, -16.0 * d)
        } else {
            (d, -8.0 * d)
        }
    }

    /// The 32 unsigned 5-bit quants of a Q5_0 (`N` = 22) or Q5_1 (`N` = 24) block as i16 in
    /// element order: the nibbles (its last 16 bytes) with bit 4 from the 32-bit mask before
    /// them (bit `j` for element `j`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q5_quants<const N: usize>(b: &[u8; N]) -> (__m256i, __m256i) {
        // (Only called for N = 22 and 24; `weights` instantiates it for Q4's 18 as well.)
        let at = N.saturating_sub(20);
        let (lo, hi) = nibbles(b);
        let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let bits = _mm256_setr_epi16(
            1,
            2,
            4,
            8,
            16,
            32,
            64,
            128,
            256,
            512,
            1024,
            2048,
            4096,
            8192,
            16384,
            i16::MIN,
        );
        let sixteen = _mm256_set1_epi16(16);
        let high = |v: u32| {
            let set = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(v as i16), bits), bits);
            _mm256_and_si256(set, sixteen)
        };
        (_mm256_or_si256(lo, high(qh & 0xffff)), _mm256_or_si256(hi, high(qh >> 16)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_rows(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        x: &QActivations,
        out: &mut [f32],
    ) {
        match ty {
            GgmlType::Q4_0 => rows_q4::<18, false, false>(rows, row_bytes, x, out),
            GgmlType::Q4_1 => rows_q4::<20, true, false>(rows, row_bytes, x, out),
            GgmlType::Q5_0 => rows_q4::<22, false, true>(rows, row_bytes, x, out),
            GgmlType::Q5_1 => rows_q4::<24, true, true>(rows, row_bytes, x, out),
            GgmlType::Q8_0 => rows_q8_0(rows, row_bytes, x, out),
            GgmlType::Q4_K => rows_q45_k::<144, false>(rows, row_bytes, x, out),
            GgmlType::Q5_K => rows_q45_k::<176, true>(rows, row_bytes, x, out),
            GgmlType::Q6_K => rows_q6_k(rows, row_bytes, x, out),
            _ => rows_tokens(ty, rows, row_bytes, x, out),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// 16 quants of a block, starting at element `at`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load16<const AT: usize>(q: &Block) -> __m256i {
        const { assert!(AT + 16 <= 2 * QK) };
        // SAFETY: elements AT..AT+16 of the 64-element block are 32 readable bytes; `loadu`
        // has no alignment requirement.
        unsafe { _mm256_loadu_si256(q[AT..].as_ptr().cast()) }
    }

    /// `Σ w·q + Σ w·r / 65536` of a block as 8 f32 lanes, from its weights as two vectors of
    /// 16 i16 (elements 0-15 and 16-31). `vpmaddwd`'s i32 pair sums cannot overflow
    /// (|w| ≤ 4096, |q|, |r| ≤ 32767), nor can the sums of 32 products.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn block_sum(w: (__m256i, __m256i), x: &Block) -> __m256 {
        let q = _mm256_add_epi32(
            _mm256_madd_epi16(w.0, load16::<0>(x)),
            _mm256_madd_epi16(w.1, load16::<16>(x)),
        );
        let r = _mm256_add_epi32(
            _mm256_madd_epi16(w.0, load16::<32>(x)),
            _mm256_madd_epi16(w.1, load16::<48>(x)),
        );
        _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(r),
            _mm256_set1_ps(RESIDUAL_SCALE),
            _mm256_cvtepi32_ps(q),
        )
    }

    /// The same sum with VNNI's fused multiply-add of i16 pairs into i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn block_sum_vnni(w: (__m256i, __m256i), x: &Block) -> __m256 {
        let q = _mm256_dpwssd_epi32(_mm256_madd_epi16(w.0, load16::<0>(x)), w.1, load16::<16>(x));
        let r = _mm256_dpwssd_epi32(_mm256_madd_epi16(w.0, load16::<32>(x)), w.1, load16::<48>(x));
        _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(r),
            _mm256_set1_ps(RESIDUAL_SCALE),
            _mm256_cvtepi32_ps(q),
        )
    }

    /// The 32 unsigned nibbles of a Q4 block (its last 16 bytes) as i16 in element order: low
    /// nibbles (elements 0-15), then high nibbles (elements 16-31).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn nibbles<const N: usize>(b: &[u8; N]) -> (__m256i, __m256i) {
        const { assert!(N >= 16) };
        // SAFETY: bytes N-16..N of the N-byte block are 16 readable bytes; `loadu` has no
        // alignment requirement.
        let q = unsafe { _mm_loadu_si128(b[N - 16..].as_ptr().cast()) };
        let mask = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(q, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), mask);
        (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi))
    }

    /// The 32 signed weights of a Q8_0 block as i16.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_weights(b: &[u8; 34]) -> (__m256i, __m256i) {
        // SAFETY: bytes 2..34 of the 34-byte block are 32 readable bytes, two unaligned 16-byte
        // loads at 2 and 18; `loadu` has no alignment requirement.
        let (w0, w1) = unsafe {
            (_mm_loadu_si128(b[2..].as_ptr().cast()), _mm_loadu_si128(b[18..].as_ptr().cast()))
        };
        (_mm256_cvtepi8_epi16(w0), _mm256_cvtepi8_epi16(w1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows_q4<const N: usize, const MIN: bool, const FIVE: bool>(
        rows: &[u8],
        row_bytes: usize,
        x: &QActivations,
        out: &mut [f32],
    ) {
        let (xq, xd, xs) = (&x.qs[..], &x.d[..], &x.s[..]);
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
            let (blocks, _) = row.as_chunks::<N>();
            // Two accumulators so that consecutive blocks' multiply-adds do not wait on each
            // other.
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut mins = 0f32;
            let pairs = blocks.as_chunks::<2>().0.iter().zip(xq.as_chunks::<2>().0);
            let mut i = 0;
            for (b, q) in pairs {
                let (d0, m0) = q4_scale_min::<N, MIN, FIVE>(&b[0]);
                let (d1, m1) = q4_scale_min::<N, MIN, FIVE>(&b[1]);
                let p0 = block_sum(weights::<N, FIVE>(&b[0]), &q[0]);
                let p1 = block_sum(weights::<N, FIVE>(&b[1]), &q[1]);
                let (e, s) = (&xd[i..i + 2], &xs[i..i + 2]);
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d0 * e[0]), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d1 * e[1]), acc1);
                mins += m0 * s[0] + m1 * s[1];
                i += 2;
            }
            if let (Some(b), Some(q)) = (blocks.get(i), xq.get(i)) {
                let (d, m) = q4_scale_min::<N, MIN, FIVE>(b);
                let p = block_sum(weights::<N, FIVE>(b), q);
                acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(d * xd[i]), acc0);
                mins += m * xs[i];
            }
            *o = hsum(_mm256_add_ps(acc0, acc1)) + mins;
        }
    }

    /// The unsigned quants of a Q4 (`FIVE` false) or Q5 block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn weights<const N: usize, const FIVE: bool>(b: &[u8; N]) -> (__m256i, __m256i) {
        if FIVE {
            q5_quants(b)
        } else {
            nibbles(b)
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows_q8_0(rows: &[u8], row_bytes: usize, x: &QActivations, out: &mut [f32]) {
        let (xq, xd) = (&x.qs[..], &x.d[..]);
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
            let (blocks, _) = row.as_chunks::<34>();
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let pairs = blocks.as_chunks::<2>().0.iter().zip(xq.as_chunks::<2>().0);
            let mut i = 0;
            for (b, q) in pairs {
                let d0 = _mm_cvtss_f32(halves(&b[0]));
                let d1 = _mm_cvtss_f32(halves(&b[1]));
                let p0 = block_sum(q8_weights(&b[0]), &q[0]);
                let p1 = block_sum(q8_weights(&b[1]), &q[1]);
                let e = &xd[i..i + 2];
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d0 * e[0]), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d1 * e[1]), acc1);
                i += 2;
            }
            if let (Some(b), Some(q)) = (blocks.get(i), xq.get(i)) {
                let d = _mm_cvtss_f32(halves(b));
                let p = block_sum(q8_weights(b), q);
                acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(d * xd[i]), acc0);
            }
            *o = hsum(_mm256_add_ps(acc0, acc1));
        }
    }

    /// The 32 bytes at `at` of a block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load32(b: &[u8], at: usize) -> __m256i {
        let s = &b[at..at + 32];
        // SAFETY: `s` is 32 readable bytes; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
    }

    /// 32 unsigned bytes as two vectors of 16 i16 (bytes 0-15, 16-31).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn widen_u8(v: __m256i) -> (__m256i, __m256i) {
        (
            _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)),
            _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(v)),
        )
    }

    /// Q4_K (`N` = 144) and Q5_K (`N` = 176) rows, decoded in registers: per 64 elements one
    /// 32-byte load of nibbles (and for Q5_K one compare per group for the fifth bits); the
    /// 6-bit sub-block scales multiply the group's float sum, the mins go with the block sums.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows_q45_k<const N: usize, const FIVE: bool>(
        rows: &[u8],
        row_bytes: usize,
        x: &QActivations,
        out: &mut [f32],
    ) {
        let (xq, xd, xs) = (&x.qs[..], &x.d[..], &x.s[..]);
        let m4 = _mm256_set1_epi8(0x0f);
        let sixteen = _mm256_set1_epi8(16);
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
            let (blocks, _) = row.as_chunks::<N>();
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut mins = 0f32;
            for (sb, b) in blocks.iter().enumerate() {
                let dm = halves(b);
                let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
                let scales = &b[4..16];
                let qs_at = if FIVE { 48 } else { 16 };
                let qh = if FIVE { load32(b, 16) } else { _mm256_setzero_si256() };
                for c in 0..4 {
                    let q = load32(b, qs_at + 32 * c);
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if FIVE {
                        let (u1, u2) =
                            (_mm256_set1_epi8(1 << (2 * c)), _mm256_set1_epi8(2 << (2 * c)));
                        let b1 = _mm256_cmpeq_epi8(_mm256_and_si256(qh, u1), u1);
                        let b2 = _mm256_cmpeq_epi8(_mm256_and_si256(qh, u2), u2);
                        lo = _mm256_or_si256(lo, _mm256_and_si256(b1, sixteen));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(b2, sixteen));
                    }
                    let g = sb * 8 + 2 * c;
                    let (sc1, m1) = k4_scale_min(2 * c, scales);
                    let (sc2, m2) = k4_scale_min(2 * c + 1, scales);
                    let p0 = block_sum(widen_u8(lo), &xq[g]);
                    let p1 = block_sum(widen_u8(hi), &xq[g + 1]);
                    acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d * f32::from(sc1) * xd[g]), acc0);
                    acc1 =
                        _mm256_fmadd_ps(p1, _mm256_set1_ps(d * f32::from(sc2) * xd[g + 1]), acc1);
                    mins += dmin * (f32::from(m1) * xs[g] + f32::from(m2) * xs[g + 1]);
                }
            }
            *o = hsum(_mm256_add_ps(acc0, acc1)) - mins;
        }
    }

    /// Q6_K rows decoded in registers: per 128 elements three 32-byte loads; the signed 8-bit
    /// scales (one per 16 elements) are folded into the i16 weights (|w| ≤ 4096).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows_q6_k(rows: &[u8], row_bytes: usize, x: &QActivations, out: &mut [f32]) {
        let (xq, xd) = (&x.qs[..], &x.d[..]);
        let m4 = _mm256_set1_epi8(0x0f);
        let m30 = _mm256_set1_epi8(0x30);
        let bias = _mm256_set1_epi16(32);
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
            let (blocks, _) = row.as_chunks::<210>();
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (sb, b) in blocks.iter().enumerate() {
                let d = _mm_cvtss_f32(halves(&b[208..]));
                let sc = &b[192..208];
                for h in 0..2 {
                    let ql_a = load32(b, h * 64);
                    let ql_b = load32(b, h * 64 + 32);
                    let qh = load32(b, 128 + h * 32);
                    let quants = [
                        _mm256_or_si256(
                            _mm256_and_si256(ql_a, m4),
                            _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(ql_b, m4),
                            _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql_a), m4),
                            _mm256_and_si256(qh, m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql_b), m4),
                            _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                        ),
                    ];
                    for (k, q) in quants.into_iter().enumerate() {
                        let (w0, w1) = widen_u8(q);
                        let is = h * 8 + 2 * k;
                        let s0 = _mm256_set1_epi16(i16::from(sc[is] as i8));
                        let s1 = _mm256_set1_epi16(i16::from(sc[is + 1] as i8));
                        let w0 = _mm256_mullo_epi16(_mm256_sub_epi16(w0, bias), s0);
                        let w1 = _mm256_mullo_epi16(_mm256_sub_epi16(w1, bias), s1);
                        let g = sb * 8 + h * 4 + k;
                        let p = block_sum((w0, w1), &xq[g]);
                        if k % 2 == 0 {
                            acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(d * xd[g]), acc0);
                        } else {
                            acc1 = _mm256_fmadd_ps(p, _mm256_set1_ps(d * xd[g]), acc1);
                        }
                    }
                }
            }
            *o = hsum(_mm256_add_ps(acc0, acc1));
        }
    }

    /// Weights 0-15 and 16-31 of group `g` of an unpacked chunk.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn group_weights(c: &Chunk, g: usize) -> (__m256i, __m256i) {
        let w = &c.w[g * QK..(g + 1) * QK];
        // SAFETY: `w` is 32 i16 = 64 readable bytes, two 32-byte unaligned loads.
        unsafe {
            (_mm256_loadu_si256(w.as_ptr().cast()), _mm256_loadu_si256(w[16..].as_ptr().cast()))
        }
    }

    /// Eight floats from `v[at..at + 8]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load8(v: &[f32], at: usize) -> __m256 {
        let s = &v[at..at + 8];
        // SAFETY: `s` is 8 readable floats; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    /// The blocked kernel on `R` weight rows at a time: each chunk of the `R` rows is unpacked
    /// once per tile of [`TOKEN_TILE`] tokens, and each activation group is loaded once for the
    /// `R` rows.
    #[inline(always)]
    // `t`, `g` and `i` index several parallel arrays at once.
    #[allow(clippy::needless_range_loop)]
    fn rows_block<const R: usize, const VNNI: bool>(
        ty: GgmlType,
        rows: [&[u8]; R],
        xs: &QActivations,
        chunks: &mut [Chunk; R],
        out: [&mut [f32]; R],
    ) {
        let (nb, cb) = (xs.nb, chunk_bytes(ty));
        let tokens = xs.rows;
        let offsets = has_offsets(ty);
        let n_chunks = chunks_per_row(ty, nb);
        let mut out = out;
        let mut t0 = 0;
        while t0 < tokens {
            let nt = TOKEN_TILE.min(tokens - t0);
            // SAFETY (for the intrinsics in this function): the callers are `target_feature`
            // functions for AVX2/FMA/F16C (and VNNI when `VNNI`), and this body is inlined into
            // them.
            let mut acc = [[unsafe { _mm256_setzero_ps() }; TOKEN_TILE]; R];
            for ch in 0..n_chunks {
                for (c, row) in chunks.iter_mut().zip(&rows) {
                    unpack(ty, chunk_of(row, ch, cb), c);
                }
                let groups = chunks[0].groups;
                for t in 0..nt {
                    let first = (t0 + t) * nb + ch * GROUPS;
                    for g in 0..groups {
                        let x = &xs.qs[first + g];
                        let e = xs.d[first + g];
                        for i in 0..R {
                            unsafe {
                                let w = group_weights(&chunks[i], g);
                                let p = if VNNI { block_sum_vnni(w, x) } else { block_sum(w, x) };
                                acc[i][t] = _mm256_fmadd_ps(
                                    p,
                                    _mm256_set1_ps(chunks[i].dg[g] * e),
                                    acc[i][t],
                                );
                            }
                        }
                    }
                    if offsets {
                        unsafe {
                            let (s_lo, s_hi) =
                                (load8(&xs.s16, 2 * first), load8(&xs.s16, 2 * first + 8));
                            for i in 0..R {
                                let c = &chunks[i];
                                acc[i][t] = _mm256_fmadd_ps(load8(&c.off, 0), s_lo, acc[i][t]);
                                acc[i][t] = _mm256_fmadd_ps(load8(&c.off, 8), s_hi, acc[i][t]);
                            }
                        }
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(&acc) {
                for (v, s) in o[t0..t0 + nt].iter_mut().zip(a) {
                    // SAFETY: as above.
                    *v = unsafe { hsum(*s) };
                }
            }
            t0 += nt;
        }
    }

    #[inline(always)]
    fn rows_tokens_body<const VNNI: bool>(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        xs: &QActivations,
        out: &mut [f32],
    ) {
        let tokens = xs.rows;
        if tokens == 0 {
            return;
        }
        let n_rows = (rows.len() / row_bytes).min(out.len() / tokens);
        let mut chunks = [Chunk::ZERO; 4];
        let mut r = 0;
        let (mut rows4, mut out4) =
            (rows.chunks_exact(4 * row_bytes), out.chunks_exact_mut(4 * tokens));
        while r + 4 <= n_rows {
            let (Some(w), Some(o)) = (rows4.next(), out4.next()) else { break };
            let (w0, w) = w.split_at(row_bytes);
            let (w1, w) = w.split_at(row_bytes);
            let (w2, w3) = w.split_at(row_bytes);
            let (o0, o) = o.split_at_mut(tokens);
            let (o1, o) = o.split_at_mut(tokens);
            let (o2, o3) = o.split_at_mut(tokens);
            rows_block::<4, VNNI>(ty, [w0, w1, w2, w3], xs, &mut chunks, [o0, o1, o2, o3]);
            r += 4;
        }
        let (one, _) = chunks.split_first_mut().expect("four chunks");
        let one: &mut [Chunk; 1] = std::slice::from_mut(one).try_into().expect("one chunk");
        for r in r..n_rows {
            let w = &rows[r * row_bytes..(r + 1) * row_bytes];
            let o = &mut out[r * tokens..(r + 1) * tokens];
            rows_block::<1, VNNI>(ty, [w], xs, one, [o]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn rows_tokens(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        xs: &QActivations,
        out: &mut [f32],
    ) {
        rows_tokens_body::<false>(ty, rows, row_bytes, xs, out);
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn rows_tokens_vnni(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        xs: &QActivations,
        out: &mut [f32],
    ) {
        rows_tokens_body::<true>(ty, rows, row_bytes, xs, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_to_vec, f32_to_f16};

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// Byte offsets of the f16 scale fields in a block (ggml-common.h).
    fn f16_fields(ty: GgmlType) -> &'static [usize] {
        use GgmlType::*;
        match ty {
            Q4_0 | Q5_0 | Q8_0 => &[0],
            Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
            Q2_K => &[80, 82],
            Q3_K => &[108],
            Q6_K => &[208],
            _ => &[],
        }
    }

    /// `rows` random rows of `cols` elements of `ty`, with sane f16 scales.
    fn random_rows(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let size = ty.type_size() as usize;
        let blocks = rows * cols / ty.block_size() as usize;
        let mut data = Vec::with_capacity(blocks * size);
        for _ in 0..blocks {
            let mut b: Vec<u8> = (0..size).map(|_| rng.byte()).collect();
            for &at in f16_fields(ty) {
                b[at..at + 2].copy_from_slice(&f32_to_f16(rng.unit() * 0.05).to_le_bytes());
            }
            data.extend_from_slice(&b);
        }
        data
    }

    fn check(ty: GgmlType, rows: usize, cols: usize, tokens: usize, seed: u64) {
        let mut rng = Rng(seed);
        let data = random_rows(ty, rows, cols, &mut rng);
        let row_bytes = ty.bytes_for(cols).unwrap();
        // Activations with an outlier or two, like real hidden states.
        let mut x: Vec<f32> = (0..tokens * cols).map(|_| rng.unit() * 3.0).collect();
        x[cols / 3] = 40.0;
        let mut xq = QActivations::new();
        xq.quantize_rows(&x, tokens);
        let xd = xq.dequantize();
        for (a, b) in x.iter().zip(&xd) {
            // Two 16-bit levels: within a few parts in 2^31 of the largest element (40).
            assert!((a - b).abs() <= 40.0 * 1e-8, "quantize {a} -> {b}");
        }
        let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
        for isa in Isa::available() {
            let mut got = vec![0f32; rows * tokens];
            dot_rows_tokens_q(isa, ty, &data, row_bytes, &xq, &mut got);
            let mut single = vec![0f32; rows];
            if tokens == 1 {
                dot_rows_q(isa, ty, &data, row_bytes, &xq, &mut single);
            }
            for r in 0..rows {
                for t in 0..tokens {
                    let xt = &xd[t * cols..(t + 1) * cols];
                    let wr = &w[r * cols..(r + 1) * cols];
                    // The exact value of the integer formula, in f64.
                    let want: f64 =
                        wr.iter().zip(xt).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                    let mag: f64 =
                        wr.iter().zip(xt).map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs()).sum();
                    let tol = 1e-5 * mag + 1e-6;
                    let mut cands = vec![("tokens", got[r * tokens + t])];
                    if tokens == 1 {
                        cands.push(("single", single[r]));
                    }
                    for (name, v) in cands {
                        assert!(
                            (f64::from(v) - want).abs() <= tol,
                            "{ty} {} {rows}x{cols} row {r} token {t} {name}: {v} vs {want}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn integer_kernels_match_the_dequantized_dot_product() {
        use GgmlType::*;
        for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0] {
            assert!(supports(ty));
            // Odd row counts and odd block counts (the unrolled loop's and the chunk's
            // remainders), one and several tokens.
            for (rows, cols, tokens, seed) in
                [(1, 32, 1, 1), (7, 96, 1, 2), (33, 576, 1, 3), (5, 1536, 3, 4), (3, 64, 40, 5)]
            {
                check(ty, rows, cols, tokens, seed);
            }
        }
        for ty in [Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
            assert!(supports(ty));
            for (rows, cols, tokens, seed) in
                [(1, 256, 1, 6), (7, 512, 1, 7), (9, 768, 5, 8), (4, 256, 37, 9)]
            {
                check(ty, rows, cols, tokens, seed);
            }
        }
        assert!(!supports(GgmlType::F16));
    }

    #[test]
    fn host_isa_is_detected_once_and_is_the_best_available() {
        assert_eq!(Isa::host(), *Isa::available().last().unwrap());
        assert_eq!(Isa::available()[0], Isa::scalar());
    }
}
