//! The server side of QEMU's ivshmem-doorbell device, spoken by staticbus itself.
//!
//! An `ivshmem-doorbell` PCI device (`-device ivshmem-doorbell,chardev=C,vectors=N` with
//! `-chardev socket,id=C,path=SOCK`) connects to a server on a UNIX socket and receives, as
//! 8-byte little-endian signed numbers each optionally carrying one file descriptor
//! (`SCM_RIGHTS`), in this order (QEMU's `docs/specs/ivshmem-spec.txt`,
//! "The ivshmem Client-Server Protocol"):
//!
//! 1. the protocol version, [`PROTOCOL_VERSION`];
//! 2. its own peer id (0..=65535);
//! 3. `-1` with the shared memory fd (the device's BAR2);
//! 4. for every other connected peer, its id `N` times, each with one eventfd: writing
//!    eventfd `v` interrupts that peer on vector `v`;
//! 5. its own id `N` times, each with its own eventfd of vector `v` (the device waits on
//!    them);
//!
//! and from then on a peer id **with** an fd (`N` in a row) when a peer joins, or
//! **without** one when a peer left. The connection is one-way; the server sees a client
//! leave when its socket reads end-of-file.
//!
//! [`Server`] serves the protocol with one shared memory object (a memfd) and `N` vectors.
//! It listens on any number of sockets: [`Server::listen`] with a fixed peer id (the usual
//! staticbus case: one socket per domain, so a domain's peer id is known before its VM
//! starts, whatever order the VMs connect in) or without one (the lowest id that is
//! neither connected nor reserved by a fixed socket). [`Server::step`] accepts, announces
//! and notices disconnects; [`Server::spawn`] runs it on a thread.
//!
//! QEMU reads only the first messages while it realizes the device (up to its own first
//! eventfd) and the rest later, from its main loop; a doorbell to a peer whose eventfds
//! it has not read yet is dropped. [`Server::unread`] (and [`ServerHandle::unread`]) says
//! how much each client has still to read, so a launcher can wait until every QEMU has
//! everything before it lets any guest run.
//!
//! [`Client`] is the other end, for tests and host tools: it connects and decodes the
//! messages above ([`Client::handshake`], [`Client::next_change`]).

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::collections::BTreeMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The protocol version this server speaks (the first message of every connection).
pub const PROTOCOL_VERSION: i64 = 0;

/// The value of the message that carries the shared memory fd.
pub const SHM_MESSAGE: i64 = -1;

/// Most interrupt vectors per peer the server hands out. QEMU's device takes up to 1024
/// (its MSI-X table); staticbus uses a few dozen.
pub const MAX_VECTORS: u16 = 1024;

/// What happened on the server, as [`Server::step`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A client connected on `socket` and got peer id `id`; the others were told.
    Joined {
        /// Its peer id.
        id: u16,
        /// The socket it connected to.
        socket: PathBuf,
    },
    /// The client with peer id `id` disconnected; the others were told.
    Left {
        /// Its peer id.
        id: u16,
    },
    /// A connection on `socket` was closed at once: `reason` says why (its fixed id is
    /// taken by a connected client, or no id is free).
    Refused {
        /// The socket.
        socket: PathBuf,
        /// Why.
        reason: String,
    },
}

struct Listener {
    socket: UnixListener,
    path: PathBuf,
    id: Option<u16>,
}

struct Peer {
    stream: Arc<UnixStream>,
    /// The peer's own eventfds, one per vector: others write them to interrupt it.
    eventfds: Vec<OwnedFd>,
}

/// An ivshmem server: one shared memory object, `vectors` eventfds per peer, the sockets
/// it listens on and the peers connected (see the crate documentation).
pub struct Server {
    shm: OwnedFd,
    shm_size: u64,
    vectors: u16,
    listeners: Vec<Listener>,
    peers: BTreeMap<u16, Peer>,
    /// The connected peers' streams, shared with [`ServerHandle::unread`].
    streams: Streams,
    wake: OwnedFd,
    departures: Option<Departures>,
    send_timeout: Duration,
}

/// How long one message to a client may wait for room in its socket by default (see
/// [`Server::set_send_timeout`]).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

type Streams = Arc<Mutex<BTreeMap<u16, Arc<UnixStream>>>>;

/// Bytes sent on `stream` that the other end has not read yet (Linux's `SIOCOUTQ` of a
/// UNIX stream socket: what is still queued in the receiver's buffer).
fn outq(stream: &UnixStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (= SIOCOUTQ) writes one `int` through the pointer, which points to
    // `n`, live for the call; the fd is open for the duration (borrowed from `stream`).
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

fn unread_of(streams: &Streams) -> io::Result<BTreeMap<u16, usize>> {
    let streams: Vec<(u16, Arc<UnixStream>)> = streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(&id, s)| (id, s.clone()))
        .collect();
    streams
        .into_iter()
        .map(|(id, s)| Ok((id, outq(&s)?)))
        .collect()
}

/// Where [`Server::announce_departures`] marks departed peers and which vector it rings.
#[derive(Clone, Copy, Debug)]
struct Departures {
    offset: u64,
    words: u32,
    vector: u16,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("shm_size", &self.shm_size)
            .field("vectors", &self.vectors)
            .field(
                "sockets",
                &self.listeners.iter().map(|l| &l.path).collect::<Vec<_>>(),
            )
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Server {
    /// A server with a fresh, zeroed shared memory object of `shm_size` bytes (a memfd)
    /// and `vectors` interrupt vectors per peer. QEMU requires the size to be a power of
    /// two (it is the device's BAR2); `vectors` is 1..=[`MAX_VECTORS`].
    pub fn new(shm_size: u64, vectors: u16) -> io::Result<Server> {
        if !shm_size.is_power_of_two() {
            return Err(invalid(format!(
                "shared memory size {shm_size:#x} is not a power of two (it becomes a PCI BAR)"
            )));
        }
        let shm = memfd_create("staticbus-ivshmem", MemfdFlags::CLOEXEC)?;
        ftruncate(&shm, shm_size)?;
        Server::with_shm(shm, shm_size, vectors)
    }

    /// A server over an existing shared memory object `shm` of `shm_size` bytes.
    pub fn with_shm(shm: OwnedFd, shm_size: u64, vectors: u16) -> io::Result<Server> {
        if vectors == 0 || vectors > MAX_VECTORS {
            return Err(invalid(format!(
                "{vectors} vectors per peer: expected 1..={MAX_VECTORS}"
            )));
        }
        Ok(Server {
            shm,
            shm_size,
            vectors,
            listeners: Vec::new(),
            peers: BTreeMap::new(),
            streams: Streams::default(),
            wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
            departures: None,
            send_timeout: SEND_TIMEOUT,
        })
    }

    /// The shared memory object (to map it on the host, e.g. to inspect or seed it).
    pub fn shm(&self) -> BorrowedFd<'_> {
        self.shm.as_fd()
    }

    /// Its size in bytes.
    pub fn shm_size(&self) -> u64 {
        self.shm_size
    }

    /// Interrupt vectors per peer.
    pub fn vectors(&self) -> u16 {
        self.vectors
    }

    /// The peer ids connected now, ascending.
    pub fn peers(&self) -> Vec<u16> {
        self.peers.keys().copied().collect()
    }

    /// For every connected peer, how many bytes the server sent it that it has not read
    /// yet (0: it has every message so far). The count is the kernel's accounting of the
    /// queued buffers, not a message count; only 0 has an exact meaning.
    pub fn unread(&self) -> io::Result<BTreeMap<u16, usize>> {
        unread_of(&self.streams)
    }

    fn insert(&mut self, id: u16, peer: Peer) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, peer.stream.clone());
        self.peers.insert(id, peer);
    }

    /// How long one message to a client may wait for room in its socket (default
    /// [`SEND_TIMEOUT`]). A client that reads nothing for that long (a stuck or hostile
    /// one) would otherwise stop the server for everyone once its socket buffer is full;
    /// it is disconnected instead (refused while it joins, announced as left after).
    /// `timeout` is at least 1 µs.
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        self.send_timeout = timeout.max(Duration::from_micros(1));
    }

    /// Makes departures visible to the peers themselves, which the device cannot tell:
    /// when a peer with id below `words` leaves, the server writes the little-endian
    /// `u32` 1 at `offset + 4 * id` of the shared memory, then rings `vector` at every
    /// remaining peer (writes their own eventfd of that vector). When a peer joins, its
    /// word is cleared before anyone is told. staticbus's runtime reserves the last page
    /// of the object and vector 0 for this (`staticbus_abi::ivshmem`).
    pub fn announce_departures(&mut self, offset: u64, words: u32, vector: u16) -> io::Result<()> {
        let end = offset.checked_add(u64::from(words) * 4);
        if vector >= self.vectors || end.is_none_or(|e| e > self.shm_size) {
            return Err(invalid(format!(
                "departure words [{offset:#x}, +{words} words) or vector {vector} do not fit \
                 a {:#x}-byte object with {} vectors",
                self.shm_size, self.vectors
            )));
        }
        self.departures = Some(Departures {
            offset,
            words,
            vector,
        });
        Ok(())
    }

    fn mark(&self, id: u16, left: bool) -> io::Result<()> {
        if let Some(d) = self.departures {
            if u32::from(id) < d.words {
                let at = d.offset + 4 * u64::from(id);
                rustix::io::pwrite(&self.shm, &u32::from(left).to_le_bytes(), at)?;
            }
        }
        Ok(())
    }

    /// Listens on a new UNIX socket at `path` (which must not exist; it is removed when
    /// the server is dropped). A client connecting there gets peer id `id`, or with
    /// `None` the lowest id neither connected nor reserved by another socket's fixed id.
    pub fn listen(&mut self, path: &Path, id: Option<u16>) -> io::Result<()> {
        if let Some(id) = id {
            if self.listeners.iter().any(|l| l.id == Some(id)) {
                return Err(invalid(format!(
                    "{}: peer id {id} is already fixed for another socket",
                    path.display()
                )));
            }
        }
        let socket = UnixListener::bind(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", path.display()),
            )
        })?;
        socket.set_nonblocking(true)?;
        self.listeners.push(Listener {
            socket,
            path: path.to_path_buf(),
            id,
        });
        Ok(())
    }

    /// Waits up to `timeout` (forever with `None`) for something to do, then accepts the
    /// clients waiting on every socket and handles the ones that left. Returns what
    /// happened, in order.
    pub fn step(&mut self, timeout: Option<Duration>) -> io::Result<Vec<Event>> {
        let ids: Vec<u16> = self.peers.keys().copied().collect();
        let (accepting, leaving) = {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            fds.push(PollFd::new(&self.wake, PollFlags::IN));
            for l in &self.listeners {
                fds.push(PollFd::new(&l.socket, PollFlags::IN));
            }
            for id in &ids {
                fds.push(PollFd::new(&self.peers[id].stream, PollFlags::IN));
            }
            let ts = timeout.map(|t| rustix::time::Timespec {
                tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: t.subsec_nanos().into(),
            });
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd<'_>| !f.revents().is_empty();
            let n = self.listeners.len();
            let accepting: Vec<usize> = (0..n).filter(|&i| ready(&fds[1 + i])).collect();
            let leaving: Vec<u16> = ids
                .iter()
                .enumerate()
                .filter(|&(i, _)| ready(&fds[1 + n + i]))
                .map(|(_, &id)| id)
                .collect();
            (accepting, leaving)
        };
        let mut events = Vec::new();
        let mut buf = [0u8; 64];
        for id in leaving {
            // The protocol is one-way: a readable client socket is end-of-file (it left)
            // or bytes a client should not send, which are dropped.
            let gone = match rustix::io::read(&self.peers[&id].stream, &mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => false,
                Err(_) => true,
            };
            if gone {
                self.remove(id, &mut events);
            }
        }
        for i in accepting {
            loop {
                match self.listeners[i].socket.accept() {
                    Ok((stream, _)) => self.admit(i, stream, &mut events),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(events)
    }

    /// Runs [`Server::step`] on a thread until [`ServerHandle::stop`]; its events arrive
    /// on [`ServerHandle::events`].
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let wake = self.wake.try_clone()?;
        let (tx, rx) = mpsc::channel();
        let streams = self.streams.clone();
        let thread = thread::Builder::new()
            .name("ivshmem-server".into())
            .spawn(move || {
                let mut server = self;
                loop {
                    let mut one = [0u8; 8];
                    if rustix::io::read(&server.wake, &mut one).is_ok() {
                        return Ok(server);
                    }
                    for e in server.step(None)? {
                        // A handle that stopped listening is no reason to stop serving.
                        let _ = tx.send(e);
                    }
                }
            })?;
        Ok(ServerHandle {
            wake,
            streams,
            events: rx,
            thread: Some(thread),
        })
    }

    fn admit(&mut self, listener: usize, stream: UnixStream, events: &mut Vec<Event>) {
        let path = self.listeners[listener].path.clone();
        let id = match self.listeners[listener].id {
            Some(id) if self.peers.contains_key(&id) => {
                Err(format!("peer id {id} of this socket is connected already"))
            }
            Some(id) => Ok(id),
            None => (0..=u16::MAX)
                .find(|id| {
                    !self.peers.contains_key(id)
                        && !self.listeners.iter().any(|l| l.id == Some(*id))
                })
                .ok_or_else(|| "no free peer id".to_string()),
        };
        let id = match id {
            Ok(id) => id,
            Err(reason) => {
                events.push(Event::Refused {
                    socket: path,
                    reason,
                });
                return;
            }
        };
        if let Err(e) = self.mark(id, false) {
            events.push(Event::Refused {
                socket: path,
                reason: format!("clearing its departure word failed: {e}"),
            });
            return;
        }
        // The spec's order: version, id and memory to the new client; the others are
        // told of it; then the others' eventfds and its own. QEMU finishes realizing the
        // new device only after its own eventfds, so by then the others were told.
        let peer = match self.introduce(id, stream) {
            Ok(peer) => peer,
            Err(e) => {
                events.push(Event::Refused {
                    socket: path,
                    reason: format!("sending the setup failed: {e}"),
                });
                return;
            }
        };
        let mut failed = Vec::new();
        for (&other, p) in &self.peers {
            for fd in &peer.eventfds {
                if send(&p.stream, i64::from(id), Some(fd.as_fd())).is_err() {
                    failed.push(other);
                    break;
                }
            }
        }
        if let Err(e) = self.finish_setup(id, &peer) {
            events.push(Event::Refused {
                socket: path,
                reason: format!("sending the setup failed: {e}"),
            });
            // The others were told it joined: tell them it left.
            self.insert(id, peer);
            self.remove(id, events);
        } else {
            self.insert(id, peer);
            events.push(Event::Joined { id, socket: path });
        }
        for other in failed {
            self.remove(other, events);
        }
    }

    /// Messages 1–3 to a new client; its eventfds are made here.
    fn introduce(&self, id: u16, stream: UnixStream) -> io::Result<Peer> {
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(self.send_timeout))?;
        let eventfds = (0..self.vectors)
            .map(|_| eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK))
            .collect::<Result<Vec<_>, _>>()?;
        send(&stream, PROTOCOL_VERSION, None)?;
        send(&stream, i64::from(id), None)?;
        send(&stream, SHM_MESSAGE, Some(self.shm.as_fd()))?;
        Ok(Peer {
            stream: Arc::new(stream),
            eventfds,
        })
    }

    /// Messages 4 and 5 to a new client (not yet among `self.peers`).
    fn finish_setup(&self, id: u16, peer: &Peer) -> io::Result<()> {
        for (&other, p) in &self.peers {
            for fd in &p.eventfds {
                send(&peer.stream, i64::from(other), Some(fd.as_fd()))?;
            }
        }
        for fd in &peer.eventfds {
            send(&peer.stream, i64::from(id), Some(fd.as_fd()))?;
        }
        // Only for noticing the client leave.
        peer.stream.set_nonblocking(true)?;
        Ok(())
    }

    fn remove(&mut self, id: u16, events: &mut Vec<Event>) {
        if self.peers.remove(&id).is_none() {
            return;
        }
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        events.push(Event::Left { id });
        // The mark first, then the ring: a woken peer must find it. A failed write
        // leaves the peers as the protocol alone would (told, but not woken).
        let marked = self.mark(id, true).is_ok();
        let mut failed = Vec::new();
        for (&other, p) in &self.peers {
            if send(&p.stream, i64::from(id), None).is_err() {
                failed.push(other);
            }
            if let (true, Some(d)) = (marked, self.departures) {
                let _ = rustix::io::write(&p.eventfds[usize::from(d.vector)], &1u64.to_ne_bytes());
            }
        }
        for other in failed {
            self.remove(other, events);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for l in &self.listeners {
            let _ = std::fs::remove_file(&l.path);
        }
    }
}

/// One message: `value` (8 bytes, little-endian) and at most one fd.
fn send(stream: &UnixStream, value: i64, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let bytes = value.to_le_bytes();
    let fds;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if let Some(fd) = fd {
        fds = [fd];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("control buffer too small for one fd"));
        }
    }
    // Blocking writes of 8 bytes, each for at most the stream's write timeout (set when the
    // client was admitted): the socket buffer holds a few hundred of them.
    stream.set_nonblocking(false)?;
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    );
    stream.set_nonblocking(true)?;
    match sent? {
        8 => Ok(()),
        n => Err(io::Error::other(format!("short send: {n} of 8 bytes"))),
    }
}

/// A running [`Server`] (see [`Server::spawn`]).
#[derive(Debug)]
pub struct ServerHandle {
    wake: OwnedFd,
    streams: Streams,
    events: mpsc::Receiver<Event>,
    thread: Option<thread::JoinHandle<io::Result<Server>>>,
}

impl ServerHandle {
    /// What the server did, in order.
    pub fn events(&self) -> &mpsc::Receiver<Event> {
        &self.events
    }

    /// [`Server::unread`] of the running server: what each connected peer has not read.
    pub fn unread(&self) -> io::Result<BTreeMap<u16, usize>> {
        unread_of(&self.streams)
    }

    /// Stops the thread and returns the server (its sockets still bound, its peers still
    /// connected until it is dropped), or the error that stopped it earlier.
    pub fn stop(mut self) -> io::Result<Server> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> io::Result<Server> {
        rustix::io::write(&self.wake, &1u64.to_ne_bytes())?;
        let thread = self
            .thread
            .take()
            .ok_or_else(|| io::Error::other("the server thread was stopped already"))?;
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_thread();
        }
    }
}

/// One message as a client receives it.
#[derive(Debug)]
pub struct Message {
    /// The number.
    pub value: i64,
    /// The fd that came with it.
    pub fd: Option<OwnedFd>,
}

/// What a client gets on connecting (messages 1–5).
#[derive(Debug)]
pub struct Setup {
    /// Protocol version (message 1).
    pub version: i64,
    /// Own peer id (message 2).
    pub id: u16,
    /// The shared memory (message 3).
    pub shm: OwnedFd,
    /// The other peers' eventfds, per vector (messages 4).
    pub peers: BTreeMap<u16, Vec<OwnedFd>>,
    /// Own eventfds, per vector (messages 5).
    pub own: Vec<OwnedFd>,
}

/// A change the server announces after the setup.
#[derive(Debug)]
pub enum Change {
    /// Peer `id` joined; one more of its eventfds (they come one per vector, in order).
    Joined(u16, OwnedFd),
    /// Peer `id` left.
    Left(u16),
}

/// The client end of the protocol (what QEMU's device does), for tests and host tools.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the server's socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Client> {
        Ok(Client {
            stream: UnixStream::connect(path)?,
        })
    }

    /// The connection (e.g. to set a read timeout).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The next message, or `None` at end-of-file (the server closed the connection).
    pub fn recv(&mut self) -> io::Result<Option<Message>> {
        let mut bytes = [0u8; 8];
        let mut got = 0;
        let mut fd = None;
        while got < 8 {
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let r = recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut bytes[got..])],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = m {
                    for f in fds {
                        if fd.replace(f).is_some() {
                            return Err(io::Error::other("two fds with one message"));
                        }
                    }
                }
            }
            if r.bytes == 0 {
                return if got == 0 && fd.is_none() {
                    Ok(None)
                } else {
                    Err(io::Error::from(io::ErrorKind::UnexpectedEof))
                };
            }
            got += r.bytes;
        }
        Ok(Some(Message {
            value: i64::from_le_bytes(bytes),
            fd,
        }))
    }

    fn expect(&mut self) -> io::Result<Message> {
        self.recv()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    /// Reads messages 1–5 for a client configured with `vectors` vectors: fails on any
    /// message out of the protocol's order.
    pub fn handshake(&mut self, vectors: u16) -> io::Result<Setup> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let version = self.expect()?;
        if version.fd.is_some() {
            return Err(bad("the version came with an fd".into()));
        }
        let m = self.expect()?;
        let id = u16::try_from(m.value)
            .ok()
            .filter(|_| m.fd.is_none())
            .ok_or_else(|| bad(format!("peer id message {m:?}")))?;
        let m = self.expect()?;
        let shm = match m {
            Message {
                value: SHM_MESSAGE,
                fd: Some(fd),
            } => fd,
            m => {
                return Err(bad(format!(
                    "expected -1 with the shared memory fd, got {m:?}"
                )))
            }
        };
        let mut peers: BTreeMap<u16, Vec<OwnedFd>> = BTreeMap::new();
        let mut own = Vec::new();
        while own.len() < usize::from(vectors) {
            let m = self.expect()?;
            let (Ok(from), Some(fd)) = (u16::try_from(m.value), m.fd) else {
                return Err(bad(format!(
                    "expected a peer id with an eventfd, got {}",
                    m.value
                )));
            };
            if from == id {
                own.push(fd);
            } else if !own.is_empty() {
                return Err(bad(format!("peer {from}'s eventfd after own eventfds")));
            } else {
                peers.entry(from).or_default().push(fd);
            }
        }
        Ok(Setup {
            version: version.value,
            id,
            shm,
            peers,
            own,
        })
    }

    /// The next join or leave notification (`None` at end-of-file).
    pub fn next_change(&mut self) -> io::Result<Option<Change>> {
        let Some(m) = self.recv()? else {
            return Ok(None);
        };
        let id = u16::try_from(m.value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer id {} out of range", m.value),
            )
        })?;
        Ok(Some(match m.fd {
            Some(fd) => Change::Joined(id, fd),
            None => Change::Left(id),
        }))
    }
}
