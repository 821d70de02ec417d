//! Serves the ivshmem protocol by hand, for trying VMs out:
//!
//! ```text
//! cargo run -p staticbus-ivshmem-server --example serve -- DIR SIZE VECTORS ID...
//! ```
//!
//! listens on `DIR/<ID>.sock` for each peer id given (a VM on that socket gets that id),
//! with a shared object of `SIZE` bytes (a power of two, e.g. `0x1000000`) and `VECTORS`
//! vectors per peer, and prints who joins and leaves until interrupted.

use staticbus_ivshmem_server::Server;
use std::path::PathBuf;
use std::process::ExitCode;

fn parse(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: serve DIR SIZE VECTORS ID...");
        ExitCode::from(2)
    };
    let [dir, size, vectors, ids @ ..] = args.as_slice() else {
        return usage();
    };
    let (Some(size), Some(vectors)) = (parse(size), parse(vectors)) else {
        return usage();
    };
    let Ok(vectors) = u16::try_from(vectors) else {
        return usage();
    };
    let mut server = match Server::new(size, vectors) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    for id in ids {
        let Some(id) = parse(id).and_then(|i| u16::try_from(i).ok()) else {
            return usage();
        };
        let path = PathBuf::from(dir).join(format!("{id}.sock"));
        if let Err(e) = server.listen(&path, Some(id)) {
            eprintln!("serve: {e}");
            return ExitCode::FAILURE;
        }
        println!("peer {id}: {}", path.display());
    }
    loop {
        match server.step(None) {
            Ok(events) => events.iter().for_each(|e| println!("{e:?}")),
            Err(e) => {
                eprintln!("serve: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
