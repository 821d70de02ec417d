//! The server as QEMU's device sees it: clients connect to its sockets and check every
//! message of the protocol, the eventfds they get are the ones their peers get, the shared
//! memory is one object, and a client that leaves is announced to the others.

use rustix::fd::{AsFd, OwnedFd};
use staticbus_ivshmem_server::{Change, Client, Event, Server, ServerHandle, PROTOCOL_VERSION};
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// Long enough for a loaded machine; only guards against a hang.
const PATIENCE: Duration = Duration::from_secs(60);

fn next_event(h: &ServerHandle) -> Event {
    match h.events().recv_timeout(PATIENCE) {
        Ok(e) => e,
        Err(RecvTimeoutError::Timeout) => panic!("the server reported nothing"),
        Err(e) => panic!("the server thread ended: {e}"),
    }
}

fn ring(fd: &OwnedFd) {
    assert_eq!(
        rustix::io::write(fd, &1u64.to_ne_bytes()).expect("write eventfd"),
        8
    );
}

/// The count an eventfd holds (it is non-blocking: 0 if none).
fn take(fd: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    match rustix::io::read(fd, &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        Ok(n) => panic!("short eventfd read {n}"),
        Err(rustix::io::Errno::AGAIN) => 0,
        Err(e) => panic!("eventfd read: {e}"),
    }
}

fn shm_size(fd: &OwnedFd) -> u64 {
    rustix::fs::fstat(fd).expect("fstat shm").st_size as u64
}

fn set_timeout(c: &Client) {
    c.stream()
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
}

#[test]
fn setup_messages_join_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = dir.path().join("a.sock");
    let any = dir.path().join("any.sock");
    let mut server = Server::new(0x10_0000, 3).unwrap();
    server.listen(&fixed, Some(7)).unwrap();
    server.listen(&any, None).unwrap();
    let h = server.spawn().unwrap();

    // The first client: version, its fixed id, the shared memory, no peers, 3 own fds.
    let mut a = Client::connect(&fixed).unwrap();
    set_timeout(&a);
    let sa = a.handshake(3).unwrap();
    assert_eq!(sa.version, PROTOCOL_VERSION);
    assert_eq!(sa.id, 7);
    assert_eq!(shm_size(&sa.shm), 0x10_0000);
    assert!(sa.peers.is_empty(), "{:?}", sa.peers);
    assert_eq!(sa.own.len(), 3);
    assert_eq!(
        next_event(&h),
        Event::Joined {
            id: 7,
            socket: fixed.clone()
        }
    );

    // The second: the lowest free id (0), peer 7's three eventfds, its own three.
    let mut b = Client::connect(&any).unwrap();
    set_timeout(&b);
    let sb = b.handshake(3).unwrap();
    assert_eq!(sb.id, 0);
    assert_eq!(sb.peers.keys().copied().collect::<Vec<_>>(), [7]);
    assert_eq!(sb.peers[&7].len(), 3);
    assert_eq!(sb.own.len(), 3);
    assert_eq!(
        next_event(&h),
        Event::Joined {
            id: 0,
            socket: any.clone()
        }
    );

    // a is told b joined: b's id with one eventfd per vector, in order.
    let mut a_to_b = Vec::new();
    for _ in 0..3 {
        match a.next_change().unwrap() {
            Some(Change::Joined(0, fd)) => a_to_b.push(fd),
            other => panic!("expected peer 0 joining, got {other:?}"),
        }
    }

    // Vector v of a peer is that peer's own eventfd v, for both directions.
    for (v, to_b) in a_to_b.iter().enumerate() {
        ring(&sb.peers[&7][v]);
        ring(&sb.peers[&7][v]);
        for (w, fd) in sa.own.iter().enumerate() {
            assert_eq!(take(fd), if w == v { 2 } else { 0 }, "a's vector {w}");
        }
        ring(to_b);
        for (w, fd) in sb.own.iter().enumerate() {
            assert_eq!(take(fd), u64::from(w == v), "b's vector {w}");
        }
    }

    // One shared memory object.
    rustix::io::pwrite(&sa.shm, b"staticbus", 0x1234).unwrap();
    let mut got = [0u8; 9];
    rustix::io::pread(&sb.shm, &mut got, 0x1234).unwrap();
    assert_eq!(&got, b"staticbus");

    // a leaves: b is told (an id without an fd), the server reports it.
    drop(a);
    drop(sa);
    assert_eq!(next_event(&h), Event::Left { id: 7 });
    match b.next_change().unwrap() {
        Some(Change::Left(7)) => {}
        other => panic!("expected peer 7 leaving, got {other:?}"),
    }

    // a comes back on its socket with the same id and gets b's eventfds again; b is told.
    let mut a2 = Client::connect(&fixed).unwrap();
    set_timeout(&a2);
    let sa2 = a2.handshake(3).unwrap();
    assert_eq!(sa2.id, 7);
    assert_eq!(sa2.peers.keys().copied().collect::<Vec<_>>(), [0]);
    ring(&sa2.peers[&0][1]);
    assert_eq!(take(&sb.own[1]), 1);
    for _ in 0..3 {
        assert!(matches!(
            b.next_change().unwrap(),
            Some(Change::Joined(7, _))
        ));
    }
    assert!(matches!(next_event(&h), Event::Joined { id: 7, .. }));

    // A second client on a fixed socket whose id is connected is refused: end-of-file.
    let mut dup = Client::connect(&fixed).unwrap();
    set_timeout(&dup);
    assert!(dup.recv().unwrap().is_none(), "the duplicate got a message");
    match next_event(&h) {
        Event::Refused { socket, reason } => {
            assert_eq!(socket, fixed);
            assert!(reason.contains("peer id 7"), "{reason}");
        }
        e => panic!("expected a refusal, got {e:?}"),
    }

    let server = h.stop().unwrap();
    assert_eq!(server.peers(), [0, 7]);
    drop(server);
    assert!(!Path::new(&fixed).exists(), "the socket file stays behind");
    // The server closed the connections: b reads end-of-file.
    assert!(b.next_change().unwrap().is_none());
}

#[test]
fn ids_skip_reserved_and_connected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::new(0x1000, 1).unwrap();
    server.listen(&dir.path().join("zero"), Some(0)).unwrap();
    server.listen(&dir.path().join("any"), None).unwrap();
    let h = server.spawn().unwrap();
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&dir.path().join("any")).unwrap();
        set_timeout(&c);
        let s = c.handshake(1).unwrap();
        // Each one sees every earlier client as a peer, with one eventfd.
        assert_eq!(s.peers.keys().copied().collect::<Vec<_>>(), ids);
        assert!(s.peers.values().all(|v| v.len() == 1));
        ids.push(s.id);
        clients.push((c, s));
    }
    assert_eq!(ids, [1, 2, 3], "0 is reserved for the fixed socket");
    drop(clients.remove(0));
    assert!(matches!(next_event(&h), Event::Joined { id: 1, .. }));
    assert!(matches!(next_event(&h), Event::Joined { id: 2, .. }));
    assert!(matches!(next_event(&h), Event::Joined { id: 3, .. }));
    assert_eq!(next_event(&h), Event::Left { id: 1 });
    // Both remaining clients hear of it, after hearing of the later joins.
    for (c, s) in &mut clients {
        loop {
            match c.next_change().unwrap() {
                Some(Change::Joined(id, _)) => assert!(id > s.id),
                Some(Change::Left(id)) => {
                    assert_eq!(id, 1);
                    break;
                }
                None => panic!("end-of-file before the leave"),
            }
        }
    }
    let mut c = Client::connect(&dir.path().join("any")).unwrap();
    set_timeout(&c);
    assert_eq!(c.handshake(1).unwrap().id, 1, "a freed id is reused");
    drop(h);
}

#[test]
fn bad_configurations_are_refused() {
    let e = Server::new(3 << 20, 1).unwrap_err();
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = Server::new(0x1000, 0).unwrap_err();
    assert!(e.to_string().contains("vectors"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::new(0x1000, 1).unwrap();
    s.listen(&dir.path().join("a"), Some(1)).unwrap();
    let e = s.listen(&dir.path().join("b"), Some(1)).unwrap_err();
    assert!(e.to_string().contains("already fixed"), "{e}");
    let e = s.listen(&dir.path().join("a"), None).unwrap_err();
    assert!(e.to_string().contains("cannot listen"), "{e}");
    assert!(s.shm().as_fd().try_clone_to_owned().is_ok());
}

#[test]
fn departures_are_marked_and_rung() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::new(0x10000, 4).unwrap();
    let e = server.announce_departures(0xf000, 0x401, 0).unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
    assert!(
        server.announce_departures(0xf000, 1024, 4).is_err(),
        "vector 4 of 4"
    );
    server.announce_departures(0xf000, 1024, 0).unwrap();
    server.listen(&dir.path().join("1"), Some(1)).unwrap();
    server.listen(&dir.path().join("2"), Some(2)).unwrap();
    let h = server.spawn().unwrap();
    let word = |shm: &OwnedFd, id: u64| {
        let mut b = [0u8; 4];
        rustix::io::pread(shm, &mut b, 0xf000 + 4 * id).unwrap();
        u32::from_le_bytes(b)
    };
    let mut a = Client::connect(&dir.path().join("1")).unwrap();
    set_timeout(&a);
    let sa = a.handshake(4).unwrap();
    let mut b = Client::connect(&dir.path().join("2")).unwrap();
    set_timeout(&b);
    let sb = b.handshake(4).unwrap();
    assert!(matches!(next_event(&h), Event::Joined { id: 1, .. }));
    assert!(matches!(next_event(&h), Event::Joined { id: 2, .. }));
    assert_eq!(word(&sa.shm, 2), 0);
    assert_eq!(take(&sa.own[0]), 0, "nothing rung yet");

    drop(b);
    drop(sb);
    assert_eq!(next_event(&h), Event::Left { id: 2 });
    assert_eq!(word(&sa.shm, 2), 1, "peer 2 is marked gone");
    assert_eq!(word(&sa.shm, 1), 0);
    assert_eq!(take(&sa.own[0]), 1, "and the survivor was rung on vector 0");
    assert!((1..4).all(|v| take(&sa.own[v]) == 0), "on vector 0 only");

    // Coming back clears the mark before anyone hears of it.
    let mut b2 = Client::connect(&dir.path().join("2")).unwrap();
    set_timeout(&b2);
    let sb2 = b2.handshake(4).unwrap();
    assert_eq!(word(&sb2.shm, 2), 0);
    drop(h);
}

#[test]
fn unread_says_who_has_not_read_everything_yet() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::new(0x1000, 3).unwrap();
    server.listen(&dir.path().join("1"), Some(1)).unwrap();
    server.listen(&dir.path().join("2"), Some(2)).unwrap();
    let h = server.spawn().unwrap();
    let unread = |id: u16| h.unread().unwrap()[&id];

    // Connected and served, but nothing read: its setup is queued.
    let mut a = Client::connect(&dir.path().join("1")).unwrap();
    set_timeout(&a);
    assert!(matches!(next_event(&h), Event::Joined { id: 1, .. }));
    assert!(unread(1) > 0);
    let _sa = a.handshake(3).unwrap();
    assert_eq!(unread(1), 0, "a read its whole setup");

    // A second peer joins: a has its eventfds to read, b its setup.
    let mut b = Client::connect(&dir.path().join("2")).unwrap();
    set_timeout(&b);
    assert!(matches!(next_event(&h), Event::Joined { id: 2, .. }));
    assert!(unread(1) > 0 && unread(2) > 0);
    let _sb = b.handshake(3).unwrap();
    assert_eq!(unread(2), 0);
    for v in 0..2 {
        assert!(matches!(
            a.next_change().unwrap(),
            Some(Change::Joined(2, _))
        ));
        assert!(unread(1) > 0, "after {} of 3 eventfds", v + 1);
    }
    assert!(matches!(
        a.next_change().unwrap(),
        Some(Change::Joined(2, _))
    ));
    assert_eq!(unread(1), 0);

    // A peer that left is no longer listed.
    drop(b);
    assert_eq!(next_event(&h), Event::Left { id: 2 });
    assert_eq!(h.unread().unwrap().keys().copied().collect::<Vec<_>>(), [1]);
}

/// A client that connects and never reads (a stuck or hostile QEMU) fills its socket
/// buffer as others join and leave. The server must not block on it: it drops that client
/// once a send has waited `send_timeout`, and keeps serving the others.
#[test]
fn a_client_that_never_reads_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::new(0x1000, 4).unwrap();
    server.set_send_timeout(Duration::from_millis(100));
    server.listen(&dir.path().join("stuck"), Some(1)).unwrap();
    server.listen(&dir.path().join("any"), None).unwrap();
    let h = server.spawn().unwrap();
    let stuck = Client::connect(&dir.path().join("stuck")).unwrap();
    assert!(matches!(next_event(&h), Event::Joined { id: 1, .. }));
    // Each join and leave queues 5 messages (4 eventfds, a leave) at the stuck client.
    let mut dropped = false;
    for round in 0..2000 {
        let mut c = Client::connect(&dir.path().join("any")).unwrap();
        set_timeout(&c);
        let s = c
            .handshake(4)
            .unwrap_or_else(|e| panic!("round {round}: the server stopped serving: {e}"));
        assert!(s.peers.keys().all(|&p| p == 1));
        drop(c);
        loop {
            match next_event(&h) {
                Event::Left { id: 1 } => dropped = true,
                Event::Left { .. } => break,
                _ => {}
            }
        }
        if dropped {
            break;
        }
    }
    assert!(dropped, "the stuck client was never dropped");
    assert!(!h.unread().unwrap().contains_key(&1));
    drop(stuck);
}
