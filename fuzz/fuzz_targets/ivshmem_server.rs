//! The ivshmem server against hostile clients. The input is a sequence of client actions
//! on three sockets (two with fixed peer ids, one handing out free ids): connect, read some
//! messages, write bytes the protocol never expects, close, half-close either way; the
//! server steps after each. Checked: the server never fails or blocks (a client that does
//! not read is dropped after the send timeout), its events are consistent (a join only for
//! an id not connected, a leave only for a connected one, fixed sockets give their id,
//! `peers()` is what the events say), every message a client reads is in the protocol's
//! order, and a client that has read everything and is still connected knows exactly the
//! peers the server lists, each with one eventfd per vector, and its departure word is 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_ivshmem_server::{Client, Event, Server, PROTOCOL_VERSION, SHM_MESSAGE};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

const VECTORS: u16 = 3;
const FIXED: [u16; 2] = [4, 9];
const OBJECT: u64 = 0x1000;
const WORDS: u32 = 64;

/// What one client has read so far.
struct Seen {
    client: Client,
    /// Messages read; 0..3 are the version, the id and the memory.
    count: usize,
    id: Option<u16>,
    shm: Option<OwnedFd>,
    /// Eventfds per peer (own id included) as announced.
    peers: BTreeMap<u16, usize>,
    eof: bool,
}

impl Seen {
    /// Reads up to `max` messages (until EAGAIN or end-of-file), checking their order.
    fn read(&mut self, max: usize) {
        for _ in 0..max {
            if self.eof {
                return;
            }
            let m = match self.client.recv() {
                Ok(Some(m)) => m,
                Ok(None) => {
                    self.eof = true;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // The server dropped it mid-way, or it shut its own reading down.
                Err(_) => {
                    self.eof = true;
                    return;
                }
            };
            match self.count {
                0 => assert!(
                    m.value == PROTOCOL_VERSION && m.fd.is_none(),
                    "version {m:?}"
                ),
                1 => {
                    assert!(m.fd.is_none(), "id with an fd");
                    self.id = Some(u16::try_from(m.value).expect("id out of range"));
                }
                2 => {
                    assert_eq!(m.value, SHM_MESSAGE, "memory message");
                    self.shm = Some(m.fd.expect("memory without an fd"));
                }
                _ => {
                    let id = u16::try_from(m.value).expect("peer id out of range");
                    match m.fd {
                        Some(_) => {
                            let n = self.peers.entry(id).or_default();
                            *n += 1;
                            assert!(*n <= usize::from(VECTORS), "peer {id}: too many eventfds");
                        }
                        None => {
                            let n = self.peers.remove(&id);
                            assert_eq!(n, Some(usize::from(VECTORS)), "leave of peer {id}");
                        }
                    }
                }
            }
            self.count += 1;
        }
    }
}

fn word(shm: &OwnedFd, id: u16) -> u32 {
    let mut b = [0u8; 4];
    let at = u64::from(OBJECT - 0x100) + 4 * u64::from(id);
    rustix::io::pread(shm, &mut b, at).expect("read departure word");
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let sockets: Vec<PathBuf> = ["a", "b", "any"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    let mut server = Server::new(OBJECT, VECTORS).expect("server");
    server.set_send_timeout(Duration::from_millis(1));
    server
        .announce_departures(OBJECT - 0x100, WORDS, 0)
        .expect("departures");
    for (i, s) in sockets.iter().enumerate() {
        server.listen(s, FIXED.get(i).copied()).expect("listen");
    }
    let mut clients: Vec<Seen> = Vec::new();
    let mut connected: BTreeSet<u16> = BTreeSet::new();
    let step = |server: &mut Server, connected: &mut BTreeSet<u16>| {
        for _ in 0..4 {
            let events = server.step(Some(Duration::ZERO)).expect("server step");
            if events.is_empty() {
                break;
            }
            for e in events {
                match e {
                    Event::Joined { id, socket } => {
                        assert!(connected.insert(id), "{id} joined twice");
                        match sockets.iter().position(|s| *s == socket) {
                            Some(i) if i < FIXED.len() => assert_eq!(id, FIXED[i]),
                            Some(_) => assert!(!FIXED.contains(&id), "a fixed id handed out"),
                            None => panic!("unknown socket {socket:?}"),
                        }
                    }
                    Event::Left { id } => assert!(connected.remove(&id), "{id} left unjoined"),
                    Event::Refused { .. } => {}
                }
            }
        }
        assert_eq!(
            server.peers(),
            connected.iter().copied().collect::<Vec<_>>()
        );
    };
    for op in data.chunks(2) {
        let (kind, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        let n = clients.len();
        let pick = if n == 0 {
            None
        } else {
            Some(usize::from(arg) % n)
        };
        match (kind % 8, pick) {
            (0, _) if n < 8 => {
                let s = &sockets[usize::from(arg) % sockets.len()];
                let client = Client::connect(s).expect("connect");
                client.stream().set_nonblocking(true).expect("nonblocking");
                clients.push(Seen {
                    client,
                    count: 0,
                    id: None,
                    shm: None,
                    peers: BTreeMap::new(),
                    eof: false,
                });
            }
            (1, Some(k)) => clients[k].read(usize::from(arg >> 4) + 1),
            (2, Some(k)) => {
                let junk = vec![arg; usize::from(arg % 64) + 1];
                let _ = clients[k].client.stream().write(&junk);
            }
            (3, Some(k)) => drop(clients.swap_remove(k)),
            (4, Some(k)) => {
                let _ = clients[k].client.stream().shutdown(Shutdown::Write);
            }
            (5, Some(k)) => {
                let _ = clients[k].client.stream().shutdown(Shutdown::Read);
            }
            (6, _) => {}
            (7, _) => {
                for c in &mut clients {
                    c.read(usize::MAX);
                }
            }
            _ => {}
        }
        step(&mut server, &mut connected);
    }
    // Everyone reads everything; whoever is still connected agrees with the server.
    step(&mut server, &mut connected);
    for c in &mut clients {
        c.read(usize::MAX);
    }
    for c in &clients {
        let (Some(id), false) = (c.id, c.eof) else {
            continue;
        };
        if c.peers.get(&id) != Some(&usize::from(VECTORS)) {
            // Its setup is not complete and it has not seen end-of-file: impossible once
            // drained, since the server sends the whole setup or drops the client.
            panic!(
                "client {id} drained with an incomplete setup: {:?}",
                c.peers
            );
        }
        assert!(
            connected.contains(&id),
            "client {id} connected but not listed"
        );
        let known: Vec<u16> = c.peers.keys().copied().collect();
        assert_eq!(known, server.peers(), "client {id}'s view");
        assert!(c.peers.values().all(|&n| n == usize::from(VECTORS)));
        let shm = c.shm.as_ref().expect("setup has the memory");
        for &p in &known {
            assert_eq!(word(shm, p), 0, "connected peer {p} marked as gone");
        }
    }
});
