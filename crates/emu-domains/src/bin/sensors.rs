//! `sensors sensor N | config V | monitor NA NB V`: redundant `latest` writers and a
//! `blob` configuration store (see examples/sensors/system.toml).
//!
//! A sensor publishes readings 1..=N: 16 bytes, the reading number and
//! `number * 7 + writer index`, stamped with CLOCK_MONOTONIC (common to all domains, like
//! the Arm generic timer). The config domain publishes versions 1..=V of a blob whose
//! bytes are derived from the version. The monitor waits for changes and checks that every
//! reading is intact and that no writer's readings go backwards, that every blob it reads
//! matches its version (old or new, never a mix), and that it ends with reading NA from
//! writer 0, reading NB from writer 1 and blob version V.

use staticbus_emu_domains::{connect, count_arg};
use staticbus_proto::endpoint::{BlobReader, BlobWriter, Error, LatestReader, LatestWriter};
use staticbus_proto::{blob, latest};

fn fail(msg: &str) -> ! {
    eprintln!("FAIL {msg}");
    std::process::exit(1);
}

fn or_fail<T>(what: &str, r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| fail(&format!("{what}: {e}")))
}

/// Contended reads in a row after which a writer counts as stuck mid-write.
const MAX_CONTENDED_IN_A_ROW: u32 = 100_000;

/// Reads through contention: a reader gives up after a bounded number of tries when a
/// writer is caught mid-write again and again (a writer preempted on a loaded host); that
/// is the protocols' report, not a failure, so the monitor yields and tries again, and
/// counts how often, but fails once a writer stays mid-write for
/// [`MAX_CONTENDED_IN_A_ROW`] attempts. Any other error fails.
fn read_through<T>(
    what: &str,
    contended: &mut u64,
    mut read: impl FnMut() -> Result<T, Error>,
) -> T {
    for _ in 0..MAX_CONTENDED_IN_A_ROW {
        match read() {
            Err(
                Error::Latest(latest::Error::Contended(_)) | Error::Blob(blob::Error::Contended),
            ) => {
                *contended += 1;
                std::thread::yield_now();
            }
            r => return or_fail(what, r),
        }
    }
    fail(&format!(
        "{what}: a writer stayed mid-write for {MAX_CONTENDED_IN_A_ROW} reads"
    ))
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn reading(n: u64, writer: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&n.to_le_bytes());
    v[8..].copy_from_slice(&(n * 7 + writer).to_le_bytes());
    v
}

fn settings(version: u64) -> Vec<u8> {
    let len = 100 + (version as usize * 37) % 3000;
    (0..len).map(|i| (i as u64 ^ version) as u8).collect()
}

fn sensor(n: u64) {
    let p = connect();
    let mut w = or_fail("open", LatestWriter::open(&p, "reading"));
    let index = w.writer().index() as u64;
    for i in 1..=n {
        or_fail("publish", w.publish(now_ns(), &reading(i, index)));
    }
    println!("sensor {index}: published {n} readings");
}

fn config(versions: u64) {
    let p = connect();
    let mut w = or_fail("open", BlobWriter::open(&p, "settings"));
    for v in 1..=versions {
        let got = or_fail("publish", w.publish(&settings(v)));
        if got != v {
            fail(&format!("published version {got}, expected {v}"));
        }
    }
    println!("config: published {versions} versions");
}

fn monitor(na: u64, nb: u64, versions: u64) {
    let p = connect();
    let mut cfg = or_fail("open settings", BlobReader::open(&p, "settings"));
    let mut buf = vec![0u8; 4096];
    let (mut blobs, mut last_v, mut contended) = (0u64, 0u64, 0u64);
    while last_v < versions {
        let Some(b) = read_through("read blob", &mut contended, || cfg.read_changed(&mut buf))
        else {
            continue;
        };
        if b.version < last_v || buf[..b.len] != settings(b.version)[..] {
            fail(&format!("blob version {} is mixed or went back", b.version));
        }
        last_v = b.version;
        blobs += 1;
    }
    let mut rd = or_fail("open reading", LatestReader::open(&p, "reading"));
    let (mut last, mut from) = ([0u64; 2], [0u64; 2]);
    let mut v = [0u8; 16];
    while last != [na, nb] {
        let Some(s) = read_through("read", &mut contended, || rd.read_changed(&mut v)) else {
            continue;
        };
        let n = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
        let check = u64::from_le_bytes(v[8..].try_into().expect("8 bytes"));
        if s.writer > 1 || check != n * 7 + s.writer as u64 {
            fail(&format!("torn reading {n} from writer {}", s.writer));
        }
        if n < last[s.writer] {
            fail(&format!(
                "writer {} went back: {n} after {}",
                s.writer, last[s.writer]
            ));
        }
        last[s.writer] = n;
        from[s.writer] += 1;
        // The other writer's slot may hold a newer final value than the newest overall
        // sample shows; look at both slots directly.
        for (w, last) in last.iter_mut().enumerate() {
            if let Ok(Some(_)) = rd.reader().read_writer(w, &mut v) {
                let n = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
                *last = (*last).max(n);
            }
        }
    }
    println!(
        "monitor: {blobs} blob reads up to version {last_v}, none mixed; newest readings from A {} times, from B {} times, none torn",
        from[0], from[1]
    );
    println!(
        "monitor: {contended} reads found a writer mid-write after every retry and were retried"
    );
    println!("PASS sensors");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sensor") => sensor(count_arg(&args, 2, 20_000)),
        Some("config") => config(count_arg(&args, 2, 50)),
        Some("monitor") => monitor(
            count_arg(&args, 2, 20_000),
            count_arg(&args, 3, 5_000),
            count_arg(&args, 4, 50),
        ),
        _ => {
            eprintln!("usage: sensors sensor N | config VERSIONS | monitor NA NB VERSIONS");
            std::process::exit(2);
        }
    }
}
