//! The OS edges of MAP_SYSMEM_FD (§A.4): anonymous shared memory the server maps and the
//! client maps too, and the `sendmsg` that passes its descriptor with `SCM_RIGHTS`.
//!
//! `server.c` uses `shm_open("/tinygpu_<idx>")`; Linux has `memfd_create`, which gives the
//! same kind of descriptor without a name in /dev/shm to clean up (the name is only a label)
//! `[U]`: a client sees a descriptor either way. The server closes its copy once sent.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;

/// A `MAP_SHARED` mapping of a shared-memory descriptor, unmapped on drop.
pub(super) struct SharedMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// the only handle this process has to it.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// The whole mapping. The client process may write the same pages at any time through
    /// its own mapping; what it sees of our writes (and we of its) is what DMA into shared
    /// memory gives on real hardware: bytes, possibly torn, never more.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is a live read/write mapping for as long as self lives, and
        // `&mut self` makes this the only slice of it in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and no slice of it outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Zero-filled shared memory of `len` bytes: its descriptor (to pass to the client) and the
/// server's own mapping of it.
pub(super) fn create(label: &str, len: usize) -> io::Result<(OwnedFd, SharedMapping)> {
    let name = CString::new(label).map_err(|_| io::Error::other("NUL in shm label"))?;
    // SAFETY: `name` is a valid NUL-terminated string; the flags are constants.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let file = File::from(fd);
    file.set_len(len as u64)?;
    // SAFETY: a fresh shared mapping of a descriptor we hold, `len` bytes long (the file was
    // just sized to that); the kernel picks the address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
    Ok((OwnedFd::from(file), SharedMapping { ptr, len }))
}

/// Send `bytes` with `fd` attached as `SCM_RIGHTS` ancillary data to the first byte sent.
pub(super) fn send_with_fd(
    stream: &mut UnixStream,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    let fd_len = std::mem::size_of::<libc::c_int>() as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
    // u64 storage keeps the control buffer aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov =
        libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` bytes, enough for one header carrying one int, so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA lies inside the buffer; the data may be
    // unaligned, hence write_unaligned.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&raw const msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fd_len) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>(), fd.as_raw_fd());
    }
    // SAFETY: msg and everything it points to (iov, bytes, control) live across the call.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // A stream socket may take less than all of it; the descriptor went with the first byte.
    stream.write_all(&bytes[sent as usize..])
}
