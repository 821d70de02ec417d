//! The `blob` sides: [`BlobWriter`] and [`BlobReader`].

use super::{AwaitInit, BlobReader, BlobWriter, Error, Notifier, Side};
use crate::blob::{Blob, Reader, Writer};
use core::fmt;
use staticbus_guest::manifest::{self, Protocol, Role};
use staticbus_guest::{Events, Region};

impl Side for Writer {
    const PROTOCOL: Protocol = Protocol::Blob;
    const ROLE: Role = Role::Writer;
    const NAME: &'static str = "BlobWriter";
    const AWAIT_INIT: AwaitInit = AwaitInit::Never;
    type Args = ();

    /// Initialises the region on first start; after a restart the current blob stays
    /// visible and versions continue.
    fn attach(region: Region, info: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        Ok(Writer::attach(region, info.readers as usize)?)
    }

    /// Signals the readers, which may wait for the initialisation.
    fn opened<E: Events>(&mut self, n: &mut Notifier<'_, '_, E>) -> Result<(), Error> {
        n.each_peer()
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("version", &self.version());
    }
}

impl Side for Reader {
    const PROTOCOL: Protocol = Protocol::Blob;
    const ROLE: Role = Role::Reader;
    const NAME: &'static str = "BlobReader";
    const AWAIT_INIT: AwaitInit = AwaitInit::Event;
    type Args = ();

    /// As the reader index the manifest gives this domain.
    fn attach(region: Region, info: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        Ok(Reader::attach(
            region,
            info.readers as usize,
            info.index as usize,
        )?)
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("last_read", &self.last_read());
    }
}

/// The writer end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `blob`
/// channel this domain writes; it attaches, initialising the region on first start —
/// after a restart the current blob stays visible and versions continue — and signals
/// the readers, which may wait for the initialisation).
impl<E: Events> BlobWriter<'_, E> {
    /// Publishes a new blob (never waits for readers); returns its version, and signals
    /// the readers that wait for a change.
    pub fn publish(&mut self, blob: &[u8]) -> Result<u64, Error> {
        let (v, w) = self.side.publish(blob)?;
        self.notifier().members(w)?;
        Ok(v)
    }

    /// Largest blob this region holds.
    pub fn capacity(&self) -> usize {
        self.side.capacity()
    }
}

/// A reader end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `blob`
/// channel this domain reads; it attaches as the reader index the manifest gives it,
/// blocking until the writer has initialised the region).
impl<E: Events> BlobReader<'_, E> {
    /// The current blob into `buf` (`None` before the first publish): the old one or the
    /// new one, never a mix; checksum verified.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<Blob>, Error> {
        Ok(self.side.read(buf)?)
    }

    /// Waits (spin, then block) for a version newer than the one last read, then reads
    /// it.
    pub fn read_changed(&mut self, buf: &mut [u8]) -> Result<Option<Blob>, Error> {
        self.wait_until(
            |r| {
                let last = r.last_read();
                Ok(r.changed_since(last)?.then_some(()))
            },
            |r, _| Ok(r.prepare_wait()?),
        )?;
        self.read(buf)
    }
}
