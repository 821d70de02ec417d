//! The two control rings: single-producer single-consumer rings of [`SLOT_SIZE`]-byte
//! slots carrying one virtio-msg message each (docs/virtio.md §4).
//!
//! Indices are free-running u32s: the producer's lives on its own line, the consumer's on
//! the other side's line. Each side keeps its own index privately and only ever writes it
//! to the region, so a peer that scribbles over it changes nothing here; the peer's index
//! is loaded once per operation (acquire) and checked (`prod - cons <= RING_SLOTS`).

use crate::layout::{
    MSG_MAX, OFF_REQ_CONS, OFF_REQ_PROD, OFF_RESP_CONS, OFF_RESP_PROD, REQ_RING_OFFSET,
    RESP_RING_OFFSET, RING_SLOTS, SLOT_SIZE,
};
use crate::msg::{Msg, MsgError};
use core::sync::atomic::Ordering::{Acquire, Release};
use staticbus_guest::Region;

/// Where a ring lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPlace {
    /// Offset of slot 0.
    pub slots: usize,
    /// Offset of the u32 producer index.
    pub prod: usize,
    /// Offset of the u32 consumer index.
    pub cons: usize,
}

/// The request ring: frontend → device.
pub const REQUESTS: RingPlace = RingPlace {
    slots: REQ_RING_OFFSET,
    prod: OFF_REQ_PROD,
    cons: OFF_REQ_CONS,
};

/// The response ring: device → frontend.
pub const RESPONSES: RingPlace = RingPlace {
    slots: RESP_RING_OFFSET,
    prod: OFF_RESP_PROD,
    cons: OFF_RESP_CONS,
};

/// A ring the peer broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The indices say more than [`RING_SLOTS`] messages are in flight.
    Indices {
        /// Producer index read.
        prod: u32,
        /// Consumer index read.
        cons: u32,
    },
    /// The region is too small for the ring (a transport bug, never a peer).
    Region,
}

impl RingPlace {
    fn slot(&self, index: u32) -> usize {
        self.slots + (index % RING_SLOTS) as usize * SLOT_SIZE
    }
}

/// The producing end of a ring.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    place: RingPlace,
    prod: u32,
}

impl Producer {
    /// Takes over a ring whose producer index is `prod` (read once at attach).
    pub fn new(place: RingPlace, prod: u32) -> Producer {
        Producer { place, prod }
    }

    /// Reads the ring's own producer index from the region (at attach).
    pub fn resume(place: RingPlace, region: &Region) -> Result<Producer, RingError> {
        let prod = region
            .load_le::<u32>(place.prod, Acquire)
            .ok_or(RingError::Region)?;
        Ok(Producer::new(place, prod))
    }

    /// The producer index (messages written so far).
    pub fn index(&self) -> u32 {
        self.prod
    }

    /// Free slots now.
    pub fn free(&self, region: &Region) -> Result<u32, RingError> {
        let cons = region
            .load_le::<u32>(self.place.cons, Acquire)
            .ok_or(RingError::Region)?;
        let used = self.prod.wrapping_sub(cons);
        if used > RING_SLOTS {
            return Err(RingError::Indices {
                prod: self.prod,
                cons,
            });
        }
        Ok(RING_SLOTS - used)
    }

    /// Writes `msg` to the next slot and publishes it (release). `Ok(false)`: full.
    pub fn push(&mut self, region: &Region, msg: &Msg) -> Result<bool, RingError> {
        if self.free(region)? == 0 {
            return Ok(false);
        }
        let mut slot = [0u8; SLOT_SIZE];
        slot[..MSG_MAX].copy_from_slice(msg.as_bytes());
        region
            .write_bytes(self.place.slot(self.prod), &slot)
            .map_err(|_| RingError::Region)?;
        self.prod = self.prod.wrapping_add(1);
        region
            .store_le::<u32>(self.place.prod, self.prod, Release)
            .ok_or(RingError::Region)?;
        Ok(true)
    }
}

/// The consuming end of a ring.
#[derive(Clone, Copy, Debug)]
pub struct Consumer {
    place: RingPlace,
    cons: u32,
}

impl Consumer {
    /// Takes over a ring whose consumer index is `cons`.
    pub fn new(place: RingPlace, cons: u32) -> Consumer {
        Consumer { place, cons }
    }

    /// Reads the ring's own consumer index from the region (at attach).
    pub fn resume(place: RingPlace, region: &Region) -> Result<Consumer, RingError> {
        let cons = region
            .load_le::<u32>(place.cons, Acquire)
            .ok_or(RingError::Region)?;
        Ok(Consumer::new(place, cons))
    }

    /// The consumer index (messages consumed so far).
    pub fn index(&self) -> u32 {
        self.cons
    }

    /// Skips everything the producer has published (a restart drops what was in flight).
    /// Returns how many messages were dropped.
    pub fn skip_all(&mut self, region: &Region) -> Result<u32, RingError> {
        let prod = region
            .load_le::<u32>(self.place.prod, Acquire)
            .ok_or(RingError::Region)?;
        // A producer index from nowhere (more than a ring ahead) is taken as it is too.
        let n = prod.wrapping_sub(self.cons);
        self.cons = prod;
        region
            .store_le::<u32>(self.place.cons, self.cons, Release)
            .ok_or(RingError::Region)?;
        Ok(n.min(RING_SLOTS))
    }

    /// Takes the next message: `Ok(None)` if the ring is empty, `Ok(Some(Err(_)))` for a
    /// slot that holds no valid message (consumed all the same).
    pub fn pop(&mut self, region: &Region) -> Result<Option<Result<Msg, MsgError>>, RingError> {
        let prod = region
            .load_le::<u32>(self.place.prod, Acquire)
            .ok_or(RingError::Region)?;
        let avail = prod.wrapping_sub(self.cons);
        if avail == 0 {
            return Ok(None);
        }
        if avail > RING_SLOTS {
            return Err(RingError::Indices {
                prod,
                cons: self.cons,
            });
        }
        let mut raw = [0u8; MSG_MAX];
        region
            .read_bytes(self.place.slot(self.cons), &mut raw)
            .map_err(|_| RingError::Region)?;
        self.cons = self.cons.wrapping_add(1);
        region
            .store_le::<u32>(self.place.cons, self.cons, Release)
            .ok_or(RingError::Region)?;
        Ok(Some(Msg::parse(&raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::id;
    use staticbus_guest::fake::Backing;

    #[test]
    fn fills_drains_and_wraps() {
        let mem = Backing::new(0x2000);
        let r = mem.region(0x2000);
        let mut p = Producer::resume(REQUESTS, &r).unwrap();
        let mut c = Consumer::resume(REQUESTS, &r).unwrap();
        for round in 0..3u16 {
            for i in 0..RING_SLOTS as u16 {
                let m = Msg::new(0, id::EVENT_AVAIL, round * 100 + i, &[i as u8; 8]);
                assert!(p.push(&r, &m).unwrap());
            }
            assert!(!p.push(&r, &Msg::new(0, 1, 0, &[])).unwrap(), "full");
            for i in 0..RING_SLOTS as u16 {
                let m = c.pop(&r).unwrap().unwrap().unwrap();
                assert_eq!(m.token(), round * 100 + i);
                assert_eq!(m.payload(), &[i as u8; 8]);
            }
            assert!(c.pop(&r).unwrap().is_none());
        }
        assert_eq!(p.index(), 3 * RING_SLOTS);
    }

    #[test]
    fn hostile_indices_are_errors() {
        let mem = Backing::new(0x2000);
        let r = mem.region(0x2000);
        let mut c = Consumer::resume(RESPONSES, &r).unwrap();
        r.store_le::<u32>(OFF_RESP_PROD, 1000, Release).unwrap();
        assert_eq!(
            c.pop(&r),
            Err(RingError::Indices {
                prod: 1000,
                cons: 0
            })
        );
        let mut p = Producer::resume(RESPONSES, &r).unwrap();
        assert_eq!(p.index(), 1000, "resumes from its own line");
        r.store_le::<u32>(OFF_RESP_CONS, 980, Release).unwrap();
        assert!(matches!(
            p.push(&r, &Msg::new(0, 1, 0, &[])),
            Err(RingError::Indices { .. })
        ));
        // A garbage slot is consumed and reported.
        r.store_le::<u32>(OFF_RESP_CONS, 0, Release).unwrap();
        let mut p = Producer::new(RESPONSES, 0);
        assert!(p.push(&r, &Msg::new(0, 1, 0, &[])).unwrap());
        r.write_bytes(RESP_RING_OFFSET + 6, &[99, 0]).unwrap();
        let mut c = Consumer::new(RESPONSES, 0);
        assert_eq!(
            c.pop(&r).unwrap(),
            Some(Err(crate::msg::MsgError::BadSize(99)))
        );
        assert_eq!(c.index(), 1);
        // skip_all drops what is in flight.
        assert!(p.push(&r, &Msg::new(0, 1, 0, &[])).unwrap());
        assert_eq!(c.skip_all(&r), Ok(1));
        assert!(c.pop(&r).unwrap().is_none());
    }
}
