//! virtio-rng (virtio 1.2 §5.4): fills every device-writable buffer from an [`Entropy`]
//! source.

use crate::device::{Backend, Refused, F_VERSION_1};
use crate::queue::{QueueError, QueueLayout, SplitQueue};

/// Where the random bytes come from.
pub trait Entropy {
    /// Fills `buf`.
    fn fill(&mut self, buf: &mut [u8]);
}

/// xorshift64* — deterministic, **not** cryptographic: for tests and for platforms that
/// have nothing better; bring a hardware source for real use.
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl Entropy for XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0 | 1;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The entropy device.
#[derive(Debug)]
pub struct Rng<S: Entropy> {
    source: S,
    /// Bytes handed out.
    pub bytes: u64,
}

impl<S: Entropy> Rng<S> {
    /// An entropy device reading `source`.
    pub fn new(source: S) -> Self {
        Rng { source, bytes: 0 }
    }
}

impl<S: Entropy> Backend for Rng<S> {
    fn device_type(&self) -> u32 {
        4
    }

    fn device_features(&self) -> u64 {
        F_VERSION_1
    }

    fn set_driver_features(&mut self, _features: u64) -> Result<(), Refused> {
        Ok(())
    }

    fn config_size(&self) -> u32 {
        0
    }

    fn read_config(&self, _offset: u32, _buf: &mut [u8]) {}

    fn write_config(&mut self, _offset: u32, _data: &[u8]) -> Result<(), Refused> {
        Err(Refused)
    }

    fn num_queues(&self) -> u16 {
        1
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

    fn notify(&mut self, _queue: u16, vq: &mut SplitQueue<'_>) -> Result<(), QueueError> {
        while let Some(chain) = vq.pop()? {
            let region = *vq.region();
            let total = chain.writable_len();
            let mut done = 0;
            let mut buf = [0u8; 256];
            while done < total {
                let n = (total - done).min(buf.len());
                self.source.fill(&mut buf[..n]);
                done += chain.write_at(&region, done, &buf[..n]).max(1);
            }
            self.bytes += total as u64;
            vq.add_used(chain.head(), total as u32)?;
        }
        Ok(())
    }
}
