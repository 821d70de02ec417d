//! Virtio between partitions over static shared memory, with no xenstore, no device
//! model and no IOREQ: the virtio-msg transport carried over a request/response ring in a
//! staticbus shared region, with a static event channel as the doorbell; specified to
//! the byte in docs/virtio.md.
//!
//! * [`layout`] — the region: header (magic, version, geometry, the device epoch that
//!   tells a frontend the backend restarted), the two control rings, the DMA area.
//! * [`msg`] — the virtio-msg messages (ids and payloads of the draft, as zerocopy
//!   structs).
//! * [`ring`] — the single-producer single-consumer control rings.
//! * [`queue`] — the device side of a split virtqueue, validating everything a hostile
//!   frontend writes.
//! * [`device`] — [`device::DeviceTransport`] serves a region for a [`device::Backend`]:
//!   the trait built-in devices and the vhost-user bridge implement.
//! * [`backends`] — `no_std` block (RAM disk), entropy and console devices.
//! * [`frontend`] and [`hal`] — virtio-drivers' `Transport` and `Hal` over the region, so
//!   that crate's drivers run unchanged.
//! * [`blk_flush`] — virtio-blk's flush that survives a device restart (`VirtIOBlk`'s
//!   spins).
//! * [`open`] — a device by name from the domain's manifest (`[[virtio]]`): its region,
//!   doorbell port and parameters, checked for this domain's side.
//!
//! ```no_run
//! use staticbus_virtio_msg::frontend::Link;
//! use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
//! use virtio_drivers::device::blk::VirtIOBlk;
//! # fn demo(region: staticbus_guest::Region, events: impl staticbus_guest::Events, port: u32)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! static POOL: DmaPool = DmaPool::new();
//! struct Disk;
//! impl PoolOf for Disk {
//!     fn pool() -> &'static DmaPool { &POOL }
//! }
//! let guest_base = 0x7000_0000; // the region's guest address, from the manifest
//! POOL.attach(region, guest_base);
//! let link = Link::attach(region, events, port, guest_base)?;
//! let mut blk = VirtIOBlk::<RegionHal<Disk>, _>::new(link.transport()?)?;
//! let mut sector = [0u8; 512];
//! blk.read_blocks(0, &mut sector)?;
//! # Ok(()) }
//! ```

#![no_std]
#![cfg_attr(not(test), deny(unsafe_code))]

#[cfg(test)]
extern crate std;

pub mod backends;
#[allow(unsafe_code)]
pub mod blk_flush;
pub mod device;
pub mod devices;
pub mod frontend;
#[allow(unsafe_code)]
pub mod hal;
pub mod layout;
pub mod msg;
pub mod open;
pub mod queue;
pub mod ring;

#[cfg(test)]
mod docs;
