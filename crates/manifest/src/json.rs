//! Loading a domain's JSON manifest (`domains/<name>/manifest.json`, as `staticbus build`
//! writes it) into the `'static` types of this crate (feature `json`, needs `std`). The data
//! is leaked once per load: a process loads its manifest once. The domain processes of
//! `staticbus run` load theirs through this, and so does the runner, which checks them
//! against what the host tree binds.

use crate as m;
use serde::Deserialize;
use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec::Vec;

#[derive(Deserialize)]
struct JManifest {
    format: String,
    version: u32,
    system: String,
    xen: String,
    domain: String,
    domid: u16,
    channels: Vec<JChannel>,
    regions: Vec<JRegion>,
    evtchns: Vec<JEvtchn>,
}

#[derive(Deserialize)]
struct JChannel {
    name: String,
    protocol: String,
    role: String,
    shm_id: String,
    guest_addr: u64,
    size: u64,
    index: u32,
    writers: u32,
    readers: u32,
    peers: Vec<JPeer>,
}

#[derive(Deserialize)]
struct JPeer {
    domain: String,
    domid: u16,
    role: String,
    local_port: u32,
    remote_port: u32,
}

#[derive(Deserialize)]
struct JRegion {
    shm_id: String,
    guest_addr: u64,
    size: u64,
    host_addr: Option<u64>,
    role: String,
    owner: String,
    owner_domid: u16,
    channel: Option<String>,
}

#[derive(Deserialize)]
struct JEvtchn {
    local_port: u32,
    remote_domain: String,
    remote_domid: u16,
    remote_port: u32,
    initially_pending: bool,
    channel: Option<String>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn protocol(s: &str) -> Result<m::Protocol, String> {
    Ok(match s {
        "queue" => m::Protocol::Queue,
        "log" => m::Protocol::Log,
        "latest" => m::Protocol::Latest,
        "blob" => m::Protocol::Blob,
        other => return Err(format!("unknown protocol `{other}`")),
    })
}

fn role(s: &str) -> Result<m::Role, String> {
    Ok(match s {
        "producer" => m::Role::Producer,
        "consumer" => m::Role::Consumer,
        "writer" => m::Role::Writer,
        "reader" => m::Role::Reader,
        other => return Err(format!("unknown role `{other}`")),
    })
}

/// Parses a JSON manifest and leaks it as `'static` data.
pub fn load(text: &str) -> Result<&'static m::Manifest, String> {
    let j: JManifest = serde_json::from_str(text).map_err(|e| format!("manifest: {e}"))?;
    if j.format != "staticbus-manifest" || j.version != m::FORMAT_VERSION {
        return Err(format!(
            "manifest format `{}` version {} is not supported (want staticbus-manifest {})",
            j.format,
            j.version,
            m::FORMAT_VERSION
        ));
    }
    let mut channels = Vec::new();
    for c in j.channels {
        let mut peers = Vec::new();
        for p in c.peers {
            peers.push(m::Peer {
                domain: leak(p.domain),
                domid: p.domid,
                role: role(&p.role)?,
                local_port: p.local_port,
                remote_port: p.remote_port,
            });
        }
        channels.push(m::Channel {
            name: leak(c.name),
            protocol: protocol(&c.protocol)?,
            role: role(&c.role)?,
            shm_id: leak(c.shm_id),
            guest_addr: c.guest_addr,
            size: c.size,
            index: c.index,
            writers: c.writers,
            readers: c.readers,
            peers: Box::leak(peers.into_boxed_slice()),
        });
    }
    let mut regions = Vec::new();
    for r in j.regions {
        regions.push(m::Region {
            shm_id: leak(r.shm_id),
            guest_addr: r.guest_addr,
            size: r.size,
            host_addr: r.host_addr,
            role: match r.role.as_str() {
                "owner" => Some(m::ShmRole::Owner),
                "borrower" => Some(m::ShmRole::Borrower),
                _ => None,
            },
            owner: leak(r.owner),
            owner_domid: r.owner_domid,
            channel: r.channel.map(leak),
        });
    }
    let evtchns: Vec<m::Evtchn> = j
        .evtchns
        .into_iter()
        .map(|e| m::Evtchn {
            local_port: e.local_port,
            remote_domain: leak(e.remote_domain),
            remote_domid: e.remote_domid,
            remote_port: e.remote_port,
            initially_pending: e.initially_pending,
            channel: e.channel.map(leak),
        })
        .collect();
    Ok(Box::leak(Box::new(m::Manifest {
        format_version: j.version,
        system: leak(j.system),
        xen: leak(j.xen),
        domain: leak(j.domain),
        domid: j.domid,
        channels: Box::leak(channels.into_boxed_slice()),
        regions: Box::leak(regions.into_boxed_slice()),
        evtchns: Box::leak(evtchns.into_boxed_slice()),
    })))
}
