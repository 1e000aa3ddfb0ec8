//! Fuzz the TinyGPU reply decoder: any bytes a server sends, for any command and any read
//! length asked, end in a reply or a typed error, never a panic; and the DMA address list at
//! the head of a MAP_SYSMEM_FD buffer parses the same way.
#![no_main]

use std::time::Duration;

use egpu_link::tinygpu::wire::{
    contiguous_base, parse_address_list, read_reply, Command, Request, MAX_SEGMENTS, REQUEST_LEN,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [selector, len_lo, len_hi, rest @ ..] = data else { return };
    let command = Command::ALL[usize::from(*selector) % Command::ALL.len()];
    let expected = usize::from(u16::from_le_bytes([*len_lo, *len_hi]));
    let mut source = rest;
    match read_reply(&mut source, command, expected, Duration::ZERO) {
        Ok(reply) => {
            let reads = matches!(command, Command::MmioRead | Command::SysmemRead);
            assert_eq!(reply.data.len(), if reads { expected } else { 0 });
        }
        Err(error) => drop(error.to_string()),
    }
    if let Ok(segments) = parse_address_list(rest) {
        assert!(!segments.is_empty() && segments.len() <= MAX_SEGMENTS);
        let _ = contiguous_base(&segments, expected as u64);
    }
    if let Some(header) = rest.first_chunk::<REQUEST_LEN>() {
        if let Some(request) = Request::decode(header) {
            assert_eq!(&request.encode(), header);
        }
    }
});
