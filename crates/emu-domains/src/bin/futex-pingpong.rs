//! `futex-pingpong [ROUND_TRIPS]`: the reference for event-channel latency — two processes
//! ping-pong a counter through a shared memfd with plain futex wait/wake (every message
//! wakes the other side), no hypervisor in between. Prints the same statistics line as
//! `ping-pong`.

use staticbus_emu_domains::{count_arg, Stats};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Instant;

fn wait_for(word: &AtomicU32, want: u32) {
    loop {
        let v = word.load(SeqCst);
        if v == want {
            return;
        }
        let _ = rustix::thread::futex::wait(word, rustix::thread::futex::Flags::empty(), v, None);
    }
}

fn wake(word: &AtomicU32) {
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), 1);
}

fn map(fd: &OwnedFd) -> &'static [AtomicU32; 2] {
    // SAFETY: a fresh shared mapping of one page of the memfd; it is never unmapped (the
    // process exits when done), and AtomicU32 is valid for any bit pattern.
    unsafe {
        let p = rustix::mm::mmap(
            std::ptr::null_mut(),
            4096,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            fd,
            0,
        )
        .expect("mmap");
        &*(p as *const [AtomicU32; 2])
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--pong") {
        let fd: i32 = args[2].parse().expect("fd");
        let n = count_arg(&args, 3, 10_000);
        // SAFETY: the parent passed this fd for our exclusive use.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let w = map(&fd);
        for i in 1..=n as u32 {
            wait_for(&w[0], i);
            w[1].store(i, SeqCst);
            wake(&w[1]);
        }
        return;
    }
    let n = count_arg(&args, 1, 10_000);
    let fd =
        rustix::fs::memfd_create("futex-pingpong", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&fd, 4096).expect("ftruncate");
    let w = map(&fd);
    let raw = fd.as_raw_fd();
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--pong", &raw.to_string(), &n.to_string()]);
    // SAFETY: only an async-signal-safe fcntl between fork and exec, clearing CLOEXEC on the
    // one fd the child needs.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut rtt = Vec::with_capacity(n as usize);
    for i in 1..=n as u32 {
        let t = Instant::now();
        w[0].store(i, SeqCst);
        wake(&w[0]);
        wait_for(&w[1], i);
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    let _ = child.wait();
    println!("futex: {n} round trips, RTT {}", Stats::new(rtt).line());
}
