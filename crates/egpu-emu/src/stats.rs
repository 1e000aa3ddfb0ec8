//! Counters the emulator keeps so tests and benchmarks can see what crossed the wire.

use std::time::Duration;

/// Counts of what the emulated bridge saw and did since creation or the last
/// [`crate::EmulatedBridge::reset_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmuStats {
    /// E4 (XDATA read) requests.
    pub e4_requests: u64,
    /// E5 (XDATA byte write) requests.
    pub e5_requests: u64,
    /// F0 OUT (TLP / stream arm) requests.
    pub f0_out_requests: u64,
    /// F0 IN (completion read) requests.
    pub f0_in_requests: u64,
    /// F2 (SRAM DMA arm) requests.
    pub f2_requests: u64,
    /// F3 (PCIe power) requests.
    pub f3_requests: u64,
    /// C0 (power monitor) requests.
    pub c0_requests: u64,
    /// Standard requests (descriptors, SET_INTERFACE, CLEAR_FEATURE, ...).
    pub standard_requests: u64,
    /// Vendor requests the firmware does not answer or does not know.
    pub unknown_requests: u64,
    /// Bulk OUT transfers executed on EP 0x02.
    pub bulk_out_transfers: u64,
    /// Bulk IN transfers executed on EP 0x81.
    pub bulk_in_transfers: u64,
    /// Bytes accepted by bulk OUT.
    pub bulk_out_bytes: u64,
    /// Bytes delivered by bulk IN.
    pub bulk_in_bytes: u64,
    /// TLPs the bridge's engine emitted (one per dword in streams, §4.1).
    pub tlps: u64,
    /// 4DW TLPs that carried an address below 4 GiB (§4.1: illegal, AMD tolerates).
    pub tlps_4dw_below_4gib: u64,
    /// Non-posted TLPs that completed with Unsupported Request.
    pub unsupported_requests: u64,
    /// Non-posted TLPs that got no completion (link down, malformed).
    pub tlp_timeouts: u64,
    /// Posted writes nobody decoded (silently dropped, as PCIe does).
    pub posted_writes_dropped: u64,
    /// Upstream DMA requests (GPU → bridge memory) that succeeded.
    pub gpu_dma_requests: u64,
    /// Bytes moved by successful upstream DMA.
    pub gpu_dma_bytes: u64,
    /// Upstream DMA requests rejected (bus mastering off, address not decoded, link down).
    pub gpu_dma_rejected: u64,
    /// F2 arms that replaced an F2 operation still in progress.
    pub f2_rearmed_while_busy: u64,
    /// Mode-1/2 streams cancelled before they finished (F0 OUT, CLEAR_HALT, SET_INTERFACE).
    pub streams_cancelled: u64,
    /// Time spent inside the emulator's own code (transport calls); benchmarks subtract it.
    pub device_time: Duration,
}
