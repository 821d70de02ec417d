//! Virtio between two domains of the emulator (`staticbus run`), with real parts on both
//! sides:
//!
//! - `virtio-blk-frontend`: `virtio-drivers`' `VirtIOBlk`, unchanged, over
//!   `staticbus-virtio-msg`'s frontend transport on a `[[virtio]]` device's region and
//!   event channel, opened by name; runs a seeded [`Workload`] of random 4 KiB writes and
//!   reads, checks every read against what it wrote, recovers from a device restart (the
//!   region's epoch) by re-creating the driver and re-issuing the request it lost, and
//!   reports a digest of the disk it believes it wrote.
//! - `virtio-console-frontend`: `virtio-drivers`' console driver parts (`VirtQueue`, the
//!   negotiation `VirtIOConsole` does) with waits that sleep on the doorbell; sends a text
//!   (or lines of it) one byte at a time, checks each byte's echo, and sends a line again
//!   after a device restart.
//! - `virtio-vhost-backend`: the device side of any `[[virtio]]` device served by a
//!   vhost-user daemon (`serve = { vhost-user = …, args = […] }`). Starts the daemon with
//!   the description's arguments, hands it the region's own memfd as its memory (no copy)
//!   through `staticbus-vhost-bridge`, and serves the virtio-msg control ring with
//!   `msg::serve_with`, woken by the daemon's call eventfds and by an eventfd a thread of
//!   its own signals whenever the emulator announces an event for the domain.
//!
//! This library holds what the programs and their tests share: the workload (so a test can
//! compute the disk the frontend must have written from its seed) and the digest.

/// The block size of the workload (the driver's sectors are 512 bytes; requests are 4 KiB).
pub const BLOCK: usize = 4096;

/// splitmix64: the seeded generator behind the workload.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// One request of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write the block with the data [`Workload::next_op`] filled in.
    Write(usize),
    /// Read the block (and check it against what was written).
    Read(usize),
}

/// A seeded sequence of 4 KiB requests at random blocks of a disk of `blocks` blocks: a
/// write or a read with equal odds, write contents random.
#[derive(Clone, Debug)]
pub struct Workload {
    rng: Rng,
    blocks: usize,
}

impl Workload {
    /// The workload of `seed` over `blocks` blocks (at least one).
    pub fn new(seed: u64, blocks: usize) -> Self {
        assert!(blocks > 0, "a workload needs a disk");
        Self {
            rng: Rng(seed),
            blocks,
        }
    }

    /// The next request; for a write, `data` is filled with its contents (and left alone
    /// for a read).
    pub fn next_op(&mut self, data: &mut [u8; BLOCK]) -> Op {
        let r = self.rng.next_u64();
        let block = ((r >> 1) % self.blocks as u64) as usize;
        if r & 1 == 0 {
            self.rng.fill(data);
            Op::Write(block)
        } else {
            Op::Read(block)
        }
    }
}

/// The disk after the first `ops` requests of the workload of `seed` on a disk that held
/// `initial` (whole blocks).
pub fn expected_disk(initial: &[u8], seed: u64, ops: u64) -> Vec<u8> {
    assert_eq!(initial.len() % BLOCK, 0, "whole blocks");
    let mut disk = initial.to_vec();
    let mut w = Workload::new(seed, initial.len() / BLOCK);
    let mut data = [0u8; BLOCK];
    for _ in 0..ops {
        if let Op::Write(b) = w.next_op(&mut data) {
            disk[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&data);
        }
    }
    disk
}

/// FNV-1a, 64 bits: the digest the frontend reports of the disk it wrote.
pub fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_a_function_of_its_seed_and_mixes_reads_and_writes() {
        let (mut a, mut b) = (Workload::new(7, 512), Workload::new(7, 512));
        let (mut da, mut db) = ([0u8; BLOCK], [0u8; BLOCK]);
        let (mut writes, mut reads) = (0, 0);
        for _ in 0..10_000 {
            let (oa, ob) = (a.next_op(&mut da), b.next_op(&mut db));
            assert_eq!(oa, ob);
            match oa {
                Op::Write(blk) => {
                    assert!(blk < 512);
                    assert_eq!(da, db);
                    writes += 1;
                }
                Op::Read(blk) => {
                    assert!(blk < 512);
                    reads += 1;
                }
            }
        }
        assert!(
            writes > 4_000 && reads > 4_000,
            "{writes} writes, {reads} reads"
        );
        let mut c = Workload::new(8, 512);
        let differs = (0..100).any(|_| c.next_op(&mut db) != a.next_op(&mut da));
        assert!(differs, "another seed, another workload");
    }

    #[test]
    fn expected_disk_applies_exactly_the_writes() {
        let initial = vec![0xa5u8; 4 * BLOCK];
        assert_eq!(expected_disk(&initial, 1, 0), initial);
        let after = expected_disk(&initial, 1, 50);
        let mut w = Workload::new(1, 4);
        let mut data = [0u8; BLOCK];
        let mut last = [None; 4];
        for _ in 0..50 {
            if let Op::Write(b) = w.next_op(&mut data) {
                last[b] = Some(data);
            }
        }
        for (b, l) in last.iter().enumerate() {
            let want = l.map_or(vec![0xa5; BLOCK], |d| d.to_vec());
            assert_eq!(after[b * BLOCK..(b + 1) * BLOCK], want[..], "block {b}");
        }
        assert_ne!(digest(&after), digest(&initial));
    }
}
