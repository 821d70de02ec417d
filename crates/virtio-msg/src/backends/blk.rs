//! virtio-blk (virtio 1.2 §5.2) on a RAM disk: read, write, flush, get-id.

use crate::device::{Backend, Refused, F_VERSION_1};
use crate::queue::{QueueError, QueueLayout, SplitQueue};

/// Sector size.
pub const SECTOR: usize = 512;
/// `VIRTIO_BLK_F_FLUSH`.
pub const F_BLK_FLUSH: u64 = 1 << 9;
/// Bytes of configuration space: capacity, size_max, seg_max, geometry, blk_size.
pub const BLK_CONFIG_SIZE: u32 = 24;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// A block device over `disk` (its length a multiple of [`SECTOR`]; a trailing partial
/// sector is not exposed), with a 20-byte device id.
#[derive(Debug)]
pub struct RamBlk<'d> {
    disk: &'d mut [u8],
    id: [u8; 20],
    queue_size: u16,
    /// Requests served, by type: in, out, flush, get-id, failed.
    pub served: [u64; 5],
}

impl<'d> RamBlk<'d> {
    /// A block device on `disk`, reporting `id` (truncated to 20 bytes) as its id.
    pub fn new(disk: &'d mut [u8], id: &[u8]) -> Self {
        let mut ids = [0u8; 20];
        let n = id.len().min(20);
        ids[..n].copy_from_slice(&id[..n]);
        RamBlk {
            disk,
            id: ids,
            queue_size: 256,
            served: [0; 5],
        }
    }

    /// The disk.
    pub fn disk(&self) -> &[u8] {
        self.disk
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        (self.disk.len() / SECTOR) as u64
    }

    fn config(&self) -> [u8; BLK_CONFIG_SIZE as usize] {
        let mut c = [0u8; BLK_CONFIG_SIZE as usize];
        c[0..8].copy_from_slice(&self.capacity().to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        c
    }

    /// Serves one chain; returns the bytes written to the driver.
    fn serve(&mut self, vq: &SplitQueue<'_>, chain: &crate::queue::Chain) -> Option<u32> {
        let region = *vq.region();
        let mut hdr = [0u8; 16];
        let writable = chain.writable_len();
        if writable == 0 {
            // Nowhere to put the status: the request fails without one.
            self.served[4] += 1;
            return None;
        }
        let status_pos = writable - 1;
        if chain.read_at(&region, 0, &mut hdr) < 16 {
            self.served[4] += 1;
            chain.write_at(&region, status_pos, &[S_IOERR]);
            return Some(1);
        }
        let ty = u32::from_le_bytes(hdr[0..4].try_into().unwrap_or_default());
        let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
        let cap = self.capacity() as usize * SECTOR;
        let span = |len: usize| -> Option<core::ops::Range<usize>> {
            let start = usize::try_from(sector).ok()?.checked_mul(SECTOR)?;
            let end = start.checked_add(len)?;
            (end <= cap && len % SECTOR == 0).then_some(start..end)
        };
        let (status, written) = match ty {
            T_IN => {
                let len = writable - 1;
                match span(len) {
                    Some(r) => {
                        let n = chain.write_at(&region, 0, &self.disk[r]);
                        self.served[0] += 1;
                        (S_OK, n)
                    }
                    None => (S_IOERR, 0),
                }
            }
            T_OUT => {
                let len = chain.readable_len() - 16;
                match span(len) {
                    Some(r) => {
                        chain.read_at(&region, 16, &mut self.disk[r]);
                        self.served[1] += 1;
                        (S_OK, 0)
                    }
                    None => (S_IOERR, 0),
                }
            }
            T_FLUSH => {
                self.served[2] += 1;
                (S_OK, 0)
            }
            T_GET_ID => {
                let n = chain.write_at(&region, 0, &self.id[..(writable - 1).min(20)]);
                self.served[3] += 1;
                (S_OK, n)
            }
            _ => (S_UNSUPP, 0),
        };
        if status != S_OK {
            self.served[4] += 1;
        }
        chain.write_at(&region, status_pos, &[status]);
        Some(written as u32 + 1)
    }
}

impl Backend for RamBlk<'_> {
    fn device_type(&self) -> u32 {
        2
    }

    fn device_features(&self) -> u64 {
        F_VERSION_1 | F_BLK_FLUSH
    }

    fn set_driver_features(&mut self, _features: u64) -> Result<(), Refused> {
        Ok(())
    }

    fn config_size(&self) -> u32 {
        BLK_CONFIG_SIZE
    }

    fn read_config(&self, offset: u32, buf: &mut [u8]) {
        let c = self.config();
        let o = offset as usize;
        buf.copy_from_slice(&c[o..o + buf.len()]);
    }

    fn write_config(&mut self, _offset: u32, _data: &[u8]) -> Result<(), Refused> {
        // Writeback and the other writable fields are not offered.
        Err(Refused)
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
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
            let written = self.serve(vq, &chain).unwrap_or(0);
            vq.add_used(chain.head(), written)?;
        }
        Ok(())
    }
}
