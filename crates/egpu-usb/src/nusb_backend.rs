//! The real USB backend on `nusb` 0.2: interface 0, alt setting 0, bulk endpoints 0x02 (OUT) and
//! 0x81 (IN), vendor control transfers on EP0 (docs/reference/usb-bridge.md §1.1, §2, §4.10).
//!
//! Every transfer is submitted asynchronously: bulk transfers go onto nusb's per-endpoint queues
//! (several in flight, completed in order), control transfers are nusb futures that are already
//! on the bus when created. `wait` drives all of them from the calling thread with a waker that
//! unparks it, so no helper thread is needed. Each transfer carries its own deadline; a transfer
//! past it is cancelled and reported as [`UsbError::Timeout`].
//!
//! Bookkeeping that does not touch nusb (deadlines, ordering, turning raw outcomes into
//! [`Completion`]s or errors) lives in `Pipe` and the pure helpers so it is tested without a
//! device.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread, ThreadId};
use std::time::{Duration, Instant};

use nusb::transfer::{
    Buffer, Bulk, ControlIn, ControlOut, ControlType, EndpointDirection, In, Out, Recipient,
    TransferError,
};
use nusb::{Endpoint, Interface, MaybeFuture};

use crate::{
    Completion, ControlSetup, DeviceInfo, InFlight, Tag, Transfer, UsbError, UsbSpeed, UsbTransport,
};

/// Bulk OUT endpoint of the custom firmware's interface 0, alt setting 0 (§1.1).
pub const BULK_OUT_ENDPOINT: u8 = 0x02;
/// Bulk IN endpoint of the custom firmware's interface 0, alt setting 0 (§1.1).
pub const BULK_IN_ENDPOINT: u8 = 0x81;
/// The vendor interface the custom firmware exposes.
pub const BRIDGE_INTERFACE: u8 = 0;
/// The configuration the custom firmware exposes (it has exactly one, §1.1).
#[cfg_attr(target_os = "windows", allow(dead_code))]
const BRIDGE_CONFIGURATION: u8 = 1;

/// How long cancelled bulk transfers may take to come back before a reset or clear-halt gives
/// up. Cancellation is a host-controller operation, normally microseconds.
const CANCEL_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Cap on a single transfer's timeout: keeps `Instant + timeout` from overflowing and matches
/// the cap nusb applies on Linux.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// What a transfer was, kept for error messages without holding on to its data (holding the
/// `Bytes` would make the zero-copy `Bytes` → `Vec` conversion impossible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    ControlIn { setup: ControlSetup, length: u16 },
    ControlOut { setup: ControlSetup, length: usize },
    BulkIn { endpoint: u8, length: usize },
    BulkOut { endpoint: u8, length: usize },
}

impl Label {
    pub(crate) fn of(transfer: &Transfer) -> Label {
        match transfer {
            Transfer::ControlIn { setup, length } => {
                Label::ControlIn { setup: *setup, length: *length }
            }
            Transfer::ControlOut { setup, data } => {
                Label::ControlOut { setup: *setup, length: data.len() }
            }
            Transfer::BulkIn { endpoint, length } => {
                Label::BulkIn { endpoint: *endpoint, length: *length }
            }
            Transfer::BulkOut { endpoint, data } => {
                Label::BulkOut { endpoint: *endpoint, length: data.len() }
            }
        }
    }

    /// Bytes the transfer asked to move.
    fn requested(&self) -> usize {
        match self {
            Label::ControlIn { length, .. } => usize::from(*length),
            Label::ControlOut { length, .. }
            | Label::BulkIn { length, .. }
            | Label::BulkOut { length, .. } => *length,
        }
    }

    fn is_in(&self) -> bool {
        matches!(self, Label::ControlIn { .. } | Label::BulkIn { .. })
    }
}

// Same wording as `Transfer`'s Display, so errors read the same from every backend.
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::ControlIn { setup, length } => write!(
                f,
                "control IN request 0x{:02X} (wValue 0x{:04X}, wIndex 0x{:04X}, {} bytes)",
                setup.request, setup.value, setup.index, length
            ),
            Label::ControlOut { setup, length } => write!(
                f,
                "control OUT request 0x{:02X} (wValue 0x{:04X}, wIndex 0x{:04X}, {} bytes)",
                setup.request, setup.value, setup.index, length
            ),
            Label::BulkIn { endpoint, length } => {
                write!(f, "bulk IN of {length} bytes on endpoint 0x{endpoint:02X}")
            }
            Label::BulkOut { endpoint, length } => {
                write!(f, "bulk OUT of {length} bytes on endpoint 0x{endpoint:02X}")
            }
        }
    }
}

/// Why a transfer was cancelled by this backend (as opposed to by the OS or the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelCause {
    /// Another transfer on the same endpoint passed its deadline; nusb can only cancel a whole
    /// endpoint queue, and in-order completion means the rest could not finish first anyway.
    Timeout(Label),
    /// `clear_halt` flushed the endpoint.
    ClearHalt,
    /// `reset_interface` flushed everything.
    Reset,
}

/// One submitted transfer, from submission until its outcome is handed to [`InFlight`].
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) tag: Tag,
    pub(crate) label: Label,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    /// The outcome has already gone to `InFlight` (timed out); the transfer itself may still be
    /// in nusb's queue and its eventual completion is dropped.
    pub(crate) reported: bool,
    pub(crate) cancelled: Option<CancelCause>,
}

impl Record {
    pub(crate) fn new(tag: Tag, label: Label, submitted: Instant, timeout: Duration) -> Record {
        let timeout = timeout.min(MAX_TIMEOUT);
        Record {
            tag,
            label,
            deadline: submitted + timeout,
            timeout,
            reported: false,
            cancelled: None,
        }
    }
}

/// The raw result of one transfer as nusb reports it.
#[derive(Debug)]
pub(crate) struct RawOutcome {
    pub(crate) status: Result<(), TransferError>,
    /// Bytes moved (`actual_length`).
    pub(crate) actual: usize,
    /// Received bytes of an IN transfer, `actual` of them.
    pub(crate) data: Vec<u8>,
}

/// Turn a transfer's raw outcome into what its waiter gets.
///
/// `now` decides whether a cancellation nobody here asked for was a timeout: nusb cancels
/// control transfers itself at their deadline (never before ours, because ours is taken before
/// the transfer is handed to nusb).
pub(crate) fn judge(
    record: &Record,
    outcome: RawOutcome,
    now: Instant,
) -> Result<Completion, UsbError> {
    let label = record.label;
    if let Err(error) = outcome.status {
        return Err(match (error, record.cancelled) {
            (TransferError::Cancelled, Some(cause)) => cancelled_error(label, cause),
            (TransferError::Cancelled, None) if now >= record.deadline => {
                UsbError::Timeout { transfer: label.to_string(), after: record.timeout }
            }
            (error, _) => map_transfer_error(error, &label),
        });
    }
    let requested = label.requested();
    if label.is_in() {
        if outcome.actual > requested || outcome.data.len() > requested {
            return Err(UsbError::Overflow { transfer: label.to_string() });
        }
        Ok(Completion::In(outcome.data))
    } else if outcome.actual != requested {
        Err(UsbError::ShortOut { transfer: label.to_string(), actual: outcome.actual })
    } else {
        Ok(Completion::Out { length: requested })
    }
}

fn cancelled_error(label: Label, cause: CancelCause) -> UsbError {
    let transfer = match cause {
        CancelCause::Timeout(other) => {
            format!("{label} (its endpoint was flushed because {other} timed out)")
        }
        CancelCause::ClearHalt => format!("{label} (flushed by CLEAR_FEATURE(ENDPOINT_HALT))"),
        CancelCause::Reset => format!("{label} (flushed by the interface reset)"),
    };
    UsbError::Cancelled { transfer }
}

/// Map a nusb transfer error onto this layer's error.
///
/// nusb folds babble (EOVERFLOW on Linux) into `Fault` together with CRC and bit-stuff errors,
/// so a babble the host controller caught reads as `Failed`; an IN that returns more than was
/// asked for but fits the packet-rounded buffer is caught by [`judge`] as `Overflow`.
pub(crate) fn map_transfer_error(error: TransferError, label: &Label) -> UsbError {
    let transfer = label.to_string();
    match error {
        TransferError::Stall => UsbError::Stall { transfer },
        TransferError::Disconnected => UsbError::Disconnected { transfer },
        TransferError::Cancelled => UsbError::Cancelled { transfer },
        TransferError::Fault => UsbError::Failed {
            transfer,
            reason: "USB protocol error (CRC, bit-stuff or babble; the OS does not say which); \
                     check the cable and try another port"
                .into(),
        },
        TransferError::InvalidArgument => UsbError::Failed {
            transfer,
            reason: "the OS rejected the request as invalid (bad length or endpoint)".into(),
        },
        TransferError::Unknown(code) => UsbError::Failed {
            transfer,
            reason: format!(
                "OS error {code} ({}); on Linux ENOMEM here means usbfs_memory_mb is too small \
                 for the data in flight",
                TransferError::Unknown(code)
            ),
        },
    }
}

/// Round a bulk IN request up to whole packets, as nusb requires. `None` when the request is
/// empty or too large for one transfer (nusb buffers are limited to `u32::MAX` bytes).
pub(crate) fn round_up_to_packets(length: usize, max_packet: usize) -> Option<usize> {
    if length == 0 || max_packet == 0 {
        return None;
    }
    let rounded = length.div_ceil(max_packet).checked_mul(max_packet)?;
    u32::try_from(rounded).is_ok().then_some(rounded)
}

/// Split a `bmRequestType` (USB 2.0 §9.3.1) into nusb's fields, checking that its direction bit
/// agrees with the transfer kind.
pub(crate) fn split_request_type(
    request_type: u8,
    is_in: bool,
) -> Result<(ControlType, Recipient), String> {
    if (request_type & 0x80 != 0) != is_in {
        return Err(format!(
            "bmRequestType 0x{request_type:02X} has direction bit {} but the transfer is {}",
            request_type >> 7,
            if is_in { "IN (needs bit 7 set)" } else { "OUT (needs bit 7 clear)" }
        ));
    }
    let control_type = match (request_type >> 5) & 0x3 {
        0 => ControlType::Standard,
        1 => ControlType::Class,
        2 => ControlType::Vendor,
        _ => return Err(format!("bmRequestType 0x{request_type:02X} has the reserved type 3")),
    };
    let recipient = match request_type & 0x1F {
        0 => Recipient::Device,
        1 => Recipient::Interface,
        2 => Recipient::Endpoint,
        3 => Recipient::Other,
        other => {
            return Err(format!(
                "bmRequestType 0x{request_type:02X} has reserved recipient {other}"
            ))
        }
    };
    Ok((control_type, recipient))
}

/// Map nusb's link speed onto ours. Low speed (1.5 Mb/s) has no counterpart: the bridge cannot
/// run at it.
pub(crate) fn map_speed(speed: Option<nusb::Speed>) -> Option<UsbSpeed> {
    match speed? {
        nusb::Speed::Full => Some(UsbSpeed::Full),
        nusb::Speed::High => Some(UsbSpeed::High),
        nusb::Speed::Super => Some(UsbSpeed::Super),
        nusb::Speed::SuperPlus => Some(UsbSpeed::SuperPlus),
        _ => None,
    }
}

/// Map a nusb error from opening/claiming/configuring onto this layer's error. `step` names the
/// operation for the message.
pub(crate) fn map_open_error(name: &str, step: &str, error: &nusb::Error) -> UsbError {
    match error.kind() {
        nusb::ErrorKind::PermissionDenied => {
            UsbError::PermissionDenied { name: name.into(), reason: format!("{step}: {error}") }
        }
        nusb::ErrorKind::Disconnected => {
            UsbError::Disconnected { transfer: format!("{step} of {name}") }
        }
        nusb::ErrorKind::Busy => UsbError::Open {
            name: name.into(),
            reason: format!(
                "{step}: {error}; another program or a kernel driver holds the interface, \
                 close it and retry"
            ),
        },
        nusb::ErrorKind::NotFound => UsbError::Open {
            name: name.into(),
            reason: format!(
                "{step}: {error}; the device does not have the custom firmware's interface \
                 layout (interface 0, alt 0, bulk 0x02/0x81)"
            ),
        },
        _ => UsbError::Open { name: name.into(), reason: format!("{step}: {error}") },
    }
}

/// The transfers of one endpoint, oldest first. For bulk endpoints this mirrors nusb's queue
/// one to one, so the n-th completion nusb returns belongs to the n-th record.
#[derive(Default)]
pub(crate) struct Pipe {
    pub(crate) records: VecDeque<Record>,
}

impl Pipe {
    pub(crate) fn push(&mut self, record: Record) {
        self.records.push_back(record);
    }

    /// Report every unreported transfer whose deadline has passed as a timeout. Returns the
    /// first such transfer's label when any expired.
    pub(crate) fn expire(&mut self, now: Instant, inflight: &mut InFlight) -> Option<Label> {
        let mut first = None;
        for record in self.records.iter_mut().filter(|r| !r.reported && now >= r.deadline) {
            record.reported = true;
            inflight.finish(
                record.tag,
                Err(UsbError::Timeout {
                    transfer: record.label.to_string(),
                    after: record.timeout,
                }),
            );
            first.get_or_insert(record.label);
        }
        first
    }

    /// Mark every unreported transfer as cancelled by `cause` (before cancelling them in nusb).
    pub(crate) fn mark_cancelled(&mut self, cause: CancelCause) {
        for record in self.records.iter_mut().filter(|r| !r.reported) {
            record.cancelled.get_or_insert(cause);
        }
    }

    /// Hand the oldest transfer's outcome to `inflight` (unless it was already reported).
    pub(crate) fn complete_front(
        &mut self,
        outcome: RawOutcome,
        now: Instant,
        inflight: &mut InFlight,
    ) {
        let Some(record) = self.records.pop_front() else { return };
        if !record.reported {
            inflight.finish(record.tag, judge(&record, outcome, now));
        }
    }

    /// Earliest deadline among transfers whose outcome is still unknown.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.records.iter().filter(|r| !r.reported).map(|r| r.deadline).min()
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
}

/// A bulk endpoint and the transfers queued on it.
struct BulkQueue<Dir: EndpointDirection> {
    endpoint: Endpoint<Bulk, Dir>,
    max_packet: usize,
    pipe: Pipe,
}

impl<Dir: EndpointDirection> BulkQueue<Dir> {
    fn open(interface: &Interface, address: u8, name: &str) -> Result<Self, UsbError> {
        let endpoint = interface.endpoint::<Bulk, Dir>(address).map_err(|e| {
            map_open_error(name, &format!("opening bulk endpoint 0x{address:02X}"), &e)
        })?;
        let max_packet = endpoint.max_packet_size();
        Ok(BulkQueue { endpoint, max_packet, pipe: Pipe::default() })
    }

    /// Hand every finished transfer to `inflight`, in order. `is_in` selects how the buffer is
    /// read back.
    fn pump(&mut self, cx: &mut Context<'_>, now: Instant, inflight: &mut InFlight, is_in: bool) {
        debug_assert_eq!(self.endpoint.pending(), self.pipe.len(), "records mirror nusb's queue");
        while self.endpoint.pending() > 0 {
            let Poll::Ready(done) = self.endpoint.poll_next_complete(cx) else { break };
            let data = if is_in { done.buffer.into_vec() } else { Vec::new() };
            let outcome = RawOutcome { status: done.status, actual: done.actual_len, data };
            self.pipe.complete_front(outcome, now, inflight);
        }
    }

    /// Time out what is past its deadline. nusb cancels only whole endpoint queues, so the
    /// other transfers on the endpoint go too (in-order completion means they could not have
    /// finished before the late one anyway) and are reported as flushed because of it.
    fn expire(&mut self, now: Instant, inflight: &mut InFlight) {
        if let Some(late) = self.pipe.expire(now, inflight) {
            self.pipe.mark_cancelled(CancelCause::Timeout(late));
            self.endpoint.cancel_all();
        }
    }
}

type ControlFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, TransferError>> + Send>>;

/// A control transfer in flight: its nusb future until it resolves, then its result until
/// every older control transfer has been reported (EP0 reports in submission order).
struct ControlSlot {
    future: Option<ControlFuture>,
    result: Option<Result<Vec<u8>, TransferError>>,
}

#[derive(Default)]
struct ControlQueue {
    pipe: Pipe,
    slots: VecDeque<ControlSlot>,
}

impl ControlQueue {
    fn push(&mut self, record: Record, future: ControlFuture) {
        self.pipe.push(record);
        self.slots.push_back(ControlSlot { future: Some(future), result: None });
    }

    fn pump(&mut self, cx: &mut Context<'_>, now: Instant, inflight: &mut InFlight) {
        for slot in &mut self.slots {
            if let Some(future) = slot.future.as_mut() {
                if let Poll::Ready(result) = future.as_mut().poll(cx) {
                    slot.result = Some(result);
                    slot.future = None;
                }
            }
        }
        // Report in submission order; a timed-out front slot has no future and no result.
        while let Some(front) = self.slots.front() {
            if front.future.is_some() {
                break;
            }
            let slot = self.slots.pop_front().expect("front exists");
            match slot.result {
                Some(result) => {
                    let requested = self.pipe.records.front().map_or(0, |r| r.label.requested());
                    let is_in = self.pipe.records.front().is_some_and(|r| r.label.is_in());
                    let outcome = match result {
                        // nusb returns exactly the data stage it received for an IN.
                        Ok(data) if is_in => {
                            RawOutcome { status: Ok(()), actual: data.len(), data }
                        }
                        // A control OUT that succeeded moved its whole data stage.
                        Ok(_) => RawOutcome { status: Ok(()), actual: requested, data: Vec::new() },
                        Err(error) => {
                            RawOutcome { status: Err(error), actual: 0, data: Vec::new() }
                        }
                    };
                    self.pipe.complete_front(outcome, now, inflight);
                }
                None => {
                    // Already reported (timed out or cancelled); just forget it.
                    self.pipe.records.pop_front();
                }
            }
        }
    }

    fn expire(&mut self, now: Instant, inflight: &mut InFlight) {
        if self.pipe.expire(now, inflight).is_none() {
            return;
        }
        // Dropping a nusb control future abandons it: nusb's own timer (armed with the same
        // timeout) cancels it on the bus and frees it.
        for (record, slot) in self.pipe.records.iter().zip(self.slots.iter_mut()) {
            if record.reported && slot.result.is_none() {
                slot.future = None;
            }
        }
    }

    /// Report every control transfer still running as cancelled by the reset and abandon it.
    fn abandon_all(&mut self, inflight: &mut InFlight) {
        for (record, slot) in self.pipe.records.iter_mut().zip(self.slots.iter_mut()) {
            if !record.reported {
                record.reported = true;
                inflight.finish(record.tag, Err(cancelled_error(record.label, CancelCause::Reset)));
            }
            slot.future = None;
        }
        self.pipe.records.clear();
        self.slots.clear();
    }
}

/// Unparks the waiting thread when nusb reports a completion.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// [`UsbTransport`] on a real ASM2464PD bridge through `nusb`.
pub struct NusbTransport {
    info: DeviceInfo,
    interface: Interface,
    /// `None` only after a reset that could not reopen the endpoints.
    bulk_out: Option<BulkQueue<Out>>,
    bulk_in: Option<BulkQueue<In>>,
    control: ControlQueue,
    inflight: InFlight,
    waker: Option<(ThreadId, Waker)>,
}

impl NusbTransport {
    /// Open `device`: detach a kernel driver if one is bound (Linux), select configuration 1 if
    /// the OS left the device unconfigured, claim interface 0, select alt setting 0 (which makes
    /// the custom firmware drop stale bulk and streaming state, §2 step 4) and open bulk
    /// endpoints 0x02 and 0x81.
    pub fn open(device: &nusb::DeviceInfo) -> Result<NusbTransport, UsbError> {
        let name = device_name(device);
        let usb =
            device.open().wait().map_err(|e| map_open_error(&name, "opening the device", &e))?;

        // The OS normally configures a one-configuration device at enumeration; macOS may leave
        // a vendor-class device unconfigured. Windows cannot change configurations at all.
        #[cfg(not(target_os = "windows"))]
        if usb.active_configuration().map(|c| c.configuration_value()).ok()
            != Some(BRIDGE_CONFIGURATION)
        {
            usb.set_configuration(BRIDGE_CONFIGURATION)
                .wait()
                .map_err(|e| map_open_error(&name, "selecting configuration 1", &e))?;
        }

        // Custom firmware is vendor class and has no kernel driver; stock firmware has
        // usb-storage/uas bound, which must let go first. nusb re-attaches it on release.
        #[cfg(target_os = "linux")]
        let claimed = usb.detach_and_claim_interface(BRIDGE_INTERFACE).wait();
        #[cfg(not(target_os = "linux"))]
        let claimed = usb.claim_interface(BRIDGE_INTERFACE).wait();
        let interface = claimed.map_err(|e| map_open_error(&name, "claiming interface 0", &e))?;

        interface
            .set_alt_setting(0)
            .wait()
            .map_err(|e| map_open_error(&name, "SET_INTERFACE(0, alt 0)", &e))?;
        let bulk_out = BulkQueue::<Out>::open(&interface, BULK_OUT_ENDPOINT, &name)?;
        let bulk_in = BulkQueue::<In>::open(&interface, BULK_IN_ENDPOINT, &name)?;

        let info = DeviceInfo {
            name,
            vendor_id: device.vendor_id(),
            product_id: device.product_id(),
            manufacturer: string_or_fetch(device.manufacturer_string(), || {
                device.get_manufacturer_string().wait()
            }),
            product: string_or_fetch(device.product_string(), || {
                device.get_product_string().wait()
            }),
            serial: string_or_fetch(device.serial_number(), || {
                device.get_serial_number_string().wait()
            }),
            speed: map_speed(usb.speed().or(device.speed())),
        };
        Ok(NusbTransport {
            info,
            interface,
            bulk_out: Some(bulk_out),
            bulk_in: Some(bulk_in),
            control: ControlQueue::default(),
            inflight: InFlight::new(),
            waker: None,
        })
    }

    /// Maximum packet size of a bulk endpoint (1024 on SuperSpeed, 512 on high speed), if open.
    pub fn max_packet_size(&self, endpoint: u8) -> Option<usize> {
        match endpoint {
            BULK_OUT_ENDPOINT => self.bulk_out.as_ref().map(|q| q.max_packet),
            BULK_IN_ENDPOINT => self.bulk_in.as_ref().map(|q| q.max_packet),
            _ => None,
        }
    }

    fn waker(&mut self) -> Waker {
        let id = thread::current().id();
        match &self.waker {
            Some((owner, waker)) if *owner == id => waker.clone(),
            _ => {
                let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
                self.waker = Some((id, waker.clone()));
                waker
            }
        }
    }

    /// Collect every finished transfer, then time out the ones past their deadline.
    fn pump(&mut self, waker: &Waker) {
        let mut cx = Context::from_waker(waker);
        let now = Instant::now();
        if let Some(q) = self.bulk_out.as_mut() {
            q.pump(&mut cx, now, &mut self.inflight, false);
            q.expire(now, &mut self.inflight);
        }
        if let Some(q) = self.bulk_in.as_mut() {
            q.pump(&mut cx, now, &mut self.inflight, true);
            q.expire(now, &mut self.inflight);
        }
        self.control.pump(&mut cx, now, &mut self.inflight);
        self.control.expire(now, &mut self.inflight);
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.bulk_out.as_ref().and_then(|q| q.pipe.next_deadline()),
            self.bulk_in.as_ref().and_then(|q| q.pipe.next_deadline()),
            self.control.pipe.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn closed_endpoint(label: &Label, endpoint: u8) -> UsbError {
        UsbError::Failed {
            transfer: label.to_string(),
            reason: format!(
                "endpoint 0x{endpoint:02X} is closed because an interface reset failed; replug \
                 the bridge and open it again"
            ),
        }
    }

    /// Cancel everything on the bulk endpoints and wait (bounded) until nusb has returned it,
    /// so the endpoints can be closed or halted. `only` limits this to one endpoint.
    fn flush_bulk(&mut self, only: Option<u8>, cause: CancelCause) -> Result<(), UsbError> {
        let out = only.is_none_or(|ep| ep == BULK_OUT_ENDPOINT);
        let inn = only.is_none_or(|ep| ep == BULK_IN_ENDPOINT);
        if out {
            if let Some(q) = self.bulk_out.as_mut() {
                q.pipe.mark_cancelled(cause);
                q.endpoint.cancel_all();
            }
        }
        if inn {
            if let Some(q) = self.bulk_in.as_mut() {
                q.pipe.mark_cancelled(cause);
                q.endpoint.cancel_all();
            }
        }
        let waker = self.waker();
        let mut cx = Context::from_waker(&waker);
        let deadline = Instant::now() + CANCEL_DRAIN_TIMEOUT;
        loop {
            let now = Instant::now();
            let mut left = 0;
            if let Some(q) = self.bulk_out.as_mut().filter(|_| out) {
                q.pump(&mut cx, now, &mut self.inflight, false);
                left += q.endpoint.pending();
            }
            if let Some(q) = self.bulk_in.as_mut().filter(|_| inn) {
                q.pump(&mut cx, now, &mut self.inflight, true);
                left += q.endpoint.pending();
            }
            if left == 0 {
                return Ok(());
            }
            if now >= deadline {
                return Err(UsbError::Failed {
                    transfer: "cancelling bulk transfers".into(),
                    reason: format!(
                        "{left} cancelled transfers did not come back within \
                         {CANCEL_DRAIN_TIMEOUT:?}; replug the bridge"
                    ),
                });
            }
            thread::park_timeout(deadline - now);
        }
    }
}

/// `usb:<bus>-<address>`, the name `egpu list` shows and `open_bridge` accepts.
pub(crate) fn device_name(device: &nusb::DeviceInfo) -> String {
    format!(
        "usb:{}-{}",
        crate::discover::normalize_bus_id(device.bus_id()),
        device.device_address()
    )
}

/// A string descriptor the OS cached at enumeration, or else read from the device (Windows does
/// not cache the manufacturer). Failure to read leaves it unknown rather than failing the open.
fn string_or_fetch<E>(
    cached: Option<&str>,
    fetch: impl FnOnce() -> Result<Option<String>, E>,
) -> Option<String> {
    match cached {
        Some(text) => Some(text.to_owned()),
        None => fetch().ok().flatten(),
    }
}

impl UsbTransport for NusbTransport {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, transfer: Transfer, timeout: Duration) -> Result<Tag, UsbError> {
        let label = Label::of(&transfer);
        let invalid = |reason: String| UsbError::Failed { transfer: label.to_string(), reason };
        match transfer {
            Transfer::BulkOut { endpoint, data } => {
                if endpoint != BULK_OUT_ENDPOINT {
                    return Err(invalid(format!(
                        "this backend's bulk OUT endpoint is 0x{BULK_OUT_ENDPOINT:02X}"
                    )));
                }
                if data.len() > u32::MAX as usize {
                    return Err(invalid("a bulk transfer holds at most 4 GiB - 1".into()));
                }
                let queue = self
                    .bulk_out
                    .as_mut()
                    .ok_or_else(|| Self::closed_endpoint(&label, endpoint))?;
                // Zero-copy when the caller's `Bytes` is the sole owner of a Vec.
                let buffer = Buffer::from(Vec::<u8>::from(data));
                let tag = self.inflight.begin();
                queue.pipe.push(Record::new(tag, label, Instant::now(), timeout));
                queue.endpoint.submit(buffer);
                Ok(tag)
            }
            Transfer::BulkIn { endpoint, length } => {
                if endpoint != BULK_IN_ENDPOINT {
                    return Err(invalid(format!(
                        "this backend's bulk IN endpoint is 0x{BULK_IN_ENDPOINT:02X}"
                    )));
                }
                let queue =
                    self.bulk_in.as_mut().ok_or_else(|| Self::closed_endpoint(&label, endpoint))?;
                let rounded = round_up_to_packets(length, queue.max_packet).ok_or_else(|| {
                    invalid("a bulk IN must ask for 1 byte to 4 GiB - 1 bytes".into())
                })?;
                let tag = self.inflight.begin();
                queue.pipe.push(Record::new(tag, label, Instant::now(), timeout));
                queue.endpoint.submit(Buffer::new(rounded));
                Ok(tag)
            }
            Transfer::ControlIn { setup, length } => {
                let (control_type, recipient) =
                    split_request_type(setup.request_type, true).map_err(invalid)?;
                let request = ControlIn {
                    control_type,
                    recipient,
                    request: setup.request,
                    value: setup.value,
                    index: setup.index,
                    length,
                };
                let tag = self.inflight.begin();
                let record = Record::new(tag, label, Instant::now(), timeout);
                let future = self.interface.control_in(request, record.timeout).into_future();
                self.control.push(record, Box::pin(future));
                Ok(tag)
            }
            Transfer::ControlOut { setup, data } => {
                let (control_type, recipient) =
                    split_request_type(setup.request_type, false).map_err(invalid)?;
                if data.len() > usize::from(u16::MAX) {
                    return Err(invalid("a control data stage holds at most 65535 bytes".into()));
                }
                let request = ControlOut {
                    control_type,
                    recipient,
                    request: setup.request,
                    value: setup.value,
                    index: setup.index,
                    data: &data[..],
                };
                let tag = self.inflight.begin();
                let record = Record::new(tag, label, Instant::now(), timeout);
                // nusb copies the data stage into its own buffer when the future is created.
                let future = self.interface.control_out(request, record.timeout).into_future();
                self.control
                    .push(record, Box::pin(async move { future.await.map(|()| Vec::new()) }));
                Ok(tag)
            }
        }
    }

    fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError> {
        if !self.inflight.contains(tag) {
            return Err(UsbError::UnknownTag(tag));
        }
        let waker = self.waker();
        loop {
            self.pump(&waker);
            if let Some(result) = self.inflight.collect(tag) {
                return result;
            }
            match self.next_deadline() {
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline > now {
                        thread::park_timeout(deadline - now);
                    }
                }
                None => {
                    // Every unfinished tag has an unreported record with a deadline, so this
                    // means the bookkeeping lost the tag; fail it rather than wait forever.
                    self.inflight.finish(
                        tag,
                        Err(UsbError::Failed {
                            transfer: format!("transfer {tag:?}"),
                            reason: "lost track of the transfer (internal error)".into(),
                        }),
                    );
                }
            }
        }
    }

    fn reset_interface(&mut self) -> Result<(), UsbError> {
        self.control.abandon_all(&mut self.inflight);
        self.flush_bulk(None, CancelCause::Reset)?;
        // nusb refuses SET_INTERFACE while endpoints are open: close them, switch, reopen.
        self.bulk_out = None;
        self.bulk_in = None;
        let name = self.info.name.clone();
        self.interface.set_alt_setting(0).wait().map_err(|e| match e.kind() {
            nusb::ErrorKind::Disconnected => {
                UsbError::Disconnected { transfer: "SET_INTERFACE(0, alt 0)".into() }
            }
            _ => UsbError::Failed {
                transfer: "SET_INTERFACE(0, alt 0)".into(),
                reason: format!("{e}; replug the bridge"),
            },
        })?;
        self.bulk_out = Some(BulkQueue::open(&self.interface, BULK_OUT_ENDPOINT, &name)?);
        self.bulk_in = Some(BulkQueue::open(&self.interface, BULK_IN_ENDPOINT, &name)?);
        self.inflight.clear();
        Ok(())
    }

    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        let what = format!("CLEAR_FEATURE(ENDPOINT_HALT) on endpoint 0x{endpoint:02X}");
        if endpoint != BULK_OUT_ENDPOINT && endpoint != BULK_IN_ENDPOINT {
            return Err(UsbError::Failed {
                transfer: what,
                reason: format!(
                    "only bulk endpoints 0x{BULK_OUT_ENDPOINT:02X} and 0x{BULK_IN_ENDPOINT:02X} \
                     can be halted"
                ),
            });
        }
        // nusb wants the endpoint idle before CLEAR_FEATURE.
        self.flush_bulk(Some(endpoint), CancelCause::ClearHalt)?;
        let result = match endpoint {
            BULK_OUT_ENDPOINT => self.bulk_out.as_mut().map(|q| q.endpoint.clear_halt().wait()),
            _ => self.bulk_in.as_mut().map(|q| q.endpoint.clear_halt().wait()),
        };
        match result {
            None => Err(UsbError::Failed {
                transfer: what,
                reason: "the endpoint is closed because an interface reset failed; replug the \
                         bridge"
                    .into(),
            }),
            Some(Ok(())) => Ok(()),
            Some(Err(e)) if e.kind() == nusb::ErrorKind::Disconnected => {
                Err(UsbError::Disconnected { transfer: what })
            }
            Some(Err(e)) => Err(UsbError::Failed { transfer: what, reason: e.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn vendor_in() -> ControlSetup {
        ControlSetup::vendor_in(0xE4, 0xB450, 0)
    }

    fn record(tag: u64, label: Label, base: Instant, timeout_ms: u64) -> Record {
        Record::new(Tag(tag), label, base, Duration::from_millis(timeout_ms))
    }

    fn ok_out(actual: usize) -> RawOutcome {
        RawOutcome { status: Ok(()), actual, data: Vec::new() }
    }

    fn failed(error: TransferError) -> RawOutcome {
        RawOutcome { status: Err(error), actual: 0, data: Vec::new() }
    }

    #[test]
    fn labels_read_like_the_transfers_they_describe() {
        let transfers = [
            Transfer::ControlIn { setup: vendor_in(), length: 8 },
            Transfer::ControlOut {
                setup: ControlSetup::vendor_out(0xF0, 0x0F00, 1),
                data: Bytes::from_static(&[0; 12]),
            },
            Transfer::BulkIn { endpoint: 0x81, length: 4096 },
            Transfer::BulkOut { endpoint: 0x02, data: Bytes::from(vec![0u8; 1000]) },
        ];
        for transfer in &transfers {
            let label = Label::of(transfer);
            assert_eq!(label.to_string(), transfer.to_string());
            assert_eq!(label.requested(), transfer.requested_len());
        }
    }

    #[test]
    fn bulk_in_lengths_round_up_to_whole_packets() {
        assert_eq!(round_up_to_packets(1, 1024), Some(1024));
        assert_eq!(round_up_to_packets(1024, 1024), Some(1024));
        assert_eq!(round_up_to_packets(1025, 1024), Some(2048));
        assert_eq!(round_up_to_packets(600, 512), Some(1024));
        assert_eq!(round_up_to_packets(0, 1024), None);
        assert_eq!(round_up_to_packets(usize::MAX, 1024), None);
        assert_eq!(round_up_to_packets(u32::MAX as usize, 1024), None);
    }

    #[test]
    fn request_type_splits_and_checks_direction() {
        assert_eq!(split_request_type(0xC0, true), Ok((ControlType::Vendor, Recipient::Device)));
        assert_eq!(split_request_type(0x40, false), Ok((ControlType::Vendor, Recipient::Device)));
        assert_eq!(
            split_request_type(0x02, false),
            Ok((ControlType::Standard, Recipient::Endpoint))
        );
        assert_eq!(split_request_type(0xA1, true), Ok((ControlType::Class, Recipient::Interface)));
        assert!(split_request_type(0x40, true).unwrap_err().contains("needs bit 7 set"));
        assert!(split_request_type(0xC0, false).unwrap_err().contains("needs bit 7 clear"));
        assert!(split_request_type(0x60, false).unwrap_err().contains("reserved type"));
        assert!(split_request_type(0x44, false).unwrap_err().contains("reserved recipient"));
    }

    #[test]
    fn transfer_errors_map_to_named_usb_errors() {
        let label = Label::BulkIn { endpoint: 0x81, length: 64 };
        assert!(matches!(
            map_transfer_error(TransferError::Stall, &label),
            UsbError::Stall { transfer } if transfer.contains("bulk IN of 64 bytes")
        ));
        assert!(map_transfer_error(TransferError::Disconnected, &label).is_disconnect());
        assert!(matches!(
            map_transfer_error(TransferError::Cancelled, &label),
            UsbError::Cancelled { .. }
        ));
        let fault = map_transfer_error(TransferError::Fault, &label).to_string();
        assert!(fault.contains("babble") && fault.contains("cable"), "{fault}");
        let unknown = map_transfer_error(TransferError::Unknown(12), &label).to_string();
        assert!(unknown.contains("12"), "{unknown}");
    }

    #[test]
    fn speeds_map_and_low_speed_has_no_counterpart() {
        assert_eq!(map_speed(Some(nusb::Speed::Super)), Some(UsbSpeed::Super));
        assert_eq!(map_speed(Some(nusb::Speed::SuperPlus)), Some(UsbSpeed::SuperPlus));
        assert_eq!(map_speed(Some(nusb::Speed::High)), Some(UsbSpeed::High));
        assert_eq!(map_speed(Some(nusb::Speed::Full)), Some(UsbSpeed::Full));
        assert_eq!(map_speed(Some(nusb::Speed::Low)), None);
        assert_eq!(map_speed(None), None);
    }

    #[test]
    fn short_out_overflowing_in_and_full_transfers_are_judged() {
        let base = Instant::now();
        let out = record(0, Label::BulkOut { endpoint: 2, length: 4096 }, base, 1000);
        assert_eq!(judge(&out, ok_out(4096), base).unwrap(), Completion::Out { length: 4096 });
        assert!(matches!(
            judge(&out, ok_out(1024), base),
            Err(UsbError::ShortOut { actual: 1024, .. })
        ));

        let inn = record(1, Label::BulkIn { endpoint: 0x81, length: 100 }, base, 1000);
        let short = RawOutcome { status: Ok(()), actual: 3, data: vec![1, 2, 3] };
        assert_eq!(judge(&inn, short, base).unwrap(), Completion::In(vec![1, 2, 3]));
        let babble = RawOutcome { status: Ok(()), actual: 512, data: vec![0; 512] };
        assert!(matches!(judge(&inn, babble, base), Err(UsbError::Overflow { .. })));

        let ctl_out = record(2, Label::ControlOut { setup: vendor_in(), length: 12 }, base, 1000);
        assert_eq!(judge(&ctl_out, ok_out(12), base).unwrap(), Completion::Out { length: 12 });
    }

    #[test]
    fn cancellation_reads_as_timeout_only_after_the_deadline() {
        let base = Instant::now();
        let ctl = record(0, Label::ControlIn { setup: vendor_in(), length: 8 }, base, 1000);
        let before = base + Duration::from_millis(999);
        let after = base + Duration::from_millis(1000);
        assert!(matches!(
            judge(&ctl, failed(TransferError::Cancelled), before),
            Err(UsbError::Cancelled { .. })
        ));
        match judge(&ctl, failed(TransferError::Cancelled), after) {
            Err(UsbError::Timeout { transfer, after }) => {
                assert!(transfer.contains("control IN request 0xE4"), "{transfer}");
                assert_eq!(after, Duration::from_millis(1000));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn expiry_times_out_the_late_transfer_and_blames_it_for_the_rest() {
        let base = Instant::now();
        let mut inflight = InFlight::new();
        let mut pipe = Pipe::default();
        let first = inflight.begin();
        let second = inflight.begin();
        let third = inflight.begin();
        let label = |n| Label::BulkIn { endpoint: 0x81, length: n };
        pipe.push(Record::new(first, label(1), base, Duration::from_secs(10)));
        pipe.push(Record::new(second, label(2), base, Duration::from_secs(1)));
        pipe.push(Record::new(third, label(3), base, Duration::from_secs(10)));
        assert_eq!(pipe.next_deadline(), Some(base + Duration::from_secs(1)));

        assert_eq!(pipe.expire(base + Duration::from_millis(999), &mut inflight), None);
        assert_eq!(pipe.expire(base + Duration::from_secs(1), &mut inflight), Some(label(2)));
        // What BulkQueue::expire does before cancelling the endpoint.
        pipe.mark_cancelled(CancelCause::Timeout(label(2)));
        assert!(inflight.is_finished(second) && !inflight.is_finished(first));
        assert_eq!(pipe.next_deadline(), Some(base + Duration::from_secs(10)));

        // The endpoint was cancelled: nusb hands back all three, in order.
        let now = base + Duration::from_secs(1);
        pipe.complete_front(failed(TransferError::Cancelled), now, &mut inflight);
        pipe.complete_front(failed(TransferError::Cancelled), now, &mut inflight);
        pipe.complete_front(failed(TransferError::Cancelled), now, &mut inflight);
        assert_eq!(pipe.len(), 0);

        let err = inflight.collect(first).unwrap().unwrap_err().to_string();
        assert!(err.starts_with("bulk IN of 1 bytes"), "{err}");
        assert!(err.contains("because bulk IN of 2 bytes on endpoint 0x81 timed out"), "{err}");
        assert!(matches!(inflight.collect(second), Some(Err(UsbError::Timeout { .. }))));
        // The timeout was latched first, so it is what the sticky error names.
        match inflight.sticky() {
            Some(UsbError::Timeout { transfer, .. }) => assert!(transfer.contains("2 bytes")),
            other => panic!("sticky should be the timeout, got {other:?}"),
        }
        assert!(matches!(inflight.collect(third), Some(Err(UsbError::Cancelled { .. }))));
    }

    #[test]
    fn completions_go_to_their_own_tags_in_order() {
        let base = Instant::now();
        let mut inflight = InFlight::new();
        let mut pipe = Pipe::default();
        let a = inflight.begin();
        let b = inflight.begin();
        pipe.push(Record::new(a, Label::BulkIn { endpoint: 0x81, length: 4 }, base, Duration::MAX));
        pipe.push(Record::new(b, Label::BulkIn { endpoint: 0x81, length: 4 }, base, Duration::MAX));
        // An unbounded timeout is capped instead of overflowing `Instant`.
        assert_eq!(pipe.next_deadline(), Some(base + MAX_TIMEOUT));
        pipe.complete_front(
            RawOutcome { status: Ok(()), actual: 1, data: vec![0xA] },
            base,
            &mut inflight,
        );
        pipe.complete_front(
            RawOutcome { status: Ok(()), actual: 2, data: vec![0xB, 0xB] },
            base,
            &mut inflight,
        );
        assert_eq!(inflight.collect(b).unwrap().unwrap(), Completion::In(vec![0xB, 0xB]));
        assert_eq!(inflight.collect(a).unwrap().unwrap(), Completion::In(vec![0xA]));
        assert!(pipe.next_deadline().is_none());
    }

    #[test]
    fn a_timed_out_transfer_that_completes_later_is_not_reported_twice() {
        let base = Instant::now();
        let mut inflight = InFlight::new();
        let mut pipe = Pipe::default();
        let tag = inflight.begin();
        pipe.push(Record::new(
            tag,
            Label::BulkOut { endpoint: 2, length: 8 },
            base,
            Duration::ZERO,
        ));
        assert!(pipe.expire(base, &mut inflight).is_some());
        pipe.complete_front(ok_out(8), base, &mut inflight);
        assert!(matches!(inflight.collect(tag), Some(Err(UsbError::Timeout { .. }))));
        assert!(inflight.sticky().is_some());
    }

    #[test]
    fn control_transfers_report_in_submission_order_and_time_out_alone() {
        let base = Instant::now();
        let mut inflight = InFlight::new();
        let mut control = ControlQueue::default();
        let label =
            |request| Label::ControlIn { setup: ControlSetup::vendor_in(request, 0, 0), length: 8 };
        let slow = inflight.begin();
        let answered = inflight.begin();
        let stalled = inflight.begin();
        let later = inflight.begin();
        let timeout = Duration::from_secs(1);
        control.push(Record::new(slow, label(1), base, timeout), Box::pin(std::future::pending()));
        control.push(
            Record::new(answered, label(2), base, timeout),
            Box::pin(std::future::ready(Ok(vec![7; 8]))),
        );
        control.push(
            Record::new(stalled, label(3), base, timeout),
            Box::pin(std::future::ready(Err(TransferError::Stall))),
        );
        control.push(
            Record::new(later, label(4), base, Duration::from_secs(5)),
            Box::pin(std::future::pending()),
        );
        let mut cx = Context::from_waker(Waker::noop());

        // The oldest has not answered, so nothing behind it is reported yet.
        control.pump(&mut cx, base, &mut inflight);
        assert!(!inflight.is_finished(answered) && !inflight.is_finished(stalled));

        // Past the first deadline: the three 1 s transfers expire; the finished ones were
        // already resolved, but their results still count only in order, so the timeout is
        // what all three report, and the 5 s one keeps running untouched.
        let now = base + timeout;
        control.expire(now, &mut inflight);
        control.pump(&mut cx, now, &mut inflight);
        assert!(matches!(inflight.collect(slow), Some(Err(UsbError::Timeout { .. }))));
        assert!(matches!(inflight.collect(answered), Some(Err(UsbError::Timeout { .. }))));
        assert!(matches!(inflight.collect(stalled), Some(Err(UsbError::Timeout { .. }))));
        assert!(!inflight.is_finished(later));
        assert_eq!(control.pipe.records.len(), 1);
        assert_eq!(control.pipe.records[0].cancelled, None, "control transfers are not flushed");
        assert_eq!(control.pipe.next_deadline(), Some(base + Duration::from_secs(5)));
    }

    #[test]
    fn control_results_follow_their_transfers() {
        let base = Instant::now();
        let mut inflight = InFlight::new();
        let mut control = ControlQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        let setup = ControlSetup::vendor_out(0xE5, 0xB450, 0x78);
        let timeout = Duration::from_secs(1);
        let read = inflight.begin();
        let write = inflight.begin();
        control.push(
            Record::new(read, Label::ControlIn { setup: vendor_in(), length: 255 }, base, timeout),
            Box::pin(std::future::ready(Ok(vec![0x78]))),
        );
        control.push(
            Record::new(write, Label::ControlOut { setup, length: 0 }, base, timeout),
            Box::pin(std::future::ready(Ok(Vec::new()))),
        );
        control.pump(&mut cx, base, &mut inflight);
        // A short control IN returns what arrived; the protocol layer judges it.
        assert_eq!(inflight.collect(read).unwrap().unwrap(), Completion::In(vec![0x78]));
        assert_eq!(inflight.collect(write).unwrap().unwrap(), Completion::Out { length: 0 });

        let stall = inflight.begin();
        let after = inflight.begin();
        control.push(
            Record::new(stall, Label::ControlOut { setup, length: 0 }, base, timeout),
            Box::pin(std::future::ready(Err(TransferError::Stall))),
        );
        control.push(
            Record::new(after, Label::ControlOut { setup, length: 0 }, base, timeout),
            Box::pin(std::future::ready(Ok(Vec::new()))),
        );
        control.pump(&mut cx, base, &mut inflight);
        assert_eq!(control.pipe.len(), 0);
        match inflight.collect(stall) {
            Some(Err(UsbError::Stall { transfer })) => {
                assert!(transfer.contains("control OUT request 0xE5"), "{transfer}");
            }
            other => panic!("expected the stall, got {other:?}"),
        }
        assert!(matches!(inflight.collect(after), Some(Err(UsbError::Sticky { .. }))));
    }

    #[test]
    fn clear_halt_and_reset_name_themselves_in_cancellations() {
        let base = Instant::now();
        let mut inflight = InFlight::new();
        let mut pipe = Pipe::default();
        let tag = inflight.begin();
        pipe.push(Record::new(tag, Label::BulkOut { endpoint: 2, length: 8 }, base, Duration::MAX));
        pipe.mark_cancelled(CancelCause::ClearHalt);
        pipe.complete_front(failed(TransferError::Cancelled), base, &mut inflight);
        let err = inflight.collect(tag).unwrap().unwrap_err().to_string();
        assert!(err.contains("CLEAR_FEATURE(ENDPOINT_HALT)"), "{err}");
        assert!(cancelled_error(Label::BulkIn { endpoint: 0x81, length: 1 }, CancelCause::Reset)
            .to_string()
            .contains("interface reset"));
    }
}
