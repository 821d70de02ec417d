//! The device side: [`DeviceTransport`] serves the virtio-msg control ring and the
//! virtqueues of one region for a [`Backend`] (a built-in device, or a bridge to a
//! vhost-user daemon). It owns every check of what the frontend writes; the backend only
//! ever sees validated values (docs/virtio.md §5, §6).

use crate::layout::{
    field, Geometry, GeometryError, DEV_FLAG_NEEDS_RESET, DEV_SERVING, MAGIC, MSG_MAX,
    OFF_DEV_EPOCH, OFF_DEV_FLAGS, OFF_DEV_STATE, OFF_GUEST_BASE, OFF_MAGIC,
};
use crate::msg::{
    error, id, ConfigData, ConfigRange, DeviceInfoResp, EventConfig, Features, Msg, QueueIndex,
    Status, Vqueue, MAX_CONFIG_BYTES, MAX_FEATURE_BLOCKS, TYPE_BUS, TYPE_RESPONSE,
};
use crate::queue::{Memory, QueueError, QueueLayout, QueueState, SplitQueue, MAX_QUEUE_SIZE};
use crate::ring::{Consumer, Producer, RingError, REQUESTS, RESPONSES};
use core::sync::atomic::Ordering::{Acquire, Release};
use staticbus_guest::{Errno, Events, Region};
use zerocopy::little_endian::{U16, U32, U64};

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    /// The driver found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The driver knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// The driver gave up.
    pub const FAILED: u8 = 128;
}

/// Most virtqueues a device may have.
pub const MAX_QUEUES: usize = 8;
/// The vendor id staticbus devices report (`"SBUS"` little-endian).
pub const VENDOR_STATICBUS: u32 = u32::from_le_bytes(*b"SBUS");
/// Feature bit 32, `VIRTIO_F_VERSION_1`: every staticbus device offers it.
pub const F_VERSION_1: u64 = 1 << 32;

/// The backend refused a value (the request fails with `BAD_MESSAGE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// What a virtio device implements; [`DeviceTransport`] calls it with validated values only.
///
/// A built-in backend does its work in [`Backend::notify`] with the [`SplitQueue`] it is
/// handed. A bridge to a vhost-user daemon hands the daemon the queue addresses from
/// [`Backend::queue_set`] (one memory-table entry: [`DeviceTransport::guest_base`], the
/// region length, offset 0), kicks it in `notify`, and calls
/// [`DeviceTransport::used`] when the daemon signals completions.
pub trait Backend {
    /// The virtio device id (2 block, 3 console, 4 entropy, …).
    fn device_type(&self) -> u32;
    /// The vendor id.
    fn vendor_id(&self) -> u32 {
        VENDOR_STATICBUS
    }
    /// The device's feature bits (the transport adds nothing; offer [`F_VERSION_1`]).
    fn device_features(&self) -> u64;
    /// The driver accepted `features` (already a subset of
    /// [`device_features`](Backend::device_features)). `Err`: FEATURES_OK is not set.
    fn set_driver_features(&mut self, features: u64) -> Result<(), Refused>;
    /// Size of the configuration space in bytes (at most 4096).
    fn config_size(&self) -> u32;
    /// Copies configuration bytes at `offset` into `buf` (`offset + buf.len()` is within
    /// [`config_size`](Backend::config_size)).
    fn read_config(&self, offset: u32, buf: &mut [u8]);
    /// Writes configuration bytes (in bounds, as for `read_config`).
    fn write_config(&mut self, offset: u32, data: &[u8]) -> Result<(), Refused>;
    /// The configuration generation (changes whenever the configuration does).
    fn config_generation(&self) -> u32 {
        0
    }
    /// Number of virtqueues (at most [`MAX_QUEUES`]).
    fn num_queues(&self) -> u16;
    /// Largest size of queue `queue` (< `num_queues`), a power of two.
    fn max_queue_size(&self, queue: u16) -> u16;
    /// The driver wrote a new status (never 0: that is [`Backend::reset`]); DRIVER_OK
    /// starts the device. `Err`: the write fails.
    fn status_changed(&mut self, status: u8) -> Result<(), Refused>;
    /// Device reset: the driver wrote status 0, or the device side (re)attached.
    fn reset(&mut self);
    /// Queue `queue` was set up with this validated layout and is enabled.
    fn queue_set(&mut self, queue: u16, layout: QueueLayout) -> Result<(), Refused>;
    /// Queue `queue` was disabled.
    fn queue_reset(&mut self, queue: u16);
    /// The driver made buffers available on `queue`, or the transport polls it. Take
    /// chains from `vq` and [`add_used`](SplitQueue::add_used) them (the transport then
    /// notifies the driver), or forward the kick. `Err`: the frontend broke the queue
    /// (or sent a request the device cannot parse); the device goes NEEDS_RESET.
    fn notify(&mut self, queue: u16, vq: &mut SplitQueue<'_>) -> Result<(), QueueError>;
}

/// Why the device side cannot serve a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The region cannot hold the layout.
    Geometry(GeometryError),
    /// The region holds another protocol or another layout (magic or common line).
    Foreign,
    /// The backend has more queues than [`MAX_QUEUES`].
    TooManyQueues,
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::Geometry(e) => write!(f, "{e}"),
            AttachError::Foreign => write!(
                f,
                "the region's header is not this virtio-msg layout (magic or geometry differ)"
            ),
            AttachError::TooManyQueues => write!(f, "more than {MAX_QUEUES} virtqueues"),
        }
    }
}

impl core::error::Error for AttachError {}

/// Counters of what a frontend did wrong (for tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Requests answered with an error.
    pub refused: u64,
    /// Slots dropped: no valid message, an unexpected type.
    pub dropped: u64,
    /// Times the request ring's indices were broken.
    pub ring: u64,
    /// Times a queue was broken (device set NEEDS_RESET).
    pub queue: u64,
    /// Responses that could not be written (response ring broken or full).
    pub lost: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Queue {
    layout: Option<QueueLayout>,
    state: QueueState,
}

/// The device side of one virtio-msg region: the control rings, the status machine and
/// the virtqueues, for `backend`, with `port` as the doorbell.
pub struct DeviceTransport<B: Backend, E: Events> {
    region: Region,
    events: E,
    port: u32,
    backend: B,
    geometry: Geometry,
    epoch: u64,
    req: Consumer,
    resp: Producer,
    status: u8,
    features: u64,
    guest_base: u64,
    queues: [Queue; MAX_QUEUES],
    faults: Faults,
    pending_used: u32,
    ring_bell: bool,
}

impl<B: Backend, E: Events> core::fmt::Debug for DeviceTransport<B, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceTransport")
            .field("epoch", &self.epoch)
            .field("status", &self.status)
            .field("faults", &self.faults)
            .finish()
    }
}

impl<B: Backend, E: Events> DeviceTransport<B, E> {
    /// Attaches the device side to `region`: initialises a fresh (all-zero) region, or
    /// takes over one it served before (a restart): in both cases it increments the
    /// device epoch, drops every request in flight, resets the backend and rings the
    /// doorbell so a waiting frontend sees the new epoch.
    pub fn attach(region: Region, events: E, port: u32, backend: B) -> Result<Self, AttachError> {
        let geometry = Geometry::new(region.len()).map_err(AttachError::Geometry)?;
        if backend.num_queues() as usize > MAX_QUEUES {
            return Err(AttachError::TooManyQueues);
        }
        let want = geometry.common_line(backend.device_type());
        let magic = region
            .load_le::<u64>(OFF_MAGIC, Acquire)
            .ok_or(AttachError::Foreign)?;
        if magic == 0 {
            region
                .write_bytes(8, &want[8..])
                .map_err(|_| AttachError::Foreign)?;
            region
                .store_le::<u64>(OFF_MAGIC, MAGIC, Release)
                .ok_or(AttachError::Foreign)?;
        } else {
            let mut line = [0u8; 64];
            region
                .read_bytes(0, &mut line)
                .map_err(|_| AttachError::Foreign)?;
            if line != want {
                return Err(AttachError::Foreign);
            }
        }
        let epoch = region
            .load_le::<u64>(OFF_DEV_EPOCH, Acquire)
            .unwrap_or(0)
            .wrapping_add(1);
        let mut req = Consumer::resume(REQUESTS, &region).map_err(|_| AttachError::Foreign)?;
        req.skip_all(&region).map_err(|_| AttachError::Foreign)?;
        // The response producer continues where it was, unless the frontend's consumer
        // index says that is impossible: then it continues from the consumer.
        let mut resp = Producer::resume(RESPONSES, &region).map_err(|_| AttachError::Foreign)?;
        if resp.free(&region).is_err() {
            let cons = region.load_le::<u32>(RESPONSES.cons, Acquire).unwrap_or(0);
            resp = Producer::new(RESPONSES, cons);
            region.store_le::<u32>(RESPONSES.prod, cons, Release);
        }
        let mut backend = backend;
        backend.reset();
        region.store_le::<u32>(OFF_DEV_FLAGS, 0, Release);
        region.store_le::<u64>(OFF_DEV_EPOCH, epoch, Release);
        region.store_le::<u32>(OFF_DEV_STATE, DEV_SERVING, Release);
        let dev = DeviceTransport {
            region,
            events,
            port,
            backend,
            geometry,
            epoch,
            req,
            resp,
            status: 0,
            features: 0,
            guest_base: 0,
            queues: [Queue::default(); MAX_QUEUES],
            faults: Faults::default(),
            pending_used: 0,
            ring_bell: false,
        };
        let _ = dev.events.send(dev.port);
        Ok(dev)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (e.g. to feed console input).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The region served.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The events handle.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// The device epoch this attach published.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The device status as the driver sees it.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.features
    }

    /// The frontend's guest-physical address of region offset 0, latched when the driver
    /// started initialising (status 0 → non-zero).
    pub fn guest_base(&self) -> u64 {
        self.guest_base
    }

    /// What the frontend did wrong so far.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Detaches: marks the device side absent in the region (a clean stop).
    pub fn detach(self) -> B {
        self.region.store_le::<u32>(OFF_DEV_STATE, 0, Release);
        self.backend
    }

    /// Stops serving without a word to the region, as a crash would (`dev_state` stays
    /// 1): the backend, to attach again (a restart) or to inspect.
    pub fn into_backend(self) -> B {
        self.backend
    }

    fn memory(&self) -> Memory {
        Memory::new(
            self.region,
            self.guest_base,
            self.geometry.dma_offset..self.geometry.region_size,
        )
    }

    fn respond(&mut self, msg: &Msg) {
        match self.resp.push(&self.region, msg) {
            Ok(true) => {}
            Ok(false) | Err(_) => self.faults.lost += 1,
        }
    }

    fn refuse(&mut self, req: &Msg, code: u32) {
        self.faults.refused += 1;
        let m = Msg::error(req, code);
        self.respond(&m);
    }

    /// Marks the device NEEDS_RESET (a frontend broke a queue or a ring) and tells the
    /// driver with EVENT_CONFIG.
    pub fn needs_reset(&mut self) {
        if self.status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        self.region
            .store_le::<u32>(OFF_DEV_FLAGS, DEV_FLAG_NEEDS_RESET, Release);
        let ev = EventConfig {
            status: U32::new(self.status as u32),
            generation: U32::new(self.backend.config_generation()),
            offset: U32::new(0),
            size: U32::new(0),
        };
        let m = Msg::with(0, id::EVENT_CONFIG, 0, &ev, &[]);
        self.respond(&m);
        let _ = self.events.send(self.port);
    }

    /// Used buffers were added to `queue` outside [`Backend::notify`] (a bridge's daemon
    /// signalled): sends EVENT_USED and rings the doorbell.
    pub fn used(&mut self, queue: u16) -> Result<(), Errno> {
        self.send_used(queue);
        self.flush_used();
        self.events.send(self.port)
    }

    fn send_used(&mut self, queue: u16) {
        if (queue as usize) < MAX_QUEUES {
            self.pending_used |= 1 << queue;
            self.ring_bell = true;
        }
    }

    /// Sends the pending EVENT_USED messages that fit, keeping one slot free for a
    /// response. Returns whether anything was sent.
    fn flush_used(&mut self) -> bool {
        let mut sent = false;
        while self.pending_used != 0 {
            match self.resp.free(&self.region) {
                Ok(n) if n >= 2 => {}
                // Full: the driver reads its used rings on the doorbell anyway.
                _ => return sent,
            }
            let q = self.pending_used.trailing_zeros();
            self.pending_used &= !(1 << q);
            let m = Msg::with(
                0,
                id::EVENT_USED,
                0,
                &QueueIndex { index: U32::new(q) },
                &[],
            );
            self.respond(&m);
            sent = true;
        }
        sent
    }

    /// Serves everything pending without blocking: the request ring, then every enabled
    /// queue. Rings the doorbell if it wrote anything for the driver. Returns how many
    /// requests and queue notifications it handled.
    pub fn poll(&mut self) -> usize {
        let before = self.resp.index();
        let mut work = 0;
        for _ in 0..crate::layout::RING_SLOTS * 2 {
            match self.req.pop(&self.region) {
                Ok(None) => break,
                Ok(Some(Ok(m))) => {
                    work += 1;
                    self.handle(&m);
                }
                Ok(Some(Err(_))) => {
                    work += 1;
                    self.faults.dropped += 1;
                }
                Err(RingError::Indices { .. }) | Err(RingError::Region) => {
                    self.faults.ring += 1;
                    let _ = self.req.skip_all(&self.region);
                    self.needs_reset();
                    break;
                }
            }
        }
        for q in 0..self.backend.num_queues().min(MAX_QUEUES as u16) {
            work += self.serve_queue(q) as usize;
        }
        self.flush_used();
        // The doorbell goes with every used buffer, even when its EVENT_USED did not fit
        // (a frontend that never drains the ring polls its used rings instead).
        if self.resp.index() != before || core::mem::take(&mut self.ring_bell) {
            let _ = self.events.send(self.port);
        }
        work
    }

    /// Serves until the doorbell's wait fails (for a test fake: every peer gone): wait,
    /// poll, repeat. Returns the wait's error.
    pub fn run(&mut self) -> Errno {
        loop {
            while self.poll() > 0 {}
            if let Err(e) = self.events.wait(self.port) {
                return e;
            }
        }
    }

    fn running(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    fn serve_queue(&mut self, q: u16) -> bool {
        if !self.running() {
            return false;
        }
        let Some(layout) = self.queues[q as usize].layout else {
            return false;
        };
        let mem = self.memory();
        let mut state = self.queues[q as usize].state;
        let mut vq = SplitQueue::new(&mem, &layout, &mut state);
        let had = vq.pending().unwrap_or(1) > 0;
        let r = self.backend.notify(q, &mut vq);
        let used = vq.used_added();
        let quiet = vq.notifications_suppressed();
        self.queues[q as usize].state = state;
        match r {
            Ok(()) => {}
            Err(_) => {
                self.faults.queue += 1;
                self.needs_reset();
            }
        }
        if used && !quiet {
            self.send_used(q);
        }
        had && used
    }

    fn handle(&mut self, m: &Msg) {
        if m.ty() & TYPE_BUS != 0 {
            if !m.is_response() {
                self.refuse(m, error::UNSUPPORTED_MESSAGE_ID);
            } else {
                self.faults.dropped += 1;
            }
            return;
        }
        if m.is_response() {
            self.faults.dropped += 1;
            return;
        }
        let r = match m.msg_id() {
            id::DEVICE_INFO => self.device_info(m),
            id::GET_DEV_FEATURES => self.get_features(m),
            id::SET_DRV_FEATURES => self.set_features(m),
            id::GET_CONFIG => self.get_config(m),
            id::SET_CONFIG => self.set_config(m),
            id::GET_DEVICE_STATUS => Ok(self.status_resp(m, id::GET_DEVICE_STATUS)),
            id::SET_DEVICE_STATUS => self.set_status(m),
            id::GET_VQUEUE => self.get_vqueue(m),
            id::SET_VQUEUE => self.set_vqueue(m),
            id::RESET_VQUEUE => self.reset_vqueue(m),
            id::EVENT_AVAIL => {
                // A hint: every enabled queue is served on each poll anyway.
                return;
            }
            _ => Err(error::UNSUPPORTED_MESSAGE_ID),
        };
        match r {
            Ok(resp) => self.respond(&resp),
            Err(code) => self.refuse(m, code),
        }
    }

    fn device_info(&mut self, m: &Msg) -> Result<Msg, u32> {
        let info = DeviceInfoResp {
            device_id: U32::new(self.backend.device_type()),
            vendor_id: U32::new(self.backend.vendor_id()),
            num_feature_bits: U32::new(64),
            config_size: U32::new(self.backend.config_size()),
            max_vqs: U32::new(self.backend.num_queues() as u32),
            admin_vq_idx: U16::new(0),
            admin_vq_count: U16::new(0),
        };
        Ok(Msg::with(
            TYPE_RESPONSE,
            id::DEVICE_INFO,
            m.token(),
            &info,
            &[],
        ))
    }

    fn get_features(&mut self, m: &Msg) -> Result<Msg, u32> {
        let f = m.head::<Features>().map_err(|_| error::BAD_MESSAGE)?;
        let (index, num) = (f.index.get(), f.num.get());
        if num as usize > MAX_FEATURE_BLOCKS {
            return Err(error::BAD_MESSAGE);
        }
        let bits = self.backend.device_features();
        let mut blocks = [0u8; 4 * MAX_FEATURE_BLOCKS];
        for i in 0..num {
            let b = match index.checked_add(i) {
                Some(0) => bits as u32,
                Some(1) => (bits >> 32) as u32,
                _ => 0,
            };
            blocks[4 * i as usize..4 * i as usize + 4].copy_from_slice(&b.to_le_bytes());
        }
        let head = Features {
            index: U32::new(index),
            num: U32::new(num),
        };
        Ok(Msg::with(
            TYPE_RESPONSE,
            id::GET_DEV_FEATURES,
            m.token(),
            &head,
            &blocks[..4 * num as usize],
        ))
    }

    fn set_features(&mut self, m: &Msg) -> Result<Msg, u32> {
        let f = m.head::<Features>().map_err(|_| error::BAD_MESSAGE)?;
        let (index, num) = (f.index.get(), f.num.get() as usize);
        let tail = m.tail::<Features>();
        if num > MAX_FEATURE_BLOCKS || tail.len() < 4 * num {
            return Err(error::BAD_MESSAGE);
        }
        if self.status & status::FEATURES_OK != 0 || self.status & status::DRIVER == 0 {
            return Err(error::BAD_MESSAGE);
        }
        let mut features = self.features;
        for i in 0..num {
            let b = u32::from_le_bytes(tail[4 * i..4 * i + 4].try_into().unwrap_or_default());
            match index.checked_add(i as u32) {
                Some(0) => features = (features & !0xffff_ffff) | b as u64,
                Some(1) => features = (features & 0xffff_ffff) | ((b as u64) << 32),
                _ if b == 0 => {}
                _ => return Err(error::BAD_MESSAGE),
            }
        }
        if features & !self.backend.device_features() != 0 {
            return Err(error::BAD_MESSAGE);
        }
        self.features = features;
        Ok(Msg::new(
            TYPE_RESPONSE,
            id::SET_DRV_FEATURES,
            m.token(),
            &[],
        ))
    }

    fn config_bounds(&self, offset: u32, size: u32) -> Result<(), u32> {
        let end = offset.checked_add(size).ok_or(error::BAD_MESSAGE)?;
        if size as usize > MAX_CONFIG_BYTES || end > self.backend.config_size() {
            return Err(error::BAD_MESSAGE);
        }
        Ok(())
    }

    fn get_config(&mut self, m: &Msg) -> Result<Msg, u32> {
        let c = m.head::<ConfigRange>().map_err(|_| error::BAD_MESSAGE)?;
        let (offset, size) = (c.offset.get(), c.size.get());
        self.config_bounds(offset, size)?;
        let mut data = [0u8; MAX_CONFIG_BYTES];
        self.backend.read_config(offset, &mut data[..size as usize]);
        let head = ConfigData {
            generation: U32::new(self.backend.config_generation()),
            offset: U32::new(offset),
            size: U32::new(size),
        };
        Ok(Msg::with(
            TYPE_RESPONSE,
            id::GET_CONFIG,
            m.token(),
            &head,
            &data[..size as usize],
        ))
    }

    fn set_config(&mut self, m: &Msg) -> Result<Msg, u32> {
        let c = *m.head::<ConfigData>().map_err(|_| error::BAD_MESSAGE)?;
        let (offset, size) = (c.offset.get(), c.size.get());
        self.config_bounds(offset, size)?;
        let data = m.tail::<ConfigData>();
        if data.len() < size as usize {
            return Err(error::BAD_MESSAGE);
        }
        self.backend
            .write_config(offset, &data[..size as usize])
            .map_err(|Refused| error::BAD_MESSAGE)?;
        let head = ConfigData {
            generation: U32::new(self.backend.config_generation()),
            offset: U32::new(offset),
            size: U32::new(size),
        };
        Ok(Msg::with(
            TYPE_RESPONSE,
            id::SET_CONFIG,
            m.token(),
            &head,
            &[],
        ))
    }

    fn status_resp(&self, m: &Msg, msg_id: u8) -> Msg {
        let s = Status {
            status: U32::new(self.status as u32),
        };
        Msg::with(TYPE_RESPONSE, msg_id, m.token(), &s, &[])
    }

    fn reset(&mut self) {
        self.backend.reset();
        for q in self.queues.iter_mut() {
            *q = Queue::default();
        }
        self.status = 0;
        self.features = 0;
        self.pending_used = 0;
        self.region.store_le::<u32>(OFF_DEV_FLAGS, 0, Release);
    }

    fn set_status(&mut self, m: &Msg) -> Result<Msg, u32> {
        let s = m
            .head::<Status>()
            .map_err(|_| error::BAD_MESSAGE)?
            .status
            .get();
        if s == 0 {
            self.reset();
            return Ok(self.status_resp(m, id::SET_DEVICE_STATUS));
        }
        if s > 0xff {
            return Err(error::BAD_MESSAGE);
        }
        let new = s as u8 & !status::DEVICE_NEEDS_RESET;
        let old = self.status & !status::DEVICE_NEEDS_RESET;
        if new & old != old {
            // Only a reset clears bits.
            return Err(error::BAD_MESSAGE);
        }
        if old == 0 {
            self.guest_base = self
                .region
                .load_le::<u64>(OFF_GUEST_BASE, Acquire)
                .unwrap_or(0);
        }
        let mut next = new;
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let ok = self.features & F_VERSION_1 != 0
                && self.backend.set_driver_features(self.features).is_ok();
            if !ok {
                next &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && next & status::FEATURES_OK == 0 {
            return Err(error::BAD_MESSAGE);
        }
        if next != old && self.backend.status_changed(next).is_err() {
            return Err(error::BAD_MESSAGE);
        }
        self.status = next | (self.status & status::DEVICE_NEEDS_RESET);
        Ok(self.status_resp(m, id::SET_DEVICE_STATUS))
    }

    fn queue_index(&self, index: u32) -> Result<u16, u32> {
        if index < self.backend.num_queues() as u32 && (index as usize) < MAX_QUEUES {
            Ok(index as u16)
        } else {
            Err(error::BAD_MESSAGE)
        }
    }

    fn get_vqueue(&mut self, m: &Msg) -> Result<Msg, u32> {
        let q = self.queue_index(
            m.head::<QueueIndex>()
                .map_err(|_| error::BAD_MESSAGE)?
                .index
                .get(),
        )?;
        let l = self.queues[q as usize].layout;
        let v = Vqueue {
            index: U32::new(q as u32),
            max_size: U32::new(self.backend.max_queue_size(q).min(MAX_QUEUE_SIZE) as u32),
            size: U32::new(l.map_or(0, |l| l.size as u32)),
            reserved: U32::new(0),
            descriptor_addr: U64::new(l.map_or(0, |l| l.desc_gpa)),
            driver_addr: U64::new(l.map_or(0, |l| l.driver_gpa)),
            device_addr: U64::new(l.map_or(0, |l| l.device_gpa)),
        };
        Ok(Msg::with(TYPE_RESPONSE, id::GET_VQUEUE, m.token(), &v, &[]))
    }

    fn set_vqueue(&mut self, m: &Msg) -> Result<Msg, u32> {
        let v = *m.head::<Vqueue>().map_err(|_| error::BAD_MESSAGE)?;
        let q = self.queue_index(v.index.get())?;
        if self.status & status::FEATURES_OK == 0 || self.status & status::DRIVER_OK != 0 {
            return Err(error::BAD_MESSAGE);
        }
        let size = v.size.get();
        let max = self.backend.max_queue_size(q).min(MAX_QUEUE_SIZE) as u32;
        if size == 0 || size > max || !size.is_power_of_two() {
            return Err(error::BAD_MESSAGE);
        }
        let layout = self
            .memory()
            .queue_layout(
                size as u16,
                v.descriptor_addr.get(),
                v.driver_addr.get(),
                v.device_addr.get(),
            )
            .ok_or(error::MEMORY)?;
        self.backend
            .queue_set(q, layout)
            .map_err(|Refused| error::BAD_MESSAGE)?;
        self.queues[q as usize] = Queue {
            layout: Some(layout),
            state: QueueState::default(),
        };
        Ok(Msg::new(TYPE_RESPONSE, id::SET_VQUEUE, m.token(), &[]))
    }

    fn reset_vqueue(&mut self, m: &Msg) -> Result<Msg, u32> {
        let q = self.queue_index(
            m.head::<QueueIndex>()
                .map_err(|_| error::BAD_MESSAGE)?
                .index
                .get(),
        )?;
        if self.queues[q as usize].layout.take().is_some() {
            self.backend.queue_reset(q);
        }
        self.queues[q as usize].state = QueueState::default();
        Ok(Msg::new(TYPE_RESPONSE, id::RESET_VQUEUE, m.token(), &[]))
    }
}

const _: () = assert!(field::DEV_EPOCH.end - field::DEV_EPOCH.start == 8 && MSG_MAX == 48);
