//! The log's slot size and the latest-value's value size come from the manifest (the
//! description's `slot-size` / `value-size`), not from the program: endpoints open with
//! them, and a manifest without them is refused with the field's name.

use staticbus_guest::fake::{
    two_domains, Backing, Bus, BusPlatform, FAKE_SLOT_SIZE, FAKE_VALUE_SIZE,
};
use staticbus_guest::manifest::{Channel, Manifest, Protocol};
use staticbus_proto::endpoint::{Error, LatestWriter, LogWriter};
use std::sync::Mutex;

const SIZE: usize = 0x4000;

/// Manifests this file made: leaked on purpose (endpoints want `'static`), and kept
/// reachable from here so Miri's leak checker does not report them.
static MADE: Mutex<Vec<&'static Manifest>> = Mutex::new(Vec::new());

fn leak(m: Manifest) -> &'static Manifest {
    let m: &'static Manifest = Box::leak(Box::new(m));
    MADE.lock().unwrap().push(m);
    m
}

#[test]
fn endpoints_attach_with_the_declared_sizes() {
    let [a, _b] = two_domains(&[
        ("l", Protocol::Log, SIZE as u64),
        ("v", Protocol::Latest, SIZE as u64),
    ]);
    let bus = Bus::new(&[a]);
    let (ml, mv) = (Backing::new(SIZE), Backing::new(SIZE));
    let p = BusPlatform::new(bus.domain(a.domid), a)
        .with_region("l", ml.region(SIZE))
        .with_region("v", mv.region(SIZE));
    let mut log = LogWriter::open(&p, "l").unwrap();
    assert_eq!(log.writer().slot_size(), FAKE_SLOT_SIZE as usize);
    let mut v = LatestWriter::open(&p, "v").unwrap();
    // A value of the declared size is taken, one of another size is not.
    v.publish(1, &[7; FAKE_VALUE_SIZE as usize]).unwrap();
    assert!(v.publish(2, &[7; FAKE_VALUE_SIZE as usize + 1]).is_err());
}

#[test]
fn a_manifest_without_the_sizes_is_refused_by_name() {
    let [a, _b] = two_domains(&[
        ("l", Protocol::Log, SIZE as u64),
        ("v", Protocol::Latest, SIZE as u64),
    ]);
    let channels: Vec<Channel> = a
        .channels
        .iter()
        .map(|c| Channel {
            slot_size: None,
            value_size: None,
            ..*c
        })
        .collect();
    let m = leak(Manifest {
        channels: Box::leak(channels.into_boxed_slice()),
        ..*a
    });
    let bus = Bus::new(&[m]);
    let (ml, mv) = (Backing::new(SIZE), Backing::new(SIZE));
    let p = BusPlatform::new(bus.domain(m.domid), m)
        .with_region("l", ml.region(SIZE))
        .with_region("v", mv.region(SIZE));
    let e = LogWriter::open(&p, "l").unwrap_err();
    assert!(matches!(e, Error::Undeclared { field: "slot_size" }), "{e}");
    assert!(
        e.to_string().contains("no `slot_size` for this channel"),
        "{e}"
    );
    let e = LatestWriter::open(&p, "v").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Undeclared {
                field: "value_size"
            }
        ),
        "{e}"
    );
}
