//! The events seam: what channels and protocols need of event channels, whatever
//! delivers them (docs/adr/0004-events-seam.md).

use crate::hypercall::Errno;
use crate::ops::PortStatus;

/// A domain's event channels as the layers above use them: doorbells on local ports.
///
/// [`Channel`](crate::Channel), the protocol endpoints of `staticbus-proto` and the
/// example programs are written against this trait only. The 2-level driver on
/// `shared_info` ([`EventChannels`](crate::EventChannels), over raw hypercalls) implements
/// it; so can a transport that has neither `shared_info` nor hypercalls, such as Linux
/// userspace over `/dev/xen/evtchn` (bind with `IOCTL_EVTCHN_BIND_STATIC`, `read()`
/// returns fired ports, `write()` unmasks them), a virtio transport, or a test fake.
///
/// # Contract
///
/// * Ports are this domain's local ports, as the manifest names them; the domain never
///   binds or closes them (static event channels are bound at boot).
/// * An event is a doorbell, not a message: several sends before the receiver looks may
///   arrive as one ("coalesced"), and a port may fire without a matching state change
///   (the bind-time pending bit, a peer that restarted or misbehaves). Callers keep their
///   state in shared memory and re-check it after every wake-up.
/// * An event is **consumed** exactly once: by [`wait_any`](Events::wait_any),
///   [`try_take_any`](Events::try_take_any), [`take_fired`](Events::take_fired) or
///   [`clear_initial`](Events::clear_initial). Events of ports a call was not asked about
///   stay available to later calls (a wait on one channel never swallows another
///   channel's event).
/// * All methods take `&self`; an implementation shares its state between handles of one
///   domain (every [`Platform::events`](crate::Platform::events) handle sees the same
///   events).
pub trait Events {
    /// Raises the event at the peer's end of local `port` (`EVTCHNOP_send`). An
    /// implementation returns `EINVAL` for a port that is not bound.
    fn send(&self, port: u32) -> Result<(), Errno>;

    /// Blocks until one of `ports` has fired, consumes that event and returns the port.
    ///
    /// `EINVAL` for an empty list; implementations accept at least
    /// [`MAX_POLL_PORTS`](crate::MAX_POLL_PORTS) ports. Returns only for an event that
    /// fired (an implementation loops over its own spurious wake-ups), but that event may
    /// carry no news: re-check the shared state.
    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno>;

    /// [`wait_any`](Events::wait_any) on one port.
    fn wait(&self, port: u32) -> Result<(), Errno> {
        self.wait_any(&[port]).map(drop)
    }

    /// Consumes an event on the first of `ports` that has one, without blocking.
    fn try_take_any(&self, ports: &[u32]) -> Option<u32>;

    /// Consumes and returns one fired port, any port, without blocking (`None` if none
    /// fired). Called in a loop, it drains everything pending.
    fn take_fired(&self) -> Option<u32>;

    /// True if an event waits on `port` (not consumed by this call).
    fn is_pending(&self, port: u32) -> bool;

    /// Consumes the bind-time event of a static port; returns whether there was one.
    ///
    /// Xen marks the end it binds second pending at boot, though nobody sent anything
    /// (the manifest flags it, `initially_pending`). Called once at start, before the
    /// protocol's handshake, so an event counter does not start one ahead. A real event
    /// sent before this call may be consumed too, which is why protocols handshake
    /// through shared memory.
    fn clear_initial(&self, port: u32) -> bool;

    /// The state of local `port` (`EVTCHNOP_status` with `DOMID_SELF`): a static port is
    /// [`Interdomain`](crate::ops::PortState::Interdomain) with the peer the manifest
    /// names. An implementation that cannot ask returns `ENOSYS`.
    fn status(&self, port: u32) -> Result<PortStatus, Errno>;
}

impl<E: Events + ?Sized> Events for &E {
    fn send(&self, port: u32) -> Result<(), Errno> {
        (**self).send(port)
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        (**self).wait_any(ports)
    }

    fn wait(&self, port: u32) -> Result<(), Errno> {
        (**self).wait(port)
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        (**self).try_take_any(ports)
    }

    fn take_fired(&self) -> Option<u32> {
        (**self).take_fired()
    }

    fn is_pending(&self, port: u32) -> bool {
        (**self).is_pending(port)
    }

    fn clear_initial(&self, port: u32) -> bool {
        (**self).clear_initial(port)
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        (**self).status(port)
    }
}
