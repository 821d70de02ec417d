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
//!   rows of BENCHMARKS.md, each measurement between references measured right before
//!   and right after it (a repetition whose references moved by more than 20% is marked
//!   noisy), with the vCPU placement the cache line shows;
//! * `ci` — the suite several times, minutes apart, and the spread of every figure
//!   against the bars of issue 18.
//!
//! The copy reference is the best of several single-core copies of the same blocks (glibc
//! `memcpy`, `rep movsb`, a 64-byte SSE2 loop), each reported, with a warning when they
//! disagree by more than 2×. The queue's own bulk copy is calibrated at start
//! (`--copy auto`, the default) or fixed (`--copy rep-movsb` …); the peer copies the same
//! way.
//!
//! The parent process runs on core 0 and re-executes itself as the peer on core 1; the two
//! share one memfd (a control page, then the protocol regions). Event channels are
//! modelled by a futex-backed pending bit per direction (set + wake only if it was clear;
//! the waiter takes the bit), which is the event channel's coalescing semantics.

#![deny(unsafe_op_in_unsafe_fn)]

mod child;
mod cpu;
mod ctl;
#[cfg(feature = "iceoryx2")]
mod ice;
mod refs;
mod run;
mod scale;
mod soak;

use clap::{Parser, Subcommand};

/// Benchmarks of staticbus protocols between two processes on two cores.
#[derive(Parser)]
#[command(name = "staticbus-bench", version)]
struct Cli {
    /// The queue's bulk-copy method for copies of 512 bytes and more: `auto` (calibrated
    /// at start: the fastest here), `rep-movsb`, `wide`, `platform` (glibc memcpy) or
    /// `words`.
    #[arg(long, global = true, default_value = "auto", value_parser = refs::parse_copy)]
    copy: refs::CopyChoice,
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
    /// The queue's own CPU cost per message on one thread (send + recv of batches of 16
    /// in one region, no second core) against the slot ring's copies, best of many
    /// short bursts.
    Cpu {
        /// Message size in bytes (at least 16).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Bursts of about a millisecond; the best is kept.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
        bursts: u32,
    },
    /// Single-core copies of warm blocks of one size by every reference method (the
    /// throughput reference alone).
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
    /// The suite `--runs` times, `--gap` apart, as CI machines see it; then the spread of
    /// every figure against the bars of issue 18.
    Ci {
        /// How many suites.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// Time between two suites (`90s`, `3m`).
        #[arg(long, default_value = "3m", value_parser = soak::parse_duration)]
        gap: std::time::Duration,
        /// Repetitions per measurement within each suite.
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// `staticbus run` of a queue and a log while both ends of both are killed and
    /// restarted at random; prints messages sent, delivered, lost, duplicated, what
    /// happened to messages in flight at a kill, restarts and notifications per message.
    Soak {
        /// How long to kill and restart (`90s`, `2m`, `1h`).
        #[arg(long, default_value = "2m", value_parser = soak::parse_duration)]
        duration: std::time::Duration,
        /// Seed of the kill schedule and of every self-kill point.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Mean time between two kills by the controller, in milliseconds.
        #[arg(long, default_value_t = 700)]
        kill_interval_ms: u64,
        /// Each domain also kills itself once every this many messages, on average (0:
        /// never).
        #[arg(long, default_value_t = 20_000)]
        self_kill_every: u64,
        /// Messages (log records) per second each sender aims at (0: as fast as it can).
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// The `staticbus` executable (default: next to this one).
        #[arg(long)]
        staticbus: Option<std::path::PathBuf>,
        /// A fault the queue's producer makes once (the soak's own tests: the account must
        /// catch it).
        #[arg(long, value_enum, default_value = "none", hide = true)]
        inject: soak::Fault,
    },
    /// Scale: check + build of a generated big system, the DTS parser's memory on a big
    /// tree against dtc, `staticbus run` of many streaming domains.
    Scale {
        #[command(subcommand)]
        what: ScaleCmd,
    },
    /// Internal: one domain of `scale run` (started by `staticbus run`).
    #[command(hide = true)]
    ScaleDomain {
        /// Parameters.
        args: Vec<String>,
    },
    /// Internal: one domain of the soak (started by `staticbus run`).
    #[command(hide = true)]
    SoakDomain {
        /// Role and parameters.
        args: Vec<String>,
    },
    /// Internal: the peer process (started by the others).
    #[command(hide = true)]
    Peer {
        /// Peer role and parameters.
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ScaleCmd {
    /// `check` + `build` of a generated description, in process and as `staticbus`
    /// processes (median of `--runs`, wall and CPU time).
    Compile {
        /// Domains.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(2..))]
        domains: u64,
        /// Queue channels.
        #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
        channels: u64,
        /// Runs of each measurement.
        #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// The `staticbus` executable (default: next to this one).
        #[arg(long)]
        staticbus: Option<std::path::PathBuf>,
        /// An older `staticbus` to measure in alternation and compare outputs with.
        #[arg(long)]
        reference: Option<std::path::PathBuf>,
    },
    /// Peak memory, CPU and wall time of `staticbus check` and `dtc` on a generated DTS.
    Dts {
        /// Labelled nodes (each referenced by another's phandle).
        #[arg(long, default_value_t = 40_000, value_parser = clap::value_parser!(u64).range(2..))]
        labels: u64,
        /// Runs of each measurement.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// The `staticbus` executable (default: next to this one).
        #[arg(long)]
        staticbus: Option<std::path::PathBuf>,
        /// An older `staticbus` to measure in alternation.
        #[arg(long)]
        reference: Option<std::path::PathBuf>,
        /// Only write the generated DTS to this file.
        #[arg(long)]
        write: Option<std::path::PathBuf>,
    },
    /// `staticbus run` of 2 domains / 1 channel, then of many domains, every channel
    /// streaming: messages/s and the runner's own CPU per message.
    Run {
        /// Domains of the big system.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..))]
        domains: u64,
        /// Queue channels of the big system.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
        channels: u64,
        /// Warm-up after start-up, before the window (`2s`).
        #[arg(long, default_value = "2s", value_parser = soak::parse_duration)]
        warmup: std::time::Duration,
        /// Measuring window (`10s`).
        #[arg(long, default_value = "10s", value_parser = soak::parse_duration)]
        window: std::time::Duration,
        /// The `staticbus` executable (default: next to this one).
        #[arg(long)]
        staticbus: Option<std::path::PathBuf>,
    },
}

fn scale_cmd(what: ScaleCmd) -> Result<(), String> {
    match what {
        ScaleCmd::Compile {
            domains,
            channels,
            runs,
            staticbus,
            reference,
        } => scale::compile_cmd(&scale::CompileOptions {
            domains: domains as usize,
            channels: channels as usize,
            runs: runs as usize,
            staticbus,
            reference,
        }),
        ScaleCmd::Dts {
            labels,
            runs,
            staticbus,
            reference,
            write,
        } => match write {
            Some(p) => std::fs::write(&p, scale::dts_text(labels as usize))
                .map_err(|e| format!("{}: {e}", p.display())),
            None => scale::dts_cmd(&scale::DtsOptions {
                labels: labels as usize,
                runs: runs as usize,
                staticbus,
                reference,
            }),
        },
        ScaleCmd::Run {
            domains,
            channels,
            warmup,
            window,
            staticbus,
        } => scale::run_cmd(&scale::RunOptions {
            domains: domains as usize,
            channels: channels as usize,
            warmup,
            window,
            staticbus,
        }),
    }
}

fn main() {
    let cli = Cli::parse();
    if !matches!(
        cli.cmd,
        Cmd::Soak { .. } | Cmd::SoakDomain { .. } | Cmd::Scale { .. } | Cmd::ScaleDomain { .. }
    ) {
        match refs::setup_copy(cli.copy) {
            Ok((method, cal)) => {
                if !matches!(cli.cmd, Cmd::Peer { .. }) {
                    println!("{}", refs::describe_copy(method, cal.as_ref()));
                }
            }
            Err(e) => {
                eprintln!("staticbus-bench: error: {e}");
                std::process::exit(2);
            }
        }
    }
    let r = match cli.cmd {
        Cmd::Throughput {
            size,
            count,
            spin,
            poll,
            batch,
        } => run::throughput_cmd(size, count, if poll { u32::MAX } else { spin }, batch),
        Cmd::Latency { count } => run::latency_cmd(count),
        Cmd::Cpu { size, bursts } => cpu::cpu_cmd(size, bursts),
        Cmd::Memcpy { size } => {
            let m = refs::CopyRef::measure(size, 200);
            for (how, r) in &m.each {
                println!(
                    "{} {size} B warm, one core: {:.2} M copies/s, {:.2} GB/s",
                    how.name(),
                    r.per_sec / 1e6,
                    r.gbps
                );
            }
            println!("best: {:.2} GB/s", m.best().gbps);
            if let Some((slow, f)) = m.disagreement() {
                println!(
                    "warning: the copies disagree by {f:.1}× ({} is slow here)",
                    slow.name()
                );
            }
            Ok(())
        }
        Cmd::Suite { reps } => run::suite(reps.max(1)).map(|_| ()),
        Cmd::Ci { runs, gap, reps } => run::ci(runs as usize, gap, reps.max(1)),
        Cmd::Soak {
            duration,
            seed,
            kill_interval_ms,
            self_kill_every,
            rate,
            staticbus,
            inject,
        } => soak::soak_cmd(&soak::SoakOptions {
            duration,
            seed,
            kill_interval: std::time::Duration::from_millis(kill_interval_ms.max(1)),
            self_kill_every,
            rate,
            staticbus,
            inject,
        }),
        Cmd::SoakDomain { args } => soak::domain_main(&args),
        Cmd::Scale { what } => scale_cmd(what),
        Cmd::ScaleDomain { args } => scale::domain_main(&args),
        Cmd::Peer { args } => run::peer(&args),
    };
    if let Err(e) = r {
        eprintln!("staticbus-bench: error: {e}");
        std::process::exit(1);
    }
}
