//! The USB side of the bridge (§1, §1.1, §4.10): endpoint queues in submission order,
//! virtual-time deadlines, halts, and the `UsbTransport` contract of `egpu-usb`.
//!
//! Nothing sleeps. Transfers run as soon as the device can serve them (during `submit`, or
//! during `wait` once something else unblocked them). A `wait` on a transfer the device can
//! never serve advances a virtual clock to the earliest pending deadline, times out what
//! expired, and tries again — so it returns `UsbError::Timeout { after: <its timeout> }` at
//! once, as if that much time had passed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use egpu_usb::{Completion, ControlSetup, InFlight, Tag, Transfer, UsbError};

use super::descriptors;
use super::firmware::{BulkInError, ControlOutcome};
use super::Emu;
use crate::fault::EndpointFate;

/// The interface's bulk endpoints (§1.1 alt 0).
pub const EP_BULK_IN: u8 = 0x81;
/// The bulk OUT endpoint (streaming-write data, F2 SRAM writes).
pub const EP_BULK_OUT: u8 = 0x02;
/// Extra endpoints of the USB2 configuration and SuperSpeed alt 1 (legacy UAS layout); the
/// custom firmware never arms them, so transfers there NAK forever.
const EP_LEGACY_IN: u8 = 0x83;
const EP_LEGACY_OUT: u8 = 0x04;

/// A submitted transfer waiting its turn on its endpoint.
#[derive(Debug)]
pub(crate) struct Pending {
    tag: Tag,
    transfer: Transfer,
    timeout: Duration,
    deadline: Duration,
    fate: EndpointFate,
    /// The device took it and will never answer (ignored request, injected timeout).
    hung: bool,
}

/// Host-visible USB state.
pub(crate) struct UsbState {
    pub inflight: InFlight,
    queues: BTreeMap<u8, VecDeque<Pending>>,
    pub halted: BTreeSet<u8>,
    /// Virtual time, advanced only by waits that had to time something out.
    now: Duration,
    pub plugged: bool,
    configuration: u8,
    alt_setting: u8,
}

impl UsbState {
    pub fn new() -> Self {
        Self {
            inflight: InFlight::new(),
            queues: BTreeMap::new(),
            halted: BTreeSet::new(),
            now: Duration::ZERO,
            plugged: true,
            configuration: 1,
            alt_setting: 0,
        }
    }
}

/// What executing a transfer came to.
enum Exec {
    Done(Result<Completion, UsbError>),
    /// The endpoint NAKs for now; try again when something changes.
    Blocked,
    /// Taken by the device, never answered.
    Hang,
}

fn disconnected(what: &dyn std::fmt::Display) -> UsbError {
    UsbError::Disconnected { transfer: what.to_string() }
}

impl Emu {
    fn endpoint_exists(&self, endpoint: u8) -> bool {
        let legacy = !self.cfg.speed.is_superspeed() || self.usb.alt_setting == 1;
        match endpoint {
            0 | EP_BULK_IN | EP_BULK_OUT => true,
            EP_LEGACY_IN | EP_LEGACY_OUT => legacy,
            _ => false,
        }
    }

    /// `UsbTransport::submit`.
    pub(crate) fn submit(
        &mut self,
        transfer: Transfer,
        timeout: Duration,
    ) -> Result<Tag, UsbError> {
        if !self.usb.plugged {
            return Err(disconnected(&transfer));
        }
        let endpoint = transfer.endpoint();
        let direction_ok = match &transfer {
            Transfer::BulkIn { endpoint, .. } => endpoint & 0x80 != 0,
            Transfer::BulkOut { endpoint, .. } => endpoint & 0x80 == 0,
            _ => true,
        };
        if !direction_ok || !self.endpoint_exists(endpoint) {
            return Err(UsbError::Failed {
                transfer: transfer.to_string(),
                reason: format!(
                    "endpoint 0x{endpoint:02X} is not a matching endpoint of interface 0 alt {} (the bridge has bulk 0x81 IN and 0x02 OUT)",
                    self.usb.alt_setting
                ),
            });
        }
        let tag = self.usb.inflight.begin();
        let fate = self.faults.take_endpoint_fate(endpoint);
        let pending = Pending {
            tag,
            transfer,
            timeout,
            deadline: self.usb.now.saturating_add(timeout),
            fate,
            hung: fate == EndpointFate::Hang,
        };
        self.usb.queues.entry(endpoint).or_default().push_back(pending);
        self.pump();
        Ok(tag)
    }

    /// `UsbTransport::wait`.
    pub(crate) fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError> {
        loop {
            self.pump();
            if let Some(result) = self.usb.inflight.collect(tag) {
                return result;
            }
            // Blocked: let time pass to the earliest deadline of anything pending.
            let earliest =
                self.usb.queues.values().flat_map(|q| q.iter().map(|p| p.deadline)).min();
            let Some(earliest) = earliest else {
                // Cannot happen (the tag is running, so it is queued); fail rather than spin.
                return Err(UsbError::UnknownTag(tag));
            };
            self.usb.now = self.usb.now.max(earliest);
            let now = self.usb.now;
            let mut expired = Vec::new();
            for q in self.usb.queues.values_mut() {
                let (gone, kept): (Vec<Pending>, Vec<Pending>) =
                    q.drain(..).partition(|p| p.deadline <= now);
                q.extend(kept);
                expired.extend(gone);
            }
            for p in expired {
                let error =
                    UsbError::Timeout { transfer: p.transfer.to_string(), after: p.timeout };
                self.usb.inflight.finish(p.tag, Err(error));
            }
        }
    }

    /// `UsbTransport::reset_interface`: SET_INTERFACE(0, alt 0).
    pub(crate) fn reset_interface(&mut self) -> Result<(), UsbError> {
        if !self.usb.plugged {
            return Err(disconnected(&"SET_INTERFACE(interface 0, alt 0)"));
        }
        self.stats.standard_requests += 1;
        // Host side: everything in flight is cancelled and forgotten, sticky error included.
        self.usb.queues.clear();
        self.usb.inflight.clear();
        self.set_interface(0);
        self.after_execute();
        Ok(())
    }

    /// `UsbTransport::clear_halt`: CLEAR_FEATURE(ENDPOINT_HALT).
    pub(crate) fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        if !self.usb.plugged {
            return Err(disconnected(&format!("CLEAR_FEATURE(ENDPOINT_HALT) on 0x{endpoint:02X}")));
        }
        if !self.endpoint_exists(endpoint) {
            return Err(UsbError::Failed {
                transfer: format!("CLEAR_FEATURE(ENDPOINT_HALT) on 0x{endpoint:02X}"),
                reason: "no such endpoint on interface 0".into(),
            });
        }
        self.stats.standard_requests += 1;
        self.clear_halt_device(endpoint);
        self.after_execute();
        Ok(())
    }

    /// §1.1: SET_INTERFACE clears both bulk EPs and streaming state.
    fn set_interface(&mut self, alt: u8) {
        self.usb.alt_setting = alt;
        self.usb.halted.clear();
        self.usb_reset_side_effects();
    }

    /// §1.1: CLEAR_FEATURE(ENDPOINT_HALT) on 0x02/0x81 clears that EP and cancels streaming.
    fn clear_halt_device(&mut self, endpoint: u8) {
        self.usb.halted.remove(&endpoint);
        if (endpoint == EP_BULK_IN || endpoint == EP_BULK_OUT) && self.fw.cancel_streams() {
            self.stats.streams_cancelled += 1;
        }
    }

    /// The device disappears: everything queued fails, later submits fail.
    pub(crate) fn unplug(&mut self) {
        self.usb.plugged = false;
        let queues = std::mem::take(&mut self.usb.queues);
        for p in queues.into_values().flatten() {
            self.usb.inflight.finish(p.tag, Err(disconnected(&p.transfer)));
        }
    }

    /// Bookkeeping after the device handled a transfer: delayed data lands, and an injected
    /// disconnect counts down.
    fn after_execute(&mut self) {
        self.exec_count += 1;
        self.apply_visibility();
        if let Some(n) = self.faults.disconnect_after.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.disconnect_after = None;
                self.unplug();
            }
        }
    }

    /// Run every queue head that can run, in endpoint order, until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            let endpoints: Vec<u8> = self.usb.queues.keys().copied().collect();
            for ep in endpoints {
                loop {
                    if !self.usb.plugged {
                        return;
                    }
                    let Some(q) = self.usb.queues.get_mut(&ep) else { break };
                    if q.front().is_none_or(|p| p.hung) {
                        break;
                    }
                    let Some(mut p) = q.pop_front() else { break };
                    match self.execute(&p) {
                        Exec::Done(result) => {
                            self.usb.inflight.finish(p.tag, result);
                            self.after_execute();
                            progressed = true;
                        }
                        Exec::Hang => {
                            p.hung = true;
                            self.usb.queues.entry(ep).or_default().push_front(p);
                            self.after_execute();
                            progressed = true;
                            break;
                        }
                        Exec::Blocked => {
                            self.usb.queues.entry(ep).or_default().push_front(p);
                            break;
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn execute(&mut self, p: &Pending) -> Exec {
        let endpoint = p.transfer.endpoint();
        let stall = || Exec::Done(Err(UsbError::Stall { transfer: p.transfer.to_string() }));
        if p.fate == EndpointFate::Stall {
            if endpoint != 0 {
                self.usb.halted.insert(endpoint);
            }
            return stall();
        }
        if endpoint != 0 && self.usb.halted.contains(&endpoint) {
            return stall();
        }
        if self.cfg.is_stock_firmware() && endpoint != 0 {
            // Stock firmware speaks mass storage, not this protocol: nothing is armed.
            return Exec::Blocked;
        }
        match &p.transfer {
            Transfer::ControlOut { setup, data } => {
                if setup.request_type & 0x80 != 0 {
                    return stall();
                }
                let outcome = match setup.request_type & 0x60 {
                    0x40 => {
                        self.vendor_out(setup.request, setup.value, setup.index, data, p.timeout)
                    }
                    0x00 => self.standard_out(setup),
                    _ => ControlOutcome::Stall,
                };
                self.control_outcome(p, outcome, data.len())
            }
            Transfer::ControlIn { setup, length } => {
                if setup.request_type & 0x80 == 0 {
                    return stall();
                }
                let outcome = match setup.request_type & 0x60 {
                    0x40 => self.vendor_in(setup.request, setup.value, setup.index, *length),
                    0x00 => self.standard_in(setup, *length),
                    _ => ControlOutcome::Stall,
                };
                self.control_outcome(p, outcome, 0)
            }
            Transfer::BulkOut { data, .. } => {
                if endpoint != EP_BULK_OUT {
                    return Exec::Blocked;
                }
                match self.bulk_out_data(data) {
                    None => Exec::Blocked,
                    Some(Ok(())) => {
                        self.stats.bulk_out_transfers += 1;
                        self.stats.bulk_out_bytes += data.len() as u64;
                        Exec::Done(Ok(Completion::Out { length: data.len() }))
                    }
                    Some(Err(reason)) => {
                        // The firmware cannot place the data: the endpoint halts `[U]`.
                        self.usb.halted.insert(endpoint);
                        Exec::Done(Err(UsbError::Stall {
                            transfer: format!("{} ({reason})", p.transfer),
                        }))
                    }
                }
            }
            Transfer::BulkIn { length, .. } => {
                if endpoint != EP_BULK_IN {
                    return Exec::Blocked;
                }
                match self.bulk_in_data(*length) {
                    None => Exec::Blocked,
                    Some(Ok(mut data)) => {
                        if let Some(bytes) = self.faults.short_bulk_in.take() {
                            data.truncate(bytes);
                        }
                        self.stats.bulk_in_transfers += 1;
                        self.stats.bulk_in_bytes += data.len() as u64;
                        Exec::Done(Ok(Completion::In(data)))
                    }
                    Some(Err(BulkInError::Babble)) => {
                        // xHCI halts an endpoint after babble.
                        self.usb.halted.insert(endpoint);
                        Exec::Done(Err(UsbError::Overflow { transfer: p.transfer.to_string() }))
                    }
                    Some(Err(BulkInError::OutOfRange)) => {
                        self.usb.halted.insert(endpoint);
                        Exec::Done(Err(UsbError::Stall {
                            transfer: format!("{} (F2 read runs past the end of SRAM)", p.transfer),
                        }))
                    }
                }
            }
        }
    }

    fn control_outcome(&mut self, p: &Pending, outcome: ControlOutcome, out_len: usize) -> Exec {
        match outcome {
            ControlOutcome::Ack => Exec::Done(Ok(match p.transfer {
                Transfer::ControlIn { .. } => Completion::In(Vec::new()),
                _ => Completion::Out { length: out_len },
            })),
            ControlOutcome::Data(data) => Exec::Done(Ok(Completion::In(data))),
            ControlOutcome::Ignored => Exec::Hang,
            ControlOutcome::Stall => {
                Exec::Done(Err(UsbError::Stall { transfer: p.transfer.to_string() }))
            }
            ControlOutcome::Late => Exec::Done(Err(UsbError::Timeout {
                transfer: p.transfer.to_string(),
                after: p.timeout,
            })),
        }
    }

    // ------------------------------------------------------------ standard requests (USB 3.2 §9.4)

    fn standard_in(&mut self, setup: &ControlSetup, length: u16) -> ControlOutcome {
        self.stats.standard_requests += 1;
        let reply = match (setup.request_type & 0x1F, setup.request) {
            // GET_STATUS: device self-powered; endpoint halt bit.
            (0, 0x00) => Some(vec![0x01, 0x00]),
            (1, 0x00) => Some(vec![0x00, 0x00]),
            (2, 0x00) => {
                let ep = setup.index as u8;
                Some(vec![u8::from(self.usb.halted.contains(&ep)), 0])
            }
            // GET_DESCRIPTOR
            (0, 0x06) => {
                let index = setup.value as u8;
                match (setup.value >> 8) as u8 {
                    descriptors::DESC_DEVICE => Some(descriptors::device(&self.cfg)),
                    descriptors::DESC_CONFIGURATION if index == 0 => {
                        Some(descriptors::configuration(&self.cfg))
                    }
                    descriptors::DESC_STRING => descriptors::string(&self.cfg, index),
                    descriptors::DESC_BOS if self.cfg.speed.is_superspeed() => {
                        Some(descriptors::bos())
                    }
                    _ => None,
                }
            }
            // GET_CONFIGURATION, GET_INTERFACE
            (0, 0x08) => Some(vec![self.usb.configuration]),
            (1, 0x0A) => Some(vec![self.usb.alt_setting]),
            _ => None,
        };
        match reply {
            Some(mut data) => {
                data.truncate(usize::from(length));
                ControlOutcome::Data(data)
            }
            None => ControlOutcome::Stall,
        }
    }

    fn standard_out(&mut self, setup: &ControlSetup) -> ControlOutcome {
        self.stats.standard_requests += 1;
        match (setup.request_type & 0x1F, setup.request) {
            // SET_CONFIGURATION: §1.1 raw bulk mode, both bulk EPs and streaming cleared.
            (0, 0x09) if setup.value <= 1 => {
                self.usb.configuration = setup.value as u8;
                self.set_interface(0);
                ControlOutcome::Ack
            }
            // SET_INTERFACE: alt 0 always; alt 1 only in the SuperSpeed configuration.
            (1, 0x0B)
                if setup.value == 0 || (setup.value == 1 && self.cfg.speed.is_superspeed()) =>
            {
                self.set_interface(setup.value as u8);
                ControlOutcome::Ack
            }
            // CLEAR_FEATURE(ENDPOINT_HALT) / SET_FEATURE(ENDPOINT_HALT)
            (2, 0x01) if setup.value == 0 => {
                self.clear_halt_device(setup.index as u8);
                ControlOutcome::Ack
            }
            (2, 0x03) if setup.value == 0 => {
                let ep = setup.index as u8;
                if ep != 0 && self.endpoint_exists(ep) {
                    self.usb.halted.insert(ep);
                }
                ControlOutcome::Ack
            }
            // SET_FEATURE / CLEAR_FEATURE on the device (remote wakeup, U1/U2): accepted.
            (0, 0x01) | (0, 0x03) => ControlOutcome::Ack,
            _ => ControlOutcome::Stall,
        }
    }
}
