//! The GGUF reader and the dequantizers against the PyPI `gguf` package: the fixture file is
//! written by `gguf.GGUFWriter` and the expected values come from `gguf.quants.dequantize`.

mod common;

use common::{python_has, read_f32, run_script, TestRng};
use egpu_llm::gguf::{GgufFile, MetaValue};
use egpu_llm::quant::{dequantize_to_vec, GgmlType, RowKernel};

const INSTALL: &str = "pip install gguf numpy";

fn fixtures(test: &str) -> Option<tempfile::TempDir> {
    if !python_has(&["gguf", "numpy"], INSTALL, test) {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    run_script("quant_fixtures.py", &[dir.path().to_str().expect("utf-8 temp path"), "1234"]);
    Some(dir)
}

fn manifest(dir: &std::path::Path) -> Vec<(String, String, usize, usize)> {
    std::fs::read_to_string(dir.join("manifest.txt"))
        .expect("manifest")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].into(), f[1].into(), f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

#[test]
fn every_quant_type_dequantizes_like_gguf_py() {
    let Some(dir) = fixtures("every_quant_type_dequantizes_like_gguf_py") else { return };
    let file = GgufFile::open(dir.path().join("fixtures.gguf")).expect("gguf-py file parses");
    let entries = manifest(dir.path());
    assert_eq!(entries.len(), 13, "one tensor per type in the fixture");
    for (name, type_name, n, rows) in entries {
        let (info, data) = file.tensor_data(&name).expect("tensor present");
        assert_eq!(info.ggml_type.name(), type_name, "{name}");
        assert_eq!(info.n_elements() as usize, n, "{name}");
        assert_eq!(info.n_rows() as usize, rows, "{name}");
        let expected = read_f32(&dir.path().join(format!("{name}.f32")));
        let got = dequantize_to_vec(info.ggml_type, data, n).expect("dequantize");
        let mut nonzero = 0;
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{name}[{i}]: egpu {g} vs gguf-py {e}"
            );
            nonzero += usize::from(*e != 0.0);
        }
        assert!(nonzero > n / 2, "{name}: fixture values should be mostly non-zero");
    }
}

#[test]
fn packed_row_dot_products_match_dequantized_values() {
    let Some(dir) = fixtures("packed_row_dot_products_match_dequantized_values") else { return };
    let file = GgufFile::open(dir.path().join("fixtures.gguf")).expect("parse");
    let mut rng = TestRng(7);
    for (name, _, n, rows) in manifest(dir.path()) {
        let (info, data) = file.tensor_data(&name).unwrap();
        let row_len = n / rows;
        let kernel = RowKernel::new(info.ggml_type, row_len).expect("supported type");
        let expected = read_f32(&dir.path().join(format!("{name}.f32")));
        let x: Vec<f32> = (0..row_len).map(|_| rng.next_f32()).collect();
        for r in 0..rows {
            let row = &data[r * kernel.row_bytes()..(r + 1) * kernel.row_bytes()];
            let w = &expected[r * row_len..(r + 1) * row_len];
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            let scale: f64 = w.iter().zip(&x).map(|(a, b)| f64::from((a * b).abs())).sum();
            let got = f64::from(kernel.dot(row, &x));
            assert!(
                (got - exact).abs() <= 1e-5 * scale.max(1e-3),
                "{name} row {r}: {got} vs {exact}"
            );
        }
    }
}

#[test]
fn metadata_of_every_type_reads_back() {
    let Some(dir) = fixtures("metadata_of_every_type_reads_back") else { return };
    let file = GgufFile::open(dir.path().join("fixtures.gguf")).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(file.get("test.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(file.get("test.i8"), Some(&MetaValue::I8(-100)));
    assert_eq!(file.get("test.u16"), Some(&MetaValue::U16(60000)));
    assert_eq!(file.get("test.i16"), Some(&MetaValue::I16(-30000)));
    assert_eq!(file.get("test.u32"), Some(&MetaValue::U32(4_000_000_000)));
    assert_eq!(file.get("test.i32"), Some(&MetaValue::I32(-2_000_000_000)));
    assert_eq!(file.get("test.f32"), Some(&MetaValue::F32(1.5)));
    assert_eq!(file.get("test.bool"), Some(&MetaValue::Bool(true)));
    assert_eq!(file.get_str("test.string").unwrap(), "héllo wörld ✓");
    assert_eq!(file.get("test.u64"), Some(&MetaValue::U64(18_000_000_000_000_000_000)));
    assert_eq!(file.get("test.i64"), Some(&MetaValue::I64(-9_000_000_000_000_000_000)));
    assert_eq!(file.get("test.f64"), Some(&MetaValue::F64(-2.25)));
    let ints: Vec<i64> =
        file.get_array("test.array_i32").unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ints, [1, -2, 3]);
    let strs: Vec<&str> =
        file.get_array("test.array_str").unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(strs, ["a", "bc", ""]);
    assert!(file.get_u64("test.string").is_err(), "a string is not an integer");
}

#[test]
fn type_table_matches_gguf_py() {
    let Some(dir) = fixtures("type_table_matches_gguf_py") else { return };
    let sizes = std::fs::read_to_string(dir.path().join("sizes.txt")).unwrap();
    let mut checked = 0;
    for line in sizes.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let id: u32 = f[0].parse().unwrap();
        let Some(ty) = GgmlType::from_id(id) else {
            panic!("gguf-py knows type {line}, egpu does not")
        };
        assert_eq!(ty.name(), f[1]);
        assert_eq!(ty.block_size(), f[2].parse::<u64>().unwrap(), "{line}");
        if ty == GgmlType::Q8_1 {
            // gguf-py still lists the old 40-byte Q8_1 (f32 d and s); ggml's block_q8_1 has had
            // two f16 fields (36 bytes) for years. Q8_1 is an activation format never stored in
            // model files, so the disagreement does not matter for reading models.
            continue;
        }
        assert_eq!(ty.type_size(), f[3].parse::<u64>().unwrap(), "{line}");
        checked += 1;
    }
    assert!(checked >= 30);
}
