//! Malformed GGUF files give typed errors and never panic.

mod common;

use common::TestRng;
use egpu_llm::gguf::{GgufBuilder, GgufError, GgufFile, MetaType, MetaValue};
use egpu_llm::quant::GgmlType;

fn valid() -> Vec<u8> {
    GgufBuilder::new()
        .meta("general.architecture", MetaValue::String("llama".into()))
        .meta("a.list", MetaValue::Array(MetaType::U32, vec![MetaValue::U32(1), MetaValue::U32(2)]))
        .tensor("w", &[32, 2], GgmlType::Q8_0, vec![0; 68])
        .tensor("b", &[4], GgmlType::F32, 1.0f32.to_le_bytes().repeat(4))
        .build()
}

fn err(bytes: Vec<u8>) -> GgufError {
    GgufFile::from_bytes(bytes).expect_err("malformed file must be rejected")
}

#[test]
fn the_valid_file_parses() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    assert_eq!(f.tensors.len(), 2);
    let (info, data) = f.tensor_data("b").unwrap();
    assert_eq!(info.dims, [4]);
    assert_eq!(data, 1.0f32.to_le_bytes().repeat(4).as_slice());
    assert_eq!(f.data_offset % 32, 0);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid();
    for len in 0..bytes.len() {
        let e = GgufFile::from_bytes(bytes[..len].to_vec());
        assert!(e.is_err(), "prefix of {len} bytes parsed");
    }
}

#[test]
fn wrong_magic() {
    let mut b = valid();
    b[0] = b'X';
    assert!(matches!(err(b), GgufError::BadMagic { found } if found == *b"XGUF"));
}

#[test]
fn versions_other_than_2_and_3() {
    let mut b = valid();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = err(b.clone());
    assert!(matches!(e, GgufError::UnsupportedVersion { version: 1, .. }));
    assert!(e.to_string().contains("re-convert"));
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(err(b).to_string().contains("big-endian"));
    let mut v2 = GgufBuilder::new().meta("k", MetaValue::U8(1));
    v2.version = 2;
    assert_eq!(GgufFile::from_bytes(v2.build()).unwrap().version, 2);
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let mut b = valid();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(err(b), GgufError::AbsurdCount { count: u64::MAX, .. }));
    let mut b = valid();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(err(b), GgufError::AbsurdCount { .. }));
    // The first key's length.
    let mut b = valid();
    b[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    assert!(matches!(err(b), GgufError::AbsurdCount { .. }));
    // An array count: the array element count follows key, type 9 and element type 4.
    let bytes = valid();
    let at = find(&bytes, b"a.list") + 6 + 4 + 4;
    let mut b = bytes.clone();
    b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(err(b), GgufError::AbsurdCount { .. }));
}

#[test]
fn unknown_value_and_tensor_types() {
    let bytes = valid();
    let at = find(&bytes, b"general.architecture") + 20;
    let mut b = bytes.clone();
    b[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    assert!(matches!(err(b), GgufError::UnknownValueType { type_id: 13, .. }));

    let f = GgufBuilder::new().tensor("t", &[32], GgmlType::F32, vec![0; 128]).build();
    // The tensor type sits after name (8 + 1), n_dims (4), one dim (8).
    let at = find(&f, b"t\x01\x00\x00\x00") + 1 + 4 + 8;
    let mut b = f.clone();
    b[at..at + 4].copy_from_slice(&31u32.to_le_bytes());
    let e = err(b);
    assert!(matches!(&e, GgufError::BadTensor { name, .. } if name == "t"), "{e}");
    assert!(e.to_string().contains("unknown ggml type id 31"), "{e}");
}

#[test]
fn bad_tensor_offsets_and_shapes() {
    // Misaligned offset.
    let f = valid();
    let at = find(&f, b"b\x01\x00\x00\x00") + 1 + 4 + 8 + 4;
    let mut b = f.clone();
    b[at..at + 8].copy_from_slice(&3u64.to_le_bytes());
    assert!(err(b).to_string().contains("not a multiple of the alignment"));
    // Offset past the end.
    let mut b = f.clone();
    b[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(err(b).to_string().contains("past the end"));
    // Offset that overflows when added to the data section start.
    let mut b = f.clone();
    b[at..at + 8].copy_from_slice(&(!31u64).to_le_bytes());
    assert!(err(b).to_string().contains("past the end"));
    // Too many dimensions.
    let t = GgufBuilder::new().tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]).build();
    assert!(err(t).to_string().contains("at most 4"));
    // Dimensions whose product overflows.
    let t = GgufBuilder::new().tensor("t", &[1 << 32, 1 << 32], GgmlType::F32, vec![]).build();
    assert!(err(t).to_string().contains("overflow"));
    // A row that is not a whole number of blocks.
    let t = GgufBuilder::new().tensor("t", &[33], GgmlType::Q4_0, vec![0; 18]).build();
    assert!(err(t).to_string().contains("block size"));
    // Duplicate tensor names.
    let t = GgufBuilder::new()
        .tensor("t", &[1], GgmlType::F32, vec![0; 4])
        .tensor("t", &[1], GgmlType::F32, vec![0; 4])
        .build();
    assert!(err(t).to_string().contains("twice"));
}

#[test]
fn bad_metadata() {
    for (value, what) in
        [(MetaValue::U32(0), "0"), (MetaValue::U32(24), "24"), (MetaValue::U64(32), "UINT64")]
    {
        let b = GgufBuilder::new().meta("general.alignment", value).build();
        let e = err(b);
        assert!(matches!(e, GgufError::BadAlignment { .. }), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    let b = GgufBuilder::new().meta("k", MetaValue::U8(1)).meta("k", MetaValue::U8(2)).build();
    assert!(matches!(err(b), GgufError::DuplicateKey { .. }));
    let mut b = GgufBuilder::new().meta("key", MetaValue::String("ab".into())).build();
    let at = find(&b, b"ab");
    b[at + 1] = 0xff;
    assert!(matches!(err(b), GgufError::InvalidUtf8 { .. }));
    let mut b = GgufBuilder::new().meta("key", MetaValue::Bool(true)).build();
    // The bool byte follows the key (8 + 3 bytes) and the type (4 bytes).
    let at = find(&b, b"key") + 3 + 4;
    assert_eq!(b[at], 1);
    b[at] = 2;
    assert!(err(b).to_string().contains("neither 0 nor 1"));
    // Arrays of arrays nested too deep.
    let mut v = MetaValue::U8(0);
    for _ in 0..10 {
        v = MetaValue::Array(
            if matches!(v, MetaValue::U8(_)) { MetaType::U8 } else { MetaType::Array },
            vec![v],
        );
    }
    assert!(matches!(
        err(GgufBuilder::new().meta("deep", v).build()),
        GgufError::NestingTooDeep { .. }
    ));
}

#[test]
fn random_corruption_never_panics() {
    let base = valid();
    let mut rng = TestRng(99);
    let mut rejected = 0;
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let at = (rng.next_u64() % b.len() as u64) as usize;
            b[at] = rng.next_u64() as u8;
        }
        if let Ok(f) = GgufFile::from_bytes(b) {
            // Whatever parsed must be readable without panicking.
            for t in &f.tensors {
                assert_eq!(f.data_of(t).expect("parsed infos are in bounds").len() as u64, t.size);
            }
        } else {
            rejected += 1;
        }
    }
    assert!(rejected > 1000, "corruption should usually be caught ({rejected} rejected)");
}

#[test]
fn missing_keys_and_tensors_name_themselves() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    assert!(f.get_u64("llama.block_count").unwrap_err().to_string().contains("llama.block_count"));
    assert!(f.tensor_data("nope").unwrap_err().to_string().contains("nope"));
    let e = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/model.gguf"));
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("needle in file")
}

#[test]
fn foreign_tensor_infos_are_bounds_checked() {
    let f = GgufFile::from_bytes(valid()).unwrap();
    let mut info = f.tensor("b").unwrap().clone();
    info.offset = u64::MAX - 3;
    assert!(matches!(f.data_of(&info), Err(GgufError::Truncated { .. })));
    info.offset = 0;
    info.size = 1 << 40;
    assert!(f.data_of(&info).is_err());
}

#[test]
fn optional_keys_of_the_wrong_type_are_errors_not_defaults() {
    let f = GgufFile::from_bytes(
        GgufBuilder::new()
            .meta("tokenizer.ggml.add_bos_token", MetaValue::String("yes".into()))
            .meta("llama.rope.scaling.factor", MetaValue::F32(4.0))
            .meta("flag", MetaValue::Bool(false))
            .build(),
    )
    .unwrap();
    assert!(matches!(
        f.get_bool_opt("tokenizer.ggml.add_bos_token"),
        Err(GgufError::WrongType { expected: "a boolean", .. })
    ));
    assert_eq!(f.get_bool_opt("flag").unwrap(), Some(false));
    assert_eq!(f.get_bool_opt("absent").unwrap(), None);
    assert_eq!(f.get_f64_opt("llama.rope.scaling.factor").unwrap(), Some(4.0));
    assert!(matches!(
        f.get_str_opt("llama.rope.scaling.factor"),
        Err(GgufError::WrongType { expected: "a string", .. })
    ));
}
