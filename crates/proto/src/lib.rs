//! Protocols on static shared memory between domains (or emulated domains as
//! processes), specified to the byte in `docs/protocols.md`.
//!
//! Every protocol works on a [`Region`](staticbus_guest::Region) and starts with the
//! common [`header`]: magic, protocol id, layout version, sizes, a layout hash, and per
//! side a state word and an epoch counter on that side's own cache line, so each side
//! learns that the other restarted (Jailhouse ivshmem-v2's state table is the model).
//!
//! * [`queue`] — single producer, single consumer, variable-length messages; zero-copy
//!   reserve/commit and peek/release, copying send/recv; survives a restart of either
//!   side; notifies only when the peer may be waiting; optional batched publication.
//! * [`log`] — one writer that never blocks, any number of readers; records carry
//!   sequence numbers and a lapped reader learns exactly how many it missed; torn records
//!   are never returned.
//! * [`latest`] — one slot per writer (seqlock); readers get the newest complete value
//!   across writers, with bounded retries and a "contended" report.
//! * [`blob`] — a configuration blob written by one domain, read by many, with a version
//!   and a checksum; readers see the old blob or the new one, never a mix.
//!
//! [`endpoint`] opens a channel by name through the manifest, checks its protocol and
//! this domain's role, attaches, and applies [`wait`]'s spin-then-block discipline and
//! the notify-only-if-waiting rule.
//!
//! The peer is assumed hostile: every field it can write is read once (atomically or
//! with volatile copies), validated, then used. A violation puts the handle in a sticky
//! broken state and returns an error — never undefined behaviour, a panic, an
//! out-of-bounds access or an unbounded loop. The crate contains no `unsafe` code.

#![no_std]
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

#[cfg(test)]
extern crate std;

pub mod blob;
pub mod endpoint;
pub mod header;
pub mod latest;
pub mod log;
pub mod queue;
pub mod wait;

#[cfg(test)]
mod fieldcheck;
#[cfg(test)]
mod testmem;
