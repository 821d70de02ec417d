//! The frontend: [`Link`] speaks the control rings of one region, and [`MsgTransport`]
//! implements virtio-drivers' [`Transport`] over it, so that crate's drivers
//! (`VirtIOBlk`, `VirtIORng`, `VirtIOConsole`, …) run unchanged. With
//! [`RegionHal`](crate::hal::RegionHal) as their `Hal`, every queue and buffer lies in
//! the shared region.
//!
//! The device side may restart at any time: it then increments the epoch in the region
//! header. From then on the transport answers every call without asking the device and
//! reports [`DeviceStatus::DEVICE_NEEDS_RESET`]; [`Link::wait_used`] and the calls return
//! [`CallError::Reset`]. The driver re-initialises (a new driver over
//! [`Link::transport`]); its first status write (0) adopts the new epoch.

use crate::layout::{
    Geometry, GeometryError, DEV_FLAG_NEEDS_RESET, DEV_SERVING, DRV_ATTACHED, MAGIC, OFF_DEV_EPOCH,
    OFF_DEV_FLAGS, OFF_DEV_STATE, OFF_DRV_EPOCH, OFF_DRV_STATE, OFF_GUEST_BASE, OFF_MAGIC,
};
use crate::msg::{
    error, id, ConfigData, ConfigRange, DeviceInfoResp, EventConfig, Features, Msg, QueueIndex,
    Status, Vqueue, MAX_CONFIG_BYTES, TYPE_RESPONSE,
};
use crate::ring::{Consumer, Producer, REQUESTS, RESPONSES};
use core::cell::Cell;
use core::sync::atomic::Ordering::{Acquire, Release};
use staticbus_guest::{Errno, Events, Region};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Why the frontend cannot use a region (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The region cannot hold the layout.
    Geometry(GeometryError),
    /// The device side has not initialised the region or is not serving: try later.
    NotReady,
    /// The header is not this layout.
    Foreign,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkError::Geometry(e) => write!(f, "{e}"),
            LinkError::NotReady => write!(f, "the device side is not serving the region yet"),
            LinkError::Foreign => write!(f, "the region's header is not this virtio-msg layout"),
        }
    }
}

impl core::error::Error for LinkError {}

/// Why [`Link::attach_waiting`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkWaitError {
    /// The region cannot be used ([`LinkError::Geometry`] or [`LinkError::Foreign`]).
    Link(LinkError),
    /// Waiting for the device side's doorbell failed.
    Wait(Errno),
}

impl core::fmt::Display for LinkWaitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinkWaitError::Link(e) => write!(f, "{e}"),
            LinkWaitError::Wait(e) => write!(f, "waiting for the device: {e:?}"),
        }
    }
}

impl core::error::Error for LinkWaitError {}

/// Why a control request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The device side restarted (new epoch) or raised NEEDS_RESET: re-initialise.
    Reset,
    /// The device answered with this error code ([`error`]).
    Refused(u32),
    /// The device broke the response ring or answered with the wrong message.
    Protocol,
    /// Waiting for the doorbell failed.
    Events(Errno),
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Reset => write!(f, "the device needs a reset (it restarted or failed)"),
            CallError::Refused(c) => write!(f, "the device refused the request (error {c})"),
            CallError::Protocol => write!(f, "the device broke the control protocol"),
            CallError::Events(e) => write!(f, "waiting for the device failed: {e:?}"),
        }
    }
}

impl core::error::Error for CallError {}

/// What a device said in DEVICE_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Virtio device id.
    pub device_id: u32,
    /// Vendor id.
    pub vendor_id: u32,
    /// Feature bits.
    pub num_feature_bits: u32,
    /// Configuration size.
    pub config_size: u32,
    /// Virtqueues.
    pub max_vqs: u32,
}

/// The frontend's end of one virtio-msg region: the control rings, the doorbell and the
/// device epoch it initialised against. Single-threaded (interior mutability), like the
/// driver that owns it.
pub struct Link<E: Events> {
    region: Region,
    events: E,
    port: u32,
    guest_base: u64,
    req: Cell<Producer>,
    resp: Cell<Consumer>,
    token: Cell<u16>,
    epoch: Cell<u64>,
    irq: Cell<u32>,
    failed: Cell<bool>,
}

impl<E: Events> core::fmt::Debug for Link<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Link")
            .field("epoch", &self.epoch.get())
            .field("guest_base", &format_args!("{:#x}", self.guest_base))
            .finish()
    }
}

impl<E: Events> Link<E> {
    /// Attaches to `region`, which this domain sees at guest-physical `guest_base`, with
    /// `port` as the doorbell. [`LinkError::NotReady`] until the device side serves it.
    pub fn attach(
        region: Region,
        events: E,
        port: u32,
        guest_base: u64,
    ) -> Result<Self, LinkError> {
        let geometry = Geometry::new(region.len()).map_err(LinkError::Geometry)?;
        let magic = region
            .load_le::<u64>(OFF_MAGIC, Acquire)
            .ok_or(LinkError::Foreign)?;
        if magic == 0 {
            return Err(LinkError::NotReady);
        }
        if magic != MAGIC {
            return Err(LinkError::Foreign);
        }
        let mut line = [0u8; 64];
        region
            .read_bytes(0, &mut line)
            .map_err(|_| LinkError::Foreign)?;
        let device_type = u32::from_le_bytes([line[0x0c], line[0x0d], line[0x0e], line[0x0f]]);
        if line != geometry.common_line(device_type) {
            return Err(LinkError::Foreign);
        }
        region.store_le::<u64>(OFF_GUEST_BASE, guest_base, Release);
        let drv_epoch = region.load_le::<u64>(OFF_DRV_EPOCH, Acquire).unwrap_or(0);
        region.store_le::<u64>(OFF_DRV_EPOCH, drv_epoch.wrapping_add(1), Release);
        region.store_le::<u32>(OFF_DRV_STATE, DRV_ATTACHED, Release);
        let link = Link {
            region,
            events,
            port,
            guest_base,
            req: Cell::new(Producer::new(REQUESTS, 0)),
            resp: Cell::new(Consumer::new(RESPONSES, 0)),
            token: Cell::new(0),
            epoch: Cell::new(0),
            irq: Cell::new(0),
            failed: Cell::new(false),
        };
        if !link.resync() {
            return Err(LinkError::NotReady);
        }
        Ok(link)
    }

    /// [`Link::attach`], waiting on `port` while the device side is not serving yet (the
    /// device side rings it when it starts). `events` makes the link's events (and the
    /// ones waited on), e.g. `|| platform.events()`.
    pub fn attach_waiting(
        region: Region,
        events: impl Fn() -> E,
        port: u32,
        guest_base: u64,
    ) -> Result<Self, LinkWaitError> {
        let waiter = events();
        loop {
            match Link::attach(region, events(), port, guest_base) {
                Ok(link) => return Ok(link),
                Err(LinkError::NotReady) => waiter.wait(port).map_err(LinkWaitError::Wait)?,
                Err(e) => return Err(LinkWaitError::Link(e)),
            }
        }
    }

    /// Adopts the device's current epoch and ring indices (dropping whatever was in
    /// flight). False if the device side is not serving.
    fn resync(&self) -> bool {
        let r = &self.region;
        let serving = r.load_le::<u32>(OFF_DEV_STATE, Acquire) == Some(DEV_SERVING);
        let epoch = r.load_le::<u64>(OFF_DEV_EPOCH, Acquire).unwrap_or(0);
        let req_cons = r.load_le::<u32>(REQUESTS.cons, Acquire).unwrap_or(0);
        let resp_prod = r.load_le::<u32>(RESPONSES.prod, Acquire).unwrap_or(0);
        r.store_le::<u32>(REQUESTS.prod, req_cons, Release);
        r.store_le::<u32>(RESPONSES.cons, resp_prod, Release);
        self.req.set(Producer::new(REQUESTS, req_cons));
        self.resp.set(Consumer::new(RESPONSES, resp_prod));
        self.epoch.set(epoch);
        self.failed.set(false);
        self.irq.set(0);
        serving
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The frontend's guest-physical address of the region.
    pub fn guest_base(&self) -> u64 {
        self.guest_base
    }

    /// The events handle.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// The device epoch this link initialised against.
    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// True if the device restarted since, raised NEEDS_RESET, or a call failed for good.
    pub fn needs_reset(&self) -> bool {
        self.failed.get()
            || self.region.load_le::<u64>(OFF_DEV_EPOCH, Acquire) != Some(self.epoch.get())
            || self
                .region
                .load_le::<u32>(OFF_DEV_FLAGS, Acquire)
                .is_some_and(|f| f & DEV_FLAG_NEEDS_RESET != 0)
    }

    fn epoch_changed(&self) -> bool {
        self.region.load_le::<u64>(OFF_DEV_EPOCH, Acquire) != Some(self.epoch.get())
    }

    /// Takes every message waiting in the response ring; returns the response with
    /// `token`, if one came. Events are recorded for [`Link::take_interrupts`].
    fn drain(&self, token: Option<u16>) -> Result<Option<Msg>, CallError> {
        let mut resp = self.resp.get();
        let mut found = None;
        let r = loop {
            match resp.pop(&self.region) {
                Ok(None) => break Ok(found),
                Ok(Some(Ok(m))) => {
                    if m.is_response() {
                        if Some(m.token()) == token && found.is_none() {
                            found = Some(m);
                        }
                        // Stale responses (a call given up on) are dropped.
                    } else {
                        match m.msg_id() {
                            id::EVENT_USED => self
                                .irq
                                .set(self.irq.get() | InterruptStatus::QUEUE_INTERRUPT.bits()),
                            id::EVENT_CONFIG => {
                                let needs = m.head::<EventConfig>().is_ok_and(|e| {
                                    e.status.get() & DeviceStatus::DEVICE_NEEDS_RESET.bits() != 0
                                });
                                if needs {
                                    self.failed.set(true);
                                }
                                self.irq.set(
                                    self.irq.get()
                                        | InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT.bits(),
                                )
                            }
                            _ => {}
                        }
                    }
                }
                Ok(Some(Err(_))) => {}
                Err(_) => break Err(CallError::Protocol),
            }
        };
        self.resp.set(resp);
        r
    }

    /// The interrupt causes seen since the last call (EVENT_USED, EVENT_CONFIG), after
    /// draining the response ring without blocking.
    pub fn take_interrupts(&self) -> InterruptStatus {
        let _ = self.drain(None);
        InterruptStatus::from_bits_truncate(self.irq.replace(0))
    }

    /// Blocks until the device reports used buffers (EVENT_USED) or a configuration
    /// change; [`CallError::Reset`] if the device restarted or needs a reset.
    pub fn wait_used(&self) -> Result<InterruptStatus, CallError> {
        loop {
            if self.epoch_changed() {
                return Err(CallError::Reset);
            }
            self.drain(None)?;
            if self.failed.get() {
                return Err(CallError::Reset);
            }
            let irq = self.irq.replace(0);
            if irq != 0 {
                return Ok(InterruptStatus::from_bits_truncate(irq));
            }
            self.events.wait(self.port).map_err(CallError::Events)?;
        }
    }

    /// Sends `req` (its token is replaced) and waits for the matching response.
    pub fn call(&self, msg_id: u8, payload: &[u8]) -> Result<Msg, CallError> {
        if self.epoch_changed() {
            return Err(CallError::Reset);
        }
        let token = self.token.get().wrapping_add(1);
        self.token.set(token);
        let req = Msg::new(0, msg_id, token, payload);
        let mut prod = self.req.get();
        loop {
            match prod.push(&self.region, &req) {
                Ok(true) => break,
                Ok(false) => {
                    // Full: the device drains it; wait for its doorbell.
                    self.events.send(self.port).map_err(CallError::Events)?;
                    self.drain(None)?;
                    if self.epoch_changed() {
                        return Err(CallError::Reset);
                    }
                    self.events.wait(self.port).map_err(CallError::Events)?;
                }
                Err(_) => return Err(CallError::Protocol),
            }
        }
        self.req.set(prod);
        self.events.send(self.port).map_err(CallError::Events)?;
        loop {
            if let Some(m) = self.drain(Some(token))? {
                if m.msg_id() != msg_id {
                    return Err(CallError::Protocol);
                }
                if let Some(code) = m.error_code() {
                    return Err(CallError::Refused(code));
                }
                return Ok(m);
            }
            if self.epoch_changed() {
                return Err(CallError::Reset);
            }
            self.events.wait(self.port).map_err(CallError::Events)?;
        }
    }

    /// Tells the device that buffers are available on `queue` (EVENT_AVAIL and the
    /// doorbell). If the request ring is full the message is left out: the device serves
    /// every enabled queue on each doorbell anyway.
    pub fn notify(&self, queue: u16) -> Result<(), CallError> {
        let mut prod = self.req.get();
        let ev = crate::msg::EventAvail {
            index: U32::new(queue as u32),
            next_offset_wrap: U32::new(0),
        };
        let _ = prod.push(&self.region, &Msg::with(0, id::EVENT_AVAIL, 0, &ev, &[]));
        self.req.set(prod);
        self.events.send(self.port).map_err(CallError::Events)
    }

    /// DEVICE_INFO.
    pub fn device_info(&self) -> Result<DeviceInfo, CallError> {
        let m = self.call(id::DEVICE_INFO, &[])?;
        let i = m
            .head::<DeviceInfoResp>()
            .map_err(|_| CallError::Protocol)?;
        Ok(DeviceInfo {
            device_id: i.device_id.get(),
            vendor_id: i.vendor_id.get(),
            num_feature_bits: i.num_feature_bits.get(),
            config_size: i.config_size.get(),
            max_vqs: i.max_vqs.get(),
        })
    }

    /// A virtio-drivers transport over this link, for a new driver. Adopts the device's
    /// current epoch first (the driver's initialisation resets the device anyway).
    pub fn transport(&self) -> Result<MsgTransport<'_, E>, CallError> {
        self.resync();
        let info = self.device_info()?;
        let device_type = DeviceType::try_from(info.device_id).map_err(|_| CallError::Protocol)?;
        Ok(MsgTransport {
            link: self,
            device_type,
            config_size: info.config_size,
        })
    }

    /// Marks the frontend detached in the region.
    pub fn detach(self) {
        self.region.store_le::<u32>(OFF_DRV_STATE, 0, Release);
    }
}

/// virtio-drivers' [`Transport`] over a [`Link`].
pub struct MsgTransport<'l, E: Events> {
    link: &'l Link<E>,
    device_type: DeviceType,
    config_size: u32,
}

impl<E: Events> core::fmt::Debug for MsgTransport<'_, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MsgTransport")
            .field("device_type", &self.device_type)
            .field("link", self.link)
            .finish()
    }
}

impl<E: Events> MsgTransport<'_, E> {
    /// The link.
    pub fn link(&self) -> &Link<E> {
        self.link
    }

    /// A call whose failure leaves the transport reporting NEEDS_RESET.
    fn call(&self, msg_id: u8, payload: &[u8]) -> Option<Msg> {
        match self.link.call(msg_id, payload) {
            Ok(m) => Some(m),
            Err(CallError::Refused(_)) => None,
            Err(_) => {
                self.link.failed.set(true);
                None
            }
        }
    }

    fn vqueue(&self, queue: u16) -> Option<Vqueue> {
        let q = QueueIndex {
            index: U32::new(queue as u32),
        };
        let m = self.call(id::GET_VQUEUE, q.as_bytes())?;
        m.head::<Vqueue>().ok().copied()
    }

    fn config(&self, offset: usize, buf: &mut [u8]) -> Result<u32, Error> {
        if buf.len() > MAX_CONFIG_BYTES {
            return Err(Error::InvalidParam);
        }
        let end = offset
            .checked_add(buf.len())
            .ok_or(Error::ConfigSpaceTooSmall)?;
        if end > self.config_size as usize {
            return Err(if self.config_size == 0 {
                Error::ConfigSpaceMissing
            } else {
                Error::ConfigSpaceTooSmall
            });
        }
        let req = ConfigRange {
            offset: U32::new(offset as u32),
            size: U32::new(buf.len() as u32),
        };
        let m = match self.link.call(id::GET_CONFIG, req.as_bytes()) {
            Ok(m) => m,
            Err(CallError::Refused(error::BAD_MESSAGE)) => return Err(Error::ConfigSpaceTooSmall),
            Err(_) => {
                self.link.failed.set(true);
                return Err(Error::IoError);
            }
        };
        let head = m.head::<ConfigData>().map_err(|_| Error::IoError)?;
        let data = m.tail::<ConfigData>();
        if head.size.get() as usize != buf.len() || data.len() < buf.len() {
            return Err(Error::IoError);
        }
        buf.copy_from_slice(&data[..buf.len()]);
        Ok(head.generation.get())
    }
}

impl<E: Events> Transport for MsgTransport<'_, E> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        let f = Features {
            index: U32::new(0),
            num: U32::new(2),
        };
        let Some(m) = self.call(id::GET_DEV_FEATURES, f.as_bytes()) else {
            return 0;
        };
        let t = m.tail::<Features>();
        if t.len() < 8 {
            return 0;
        }
        u64::from_le_bytes(t[..8].try_into().unwrap_or_default())
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let mut p = [0u8; 16];
        p[..8].copy_from_slice(
            Features {
                index: U32::new(0),
                num: U32::new(2),
            }
            .as_bytes(),
        );
        p[8..].copy_from_slice(&driver_features.to_le_bytes());
        let _ = self.call(id::SET_DRV_FEATURES, &p);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.vqueue(queue).map_or(0, |v| v.max_size.get())
    }

    fn notify(&mut self, queue: u16) {
        if self.link.notify(queue).is_err() {
            self.link.failed.set(true);
        }
    }

    fn get_status(&self) -> DeviceStatus {
        if self.link.needs_reset() {
            return DeviceStatus::DEVICE_NEEDS_RESET;
        }
        match self.call(id::GET_DEVICE_STATUS, &[]) {
            Some(m) => m
                .head::<Status>()
                .map(|s| DeviceStatus::from_bits_truncate(s.status.get()))
                .unwrap_or(DeviceStatus::DEVICE_NEEDS_RESET),
            None => DeviceStatus::DEVICE_NEEDS_RESET,
        }
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if status.is_empty() {
            // A reset: start over with the device as it is now.
            self.link.resync();
        }
        let s = Status {
            status: U32::new(status.bits()),
        };
        let _ = self.call(id::SET_DEVICE_STATUS, s.as_bytes());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let v = Vqueue {
            index: U32::new(queue as u32),
            max_size: U32::new(0),
            size: U32::new(size),
            reserved: U32::new(0),
            descriptor_addr: U64::new(descriptors),
            driver_addr: U64::new(driver_area),
            device_addr: U64::new(device_area),
        };
        if self.call(id::SET_VQUEUE, v.as_bytes()).is_none() {
            self.link.failed.set(true);
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        let q = QueueIndex {
            index: U32::new(queue as u32),
        };
        let _ = self.call(id::RESET_VQUEUE, q.as_bytes());
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.vqueue(queue).is_some_and(|v| v.size.get() != 0)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.link.take_interrupts()
    }

    fn read_config_generation(&self) -> u32 {
        self.config(0, &mut []).unwrap_or(0)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let mut v = T::new_zeroed();
        self.config(offset, v.as_mut_bytes())?;
        Ok(v)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        let bytes = value.as_bytes();
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(Error::InvalidParam);
        }
        let head = ConfigData {
            generation: U32::new(0),
            offset: U32::new(offset.try_into().map_err(|_| Error::InvalidParam)?),
            size: U32::new(bytes.len() as u32),
        };
        let m = Msg::with(0, id::SET_CONFIG, 0, &head, bytes);
        match self.link.call(id::SET_CONFIG, m.payload()) {
            Ok(_) => Ok(()),
            Err(CallError::Refused(_)) => Err(Error::Unsupported),
            Err(_) => {
                self.link.failed.set(true);
                Err(Error::IoError)
            }
        }
    }
}

impl<E: Events> Drop for MsgTransport<'_, E> {
    fn drop(&mut self) {
        // Reset the device, as virtio-drivers' MMIO transport does, unless it restarted
        // anyway (then there is nothing to reset and nobody may answer soon).
        if !self.link.epoch_changed() {
            let s = Status {
                status: U32::new(0),
            };
            let _ = self.link.call(id::SET_DEVICE_STATUS, s.as_bytes());
        }
    }
}

const _: () = assert!(TYPE_RESPONSE == 1);
