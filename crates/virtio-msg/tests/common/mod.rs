//! Shared by the integration tests: two in-process domains (threads) over one region and a
//! `Bus` of static event channels, as `staticbus_guest::fake` builds them.

#![allow(dead_code)]

use staticbus_guest::fake::{pair_ports, two_domains};
use staticbus_guest::manifest::{Manifest, Protocol};
use staticbus_guest::{Errno, Events, Region};
use staticbus_virtio_msg::frontend::{Link, LinkError};

/// Region size of the tests: the header page and 63 DMA pages.
pub const SIZE: usize = 64 * 4096;
/// The frontend's guest-physical address of the region.
pub const GUEST_BASE: u64 = 0x7000_0000;
/// The frontend's port (domain a) and the device's (domain b).
pub const PORTS: [u32; 2] = pair_ports(0);
/// Frontend port.
pub const FE_PORT: u32 = PORTS[0];
/// Device port.
pub const BE_PORT: u32 = PORTS[1];

/// The manifests: a (frontend, domid 1) and b (device side, domid 2).
pub fn manifests() -> [&'static Manifest; 2] {
    two_domains(&[("vio", Protocol::Queue, SIZE as u64)])
}

/// Attaches the frontend, waiting for the device side's doorbell while it is not ready.
pub fn link<E: Events>(region: Region, events: E) -> Link<E> {
    loop {
        // The attach doorbell may be the one consumed here: the loop re-checks.
        match Link::attach(region, &events, FE_PORT, GUEST_BASE) {
            Ok(_) => break,
            Err(LinkError::NotReady) => events.wait(FE_PORT).expect("device never came"),
            Err(e) => panic!("{e}"),
        }
    }
    Link::attach(region, events, FE_PORT, GUEST_BASE).expect("attached once already")
}

/// xorshift64*: the tests' deterministic randomness.
pub struct Prng(pub u64);

impl Prng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Events that deliver nothing: sends succeed, waits fail (a device side polled by hand).
pub struct Quiet;

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

/// Defines a marker type `$name` whose `PoolOf` is its own static `DmaPool`.
#[macro_export]
macro_rules! pool {
    ($name:ident) => {
        struct $name;
        impl staticbus_virtio_msg::hal::PoolOf for $name {
            fn pool() -> &'static staticbus_virtio_msg::hal::DmaPool {
                static POOL: staticbus_virtio_msg::hal::DmaPool =
                    staticbus_virtio_msg::hal::DmaPool::new();
                &POOL
            }
        }
    };
}
