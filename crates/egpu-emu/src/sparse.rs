//! Sparse byte memory for large GPU apertures: 64 KiB pages allocated on first write.

use std::collections::HashMap;

const PAGE_SHIFT: u32 = 16;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// A `size`-byte memory whose untouched bytes read 0. Accesses past `size` read 0 and are
/// dropped on write (as a BAR larger than its backing behaves in this model).
#[derive(Debug, Default)]
pub(crate) struct SparseMem {
    size: u64,
    pages: HashMap<u64, Box<[u8]>>,
}

impl SparseMem {
    pub fn new(size: u64) -> Self {
        Self { size, pages: HashMap::new() }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fill `out` from `offset`; bytes past the end or never written read 0.
    pub fn read(&self, offset: u64, out: &mut [u8]) {
        let mut done = 0usize;
        while done < out.len() {
            let at = offset.saturating_add(done as u64);
            let page = at >> PAGE_SHIFT;
            let in_page = (at & (PAGE_SIZE - 1)) as usize;
            let n = (out.len() - done).min(PAGE_SIZE as usize - in_page);
            let chunk = &mut out[done..done + n];
            if at >= self.size {
                chunk.fill(0);
            } else {
                let valid = n.min((self.size - at) as usize);
                match self.pages.get(&page) {
                    Some(p) => chunk[..valid].copy_from_slice(&p[in_page..in_page + valid]),
                    None => chunk[..valid].fill(0),
                }
                chunk[valid..].fill(0);
            }
            done += n;
        }
    }

    /// Store `data` at `offset`; bytes past the end are dropped.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset.saturating_add(done as u64);
            if at >= self.size {
                return;
            }
            let page = at >> PAGE_SHIFT;
            let in_page = (at & (PAGE_SIZE - 1)) as usize;
            let n = (data.len() - done).min(PAGE_SIZE as usize - in_page);
            let valid = n.min((self.size - at) as usize);
            let p = self
                .pages
                .entry(page)
                .or_insert_with(|| vec![0u8; PAGE_SIZE as usize].into_boxed_slice());
            p[in_page..in_page + valid].copy_from_slice(&data[done..done + valid]);
            done += n;
        }
    }

    /// Read one little-endian dword.
    pub fn read_u32(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Write one little-endian dword.
    pub fn write_u32(&mut self, offset: u64, value: u32) {
        self.write(offset, &value.to_le_bytes());
    }

    /// Forget every byte (power loss).
    pub fn clear(&mut self) {
        self.pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zero_until_written_and_crosses_pages() {
        let mut m = SparseMem::new(3 * PAGE_SIZE);
        let mut buf = [0xAAu8; 8];
        m.read(PAGE_SIZE - 4, &mut buf);
        assert_eq!(buf, [0; 8]);
        m.write(PAGE_SIZE - 4, &[1, 2, 3, 4, 5, 6, 7, 8]);
        m.read(PAGE_SIZE - 4, &mut buf);
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.pages.len(), 2);
    }

    #[test]
    fn past_the_end_reads_zero_and_drops_writes() {
        let mut m = SparseMem::new(10);
        m.write(8, &[1, 2, 3, 4]);
        let mut buf = [0xFFu8; 4];
        m.read(8, &mut buf);
        assert_eq!(buf, [1, 2, 0, 0]);
        m.write(u64::MAX - 1, &[9, 9, 9]);
        m.read(u64::MAX - 1, &mut buf);
        assert_eq!(buf, [0; 4]);
    }
}
