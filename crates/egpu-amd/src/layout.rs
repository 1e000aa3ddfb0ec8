//! Typed locators for fields of the little-endian C structures in the generated tables
//! (`regs::psp`, `regs::ucode`, `regs::discovery`, `regs::mqd`). Each locator knows its byte
//! offset from the start of the outermost structure; reads are bounds-checked and return `None`
//! when the buffer is too short.

use std::marker::PhantomData;

/// A fixed-width little-endian integer stored in a structure.
pub trait LeInt: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// Decodes from exactly `SIZE` bytes.
    fn from_le(bytes: &[u8]) -> Self;
    /// Encodes into exactly `SIZE` bytes.
    fn to_le(self, out: &mut [u8]);
    /// Widens to u64 (bit pattern for signed types).
    fn to_u64(self) -> u64;
    /// Narrows from u64 (truncating).
    fn from_u64(v: u64) -> Self;
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl LeInt for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(&bytes[..Self::SIZE]);
                <$t>::from_le_bytes(b)
            }
            fn to_le(self, out: &mut [u8]) {
                out[..Self::SIZE].copy_from_slice(&self.to_le_bytes());
            }
            // One body for signed and unsigned types: `From` has no i8 -> u64, and `as` is the
            // two's-complement widening wanted for both.
            #[allow(clippy::cast_sign_loss, clippy::cast_lossless)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
        }
    )*};
}
le_int!(u8, u16, u32, u64, i8, i16, i32, i64);

fn window(buf: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    buf.get(start..start.checked_add(len)?)
}

/// A scalar field at a fixed byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scalar<T> {
    /// Byte offset from the start of the outermost structure.
    pub offset: usize,
    _t: PhantomData<T>,
}

impl<T: LeInt> Scalar<T> {
    /// A field at `offset`.
    pub const fn new(offset: usize) -> Self {
        Scalar { offset, _t: PhantomData }
    }
    /// Reads the field of a structure starting at `base` in `buf`.
    pub fn read_at(&self, buf: &[u8], base: usize) -> Option<T> {
        window(buf, base.checked_add(self.offset)?, T::SIZE).map(T::from_le)
    }
    /// Reads the field of a structure starting at byte 0 of `buf`.
    pub fn read(&self, buf: &[u8]) -> Option<T> {
        self.read_at(buf, 0)
    }
    /// Writes the field of a structure starting at byte 0 of `buf`; `None` if it does not fit.
    pub fn write(&self, buf: &mut [u8], value: T) -> Option<()> {
        let end = self.offset.checked_add(T::SIZE)?;
        value.to_le(buf.get_mut(self.offset..end)?);
        Some(())
    }
    /// Size of the field in bytes.
    pub const fn size(&self) -> usize {
        T::SIZE
    }
}

/// A C bitfield: `width` bits at `shift` within the storage unit (of type `T`) at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bits<T> {
    /// Byte offset of the storage unit.
    pub offset: usize,
    /// Bit position of the field's least significant bit within the unit.
    pub shift: u32,
    /// Width in bits.
    pub width: u32,
    _t: PhantomData<T>,
}

impl<T: LeInt> Bits<T> {
    /// A bitfield locator.
    pub const fn new(offset: usize, shift: u32, width: u32) -> Self {
        Bits { offset, shift, width, _t: PhantomData }
    }
    fn mask(&self) -> u64 {
        if self.width >= 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        }
    }
    /// Reads the bitfield of a structure starting at `base` in `buf`.
    pub fn read_at(&self, buf: &[u8], base: usize) -> Option<u64> {
        let unit = window(buf, base.checked_add(self.offset)?, T::SIZE).map(T::from_le)?;
        Some((unit.to_u64() >> self.shift) & self.mask())
    }
    /// Reads the bitfield of a structure starting at byte 0 of `buf`.
    pub fn read(&self, buf: &[u8]) -> Option<u64> {
        self.read_at(buf, 0)
    }
    /// Writes the bitfield (other bits of the unit are kept); `None` if it does not fit.
    pub fn write(&self, buf: &mut [u8], value: u64) -> Option<()> {
        let end = self.offset.checked_add(T::SIZE)?;
        let slot = buf.get_mut(self.offset..end)?;
        let old = T::from_le(slot).to_u64();
        let m = self.mask() << self.shift;
        let new = (old & !m) | ((value << self.shift) & m);
        T::from_u64(new).to_le(slot);
        Some(())
    }
}

/// An array of scalars; `len == 0` marks a C flexible array member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array<T> {
    /// Byte offset of element 0.
    pub offset: usize,
    /// Declared number of elements (0 for a flexible array).
    pub len: usize,
    _t: PhantomData<T>,
}

impl<T: LeInt> Array<T> {
    /// An array locator.
    pub const fn new(offset: usize, len: usize) -> Self {
        Array { offset, len, _t: PhantomData }
    }
    /// Reads element `index` of a structure starting at `base` in `buf` (flexible arrays are
    /// bounded only by `buf`).
    pub fn read_at(&self, buf: &[u8], base: usize, index: usize) -> Option<T> {
        if self.len != 0 && index >= self.len {
            return None;
        }
        let at = base.checked_add(self.offset)?.checked_add(index.checked_mul(T::SIZE)?)?;
        window(buf, at, T::SIZE).map(T::from_le)
    }
    /// Writes element `index` of a structure starting at byte 0 of `buf`.
    pub fn write(&self, buf: &mut [u8], index: usize, value: T) -> Option<()> {
        if self.len != 0 && index >= self.len {
            return None;
        }
        let at = self.offset.checked_add(index.checked_mul(T::SIZE)?)?;
        value.to_le(buf.get_mut(at..at.checked_add(T::SIZE)?)?);
        Some(())
    }
}
