//! The messages of the remote link, as plain data with a bounds-checked codec.
//!
//! Inside the encrypted channel every message is `u32 LE body length` + body; a body is an
//! opcode byte and little-endian fields. Requests that need no answer (posted writes, GPU-visible
//! memory writes) get none; every other request gets exactly one reply, except reads, whose data
//! comes back as one or more [`Reply::Data`] chunks of at most [`MAX_DATA`] bytes. Fixed-size
//! messages must have exactly their size; strings are UTF-8 with a u16 length.

use bytes::Bytes;
use egpu_hal::{Bdf, DmaInfo, DmaRegion, DmaRelease};
use thiserror::Error;

/// Protocol version spoken in the prelude and the hello.
pub const VERSION: u8 = 1;

/// Most data bytes one message carries (writes are split into messages this large).
pub const MAX_DATA: usize = 8 << 20;

/// Most bytes one read request asks for (the client splits larger reads and pipelines them).
pub const MAX_READ: usize = 64 << 20;

/// Largest message body: the data and the largest header before it.
pub const MAX_BODY: usize = MAX_DATA + 64;

/// Longest string carried (error messages, the link's kind, the holder's address).
pub const MAX_TEXT: usize = 4096;

/// What a message failed to decode with.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unknown opcode 0x{0:02X}")]
    UnknownOpcode(u8),
    #[error("{what}: {got} bytes where {expected} were expected")]
    Length { what: &'static str, expected: usize, got: usize },
    #[error("{what}: {got} bytes is more than the {max} allowed")]
    TooLong { what: &'static str, got: usize, max: usize },
    #[error("{what}: not UTF-8")]
    Text { what: &'static str },
    #[error("{what}: value {value} is not allowed ({allowed})")]
    Value { what: &'static str, value: u64, allowed: &'static str },
}

/// A request from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    ConfigRead { bdf: Bdf, offset: u16, size: u8 },
    ConfigWrite { bdf: Bdf, offset: u16, size: u8, value: u32 },
    MemRead32 { address: u64 },
    MemWrite { address: u64, size: u8, value: u32 },
    MemRead { address: u64, len: u32 },
    MemWriteBytes { address: u64, data: Bytes },
    Flush,
    Reset,
    DmaAlloc { size: u64 },
    DmaFree { region: DmaRegion },
    DmaWrite { region: DmaRegion, offset: u64, data: Bytes },
    DmaReadBegin { region: DmaRegion, offset: u64, len: u32 },
    DmaReadFinish { handle: u64 },
    Ping,
}

impl Request {
    /// Whether the server answers this request (posted operations get no reply).
    pub fn has_reply(&self) -> bool {
        !matches!(
            self,
            Request::ConfigWrite { .. }
                | Request::MemWrite { .. }
                | Request::MemWriteBytes { .. }
                | Request::DmaWrite { .. }
        )
    }
}

/// Kinds of device-side error carried in [`Reply::Error`], so the client can give back the
/// same [`egpu_hal::LinkError`] variant the local link gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    Other = 0,
    UnsupportedRequest = 1,
    CompleterAbort = 2,
    Busy = 3,
    Unsupported = 4,
    /// The request did not decode or was not allowed (a client bug or a hostile client).
    BadRequest = 5,
}

impl ErrorCode {
    fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => ErrorCode::Other,
            1 => ErrorCode::UnsupportedRequest,
            2 => ErrorCode::CompleterAbort,
            3 => ErrorCode::Busy,
            4 => ErrorCode::Unsupported,
            5 => ErrorCode::BadRequest,
            _ => return None,
        })
    }
}

/// What the server says first on an accepted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The served link's kind ("usb-asm2464", "emulated").
    pub kind: String,
    /// Whether an emulator is behind the served link.
    pub emulated: bool,
    /// The served link's GPU-visible memory.
    pub dma: DmaInfo,
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Value(u32),
    Data(Bytes),
    Region(DmaRegion),
    Pending {
        handle: u64,
        release: Option<DmaRelease>,
    },
    Error {
        code: ErrorCode,
        op: String,
        message: String,
    },
    Hello(Hello),
    /// The connection is refused after the handshake (the device is in use).
    Refused {
        reason: String,
    },
}

mod op {
    pub const CONFIG_READ: u8 = 0x01;
    pub const CONFIG_WRITE: u8 = 0x02;
    pub const MEM_READ32: u8 = 0x03;
    pub const MEM_WRITE: u8 = 0x04;
    pub const MEM_READ: u8 = 0x05;
    pub const MEM_WRITE_BYTES: u8 = 0x06;
    pub const FLUSH: u8 = 0x07;
    pub const RESET: u8 = 0x08;
    pub const DMA_ALLOC: u8 = 0x09;
    pub const DMA_FREE: u8 = 0x0A;
    pub const DMA_WRITE: u8 = 0x0B;
    pub const DMA_READ_BEGIN: u8 = 0x0C;
    pub const DMA_READ_FINISH: u8 = 0x0D;
    pub const PING: u8 = 0x0E;

    pub const OK: u8 = 0x80;
    pub const VALUE: u8 = 0x81;
    pub const DATA: u8 = 0x82;
    pub const REGION: u8 = 0x83;
    pub const PENDING: u8 = 0x84;
    pub const ERROR: u8 = 0x8F;
    pub const HELLO: u8 = 0x90;
    pub const REFUSED: u8 = 0x91;
}

// ---- encoding ----------------------------------------------------------------------------

/// Appends little-endian fields to a message body.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bdf(&mut self, bdf: Bdf) -> &mut Self {
        self.u8(bdf.bus).u8(bdf.device).u8(bdf.function)
    }
    fn region(&mut self, r: &DmaRegion) -> &mut Self {
        self.u64(r.id).u64(r.bus_address).u64(r.size)
    }
    /// Strings longer than [`MAX_TEXT`] are cut (on a character boundary).
    fn text(&mut self, s: &str) -> &mut Self {
        let mut end = s.len().min(MAX_TEXT);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
        self
    }
}

/// The header of a request: everything but trailing bulk data, which the caller sends after it
/// (so large writes are not copied into a message buffer first). Returns the body length.
pub fn encode_request_header(request: &Request, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut w = Writer(out);
    let data_len = match request {
        Request::ConfigRead { bdf, offset, size } => {
            w.u8(op::CONFIG_READ).bdf(*bdf).u16(*offset).u8(*size);
            0
        }
        Request::ConfigWrite { bdf, offset, size, value } => {
            w.u8(op::CONFIG_WRITE).bdf(*bdf).u16(*offset).u8(*size).u32(*value);
            0
        }
        Request::MemRead32 { address } => {
            w.u8(op::MEM_READ32).u64(*address);
            0
        }
        Request::MemWrite { address, size, value } => {
            w.u8(op::MEM_WRITE).u64(*address).u8(*size).u32(*value);
            0
        }
        Request::MemRead { address, len } => {
            w.u8(op::MEM_READ).u64(*address).u32(*len);
            0
        }
        Request::MemWriteBytes { address, data } => {
            w.u8(op::MEM_WRITE_BYTES).u64(*address);
            data.len()
        }
        Request::Flush => {
            w.u8(op::FLUSH);
            0
        }
        Request::Reset => {
            w.u8(op::RESET);
            0
        }
        Request::DmaAlloc { size } => {
            w.u8(op::DMA_ALLOC).u64(*size);
            0
        }
        Request::DmaFree { region } => {
            w.u8(op::DMA_FREE).region(region);
            0
        }
        Request::DmaWrite { region, offset, data } => {
            w.u8(op::DMA_WRITE).region(region).u64(*offset);
            data.len()
        }
        Request::DmaReadBegin { region, offset, len } => {
            w.u8(op::DMA_READ_BEGIN).region(region).u64(*offset).u32(*len);
            0
        }
        Request::DmaReadFinish { handle } => {
            w.u8(op::DMA_READ_FINISH).u64(*handle);
            0
        }
        Request::Ping => {
            w.u8(op::PING);
            0
        }
    };
    let body = out.len() - start - 4 + data_len;
    out[start..start + 4].copy_from_slice(&(body as u32).to_le_bytes());
    body
}

/// A whole request, length prefix included (tests and tools; the client streams data instead).
pub fn encode_request(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request_header(request, &mut out);
    match request {
        Request::MemWriteBytes { data, .. } | Request::DmaWrite { data, .. } => {
            out.extend_from_slice(data)
        }
        _ => {}
    }
    out
}

/// A whole reply, length prefix included.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut w = Writer(out);
    match reply {
        Reply::Ok => {
            w.u8(op::OK);
        }
        Reply::Value(v) => {
            w.u8(op::VALUE).u32(*v);
        }
        Reply::Data(data) => {
            w.u8(op::DATA);
            w.0.extend_from_slice(data);
        }
        Reply::Region(r) => {
            w.u8(op::REGION).region(r);
        }
        Reply::Pending { handle, release } => {
            w.u8(op::PENDING).u64(*handle);
            match release {
                Some(r) => w.u8(1).u64(r.bus_address).u32(r.value),
                None => w.u8(0).u64(0).u32(0),
            };
        }
        Reply::Error { code, op: what, message } => {
            w.u8(op::ERROR).u8(*code as u8).text(what).text(message);
        }
        Reply::Hello(h) => {
            w.u8(op::HELLO).u8(VERSION).u8(u8::from(h.emulated)).text(&h.kind);
            w.u64(h.dma.total_bytes).u64(h.dma.granule).u64(h.dma.write_alignment);
            w.u8(u8::from(h.dma.host_reads_directly));
        }
        Reply::Refused { reason } => {
            w.u8(op::REFUSED).text(reason);
        }
    }
    let body = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&body.to_le_bytes());
}

// ---- decoding ----------------------------------------------------------------------------

/// Reads fields from a body; every read is bounds-checked.
struct Reader<'a> {
    what: &'static str,
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.body.len()).ok_or(
            WireError::Length { what: self.what, expected: self.at + n, got: self.body.len() },
        )?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }
    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::Value { what: self.what, value: v.into(), allowed: "0 or 1" }),
        }
    }
    fn bdf(&mut self) -> Result<Bdf, WireError> {
        let (bus, device, function) = (self.u8()?, self.u8()?, self.u8()?);
        if device > 31 || function > 7 {
            return Err(WireError::Value {
                what: self.what,
                value: (u64::from(device) << 8) | u64::from(function),
                allowed: "device 0-31, function 0-7",
            });
        }
        Ok(Bdf::new(bus, device, function))
    }
    fn size(&mut self) -> Result<u8, WireError> {
        match self.u8()? {
            s @ (1 | 2 | 4) => Ok(s),
            s => Err(WireError::Value { what: self.what, value: s.into(), allowed: "1, 2 or 4" }),
        }
    }
    fn read_len(&mut self) -> Result<u32, WireError> {
        let len = self.u32()?;
        if len as usize > MAX_READ {
            return Err(WireError::TooLong { what: self.what, got: len as usize, max: MAX_READ });
        }
        Ok(len)
    }
    fn region(&mut self) -> Result<DmaRegion, WireError> {
        Ok(DmaRegion { id: self.u64()?, bus_address: self.u64()?, size: self.u64()? })
    }
    fn text(&mut self) -> Result<String, WireError> {
        let len = usize::from(self.u16()?);
        if len > MAX_TEXT {
            return Err(WireError::TooLong { what: self.what, got: len, max: MAX_TEXT });
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Text { what: self.what })
    }
    /// The rest of the body as bulk data.
    fn data(&mut self, body: &Bytes) -> Result<Bytes, WireError> {
        let rest = body.len() - self.at;
        if rest > MAX_DATA {
            return Err(WireError::TooLong { what: self.what, got: rest, max: MAX_DATA });
        }
        let data = body.slice(self.at..);
        self.at = body.len();
        Ok(data)
    }
    /// Nothing may follow the fields.
    fn end<T>(&self, value: T) -> Result<T, WireError> {
        if self.at == self.body.len() {
            Ok(value)
        } else {
            Err(WireError::Length { what: self.what, expected: self.at, got: self.body.len() })
        }
    }
}

fn opcode(body: &[u8]) -> Result<u8, WireError> {
    body.first().copied().ok_or(WireError::Empty)
}

/// Decode a request body (without its length prefix).
pub fn decode_request(body: &Bytes) -> Result<Request, WireError> {
    let code = opcode(body)?;
    let what = match code {
        op::CONFIG_READ => "config read",
        op::CONFIG_WRITE => "config write",
        op::MEM_READ32 => "dword read",
        op::MEM_WRITE => "dword write",
        op::MEM_READ => "streaming read",
        op::MEM_WRITE_BYTES => "streaming write",
        op::FLUSH => "flush",
        op::RESET => "reset",
        op::DMA_ALLOC => "GPU-visible memory allocation",
        op::DMA_FREE => "GPU-visible memory free",
        op::DMA_WRITE => "GPU-visible memory write",
        op::DMA_READ_BEGIN => "GPU-visible memory read",
        op::DMA_READ_FINISH => "GPU-visible memory read finish",
        op::PING => "ping",
        other => return Err(WireError::UnknownOpcode(other)),
    };
    let mut r = Reader { what, body, at: 1 };
    let request = match code {
        op::CONFIG_READ => Request::ConfigRead { bdf: r.bdf()?, offset: r.u16()?, size: r.size()? },
        op::CONFIG_WRITE => Request::ConfigWrite {
            bdf: r.bdf()?,
            offset: r.u16()?,
            size: r.size()?,
            value: r.u32()?,
        },
        op::MEM_READ32 => Request::MemRead32 { address: r.u64()? },
        op::MEM_WRITE => Request::MemWrite { address: r.u64()?, size: r.size()?, value: r.u32()? },
        op::MEM_READ => Request::MemRead { address: r.u64()?, len: r.read_len()? },
        op::MEM_WRITE_BYTES => Request::MemWriteBytes { address: r.u64()?, data: r.data(body)? },
        op::FLUSH => Request::Flush,
        op::RESET => Request::Reset,
        op::DMA_ALLOC => Request::DmaAlloc { size: r.u64()? },
        op::DMA_FREE => Request::DmaFree { region: r.region()? },
        op::DMA_WRITE => {
            Request::DmaWrite { region: r.region()?, offset: r.u64()?, data: r.data(body)? }
        }
        op::DMA_READ_BEGIN => {
            Request::DmaReadBegin { region: r.region()?, offset: r.u64()?, len: r.read_len()? }
        }
        op::DMA_READ_FINISH => Request::DmaReadFinish { handle: r.u64()? },
        _ => Request::Ping,
    };
    r.end(request)
}

/// Decode a reply body (without its length prefix).
pub fn decode_reply(body: &Bytes) -> Result<Reply, WireError> {
    let code = opcode(body)?;
    let mut r = Reader { what: "reply", body, at: 1 };
    let reply = match code {
        op::OK => Reply::Ok,
        op::VALUE => Reply::Value(r.u32()?),
        op::DATA => Reply::Data(r.data(body)?),
        op::REGION => Reply::Region(r.region()?),
        op::PENDING => {
            let handle = r.u64()?;
            let has_release = r.flag()?;
            let (bus_address, value) = (r.u64()?, r.u32()?);
            Reply::Pending {
                handle,
                release: has_release.then_some(DmaRelease { bus_address, value }),
            }
        }
        op::ERROR => {
            let raw = r.u8()?;
            let code = ErrorCode::from_u8(raw).ok_or(WireError::Value {
                what: "error reply",
                value: raw.into(),
                allowed: "error codes 0-5",
            })?;
            Reply::Error { code, op: r.text()?, message: r.text()? }
        }
        op::HELLO => {
            let version = r.u8()?;
            if version != VERSION {
                return Err(WireError::Value {
                    what: "hello: protocol version",
                    value: version.into(),
                    allowed: "1",
                });
            }
            let emulated = r.flag()?;
            let kind = r.text()?;
            let dma = DmaInfo {
                total_bytes: r.u64()?,
                granule: r.u64()?,
                write_alignment: r.u64()?,
                host_reads_directly: r.flag()?,
            };
            if dma.granule == 0 || dma.write_alignment == 0 {
                return Err(WireError::Value {
                    what: "hello: DMA granule and write alignment",
                    value: 0,
                    allowed: "at least 1",
                });
            }
            Reply::Hello(Hello { kind, emulated, dma })
        }
        op::REFUSED => Reply::Refused { reason: r.text()? },
        other => return Err(WireError::UnknownOpcode(other)),
    };
    r.end(reply)
}

/// Length prefix of a message: the body length, checked against [`MAX_BODY`].
pub fn decode_length(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_BODY {
        return Err(WireError::TooLong { what: "message", got: len, max: MAX_BODY });
    }
    Ok(len)
}

/// Feed arbitrary bytes to every decoder (the fuzz target and the random-message tests): each
/// must return a value or an error, never panic, and what decodes must encode back the same.
pub fn exercise(input: &[u8]) {
    let body = Bytes::copy_from_slice(input);
    if let Ok(request) = decode_request(&body) {
        let encoded = encode_request(&request);
        assert_eq!(&encoded[4..], input, "a decoded request encodes back to its bytes");
    }
    if let Ok(reply) = decode_reply(&body) {
        let mut encoded = Vec::new();
        encode_reply(&reply, &mut encoded);
        assert_eq!(decode_reply(&Bytes::from(encoded[4..].to_vec())), Ok(reply));
    }
    if let Some(prefix) = input.get(..4) {
        let _ = decode_length(prefix.try_into().unwrap_or([0; 4]));
    }
    let _ = crate::channel::Prelude::decode(input);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> DmaRegion {
        DmaRegion { id: 3, bus_address: 0x1_0000_2000, size: 0x4000 }
    }

    fn all_requests() -> Vec<Request> {
        vec![
            Request::ConfigRead { bdf: Bdf::new(3, 0, 1), offset: 0x104, size: 4 },
            Request::ConfigWrite { bdf: Bdf::new(1, 31, 7), offset: 4, size: 2, value: 6 },
            Request::MemRead32 { address: 0xF000_0000 },
            Request::MemWrite { address: 0xF000_0001, size: 1, value: 0xAB },
            Request::MemRead { address: 0x8000_0000, len: 4096 },
            Request::MemWriteBytes { address: 0x8000_0000, data: Bytes::from_static(b"abcdefgh") },
            Request::Flush,
            Request::Reset,
            Request::DmaAlloc { size: 48 << 10 },
            Request::DmaFree { region: region() },
            Request::DmaWrite { region: region(), offset: 8, data: Bytes::from_static(b"wxyz") },
            Request::DmaReadBegin { region: region(), offset: 0, len: 64 },
            Request::DmaReadFinish { handle: 9 },
            Request::Ping,
        ]
    }

    #[test]
    fn every_request_round_trips_and_every_truncation_is_an_error() {
        for request in all_requests() {
            let encoded = encode_request(&request);
            let body = Bytes::from(encoded[4..].to_vec());
            assert_eq!(decode_length(encoded[..4].try_into().unwrap()), Ok(body.len()));
            assert_eq!(decode_request(&body), Ok(request.clone()));
            let data_len = match &request {
                Request::MemWriteBytes { data, .. } | Request::DmaWrite { data, .. } => data.len(),
                _ => 0,
            };
            for cut in 0..body.len() {
                let result = decode_request(&body.slice(..cut));
                // Bulk writes may carry less data; the fields before it may not be cut.
                if cut < body.len() - data_len {
                    assert!(result.is_err(), "{request:?} cut at {cut} decoded: {result:?}");
                }
            }
            let fixed = data_len == 0;
            if fixed {
                let mut longer = body.to_vec();
                longer.push(0);
                assert!(decode_request(&Bytes::from(longer)).is_err(), "{request:?} + 1 byte");
            }
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            Reply::Ok,
            Reply::Value(0x1234_5678),
            Reply::Data(Bytes::from_static(b"data")),
            Reply::Region(region()),
            Reply::Pending { handle: 1, release: None },
            Reply::Pending {
                handle: 2,
                release: Some(DmaRelease { bus_address: 0x1_0000_0000, value: 7 }),
            },
            Reply::Error {
                code: ErrorCode::UnsupportedRequest,
                op: "read".into(),
                message: "UR".into(),
            },
            Reply::Hello(Hello {
                kind: "emulated".into(),
                emulated: true,
                dma: DmaInfo {
                    total_bytes: 1 << 32,
                    granule: 4096,
                    write_alignment: 1,
                    host_reads_directly: true,
                },
            }),
            Reply::Refused { reason: "in use by 127.0.0.1:5000".into() },
        ];
        for reply in replies {
            let mut encoded = Vec::new();
            encode_reply(&reply, &mut encoded);
            let body = Bytes::from(encoded[4..].to_vec());
            assert_eq!(decode_reply(&body), Ok(reply.clone()));
            if !matches!(reply, Reply::Ok | Reply::Data(_)) {
                assert!(decode_reply(&body.slice(..body.len() - 1)).is_err(), "{reply:?}");
            }
        }
    }

    #[test]
    fn out_of_range_fields_are_refused_with_what_is_allowed() {
        let mut bad_size =
            encode_request(&Request::MemWrite { address: 0, size: 4, value: 0 })[4..].to_vec();
        bad_size[9] = 3;
        let error = decode_request(&Bytes::from(bad_size)).unwrap_err();
        assert_eq!(error.to_string(), "dword write: value 3 is not allowed (1, 2 or 4)");
        let mut bad_bdf =
            encode_request(&Request::ConfigRead { bdf: Bdf::new(0, 0, 0), offset: 0, size: 4 })
                [4..]
                .to_vec();
        bad_bdf[2] = 32;
        assert!(matches!(decode_request(&Bytes::from(bad_bdf)), Err(WireError::Value { .. })));
        let big = encode_request(&Request::MemRead { address: 0, len: MAX_READ as u32 + 4 });
        assert!(matches!(
            decode_request(&Bytes::from(big[4..].to_vec())),
            Err(WireError::TooLong { .. })
        ));
        assert_eq!(decode_length(0u32.to_le_bytes()), Err(WireError::Empty));
        assert!(decode_length((MAX_BODY as u32 + 1).to_le_bytes()).is_err());
        assert_eq!(
            decode_request(&Bytes::from_static(&[0x7F])),
            Err(WireError::UnknownOpcode(0x7F))
        );
    }

    #[test]
    fn ten_thousand_random_and_truncated_bodies_decode_or_fail_cleanly() {
        // A fixed xorshift sequence: reproducible, no dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid: Vec<Vec<u8>> =
            all_requests().iter().map(|r| encode_request(r)[4..].to_vec()).collect();
        for i in 0..10_000 {
            let input: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 96) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // A valid body truncated or with one byte flipped.
                let mut body = valid[(next() as usize) % valid.len()].clone();
                if next() % 2 == 0 {
                    body.truncate((next() as usize) % (body.len() + 1));
                } else if !body.is_empty() {
                    let at = (next() as usize) % body.len();
                    body[at] ^= 1 << (next() % 8);
                }
                body
            };
            exercise(&input);
        }
    }
}
