//! The `latest` sides: [`LatestWriter`] and [`LatestReader`].

use super::{declared, AwaitInit, Error, LatestReader, LatestWriter, Notifier, Side};
use crate::latest::{Reader, Sample, Writer};
use core::fmt;
use staticbus_guest::manifest::{self, Protocol, Role};
use staticbus_guest::{Events, Region};

impl Side for Writer {
    const PROTOCOL: Protocol = Protocol::Latest;
    const ROLE: Role = Role::Writer;
    const NAME: &'static str = "LatestWriter";
    /// Writers share no event channel: while writer 0 has not initialised the region,
    /// the others poll, yielding the CPU between looks.
    const AWAIT_INIT: AwaitInit = AwaitInit::Yield;
    type Args = ();

    /// To the slot of the writer index the manifest gives this domain, for values of
    /// the size the description declares (`value-size`, the manifest's `value_size`).
    /// Writer 0 initialises the region.
    fn attach(region: Region, info: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        let value_size = declared(info.value_size, "value_size")?;
        let (writers, readers, index) = (
            info.writers as usize,
            info.readers as usize,
            info.index as usize,
        );
        Ok(Writer::attach(region, writers, readers, index, value_size)?)
    }

    /// Signals the readers, which may wait for the initialisation.
    fn opened<E: Events>(&mut self, n: &mut Notifier<'_, '_, E>) -> Result<(), Error> {
        n.each_peer()
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("index", &self.index());
    }
}

impl Side for Reader {
    const PROTOCOL: Protocol = Protocol::Latest;
    const ROLE: Role = Role::Reader;
    const NAME: &'static str = "LatestReader";
    const AWAIT_INIT: AwaitInit = AwaitInit::Event;
    type Args = ();

    /// For values of the size the description declares; not before writer 0 has
    /// initialised the region.
    fn attach(region: Region, info: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        let value_size = declared(info.value_size, "value_size")?;
        let (writers, readers, index) = (
            info.writers as usize,
            info.readers as usize,
            info.index as usize,
        );
        Ok(Reader::attach(region, writers, readers, index, value_size)?)
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("index", &self.index());
    }
}

/// A writer end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `latest`
/// channel this domain writes; it attaches to the slot of the writer index the manifest
/// gives it, for values of the size the description declares. Writer 0 initialises the
/// region; the others wait until it has. Signals the readers, which may wait for the
/// initialisation).
impl<E: Events> LatestWriter<'_, E> {
    /// Publishes `value` with `stamp` (readers pick the highest stamp across writers:
    /// use a clock common to all domains, or a generation number) and signals the
    /// readers that wait for a change.
    pub fn publish(&mut self, stamp: u64, value: &[u8]) -> Result<(), Error> {
        let w = self.side.publish(stamp, value)?;
        self.notifier().members(w)
    }

    /// The protocol handle.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.side
    }
}

/// A reader end ([`Endpoint::open`](super::Endpoint::open): `name` must be a `latest`
/// channel this domain reads, for values of the size the description declares; it blocks
/// until writer 0 has initialised the region).
impl<E: Events> LatestReader<'_, E> {
    /// The newest complete value now (`None` before any publish).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<Sample>, Error> {
        Ok(self.side.read_latest(buf)?)
    }

    /// Waits (spin, then block) until the newest value differs from the one last read,
    /// then reads it.
    pub fn read_changed(&mut self, buf: &mut [u8]) -> Result<Option<Sample>, Error> {
        self.wait_until(
            |r| Ok(r.changed().then_some(())),
            |r, _| Ok(r.prepare_wait()),
        )?;
        self.read(buf)
    }

    /// The value size the channel was opened with (the description's `value-size`).
    pub fn value_size(&self) -> usize {
        // `open` refused a manifest without it.
        self.ch.info().value_size.unwrap_or(0) as usize
    }

    /// The protocol handle.
    pub fn reader(&mut self) -> &mut Reader {
        &mut self.side
    }
}
