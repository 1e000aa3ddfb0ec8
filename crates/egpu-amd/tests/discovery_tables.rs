//! IP discovery tables built byte by byte from the `discovery.h` layouts (reference §2.1),
//! written with explicit offsets here rather than through the generated locators.

use egpu_amd::chips::IpVersion;
use egpu_amd::discovery::{checksum, parse, DiscoveryError};

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

const IP_OFF: usize = 0x60;
const HARVEST_OFF: usize = 0x200;
const GC_OFF: usize = 0x300;
const SIZE: usize = 0x400;

/// A v4 table with one die holding GC 11.0.0 (4 bases), MP0 13.0.0 (2 bases) and two SDMA
/// instances, the second harvested; plus a gc_info v1.0.
fn table() -> Vec<u8> {
    let mut b = vec![0u8; SIZE];
    // binary_header: signature, version 1.0, checksum (later), size, table_list[6].
    put32(&mut b, 0, 0x28211407);
    put16(&mut b, 4, 1);
    put16(&mut b, 10, SIZE as u16);
    // ip_discovery_header at IP_OFF: IPDS, version 4, size (later), id, num_dies 1,
    // die_info[0] = {0, die_off}; base_addr_64_bit byte = 0 at +76.
    let die_off = IP_OFF + 80;
    put32(&mut b, IP_OFF, 0x53445049);
    put16(&mut b, IP_OFF + 4, 4);
    put16(&mut b, IP_OFF + 12, 1);
    put16(&mut b, IP_OFF + 16, die_off as u16);
    // die_header: die_id 0, num_ips 4, then entries of 8 bytes + 4·n.
    put16(&mut b, die_off + 2, 4);
    let mut at = die_off + 4;
    let entries: [(u16, u8, [u8; 3], &[u32]); 4] = [
        (11, 0, [11, 0, 0], &[0x1260, 0xA000, 0x1C000, 0x2402C00]),
        (255, 0, [13, 0, 0], &[0x16000, 0x243FC00]),
        (42, 0, [6, 0, 0], &[0x1260]),
        (42, 1, [6, 0, 0], &[0x1270]),
    ];
    for (hw, inst, ver, bases) in entries {
        put16(&mut b, at, hw);
        b[at + 2] = inst;
        b[at + 3] = bases.len() as u8;
        b[at + 4..at + 7].copy_from_slice(&ver);
        b[at + 7] = 0x21; // sub_revision 1 (low nibble), variant 2 (high nibble)
        for (k, base) in bases.iter().enumerate() {
            put32(&mut b, at + 8 + 4 * k, *base);
        }
        at += 8 + 4 * bases.len();
    }
    let ip_size = at - IP_OFF;
    put16(&mut b, IP_OFF + 6, ip_size as u16);
    // harvest table: HARV, version 0, list[0] = {42, 1}.
    put32(&mut b, HARVEST_OFF, 0x56524148);
    put16(&mut b, HARVEST_OFF + 8, 42);
    b[HARVEST_OFF + 10] = 1;
    // gc_info v1.0: header {0x4347, 1, 0, size}, then u32 fields.
    let gc_size = 12 + 19 * 4;
    put32(&mut b, GC_OFF, 0x4347);
    put16(&mut b, GC_OFF + 4, 1);
    put32(&mut b, GC_OFF + 8, gc_size as u32);
    let gc_fields = [6u32, 4, 4, 4, 24, 1536, 0, 0, 0, 0, 0, 32, 16, 32, 64, 1, 2, 0, 0];
    for (i, v) in gc_fields.iter().enumerate() {
        put32(&mut b, GC_OFF + 12 + 4 * i, *v);
    }
    // table_list: [0] ip discovery, [1] gc, [2] harvest; each {offset, checksum, size, pad}.
    let tables =
        [(0usize, IP_OFF, ip_size), (1, GC_OFF, gc_size), (2, HARVEST_OFF, 4 + 4 + 32 * 4)];
    for (idx, off, size) in tables {
        let sum = checksum(&b[off..off + size]);
        put16(&mut b, 12 + 8 * idx, off as u16);
        put16(&mut b, 12 + 8 * idx + 2, sum);
        put16(&mut b, 12 + 8 * idx + 4, size as u16);
    }
    fix_binary_checksum(&mut b);
    b
}

fn fix_binary_checksum(b: &mut [u8]) {
    let sum = checksum(&b[10..SIZE]);
    put16(b, 8, sum);
}

#[test]
fn parses_a_table_built_from_the_header_definitions() {
    let d = parse(&table()).expect("valid table");
    assert_eq!(d.version, (1, 0));
    assert_eq!(d.ip_table_version, 4);
    assert_eq!(d.ips.len(), 4);
    assert_eq!(d.gc_version(), Some(IpVersion::new(11, 0, 0)));
    let gc = d.ip(11, 0).expect("gc");
    assert_eq!(gc.bases, [0x1260, 0xA000, 0x1C000, 0x2402C00]);
    assert_eq!((gc.sub_revision, gc.variant), (1, 2));
    assert_eq!(d.ip(255, 0).expect("mp0").version, IpVersion::new(13, 0, 0));
    // SDMA1 is listed in the harvest table.
    assert!(d.ip(42, 1).is_none());
    assert!(d.ips.iter().any(|i| i.hw_id == 42 && i.instance == 1 && i.harvested));
    let g = d.gc_info.expect("gc info");
    assert_eq!((g.num_se, g.num_sa_per_se, g.lds_size, g.wave_size), (6, 2, 64, 32));
    assert_eq!(g.cus_per_sa(), 16);
}

#[test]
fn rejects_bad_binary_signature() {
    let mut b = table();
    b[0] ^= 1;
    assert!(matches!(parse(&b), Err(DiscoveryError::BadSignature { what: "binary_header", .. })));
}

#[test]
fn rejects_bad_binary_checksum() {
    let mut b = table();
    b[SIZE - 1] ^= 0xff;
    let e = parse(&b).unwrap_err();
    assert!(matches!(e, DiscoveryError::BadChecksum { what: "binary", .. }), "{e}");
}

#[test]
fn rejects_bad_ip_table_checksum_even_with_fixed_binary_checksum() {
    let mut b = table();
    b[IP_OFF + 80 + 4 + 4] ^= 1; // GC major
    fix_binary_checksum(&mut b);
    let e = parse(&b).unwrap_err();
    assert!(matches!(e, DiscoveryError::BadChecksum { what: "ip discovery table", .. }), "{e}");
}

#[test]
fn rejects_bad_ip_signature_and_too_many_dies() {
    let mut b = table();
    put32(&mut b, IP_OFF, 0x12345678);
    fix_binary_checksum(&mut b);
    assert!(matches!(
        parse(&b),
        Err(DiscoveryError::BadSignature { what: "ip_discovery_header", .. })
    ));
}

#[test]
fn truncated_inputs_are_errors_not_panics() {
    let b = table();
    for len in [0, 4, 59, 0x60, 0x90, 0x100, SIZE - 1] {
        assert!(parse(&b[..len]).is_err(), "len {len}");
    }
    // A die offset pointing past the end.
    let mut b = table();
    put16(&mut b, IP_OFF + 16, 0xfff0);
    let ip_size = usize::from(u16::from_le_bytes([b[IP_OFF + 6], b[IP_OFF + 7]]));
    let sum = checksum(&b[IP_OFF..IP_OFF + ip_size]);
    put16(&mut b, 12 + 2, sum);
    fix_binary_checksum(&mut b);
    let e = parse(&b).unwrap_err();
    assert!(matches!(e, DiscoveryError::Truncated { what: "die_header", .. }), "{e}");
}
