//! `staticbus-bench`: measures the staticbus shared-memory protocols between two processes
//! pinned to two cores, together with the references that bound them, in the same run
//! (these machines are noisy; only same-run ratios are comparable):
//!
//! * `throughput` — queue messages/s and GB/s at a message size, with the notifications
//!   per message the protocol asked for, next to single-core memcpy of blocks of that size;
//! * `latency` — one-way latency of a polling queue ping-pong at 64 B next to a raw
//!   shared-cache-line ping-pong (and iceoryx2 publish-subscribe with `--features
//!   iceoryx2`);
//! * `suite` — all of the above for 64 B, 1 KiB and 64 KiB, repeated, as the Markdown
//!   rows of BENCHMARKS.md.
//!
//! The parent process runs on core 0 and re-executes itself as the peer on core 1; the two
//! share one memfd (a control page, then the protocol regions). Event channels are
//! modelled by a futex-backed pending bit per direction (set + wake only if it was clear;
//! the waiter takes the bit), which is the event channel's coalescing semantics.

#![deny(unsafe_op_in_unsafe_fn)]

mod ctl;
#[cfg(feature = "iceoryx2")]
mod ice;
mod run;

use clap::{Parser, Subcommand};

/// Benchmarks of staticbus protocols between two processes on two cores.
#[derive(Parser)]
#[command(name = "staticbus-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Queue throughput at one message size, with memcpy of the same blocks as reference.
    Throughput {
        /// Message size in bytes (at least 16: sequence stamps at both ends).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages to send (default: about one second's worth for the size).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Polls before blocking (`--spin 0`: block at once; `--poll`: never block).
        #[arg(long, default_value_t = staticbus_proto::wait::Spin::DEFAULT.polls)]
        spin: u32,
        /// Never block (pure polling).
        #[arg(long)]
        poll: bool,
        /// Publish the producer's index and check for wake-ups every N messages (1: every
        /// message).
        #[arg(long, default_value_t = 16)]
        batch: u32,
    },
    /// One-way latency in polling mode (64 B) against a raw cache-line ping-pong.
    Latency {
        /// Round trips to time (after 10,000 warm-up round trips).
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
    },
    /// Single-core memcpy of warm blocks of one size (the throughput reference alone).
    Memcpy {
        /// Block size in bytes.
        #[arg(long, default_value_t = 65536)]
        size: usize,
    },
    /// Everything, `--reps` times, printed as Markdown table rows (medians).
    Suite {
        /// Repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Internal: the peer process (started by the others).
    #[command(hide = true)]
    Peer {
        /// Peer role and parameters.
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Throughput {
            size,
            count,
            spin,
            poll,
            batch,
        } => run::throughput_cmd(size, count, if poll { u32::MAX } else { spin }, batch),
        Cmd::Latency { count } => run::latency_cmd(count),
        Cmd::Memcpy { size } => {
            let m = run::memcpy(size);
            println!(
                "memcpy {size} B warm, one core: {:.2} M copies/s, {:.2} GB/s",
                m.per_sec / 1e6,
                m.gbps
            );
            Ok(())
        }
        Cmd::Suite { reps } => run::suite(reps.max(1)),
        Cmd::Peer { args } => run::peer(&args),
    };
    if let Err(e) = r {
        eprintln!("staticbus-bench: error: {e}");
        std::process::exit(1);
    }
}
