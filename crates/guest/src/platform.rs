//! What a transport provides: [`Platform`] to the layers above, [`TwoLevelTransport`] to
//! the 2-level event-channel driver.

use crate::events::Events;
use crate::evtchn::{EventChannels, FiredSet, UpcallSleep};
use crate::hypercall::{Errno, Hypercall};
use crate::region::Region;
use staticbus_abi::shared_info::SharedInfo;
use staticbus_manifest::Manifest;

/// A domain as the layers above the transport see it: its event channels, its shared
/// regions and its manifest. Implemented once per environment (bare-metal Xen, the
/// staticbus emulator, Linux userspace, a test fake); [`Channel`](crate::Channel), the
/// protocol endpoints and the programs are written against it only.
///
/// Nothing here requires `shared_info` or hypercalls: a transport over Xen's raw ABI also
/// implements [`TwoLevelTransport`] and hands out the 2-level driver it builds
/// ([`TwoLevelTransport::two_level_events`]) as its [`Platform::Events`].
pub trait Platform {
    /// The domain's event channels: a cheap handle borrowing the platform.
    type Events<'a>: Events
    where
        Self: 'a;

    /// A handle on the domain's event channels. Every handle of one platform shares the
    /// same events (an event consumed through one is gone for all; one not consumed stays
    /// visible to all).
    fn events(&self) -> Self::Events<'_>;

    /// The shared region with this `xen,shm-id`, mapped, or `None` if the transport
    /// cannot provide it. The transport creates it with [`Region::new`] and upholds that
    /// contract.
    fn region(&self, shm_id: &str) -> Option<Region>;

    /// This domain's manifest. Its data is `'static` (the emulator transport may leak a
    /// manifest parsed from JSON to get that).
    fn manifest(&self) -> &Manifest;

    /// Gives up the CPU for a moment (`SCHEDOP_yield` on Xen and the emulator,
    /// `sched_yield(2)` on Linux): for a side that polls shared memory with no event to
    /// wait for.
    fn yield_now(&self) -> Result<(), Errno>;
}

/// What the 2-level event-channel driver ([`EventChannels`]) needs of a transport: raw
/// hypercalls, the `shared_info` page, the domain's [`FiredSet`] and how to sleep.
/// Implemented by the transports that speak Xen's ABI directly (bare-metal Xen, the
/// emulator); a Linux userspace transport has none of this and implements [`Events`]
/// itself.
pub trait TwoLevelTransport {
    /// The hypercall transport.
    type H: Hypercall;

    /// The hypercall transport.
    fn hypercall(&self) -> &Self::H;

    /// This domain's `shared_info` page (vCPU 0), already mapped: on bare metal with
    /// [`ops::map_shared_info`](crate::ops::map_shared_info), on the emulator the page
    /// the emulated hypervisor shares with the domain process.
    fn shared_info(&self) -> SharedInfo<'_>;

    /// The domain's set of ports that fired and are not consumed yet. One per domain:
    /// every [`EventChannels`] handle made by [`TwoLevelTransport::two_level_events`]
    /// shares it, which is what keeps events consumed by one channel's wait visible to
    /// another. A transport embeds a [`FiredSet::new()`] (it is `const`) and returns it.
    fn fired(&self) -> &FiredSet;

    /// How this domain's waits sleep: `None` (the default) for `SCHEDOP_poll`, or the
    /// transport's [`UpcallSleep`] to sleep until the upcall interrupt (a bare-metal
    /// guest that set up its interrupt controller).
    /// [`TwoLevelTransport::two_level_events`] installs it in every driver handle, so
    /// [`Channel::wait`](crate::Channel::wait) and [`EventChannels::wait_any`] use it.
    fn upcall_sleep(&self) -> Option<&dyn UpcallSleep> {
        None
    }

    /// The 2-level event-channel driver of this domain, blocking as
    /// [`TwoLevelTransport::upcall_sleep`] says. A transport's
    /// [`Platform::events`] returns this.
    fn two_level_events(&self) -> EventChannels<'_, Self::H> {
        EventChannels::new(self.hypercall(), self.shared_info(), self.fired())
            .with_upcall_sleep(self.upcall_sleep())
    }
}
