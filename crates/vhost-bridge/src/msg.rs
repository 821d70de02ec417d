//! The bridge as staticbus's virtio-msg device side: [`MsgBackend`] implements
//! `staticbus_virtio_msg::device::Backend`, so a `DeviceTransport` serves the virtio-msg
//! control ring and the bridge hands the virtqueues to the daemon; [`serve`] is one turn of
//! the loop that joins the two (docs/virtio.md, "The vhost-user bridge").
//!
//! The transport validates every frontend value before the backend sees it. The backend
//! then: takes the frontend's guest base from the first queue layout (guest-physical minus
//! region offset) and moves the daemon's memory table there; passes queue GPAs to
//! [`Bridge::set_queue`]; forwards a kick to the daemon only when the queue's available
//! index moved (the transport calls `notify` for every enabled queue on every poll);
//! mirrors status, features and config to the bridge. The daemon's completions come back
//! through [`serve`]: a call eventfd becomes `DeviceTransport::used` (EVENT_USED and the
//! doorbell); a bridge failure (daemon gone, stopped, vring error) becomes
//! `DeviceTransport::needs_reset`.

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use staticbus_guest::{Events, Region};
use staticbus_virtio_msg::device::{Backend, DeviceTransport, Refused, MAX_QUEUES};
use staticbus_virtio_msg::queue::{QueueError, QueueLayout, SplitQueue};

use crate::{status, Bridge, Error, QueueConfig};

/// A [`Bridge`] as a virtio-msg device backend.
#[derive(Debug)]
pub struct MsgBackend {
    bridge: Arc<Bridge>,
    config_size: u32,
    /// The available index last forwarded to the daemon, per queue.
    kicked: [Option<u16>; MAX_QUEUES],
    /// The region offsets of each enabled queue's rings (for [`MsgBackend::indices`]).
    layouts: [Option<QueueLayout>; MAX_QUEUES],
}

/// Where a queue stands, read from the rings in the region (for a stalled device's
/// report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueIndices {
    /// The available ring's `idx` (what the driver made available).
    pub avail: u16,
    /// The used ring's `idx` (what the daemon returned).
    pub used: u16,
    /// The available index last kicked to the daemon.
    pub kicked: Option<u16>,
}

impl MsgBackend {
    /// A backend over `bridge`, whose device has `config_size` bytes of configuration
    /// space (vhost-user does not say; at most 256, the most GET_CONFIG carries).
    pub fn new(bridge: Arc<Bridge>, config_size: u32) -> Result<Self, Error> {
        if config_size > 256 {
            return Err(Error::Driver {
                why: format!("config size {config_size} > 256 (vhost-user's GET_CONFIG limit)"),
            });
        }
        if usize::from(bridge.num_queues()) > MAX_QUEUES {
            return Err(Error::Driver {
                why: format!(
                    "{} queues; a virtio-msg device has at most {MAX_QUEUES}",
                    bridge.num_queues()
                ),
            });
        }
        Ok(Self {
            bridge,
            config_size,
            kicked: [None; MAX_QUEUES],
            layouts: [None; MAX_QUEUES],
        })
    }

    /// The bridge.
    pub fn bridge(&self) -> &Arc<Bridge> {
        &self.bridge
    }

    /// The indices of enabled queue `queue` as they are in `region` (the device's
    /// region), `None` for a queue that is not enabled. A queue whose `avail` is ahead of
    /// `used` with nothing moving has requests the daemon has not returned.
    pub fn indices(&self, region: &Region, queue: u16) -> Option<QueueIndices> {
        let q = usize::from(queue);
        let layout = self.layouts.get(q).copied().flatten()?;
        Some(QueueIndices {
            avail: region.load_le::<u16>(layout.avail + 2, Ordering::Acquire)?,
            used: region.load_le::<u16>(layout.used + 2, Ordering::Acquire)?,
            kicked: self.kicked[q],
        })
    }
}

impl Backend for MsgBackend {
    fn device_type(&self) -> u32 {
        self.bridge.device_type()
    }

    fn device_features(&self) -> u64 {
        self.bridge.device_features()
    }

    fn set_driver_features(&mut self, features: u64) -> Result<(), Refused> {
        self.bridge
            .set_driver_features(features)
            .map_err(|_| Refused)
    }

    fn config_size(&self) -> u32 {
        self.config_size
    }

    fn read_config(&self, offset: u32, buf: &mut [u8]) {
        if self.bridge.read_config(offset, buf).is_err() {
            // The trait cannot fail here; the bridge keeps the failure and serve() turns it
            // into NEEDS_RESET. The driver reads zeros meanwhile, never stale bytes.
            buf.fill(0);
        }
    }

    fn write_config(&mut self, offset: u32, data: &[u8]) -> Result<(), Refused> {
        self.bridge.write_config(offset, data).map_err(|_| Refused)
    }

    fn num_queues(&self) -> u16 {
        self.bridge.num_queues()
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        self.bridge.max_queue_size(queue)
    }

    fn status_changed(&mut self, new: u8) -> Result<(), Refused> {
        let starts = new & status::DRIVER_OK != 0 && self.bridge.status() & status::DRIVER_OK == 0;
        self.bridge
            .set_status(new & !status::DEVICE_NEEDS_RESET)
            .map_err(|_| Refused)?;
        if starts {
            // The daemon's rings start now: kicks forwarded before are gone (the bridge
            // drains them), so the next poll kicks every queue once, whatever the driver
            // made available before DRIVER_OK included.
            self.kicked = [None; MAX_QUEUES];
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.kicked = [None; MAX_QUEUES];
        self.layouts = [None; MAX_QUEUES];
        // A failed re-attach stays in the bridge (failure()); serve() reports it.
        let _ = self.bridge.set_status(0);
    }

    fn queue_set(&mut self, queue: u16, layout: QueueLayout) -> Result<(), Refused> {
        let base = layout
            .desc_gpa
            .checked_sub(layout.desc as u64)
            .ok_or(Refused)?;
        self.bridge.set_guest_base(base).map_err(|_| Refused)?;
        self.kicked[usize::from(queue)] = None;
        self.layouts[usize::from(queue)] = Some(layout);
        self.bridge
            .set_queue(
                queue,
                QueueConfig {
                    size: layout.size,
                    desc: layout.desc_gpa,
                    driver: layout.driver_gpa,
                    device: layout.device_gpa,
                },
            )
            .map_err(|_| Refused)
    }

    fn queue_reset(&mut self, queue: u16) {
        self.kicked[usize::from(queue)] = None;
        self.layouts[usize::from(queue)] = None;
        let _ = self.bridge.reset_queue(queue);
    }

    fn notify(&mut self, queue: u16, vq: &mut SplitQueue<'_>) -> Result<(), QueueError> {
        // The available ring's idx is at byte 2 of the driver area (virtio 1.2 §2.7.6).
        let avail = vq
            .region()
            .load_le::<u16>(vq.layout().avail + 2, Ordering::Acquire);
        let slot = &mut self.kicked[usize::from(queue)];
        if avail.is_some() && avail != *slot {
            *slot = avail;
            // A failure is kept by the bridge and reported by serve().
            let _ = self.bridge.notify(queue);
        }
        Ok(())
    }
}

/// One turn of a device side served by a bridge: serves the control ring and the queues
/// (`DeviceTransport::poll`), waits up to `timeout` for the daemon's completions and
/// forwards them (`DeviceTransport::used`). A bridge failure marks the device
/// `DEVICE_NEEDS_RESET` (EVENT_CONFIG to the driver) and is returned after `timeout`
/// (so a loop that carries on does not spin); the driver's next reset re-attaches the
/// daemon. Returns the work done (requests, queues, completions).
///
/// Without a doorbell fd the frontend's doorbell is only seen at the next turn, so
/// `timeout` bounds the latency it adds; [`serve_with`] also wakes on it.
pub fn serve<E: Events>(
    dev: &mut DeviceTransport<MsgBackend, E>,
    timeout: Duration,
) -> Result<usize, Error> {
    serve_with(dev, None, timeout)
}

/// [`serve`], also woken by `doorbell` becoming readable: the fd of the event channel the
/// frontend rings (`LinuxEvents::fd` in a Linux backend domain), so the loop sleeps until
/// either side has something. The fd is only polled; the transport takes the events.
pub fn serve_with<E: Events>(
    dev: &mut DeviceTransport<MsgBackend, E>,
    doorbell: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> Result<usize, Error> {
    let mut work = dev.poll();
    let bridge = Arc::clone(dev.backend().bridge());
    let wait = if work > 0 { Duration::ZERO } else { timeout };
    let extra: &[BorrowedFd<'_>] = match &doorbell {
        Some(fd) => std::slice::from_ref(fd),
        None => &[],
    };
    match bridge.wait_with(extra, wait) {
        Ok(wake) => {
            for q in 0..MAX_QUEUES as u16 {
                if wake.used & (1 << q) != 0 {
                    // A doorbell that cannot be sent is the frontend's side gone; the
                    // next poll or the caller's loop sees it.
                    let _ = dev.used(q);
                    work += 1;
                }
            }
            Ok(work)
        }
        Err(e) => {
            dev.needs_reset();
            // Until the driver resets, every turn fails the same way: do not spin.
            std::thread::sleep(timeout);
            Err(e)
        }
    }
}
