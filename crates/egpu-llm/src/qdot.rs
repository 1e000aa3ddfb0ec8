//! Integer dot products for the decode path. The activation vector is quantized once per
//! matrix-vector product, in blocks of 32, to two 16-bit quants per element (a coarse quant and
//! its rounding residual at 2^-16 of the step), and each packed weight block is multiplied with
//! both in integers.
//!
//! Supported weight types: Q4_0, Q4_1 and Q8_0. For a block with weight quants `w`, scale `d`
//! and offset `m` (Q4_1; Q4_0 is `w = n - 8`, i.e. `m = -8d` with unsigned nibbles `n`) and
//! activations `x ≈ e·(q + r/65536)` with `s = e·Σ(q + r/65536)`:
//!
//! `Σ (d·w + m)·x = d·e·(Σ w·q + Σ w·r / 65536) + m·s`
//!
//! Why not 8-bit activations like ggml: the hidden states of these models carry outliers
//! 5-10× the typical magnitude, and on SmolLM2 8-bit blocks moved logits by up to 0.6 (16-bit:
//! 3e-3) and changed greedy tokens. With the residual the activations keep about 31 bits per
//! block, so the results match the f32 path's to float rounding, for two `vpmaddwd` per 16
//! elements.
//!
//! The scalar kernels are safe Rust; on x86-64 with AVX2, FMA and F16C the same sums are taken
//! with `vpmaddwd` (the integer sums are exact either way, so the two paths differ only in the
//! order of the float accumulation).

use crate::quant::{f16_to_f32, GgmlType};

/// Elements per activation block.
pub const QK: usize = 32;

/// Largest quant.
const QMAX: f32 = 32767.0;

/// Scale of the residual quants relative to the coarse ones.
const RESIDUAL_SCALE: f32 = 1.0 / 65536.0;

/// One quantized block: the coarse quants, then the residual quants.
type Block = [i16; 2 * QK];

/// An activation vector quantized to blocks of [`QK`] elements, each `x ≈ d·(q + r/65536)`
/// with 16-bit `q` and `r`.
#[derive(Debug, Clone, Default)]
pub struct QActivations {
    qs: Vec<Block>,
    d: Vec<f32>,
    s: Vec<f32>,
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

    /// Quantizes `x` (`x.len()` a multiple of [`QK`]; a trailing partial block is ignored),
    /// reusing the buffers: per block `d = max|x| / 32767`, `q = round(x / d)`,
    /// `r = round((x - d·q) / d · 65536)`.
    pub fn quantize(&mut self, x: &[f32]) {
        let nb = x.len() / QK;
        self.qs.resize(nb, [0; 2 * QK]);
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0.0);
        let (xb, _) = x.as_chunks::<QK>();
        for (((xs, qs), d), s) in xb.iter().zip(&mut self.qs).zip(&mut self.d).zip(&mut self.s) {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / QMAX;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let (coarse, fine) = qs.split_at_mut(QK);
            let (mut sum_q, mut sum_r) = (0i32, 0i32);
            for ((q, r), &v) in coarse.iter_mut().zip(fine.iter_mut()).zip(xs) {
                // |v · inv| <= 32767 up to the rounding of `inv`; clamp the last ulp.
                let y = (v * inv).clamp(-QMAX, QMAX);
                let qi = round_i32(y);
                // `y - qi` is exact (Sterbenz), |y - qi| <= 1/2, so |ri| <= 32768.
                let ri = round_i32((y - qi as f32) * 65536.0).clamp(-32767, 32767);
                *q = qi as i16;
                *r = ri as i16;
                sum_q += qi;
                sum_r += ri;
            }
            *d = scale;
            *s = scale * (sum_q as f32 + sum_r as f32 * RESIDUAL_SCALE);
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

/// Whether [`dot_rows_q`] handles `ty`.
pub fn supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// `out[i]` = dot product of packed row `i` of `rows` (each `row_bytes` long, type `ty`) with
/// `x`, for `out.len()` rows. `ty` must be one [`supports`] accepts, and `x` must hold exactly
/// the row length.
pub fn dot_rows_q(ty: GgmlType, rows: &[u8], row_bytes: usize, x: &QActivations, out: &mut [f32]) {
    // A type without an integer kernel would otherwise produce zeros, silently.
    assert!(supports(ty), "dot_rows_q called with {ty:?}, which has no integer kernel");
    debug_assert_eq!(ty.bytes_for(x.len()), Ok(row_bytes));
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: `avx2::available()` checked that the CPU has AVX2, FMA and F16C, the only
        // requirements of `avx2::dot_rows`.
        unsafe { avx2::dot_rows(ty, rows, row_bytes, x, out) };
        return;
    }
    dot_rows_scalar(ty, rows, row_bytes, x, out);
}

/// The portable kernel (and the reference the SIMD kernels are tested against).
pub fn dot_rows_scalar(
    ty: GgmlType,
    rows: &[u8],
    row_bytes: usize,
    x: &QActivations,
    out: &mut [f32],
) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
        *o = match ty {
            GgmlType::Q4_0 => dot_q4_scalar::<18, false>(row, x),
            GgmlType::Q4_1 => dot_q4_scalar::<20, true>(row, x),
            GgmlType::Q8_0 => dot_q8_0_scalar(row, x),
            _ => 0.0,
        };
    }
}

/// Scale and offset of a Q4_0 (`N` = 18) or Q4_1 (`N` = 20) block, with Q4_0's `-8` folded
/// into the offset so that both formats multiply unsigned nibbles.
#[inline(always)]
fn q4_scale_min<const N: usize, const MIN: bool>(b: &[u8; N]) -> (f32, f32) {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    if MIN {
        (d, f16_to_f32(u16::from_le_bytes([b[2], b[3]])))
    } else {
        (d, -8.0 * d)
    }
}

/// `Σ w·q + Σ w·r / 65536` of one block from its 32 weights in element order.
#[inline(always)]
fn block_dot(w: impl Fn(usize) -> i32, x: &Block) -> f32 {
    let (q, r) = x.split_at(QK);
    let (mut sq, mut sr) = (0i32, 0i32);
    for j in 0..QK {
        sq += w(j) * i32::from(q[j]);
        sr += w(j) * i32::from(r[j]);
    }
    sq as f32 + sr as f32 * RESIDUAL_SCALE
}

fn dot_q4_scalar<const N: usize, const MIN: bool>(row: &[u8], x: &QActivations) -> f32 {
    let (blocks, _) = row.as_chunks::<N>();
    let mut acc = 0f32;
    for (((b, q), &e), &s) in blocks.iter().zip(&x.qs).zip(&x.d).zip(&x.s) {
        let (d, m) = q4_scale_min::<N, MIN>(b);
        let nib = &b[N - 16..];
        let w = |j: usize| i32::from(if j < 16 { nib[j] & 0xf } else { nib[j - 16] >> 4 });
        acc += d * e * block_dot(w, q) + m * s;
    }
    acc
}

fn dot_q8_0_scalar(row: &[u8], x: &QActivations) -> f32 {
    let (blocks, _) = row.as_chunks::<34>();
    let mut acc = 0f32;
    for ((b, q), &e) in blocks.iter().zip(&x.qs).zip(&x.d) {
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        acc += d * e * block_dot(|j| i32::from(b[2 + j] as i8), q);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Block, QActivations, QK, RESIDUAL_SCALE};
    use crate::quant::GgmlType;

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }

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
    fn q4_scale_min<const N: usize, const MIN: bool>(b: &[u8; N]) -> (f32, f32) {
        let dm = halves(b);
        let d = _mm_cvtss_f32(dm);
        if MIN {
            (d, _mm_cvtss_f32(_mm_movehdup_ps(dm)))
        } else {
            (d, -8.0 * d)
        }
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
            GgmlType::Q4_0 => rows_q4::<18, false>(rows, row_bytes, x, out),
            GgmlType::Q4_1 => rows_q4::<20, true>(rows, row_bytes, x, out),
            GgmlType::Q8_0 => rows_q8_0(rows, row_bytes, x, out),
            _ => out.fill(0.0),
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
    /// (|w| ≤ 128, |q|, |r| ≤ 32767), nor can the sums of 32 products.
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
    fn rows_q4<const N: usize, const MIN: bool>(
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
                let (d0, m0) = q4_scale_min::<N, MIN>(&b[0]);
                let (d1, m1) = q4_scale_min::<N, MIN>(&b[1]);
                let p0 = block_sum(nibbles(&b[0]), &q[0]);
                let p1 = block_sum(nibbles(&b[1]), &q[1]);
                let (e, s) = (&xd[i..i + 2], &xs[i..i + 2]);
                acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d0 * e[0]), acc0);
                acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d1 * e[1]), acc1);
                mins += m0 * s[0] + m1 * s[1];
                i += 2;
            }
            if let (Some(b), Some(q)) = (blocks.get(i), xq.get(i)) {
                let (d, m) = q4_scale_min::<N, MIN>(b);
                let p = block_sum(nibbles(b), q);
                acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(d * xd[i]), acc0);
                mins += m * xs[i];
            }
            *o = hsum(_mm256_add_ps(acc0, acc1)) + mins;
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

    /// `rows` random rows of `cols` elements of `ty`, with sane f16 scales.
    fn random_rows(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let size = ty.type_size() as usize;
        let blocks = rows * cols / 32;
        let mut data = Vec::with_capacity(blocks * size);
        for _ in 0..blocks {
            let mut b: Vec<u8> = (0..size).map(|_| rng.byte()).collect();
            b[..2].copy_from_slice(&f32_to_f16(rng.unit() * 0.05).to_le_bytes());
            if ty == GgmlType::Q4_1 {
                b[2..4].copy_from_slice(&f32_to_f16(rng.unit() * 0.1).to_le_bytes());
            }
            data.extend_from_slice(&b);
        }
        data
    }

    fn check(ty: GgmlType, rows: usize, cols: usize, seed: u64) {
        let mut rng = Rng(seed);
        let data = random_rows(ty, rows, cols, &mut rng);
        let row_bytes = ty.bytes_for(cols).unwrap();
        // Activations with an outlier or two, like real hidden states.
        let mut x: Vec<f32> = (0..cols).map(|_| rng.unit() * 3.0).collect();
        x[cols / 3] = 40.0;
        let mut xq = QActivations::new();
        xq.quantize(&x);
        let xd = xq.dequantize();
        for (a, b) in x.iter().zip(&xd) {
            // Two 16-bit levels: within a few parts in 2^31 of the largest element (40).
            assert!((a - b).abs() <= 40.0 * 1e-8, "quantize {a} -> {b}");
        }
        let w = dequantize_to_vec(ty, &data, rows * cols).unwrap();
        let mut simd = vec![0f32; rows];
        let mut scalar = vec![0f32; rows];
        dot_rows_q(ty, &data, row_bytes, &xq, &mut simd);
        dot_rows_scalar(ty, &data, row_bytes, &xq, &mut scalar);
        for r in 0..rows {
            // The exact value of the integer formula, in f64.
            let want: f64 = w[r * cols..(r + 1) * cols]
                .iter()
                .zip(&xd)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let mag: f64 = w[r * cols..(r + 1) * cols]
                .iter()
                .zip(&xd)
                .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                .sum();
            let tol = 1e-5 * mag + 1e-6;
            for (name, got) in [("simd", simd[r]), ("scalar", scalar[r])] {
                assert!(
                    (f64::from(got) - want).abs() <= tol,
                    "{ty} {rows}x{cols} row {r} {name}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn integer_kernels_match_the_dequantized_dot_product() {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            assert!(supports(ty));
            // Odd row counts and odd block counts (the unrolled loop's remainder).
            for (rows, cols, seed) in
                [(1, 32, 1), (7, 96, 2), (33, 576, 3), (5, 1536, 4), (3, 64, 5)]
            {
                check(ty, rows, cols, seed);
            }
        }
    }
}
