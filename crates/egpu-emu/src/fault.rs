//! Fault injection (§12.7). Each fault is consumed as it fires.

/// A PCIe completion status other than Successful Completion (PCIe Base spec, Cpl header
/// bits 15:13; §4.9 lists the three the bridge driver must tell apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    /// 0b001: nobody decoded the request.
    UnsupportedRequest = 0b001,
    /// 0b010: Configuration Request Retry Status (device still initialising).
    ConfigRetry = 0b010,
    /// 0b100: the completer refused the request.
    CompleterAbort = 0b100,
}

impl CompletionStatus {
    /// The 3-bit status field value.
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// Something to go wrong on purpose. Inject with [`crate::EmulatedBridge::inject`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant's doc describes its fields
pub enum Fault {
    /// The next `times` F0 IN replies carry this ret_status (1 = engine error, 0xFF = engine
    /// timeout with bytes 0–6 zeroed; §3).
    F0RetStatus { status: u8, times: u32 },
    /// The next `times` non-posted TLPs the bridge emits (mode-0 reads and config writes, and
    /// each dword of a mode-2 stream) complete with `status` and take no effect.
    Completion { status: CompletionStatus, times: u32 },
    /// The link drops: LTSSM leaves 0x78, TLPs time out (ret_status 0xFF), GPU DMA fails.
    /// Cleared by F3 power-on (link retrains) or [`crate::EmulatedBridge::clear_faults`].
    LinkDown,
    /// After `transfers` more transfers have executed the device disappears: everything in
    /// flight and everything later fails with `UsbError::Disconnected`.
    DisconnectAfter { transfers: u32 },
    /// The next transfer submitted on `endpoint` stalls. A bulk endpoint then stays halted
    /// until `clear_halt` or `reset_interface`; on EP0 the stall is a protocol stall that the
    /// next SETUP clears (USB 2.0 §8.5.3.4).
    Stall { endpoint: u8 },
    /// The next transfer submitted on `endpoint` never completes (its wait times out).
    Timeout { endpoint: u8 },
    /// The next `times` dwords read by mode-2 streams come back as garbage (the bitwise
    /// complement of the true value, so a test can tell), silently (§4.5).
    GarbageStreamingReads { times: u32 },
    /// The next bulk IN delivers only `bytes` bytes; the device side consumes its data as if
    /// the whole transfer had arrived.
    ShortBulkIn { bytes: usize },
    /// The next `reads` config reads complete with Configuration Request Retry Status.
    ConfigRetry { reads: u32 },
}

/// Faults waiting to fire.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub f0_ret: Option<(u8, u32)>,
    pub completion: Option<(CompletionStatus, u32)>,
    pub disconnect_after: Option<u32>,
    pub stall: Vec<u8>,
    pub timeout: Vec<u8>,
    pub garbage_reads: u32,
    pub short_bulk_in: Option<usize>,
    pub config_retry: u32,
}

impl FaultState {
    /// Consume one F0 IN ret_status override.
    pub fn take_f0_ret(&mut self) -> Option<u8> {
        let (status, times) = self.f0_ret.as_mut()?;
        let status = *status;
        *times = times.saturating_sub(1);
        if *times == 0 {
            self.f0_ret = None;
        }
        Some(status)
    }

    /// Consume one forced completion status for a non-posted TLP.
    pub fn take_completion(&mut self) -> Option<CompletionStatus> {
        let (status, times) = self.completion.as_mut()?;
        let status = *status;
        *times = times.saturating_sub(1);
        if *times == 0 {
            self.completion = None;
        }
        Some(status)
    }

    /// Consume one forced CRS for a config read.
    pub fn take_config_retry(&mut self) -> bool {
        if self.config_retry > 0 {
            self.config_retry -= 1;
            true
        } else {
            false
        }
    }

    /// Whether any fault that acts per streamed dword is pending (disables the fast path).
    pub fn per_dword_read_faults(&self) -> bool {
        self.garbage_reads > 0 || self.completion.is_some()
    }

    /// Take the first pending stall or timeout armed for `endpoint`.
    pub fn take_endpoint_fate(&mut self, endpoint: u8) -> EndpointFate {
        if let Some(i) = self.stall.iter().position(|&e| e == endpoint) {
            self.stall.remove(i);
            return EndpointFate::Stall;
        }
        if let Some(i) = self.timeout.iter().position(|&e| e == endpoint) {
            self.timeout.remove(i);
            return EndpointFate::Hang;
        }
        EndpointFate::Normal
    }
}

/// What an injected endpoint fault does to one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointFate {
    Normal,
    Stall,
    Hang,
}
