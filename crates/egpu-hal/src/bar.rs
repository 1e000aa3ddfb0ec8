//! Access to one memory BAR through a [`PcieLink`]: bounds-checked, dword-aligned, streaming for
//! ranges, and a write batch that coalesces adjacent dword writes into one streaming transfer
//! (over USB each transfer is a round-trip-sized cost; a run of 64 register writes becomes two
//! transfers instead of 64).

use bytes::Bytes;

use crate::link::PcieLink;
use crate::LinkError;

/// Where a BAR sits on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRegion {
    /// Bus address of the BAR's first byte.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A BAR reached through a link.
pub struct BarMmio<'a, L: PcieLink + ?Sized> {
    link: &'a mut L,
    region: BarRegion,
}

impl<'a, L: PcieLink + ?Sized> BarMmio<'a, L> {
    /// Access `region` through `link`.
    pub fn new(link: &'a mut L, region: BarRegion) -> Self {
        Self { link, region }
    }

    /// The BAR this accesses.
    pub fn region(&self) -> BarRegion {
        self.region
    }

    /// One checked dword read (completion status is verified).
    pub fn read32(&mut self, offset: u64) -> Result<u32, LinkError> {
        let address = self.check("BAR read32", offset, 4)?;
        self.link.mem_read32(address)
    }

    /// One posted dword write.
    pub fn write32(&mut self, offset: u64, value: u32) -> Result<(), LinkError> {
        let address = self.check("BAR write32", offset, 4)?;
        self.link.mem_write(address, 4, value)
    }

    /// Streaming read of `len` bytes.
    pub fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        let address = self.check("BAR read", offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.link.mem_read(address, len)
    }

    /// Streaming write of `data` (copied once into a transfer buffer).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), LinkError> {
        self.write_bytes(offset, Bytes::copy_from_slice(data))
    }

    /// Streaming write without a copy.
    pub fn write_bytes(&mut self, offset: u64, data: Bytes) -> Result<(), LinkError> {
        let address = self.check("BAR write", offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        self.link.mem_write_bytes(address, data)
    }

    /// Start a batch of dword writes that goes out, coalesced, on [`WriteBatch::submit`].
    pub fn batch(&mut self) -> WriteBatch<'_, 'a, L> {
        WriteBatch { bar: self, runs: Vec::new() }
    }

    /// Wait until every posted write has left the host.
    pub fn flush(&mut self) -> Result<(), LinkError> {
        self.link.flush()
    }

    fn check(&self, op: &str, offset: u64, len: usize) -> Result<u64, LinkError> {
        if !offset.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: op.into(), address: offset, len });
        }
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.region.size => Ok(self.region.address + offset),
            _ => Err(LinkError::OutOfRange { op: op.into(), offset, len, size: self.region.size }),
        }
    }
}

/// Dword writes collected in order; each run of consecutive addresses leaves as one transfer.
/// Order between runs is kept, so a doorbell written last is still written last.
pub struct WriteBatch<'b, 'a, L: PcieLink + ?Sized> {
    bar: &'b mut BarMmio<'a, L>,
    runs: Vec<(u64, Vec<u8>)>,
}

impl<L: PcieLink + ?Sized> WriteBatch<'_, '_, L> {
    /// Queue one dword write.
    pub fn write32(&mut self, offset: u64, value: u32) -> Result<&mut Self, LinkError> {
        self.bar.check("batched BAR write", offset, 4)?;
        match self.runs.last_mut() {
            Some((start, bytes)) if *start + bytes.len() as u64 == offset => {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            _ => self.runs.push((offset, value.to_le_bytes().to_vec())),
        }
        Ok(self)
    }

    /// Queue a dword-aligned range.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<&mut Self, LinkError> {
        self.bar.check("batched BAR write", offset, data.len())?;
        match self.runs.last_mut() {
            Some((start, bytes)) if *start + bytes.len() as u64 == offset => {
                bytes.extend_from_slice(data);
            }
            _ => self.runs.push((offset, data.to_vec())),
        }
        Ok(self)
    }

    /// Number of transfers-worth of runs queued so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Send every run in order.
    pub fn submit(self) -> Result<(), LinkError> {
        for (offset, bytes) in self.runs {
            let address = self.bar.region.address + offset;
            if bytes.len() == 4 {
                let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                self.bar.link.mem_write(address, 4, value)?;
            } else {
                self.bar.link.mem_write_bytes(address, Bytes::from(bytes))?;
            }
        }
        Ok(())
    }
}
