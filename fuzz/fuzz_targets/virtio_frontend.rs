//! The virtio-msg frontend (`Link` and virtio-drivers' `Transport` over it) against a
//! hostile device side. The region is initialised by a real device side, which then
//! "dies"; from there the input plays the device: whenever the frontend waits for the
//! doorbell, the next input bytes write response slots (echoing the pending request's id
//! and token or not, any type, size and payload), move the response producer anywhere,
//! change the epoch or the flags, or poke any byte of the region; when the input ends the
//! wait fails. The frontend calls every `Transport` method in the order the input picks.
//! Checked: no panic, every call returns (each wait consumes input), and an epoch the
//! frontend did not initialise against is always reported as NEEDS_RESET.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::{Errno, Events, Region};
use staticbus_virtio_msg::backends::{Rng, XorShift};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::frontend::Link;
use staticbus_virtio_msg::layout::{OFF_DEV_EPOCH, OFF_DEV_FLAGS, PAGE};
use staticbus_virtio_msg::ring::{REQUESTS, RESPONSES};
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::{Acquire, Release};
use virtio_drivers::transport::{DeviceStatus, Transport};

const LEN: usize = 4 * PAGE;
const BASE: u64 = 0x4000_0000;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

struct Quiet;

impl Events for Quiet {
    fn send(&self, _port: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn wait_any(&self, _ports: &[u32]) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }
    fn try_take_any(&self, _ports: &[u32]) -> Option<u32> {
        None
    }
    fn take_fired(&self) -> Option<u32> {
        None
    }
    fn is_pending(&self, _port: u32) -> bool {
        false
    }
    fn clear_initial(&self, _port: u32) -> bool {
        false
    }
    fn status(&self, _port: u32) -> Result<staticbus_guest::ops::PortStatus, Errno> {
        Err(Errno::ENOSYS)
    }
}

/// The hostile device, run whenever the frontend waits.
struct Device<'a> {
    r: Region,
    input: RefCell<&'a [u8]>,
    prod: Cell<u32>,
}

impl Device<'_> {
    fn take<const N: usize>(&self) -> [u8; N] {
        let mut i = self.input.borrow_mut();
        let mut b = [0u8; N];
        let n = N.min(i.len());
        b[..n].copy_from_slice(&i[..n]);
        *i = &i[n..];
        b
    }

    fn respond(&self, slot: &[u8; 64]) {
        let p = self.prod.get();
        self.r.write_bytes(RESPONSES.slots + 64 * (p % 16) as usize, slot).unwrap();
        self.prod.set(p.wrapping_add(1));
        self.r.store_le::<u32>(RESPONSES.prod, p.wrapping_add(1), Release).unwrap();
    }

    /// One step; false once the input is used up.
    fn step(&self) -> bool {
        if self.input.borrow().is_empty() {
            return false;
        }
        let [op] = self.take::<1>();
        match op % 6 {
            0 | 1 => {
                // Answer the newest request: its id and token, response bit, any payload.
                let req_prod = self.r.load_le::<u32>(REQUESTS.prod, Acquire).unwrap();
                let mut req = [0u8; 64];
                let at = REQUESTS.slots + 64 * (req_prod.wrapping_sub(1) % 16) as usize;
                self.r.read_bytes(at, &mut req).unwrap();
                let mut s = [0u8; 64];
                s[..2].copy_from_slice(&[1 | (op & 0x80), req[1]]);
                s[4..6].copy_from_slice(&req[4..6]);
                let [size] = self.take::<1>();
                s[6] = size % 50;
                s[8..48].copy_from_slice(&self.take::<40>());
                self.respond(&s);
            }
            2 => {
                let mut s = [0u8; 64];
                s[..48].copy_from_slice(&self.take::<48>());
                self.respond(&s);
            }
            3 => {
                let p = u32::from_le_bytes(self.take());
                self.prod.set(p);
                self.r.store_le::<u32>(RESPONSES.prod, p, Release).unwrap();
            }
            4 => {
                let [e, f] = self.take::<2>();
                if e & 1 != 0 {
                    let ep = self.r.load_le::<u64>(OFF_DEV_EPOCH, Acquire).unwrap();
                    self.r.store_le::<u64>(OFF_DEV_EPOCH, ep.wrapping_add(1), Release).unwrap();
                }
                self.r.store_le::<u32>(OFF_DEV_FLAGS, f as u32 & 1, Release).unwrap();
            }
            _ => {
                let at = u16::from_le_bytes(self.take()) as usize % LEN;
                let b = self.take::<8>();
                let n = b.len().min(LEN - at);
                self.r.write_bytes(at, &b[..n]).unwrap();
            }
        }
        true
    }
}

struct Bell<'a>(&'a Device<'a>);

impl Events for Bell<'_> {
    fn send(&self, _port: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        if self.0.step() {
            Ok(ports[0])
        } else {
            Err(Errno::ENOSYS)
        }
    }
    fn try_take_any(&self, _ports: &[u32]) -> Option<u32> {
        None
    }
    fn take_fired(&self) -> Option<u32> {
        None
    }
    fn is_pending(&self, _port: u32) -> bool {
        false
    }
    fn clear_initial(&self, _port: u32) -> bool {
        false
    }
    fn status(&self, _port: u32) -> Result<staticbus_guest::ops::PortStatus, Errno> {
        Err(Errno::ENOSYS)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut mem = vec![Line([0; 8]); LEN / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of LEN bytes, 64-aligned, that outlives
    // every use of `r` and is only accessed through `Region`s from here on.
    let r = unsafe { Region::new(base, LEN) }.expect("non-null");
    let dev = DeviceTransport::attach(r, Quiet, 0, Rng::new(XorShift(1))).unwrap();
    dev.into_backend();
    let (calls, script) = data.split_at(data.len().min(32));
    let device = Device {
        r,
        input: RefCell::new(script),
        prod: Cell::new(r.load_le::<u32>(RESPONSES.prod, Acquire).unwrap()),
    };
    let Ok(link) = Link::attach(r, Bell(&device), 1, BASE) else {
        return;
    };
    let Ok(mut t) = link.transport() else {
        return;
    };
    for &c in calls {
        let q = (c >> 4) as u16 % 3;
        match c % 13 {
            0 => drop(t.read_device_features()),
            1 => t.write_driver_features(u64::from(c) << 28),
            2 => drop(t.max_queue_size(q)),
            3 => drop(t.get_status()),
            4 => t.set_status(DeviceStatus::from_bits_truncate(u32::from(c))),
            5 => t.queue_set(q, 1 << (c % 5), BASE + 0x1000, BASE + 0x2000, BASE + 0x3000),
            6 => t.queue_unset(q),
            7 => drop(t.queue_used(q)),
            8 => drop(t.read_config_space::<u32>(usize::from(c))),
            9 => drop(t.write_config_space::<u16>(usize::from(c), 7)),
            10 => drop(t.ack_interrupt()),
            11 => drop(link.wait_used()),
            _ => t.notify(q),
        }
        if r.load_le::<u64>(OFF_DEV_EPOCH, Acquire).unwrap() != link.epoch() {
            assert_eq!(t.get_status(), DeviceStatus::DEVICE_NEEDS_RESET);
        }
    }
    drop(t);
    drop(link);
    drop(mem);
});
