//! The C emitter: a manifest as a header of macros and tables.

use super::*;
use crate::manifest::{ChannelEntry, DomainManifest};
use staticbus_abi::domid::DOMID_IO;
use staticbus_manifest::{Protocol, ShmRole};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// The manifest as a C99 header: macros for `#if` and `_Static_assert`, and `static const`
/// tables of the same data for table-driven code. Include it in one translation unit per
/// domain image (its macros are not prefixed by the domain name).
///
/// Identifiers are built from names upper-cased, with every character that is not an
/// ASCII letter or digit replaced by `_`:
///
/// - `SB_FORMAT_VERSION`, `SB_SYSTEM`, `SB_XEN`, `SB_DOMAIN`, `SB_DOMID`,
///   `SB_CHANNEL_COUNT`, `SB_REGION_COUNT`, `SB_EVTCHN_COUNT`;
/// - per channel `<C>`: `SB_<C>_NAME`, `_SHM_ID`, `_ADDR`, `_SIZE` (`uint64_t`),
///   `_PROTOCOL` (an `SB_PROTOCOL_*` constant), `_PROTOCOL_NAME` (a string), `_ROLE` (an
///   `SB_ROLE_*` constant), `_ROLE_NAME`, `_INDEX`, `_WRITERS`, `_READERS`, `_PEER_COUNT`;
///   per peer domain `<P>`: `SB_<C>_PORT_<P>` (the local port to signal `<P>` on),
///   `_REMOTE_PORT_<P>`, `_PEER_DOMID_<P>`; and when the domain has exactly one peer in the
///   channel also `SB_<C>_PORT`, `_REMOTE_PORT`, `_PEER_DOMID`, `_PEER` (its name);
/// - per region `<R>` (its shm id): `SB_REGION_<R>_SHM_ID`, `_ADDR`, `_SIZE`,
///   `_HAS_HOST_ADDR`, `_HOST_ADDR` (only if fixed), `_ROLE` (`SB_SHM_ROLE_*`),
///   `_ROLE_NAME`, `_OWNER`, `_OWNER_DOMID`, `_CHANNEL` (if any);
/// - per event channel, by local port `<N>`: `SB_EVTCHN_<N>_PORT`, `_REMOTE_DOMAIN`,
///   `_REMOTE_DOMID`, `_REMOTE_PORT`, `_INITIALLY_PENDING`, `_CHANNEL` (if any);
/// - `SB_VIRTIO_COUNT` and per virtio device `<V>`: `SB_VIRTIO_<V>_NAME`, `_DEVICE` (the
///   type name), `_DEVICE_ID`, `_ROLE_NAME` (`"frontend"` or `"backend"`), `_FRONTEND`
///   (1 or 0), `_QUEUES`, `_QUEUE_SIZE`, `_SHM_ID`, `_ADDR`, `_SIZE`, `_PEER`,
///   `_PEER_DOMID`, `_PORT`, `_REMOTE_PORT`, `_BUILTIN` (1: served by staticbus's own
///   device side) and, for a vhost-user backend, `_VHOST_USER` (the program); virtio
///   devices are macros only (`struct sb_manifest` has no table of them);
/// - tables `sb_channels[]`, `sb_regions[]`, `sb_evtchns[]`, `sb_channel_<i>_peers[]` and
///   `sb_manifest`, of the types `struct sb_channel` etc. defined (once per translation
///   unit) at the top.
///
/// If two names sanitise to clashing macro names (`a-b` and `a.b`, a channel `x` with a
/// peer `addr` and a channel `x-port`, a channel `region-q` and a region `q`), every entity
/// involved gets its name suffixed with `_` and the 8 hex digits of the FNV-1a hash of its
/// exact name (the local port for an event channel): `SB_A_B_5E2F0C41_ADDR`. The choice
/// depends only on the names, not on their order. Should that still clash, the entity index
/// is appended too, and as a last resort the later of two equal macro names gets `_2`,
/// `_3`, …: a header never defines a macro twice.
pub fn to_c_header(m: &DomainManifest) -> String {
    let mut o = String::with_capacity(c_header_capacity(m));
    let mut guard = String::from("STATICBUS_");
    push_c_ident(&mut guard, &m.system);
    guard.push('_');
    push_c_ident(&mut guard, &m.domain);
    guard.push_str("_MANIFEST_H");
    let _ = writeln!(o, "/* {HEADER} */");
    let _ = writeln!(
        o,
        "/* system {}, domain {} (domid {}), Xen {} */",
        c_comment(&m.system),
        c_comment(&m.domain),
        m.domid,
        c_comment(&m.xen)
    );
    let _ = writeln!(o, "#ifndef {guard}");
    let _ = writeln!(o, "#define {guard}");
    o.push('\n');
    o.push_str("#include <stdint.h>\n\n");
    push_c_types(&mut o);
    c_defines(m, &mut o);
    o.push('\n');
    c_tables(m, &mut o);
    let _ = writeln!(o, "\n#endif /* {guard} */");
    o
}

/// About the header's size (a little more for typical names), to write it without
/// reallocating.
pub(super) fn c_header_capacity(m: &DomainManifest) -> usize {
    let peers =
        |c: &ChannelEntry| -> usize { c.peers.iter().map(|p| 390 + 4 * p.domain.len()).sum() };
    let channels: usize = m
        .channels
        .iter()
        .map(|c| 760 + 22 * c.name.len() + peers(c))
        .sum();
    let regions: usize = m.regions.iter().map(|r| 740 + 16 * r.shm_id.len()).sum();
    let evtchns: usize = m
        .evtchns
        .iter()
        .map(|e| 420 + 4 * e.remote_domain.len())
        .sum();
    let virtio: usize = m
        .virtio
        .iter()
        .map(|v| 900 + 16 * v.name.len() + v.shm_id.len() + v.peer.len())
        .sum();
    C_TYPES_CAPACITY + 1024 + channels + regions + evtchns + virtio
}

/// Appends the types and constants shared by every manifest header (guarded so that headers
/// of several domains could share a translation unit's type definitions).
///
/// The block is [`C_TYPES_HEAD`], one `#define SB_PROTOCOL_<NAME> <id>` per protocol with
/// the id of [`Protocol::id`] (the region header's numbering), then [`C_TYPES`].
pub(super) fn push_c_types(o: &mut String) {
    o.push_str(C_TYPES_HEAD);
    for p in Protocol::ALL {
        o.push_str("#define SB_PROTOCOL_");
        push_c_ident(o, p.as_str());
        o.push(' ');
        push_dec(o, u64::from(p.id()));
        o.push('\n');
    }
    o.push_str(C_TYPES);
}

/// About the length of what [`push_c_types`] writes.
pub(super) const C_TYPES_CAPACITY: usize =
    C_TYPES_HEAD.len() + 32 * Protocol::ALL.len() + C_TYPES.len();

/// The start of the shared types block, up to the protocol constants.
pub(super) const C_TYPES_HEAD: &str = "\
#ifndef STATICBUS_MANIFEST_TYPES_V2
#define STATICBUS_MANIFEST_TYPES_V2

/* Channel protocols (the protocol ids of the shared-region header). */
";

/// The rest of the shared types block, after the protocol constants.
pub(super) const C_TYPES: &str = "
/* Roles in a channel. */
#define SB_ROLE_PRODUCER 0
#define SB_ROLE_CONSUMER 1
#define SB_ROLE_WRITER 2
#define SB_ROLE_READER 3

/* Roles in a shared region (NONE: the region is owned by DOMID_IO). */
#define SB_SHM_ROLE_NONE 0
#define SB_SHM_ROLE_OWNER 1
#define SB_SHM_ROLE_BORROWER 2

#define SB_DOMID_IO 0x7FF1

#if defined(__GNUC__) || defined(__clang__)
#define SB_MANIFEST_UNUSED __attribute__((unused))
#else
#define SB_MANIFEST_UNUSED
#endif

/* One event channel of a channel, seen from this end. */
struct sb_peer {
\tconst char *domain;
\tuint16_t domid;
\tuint32_t role; /* SB_ROLE_* */
\tuint32_t local_port;
\tuint32_t remote_port;
};

/* A channel as this domain sees it. */
struct sb_channel {
\tconst char *name;
\tuint32_t protocol; /* SB_PROTOCOL_* */
\tuint32_t role; /* SB_ROLE_* */
\tconst char *shm_id;
\tuint64_t guest_addr;
\tuint64_t size;
\tuint32_t index;
\tuint32_t writers;
\tuint32_t readers;
\tuint32_t slot_size; /* a log's slot size (protocol SB_PROTOCOL_LOG only) */
\tuint32_t value_size; /* a latest channel's value size (SB_PROTOCOL_LATEST only) */
\tuint32_t peer_count;
\tconst struct sb_peer *peers;
};

/* A shared region mapped into this domain. */
struct sb_region {
\tconst char *shm_id;
\tuint64_t guest_addr;
\tuint64_t size;
\tuint8_t has_host_addr; /* 0: allocated by Xen from its heap */
\tuint64_t host_addr;
\tuint32_t role; /* SB_SHM_ROLE_* */
\tconst char *owner;
\tuint16_t owner_domid;
\tconst char *channel; /* 0 if none */
};

/* A static event-channel port owned by this domain. */
struct sb_evtchn {
\tuint32_t local_port;
\tconst char *remote_domain;
\tuint16_t remote_domid;
\tuint32_t remote_port;
\tuint8_t initially_pending;
\tconst char *channel; /* 0 if none */
};

/* Everything this domain knows about its static communication. */
struct sb_manifest {
\tuint32_t format_version;
\tconst char *system;
\tconst char *xen;
\tconst char *domain;
\tuint16_t domid;
\tuint32_t channel_count;
\tconst struct sb_channel *channels;
\tuint32_t region_count;
\tconst struct sb_region *regions;
\tuint32_t evtchn_count;
\tconst struct sb_evtchn *evtchns;
};

#endif /* STATICBUS_MANIFEST_TYPES_V2 */

";

/// Macro names [`push_c_types`] defines.
pub(super) const C_RESERVED: &[&str] = &[
    "SB_PROTOCOL_QUEUE",
    "SB_PROTOCOL_LOG",
    "SB_PROTOCOL_LATEST",
    "SB_PROTOCOL_BLOB",
    "SB_ROLE_PRODUCER",
    "SB_ROLE_CONSUMER",
    "SB_ROLE_WRITER",
    "SB_ROLE_READER",
    "SB_SHM_ROLE_NONE",
    "SB_SHM_ROLE_OWNER",
    "SB_SHM_ROLE_BORROWER",
    "SB_DOMID_IO",
    "SB_MANIFEST_UNUSED",
];

/// Where one `#define` of the macro section is in the header text.
pub(super) struct MacroDef {
    /// Byte range of the macro name.
    name: std::ops::Range<usize>,
    /// The entity whose name is part of the macro name (`None`: a fixed name).
    owner: Option<usize>,
}

/// Something whose (sanitised) name appears in macro names.
pub(super) struct Entity<'m> {
    /// Sanitised name.
    base: String,
    /// What the disambiguator is made from.
    alt: Alt<'m>,
    /// 0: `base`; 1: `base_alt`; 2: `base_alt_<index>`.
    level: u8,
}

/// The disambiguator of an [`Entity`] (only formatted when needed).
pub(super) enum Alt<'m> {
    /// The 8 upper-case hex digits of the FNV-1a hash of the exact name.
    Hash(&'m str),
    /// A number (the position of an event channel in the manifest).
    Index(usize),
}

impl<'m> Entity<'m> {
    fn named(name: &'m str) -> Entity<'m> {
        Entity {
            base: c_ident(name),
            alt: Alt::Hash(name),
            level: 0,
        }
    }

    /// Appends the name the entity has in macro names at its current level; `index` is
    /// its own index.
    fn push_stem(&self, o: &mut String, index: usize) {
        o.push_str(&self.base);
        if self.level == 0 {
            return;
        }
        o.push('_');
        match self.alt {
            Alt::Hash(name) => {
                let _ = write!(o, "{:08X}", fnv1a(name.as_bytes()));
            }
            Alt::Index(i) => push_dec(o, i as u64),
        }
        if self.level >= 2 {
            o.push('_');
            push_dec(o, index as u64);
        }
    }
}

/// Entity indices of the manifest's parts.
pub(super) struct Ids {
    chans: Vec<usize>,
    peers: Vec<Vec<usize>>,
    regions: Vec<usize>,
    evtchns: Vec<usize>,
    virtio: Vec<usize>,
}

/// Appends the macro section to `o`, with names made unique.
///
/// The section is written as if no names clashed (the usual case), and only if some do is
/// it written again with the entities involved disambiguated, while that helps.
pub(super) fn c_defines(m: &DomainManifest, o: &mut String) {
    // Entities: channels, then each channel's peers, then regions, then event channels.
    let mut ents = Vec::new();
    let mut ids = Ids {
        chans: Vec::with_capacity(m.channels.len()),
        peers: Vec::with_capacity(m.channels.len()),
        regions: Vec::with_capacity(m.regions.len()),
        evtchns: Vec::with_capacity(m.evtchns.len()),
        virtio: Vec::with_capacity(m.virtio.len()),
    };
    for c in &m.channels {
        ids.chans.push(ents.len());
        ents.push(Entity::named(&c.name));
    }
    for c in &m.channels {
        let mut peer_ids = Vec::with_capacity(c.peers.len());
        for p in &c.peers {
            peer_ids.push(ents.len());
            ents.push(Entity::named(&p.domain));
        }
        ids.peers.push(peer_ids);
    }
    for r in &m.regions {
        ids.regions.push(ents.len());
        ents.push(Entity::named(&r.shm_id));
    }
    for (i, e) in m.evtchns.iter().enumerate() {
        ids.evtchns.push(ents.len());
        let mut base = String::new();
        push_dec(&mut base, e.local_port.into());
        ents.push(Entity {
            base,
            alt: Alt::Index(i),
            level: 0,
        });
    }
    for v in &m.virtio {
        ids.virtio.push(ents.len());
        ents.push(Entity::named(&v.name));
    }

    // Disambiguate whole entities while that helps.
    let start = o.len();
    let mut defs = Vec::new();
    loop {
        o.truncate(start);
        defs.clear();
        c_macros(m, &ents, &ids, &mut CWriter { o, defs: &mut defs });
        let clashing = clashing_defs(o, &defs);
        if !clashing.contains(&true) {
            return;
        }
        let mut advanced = false;
        let mut bumped = vec![false; ents.len()];
        for (d, _) in defs.iter().zip(&clashing).filter(|(_, &c)| c) {
            if let Some(e) = d.owner {
                if !bumped[e] && ents[e].level < 2 {
                    ents[e].level += 1;
                    advanced = true;
                }
                bumped[e] = true;
            }
        }
        if !advanced {
            break;
        }
    }

    // Last resort: number repeated macro names in order.
    let names: Vec<String> = defs.iter().map(|d| o[d.name.clone()].to_string()).collect();
    let mut taken: HashSet<String> = C_RESERVED.iter().map(|s| s.to_string()).collect();
    taken.extend(names.iter().cloned());
    let mut seen: HashSet<String> = C_RESERVED.iter().map(|s| s.to_string()).collect();
    let mut section = String::with_capacity(o.len() - start);
    let mut at = start;
    for (d, name) in defs.iter().zip(names) {
        section.push_str(&o[at..d.name.start]);
        at = d.name.end;
        if seen.insert(name.clone()) {
            section.push_str(&name);
            continue;
        }
        let mut k = 2;
        let new = loop {
            let candidate = format!("{name}_{k}");
            if !taken.contains(&candidate) {
                break candidate;
            }
            k += 1;
        };
        taken.insert(new.clone());
        seen.insert(new.clone());
        section.push_str(&new);
    }
    section.push_str(&o[at..]);
    o.truncate(start);
    o.push_str(&section);
}

/// For each macro, whether its name is defined more than once, or defined and reserved.
pub(super) fn clashing_defs(o: &str, defs: &[MacroDef]) -> Vec<bool> {
    const RESERVED: usize = usize::MAX;
    let mut clashing = vec![false; defs.len()];
    // Name → index of its first definition.
    let mut first: rustc_hash::FxHashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(defs.len() + C_RESERVED.len(), Default::default());
    for r in C_RESERVED {
        first.insert(r, RESERVED);
    }
    for (i, d) in defs.iter().enumerate() {
        if let Some(&f) = first.get(&o[d.name.clone()]) {
            clashing[i] = true;
            if f != RESERVED {
                clashing[f] = true;
            }
        } else {
            first.insert(&o[d.name.clone()], i);
        }
    }
    clashing
}

/// A macro value.
pub(super) enum CValue<'a> {
    /// A C string literal.
    Str(&'a str),
    /// `0` or a C string literal.
    OptStr(Option<&'a str>),
    /// A decimal number.
    Num(u64),
    /// `UINT64_C(0x…)`.
    U64(u64),
    /// A constant: the prefix then the [`c_ident`] of the name.
    Const(&'static str, &'a str),
    /// A domid, `SB_DOMID_IO` for DOMID_IO.
    Domid(u16),
}

impl CValue<'_> {
    fn push(&self, o: &mut String) {
        match *self {
            CValue::Str(s) => push_c_str(o, s),
            CValue::OptStr(s) => push_c_opt_str(o, s),
            CValue::Num(n) => push_dec(o, n),
            CValue::U64(v) => push_c_u64(o, v),
            CValue::Const(prefix, name) => {
                o.push_str(prefix);
                push_c_ident(o, name);
            }
            CValue::Domid(d) => push_c_domid(o, d),
        }
    }
}

/// Writes the macro section, recording where each macro name is.
pub(super) struct CWriter<'a> {
    o: &'a mut String,
    defs: &'a mut Vec<MacroDef>,
}

impl CWriter<'_> {
    /// `#define <name parts…> <value>`.
    fn define(&mut self, owner: Option<usize>, name: &[&str], value: CValue<'_>) {
        self.o.push_str("#define ");
        let start = self.o.len();
        for part in name {
            self.o.push_str(part);
        }
        self.defs.push(MacroDef {
            name: start..self.o.len(),
            owner,
        });
        self.o.push(' ');
        value.push(self.o);
        self.o.push('\n');
    }

    /// A blank line, then `/* <text> */`, the text written by `text`.
    fn heading(&mut self, text: impl FnOnce(&mut String)) {
        self.o.push_str("\n/* ");
        text(self.o);
        self.o.push_str(" */\n");
    }
}

/// The macro section for the current entity names.
pub(super) fn c_macros(m: &DomainManifest, ents: &[Entity<'_>], ids: &Ids, w: &mut CWriter<'_>) {
    // Every entity's name at its current level, in one buffer.
    let mut stems = String::new();
    let mut stem_at = Vec::with_capacity(ents.len());
    for (i, e) in ents.iter().enumerate() {
        let start = stems.len();
        e.push_stem(&mut stems, i);
        stem_at.push(start..stems.len());
    }
    let stem = |e: usize| &stems[stem_at[e].clone()];

    w.o.push_str("/* This domain. */\n");
    let n = |x: usize| CValue::Num(x as u64);
    w.define(
        None,
        &["SB_FORMAT_VERSION"],
        CValue::Num(m.format_version.into()),
    );
    w.define(None, &["SB_SYSTEM"], CValue::Str(&m.system));
    w.define(None, &["SB_XEN"], CValue::Str(&m.xen));
    w.define(None, &["SB_DOMAIN"], CValue::Str(&m.domain));
    w.define(None, &["SB_DOMID"], CValue::Num(m.domid.into()));
    w.define(None, &["SB_CHANNEL_COUNT"], n(m.channels.len()));
    w.define(None, &["SB_REGION_COUNT"], n(m.regions.len()));
    w.define(None, &["SB_EVTCHN_COUNT"], n(m.evtchns.len()));
    w.define(None, &["SB_VIRTIO_COUNT"], n(m.virtio.len()));

    for (i, c) in m.channels.iter().enumerate() {
        let e = ids.chans[i];
        let s = stem(e);
        w.heading(|o| {
            o.push_str("Channel ");
            push_c_comment(o, &c.name);
            let _ = write!(o, " ({}, {}).", c.protocol, c.role);
        });
        let o = Some(e);
        w.define(o, &["SB_", s, "_NAME"], CValue::Str(&c.name));
        w.define(o, &["SB_", s, "_SHM_ID"], CValue::Str(&c.shm_id));
        w.define(o, &["SB_", s, "_ADDR"], CValue::U64(c.guest_addr));
        w.define(o, &["SB_", s, "_SIZE"], CValue::U64(c.size));
        let protocol = CValue::Const("SB_PROTOCOL_", c.protocol.as_str());
        w.define(o, &["SB_", s, "_PROTOCOL"], protocol);
        w.define(
            o,
            &["SB_", s, "_PROTOCOL_NAME"],
            CValue::Str(c.protocol.as_str()),
        );
        w.define(
            o,
            &["SB_", s, "_ROLE"],
            CValue::Const("SB_ROLE_", c.role.as_str()),
        );
        w.define(o, &["SB_", s, "_ROLE_NAME"], CValue::Str(c.role.as_str()));
        w.define(o, &["SB_", s, "_INDEX"], CValue::Num(c.index.into()));
        w.define(o, &["SB_", s, "_WRITERS"], CValue::Num(c.writers.into()));
        w.define(o, &["SB_", s, "_READERS"], CValue::Num(c.readers.into()));
        if let Some(v) = c.slot_size {
            w.define(o, &["SB_", s, "_SLOT_SIZE"], CValue::Num(v.into()));
        }
        if let Some(v) = c.value_size {
            w.define(o, &["SB_", s, "_VALUE_SIZE"], CValue::Num(v.into()));
        }
        w.define(o, &["SB_", s, "_PEER_COUNT"], n(c.peers.len()));
        if let [p] = c.peers.as_slice() {
            w.define(o, &["SB_", s, "_PORT"], CValue::Num(p.local_port.into()));
            let remote = CValue::Num(p.remote_port.into());
            w.define(o, &["SB_", s, "_REMOTE_PORT"], remote);
            w.define(o, &["SB_", s, "_PEER_DOMID"], CValue::Num(p.domid.into()));
            w.define(o, &["SB_", s, "_PEER"], CValue::Str(&p.domain));
        }
        for (j, p) in c.peers.iter().enumerate() {
            let pe = ids.peers[i][j];
            let ps = stem(pe);
            let o = Some(pe);
            let local = CValue::Num(p.local_port.into());
            w.define(o, &["SB_", s, "_PORT_", ps], local);
            let remote = CValue::Num(p.remote_port.into());
            w.define(o, &["SB_", s, "_REMOTE_PORT_", ps], remote);
            let domid = CValue::Num(p.domid.into());
            w.define(o, &["SB_", s, "_PEER_DOMID_", ps], domid);
        }
    }
    for (i, r) in m.regions.iter().enumerate() {
        let e = ids.regions[i];
        let s = stem(e);
        let o = Some(e);
        w.heading(|o| {
            o.push_str("Shared region ");
            push_c_comment(o, &r.shm_id);
            let _ = write!(o, " ({}).", ShmRole::name_of(r.role));
        });
        const P: &str = "SB_REGION_";
        w.define(o, &[P, s, "_SHM_ID"], CValue::Str(&r.shm_id));
        w.define(o, &[P, s, "_ADDR"], CValue::U64(r.guest_addr));
        w.define(o, &[P, s, "_SIZE"], CValue::U64(r.size));
        let has_host = CValue::Num(r.host_addr.is_some().into());
        w.define(o, &[P, s, "_HAS_HOST_ADDR"], has_host);
        if let Some(h) = r.host_addr {
            w.define(o, &[P, s, "_HOST_ADDR"], CValue::U64(h));
        }
        w.define(
            o,
            &[P, s, "_ROLE"],
            CValue::Const("SB_SHM_ROLE_", ShmRole::name_of(r.role)),
        );
        w.define(
            o,
            &[P, s, "_ROLE_NAME"],
            CValue::Str(ShmRole::name_of(r.role)),
        );
        w.define(o, &[P, s, "_OWNER"], CValue::Str(&r.owner));
        w.define(o, &[P, s, "_OWNER_DOMID"], CValue::Domid(r.owner_domid));
        if let Some(c) = &r.channel {
            w.define(o, &[P, s, "_CHANNEL"], CValue::Str(c));
        }
    }
    for (i, ev) in m.evtchns.iter().enumerate() {
        let e = ids.evtchns[i];
        let s = stem(e);
        let o = Some(e);
        w.heading(|o| {
            let _ = write!(o, "Event channel: local port {} to ", ev.local_port);
            push_c_comment(o, &ev.remote_domain);
            let _ = write!(o, " port {}.", ev.remote_port);
        });
        const P: &str = "SB_EVTCHN_";
        w.define(o, &[P, s, "_PORT"], CValue::Num(ev.local_port.into()));
        let remote = CValue::Str(&ev.remote_domain);
        w.define(o, &[P, s, "_REMOTE_DOMAIN"], remote);
        let domid = CValue::Num(ev.remote_domid.into());
        w.define(o, &[P, s, "_REMOTE_DOMID"], domid);
        let port = CValue::Num(ev.remote_port.into());
        w.define(o, &[P, s, "_REMOTE_PORT"], port);
        let pending = CValue::Num(ev.initially_pending.into());
        w.define(o, &[P, s, "_INITIALLY_PENDING"], pending);
        if let Some(c) = &ev.channel {
            w.define(o, &[P, s, "_CHANNEL"], CValue::Str(c));
        }
    }
    for (i, v) in m.virtio.iter().enumerate() {
        let e = ids.virtio[i];
        let s = stem(e);
        let o = Some(e);
        w.heading(|o| {
            o.push_str("Virtio device ");
            push_c_comment(o, &v.name);
            let _ = write!(o, " ({} {}).", c_comment(&v.device), v.role);
        });
        const P: &str = "SB_VIRTIO_";
        let num = |x: u64| CValue::Num(x);
        w.define(o, &[P, s, "_NAME"], CValue::Str(&v.name));
        w.define(o, &[P, s, "_DEVICE"], CValue::Str(&v.device));
        w.define(o, &[P, s, "_DEVICE_ID"], num(v.device_id.into()));
        w.define(o, &[P, s, "_ROLE_NAME"], CValue::Str(v.role.as_str()));
        let frontend = v.role == staticbus_manifest::VirtioRole::Frontend;
        w.define(o, &[P, s, "_FRONTEND"], num(frontend.into()));
        w.define(o, &[P, s, "_QUEUES"], num(v.queues.into()));
        w.define(o, &[P, s, "_QUEUE_SIZE"], num(v.queue_size.into()));
        w.define(o, &[P, s, "_SHM_ID"], CValue::Str(&v.shm_id));
        w.define(o, &[P, s, "_ADDR"], CValue::U64(v.guest_addr));
        w.define(o, &[P, s, "_SIZE"], CValue::U64(v.size));
        w.define(o, &[P, s, "_PEER"], CValue::Str(&v.peer));
        w.define(o, &[P, s, "_PEER_DOMID"], num(v.peer_domid.into()));
        w.define(o, &[P, s, "_PORT"], num(v.local_port.into()));
        w.define(o, &[P, s, "_REMOTE_PORT"], num(v.remote_port.into()));
        match &v.serve {
            crate::manifest::VirtioServeEntry::Builtin => {
                w.define(o, &[P, s, "_BUILTIN"], num(1));
            }
            crate::manifest::VirtioServeEntry::VhostUser { program, .. } => {
                w.define(o, &[P, s, "_BUILTIN"], num(0));
                w.define(o, &[P, s, "_VHOST_USER"], CValue::Str(program));
            }
        }
    }
}

/// The `static const` tables.
pub(super) fn c_tables(m: &DomainManifest, o: &mut String) {
    const U: &str = "SB_MANIFEST_UNUSED";
    for (i, c) in m.channels.iter().enumerate() {
        if c.peers.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "static const struct sb_peer sb_channel_{i}_peers[{}] {U} = {{",
            c.peers.len()
        );
        for p in &c.peers {
            o.push_str("\t{ .domain = ");
            push_c_str(o, &p.domain);
            o.push_str(", .domid = ");
            push_dec(o, p.domid.into());
            o.push_str(", .role = SB_ROLE_");
            push_c_ident(o, p.role.as_str());
            o.push_str(", .local_port = ");
            push_dec(o, p.local_port.into());
            o.push_str(", .remote_port = ");
            push_dec(o, p.remote_port.into());
            o.push_str(" },\n");
        }
        o.push_str("};\n\n");
    }
    // One `\t\t.field = value,` line of a table entry.
    fn field(o: &mut String, name: &str, value: CValue<'_>) {
        o.push_str("\t\t.");
        o.push_str(name);
        o.push_str(" = ");
        value.push(o);
        o.push_str(",\n");
    }
    if !m.channels.is_empty() {
        let _ = writeln!(
            o,
            "static const struct sb_channel sb_channels[{}] {U} = {{",
            m.channels.len()
        );
        for (i, c) in m.channels.iter().enumerate() {
            o.push_str("\t{\n");
            field(o, "name", CValue::Str(&c.name));
            field(
                o,
                "protocol",
                CValue::Const("SB_PROTOCOL_", c.protocol.as_str()),
            );
            field(o, "role", CValue::Const("SB_ROLE_", c.role.as_str()));
            field(o, "shm_id", CValue::Str(&c.shm_id));
            field(o, "guest_addr", CValue::U64(c.guest_addr));
            field(o, "size", CValue::U64(c.size));
            field(o, "index", CValue::Num(c.index.into()));
            field(o, "writers", CValue::Num(c.writers.into()));
            field(o, "readers", CValue::Num(c.readers.into()));
            field(o, "slot_size", CValue::Num(c.slot_size.unwrap_or(0).into()));
            field(
                o,
                "value_size",
                CValue::Num(c.value_size.unwrap_or(0).into()),
            );
            field(o, "peer_count", CValue::Num(c.peers.len() as u64));
            if c.peers.is_empty() {
                o.push_str("\t\t.peers = 0,\n");
            } else {
                o.push_str("\t\t.peers = sb_channel_");
                push_dec(o, i as u64);
                o.push_str("_peers,\n");
            }
            o.push_str("\t},\n");
        }
        o.push_str("};\n\n");
    }
    if !m.regions.is_empty() {
        let _ = writeln!(
            o,
            "static const struct sb_region sb_regions[{}] {U} = {{",
            m.regions.len()
        );
        for r in &m.regions {
            o.push_str("\t{\n");
            field(o, "shm_id", CValue::Str(&r.shm_id));
            field(o, "guest_addr", CValue::U64(r.guest_addr));
            field(o, "size", CValue::U64(r.size));
            let has_host = CValue::Num(r.host_addr.is_some().into());
            field(o, "has_host_addr", has_host);
            field(o, "host_addr", CValue::U64(r.host_addr.unwrap_or(0)));
            field(
                o,
                "role",
                CValue::Const("SB_SHM_ROLE_", ShmRole::name_of(r.role)),
            );
            field(o, "owner", CValue::Str(&r.owner));
            field(o, "owner_domid", CValue::Domid(r.owner_domid));
            field(o, "channel", CValue::OptStr(r.channel.as_deref()));
            o.push_str("\t},\n");
        }
        o.push_str("};\n\n");
    }
    if !m.evtchns.is_empty() {
        let _ = writeln!(
            o,
            "static const struct sb_evtchn sb_evtchns[{}] {U} = {{",
            m.evtchns.len()
        );
        for e in &m.evtchns {
            o.push_str("\t{\n");
            field(o, "local_port", CValue::Num(e.local_port.into()));
            field(o, "remote_domain", CValue::Str(&e.remote_domain));
            field(o, "remote_domid", CValue::Num(e.remote_domid.into()));
            field(o, "remote_port", CValue::Num(e.remote_port.into()));
            let pending = CValue::Num(e.initially_pending.into());
            field(o, "initially_pending", pending);
            field(o, "channel", CValue::OptStr(e.channel.as_deref()));
            o.push_str("\t},\n");
        }
        o.push_str("};\n\n");
    }
    let _ = writeln!(o, "static const struct sb_manifest sb_manifest {U} = {{");
    let _ = writeln!(o, "\t.format_version = {},", m.format_version);
    let _ = writeln!(o, "\t.system = {},", c_str(&m.system));
    let _ = writeln!(o, "\t.xen = {},", c_str(&m.xen));
    let _ = writeln!(o, "\t.domain = {},", c_str(&m.domain));
    let _ = writeln!(o, "\t.domid = {},", m.domid);
    for (what, len) in [
        ("channel", m.channels.len()),
        ("region", m.regions.len()),
        ("evtchn", m.evtchns.len()),
    ] {
        let _ = writeln!(o, "\t.{what}_count = {len},");
        if len == 0 {
            let _ = writeln!(o, "\t.{what}s = 0,");
        } else {
            let _ = writeln!(o, "\t.{what}s = sb_{what}s,");
        }
    }
    o.push_str("};\n");
}

/// Upper-cased, every character but ASCII letters and digits replaced by `_`.
pub(super) fn c_ident(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_c_ident(&mut o, s);
    o
}

/// Appends [`c_ident`] of `s`.
pub(super) fn push_c_ident(o: &mut String, s: &str) {
    o.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
}

/// A C string literal. Printable ASCII is kept except `"`, `\` and `?` (trigraphs);
/// everything else is written byte by byte as three-digit octal escapes.
pub(super) fn c_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    push_c_str(&mut o, s);
    o
}

/// Appends [`c_str`] of `s`.
pub(super) fn push_c_str(o: &mut String, s: &str) {
    o.push('"');
    let bytes = s.as_bytes();
    let plain = |b: u8| (0x20..=0x7e).contains(&b) && !matches!(b, b'"' | b'\\' | b'?');
    let mut at = 0;
    while at < bytes.len() {
        // Copy the run of bytes that need no escape at once.
        let run = bytes[at..].iter().take_while(|&&b| plain(b)).count();
        if run > 0 {
            // ASCII on both sides: char boundaries.
            o.push_str(&s[at..at + run]);
            at += run;
        }
        let Some(&b) = bytes.get(at) else { break };
        match b {
            b'"' => o.push_str("\\\""),
            b'\\' => o.push_str("\\\\"),
            b'?' => o.push_str("\\?"),
            b'\n' => o.push_str("\\n"),
            b'\t' => o.push_str("\\t"),
            _ => {
                o.push('\\');
                for shift in [6, 3, 0] {
                    o.push(char::from(b'0' + ((b >> shift) & 7)));
                }
            }
        }
        at += 1;
    }
    o.push('"');
}

/// Appends `0` or a C string literal.
pub(super) fn push_c_opt_str(o: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_c_str(o, s),
        None => o.push('0'),
    }
}

/// A name quoted for a `/* … */` comment (no `*/`, no `/*`).
pub(super) fn c_comment(s: &str) -> String {
    c_str(s).replace("*/", "*\\/").replace("/*", "/\\*")
}

/// Appends [`c_comment`] of `s`.
pub(super) fn push_c_comment(o: &mut String, s: &str) {
    if s.contains(['*', '/']) {
        o.push_str(&c_comment(s));
    } else {
        push_c_str(o, s);
    }
}

/// Appends a domid, `SB_DOMID_IO` for DOMID_IO.
pub(super) fn push_c_domid(o: &mut String, d: u16) {
    if d == DOMID_IO {
        o.push_str("SB_DOMID_IO");
    } else {
        push_dec(o, d.into());
    }
}

/// Appends `UINT64_C(0x…)`.
pub(super) fn push_c_u64(o: &mut String, v: u64) {
    o.push_str("UINT64_C(0x");
    push_hex(o, v);
    o.push(')');
}

/// 32-bit FNV-1a.
pub(super) fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
