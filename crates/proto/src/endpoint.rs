//! Typed endpoints: a channel opened by name through the domain's manifest, checked
//! against the protocol and role the program expects, with the protocol handle attached
//! and the notification discipline built in (spin, then block; notify the peer only when
//! it may be waiting; re-check after every wake-up).
//!
//! ```no_run
//! # fn demo<P: staticbus_guest::Platform>(platform: &P) -> Result<(), staticbus_proto::endpoint::Error> {
//! use staticbus_proto::endpoint::{QueueRx, QueueTx};
//! let mut tx = QueueTx::open(platform, "requests")?; // must be this domain's producer end
//! tx.send(b"hello")?;                               // blocks while the queue is full
//! let mut rx = QueueRx::open(platform, "replies")?;  // must be this domain's consumer end
//! let mut buf = [0u8; 256];
//! let n = rx.recv(&mut buf)?;                        // blocks while the queue is empty
//! # let _ = n; Ok(()) }
//! ```
//!
//! Peers are addressed in the manifest's order, which is the index order of the other
//! role (a writer's peers are the readers 0, 1, …; a reader's are the writers).

use crate::blob;
use crate::header::{HeaderError, Wakeups};
use crate::latest;
use crate::log;
use crate::queue::{self, Consumer, Msg, Producer};
use crate::wait::{self, Spin, WaitStats};
use core::fmt;
use staticbus_guest::manifest::{Protocol, Role};
use staticbus_guest::{Channel, Errno, Events, OpenError, Platform};

/// Why an endpoint operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The channel could not be opened (see [`OpenError`]).
    Open(OpenError),
    /// The manifest declares another protocol for this channel.
    WrongProtocol {
        /// What the program asked for.
        expected: Protocol,
        /// What the manifest says.
        found: Protocol,
    },
    /// This domain has another role in the channel.
    WrongRole {
        /// What the program asked for.
        expected: Role,
        /// What the manifest says.
        found: Role,
    },
    /// The queue protocol failed (header mismatch, broken peer, message too large…).
    Queue(queue::Error),
    /// The log protocol failed.
    Log(log::Error),
    /// The latest-value protocol failed.
    Latest(latest::Error),
    /// The blob protocol failed.
    Blob(blob::Error),
    /// Signalling or waiting on the event channel failed.
    Event(Errno),
    /// The manifest does not give the channel's slot or value size (`slot_size` of a
    /// `log`, `value_size` of a `latest`; manifests of format 2 and later always do).
    Undeclared {
        /// The missing manifest field.
        field: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open(e) => write!(f, "cannot open channel: {e}"),
            Error::WrongProtocol { expected, found } => write!(
                f,
                "the manifest declares protocol `{}`, the program expects `{}`",
                found.as_str(),
                expected.as_str()
            ),
            Error::WrongRole { expected, found } => write!(
                f,
                "this domain is the channel's {}, the program expects {}",
                found.as_str(),
                expected.as_str()
            ),
            Error::Queue(e) => write!(f, "{e}"),
            Error::Log(e) => write!(f, "{e}"),
            Error::Latest(e) => write!(f, "{e}"),
            Error::Blob(e) => write!(f, "{e}"),
            Error::Event(e) => write!(f, "event channel: {e}"),
            Error::Undeclared { field } => write!(
                f,
                "the manifest gives no `{field}` for this channel (built by an older \
                 staticbus? rebuild the system)"
            ),
        }
    }
}

impl core::error::Error for Error {}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        Error::Open(e)
    }
}

impl From<queue::Error> for Error {
    fn from(e: queue::Error) -> Error {
        Error::Queue(e)
    }
}

impl From<blob::Error> for Error {
    fn from(e: blob::Error) -> Error {
        Error::Blob(e)
    }
}

impl From<latest::Error> for Error {
    fn from(e: latest::Error) -> Error {
        Error::Latest(e)
    }
}

impl From<log::Error> for Error {
    fn from(e: log::Error) -> Error {
        Error::Log(e)
    }
}

/// Calls `attach` until the region's initialiser has finished: while it reports
/// `NotInitialized`, calls `idle` (wait for the channel's event, or yield) and tries again.
fn attach_once_initialised<T, E: Into<Error>>(
    mut attach: impl FnMut() -> Result<T, E>,
    mut idle: impl FnMut() -> Result<(), Errno>,
) -> Result<T, Error> {
    loop {
        match attach().map_err(Into::into) {
            Err(e) if e.is_not_initialized() => idle().map_err(Error::Event)?,
            r => return r,
        }
    }
}

impl Error {
    /// The region's initialiser has not finished yet (a protocol's attach reported
    /// `HeaderError::NotInitialized`).
    fn is_not_initialized(&self) -> bool {
        use HeaderError::NotInitialized as N;
        matches!(
            self,
            Error::Queue(queue::Error::Header(N))
                | Error::Log(log::Error::Header(N))
                | Error::Latest(latest::Error::Header(N))
                | Error::Blob(blob::Error::Header(N))
        )
    }
}

/// Opens `name` and checks the manifest's protocol and this domain's role.
fn open_typed<'p, P: Platform + ?Sized>(
    platform: &'p P,
    name: &str,
    protocol: Protocol,
    role: Role,
) -> Result<Channel<'p, P::Events<'p>>, Error> {
    let ch = Channel::open(platform, name)?;
    if ch.protocol() != protocol {
        return Err(Error::WrongProtocol {
            expected: protocol,
            found: ch.protocol(),
        });
    }
    if ch.role() != role {
        return Err(Error::WrongRole {
            expected: role,
            found: ch.role(),
        });
    }
    // The bind-time pending bit (Xen makes the second endpoint start pending) carries
    // no message: drop it before the protocol starts.
    ch.clear_initial();
    Ok(ch)
}

/// A size the manifest declares for `ch` (`field` names it in the error).
fn declared<E: Events>(
    ch: &Channel<'_, E>,
    field: &'static str,
    get: impl Fn(&staticbus_guest::manifest::Channel) -> Option<u32>,
) -> Result<usize, Error> {
    get(ch.info())
        .map(|v| v as usize)
        .ok_or(Error::Undeclared { field })
}

/// Signals every peer of `ch` if `needed` (the protocol said the peer waits).
fn notify_if<E: Events>(
    ch: &Channel<'_, E>,
    notifications: &mut u64,
    needed: bool,
) -> Result<(), Error> {
    if needed {
        *notifications += 1;
        ch.notify_all().map_err(Error::Event)?;
    }
    Ok(())
}

/// Notification counters of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Notifications sent to the peer(s).
    pub notifications: u64,
    /// What the wait loop did (empty polls, blocks).
    pub wait: WaitStats,
}

/// The producer end of a `queue` channel.
pub struct QueueTx<'p, E: Events> {
    ch: Channel<'p, E>,
    q: Producer,
    spin: Spin,
    counters: Counters,
}

impl<E: Events> fmt::Debug for QueueTx<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTx")
            .field("channel", &self.ch.name())
            .field("queue", &self.q)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> QueueTx<'p, E> {
    /// Opens `name`, which must be a `queue` channel whose producer is this domain;
    /// attaches (initialising the region on first start, continuing from its state after
    /// a restart) and signals the consumer, which may be waiting for the initialisation.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Queue, Role::Producer)?;
        let q = Producer::attach(*ch.region())?;
        ch.notify_all().map_err(Error::Event)?;
        Ok(QueueTx {
            ch,
            q,
            spin: Spin::DEFAULT,
            counters: Counters {
                notifications: 1,
                ..Counters::default()
            },
        })
    }

    /// How long to poll before blocking ([`Spin::DEFAULT`] unless changed).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// Publishes the head every `n` messages (see [`Producer::set_batch`]); call
    /// [`QueueTx::flush`] when you stop sending for a while.
    pub fn set_batch(&mut self, n: u32) {
        self.q.set_batch(n);
    }

    /// Sends `msg`, waiting (spin, then block) while the queue is full.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        let ch = &self.ch;
        let notifications = &mut self.counters.notifications;
        let wait_stats = &mut self.counters.wait;
        let notify = wait::until(
            &mut self.q,
            self.spin,
            wait_stats,
            |q| match q.send(msg) {
                Ok(n) => Ok(Some(n)),
                Err(queue::Error::Full) => Ok(None),
                Err(e) => Err(Error::Queue(e)),
            },
            |q| {
                notify_if(ch, notifications, q.flush()?)?;
                Ok(q.prepare_wait(msg.len())?)
            },
            || ch.wait().map(drop).map_err(Error::Event),
        )?;
        notify_if(&self.ch, &mut self.counters.notifications, notify)
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
        f: impl FnOnce(&staticbus_guest::Region) -> T,
    ) -> Result<T, Error> {
        let ch = &self.ch;
        let notifications = &mut self.counters.notifications;
        let wait_stats = &mut self.counters.wait;
        // Wait for room without reserving: a grant borrows the producer, so the record is
        // reserved, filled and committed below in one go once it fits.
        wait::until(
            &mut self.q,
            self.spin,
            wait_stats,
            |q| match q.reserve(len) {
                Ok(_) => Ok(Some(())),
                Err(queue::Error::Full) => Ok(None),
                Err(e) => Err(Error::Queue(e)),
            },
            |q| {
                notify_if(ch, notifications, q.flush()?)?;
                Ok(q.prepare_wait(len)?)
            },
            || ch.wait().map(drop).map_err(Error::Event),
        )?;
        // Only this producer adds records, so the room found above is still there.
        let g = self.q.reserve(len)?;
        let out = f(&g.region());
        let n = g.commit()?;
        notify_if(&self.ch, &mut self.counters.notifications, n)?;
        Ok(out)
    }

    /// Sends `msg` if there is room now: `Ok(false)` if the queue is full.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<bool, Error> {
        match self.q.send(msg) {
            Ok(n) => notify_if(&self.ch, &mut self.counters.notifications, n).map(|()| true),
            Err(queue::Error::Full) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes batched messages and notifies the consumer if it waits.
    pub fn flush(&mut self) -> Result<(), Error> {
        let n = self.q.flush()?;
        notify_if(&self.ch, &mut self.counters.notifications, n)
    }

    /// Notifications sent and wait-loop statistics.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The protocol handle (zero-copy `reserve`/`commit`; notify via
    /// [`QueueTx::channel`] when `commit` says so).
    pub fn producer(&mut self) -> &mut Producer {
        &mut self.q
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel<'p, E> {
        &self.ch
    }
}

/// The consumer end of a `queue` channel.
pub struct QueueRx<'p, E: Events> {
    ch: Channel<'p, E>,
    q: Consumer,
    spin: Spin,
    counters: Counters,
}

impl<E: Events> fmt::Debug for QueueRx<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueRx")
            .field("channel", &self.ch.name())
            .field("queue", &self.q)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> QueueRx<'p, E> {
    /// Opens `name`, which must be a `queue` channel whose consumer is this domain, and
    /// attaches, blocking until the producer has initialised the region.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Queue, Role::Consumer)?;
        let q = attach_once_initialised(|| Consumer::attach(*ch.region()), || ch.wait().map(drop))?;
        Ok(QueueRx {
            ch,
            q,
            spin: Spin::DEFAULT,
            counters: Counters::default(),
        })
    }

    /// How long to poll before blocking ([`Spin::DEFAULT`] unless changed).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// Publishes the tail every `n` messages (see [`Consumer::set_batch`]: a restart
    /// then delivers up to `n - 1` messages again).
    pub fn set_batch(&mut self, n: u32) {
        self.q.set_batch(n);
    }

    /// Receives the next message into `buf`, waiting (spin, then block) while the queue
    /// is empty; returns its length. `Err(Queue(BufferTooSmall))` leaves it queued.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let ch = &self.ch;
        let notifications = &mut self.counters.notifications;
        let wait_stats = &mut self.counters.wait;
        let r = wait::until(
            &mut self.q,
            self.spin,
            wait_stats,
            |q| q.recv(buf).map_err(Error::Queue),
            |q| {
                notify_if(ch, notifications, q.flush()?)?;
                Ok(q.prepare_wait()?)
            },
            || ch.wait().map(drop).map_err(Error::Event),
        )?;
        notify_if(&self.ch, &mut self.counters.notifications, r.notify)?;
        Ok(r.len)
    }

    /// Waits for the next message (spin, then block) and hands it to `f` in place
    /// (zero-copy); releases it when `f` returns, and notifies the producer if it waits
    /// for space. If the domain dies inside `f`, the message is delivered again after a
    /// restart (the queue's at-least-once rule for the message in hand).
    pub fn recv_in_place<T>(&mut self, f: impl FnOnce(&Msg<'_>) -> T) -> Result<T, Error> {
        let ch = &self.ch;
        let notifications = &mut self.counters.notifications;
        let wait_stats = &mut self.counters.wait;
        loop {
            wait::until(
                &mut self.q,
                self.spin,
                wait_stats,
                |q| Ok(q.peek()?.map(drop)),
                |q| {
                    notify_if(ch, notifications, q.flush()?)?;
                    Ok(q.prepare_wait()?)
                },
                || ch.wait().map(drop).map_err(Error::Event),
            )?;
            // Non-empty now; only a hostile producer could make this peek come back
            // empty, in which case wait again.
            if let Some(m) = self.q.peek()? {
                let out = f(&m);
                let n = m.release()?;
                notify_if(&self.ch, &mut self.counters.notifications, n)?;
                return Ok(out);
            }
        }
    }

    /// Receives a message if one is queued: `Ok(None)` if the queue is empty.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        match self.q.recv(buf)? {
            Some(r) => {
                notify_if(&self.ch, &mut self.counters.notifications, r.notify)?;
                Ok(Some(r.len))
            }
            None => Ok(None),
        }
    }

    /// Publishes batched releases and notifies the producer if it waits for space.
    pub fn flush(&mut self) -> Result<(), Error> {
        let n = self.q.flush()?;
        notify_if(&self.ch, &mut self.counters.notifications, n)
    }

    /// Notifications sent and wait-loop statistics.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The protocol handle (zero-copy `peek`/`release`; notify via
    /// [`QueueRx::channel`] when `release` says so).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.q
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel<'p, E> {
        &self.ch
    }
}

/// The bit set of every peer of `ch` (peers beyond 64 cannot exist: see
/// [`crate::header::MAX_MEMBERS`]).
fn all_peers<E: Events>(ch: &Channel<'_, E>) -> u64 {
    match ch.peers().len() {
        n if n >= 64 => u64::MAX,
        n => (1u64 << n) - 1,
    }
}

/// Signals the peers in `w` (a writer's peers are the readers, in index order).
fn notify_members<E: Events>(
    ch: &Channel<'_, E>,
    notifications: &mut u64,
    w: Wakeups,
) -> Result<(), Error> {
    for i in w.iter() {
        *notifications += 1;
        ch.notify(i).map_err(Error::Event)?;
    }
    Ok(())
}

/// The writer end of a `log` channel: appends never wait for readers.
pub struct LogWriter<'p, E: Events> {
    ch: Channel<'p, E>,
    w: log::Writer,
    counters: Counters,
}

impl<E: Events> fmt::Debug for LogWriter<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("channel", &self.ch.name())
            .field("head", &self.w.head())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> LogWriter<'p, E> {
    /// Opens `name`, which must be a `log` channel whose writer is this domain, and
    /// attaches with the slot size the description declares (`slot-size`, the
    /// manifest's `slot_size`; records of up to [`log::max_record`]`(slot_size)` bytes),
    /// initialising the region on first start and continuing the sequence after a
    /// restart; signals the readers, which may wait for the initialisation.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Log, Role::Writer)?;
        let slot_size = declared(&ch, "slot_size", |c| c.slot_size)?;
        let readers = ch.info().readers as usize;
        let w = log::Writer::attach(*ch.region(), readers, slot_size)?;
        let mut counters = Counters::default();
        notify_members(&ch, &mut counters.notifications, Wakeups(all_peers(&ch)))?;
        Ok(LogWriter { ch, w, counters })
    }

    /// Appends a record (never waits) and signals the readers that wait for one.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), Error> {
        let w = self.w.append(payload)?;
        notify_members(&self.ch, &mut self.counters.notifications, w)
    }

    /// The sequence number the next record gets.
    pub fn head(&self) -> u64 {
        self.w.head()
    }

    /// Notifications sent.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The protocol handle.
    pub fn writer(&mut self) -> &mut log::Writer {
        &mut self.w
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel<'p, E> {
        &self.ch
    }
}

/// A reader end of a `log` channel.
pub struct LogReader<'p, E: Events> {
    ch: Channel<'p, E>,
    r: log::Reader,
    spin: Spin,
    counters: Counters,
}

impl<E: Events> fmt::Debug for LogReader<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader")
            .field("channel", &self.ch.name())
            .field("reader", &self.r)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> LogReader<'p, E> {
    /// Opens `name`, which must be a `log` channel this domain reads, and attaches as
    /// the reader index the manifest gives it, starting at `start`; blocks until the
    /// writer has initialised the region.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
        start: log::Start,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Log, Role::Reader)?;
        let (readers, index) = (ch.info().readers as usize, ch.info().index as usize);
        let r = attach_once_initialised(
            || log::Reader::attach(*ch.region(), readers, index, start),
            || ch.wait().map(drop),
        )?;
        Ok(LogReader {
            ch,
            r,
            spin: Spin::DEFAULT,
            counters: Counters::default(),
        })
    }

    /// How long to poll before blocking ([`Spin::DEFAULT`] unless changed).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// The next record, waiting (spin, then block) until there is one. Its `missed`
    /// field counts the records overwritten before this reader could read them.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<log::Record, Error> {
        let ch = &self.ch;
        wait::until(
            &mut self.r,
            self.spin,
            &mut self.counters.wait,
            |r| r.read(buf).map_err(Error::Log),
            |r| Ok(r.prepare_wait()?),
            || ch.wait().map(drop).map_err(Error::Event),
        )
    }

    /// The next record if there is one now.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<log::Record>, Error> {
        Ok(self.r.read(buf)?)
    }

    /// Wait-loop statistics.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The protocol handle.
    pub fn reader(&mut self) -> &mut log::Reader {
        &mut self.r
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel<'p, E> {
        &self.ch
    }
}

/// A writer end of a `latest` channel: its own slot, publishes never wait.
pub struct LatestWriter<'p, E: Events> {
    ch: Channel<'p, E>,
    w: latest::Writer,
    counters: Counters,
}

impl<E: Events> fmt::Debug for LatestWriter<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatestWriter")
            .field("channel", &self.ch.name())
            .field("index", &self.w.index())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> LatestWriter<'p, E> {
    /// Opens `name`, which must be a `latest` channel this domain writes, and attaches
    /// to the slot of the writer index the manifest gives it, for values of the size the
    /// description declares (`value-size`, the manifest's `value_size`). Writer 0
    /// initialises the region; the others block until it has. Signals the readers, which
    /// may wait for the initialisation.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Latest, Role::Writer)?;
        let value_size = declared(&ch, "value_size", |c| c.value_size)?;
        let i = ch.info();
        let (writers, readers, index) = (i.writers as usize, i.readers as usize, i.index as usize);
        // Writers share no event channel: while writer 0 has not initialised the region,
        // poll, yielding the CPU (`Platform::yield_now`) between looks.
        let w = attach_once_initialised(
            || latest::Writer::attach(*ch.region(), writers, readers, index, value_size),
            || platform.yield_now(),
        )?;
        let mut counters = Counters::default();
        notify_members(&ch, &mut counters.notifications, Wakeups(all_peers(&ch)))?;
        Ok(LatestWriter { ch, w, counters })
    }

    /// Publishes `value` with `stamp` (readers pick the highest stamp across writers:
    /// use a clock common to all domains, or a generation number) and signals the
    /// readers that wait for a change.
    pub fn publish(&mut self, stamp: u64, value: &[u8]) -> Result<(), Error> {
        let w = self.w.publish(stamp, value)?;
        notify_members(&self.ch, &mut self.counters.notifications, w)
    }

    /// Notifications sent.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The protocol handle.
    pub fn writer(&mut self) -> &mut latest::Writer {
        &mut self.w
    }
}

/// A reader end of a `latest` channel.
pub struct LatestReader<'p, E: Events> {
    ch: Channel<'p, E>,
    r: latest::Reader,
    spin: Spin,
    counters: Counters,
}

impl<E: Events> fmt::Debug for LatestReader<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatestReader")
            .field("channel", &self.ch.name())
            .field("index", &self.r.index())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> LatestReader<'p, E> {
    /// Opens `name`, which must be a `latest` channel this domain reads, for values of
    /// the size the description declares; blocks until writer 0 has initialised the
    /// region.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Latest, Role::Reader)?;
        let value_size = declared(&ch, "value_size", |c| c.value_size)?;
        let i = ch.info();
        let (writers, readers, index) = (i.writers as usize, i.readers as usize, i.index as usize);
        let r = attach_once_initialised(
            || latest::Reader::attach(*ch.region(), writers, readers, index, value_size),
            || ch.wait().map(drop),
        )?;
        Ok(LatestReader {
            ch,
            r,
            spin: Spin::DEFAULT,
            counters: Counters::default(),
        })
    }

    /// The newest complete value now (`None` before any publish).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<latest::Sample>, Error> {
        Ok(self.r.read_latest(buf)?)
    }

    /// Waits (spin, then block) until the newest value differs from the one last read,
    /// then reads it.
    pub fn read_changed(&mut self, buf: &mut [u8]) -> Result<Option<latest::Sample>, Error> {
        let ch = &self.ch;
        let wait_stats = &mut self.counters.wait;
        let r = wait::until(
            &mut self.r,
            self.spin,
            wait_stats,
            |r| Ok(r.changed().then_some(())),
            |r| Ok(r.prepare_wait()),
            || ch.wait().map(drop).map_err(Error::Event),
        );
        r?;
        self.read(buf)
    }

    /// Wait-loop statistics.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The value size the channel was opened with (the description's `value-size`).
    pub fn value_size(&self) -> usize {
        // `open` refused a manifest without it.
        self.ch.info().value_size.unwrap_or(0) as usize
    }

    /// The protocol handle.
    pub fn reader(&mut self) -> &mut latest::Reader {
        &mut self.r
    }
}

/// The writer end of a `blob` channel.
pub struct BlobWriter<'p, E: Events> {
    ch: Channel<'p, E>,
    w: blob::Writer,
    counters: Counters,
}

impl<E: Events> fmt::Debug for BlobWriter<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("channel", &self.ch.name())
            .field("version", &self.w.version())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> BlobWriter<'p, E> {
    /// Opens `name`, which must be a `blob` channel this domain writes, and attaches
    /// (initialising the region on first start; after a restart the current blob stays
    /// visible and versions continue). Signals the readers, which may wait for the
    /// initialisation.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Blob, Role::Writer)?;
        let w = blob::Writer::attach(*ch.region(), ch.info().readers as usize)?;
        let mut counters = Counters::default();
        notify_members(&ch, &mut counters.notifications, Wakeups(all_peers(&ch)))?;
        Ok(BlobWriter { ch, w, counters })
    }

    /// Publishes a new blob (never waits for readers); returns its version, and signals
    /// the readers that wait for a change.
    pub fn publish(&mut self, blob: &[u8]) -> Result<u64, Error> {
        let (v, w) = self.w.publish(blob)?;
        notify_members(&self.ch, &mut self.counters.notifications, w)?;
        Ok(v)
    }

    /// Largest blob this region holds.
    pub fn capacity(&self) -> usize {
        self.w.capacity()
    }

    /// Notifications sent.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

/// A reader end of a `blob` channel.
pub struct BlobReader<'p, E: Events> {
    ch: Channel<'p, E>,
    r: blob::Reader,
    spin: Spin,
    counters: Counters,
}

impl<E: Events> fmt::Debug for BlobReader<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("channel", &self.ch.name())
            .field("last_read", &self.r.last_read())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p, E: Events> BlobReader<'p, E> {
    /// Opens `name`, which must be a `blob` channel this domain reads, and attaches as
    /// the reader index the manifest gives it; blocks until the writer has initialised
    /// the region.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        let ch = open_typed(platform, name, Protocol::Blob, Role::Reader)?;
        let (readers, index) = (ch.info().readers as usize, ch.info().index as usize);
        let r = attach_once_initialised(
            || blob::Reader::attach(*ch.region(), readers, index),
            || ch.wait().map(drop),
        )?;
        Ok(BlobReader {
            ch,
            r,
            spin: Spin::DEFAULT,
            counters: Counters::default(),
        })
    }

    /// The current blob into `buf` (`None` before the first publish): the old one or the
    /// new one, never a mix; checksum verified.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<blob::Blob>, Error> {
        Ok(self.r.read(buf)?)
    }

    /// Waits (spin, then block) for a version newer than the one last read, then reads
    /// it.
    pub fn read_changed(&mut self, buf: &mut [u8]) -> Result<Option<blob::Blob>, Error> {
        let ch = &self.ch;
        let wait_stats = &mut self.counters.wait;
        let r = wait::until(
            &mut self.r,
            self.spin,
            wait_stats,
            |r| {
                let last = r.last_read();
                Ok(r.changed_since(last)?.then_some(()))
            },
            |r| Ok(r.prepare_wait()?),
            || ch.wait().map(drop).map_err(Error::Event),
        );
        r?;
        self.read(buf)
    }

    /// Wait-loop statistics.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_waits_only_while_not_initialised() {
        // Not initialised twice, then attached: two idle calls, the value returned.
        let (mut tries, mut idles) = (0, 0);
        let r = attach_once_initialised(
            || {
                tries += 1;
                if tries < 3 {
                    Err(blob::Error::Header(HeaderError::NotInitialized))
                } else {
                    Ok(tries)
                }
            },
            || {
                idles += 1;
                Ok(())
            },
        );
        assert_eq!(r.ok(), Some(3));
        assert_eq!(idles, 2);

        // Any other error ends the wait at once, as the protocol's error.
        let mut idles = 0;
        let r: Result<(), Error> = attach_once_initialised(
            || Err(queue::Error::Header(HeaderError::BadRegion { len: 7 })),
            || {
                idles += 1;
                Ok(())
            },
        );
        assert!(matches!(
            r,
            Err(Error::Queue(queue::Error::Header(HeaderError::BadRegion {
                len: 7
            })))
        ));
        assert_eq!(idles, 0);

        // A failing wait ends it too, as an event-channel error.
        let r: Result<(), Error> = attach_once_initialised(
            || Err(log::Error::Header(HeaderError::NotInitialized)),
            || Err(Errno(-22)),
        );
        assert!(matches!(r, Err(Error::Event(Errno(-22)))));
    }
}
