//! The integer kernels (`qdot`) against dot products computed by NumPy in float64 from the PyPI
//! `gguf` package's dequantizer (tests/reference/qdot_reference.py), on random blocks of every
//! type, for every instruction set this CPU has (scalar, AVX2, AVX-512 VNNI), one token (the
//! decode path) and five (the prefill path).
//!
//! Stated tolerance: |egpu − reference| ≤ 1e-6 · Σ|w·x| + 1e-6. The kernels quantize the
//! activations to two 16-bit levels (about 31 bits per block) and accumulate in f32, so the
//! error is float rounding; measured worst relative errors are printed (at most 4.2e-8 here).

mod common;

use common::{python_has, run_script};
use egpu_llm::qdot::{dot_rows_q, dot_rows_tokens_q, Isa, QActivations};
use egpu_llm::quant::GgmlType;

const TOLERANCE: f64 = 1e-6;

fn read<T>(path: &std::path::Path, width: usize, f: impl Fn(&[u8]) -> T) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    bytes.chunks_exact(width).map(f).collect()
}

#[test]
fn every_integer_kernel_matches_gguf_py_dequantized_dot_products() {
    let name = "every_integer_kernel_matches_gguf_py_dequantized_dot_products";
    if !python_has(&["gguf", "numpy"], "pip install gguf numpy", name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_script("qdot_reference.py", &[dir.path().to_str().unwrap(), "7"]);
    let manifest = std::fs::read_to_string(dir.path().join("manifest.txt")).unwrap();
    let mut types = 0;
    for line in manifest.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let ty = *GgmlType::ALL.iter().find(|t| t.name() == f[0]).expect("known type");
        let (rows, cols, tokens): (usize, usize, usize) =
            (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
        let p = |ext: &str| dir.path().join(format!("{}.{ext}", f[0]));
        let w = std::fs::read(p("w")).unwrap();
        let x = read(&p("x"), 4, |c| f32::from_le_bytes(c.try_into().unwrap()));
        let want = read(&p("dot"), 8, |c| f64::from_le_bytes(c.try_into().unwrap()));
        let mag = read(&p("mag"), 8, |c| f64::from_le_bytes(c.try_into().unwrap()));
        let row_bytes = ty.bytes_for(cols).unwrap();
        assert_eq!(w.len(), rows * row_bytes);
        assert_eq!((x.len(), want.len()), (tokens * cols, rows * tokens));
        for isa in Isa::available() {
            let mut xq = QActivations::new();
            xq.quantize_rows(&x, tokens);
            let mut many = vec![0f32; rows * tokens];
            dot_rows_tokens_q(isa, ty, &w, row_bytes, &xq, &mut many);
            let mut worst = 0f64;
            for r in 0..rows {
                for t in 0..tokens {
                    let (want, mag) = (want[r * tokens + t], mag[r * tokens + t]);
                    let got = f64::from(many[r * tokens + t]);
                    let err = (got - want).abs();
                    assert!(
                        err <= TOLERANCE * mag + 1e-6,
                        "{ty} {} prefill row {r} token {t}: {got} vs gguf-py {want}",
                        isa.name()
                    );
                    worst = worst.max(err / mag);
                }
            }
            // The decode path, one token at a time.
            let mut one = vec![0f32; rows];
            for t in 0..tokens {
                xq.quantize(&x[t * cols..(t + 1) * cols]);
                dot_rows_q(isa, ty, &w, row_bytes, &xq, &mut one);
                for (r, &got) in one.iter().enumerate() {
                    let (want, mag) = (want[r * tokens + t], mag[r * tokens + t]);
                    let err = (f64::from(got) - want).abs();
                    assert!(
                        err <= TOLERANCE * mag + 1e-6,
                        "{ty} {} decode row {r} token {t}: {got} vs gguf-py {want}",
                        isa.name()
                    );
                    worst = worst.max(err / mag);
                }
            }
            eprintln!("{ty:5} {:12} worst |error| / Σ|w·x| = {worst:.1e}", isa.name());
        }
        types += 1;
    }
    assert_eq!(types, 10, "every integer kernel type is covered");
}
