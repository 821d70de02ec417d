//! Built-in `no_std` backends: a block device on a RAM disk, an entropy source and a
//! console.

mod blk;
mod console;
mod rng;

pub use blk::{RamBlk, BLK_CONFIG_SIZE, F_BLK_FLUSH, SECTOR};
pub use console::{Console, ConsoleIo, CONSOLE_CONFIG_SIZE};
pub use rng::{Entropy, Rng, XorShift};
