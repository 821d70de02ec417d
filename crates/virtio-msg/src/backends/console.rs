//! virtio-console (virtio 1.2 §5.3), one port, no multiport: queue 0 carries input to the
//! driver, queue 1 output from it.

use crate::device::{Backend, Refused, F_VERSION_1};
use crate::queue::{QueueError, QueueLayout, SplitQueue};

/// Bytes of configuration space: cols, rows, max_nr_ports, emerg_wr (all zero here).
pub const CONSOLE_CONFIG_SIZE: u32 = 12;

/// The other end of the console: a UART, a log, a test buffer.
pub trait ConsoleIo {
    /// Bytes the driver wrote.
    fn write(&mut self, bytes: &[u8]);
    /// True if input is waiting.
    fn has_input(&self) -> bool;
    /// Takes up to `buf.len()` input bytes; returns how many.
    fn read(&mut self, buf: &mut [u8]) -> usize;
}

/// The console device.
#[derive(Debug)]
pub struct Console<I: ConsoleIo> {
    io: I,
}

impl<I: ConsoleIo> Console<I> {
    /// A console over `io`.
    pub fn new(io: I) -> Self {
        Console { io }
    }

    /// The I/O end.
    pub fn io(&self) -> &I {
        &self.io
    }

    /// The I/O end, mutably (to add input).
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }
}

impl<I: ConsoleIo> Backend for Console<I> {
    fn device_type(&self) -> u32 {
        3
    }

    fn device_features(&self) -> u64 {
        F_VERSION_1
    }

    fn set_driver_features(&mut self, _features: u64) -> Result<(), Refused> {
        Ok(())
    }

    fn config_size(&self) -> u32 {
        CONSOLE_CONFIG_SIZE
    }

    fn read_config(&self, _offset: u32, buf: &mut [u8]) {
        buf.fill(0);
    }

    fn write_config(&mut self, _offset: u32, _data: &[u8]) -> Result<(), Refused> {
        Err(Refused)
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        64
    }

    fn status_changed(&mut self, _status: u8) -> Result<(), Refused> {
        Ok(())
    }

    fn reset(&mut self) {}

    fn queue_set(&mut self, _queue: u16, _layout: QueueLayout) -> Result<(), Refused> {
        Ok(())
    }

    fn queue_reset(&mut self, _queue: u16) {}

    fn notify(&mut self, queue: u16, vq: &mut SplitQueue<'_>) -> Result<(), QueueError> {
        let region = *vq.region();
        let mut buf = [0u8; 256];
        if queue == 0 {
            while self.io.has_input() {
                let Some(chain) = vq.pop()? else { break };
                let room = chain.writable_len().min(buf.len());
                let n = self.io.read(&mut buf[..room]);
                let w = chain.write_at(&region, 0, &buf[..n]);
                vq.add_used(chain.head(), w as u32)?;
            }
        } else {
            while let Some(chain) = vq.pop()? {
                let total = chain.readable_len();
                let mut pos = 0;
                while pos < total {
                    let n = chain.read_at(&region, pos, &mut buf);
                    if n == 0 {
                        break;
                    }
                    self.io.write(&buf[..n]);
                    pos += n;
                }
                vq.add_used(chain.head(), 0)?;
            }
        }
        Ok(())
    }
}
