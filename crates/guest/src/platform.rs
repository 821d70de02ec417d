//! What a transport provides to the shared driver.

use crate::evtchn::{EventChannels, FiredSet, UpcallSleep};
use crate::hypercall::Hypercall;
use crate::region::Region;
use staticbus_abi::shared_info::SharedInfo;
use staticbus_manifest::Manifest;

/// A transport: how one domain reaches its hypervisor, its `shared_info` page, its shared
/// regions and its manifest. Implemented once per environment (bare-metal Xen, Linux on
/// Xen, the staticbus emulator); [`Channel`](crate::Channel) and [`EventChannels`] are
/// written against it only.
pub trait Platform {
    /// The hypercall transport.
    type H: Hypercall;

    /// The hypercall transport.
    fn hypercall(&self) -> &Self::H;

    /// This domain's `shared_info` page (vCPU 0), already mapped: on bare metal with
    /// [`ops::map_shared_info`](crate::ops::map_shared_info), on the emulator the page
    /// the emulated hypervisor shares with the domain process.
    fn shared_info(&self) -> SharedInfo<'_>;

    /// The domain's set of ports that fired and are not consumed yet. One per domain:
    /// every [`EventChannels`] handle made by [`Platform::events`] shares it, which is
    /// what keeps events consumed by one channel's wait visible to another. A transport
    /// embeds a [`FiredSet::new()`] (it is `const`) and returns it.
    fn fired(&self) -> &FiredSet;

    /// The shared region with this `xen,shm-id`, mapped, or `None` if the transport
    /// cannot provide it. The transport creates it with [`Region::new`] and upholds that
    /// contract.
    fn region(&self, shm_id: &str) -> Option<Region>;

    /// This domain's manifest. Its data is `'static` (the emulator transport may leak a
    /// manifest parsed from JSON to get that).
    fn manifest(&self) -> &Manifest;

    /// How this domain's waits sleep: `None` (the default) for `SCHEDOP_poll`, or the
    /// transport's [`UpcallSleep`] to sleep until the upcall interrupt (a bare-metal
    /// guest that set up its interrupt controller). [`Platform::events`] installs it in
    /// every driver handle, so [`Channel::wait`](crate::Channel::wait) and
    /// [`EventChannels::wait_any`] use it.
    fn upcall_sleep(&self) -> Option<&dyn UpcallSleep> {
        None
    }

    /// The event-channel driver of this domain, blocking as
    /// [`Platform::upcall_sleep`] says.
    fn events(&self) -> EventChannels<'_, Self::H> {
        EventChannels::new(self.hypercall(), self.shared_info(), self.fired())
            .with_upcall_sleep(self.upcall_sleep())
    }
}
