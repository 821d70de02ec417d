//! `staticbus-bench soak`: `staticbus run` of a queue and a log for a given time while both
//! ends of both are killed and restarted at random, then an exact account of every message.
//!
//! The system (written to a temporary folder) has four domains, all this executable in its
//! hidden `soak-domain` role: `producer` → `consumer` over a `queue`, `writer` → `reader`
//! over a `log`, and a roleless region `tally` (owned by `DOMID_IO`, so it outlives every
//! restart) where each domain keeps the few words its accounting needs, each word written by
//! one domain only. The run uses `--restart-on-crash`: a killed domain is re-created and
//! re-attaches to the same shared memory.
//!
//! Kills come from two sides: this controller sends `SIGKILL` to a random domain program at
//! random times (any instruction, inside the protocol code included), and every domain kills
//! itself with `SIGKILL` at chosen points, so that each point the protocol specification
//! names (docs/protocols.md §3.6, §4.7) is hit many times: between messages, a producer with
//! its message not yet committed, a consumer holding a message it has not released, a
//! reader with a record it has not yet used.
//!
//! Accounting. Every queue message and log record carries its sequence number and a payload
//! derived from it.
//!
//! * Queue: the producer stores the sequence number it is about to send (`intent`) before
//!   `send` and the one `send` returned for (`sent`) after; a restarted producer that finds
//!   `intent > sent` records `intent` as *in doubt* (a ring of the last 256) and goes on with
//!   `intent + 1`, so no number is ever sent twice. The consumer keeps its next expected
//!   number (and the count of discarded messages, in the same word) before it releases a
//!   message. A message equal to its last checkpoint is the one it held when it died:
//!   *redelivered* (§3.6: "consumer dies between peek and release: that one message is
//!   delivered again"). A gap made only of in-doubt numbers is a message *discarded* by a
//!   producer that died before committing it (§3.6). Any other gap is *lost*, any other
//!   older number *duplicated*: both must stay 0.
//! * Log: the writer appends records whose sequence number is the log's own; the reader
//!   resumes from its saved cursor and checks `seq − missed` against the position it
//!   expects. A restarted reader whose saved cursor is ahead of its own count lost the
//!   records that were returned to its previous incarnation after its last count (§4.7:
//!   nothing is returned twice): *in hand at a reader's death*. At the end `head =
//!   delivered + missed + in hand`; anything else is *lost* (must be 0), an older number
//!   *duplicated* (must be 0).
//!
//! At the deadline the producer and the writer stop and publish their final numbers; the
//! consumer and the reader drain to them and print the account, which the controller prints
//! with the run's restarts and notifications per message (from the emulator's counters).

use staticbus_guest::Platform;
use staticbus_guest_emu::EmuPlatform;
use staticbus_proto::endpoint::{LogReader, LogWriter, QueueRx, QueueTx};
use staticbus_proto::log::Start;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T = ()> = Result<T, String>;

// Words of the `tally` region (offsets in bytes); each is written by one domain only.
/// Producer: the number it is sending (stored before `send`).
const Q_INTENT: usize = 0;
/// Producer: the last number `send` returned for.
const Q_SENT: usize = 8;
/// Producer: in-doubt numbers recorded so far (the ring holds the last `DOUBTS`).
const Q_DOUBT_N: usize = 16;
/// Producer: the final number + 1 once it stopped (0 while running).
const Q_FINAL: usize = 24;
/// Consumer: next expected number (low 40 bits) | discarded messages (high 24 bits).
const Q_NEXT: usize = 32;
/// Consumer: messages redelivered after it died holding them.
const Q_REDELIVERED: usize = 40;
/// Consumer: lost messages (must stay 0).
const Q_LOST: usize = 48;
/// Consumer: duplicated messages (must stay 0).
const Q_DUP: usize = 56;
/// Consumer: corrupt messages (must stay 0).
const Q_CORRUPT: usize = 64;
/// Consumer: 1 once it has drained to the final number.
const Q_DONE: usize = 72;
/// Writer: the final head + 1 once it stopped.
const L_FINAL: usize = 128;
/// Reader: its account ([`ReaderState`]): a selector word, then two copies of 4 words
/// (136 … 208).
const L_NEXT: usize = 136;
/// Reader: lost records (must stay 0).
const L_LOST: usize = 216;
/// Reader: duplicated records (must stay 0).
const L_DUP: usize = 224;
/// Reader: corrupt records (must stay 0).
const L_CORRUPT: usize = 232;
/// Reader: 1 once it has drained to the final head.
const L_DONE: usize = 240;
/// Producer: 1 once it made the fault it was asked to inject.
const Q_INJECTED: usize = 80;
/// Producer: the ring of in-doubt numbers.
const Q_DOUBTS: usize = 1024;
/// Size of that ring.
const DOUBTS: usize = 256;

const NEXT_BITS: u32 = 40;
const NEXT_MASK: u64 = (1 << NEXT_BITS) - 1;

/// How a soak runs.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// How long domains are killed and restarted.
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Mean interval between kills by the controller.
    pub kill_interval: Duration,
    /// Each domain also kills itself once every this many messages, on average.
    pub self_kill_every: u64,
    /// Messages (and log records) per second each sender aims at.
    pub rate: u64,
    /// `staticbus` (default: next to this executable).
    pub staticbus: Option<PathBuf>,
    /// A fault the producer makes once, to show that the account catches it.
    pub inject: Fault,
}

/// A fault injected into the queue's producer (for the soak's own tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// None.
    None,
    /// Skip one sequence number without recording it in doubt (a lost message).
    Lose,
    /// Send one message twice (a duplicate).
    Duplicate,
}

/// A small, seedable generator (xorshift64*): the kill schedule only needs to be varied and
/// reproducible, not cryptographic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True once in `n` calls on average.
    fn one_in(&mut self, n: u64) -> bool {
        n > 0 && self.next() % n == 0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses `90`, `90s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 90s, 2m, 1h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------
// The controller.

fn system_toml(exe: &Path, deadline_ms: u64, o: &SoakOptions) -> String {
    let dom = |name: &str, role: &str, seed: u64| {
        format!(
            "[[domain]]\nname = \"{name}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\n\
             emulate = {{ program = {exe:?}, args = [\"soak-domain\", \"{role}\", \"{deadline_ms}\", \
             \"{seed}\", \"{}\", \"{}\", \"{:?}\"] }}\n\n",
            o.self_kill_every, o.rate, o.inject
        )
    };
    let user = |d: &str| format!("{{ domain = \"{d}\", guest = 0x0b00_0000 }}");
    format!(
        "[system]\nname = \"soak\"\n\n[target]\nxen = \"4.20\"\nstatic-shm = true\n\n\
         [platform]\nram = [{{ base = 0x4000_0000, size = \"2GiB\" }}]\n\
         shm-pool = {{ base = 0x7000_0000, size = \"16MiB\" }}\n\n{}{}{}{}\
         [[channel]]\nname = \"q\"\nprotocol = \"queue\"\nfrom = \"producer\"\nto = \"consumer\"\nsize = \"64KiB\"\n\n\
         [[channel]]\nname = \"l\"\nprotocol = \"log\"\nfrom = \"writer\"\nto = \"reader\"\nsize = \"64KiB\"\nslot-size = 64\n\n\
         [[shm]]\nid = \"tally\"\nsize = \"4KiB\"\nusers = [{}, {}, {}, {}]\n",
        dom("producer", "queue-producer", o.seed ^ 1),
        dom("consumer", "queue-consumer", o.seed ^ 2),
        dom("writer", "log-writer", o.seed ^ 3),
        dom("reader", "log-reader", o.seed ^ 4),
        user("producer"),
        user("consumer"),
        user("writer"),
        user("reader"),
    )
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in text.split_whitespace().filter_map(|w| w.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// The pid of the domain program playing `role` (not its launcher), if it runs now.
fn domain_pid(runner: u32, exe: &Path, role: &str) -> Option<u32> {
    descendants(runner).into_iter().find(|&p| {
        let Ok(cmd) = std::fs::read(format!("/proc/{p}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        args.first() == Some(&exe.as_os_str().as_encoded_bytes())
            && args.get(1) == Some(&&b"soak-domain"[..])
            && args.get(2) == Some(&role.as_bytes())
    })
}

/// The value of `key=` in a line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// `staticbus-bench soak`: runs it and prints the account; an error if anything was lost,
/// duplicated or corrupt, or the run failed.
pub fn soak_cmd(o: &SoakOptions) -> Res {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let staticbus = match &o.staticbus {
        Some(p) => p.clone(),
        None => exe.with_file_name("staticbus"),
    };
    if !staticbus.is_file() {
        return Err(format!(
            "{} is missing: build it first (`cargo build -p staticbus -p staticbus-emu-runner \
             --bins`, with --release for a release soak), or pass --staticbus",
            staticbus.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!("staticbus-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let start_ms = unix_ms();
    let deadline_ms = start_ms + o.duration.as_millis() as u64;
    let sys = dir.join("soak.toml");
    std::fs::write(&sys, system_toml(&exe, deadline_ms, o))
        .map_err(|e| format!("{}: {e}", sys.display()))?;
    // Generous: the drain after the deadline is quick, but the machine may be loaded.
    let timeout = o.duration + Duration::from_secs(300);
    let mut child = Command::new(&staticbus)
        .arg("run")
        .arg(&sys)
        .args(["--restart-on-crash", "--max-restarts", "100000000"])
        .args(["--timeout", &timeout.as_secs().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", staticbus.display()))?;
    let output = crate::child::Captured::start(&mut child);
    println!(
        "soak: {} s of random kills (mean interval {} ms, and a self-kill every ~{} messages \
         per domain), {} messages/s per stream, seed {}",
        o.duration.as_secs(),
        o.kill_interval.as_millis(),
        o.self_kill_every,
        o.rate,
        o.seed
    );
    let roles = [
        "queue-producer",
        "queue-consumer",
        "log-writer",
        "log-reader",
    ];
    let mut rng = Rng::new(o.seed);
    let mut kills = [0u64; 4];
    let started = Instant::now();
    let mut next_report = Duration::from_secs(60);
    while unix_ms() < deadline_ms {
        // Exponentially distributed intervals (a Poisson process of kills).
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let wait = o
            .kill_interval
            .mul_f64(-(1.0 - u).ln())
            .min(o.kill_interval * 10);
        let left = Duration::from_millis(deadline_ms.saturating_sub(unix_ms()));
        std::thread::sleep(wait.min(left));
        if unix_ms() >= deadline_ms {
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        let which = rng.below(4) as usize;
        if let Some(pid) = domain_pid(child.id(), &exe, roles[which]) {
            if kill9(pid) {
                kills[which] += 1;
            }
        }
        if started.elapsed() >= next_report {
            println!(
                "soak: {} s, {} kills so far",
                started.elapsed().as_secs(),
                kills.iter().sum::<u64>()
            );
            next_report += Duration::from_secs(60);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the run: {e}"))?;
    let (out, err) = output.finish();
    let _ = std::fs::remove_dir_all(&dir);
    let line = |prefix: &str| {
        out.lines()
            .rfind(|l| l.contains(prefix))
            .map(str::to_string)
    };
    let q = line("SOAK queue ");
    let l = line("SOAK log ");
    let restarts = |dom: &str| -> u64 {
        err.lines()
            .find(|l| l.split_whitespace().next() == Some(dom))
            .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or(0)
    };
    let events = |from: &str| -> u64 {
        err.lines()
            .find(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() == 6 && w[2] == "->" && w[1].starts_with(&format!("{from}:"))
            })
            .and_then(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let (Some(q), Some(l)) = (q, l) else {
        return Err(format!(
            "the run ended without an account ({status}); its output:\n{}\n{err}",
            out.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    };
    let get = |l: &str, k: &str| field(l, k).unwrap_or(u64::MAX);
    let qd = get(&q, "delivered").max(1) as f64;
    let ld = get(&l, "delivered").max(1) as f64;
    println!("\n== soak: {} s, seed {}", o.duration.as_secs(), o.seed);
    println!(
        "{:<7} {:>10} {:>10} {:>6} {:>6} {:>22} {:>8} {:>8}  notifications/msg",
        "stream", "sent", "delivered", "lost", "dup", "mid-message (spec)", "restarts", "kills"
    );
    println!(
        "{:<7} {:>10} {:>10} {:>6} {:>6} {:>22} {:>8} {:>8}  {:.4} (producer→consumer), {:.4} (consumer→producer)",
        "queue",
        get(&q, "sent"),
        get(&q, "delivered"),
        get(&q, "lost"),
        get(&q, "duplicated"),
        format!(
            "{} discarded, {} again",
            get(&q, "discarded"),
            get(&q, "redelivered")
        ),
        format!("{}+{}", restarts("producer"), restarts("consumer")),
        kills[0] + kills[1],
        events("producer") as f64 / qd,
        events("consumer") as f64 / qd,
    );
    println!(
        "{:<7} {:>10} {:>10} {:>6} {:>6} {:>22} {:>8} {:>8}  {:.4} (writer→reader)",
        "log",
        get(&l, "appended"),
        get(&l, "delivered"),
        get(&l, "lost"),
        get(&l, "duplicated"),
        format!(
            "{} missed, {} in hand",
            get(&l, "missed"),
            get(&l, "in_hand")
        ),
        format!("{}+{}", restarts("writer"), restarts("reader")),
        kills[2] + kills[3],
        events("writer") as f64 / ld,
    );
    let bad = ["lost", "duplicated", "corrupt", "unaccounted"]
        .iter()
        .any(|k| field(&q, k).is_some_and(|v| v != 0) || field(&l, k).is_some_and(|v| v != 0));
    if bad || !status.success() {
        return Err(format!(
            "the soak failed ({status}):\n{q}\n{l}\n{}",
            err.lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    println!("PASS nothing lost or duplicated between messages; mid-message outcomes as §3.6 and §4.7 allow");
    Ok(())
}

/// Sends `SIGKILL` to `pid`; whether it was delivered.
fn kill9(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok())
}

// ---------------------------------------------------------------------------------------
// The domains.

struct Domain {
    rng: Rng,
    inject: Fault,
    deadline_ms: u64,
    self_kill_every: u64,
    rate: u64,
}

impl Domain {
    /// Dies here, once in `self_kill_every` calls on average (`SIGKILL`, as the controller's
    /// kills: nothing runs after it).
    fn maybe_die(&mut self) {
        if self.rng.one_in(self.self_kill_every) {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }

    fn past_deadline(&self) -> bool {
        unix_ms() >= self.deadline_ms
    }

    /// Paces a sender: after message `i` of this incarnation, sleeps so that it stays
    /// below `rate` per second.
    fn pace(&self, i: u64, started: Instant) {
        if self.rate == 0 || i % 64 != 0 {
            return;
        }
        let due = Duration::from_secs_f64(i as f64 / self.rate as f64);
        if let Some(d) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(d);
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("soak-domain: {msg}");
    std::process::exit(1)
}

/// Message `seq`: its number, then `seq % 41 + 8` bytes `(seq + i) as u8`.
fn message(seq: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    let n = (seq % 41 + 8) as usize;
    buf.extend((0..n).map(|i| (seq as usize).wrapping_add(i) as u8));
}

fn tally(p: &EmuPlatform) -> staticbus_guest::Region {
    p.region("tally")
        .unwrap_or_else(|| fail("this domain has no `tally` region"))
}

fn word(r: &staticbus_guest::Region, off: usize) -> &AtomicU64 {
    r.atomic::<u64>(off)
        .unwrap_or_else(|| fail("the tally region is too small"))
}

/// `staticbus-bench soak-domain ROLE DEADLINE_MS SEED SELF_KILL_EVERY RATE [FAULT]` (started by
/// `staticbus run` from the description `soak` writes).
pub fn domain_main(args: &[String]) -> Res {
    let num = |i: usize| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            fail("usage: soak-domain ROLE DEADLINE_MS SEED SELF_KILL_EVERY RATE [FAULT]")
        })
    };
    let role = args.first().map(String::as_str).unwrap_or("");
    let mut d = Domain {
        // Every incarnation draws other kill points.
        rng: Rng::new(num(2) ^ u64::from(std::process::id()) ^ (unix_ms() << 20)),
        deadline_ms: num(1),
        self_kill_every: num(3),
        rate: num(4),
        inject: match args.get(5).map(String::as_str) {
            Some("Lose") => Fault::Lose,
            Some("Duplicate") => Fault::Duplicate,
            _ => Fault::None,
        },
    };
    let p = EmuPlatform::connect().map_err(|e| e.to_string())?;
    let t = tally(&p);
    match role {
        "queue-producer" => producer(&p, &t, &mut d),
        "queue-consumer" => consumer(&p, &t, &mut d),
        "log-writer" => writer(&p, &t, &mut d),
        "log-reader" => reader(&p, &t, &mut d),
        _ => Err(format!("unknown soak role `{role}`")),
    }
}

fn producer(p: &EmuPlatform, t: &staticbus_guest::Region, d: &mut Domain) -> Res {
    let (intent, sent, fin) = (word(t, Q_INTENT), word(t, Q_SENT), word(t, Q_FINAL));
    let mut tx = QueueTx::open(p, "q").map_err(|e| format!("open q: {e}"))?;
    let (i, s) = (intent.load(SeqCst), sent.load(SeqCst));
    if i > s {
        // Died between the two stores: message `i` may or may not have been committed.
        let n = word(t, Q_DOUBT_N).load(SeqCst);
        word(t, Q_DOUBTS + 8 * (n as usize % DOUBTS)).store(i, SeqCst);
        word(t, Q_DOUBT_N).store(n + 1, SeqCst);
        sent.store(i, SeqCst);
    }
    let mut seq = i + 1;
    let mut buf = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    if fin.load(SeqCst) == 0 {
        while !d.past_deadline() {
            message(seq, &mut buf);
            intent.store(seq, SeqCst);
            d.maybe_die(); // mid-message: not committed yet
            tx.send(&buf).map_err(|e| format!("send {seq}: {e}"))?;
            if seq >= 1000 && d.inject != Fault::None && word(t, Q_INJECTED).load(SeqCst) == 0 {
                word(t, Q_INJECTED).store(1, SeqCst);
                match d.inject {
                    Fault::Duplicate => tx.send(&buf).map_err(|e| format!("send {seq}: {e}"))?,
                    _ => {
                        seq += 1; // never sent, never recorded
                        intent.store(seq, SeqCst);
                    }
                }
            }
            sent.store(seq, SeqCst);
            d.maybe_die(); // between messages
            seq += 1;
            n += 1;
            d.pace(n, started);
        }
        // The end: a message of its number alone (8 bytes; real ones are longer), sent
        // with the same bookkeeping, so that a kill while sending it is recovered too.
        intent.store(seq, SeqCst);
        tx.send(&seq.to_le_bytes())
            .map_err(|e| format!("send the end {seq}: {e}"))?;
        tx.flush().map_err(|e| format!("flush: {e}"))?;
        sent.store(seq, SeqCst);
        fin.store(seq, SeqCst);
    }
    while word(t, Q_DONE).load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Whether `seq` is one of the producer's in-doubt numbers.
fn in_doubt(t: &staticbus_guest::Region, seq: u64) -> bool {
    let n = word(t, Q_DOUBT_N).load(SeqCst) as usize;
    (n.saturating_sub(DOUBTS)..n).any(|i| word(t, Q_DOUBTS + 8 * (i % DOUBTS)).load(SeqCst) == seq)
}

/// What the consumer did with one message.
enum Step {
    Next,
    Again,
    End,
}

fn consumer(p: &EmuPlatform, t: &staticbus_guest::Region, d: &mut Domain) -> Res {
    let next_w = word(t, Q_NEXT);
    let done = word(t, Q_DONE);
    if (next_w.load(SeqCst) & NEXT_MASK) == 0 {
        next_w.store(1, SeqCst);
    }
    let mut rx = QueueRx::open(p, "q").map_err(|e| format!("open q: {e}"))?;
    let (mut got, mut want) = (vec![0u8; 64], Vec::new());
    // Only the first message of an incarnation can be the one its predecessor held.
    let mut first = true;
    while done.load(SeqCst) == 0 {
        let step = rx
            .recv_in_place(|msg| {
                d.maybe_die(); // holding it, nothing recorded: it comes again
                let len = msg.len();
                if !(8..=got.len()).contains(&len) || msg.read(0, &mut got[..len]).is_err() {
                    word(t, Q_CORRUPT).fetch_add(1, SeqCst);
                    return Step::Again;
                }
                let seq = u64::from_le_bytes(got[..8].try_into().expect("8 bytes"));
                let packed = next_w.load(SeqCst);
                let (next, mut discarded) = (packed & NEXT_MASK, packed >> NEXT_BITS);
                if seq + 1 == next && first {
                    // The one it had recorded but not released when it died (§3.6).
                    word(t, Q_REDELIVERED).fetch_add(1, SeqCst);
                    return Step::Again;
                }
                if seq < next {
                    word(t, Q_DUP).fetch_add(1, SeqCst);
                    return Step::Again;
                }
                for missing in next..seq {
                    if in_doubt(t, missing) {
                        discarded += 1; // its producer died before committing it (§3.6)
                    } else {
                        word(t, Q_LOST).fetch_add(1, SeqCst);
                    }
                }
                let end = len == 8;
                if !end {
                    message(seq, &mut want);
                    if want[..] != got[..len] {
                        word(t, Q_CORRUPT).fetch_add(1, SeqCst);
                    }
                }
                next_w.store((seq + 1) | (discarded << NEXT_BITS), SeqCst);
                if end {
                    done.store(1, SeqCst);
                    return Step::End;
                }
                d.maybe_die(); // recorded, not released: it comes again (§3.6)
                Step::Next
            })
            .map_err(|e| format!("recv: {e}"))?;
        first = false;
        match step {
            Step::End => break,
            Step::Next | Step::Again => d.maybe_die(), // between messages
        }
    }
    let packed = next_w.load(SeqCst);
    let (next, discarded) = (packed & NEXT_MASK, packed >> NEXT_BITS);
    let (lost, dup) = (word(t, Q_LOST).load(SeqCst), word(t, Q_DUP).load(SeqCst));
    // Numbers 1 … next − 2 were sent (next − 1 was the end).
    let sent = next.saturating_sub(2);
    println!(
        "SOAK queue sent={sent} delivered={} discarded={discarded} redelivered={} lost={lost} \
         duplicated={dup} corrupt={} doubts={}",
        sent.saturating_sub(discarded + lost),
        word(t, Q_REDELIVERED).load(SeqCst),
        word(t, Q_CORRUPT).load(SeqCst),
        word(t, Q_DOUBT_N).load(SeqCst),
    );
    Ok(())
}

/// Log record `seq`: its number, then `seq % 33 + 8` bytes `(seq * 7 + i) as u8`.
fn record(seq: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    let n = (seq % 33 + 8) as usize;
    buf.extend((0..n).map(|i| (seq as usize).wrapping_mul(7).wrapping_add(i) as u8));
}

fn writer(p: &EmuPlatform, t: &staticbus_guest::Region, d: &mut Domain) -> Res {
    let mut w = LogWriter::open(p, "l").map_err(|e| format!("open l: {e}"))?;
    let fin = word(t, L_FINAL);
    let mut buf = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    if fin.load(SeqCst) == 0 {
        while !d.past_deadline() {
            record(w.head(), &mut buf);
            w.append(&buf).map_err(|e| format!("append: {e}"))?;
            d.maybe_die(); // between records
            n += 1;
            d.pace(n, started);
        }
        fin.store(w.head() + 1, SeqCst);
    }
    while word(t, L_DONE).load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The reader's account, kept twice in the tally and switched with one store so that a
/// kill never leaves it half written.
#[derive(Clone, Copy, Default)]
struct ReaderState {
    next: u64,
    delivered: u64,
    missed: u64,
    in_hand: u64,
}

/// Offset of the reader's state selector, then its two state copies (4 words each).
const L_SEL: usize = L_NEXT;

fn load_state(t: &staticbus_guest::Region) -> ReaderState {
    let base = L_SEL + 8 + 32 * (word(t, L_SEL).load(SeqCst) as usize & 1);
    let w = |i: usize| word(t, base + 8 * i).load(SeqCst);
    ReaderState {
        next: w(0),
        delivered: w(1),
        missed: w(2),
        in_hand: w(3),
    }
}

fn store_state(t: &staticbus_guest::Region, s: ReaderState) {
    let sel = word(t, L_SEL).load(SeqCst) & 1;
    let base = L_SEL + 8 + 32 * (sel as usize ^ 1);
    for (i, v) in [s.next, s.delivered, s.missed, s.in_hand]
        .into_iter()
        .enumerate()
    {
        word(t, base + 8 * i).store(v, SeqCst);
    }
    word(t, L_SEL).store(sel ^ 1, SeqCst);
}

fn reader(p: &EmuPlatform, t: &staticbus_guest::Region, d: &mut Domain) -> Res {
    let mut r = LogReader::open(p, "l", Start::Resume).map_err(|e| format!("open l: {e}"))?;
    let mut st = load_state(t);
    let pos = r.reader().position();
    if pos > st.next {
        // Returned to the previous incarnation after its last account (§4.7: nothing is
        // returned twice).
        st.in_hand += pos - st.next;
        st.next = pos;
        store_state(t, st);
    } else if pos < st.next {
        word(t, L_DUP).fetch_add(st.next - pos, SeqCst);
    }
    let (mut buf, mut want) = (vec![0u8; 64], Vec::new());
    loop {
        match r.try_read(&mut buf).map_err(|e| format!("read: {e}"))? {
            Some(rec) => {
                d.maybe_die(); // returned, not yet accounted: in hand
                let from = rec.seq - rec.missed;
                if rec.seq < st.next {
                    word(t, L_DUP).fetch_add(1, SeqCst);
                    continue;
                }
                if from != st.next {
                    word(t, L_LOST).fetch_add(from.abs_diff(st.next), SeqCst);
                }
                record(rec.seq, &mut want);
                if want[..] != buf[..rec.len] {
                    word(t, L_CORRUPT).fetch_add(1, SeqCst);
                }
                st.missed += rec.missed;
                st.delivered += 1;
                st.next = rec.seq + 1;
                store_state(t, st);
                d.maybe_die(); // between records
            }
            None => {
                let fin = word(t, L_FINAL).load(SeqCst);
                if fin != 0 && st.next + 1 >= fin {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let head = word(t, L_FINAL).load(SeqCst) - 1;
    let accounted = st.delivered + st.missed + st.in_hand;
    println!(
        "SOAK log appended={head} delivered={} missed={} in_hand={} lost={} duplicated={} \
         corrupt={} unaccounted={}",
        st.delivered,
        st.missed,
        st.in_hand,
        word(t, L_LOST).load(SeqCst),
        word(t, L_DUP).load(SeqCst),
        word(t, L_CORRUPT).load(SeqCst),
        head.abs_diff(accounted),
    );
    word(t, L_DONE).store(1, SeqCst);
    Ok(())
}
