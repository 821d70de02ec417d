//! The `log` sides: [`LogWriter`] and [`LogReader`].

use super::{declared, AwaitInit, Error, LogReader, LogWriter, Notifier, Side};
use crate::log::{Reader, Record, Start, Writer};
use core::fmt;
use staticbus_guest::manifest::{self, Protocol, Role};
use staticbus_guest::{Events, Platform, Region};

impl Side for Writer {
    const PROTOCOL: Protocol = Protocol::Log;
    const ROLE: Role = Role::Writer;
    const NAME: &'static str = "LogWriter";
    const AWAIT_INIT: AwaitInit = AwaitInit::Never;
    type Args = ();

    /// With the slot size the description declares (`slot-size`, the manifest's
    /// `slot_size`; records of up to [`crate::log::max_record`]`(slot_size)` bytes),
    /// initialising the region on first start and continuing the sequence after a
    /// restart.
    fn attach(region: Region, info: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        let slot_size = declared(info.slot_size, "slot_size")?;
        Ok(Writer::attach(region, info.readers as usize, slot_size)?)
    }

    /// Signals the readers, which may wait for the initialisation.
    fn opened<E: Events>(&mut self, n: &mut Notifier<'_, '_, E>) -> Result<(), Error> {
        n.each_peer()
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("head", &self.head());
    }
}

impl Side for Reader {
    const PROTOCOL: Protocol = Protocol::Log;
    const ROLE: Role = Role::Reader;
    const NAME: &'static str = "LogReader";
    const AWAIT_INIT: AwaitInit = AwaitInit::Event;
    /// Where the reader starts.
    type Args = Start;

    /// As the reader index the manifest gives this domain.
    fn attach(
        region: Region,
        info: &'static manifest::Channel,
        start: &Start,
    ) -> Result<Self, Error> {
        let (readers, index) = (info.readers as usize, info.index as usize);
        Ok(Reader::attach(region, readers, index, *start)?)
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("reader", self);
    }
}

/// The writer end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `log`
/// channel whose writer is this domain; it attaches with the slot size the description
/// declares, initialising the region on first start and continuing the sequence after a
/// restart, and signals the readers, which may wait for the initialisation).
impl<E: Events> LogWriter<'_, E> {
    /// Appends a record (never waits) and signals the readers that wait for one.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), Error> {
        let w = self.side.append(payload)?;
        self.notifier().members(w)
    }

    /// The sequence number the next record gets.
    pub fn head(&self) -> u64 {
        self.side.head()
    }

    /// The protocol handle.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.side
    }
}

impl<'p, E: Events> LogReader<'p, E> {
    /// Opens `name`, which must be a `log` channel this domain reads, and attaches as
    /// the reader index the manifest gives it, starting at `start`; blocks until the
    /// writer has initialised the region.
    pub fn open<P: Platform<Events<'p> = E> + ?Sized>(
        platform: &'p P,
        name: &str,
        start: Start,
    ) -> Result<Self, Error> {
        Self::open_with(platform, name, start)
    }

    /// The next record, waiting (spin, then block) until there is one. Its `missed`
    /// field counts the records overwritten before this reader could read them.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Record, Error> {
        self.wait_until(
            |r| r.read(buf).map_err(Error::Log),
            |r, _| Ok(r.prepare_wait()?),
        )
    }

    /// The next record if there is one now.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<Option<Record>, Error> {
        Ok(self.side.read(buf)?)
    }

    /// The protocol handle.
    pub fn reader(&mut self) -> &mut Reader {
        &mut self.side
    }
}
