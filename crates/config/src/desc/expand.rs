//! The expander: each high-level channel becomes one shared region (a node in every member
//! domain) and one event-channel pair per (writer, reader) couple, with its shm id chosen
//! when the description leaves it open.

use super::schema::*;
use super::Builder;
use crate::codes::*;
use crate::model::*;
use staticbus_abi::PAGE_SIZE;
use staticbus_diag::{Diagnostic, Location};
use std::collections::{HashMap, HashSet};
use toml::Spanned;

impl Builder<'_> {
    pub(super) fn channels(&mut self, desc: &Description) {
        let mut names: HashMap<String, Location> = HashMap::new();
        let explicit_ids: HashSet<String> = desc
            .shm
            .iter()
            .map(|s| s.get_ref().id.get_ref().clone())
            .chain(
                desc.channel
                    .iter()
                    .filter_map(|c| c.get_ref().shm_id.as_ref().map(|i| i.get_ref().clone())),
            )
            .collect();
        let mut used_ids = explicit_ids.clone();
        for (ci, c) in desc.channel.iter().enumerate() {
            let cd = c.get_ref();
            let name = cd.name.get_ref().clone();
            let loc = self.loc(&cd.name);
            if let Some(prev) = names.insert(name.clone(), loc.clone()) {
                self.diags.push(
                    Diagnostic::new(
                        CHANNEL_DUPLICATE,
                        loc.clone(),
                        format!("channel `{name}` is declared twice"),
                    )
                    .with(prev, "first declared here")
                    .help("give every channel a unique name"),
                );
                continue;
            }
            let Some(protocol) = Protocol::parse(cd.protocol.get_ref()) else {
                self.err(
                    DESC_BAD_VALUE,
                    self.loc(&cd.protocol),
                    format!("unknown protocol `{}`", cd.protocol.get_ref()),
                    "use \"queue\", \"log\", \"latest\" or \"blob\"",
                );
                continue;
            };
            let side =
                |list: &Spanned<OneOrMany<String>>, this: &mut Self| -> Option<Vec<DomIdx>> {
                    let l = this.loc(list);
                    let mut out = Vec::new();
                    for n in list.get_ref().to_vec() {
                        out.push(this.dom_ref(&n, l.clone())?);
                    }
                    Some(out)
                };
            let (Some(writers), Some(readers)) = (side(&cd.from, self), side(&cd.to, self)) else {
                continue;
            };
            let (wmax, rmax) = protocol.arity();
            let (wrole, rrole) = protocol.roles();
            for (list, max, what, span) in [
                (&writers, wmax, wrole, &cd.from),
                (&readers, rmax, rrole, &cd.to),
            ] {
                if list.is_empty() || max.is_some_and(|m| list.len() > m) {
                    self.err(
                        CHANNEL_ARITY,
                        self.loc(span),
                        format!(
                            "a {} channel has {} {what}{}; it needs {}",
                            protocol.as_str(),
                            list.len(),
                            if list.len() == 1 { "" } else { "s" },
                            match max {
                                Some(1) => format!("exactly one {what}"),
                                Some(m) => format!("1 to {m} {what}s"),
                                None => format!("at least one {what}"),
                            }
                        ),
                        "split the channel, or choose a protocol that allows several",
                    );
                }
            }
            if let Some(w) = writers.iter().find(|w| readers.contains(w)) {
                self.err(
                    CHANNEL_SELF,
                    self.loc(&cd.to),
                    format!(
                        "`{}` is both a {wrole} and a {rrole} of channel `{name}`",
                        self.sys.domains[*w].name
                    ),
                    "a channel connects different domains",
                );
                continue;
            }
            let size = cd.size.get_ref().0;
            if size == 0 || size % PAGE_SIZE != 0 {
                let up = size.div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
                self.err(
                    CHANNEL_SIZE,
                    self.loc(&cd.size),
                    format!("channel size {size:#x} is not a non-zero multiple of 4 KiB"),
                    &format!("use {up:#x} ({} KiB)", up / 1024),
                );
                continue;
            }
            let Some((slot_size, value_size)) =
                self.channel_params(cd, protocol, size, writers.len(), readers.len(), &name)
            else {
                continue;
            };
            let shm_id = match &cd.shm_id {
                Some(i) => i.get_ref().clone(),
                None => {
                    let mut cand =
                        if !name.is_empty() && name.len() < staticbus_abi::dt::MAX_SHM_ID_LENGTH {
                            name.clone()
                        } else {
                            format!("sb-ch{ci}")
                        };
                    let mut n = 0;
                    while used_ids.contains(&cand) {
                        n += 1;
                        cand = format!("sb-ch{ci}-{n}");
                    }
                    cand
                }
            };
            used_ids.insert(shm_id.clone());
            let owner = match &cd.owner {
                None => None,
                Some(o) => {
                    let Some(d) = self.dom_ref(o.get_ref(), self.loc(o)) else {
                        continue;
                    };
                    if !writers.contains(&d) && !readers.contains(&d) {
                        self.err(
                            DESC_BAD_VALUE,
                            self.loc(o),
                            format!(
                                "owner `{}` is not a member of channel `{name}`",
                                o.get_ref()
                            ),
                            "the owner must be one of the channel's domains",
                        );
                        continue;
                    }
                    Some(d)
                }
            };
            let chan_idx = self.sys.channels.len();
            let mut chan = Channel {
                name: name.clone(),
                loc: loc.clone(),
                protocol,
                writers: writers.clone(),
                readers: readers.clone(),
                size,
                slot_size,
                value_size,
                shm_id: shm_id.clone(),
                shm: Vec::new(),
                evtchns: Vec::new(),
            };
            let members = chan.members();
            let guest_for = |d: DomIdx, this: &mut Self| -> Option<u64> {
                match cd.guest.as_ref().map(|g| g.get_ref()) {
                    None => None,
                    Some(PerDomain::All(a)) => Some(a.0),
                    Some(PerDomain::By(m)) => m.get(&this.sys.domains[d].name).map(|a| a.0),
                }
            };
            if let Some(g) = &cd.guest {
                if let PerDomain::By(m) = g.get_ref() {
                    for k in m.keys() {
                        if !members.iter().any(|&d| &self.sys.domains[d].name == k) {
                            self.err(
                                DESC_UNKNOWN_DOMAIN,
                                self.loc(g),
                                format!("`{k}` is not a member of channel `{name}`"),
                                "list guest addresses only for the channel's domains",
                            );
                        }
                    }
                }
            }
            for &d in &members {
                let guest = guest_for(d, self);
                chan.shm.push(self.sys.shm.len());
                self.given.guest.push(guest);
                self.sys.shm.push(ShmNode {
                    domain: d,
                    id: shm_id.clone(),
                    id_loc: cd
                        .shm_id
                        .as_ref()
                        .map(|i| self.loc(i))
                        .unwrap_or(loc.clone()),
                    host: cd.host.as_ref().map(|h| h.get_ref().0),
                    guest: guest.unwrap_or_default(),
                    size,
                    role: owner.map(|o| {
                        if o == d {
                            ShmRole::Owner
                        } else {
                            ShmRole::Borrower
                        }
                    }),
                    loc: loc.clone(),
                    mem_loc: cd
                        .guest
                        .as_ref()
                        .filter(|_| guest.is_some())
                        .map(|g| self.loc(g))
                        .or_else(|| cd.host.as_ref().map(|h| self.loc(h)))
                        .unwrap_or(loc.clone()),
                    role_loc: cd
                        .owner
                        .as_ref()
                        .map(|o| self.loc(o))
                        .unwrap_or(loc.clone()),
                    channel: Some(chan_idx),
                });
            }
            // Event channels: one pair per (writer, reader).
            let mut port_lists: HashMap<DomIdx, (Vec<u32>, Location)> = HashMap::new();
            if let Some(p) = &cd.ports {
                for (k, v) in p.get_ref() {
                    match members.iter().find(|&&d| &self.sys.domains[d].name == k) {
                        Some(&d) => {
                            port_lists.insert(d, (v.to_vec(), self.loc(p)));
                        }
                        None => self.err(
                            DESC_UNKNOWN_DOMAIN,
                            self.loc(p),
                            format!("`{k}` is not a member of channel `{name}`"),
                            "list ports only for the channel's domains",
                        ),
                    }
                }
            }
            let mut taken: HashMap<DomIdx, usize> = HashMap::new();
            let mut next_port = |d: DomIdx| -> (Option<u32>, Location) {
                let i = taken.entry(d).or_default();
                let r = port_lists
                    .get(&d)
                    .map(|(v, l)| (v.get(*i).copied(), l.clone()));
                *i += 1;
                r.unwrap_or((None, Location::None))
            };
            for &w in &writers {
                for &r in &readers {
                    let (pw, lw) = next_port(w);
                    let (pr, lr) = next_port(r);
                    let idx = self.sys.evtchns.len();
                    let lw = if lw == Location::None {
                        loc.clone()
                    } else {
                        lw
                    };
                    let lr = if lr == Location::None {
                        loc.clone()
                    } else {
                        lr
                    };
                    self.sys.evtchns.push(EvtchnPair {
                        first: EvtchnEnd {
                            domain: w,
                            port: pw.unwrap_or_default(),
                            loc: loc.clone(),
                            port_loc: lw,
                        },
                        second: EvtchnEnd {
                            domain: r,
                            port: pr.unwrap_or_default(),
                            loc: loc.clone(),
                            port_loc: lr,
                        },
                        channel: Some(chan_idx),
                    });
                    self.given.ports.push((idx, true, pw));
                    self.given.ports.push((idx, false, pr));
                    chan.evtchns.push(idx);
                }
            }
            for (d, (v, l)) in &port_lists {
                let n = taken.get(d).copied().unwrap_or(0);
                if v.len() > n {
                    self.err(
                        DESC_BAD_VALUE,
                        l.clone(),
                        format!(
                            "{} ports given for `{}` but the channel has {n} event channels there",
                            v.len(),
                            self.sys.domains[*d].name
                        ),
                        "give one port per event channel of that domain",
                    );
                }
            }
            self.sys.channels.push(chan);
        }
    }
}

/// Whether a region of `size` bytes holds `protocol` with these parameters, by the protocol
/// crate's own layout rules (the ones the endpoints attach with); the reason if not.
fn protocol_fits(
    protocol: Protocol,
    size: u64,
    writers: usize,
    readers: usize,
    slot_size: Option<u32>,
    value_size: Option<u32>,
) -> Result<(), String> {
    use staticbus_proto::{blob, latest, log, queue};
    let len = usize::try_from(size)
        .map_err(|_| "larger than this machine's address space".to_string())?;
    match protocol {
        Protocol::Queue => queue::layout(len)
            .map(drop)
            .map_err(|_| "too small for a queue's header and ring".into()),
        Protocol::Blob => blob::layout(len, readers)
            .map(drop)
            .map_err(|_| format!("too small for a blob with {readers} reader(s)")),
        Protocol::Log => {
            let slot = slot_size.unwrap_or(0) as usize;
            let Some(data) = log::data_size_for(len, readers) else {
                return Err(format!("too small for a log ring with {readers} reader(s)"));
            };
            if log::slot_size_ok(slot, data) {
                Ok(())
            } else {
                Err(format!(
                    "its ring of {data:#x} bytes does not hold two slots of {slot:#x} bytes"
                ))
            }
        }
        Protocol::Latest => {
            let p = latest::Params::new(writers, readers, value_size.unwrap_or(0) as usize)
                .map_err(|_| "invalid latest parameters".to_string())?;
            if p.region_size() as u64 <= size {
                Ok(())
            } else {
                Err(format!(
                    "{writers} writer slot(s) of {} bytes and {readers} reader line(s) need {:#x} bytes",
                    p.value_size(),
                    p.region_size()
                ))
            }
        }
    }
}

/// The smallest multiple of 4 KiB (up to 1 GiB) that holds the protocol, for a hint.
fn smallest_fit(
    protocol: Protocol,
    writers: usize,
    readers: usize,
    slot_size: Option<u32>,
    value_size: Option<u32>,
) -> Option<u64> {
    let mut size = PAGE_SIZE;
    while size <= 1 << 30 {
        if protocol_fits(protocol, size, writers, readers, slot_size, value_size).is_ok() {
            return Some(size);
        }
        size = if size < 1 << 20 {
            size + PAGE_SIZE
        } else {
            size * 2
        };
    }
    None
}

impl Builder<'_> {
    /// The protocol parameters of channel `cd` (a log's slot size, a latest channel's value
    /// size), and the check that its region holds the protocol with them. `None` (with a
    /// diagnostic) if they are missing, misplaced or do not fit.
    fn channel_params(
        &mut self,
        cd: &ChannelDesc,
        protocol: Protocol,
        size: u64,
        writers: usize,
        readers: usize,
        name: &str,
    ) -> Option<(Option<u32>, Option<u32>)> {
        let mut ok = true;
        let mut param = |this: &mut Self,
                         field: &Option<Spanned<Size>>,
                         key: &str,
                         wanted: bool,
                         max: u64|
         -> Option<u32> {
            match (field, wanted) {
                (Some(f), false) => {
                    this.err(
                        DESC_BAD_VALUE,
                        this.loc(f),
                        format!("`{key}` is not a parameter of a {protocol} channel (`{name}`)"),
                        &format!("remove `{key}`"),
                    );
                    ok = false;
                    None
                }
                (None, true) => {
                    this.err(
                        DESC_BAD_VALUE,
                        this.loc(&cd.protocol),
                        format!(
                            "{protocol} channel `{name}` has no `{key}`; both ends attach with it"
                        ),
                        &format!("add `{key} = 64` (bytes) to the channel"),
                    );
                    ok = false;
                    None
                }
                (Some(f), true) => {
                    let v = f.get_ref().0;
                    if v > max {
                        this.err(
                            DESC_BAD_VALUE,
                            this.loc(f),
                            format!("`{key}` {v:#x} is larger than a {protocol} allows ({max:#x})"),
                            "use a smaller size",
                        );
                        ok = false;
                        return None;
                    }
                    Some(v as u32)
                }
                (None, false) => None,
            }
        };
        let slot_size = param(
            self,
            &cd.slot_size,
            "slot-size",
            protocol == Protocol::Log,
            staticbus_proto::log::MAX_SLOT_SIZE as u64,
        );
        let value_size = param(
            self,
            &cd.value_size,
            "value-size",
            protocol == Protocol::Latest,
            staticbus_proto::latest::MAX_VALUE_SIZE as u64,
        );
        if let (Some(s), Some(f)) = (slot_size, &cd.slot_size) {
            let min = staticbus_proto::log::MIN_SLOT_SIZE as u32;
            if !s.is_power_of_two() || s < min {
                let up = s.max(min).next_power_of_two();
                self.err(
                    DESC_BAD_VALUE,
                    self.loc(f),
                    format!("`slot-size` {s:#x} of log `{name}` is not a power of two of at least {min:#x}"),
                    &format!("use {up:#x}"),
                );
                return None;
            }
        }
        if !ok {
            return None;
        }
        // SB0507: the region holds the protocol with these parameters.
        if let Err(why) = protocol_fits(protocol, size, writers, readers, slot_size, value_size) {
            let help = match smallest_fit(protocol, writers, readers, slot_size, value_size) {
                Some(s) => format!("use at least {s:#x} ({} KiB)", s / 1024),
                None => "use smaller protocol parameters".into(),
            };
            self.err(
                CHANNEL_SIZE,
                self.loc(&cd.size),
                format!("channel `{name}` of {size:#x} bytes is too small for its protocol: {why}"),
                &help,
            );
            return None;
        }
        Some((slot_size, value_size))
    }
}
