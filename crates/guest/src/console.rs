//! A line-buffered `core::fmt::Write` sink over `CONSOLEIO_write`.

use crate::hypercall::{Errno, Hypercall};
use crate::ops;
use core::fmt;

/// Bytes a [`Console`] buffers before it writes without waiting for a newline.
pub const CONSOLE_LINE: usize = 128;

/// Xen's debug console (`console_io(CONSOLEIO_write)`) as a [`fmt::Write`], buffered one
/// line at a time in a fixed [`CONSOLE_LINE`]-byte buffer: a line is written when it ends
/// (`'\n'`, included), when the buffer fills, on [`Console::flush`] and on drop.
///
/// On real Xen this output is printed at guest DEBUG level with a `(d<id>)` prefix, so a
/// release Xen shows it only with `guest_loglvl=all` (spec §5.2); the vPL011 UART is the
/// console that always shows.
pub struct Console<'a, H: Hypercall + ?Sized> {
    h: &'a H,
    buf: [u8; CONSOLE_LINE],
    len: usize,
    error: Option<Errno>,
}

impl<H: Hypercall + ?Sized> fmt::Debug for Console<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("buffered", &self.len)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<'a, H: Hypercall + ?Sized> Console<'a, H> {
    /// A console writing through `h`.
    pub fn new(h: &'a H) -> Self {
        Console {
            h,
            buf: [0; CONSOLE_LINE],
            len: 0,
            error: None,
        }
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The error of the most recent failed write, if any.
    pub fn last_error(&self) -> Option<Errno> {
        self.error
    }

    /// Writes what is buffered. On error the buffered bytes are dropped (so a broken
    /// console cannot wedge the writer) and the error is also kept for
    /// [`Console::last_error`].
    pub fn flush(&mut self) -> Result<(), Errno> {
        let n = core::mem::take(&mut self.len);
        ops::console_write(self.h, &self.buf[..n]).inspect_err(|&e| self.error = Some(e))
    }

    /// Buffers `bytes`, writing each completed line (or full buffer).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        let mut result = Ok(());
        for &b in bytes {
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' || self.len == CONSOLE_LINE {
                result = result.and(self.flush());
            }
        }
        result
    }
}

impl<H: Hypercall + ?Sized> fmt::Write for Console<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

impl<H: Hypercall + ?Sized> Drop for Console<'_, H> {
    fn drop(&mut self) {
        // Nothing useful can be done with an error while dropping.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Call, FakeXen};
    use core::fmt::Write;
    use std::vec;
    use std::vec::Vec;

    fn written(xen: &FakeXen) -> Vec<Vec<u8>> {
        xen.calls(0)
            .into_iter()
            .map(|c| match c {
                Call::Console(b) => b,
                other => panic!("unexpected call {other:?}"),
            })
            .collect()
    }

    #[test]
    fn writes_whole_lines() {
        let xen = FakeXen::new(&[]);
        let d = xen.dom(0);
        let mut c = Console::new(&d);
        write!(c, "abc").unwrap();
        assert!(written(&xen).is_empty());
        assert_eq!(c.buffered(), b"abc");
        write!(c, "def {}\nxy", 42).unwrap();
        assert_eq!(written(&xen), vec![b"abcdef 42\n".to_vec()]);
        writeln!(c, "z").unwrap();
        assert_eq!(written(&xen)[1], b"xyz\n");
        c.write_str("tail").unwrap();
        drop(c);
        assert_eq!(written(&xen)[2], b"tail");
    }

    #[test]
    fn long_lines_are_split_at_the_buffer_size() {
        let xen = FakeXen::new(&[]);
        let d = xen.dom(0);
        let mut c = Console::new(&d);
        let line = [b'x'; CONSOLE_LINE + 10];
        c.write_bytes(&line).unwrap();
        c.write_bytes(b"\n").unwrap();
        let w = written(&xen);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].len(), CONSOLE_LINE);
        assert_eq!(w[1].len(), 11);
        assert_eq!(c.flush(), Ok(()));
        assert_eq!(written(&xen).len(), 2, "an empty flush makes no call");
    }

    #[test]
    fn errors_are_reported_and_do_not_wedge() {
        let xen = FakeXen::new(&[]);
        let d = xen.dom(0);
        let mut c = Console::new(&d);
        xen.set_console_ret(Errno::EPERM.to_ret());
        assert!(writeln!(c, "lost").is_err());
        assert_eq!(c.last_error(), Some(Errno::EPERM));
        assert!(c.buffered().is_empty());
        xen.set_console_ret(0);
        writeln!(c, "ok").unwrap();
        assert_eq!(written(&xen).last().unwrap(), b"ok\n");
    }
}
