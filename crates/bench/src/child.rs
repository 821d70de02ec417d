//! The output of a `staticbus run` child, read whole on two threads (so that neither pipe
//! fills and stalls it while the caller measures).

use std::process::Child;
use std::thread::JoinHandle;

/// A child's stdout and stderr being read.
pub struct Captured {
    out: JoinHandle<String>,
    err: JoinHandle<String>,
}

fn read_all(mut r: impl std::io::Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

impl Captured {
    /// Starts reading `child`'s piped stdout and stderr.
    pub fn start(child: &mut Child) -> Captured {
        Captured {
            out: read_all(child.stdout.take().expect("stdout piped")),
            err: read_all(child.stderr.take().expect("stderr piped")),
        }
    }

    /// Everything the child wrote (once it closed both pipes): stdout, stderr.
    pub fn finish(self) -> (String, String) {
        (
            self.out.join().unwrap_or_default(),
            self.err.join().unwrap_or_default(),
        )
    }
}
