//! Safe typed wrappers over [`Hypercall`]: each builds Xen's argument structure on the
//! stack, issues the call and decodes the result.
//!
//! These are thin: no caching, no retries, no checks beyond what is needed to uphold the
//! [`Hypercall`] safety contract. The hypervisor validates ports and commands.

use crate::hypercall::{Errno, Hypercall};
use staticbus_abi::domid::DOMID_SELF;
use staticbus_abi::layout::{AddToPhysmap, EvtchnPort, EvtchnStatus, SchedPoll, SchedShutdown};
use staticbus_abi::{console, evtchn, memory, sched};

/// The state of an event-channel port, from `EVTCHNOP_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// `EVTCHNSTAT_closed`: the port is free (someone closed it, or the peer domain was
    /// destroyed and the port was then closed).
    Closed,
    /// `EVTCHNSTAT_unbound`: allocated, waiting for `remote_dom` to bind. A static port
    /// falls back to this when its peer closes it or is destroyed (spec §1.5).
    Unbound {
        /// The domain allowed to bind.
        remote_dom: u16,
    },
    /// `EVTCHNSTAT_interdomain`: connected. Static ports are in this state at boot.
    Interdomain {
        /// Peer domain id.
        remote_dom: u16,
        /// Peer port.
        remote_port: u32,
    },
    /// Any other status (`pirq`, `virq`, `ipi`, …), raw.
    Other(u32),
}

/// The result of `EVTCHNOP_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// The port's state.
    pub state: PortState,
    /// The vCPU the port notifies.
    pub vcpu: u32,
}

fn port_op<H: Hypercall + ?Sized>(h: &H, cmd: u32, port: u32) -> Result<(), Errno> {
    let mut arg = EvtchnPort { port };
    // SAFETY: `arg` is a live, aligned `EvtchnPort`, the argument structure of
    // send/close/unmask, valid for reads and writes for the whole call.
    let ret = unsafe { h.event_channel_op(cmd, (&raw mut arg).cast::<u8>()) };
    Errno::check(ret).map(drop)
}

/// `EVTCHNOP_send`: notify the peer of `port` (a local port).
///
/// Xen returns `-EINVAL` for an invalid or closed port, and 0 while silently dropping the
/// event if the port is only UNBOUND (spec §5.3).
pub fn evtchn_send<H: Hypercall + ?Sized>(h: &H, port: u32) -> Result<(), Errno> {
    port_op(h, evtchn::OP_SEND, port)
}

/// `EVTCHNOP_status` on one of this domain's ports (`dom = DOMID_SELF`).
pub fn evtchn_status<H: Hypercall + ?Sized>(h: &H, port: u32) -> Result<PortStatus, Errno> {
    let mut arg = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..EvtchnStatus::default()
    };
    // SAFETY: `arg` is a live, aligned `EvtchnStatus`, the argument structure of
    // EVTCHNOP_status, valid for reads and writes for the whole call.
    let ret = unsafe { h.event_channel_op(evtchn::OP_STATUS, (&raw mut arg).cast::<u8>()) };
    Errno::check(ret)?;
    let state = match arg.status {
        evtchn::STAT_CLOSED => PortState::Closed,
        evtchn::STAT_UNBOUND => PortState::Unbound {
            remote_dom: arg.remote_dom,
        },
        evtchn::STAT_INTERDOMAIN => PortState::Interdomain {
            remote_dom: arg.remote_dom,
            remote_port: arg.remote_port,
        },
        other => PortState::Other(other),
    };
    Ok(PortStatus {
        state,
        vcpu: arg.vcpu,
    })
}

/// `EVTCHNOP_unmask`: clear the port's mask bit; Xen re-raises the event (selector bit,
/// `evtchn_upcall_pending`, upcall interrupt) if the port is still pending.
pub fn evtchn_unmask<H: Hypercall + ?Sized>(h: &H, port: u32) -> Result<(), Errno> {
    port_op(h, evtchn::OP_UNMASK, port)
}

/// `EVTCHNOP_close`.
///
/// **Never call this on a static port.** Xen does not protect static ports: closing one
/// frees it for good, the peer's end falls back to UNBOUND and nothing re-establishes
/// the pair until both domains are rebuilt (spec §1.5). It exists for ports a guest
/// allocated at run time.
pub fn evtchn_close<H: Hypercall + ?Sized>(h: &H, port: u32) -> Result<(), Errno> {
    port_op(h, evtchn::OP_CLOSE, port)
}

/// `SCHEDOP_yield`: give up the CPU; returns when the vCPU is scheduled again.
pub fn sched_yield<H: Hypercall + ?Sized>(h: &H) -> Result<(), Errno> {
    // SAFETY: SCHEDOP_yield takes no argument; a null `arg` is allowed by the contract.
    let ret = unsafe { h.sched_op(sched::OP_YIELD, core::ptr::null_mut()) };
    Errno::check(ret).map(drop)
}

/// `SCHEDOP_block`: sleep until an event is delivered to this vCPU.
///
/// Xen wakes the vCPU when `evtchn_upcall_pending` goes 0→1 (the upcall interrupt), so a
/// guest that never clears `evtchn_upcall_pending` (see
/// [`EventChannels::drain`](crate::EventChannels::drain)) is not woken again. On Arm, Xen's
/// `do_block` also **unmasks IRQs in the guest** (it clears PSTATE.I in the saved
/// registers), so a bare-metal guest calling this must have an IRQ vector ready for the
/// upcall PPI. May return spuriously.
pub fn sched_block<H: Hypercall + ?Sized>(h: &H) -> Result<(), Errno> {
    // SAFETY: SCHEDOP_block takes no argument; a null `arg` is allowed by the contract.
    let ret = unsafe { h.sched_op(sched::OP_BLOCK, core::ptr::null_mut()) };
    Errno::check(ret).map(drop)
}

/// `SCHEDOP_poll`: sleep until one of `ports` is pending (returns at once if one already
/// is), or until `timeout` — an **absolute** Xen system time in ns, 0 for none — passes.
///
/// Masked ports wake a poller too (Xen checks pollers whenever a pending bit goes 0→1).
/// May return spuriously (on Arm: also when IRQs are unmasked in the guest and an
/// interrupt is pending for it). Xen rejects more than 128 ports and invalid ports with
/// `-EINVAL`; more than `u32::MAX` ports is rejected here with `EINVAL`.
pub fn sched_poll<H: Hypercall + ?Sized>(h: &H, ports: &[u32], timeout: u64) -> Result<(), Errno> {
    let nr_ports = u32::try_from(ports.len()).map_err(|_| Errno::EINVAL)?;
    let mut arg = SchedPoll {
        ports: ports.as_ptr().expose_provenance() as u64,
        nr_ports,
        _pad: 0,
        timeout,
    };
    // SAFETY: `arg` is a live, aligned `SchedPoll` valid for reads and writes for the
    // call; its `ports` field is the address of `ports`, `nr_ports` readable `u32`s that
    // stay borrowed (and its provenance exposed) for the whole call.
    let ret = unsafe { h.sched_op(sched::OP_POLL, (&raw mut arg).cast::<u8>()) };
    Errno::check(ret).map(drop)
}

/// `SCHEDOP_shutdown(reason)` (`staticbus_abi::sched::SHUTDOWN_*`).
///
/// On real Xen a successful shutdown does not return to the caller; a transport may
/// return `Ok(())` (the emulator may, before it stops the domain), so the caller should
/// not rely on either and should park (block or spin) afterwards.
pub fn shutdown<H: Hypercall + ?Sized>(h: &H, reason: u32) -> Result<(), Errno> {
    let mut arg = SchedShutdown { reason };
    // SAFETY: `arg` is a live, aligned `SchedShutdown`, the argument structure of
    // SCHEDOP_shutdown, valid for reads and writes for the whole call.
    let ret = unsafe { h.sched_op(sched::OP_SHUTDOWN, (&raw mut arg).cast::<u8>()) };
    Errno::check(ret).map(drop)
}

/// `CONSOLEIO_write`: write `bytes` to Xen's console.
///
/// Xen keeps only printable characters and tabs of a domU, buffers until a newline and
/// prints at guest DEBUG level: a release build of Xen drops it unless its command line
/// has `guest_loglvl=all` (spec §5.2).
pub fn console_write<H: Hypercall + ?Sized>(h: &H, bytes: &[u8]) -> Result<(), Errno> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: `bytes` is readable for `bytes.len()` bytes for the whole call.
    let ret = unsafe { h.console_io(console::WRITE, bytes.len(), bytes.as_ptr()) };
    Errno::check(ret).map(drop)
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info, idx 0)`: map this domain's
/// `shared_info` page at guest frame `gpfn` (spec §5.4). A second mapping without
/// unmapping first fails with `EBUSY`.
pub fn map_shared_info<H: Hypercall + ?Sized>(h: &H, gpfn: u64) -> Result<(), Errno> {
    let mut arg = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: memory::SPACE_SHARED_INFO,
        idx: 0,
        gpfn,
    };
    // SAFETY: `arg` is a live, aligned `AddToPhysmap`, the argument structure of
    // XENMEM_add_to_physmap, valid for reads and writes for the whole call.
    let ret = unsafe { h.memory_op(memory::ADD_TO_PHYSMAP, (&raw mut arg).cast::<u8>()) };
    Errno::check(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Call, FakeXen};
    use std::vec;

    #[test]
    fn wrappers_marshal_their_arguments() {
        let xen = FakeXen::new(&[(10, 11)]);
        let d = xen.dom(0);
        sched_yield(&d).unwrap();
        shutdown(&d, sched::SHUTDOWN_POWEROFF).unwrap();
        console_write(&d, b"").unwrap();
        console_write(&d, b"hi\n").unwrap();
        map_shared_info(&d, 0x39000).unwrap();
        evtchn_close(&d, 10).unwrap();
        assert_eq!(
            xen.calls(0),
            vec![
                Call::Yield,
                Call::Shutdown(sched::SHUTDOWN_POWEROFF),
                Call::Console(b"hi\n".to_vec()),
                Call::MapSharedInfo(0x39000),
                Call::Close(10),
            ]
        );
    }

    #[test]
    fn poll_passes_the_port_array_by_address() {
        let xen = FakeXen::new(&[(10, 11), (20, 21)]);
        let d = xen.dom(1);
        // Port 11 is pending from bind time: poll returns at once.
        sched_poll(&d, &[21, 11], 1234).unwrap();
        assert_eq!(
            xen.calls(1),
            vec![Call::Poll {
                ports: vec![21, 11],
                timeout: 1234
            }]
        );
        assert_eq!(sched_poll(&d, &[11, 5], 0), Err(Errno::EINVAL));
    }

    #[test]
    fn closing_a_static_port_breaks_the_pair() {
        let xen = FakeXen::new(&[(10, 11)]);
        let (a, b) = (xen.dom(0), xen.dom(1));
        evtchn_close(&a, 10).unwrap();
        assert_eq!(evtchn_status(&a, 10).unwrap().state, PortState::Closed);
        assert_eq!(
            evtchn_status(&b, 11).unwrap().state,
            PortState::Unbound { remote_dom: 1 }
        );
        assert_eq!(evtchn_send(&a, 10), Err(Errno::EINVAL));
        // Sending on an UNBOUND port succeeds and the event is dropped.
        evtchn_send(&b, 11).unwrap();
        assert!(!xen.shared_info(0).is_pending(10));
    }
}
