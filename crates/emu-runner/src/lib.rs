//! The body of `staticbus run`, as a library: the emulated hypervisor (`staticbus-emu`)
//! booted from the host DTB that `staticbus build` writes, checked against the manifests
//! the same build wrote, with every domain a Linux process attached through the wire
//! format of `staticbus-emu-wire`.
//!
//! - [`host_tree`] reads a host DTB back through the compiler's device-tree reader (the
//!   walk Xen does) into the emulator's [`BootSpec`](staticbus_emu::BootSpec);
//! - [`check`] compares what the booted hypervisor set up with what each manifest promises
//!   its guest (ports, peers, which end starts pending, regions and roles);
//! - [`run`] starts the domains, serves their hypercalls, restarts them when asked and
//!   returns a [`Report`].
//!
//! The command line keeps only the face: where programs are found, line prefixes, the
//! summary table.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod cgroup;
pub mod check;
mod direct;
pub mod host_tree;
mod runner;
pub mod sandbox;

pub use host_tree::{boot_spec, read_host_dtb, read_host_dtb_with, HostTree, HostTreeError};
pub use runner::{
    copy_lines, direct_from_env, run, DomainProgram, DomainReport, Output, Report, RunError,
    RunOptions, MAX_LINE,
};
pub use sandbox::Limits;
