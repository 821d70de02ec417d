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
//! There is one endpoint type, [`Endpoint`], generic over the protocol's [`Side`]: the
//! protocol handle of one role (a queue's [`Producer`](crate::queue::Producer), a log's
//! [`Reader`](crate::log::Reader), …). The endpoint does what every protocol needs — open
//! the channel by name, check the manifest's protocol and this domain's role, drop the
//! bind-time event, attach (waiting while the peer has not initialised the region), count
//! notifications, spin then block — and each side adds its operations (`send`, `append`,
//! `read_changed`, …) in its own file of this module. The eight names programs use are
//! aliases: [`QueueTx`], [`QueueRx`], [`LogWriter`], [`LogReader`], [`LatestWriter`],
//! [`LatestReader`], [`BlobWriter`], [`BlobReader`]. A new protocol implements [`Side`]
//! for its handles and writes its operations with [`Endpoint::wait_until`] and
//! [`Notifier`] (docs/adr/0008-one-generic-endpoint.md).
//!
//! Peers are addressed in the manifest's order, which is the index order of the other
//! role (a writer's peers are the readers 0, 1, …; a reader's are the writers).

use crate::header::{HeaderError, Wakeups};
use crate::wait::{self, Spin, WaitStats};
use crate::{blob, latest, log};
use core::fmt;
use staticbus_guest::manifest::{self, Protocol, Role};
use staticbus_guest::{Channel, Errno, Events, OpenError, Platform, Region};

mod blob_ends;
mod latest_ends;
mod log_ends;
mod queue_ends;

/// The producer end of a `queue` channel.
pub type QueueTx<'p, E> = Endpoint<'p, E, crate::queue::Producer>;
/// The consumer end of a `queue` channel.
pub type QueueRx<'p, E> = Endpoint<'p, E, crate::queue::Consumer>;
/// The writer end of a `log` channel: appends never wait for readers.
pub type LogWriter<'p, E> = Endpoint<'p, E, log::Writer>;
/// A reader end of a `log` channel.
pub type LogReader<'p, E> = Endpoint<'p, E, log::Reader>;
/// A writer end of a `latest` channel: its own slot, publishes never wait.
pub type LatestWriter<'p, E> = Endpoint<'p, E, latest::Writer>;
/// A reader end of a `latest` channel.
pub type LatestReader<'p, E> = Endpoint<'p, E, latest::Reader>;
/// The writer end of a `blob` channel.
pub type BlobWriter<'p, E> = Endpoint<'p, E, blob::Writer>;
/// A reader end of a `blob` channel.
pub type BlobReader<'p, E> = Endpoint<'p, E, blob::Reader>;

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
    Queue(crate::queue::Error),
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

impl From<crate::queue::Error> for Error {
    fn from(e: crate::queue::Error) -> Error {
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

impl Error {
    /// The region's initialiser has not finished yet (a protocol's attach reported
    /// `HeaderError::NotInitialized`).
    fn is_not_initialized(&self) -> bool {
        use HeaderError::NotInitialized as N;
        matches!(
            self,
            Error::Queue(crate::queue::Error::Header(N))
                | Error::Log(log::Error::Header(N))
                | Error::Latest(latest::Error::Header(N))
                | Error::Blob(blob::Error::Header(N))
        )
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

/// A size the manifest declares for a channel (`field` names it in the error).
fn declared(value: Option<u32>, field: &'static str) -> Result<usize, Error> {
    value.map(|v| v as usize).ok_or(Error::Undeclared { field })
}

/// What an [`Endpoint`]'s open does while its [`Side::attach`] reports that the region's
/// initialiser has not finished (`Header(NotInitialized)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwaitInit {
    /// Nothing: this side initialises the region, its attach's errors are final.
    Never,
    /// Wait for the channel's event (the initialiser signals once it has attached), then
    /// try again.
    Event,
    /// Yield the CPU ([`Platform::yield_now`]) and try again: for a side that shares no
    /// event channel with the initialiser (a `latest` writer other than writer 0).
    Yield,
}

/// One role of a protocol, as an [`Endpoint`] holds it: the protocol's handle of that
/// role. Implemented by [`crate::queue::Producer`] and [`crate::queue::Consumer`],
/// [`log::Writer`] and [`log::Reader`], [`latest::Writer`] and [`latest::Reader`],
/// [`blob::Writer`] and [`blob::Reader`]; a new protocol implements it for its handles,
/// then writes its operations as an `impl` block of `Endpoint<'p, E, ItsHandle>`.
pub trait Side: Sized {
    /// The protocol the manifest must declare for the channel.
    const PROTOCOL: Protocol;
    /// The role the manifest must give this domain.
    const ROLE: Role;
    /// The name `Debug` shows (the alias programs use, such as `"QueueTx"`).
    const NAME: &'static str;
    /// What open does while the region is not initialised yet.
    const AWAIT_INIT: AwaitInit;
    /// What open needs beyond the manifest (a log reader's [`log::Start`]; `()` for most).
    type Args;

    /// Attaches to the channel's `region` as the manifest entry `info` says (its sizes,
    /// member counts and index). Called again after each wait while it fails with the
    /// protocol's `Header(NotInitialized)` (see [`Side::AWAIT_INIT`]).
    fn attach(
        region: Region,
        info: &'static manifest::Channel,
        args: &Self::Args,
    ) -> Result<Self, Error>;

    /// Runs once after `attach`, before open returns: signals the peers that may wait
    /// for the initialisation (the writing sides do). Nothing by default.
    fn opened<E: Events>(&mut self, notify: &mut Notifier<'_, '_, E>) -> Result<(), Error> {
        let _ = notify;
        Ok(())
    }

    /// Adds this side's state to the endpoint's `Debug` output.
    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>);
}

/// Notification counters of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Notifications sent to the peer(s).
    pub notifications: u64,
    /// What the wait loop did (empty polls, blocks).
    pub wait: WaitStats,
}

/// An open channel of protocol `S::PROTOCOL` in role `S::ROLE`: the channel, the
/// protocol handle `S`, the spin budget and the counters. Programs name it by its
/// aliases ([`QueueTx`], [`LogReader`], …); the operations are in each side's `impl`.
pub struct Endpoint<'p, E: Events, S> {
    ch: Channel<'p, E>,
    side: S,
    spin: Spin,
    counters: Counters,
}

impl<E: Events, S: Side> fmt::Debug for Endpoint<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(S::NAME);
        d.field("channel", &self.ch.name());
        self.side.debug_fields(&mut d);
        d.field("counters", &self.counters).finish()
    }
}

impl<'p, E: Events, S: Side> Endpoint<'p, E, S> {
    /// Opens `name`, which must be a channel of protocol `S::PROTOCOL` in which this
    /// domain has role `S::ROLE`; drops the bind-time event, attaches with the
    /// manifest's parameters and `args` (waiting as [`Side::AWAIT_INIT`] says while the
    /// region is not initialised), then lets the side signal its peers
    /// ([`Side::opened`]).
    pub fn open_with<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
        args: S::Args,
    ) -> Result<Self, Error> {
        let ch = Channel::open(platform, name)?;
        if ch.protocol() != S::PROTOCOL {
            return Err(Error::WrongProtocol {
                expected: S::PROTOCOL,
                found: ch.protocol(),
            });
        }
        if ch.role() != S::ROLE {
            return Err(Error::WrongRole {
                expected: S::ROLE,
                found: ch.role(),
            });
        }
        // The bind-time pending bit (Xen makes the second endpoint start pending) carries
        // no message: drop it before the protocol starts.
        ch.clear_initial();
        let attach = || S::attach(*ch.region(), ch.info(), &args);
        let side = match S::AWAIT_INIT {
            AwaitInit::Never => attach()?,
            AwaitInit::Event => attach_once_initialised(attach, || ch.wait().map(drop))?,
            AwaitInit::Yield => attach_once_initialised(attach, || platform.yield_now())?,
        };
        let mut ep = Endpoint {
            ch,
            side,
            spin: Spin::DEFAULT,
            counters: Counters::default(),
        };
        let (side, mut notify) = ep.parts();
        side.opened(&mut notify)?;
        Ok(ep)
    }

    /// How long to poll before blocking ([`Spin::DEFAULT`] unless changed; ends that
    /// never wait ignore it).
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    /// Notifications sent and wait-loop statistics.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel<'p, E> {
        &self.ch
    }

    /// The protocol handle.
    pub fn side(&self) -> &S {
        &self.side
    }

    /// The protocol handle and a [`Notifier`] for the peers, borrowed together (for a
    /// zero-copy operation that signals while it holds the handle's grant).
    pub fn parts(&mut self) -> (&mut S, Notifier<'_, 'p, E>) {
        (
            &mut self.side,
            Notifier {
                ch: &self.ch,
                notifications: &mut self.counters.notifications,
            },
        )
    }

    /// The [`Notifier`] of this endpoint's peers.
    pub fn notifier(&mut self) -> Notifier<'_, 'p, E> {
        self.parts().1
    }

    /// Runs `step` on the handle until it yields a value, spinning then blocking on the
    /// channel's event ([`wait::until`] with this endpoint's spin budget and counters):
    /// `step` returns `Ok(None)` for "nothing to do yet"; `prepare` (the protocol's
    /// `prepare_wait`, which may first publish and notify through the [`Notifier`])
    /// returns `Ok(true)` when blocking is safe.
    #[inline]
    pub fn wait_until<T>(
        &mut self,
        step: impl FnMut(&mut S) -> Result<Option<T>, Error>,
        mut prepare: impl FnMut(&mut S, &mut Notifier<'_, 'p, E>) -> Result<bool, Error>,
    ) -> Result<T, Error> {
        let ch = &self.ch;
        let mut notify = Notifier {
            ch,
            notifications: &mut self.counters.notifications,
        };
        wait::until(
            &mut self.side,
            self.spin,
            &mut self.counters.wait,
            step,
            |s| prepare(s, &mut notify),
            || ch.wait().map(drop).map_err(Error::Event),
        )
    }
}

impl<'p, E: Events, S: Side<Args = ()>> Endpoint<'p, E, S> {
    /// [`Endpoint::open_with`] for a side that needs nothing beyond the manifest.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
    ) -> Result<Self, Error> {
        Self::open_with(platform, name, ())
    }
}

/// Signals an endpoint's peers and counts the notifications (see [`Endpoint::parts`]).
pub struct Notifier<'a, 'p, E: Events> {
    ch: &'a Channel<'p, E>,
    notifications: &'a mut u64,
}

impl<E: Events> Notifier<'_, '_, E> {
    /// Signals every peer if `needed` (the protocol said the peer waits), counting one
    /// notification; tries every peer and returns the first error.
    #[inline]
    pub fn all_if(&mut self, needed: bool) -> Result<(), Error> {
        if needed {
            *self.notifications += 1;
            self.ch.notify_all().map_err(Error::Event)?;
        }
        Ok(())
    }

    /// Signals the peers in `w` (a writer's peers are the readers, in index order),
    /// counting one notification each; stops at the first error.
    #[inline]
    pub fn members(&mut self, w: Wakeups) -> Result<(), Error> {
        for i in w.iter() {
            *self.notifications += 1;
            self.ch.notify(i).map_err(Error::Event)?;
        }
        Ok(())
    }

    /// Signals each peer in turn ([`Notifier::members`] of all of them; peers beyond 64
    /// cannot exist: see [`crate::header::MAX_MEMBERS`]).
    pub fn each_peer(&mut self) -> Result<(), Error> {
        let all = match self.ch.peers().len() {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        self.members(Wakeups(all))
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
            || {
                Err(crate::queue::Error::Header(HeaderError::BadRegion {
                    len: 7,
                }))
            },
            || {
                idles += 1;
                Ok(())
            },
        );
        assert!(matches!(
            r,
            Err(Error::Queue(crate::queue::Error::Header(
                HeaderError::BadRegion { len: 7 }
            )))
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
