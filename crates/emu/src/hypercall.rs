//! Decoding of marshalled hypercalls: the argument struct is read from the first
//! `size_of::<T>()` bytes of `arg` (too short: `-EFAULT`, as a failed `copy_from_guest`),
//! and results are written back into `arg` only on success, as Xen's `copy_to_guest`.

use crate::console;
use crate::errno::{ret0, Errno};
use crate::state::{Effects, State};
use crate::EvtchnStat;
use staticbus_abi::layout::{
    AddToPhysmap, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnPort, EvtchnStatus, SchedPoll,
    SchedShutdown,
};
use staticbus_abi::{console as con, evtchn as ev, hypercall as hc, memory as mem, sched};
use zerocopy::{FromBytes, IntoBytes};

/// `SCHEDOP_remote_shutdown`.
pub(crate) const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code`.
pub(crate) const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// `XENVER_version`.
pub(crate) const XENVER_VERSION: u32 = 0;
/// `MEMOP_EXTENT_SHIFT`.
const MEMOP_EXTENT_SHIFT: u32 = 6;
/// `MEMOP_CMD_MASK`.
const MEMOP_CMD_MASK: u32 = (1 << MEMOP_EXTENT_SHIFT) - 1;
/// `XENMAPSPACE_gmfn_range`.
const SPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`.
const SPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`.
const SPACE_DEV_MMIO: u32 = 5;
/// The fairly arbitrary limit of `do_poll`.
const POLL_MAX_PORTS: u32 = 128;

fn read<T: FromBytes>(arg: &[u8]) -> Result<T, Errno> {
    T::read_from_prefix(arg)
        .map(|(t, _)| t)
        .map_err(|_| Errno::EFAULT)
}

fn write<T: IntoBytes + zerocopy::Immutable>(t: &T, arg: &mut [u8]) -> i64 {
    match t.write_to_prefix(arg) {
        Ok(()) => 0,
        Err(_) => Errno::EFAULT.ret(),
    }
}

/// One hypercall from the running domain `cur`.
pub(crate) fn dispatch(
    st: &mut State,
    cur: usize,
    op: u64,
    cmd: u32,
    arg: &mut [u8],
    fx: &mut Effects,
) -> i64 {
    match op {
        hc::EVENT_CHANNEL_OP => event_channel_op(st, cur, cmd, arg, fx),
        hc::SCHED_OP => sched_op(st, cur, cmd, arg),
        hc::MEMORY_OP => memory_op(st, cur, cmd, arg),
        hc::CONSOLE_IO => console_io(st, cur, cmd, arg, fx),
        hc::XEN_VERSION => xen_version(st, cmd),
        _ => Errno::ENOSYS.ret(),
    }
}

fn event_channel_op(st: &mut State, cur: usize, cmd: u32, arg: &mut [u8], fx: &mut Effects) -> i64 {
    match cmd {
        ev::OP_ALLOC_UNBOUND => {
            let mut a: EvtchnAllocUnbound = match read(arg) {
                Ok(a) => a,
                Err(e) => return e.ret(),
            };
            match st.alloc_unbound(Some(cur), a.dom, a.remote_dom, 0) {
                Ok(port) => {
                    a.port = port;
                    write(&a, arg)
                }
                Err(e) => e.ret(),
            }
        }
        ev::OP_BIND_INTERDOMAIN => {
            let mut b: EvtchnBindInterdomain = match read(arg) {
                Ok(b) => b,
                Err(e) => return e.ret(),
            };
            match st.bind_interdomain(Some(cur), cur, 0, b.remote_dom, b.remote_port, fx) {
                Ok(port) => {
                    b.local_port = port;
                    write(&b, arg)
                }
                Err(e) => e.ret(),
            }
        }
        ev::OP_CLOSE => match read::<EvtchnPort>(arg) {
            Ok(p) => ret0(st.close(cur, p.port, fx)),
            Err(e) => e.ret(),
        },
        ev::OP_SEND => match read::<EvtchnPort>(arg) {
            Ok(p) => ret0(st.send(cur, p.port, fx)),
            Err(e) => e.ret(),
        },
        ev::OP_STATUS => {
            let mut s: EvtchnStatus = match read(arg) {
                Ok(s) => s,
                Err(e) => return e.ret(),
            };
            match st.status(cur, s.dom, s.port) {
                Ok(stat) => {
                    fill_status(&mut s, stat);
                    write(&s, arg)
                }
                Err(e) => e.ret(),
            }
        }
        ev::OP_UNMASK => match read::<EvtchnPort>(arg) {
            Ok(p) => ret0(st.unmask(cur, p.port, fx)),
            Err(e) => e.ret(),
        },
        // bind_virq 1, bind_pirq 2, bind_ipi 7, bind_vcpu 8, reset 10, init_control 11,
        // expand_array 12, set_priority 13, reset_cont 14: not emulated. Unknown: ENOSYS.
        _ => Errno::ENOSYS.ret(),
    }
}

/// Fills the output fields of `struct evtchn_status` as `evtchn_status` does; the union
/// fields a state does not set keep what the guest passed.
pub(crate) fn fill_status(s: &mut EvtchnStatus, stat: EvtchnStat) {
    match stat {
        EvtchnStat::Closed => s.status = ev::STAT_CLOSED,
        EvtchnStat::Unbound { remote_dom } => {
            s.status = ev::STAT_UNBOUND;
            s.remote_dom = remote_dom;
        }
        EvtchnStat::Interdomain {
            remote_dom,
            remote_port,
        } => {
            s.status = ev::STAT_INTERDOMAIN;
            s.remote_dom = remote_dom;
            s.remote_port = remote_port;
        }
    }
    s.vcpu = 0;
}

fn sched_op(st: &mut State, cur: usize, cmd: u32, arg: &mut [u8]) -> i64 {
    match cmd {
        // The transport blocks guest-side; a return without an event is legal.
        sched::OP_YIELD | sched::OP_BLOCK => 0,
        sched::OP_SHUTDOWN => match read::<SchedShutdown>(arg) {
            Ok(s) => {
                st.shutdown(cur, s.reason as u8);
                0
            }
            Err(e) => e.ret(),
        },
        SCHEDOP_SHUTDOWN_CODE => match read::<SchedShutdown>(arg) {
            Ok(s) => {
                st.doms[cur].shutdown_code.get_or_insert(s.reason as u8);
                0
            }
            Err(e) => e.ret(),
        },
        sched::OP_POLL => {
            let p: SchedPoll = match read(arg) {
                Ok(p) => p,
                Err(e) => return e.ret(),
            };
            if p.nr_ports > POLL_MAX_PORTS {
                return Errno::EINVAL.ret();
            }
            // If the transport appended the guest's port array, check it as do_poll does:
            // the first invalid or unusable port fails, a pending one returns at once.
            let ports = &arg[size_of::<SchedPoll>()..];
            let n = p.nr_ports as usize;
            if ports.len() >= 4 * n {
                for c in ports[..4 * n].chunks_exact(4) {
                    let port = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
                    match st.poll_port(cur, port) {
                        Err(e) => return e.ret(),
                        Ok(true) => return 0,
                        Ok(false) => {}
                    }
                }
            }
            0
        }
        SCHEDOP_REMOTE_SHUTDOWN => {
            // struct sched_remote_shutdown { domid_t domain_id; unsigned int reason; }
            if arg.len() < 8 {
                return Errno::EFAULT.ret();
            }
            let domid = u16::from_ne_bytes([arg[0], arg[1]]);
            let reason = u32::from_ne_bytes([arg[4], arg[5], arg[6], arg[7]]);
            let Some(d) = st.by_id(domid) else {
                return Errno::ESRCH.ret();
            };
            // xsm_schedop_shutdown(XSM_DM_PRIV, current, d)
            if !st.doms[cur].control {
                return Errno::EPERM.ret();
            }
            st.shutdown(d, reason as u8);
            0
        }
        // watchdog 6, pin_override 7: not emulated. Unknown: ENOSYS.
        _ => Errno::ENOSYS.ret(),
    }
}

fn memory_op(st: &mut State, cur: usize, cmd: u32, arg: &mut [u8]) -> i64 {
    let op = cmd & MEMOP_CMD_MASK;
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    match op {
        mem::ADD_TO_PHYSMAP => match add_to_physmap(st, cur, start, arg) {
            Ok(()) => 0,
            Err(e) => e.ret(),
        },
        // Reservation, translation and the other memory ops: not emulated (ENOSYS, like
        // an unknown op on Arm).
        _ => Errno::ENOSYS.ret(),
    }
}

/// `XENMEM_add_to_physmap` on Arm (`do_memory_op`, `xatp_permission_check`,
/// `xenmem_add_to_physmap`, `xenmem_add_to_physmap_one`).
fn add_to_physmap(st: &mut State, cur: usize, start: u32, arg: &[u8]) -> Result<(), Errno> {
    if start > u32::from(u16::MAX) {
        return Err(Errno::EDOM);
    }
    let x: AddToPhysmap = read(arg)?;
    if x.space == SPACE_GMFN_FOREIGN {
        return Err(Errno::ENOSYS);
    }
    let d = st.by_any_id(x.domid, Some(cur)).ok_or(Errno::ESRCH)?;
    if x.space == SPACE_DEV_MMIO && (!st.doms[d].control || d != cur) {
        return Err(Errno::EACCES);
    }
    st.xsm_target(Some(cur), d)?;
    if x.gpfn == u64::MAX {
        // INVALID_GFN
        return Err(Errno::EINVAL);
    }
    match x.space {
        mem::SPACE_SHARED_INFO => {
            if x.idx != 0 {
                return Err(Errno::EINVAL);
            }
            let dom = &mut st.doms[d];
            if dom.shinfo_mapped {
                // "Mandate the caller to first unmap the page before mapping it again."
                return Err(Errno::EBUSY);
            }
            dom.shinfo_mapped = true;
            Ok(())
        }
        SPACE_GMFN_RANGE => {
            let size = u32::from(x.size);
            if size < start {
                return Err(Errno::EILSEQ);
            }
            if x.gpfn.checked_add(u64::from(x.size)).is_none()
                || x.idx.checked_add(u64::from(x.size)).is_none()
            {
                return Err(Errno::EOVERFLOW);
            }
            if size == start {
                Ok(())
            } else {
                // Each frame goes through XENMAPSPACE_gmfn, which Arm does not have.
                Err(Errno::ENOSYS)
            }
        }
        // grant_table 1: not emulated (no grant tables); gmfn 2, dev_mmio 5 and unknown
        // spaces: ENOSYS as on Arm.
        _ => Err(Errno::ENOSYS),
    }
}

fn console_io(st: &mut State, cur: usize, cmd: u32, arg: &mut [u8], fx: &mut Effects) -> i64 {
    match cmd {
        con::WRITE => {
            let dom = &mut st.doms[cur];
            if arg.is_empty() {
                return 0;
            }
            if dom.control {
                // The hardware domain writes straight to the console.
                fx.console.push((dom.id, dom.name.clone(), arg.to_vec()));
            } else {
                let (id, name) = (dom.id, dom.name.clone());
                console::guest_write(&mut dom.pbuf, arg, |line| {
                    fx.console.push((id, name.clone(), line))
                });
            }
            // guest_console_write returns 0, not the count.
            0
        }
        con::READ => {
            if arg.len() > i32::MAX as usize {
                return Errno::E2BIG.ret();
            }
            // No serial input is emulated: nothing to read.
            0
        }
        _ => Errno::ENOSYS.ret(),
    }
}

fn xen_version(st: &State, cmd: u32) -> i64 {
    match cmd {
        XENVER_VERSION => st.xen.xenver(),
        // The other XENVER_* sub-ops are not emulated.
        _ => Errno::ENOSYS.ret(),
    }
}
