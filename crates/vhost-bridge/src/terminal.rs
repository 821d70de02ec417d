//! A terminal for a daemon whose device is its own standard input and output
//! (vhost-device-console's `nested` backend): a pseudo-terminal in raw mode whose other end
//! the bridge holds, and [`UpperEcho`], which writes back every byte the daemon prints there
//! in upper case. With the console daemon, a byte the frontend's driver sends is printed
//! on the terminal and its upper case comes back to the driver as input, so a frontend that
//! sends a byte and waits for its echo checks both directions with at most one byte in
//! flight (vhost-device-console 0.1.0 corrupts input of several bytes in one read;
//! docs/virtio.md).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A pseudo-terminal in raw mode (no echo, no line discipline, no `\n` → `\r\n`):
/// `(controller, user)`; the user end is the daemon's standard input and output.
pub fn raw_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{ioctl_tiocgptpeer, openpt, unlockpt, OpenptFlags};
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    unlockpt(&controller)?;
    let user = ioctl_tiocgptpeer(&controller, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    let mut t = rustix::termios::tcgetattr(&user)?;
    t.make_raw();
    rustix::termios::tcsetattr(&user, rustix::termios::OptionalActions::Now, &t)?;
    Ok((controller, user))
}

/// What the upper-case echo saw: bytes echoed and the complete lines received.
#[derive(Debug, Default)]
pub struct UpperEcho {
    echoed: AtomicU64,
    partial: Mutex<Vec<u8>>,
    lines: Mutex<Vec<String>>,
}

/// Longest line kept (longer ones are cut there and end as if a `\n` had come).
pub const MAX_LINE: usize = 4096;

impl UpperEcho {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes written back so far.
    pub fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// The complete lines received so far (without their `\n`), in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bytes received after the last `\n`.
    pub fn partial(&self) -> Vec<u8> {
        self.partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads `pty` (the controller end) one byte at a time and writes each byte back in
    /// upper case, one byte per write, until the other end is closed; `line` gets each
    /// complete line received (lossily decoded) as it ends.
    pub fn run(&self, pty: OwnedFd, line: &mut dyn FnMut(&str)) {
        self.run_with(pty, &mut |_| {}, line)
    }

    /// [`run`](UpperEcho::run), and `byte` gets every byte received, as it comes and
    /// before its echo is written (e.g. to log what the terminal got, partial lines too).
    pub fn run_with(&self, pty: OwnedFd, byte: &mut dyn FnMut(u8), line: &mut dyn FnMut(&str)) {
        let mut b = [0u8; 1];
        loop {
            match rustix::io::read(&pty, &mut b) {
                Ok(1) => {
                    byte(b[0]);
                    let up = [b[0].to_ascii_uppercase()];
                    if rustix::io::write(&pty, &up).is_err() {
                        return;
                    }
                    self.echoed.fetch_add(1, Ordering::Relaxed);
                    self.keep(b[0], line);
                }
                Err(rustix::io::Errno::INTR) => {}
                // 0 bytes or EIO: the daemon's end is closed.
                _ => return,
            }
        }
    }

    fn keep(&self, b: u8, line: &mut dyn FnMut(&str)) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        if b != b'\n' {
            partial.push(b);
            if partial.len() < MAX_LINE {
                return;
            }
        }
        let l = String::from_utf8_lossy(&partial).into_owned();
        partial.clear();
        drop(partial);
        line(&l);
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_back_in_upper_case_and_lines_are_kept() {
        let (controller, user) = raw_pty().unwrap();
        let echo = std::sync::Arc::new(UpperEcho::new());
        let e = std::sync::Arc::clone(&echo);
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            e.run(controller, &mut |l| seen.push(l.to_string()));
            seen
        });
        let mut back = Vec::new();
        for &b in b"ab\ncD" {
            rustix::io::write(&user, &[b]).unwrap();
            let mut r = [0u8; 1];
            assert_eq!(rustix::io::read(&user, &mut r).unwrap(), 1);
            back.push(r[0]);
        }
        assert_eq!(back, b"AB\nCD");
        drop(user);
        let seen = t.join().unwrap();
        assert_eq!(seen, ["ab"]);
        assert_eq!(echo.lines(), ["ab"]);
        assert_eq!(echo.partial(), b"cD");
        assert_eq!(echo.echoed(), 5);
    }
}
