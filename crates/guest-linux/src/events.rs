//! [`LinuxEvents`]: the [`Events`] seam over `/dev/xen/evtchn` (docs/adr/0004).
//!
//! The kernel's evtchn device delivers an event of a bound port by putting the port in the
//! file's ring and masking it; `read()` returns the ring's ports, `write()` of the same
//! ports re-enables them. This implementation keeps a per-domain fired set, as the 2-level
//! driver does: every port read is written back at once (so the next event is delivered;
//! the set coalesces) and recorded, and each [`Events`] operation consumes from the set.
//!
//! Ports are bound on first use (any operation on the port, or [`LinuxEvents::bind`]):
//! several processes of one domain can then each use their own channels, since a port
//! bound by one process delivers its events to that process only. Binding a port whose end
//! Xen left pending (`initially_pending` in the manifest) waits briefly for its bind-time
//! event, so that [`Events::clear_initial`] finds it.
//!
//! One thread at a time sleeps in `poll()` on the fd (the *reader*); other waiters sleep on
//! a condition variable until the reader has drained the ring. Non-blocking operations
//! drain the ring themselves when no thread is reading, and only look at the set while one
//! is (it drains as soon as the fd turns readable), so nobody can take an event from under
//! a reader that is about to sleep.

use crate::device::Device;
use staticbus_guest::ops::PortStatus;
use staticbus_guest::{Errno, Events};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `ETIMEDOUT` (Linux and Xen): a wait ran past [`LinuxEvents::set_timeout`].
pub const ETIMEDOUT: Errno = Errno(110);
/// `EIO`: the evtchn device failed in a way that has no better errno.
pub const EIO: Errno = Errno(5);

/// Ports read from the device in one `read()`.
const READ_BATCH: usize = 64;

/// A domain's static event channels as a Linux process sees them through
/// `/dev/xen/evtchn`: the ports of the manifest, each bound with
/// `IOCTL_EVTCHN_BIND_STATIC` when first used (or by [`LinuxEvents::bind`]).
///
/// Implements [`Events`] as docs/adr/0004 describes. [`LinuxEvents::fd`] exposes the
/// device so that a program can put it in its own `poll`/`epoll` loop: when it turns
/// readable, call [`Events::take_fired`] (in a loop) or [`Events::try_take_any`].
pub struct LinuxEvents {
    dev: Box<dyn Device>,
    /// The manifest's ports: whether Xen left this end pending at bind time.
    ports: BTreeMap<u32, bool>,
    /// The ports bound so far (also serialises binding).
    bound: Mutex<BTreeSet<u32>>,
    /// How long a bind waits for the bind-time event of a pending end.
    settle: Duration,
    state: Mutex<State>,
    drained: Condvar,
    timeout: Option<Duration>,
}

#[derive(Default)]
struct State {
    fired: BTreeSet<u32>,
    /// A thread sleeps in `poll()` on the fd and will drain the ring when it wakes.
    reading: bool,
    /// Events that fired on ports this domain did not bind (the kernel should never
    /// deliver them: counted, not kept).
    strays: u64,
    /// Pending ends whose bind-time event did not arrive within the settle time.
    unsettled: Vec<u32>,
}

impl std::fmt::Debug for LinuxEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxEvents")
            .field("ports", &self.ports)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn errno(e: &std::io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(EIO.0))
}

impl LinuxEvents {
    /// Events over `dev` with no ports yet.
    pub(crate) fn new(dev: Box<dyn Device>) -> Self {
        LinuxEvents {
            dev,
            ports: BTreeMap::new(),
            bound: Mutex::new(BTreeSet::new()),
            settle: Duration::from_secs(1),
            state: Mutex::new(State::default()),
            drained: Condvar::new(),
            timeout: None,
        }
    }

    /// Makes `port` one of this domain's ports (from the manifest); `pending`: Xen left
    /// this end pending at bind time.
    pub(crate) fn allow(&mut self, port: u32, pending: bool) {
        self.ports.insert(port, pending);
    }

    /// How long binding a pending end waits for its bind-time event (default 1 s).
    pub(crate) fn set_settle(&mut self, settle: Duration) {
        self.settle = settle;
    }

    /// Binds `port` (`IOCTL_EVTCHN_BIND_STATIC`) unless it is bound already; `EINVAL` for a
    /// port the manifest does not list, the kernel's errno if the bind fails. Every
    /// operation binds the ports it is given; call this for a port you want in your own
    /// `poll` loop before its first use.
    pub fn bind(&self, port: u32) -> Result<(), Errno> {
        let Some(&pending) = self.ports.get(&port) else {
            return Err(Errno::EINVAL);
        };
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if bound.contains(&port) {
            return Ok(());
        }
        self.dev.bind_static(port).map_err(|e| errno(&e))?;
        bound.insert(port);
        if pending {
            let missing = self.settle(&[port], self.settle)?;
            self.lock().unsettled.extend(missing);
        }
        Ok(())
    }

    /// Binds every port of the manifest; the first that fails and why.
    pub fn bind_all(&self) -> Result<(), (u32, Errno)> {
        for &p in self.ports.keys() {
            self.bind(p).map_err(|e| (p, e))?;
        }
        Ok(())
    }

    /// Waits up to `within` until every port of `ports` has fired (the bind-time events
    /// of the ends Xen left pending, which the kernel delivers once the bind unmasks
    /// them), so that [`Events::clear_initial`] finds them. Returns the ports that did not
    /// fire in time.
    pub(crate) fn settle(&self, ports: &[u32], within: Duration) -> Result<Vec<u32>, Errno> {
        let deadline = Instant::now() + within;
        loop {
            let mut st = self.lock();
            self.drain(&mut st)?;
            let missing: Vec<u32> = ports
                .iter()
                .copied()
                .filter(|p| !st.fired.contains(p))
                .collect();
            drop(st);
            let now = Instant::now();
            if missing.is_empty() || now >= deadline {
                return Ok(missing);
            }
            self.dev
                .wait_readable(Some(deadline - now))
                .map_err(|e| errno(&e))?;
        }
    }

    /// The manifest's ports, in order.
    pub fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports.keys().copied()
    }

    /// The ports bound so far, in order.
    pub fn bound(&self) -> Vec<u32> {
        let b = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        b.iter().copied().collect()
    }

    /// Pending ends whose bind-time event did not arrive within the settle time (a later
    /// arrival is one spurious wake-up, which the protocols tolerate).
    pub fn unsettled(&self) -> Vec<u32> {
        self.lock().unsettled.clone()
    }

    /// Makes every later blocking wait give up with [`ETIMEDOUT`] after `timeout`
    /// (`None`, the default: wait for ever, as on the other transports).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The `/dev/xen/evtchn` file, for a program's own `poll`/`epoll` loop (readable when
    /// an event fired that has not been read yet). Read events with
    /// [`Events::take_fired`] or [`Events::try_take_any`], never with `read()` on the fd
    /// directly (this type unmasks and records what it reads). `None` for a test device.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.dev.fd()
    }

    /// Events the kernel delivered on ports this domain did not bind (should be 0).
    pub fn strays(&self) -> u64 {
        self.lock().strays
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_bound(&self, port: u32) -> Result<(), Errno> {
        self.bind(port)
    }

    /// Reads the ring without blocking, unmasks what it read, records it.
    fn drain(&self, st: &mut State) -> Result<(), Errno> {
        let mut buf = [0u32; READ_BATCH];
        loop {
            let n = self.dev.read(&mut buf).map_err(|e| errno(&e))?;
            if n == 0 {
                return Ok(());
            }
            self.dev.unmask(&buf[..n]).map_err(|e| errno(&e))?;
            for &p in &buf[..n] {
                if self.ports.contains_key(&p) {
                    st.fired.insert(p);
                } else {
                    st.strays += 1;
                }
            }
            if n < READ_BATCH {
                return Ok(());
            }
        }
    }

    /// Drains unless a reader will (see the module documentation).
    fn refresh(&self, st: &mut State) {
        if !st.reading {
            // A failing device shows in the next blocking wait, which returns the errno.
            let _ = self.drain(st);
        }
    }

    fn take_first(st: &mut State, ports: &[u32]) -> Option<u32> {
        let p = ports.iter().copied().find(|p| st.fired.contains(p))?;
        st.fired.remove(&p);
        Some(p)
    }
}

impl Events for LinuxEvents {
    fn send(&self, port: u32) -> Result<(), Errno> {
        self.check_bound(port)?;
        self.dev.notify(port).map_err(|e| errno(&e))
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        if ports.is_empty() {
            return Err(Errno::EINVAL);
        }
        for &p in ports {
            self.check_bound(p)?;
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let left = || match deadline {
            None => Ok(None),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    Err(ETIMEDOUT)
                } else {
                    Ok(Some(d - now))
                }
            }
        };
        let mut st = self.lock();
        loop {
            if let Some(p) = Self::take_first(&mut st, ports) {
                return Ok(p);
            }
            if st.reading {
                st = match left()? {
                    None => self.drained.wait(st).unwrap_or_else(|e| e.into_inner()),
                    Some(t) => {
                        self.drained
                            .wait_timeout(st, t)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
                continue;
            }
            // Anything already in the ring first, without sleeping.
            self.drain(&mut st)?;
            if let Some(p) = Self::take_first(&mut st, ports) {
                return Ok(p);
            }
            let timeout = left()?;
            st.reading = true;
            drop(st);
            let woke = self.dev.wait_readable(timeout);
            st = self.lock();
            let drained = match woke {
                Ok(_) => self.drain(&mut st),
                Err(e) => Err(errno(&e)),
            };
            st.reading = false;
            self.drained.notify_all();
            drained?;
        }
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        for &p in ports {
            let _ = self.bind(p);
        }
        let mut st = self.lock();
        if let Some(p) = Self::take_first(&mut st, ports) {
            return Some(p);
        }
        self.refresh(&mut st);
        Self::take_first(&mut st, ports)
    }

    fn take_fired(&self) -> Option<u32> {
        let mut st = self.lock();
        self.refresh(&mut st);
        st.fired.pop_first()
    }

    fn is_pending(&self, port: u32) -> bool {
        let _ = self.bind(port);
        let mut st = self.lock();
        self.refresh(&mut st);
        st.fired.contains(&port)
    }

    fn clear_initial(&self, port: u32) -> bool {
        let _ = self.bind(port);
        let mut st = self.lock();
        self.refresh(&mut st);
        st.fired.remove(&port)
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        self.dev.status(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::fake::FakeDevice;
    use std::sync::Arc;

    fn events(ports: &[u32]) -> (LinuxEvents, Arc<FakeDevice>) {
        let dev = Arc::new(FakeDevice::default());
        let mut ev = LinuxEvents::new(Box::new(dev.clone()));
        for &p in ports {
            ev.allow(p, false);
        }
        ev.bind_all().unwrap();
        (ev, dev)
    }

    #[test]
    fn send_notifies_bound_ports_only() {
        let (ev, dev) = events(&[1, 3]);
        ev.send(3).unwrap();
        assert_eq!(dev.notified(), vec![3]);
        assert_eq!(ev.send(2), Err(Errno::EINVAL));
    }

    #[test]
    fn bind_refusal_is_reported() {
        let dev = Arc::new(FakeDevice::default());
        dev.refuse_bind(7);
        let mut ev = LinuxEvents::new(Box::new(dev));
        ev.allow(7, false);
        assert_eq!(ev.bind_all(), Err((7, Errno::EINVAL)));
        assert_eq!(ev.bound(), Vec::<u32>::new());
        assert_eq!(ev.send(7), Err(Errno::EINVAL));
    }

    #[test]
    fn every_port_read_is_unmasked_and_events_coalesce() {
        let (ev, dev) = events(&[1, 2]);
        dev.fire(1);
        dev.fire(2);
        assert!(ev.is_pending(1));
        assert_eq!(dev.unmasked(), vec![1, 2]);
        dev.fire(1); // again: coalesces with the one not consumed yet
        assert_eq!(ev.take_fired(), Some(1));
        assert_eq!(ev.take_fired(), Some(2));
        assert_eq!(ev.take_fired(), None);
    }

    #[test]
    fn waits_consume_only_the_ports_asked_for() {
        let (ev, dev) = events(&[1, 2]);
        dev.fire(2);
        dev.fire(1);
        assert_eq!(ev.wait_any(&[1]), Ok(1));
        assert_eq!(ev.try_take_any(&[1]), None);
        assert_eq!(ev.try_take_any(&[1, 2]), Some(2));
        assert_eq!(ev.wait_any(&[]), Err(Errno::EINVAL));
        assert_eq!(ev.wait_any(&[9]), Err(Errno::EINVAL));
    }

    #[test]
    fn clear_initial_drops_the_bind_time_event() {
        let (ev, dev) = events(&[4]);
        dev.fire(4);
        assert!(ev.clear_initial(4));
        assert!(!ev.clear_initial(4));
        assert!(!ev.is_pending(4));
    }

    #[test]
    fn settle_waits_for_bind_time_events() {
        let (ev, dev) = events(&[1, 2]);
        let d = dev.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            d.fire(2);
        });
        assert_eq!(ev.settle(&[2], Duration::from_secs(5)), Ok(vec![]));
        t.join().unwrap();
        assert_eq!(ev.settle(&[1], Duration::from_millis(10)), Ok(vec![1]));
    }

    #[test]
    fn a_blocking_wait_wakes_on_a_later_event() {
        let (ev, dev) = events(&[5]);
        let d = dev.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            d.fire(5);
        });
        assert_eq!(ev.wait_any(&[5]), Ok(5));
        t.join().unwrap();
    }

    #[test]
    fn a_wait_times_out_when_asked_to() {
        let (mut ev, _dev) = events(&[5]);
        ev.set_timeout(Some(Duration::from_millis(10)));
        assert_eq!(ev.wait_any(&[5]), Err(ETIMEDOUT));
    }

    #[test]
    fn two_threads_wait_on_different_ports() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let (ev, dev) = events(&[1, 2]);
        let ev = Arc::new(ev);
        // How many events each waiter has taken: the next event on a port is fired only
        // after the previous one was taken, so none can coalesce with another (a port's
        // event still in the device, not yet read, is not visible to `is_pending`).
        let taken = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let waiters: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|p| {
                let (ev, taken) = (ev.clone(), taken.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(ev.wait_any(&[p]), Ok(p));
                        taken[p as usize - 1].fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        for i in 0..50 {
            for p in [1u32, 2] {
                while taken[p as usize - 1].load(SeqCst) < i {
                    std::thread::sleep(Duration::from_micros(100));
                }
                dev.fire(p);
            }
        }
        for w in waiters {
            w.join().unwrap();
        }
    }

    #[test]
    fn ports_bind_on_first_use_and_pending_ends_settle() {
        let dev = Arc::new(FakeDevice::default());
        let mut ev = LinuxEvents::new(Box::new(dev.clone()));
        ev.allow(1, false);
        ev.allow(2, true);
        ev.set_settle(Duration::from_millis(20));
        assert_eq!(ev.bound(), Vec::<u32>::new());
        ev.send(1).unwrap();
        assert_eq!(ev.bound(), [1]);
        // The bind-time event of port 2 never comes: noted, not an error.
        assert!(!ev.clear_initial(2));
        assert_eq!(ev.bound(), [1, 2]);
        assert_eq!(ev.unsettled(), [2]);
        assert_eq!(ev.bind(3), Err(Errno::EINVAL));
    }

    #[test]
    fn events_of_unbound_ports_are_counted_not_kept() {
        let (ev, dev) = events(&[1]);
        dev.fire(8);
        assert_eq!(ev.take_fired(), None);
        assert_eq!(ev.strays(), 1);
    }

    #[test]
    fn a_device_error_is_an_errno() {
        let (ev, dev) = events(&[1]);
        dev.fail_reads(27); // EFBIG: the ring overflowed
        assert_eq!(ev.wait_any(&[1]), Err(Errno(27)));
    }
}
