//! The socket framing of macos-ecosystem.md §A.4: a packed little-endian 33-byte request
//! (`u8 cmd | u32 dev_id | u32 bar | u64 arg0 | u64 arg1 | u64 arg2`) and a 17-byte response
//! (`u8 status | u64 resp0 | u64 resp1`), an error message of `resp0` bytes after a status-1
//! response, and the command numbers of the `RemoteCmd` table.

/// Bytes of one request.
pub(super) const REQUEST_LEN: usize = 33;
/// Bytes of one response header.
pub(super) const RESPONSE_LEN: usize = 17;

/// `status` of a successful response.
pub(super) const STATUS_OK: u8 = 0;
/// `status` of a failed response; `resp0` bytes of UTF-8 message follow.
pub(super) const STATUS_ERR: u8 = 1;

/// Command numbers (§A.4 table).
pub(super) mod cmd {
    pub const PROBE: u8 = 0;
    pub const MAP_BAR: u8 = 1;
    pub const MAP_SYSMEM_FD: u8 = 2;
    pub const CFG_READ: u8 = 3;
    pub const CFG_WRITE: u8 = 4;
    pub const RESET: u8 = 5;
    pub const MMIO_READ: u8 = 6;
    pub const MMIO_WRITE: u8 = 7;
    pub const MAP_SYSMEM: u8 = 8;
    pub const SYSMEM_READ: u8 = 9;
    pub const SYSMEM_WRITE: u8 = 10;
    pub const RESIZE_BAR: u8 = 11;
    pub const PING: u8 = 12;
}

/// The name of a command number, for messages.
pub(super) fn command_name(command: u8) -> &'static str {
    match command {
        cmd::PROBE => "PROBE",
        cmd::MAP_BAR => "MAP_BAR",
        cmd::MAP_SYSMEM_FD => "MAP_SYSMEM_FD",
        cmd::CFG_READ => "CFG_READ",
        cmd::CFG_WRITE => "CFG_WRITE",
        cmd::RESET => "RESET",
        cmd::MMIO_READ => "MMIO_READ",
        cmd::MMIO_WRITE => "MMIO_WRITE",
        cmd::MAP_SYSMEM => "MAP_SYSMEM",
        cmd::SYSMEM_READ => "SYSMEM_READ",
        cmd::SYSMEM_WRITE => "SYSMEM_WRITE",
        cmd::RESIZE_BAR => "RESIZE_BAR",
        cmd::PING => "PING",
        _ => "unknown",
    }
}

/// One decoded request. `dev_id` is carried but ignored, as `server.c` ignores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub cmd: u8,
    pub dev_id: u32,
    pub bar: u32,
    pub arg0: u64,
    pub arg1: u64,
    pub arg2: u64,
}

fn u32_at(b: &[u8; REQUEST_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; REQUEST_LEN], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

impl Request {
    /// Every 33-byte string is a request; what it asks for is judged by the command.
    pub fn parse(b: &[u8; REQUEST_LEN]) -> Self {
        Self {
            cmd: b[0],
            dev_id: u32_at(b, 1),
            bar: u32_at(b, 5),
            arg0: u64_at(b, 9),
            arg1: u64_at(b, 17),
            arg2: u64_at(b, 25),
        }
    }
}

/// A response header.
pub(super) fn response(status: u8, resp0: u64, resp1: u64) -> [u8; RESPONSE_LEN] {
    let mut out = [0u8; RESPONSE_LEN];
    out[0] = status;
    out[1..9].copy_from_slice(&resp0.to_le_bytes());
    out[9..17].copy_from_slice(&resp1.to_le_bytes());
    out
}

/// A status-1 response followed by its message (`resp1` is 0 `[U]`).
pub(super) fn error_response(message: &str) -> Vec<u8> {
    let mut out = response(STATUS_ERR, message.len() as u64, 0).to_vec();
    out.extend_from_slice(message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_fields_sit_at_the_packed_offsets() {
        let mut b = [0u8; REQUEST_LEN];
        b[0] = 6;
        b[1..5].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        b[5..9].copy_from_slice(&5u32.to_le_bytes());
        b[9..17].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        b[17..25].copy_from_slice(&64u64.to_le_bytes());
        b[25..33].copy_from_slice(&u64::MAX.to_le_bytes());
        let r = Request::parse(&b);
        assert_eq!(
            r,
            Request {
                cmd: 6,
                dev_id: 0x0102_0304,
                bar: 5,
                arg0: 0x1122_3344_5566_7788,
                arg1: 64,
                arg2: u64::MAX
            }
        );
    }

    #[test]
    fn error_response_carries_its_message_length() {
        let r = error_response("nope");
        assert_eq!(r.len(), RESPONSE_LEN + 4);
        assert_eq!(r[0], STATUS_ERR);
        assert_eq!(u64::from_le_bytes(r[1..9].try_into().unwrap()), 4);
        assert_eq!(&r[RESPONSE_LEN..], b"nope");
    }
}
