//! The `queue` sides: [`QueueTx`] (the producer) and [`QueueRx`] (the consumer).

use super::{AwaitInit, Error, Notifier, QueueRx, QueueTx, Side};
use crate::queue::{self, Consumer, Msg, Producer};
use core::fmt;
use staticbus_guest::manifest::{self, Protocol, Role};
use staticbus_guest::{Events, Region};

impl Side for Producer {
    const PROTOCOL: Protocol = Protocol::Queue;
    const ROLE: Role = Role::Producer;
    const NAME: &'static str = "QueueTx";
    const AWAIT_INIT: AwaitInit = AwaitInit::Never;
    type Args = ();

    /// Initialises the region on first start, continues from its state after a restart.
    fn attach(region: Region, _: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        Ok(Producer::attach(region)?)
    }

    /// Signals the consumer, which may be waiting for the initialisation.
    fn opened<E: Events>(&mut self, n: &mut Notifier<'_, '_, E>) -> Result<(), Error> {
        n.all_if(true)
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("queue", self);
    }
}

impl Side for Consumer {
    const PROTOCOL: Protocol = Protocol::Queue;
    const ROLE: Role = Role::Consumer;
    const NAME: &'static str = "QueueRx";
    const AWAIT_INIT: AwaitInit = AwaitInit::Event;
    type Args = ();

    fn attach(region: Region, _: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        Ok(Consumer::attach(region)?)
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("queue", self);
    }
}

/// The producer end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `queue` channel whose producer
/// is this domain; it attaches, initialising the region on first start and continuing
/// from its state after a restart, and signals the consumer, which may be waiting for
/// the initialisation).
impl<E: Events> QueueTx<'_, E> {
    /// Publishes the head every `n` messages (see [`Producer::set_batch`]); call
    /// [`QueueTx::flush`] when you stop sending for a while.
    pub fn set_batch(&mut self, n: u32) {
        self.side.set_batch(n);
    }

    /// Sends `msg`, waiting (spin, then block) while the queue is full.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        let notify = self.wait_until(
            |q| match q.send(msg) {
                Ok(n) => Ok(Some(n)),
                Err(queue::Error::Full) => Ok(None),
                Err(e) => Err(Error::Queue(e)),
            },
            |q, n| {
                n.all_if(q.flush()?)?;
                Ok(q.prepare_wait(msg.len())?)
            },
        )?;
        self.notifier().all_if(notify)
    }

    /// Sends a `len`-byte message written in place (zero-copy), waiting (spin, then
    /// block) while the queue is full: reserves the record, hands its payload region of
    /// exactly `len` bytes to `f`, then commits it and notifies the consumer if it waits.
    /// `f` runs once, after the wait; nothing is visible to the consumer before it
    /// returns. `Err(Queue(TooLarge))` (without calling `f`) if no record of `len` bytes
    /// ever fits.
    pub fn send_in_place<T>(
        &mut self,
        len: usize,
        f: impl FnOnce(&Region) -> T,
    ) -> Result<T, Error> {
        // Wait for room without reserving: a grant borrows the producer, so the record is
        // reserved, filled and committed below in one go once it fits.
        self.wait_until(
            |q| match q.reserve(len) {
                Ok(_) => Ok(Some(())),
                Err(queue::Error::Full) => Ok(None),
                Err(e) => Err(Error::Queue(e)),
            },
            |q, n| {
                n.all_if(q.flush()?)?;
                Ok(q.prepare_wait(len)?)
            },
        )?;
        // Only this producer adds records, so the room found above is still there.
        let (q, mut n) = self.parts();
        let g = q.reserve(len)?;
        let out = f(&g.region());
        n.all_if(g.commit()?)?;
        Ok(out)
    }

    /// Sends `msg` if there is room now: `Ok(false)` if the queue is full.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<bool, Error> {
        match self.side.send(msg) {
            Ok(n) => self.notifier().all_if(n).map(|()| true),
            Err(queue::Error::Full) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes batched messages and notifies the consumer if it waits.
    pub fn flush(&mut self) -> Result<(), Error> {
        let n = self.side.flush()?;
        self.notifier().all_if(n)
    }

    /// The protocol handle (zero-copy `reserve`/`commit`; notify via
    /// [`QueueTx::channel`] when `commit` says so).
    pub fn producer(&mut self) -> &mut Producer {
        &mut self.side
    }
}

/// The consumer end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `queue` channel whose consumer
/// is this domain; it attaches, blocking until the producer has initialised the region).
impl<E: Events> QueueRx<'_, E> {
    /// Publishes the tail every `n` messages (see [`Consumer::set_batch`]: a restart
    /// then delivers up to `n - 1` messages again).
    pub fn set_batch(&mut self, n: u32) {
        self.side.set_batch(n);
    }

    /// Receives the next message into `buf`, waiting (spin, then block) while the queue
    /// is empty; returns its length. `Err(Queue(BufferTooSmall))` leaves it queued.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let r = self.wait_until(
            |q| q.recv(buf).map_err(Error::Queue),
            |q, n| {
                n.all_if(q.flush()?)?;
                Ok(q.prepare_wait()?)
            },
        )?;
        self.notifier().all_if(r.notify)?;
        Ok(r.len)
    }

    /// Waits for the next message (spin, then block) and hands it to `f` in place
    /// (zero-copy); releases it when `f` returns, and notifies the producer if it waits
    /// for space. If the domain dies inside `f`, the message is delivered again after a
    /// restart (the queue's at-least-once rule for the message in hand).
    pub fn recv_in_place<T>(&mut self, f: impl FnOnce(&Msg<'_>) -> T) -> Result<T, Error> {
        loop {
            self.wait_until(
                |q| Ok(q.peek()?.map(drop)),
                |q, n| {
                    n.all_if(q.flush()?)?;
                    Ok(q.prepare_wait()?)
                },
            )?;
            // Non-empty now; only a hostile producer could make this peek come back
            // empty, in which case wait again.
            let (q, mut n) = self.parts();
            if let Some(m) = q.peek()? {
                let out = f(&m);
                n.all_if(m.release()?)?;
                return Ok(out);
            }
        }
    }

    /// Receives a message if one is queued: `Ok(None)` if the queue is empty.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        match self.side.recv(buf)? {
            Some(r) => {
                self.notifier().all_if(r.notify)?;
                Ok(Some(r.len))
            }
            None => Ok(None),
        }
    }

    /// Publishes batched releases and notifies the producer if it waits for space.
    pub fn flush(&mut self) -> Result<(), Error> {
        let n = self.side.flush()?;
        self.notifier().all_if(n)
    }

    /// The protocol handle (zero-copy `peek`/`release`; notify via
    /// [`QueueRx::channel`] when `release` says so).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.side
    }
}
