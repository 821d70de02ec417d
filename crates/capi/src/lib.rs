//! The staticbus guest runtime for C guests (`include/staticbus.h`).
//!
//! A C program (bare-metal, an RTOS task, or a process under `staticbus run`) gets the
//! same runtime the Rust guests have: channels opened by name through the domain's
//! manifest, the four protocols of `staticbus-proto` (queue, log, latest, blob; specified
//! in docs/protocols.md) with their spin-then-block waits and notify-only-if-waiting rule,
//! and raw event channels. Nothing is re-implemented here: every call is a thin, checked
//! wrapper of `staticbus-guest` and `staticbus-proto`.
//!
//! * **The transport is the integrator's**: a [`sb_transport`] is a C struct of function
//!   pointers for Xen's four guest hypercalls (`event_channel_op`, `memory_op`,
//!   `sched_op`, `console_io`, in Xen's raw form), the domain's mapped `shared_info` page
//!   and a lookup of shared regions by `xen,shm-id`. The 2-level event-channel driver of
//!   `staticbus-guest` runs on it. The staticbus transports are provided:
//!   `sb_emu_transport` (feature `emu`, the emulator of `staticbus run`) and
//!   `sb_xen_transport` (feature `xen`, bare-metal arm64 domUs on real Xen, whose boot
//!   code calls the C program's `sb_main`).
//! * **The manifest**: on bare metal, the C header `staticbus build` writes for the domain
//!   (`domains/<name>/manifest.h`, its `sb_manifest` table) is passed to
//!   [`sb_domain_init`] (or `sb_xen_init`); under the emulator the domain's `manifest.json` that `staticbus
//!   run` hands the process ([`sb_emu_init`](emu::sb_emu_init)). Both come from the same
//!   model; nothing is re-declared by hand in the C program.
//! * **No allocation**: every object ([`sb_domain`], [`sb_queue_tx`], …) is storage the
//!   caller provides (static, or on a stack that outlives its use), opaque to C, sized in
//!   the header. A domain must not move after [`sb_domain_init`], and must outlive every
//!   handle opened on it.
//! * **Errors are return codes**: every function returns an [`sb_status`]; lengths and
//!   values come back through out-parameters. No function panics on any input a C caller
//!   can give (null pointers, unopened handles and bad enum values are
//!   `SB_ERR_INVALID`/`SB_ERR_NOT_OPEN`).
//!
//! The header is generated from this crate by cbindgen (`tests/header.rs` regenerates it
//! and fails if the checked-in copy differs); docs/c-api.md is the guide.

#![no_std]
#![allow(non_camel_case_types)]

#[cfg(any(test, feature = "emu"))]
extern crate std;

#[cfg(all(feature = "xen", not(all(target_arch = "aarch64", target_os = "none"))))]
compile_error!("feature `xen` is the bare-metal runtime: build it for aarch64-unknown-none");

mod domain;
mod endpoints;
mod handle;
mod manifest;
mod status;
#[cfg(test)]
mod tests;

#[cfg(feature = "emu")]
pub mod emu;
#[cfg(feature = "xen")]
pub mod xen;

pub use domain::*;
pub use endpoints::*;
pub use manifest::{sb_channel, sb_evtchn, sb_manifest, sb_peer, sb_region};
pub use manifest::{SB_MAX_CHANNELS, SB_MAX_EVTCHNS, SB_MAX_PEERS, SB_MAX_REGIONS};
pub use status::*;
