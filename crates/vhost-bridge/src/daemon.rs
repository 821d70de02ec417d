//! A vhost-user daemon as a child process: started with its own arguments, waited for until
//! its socket exists, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::Error;

/// A running daemon process that listens on a vhost-user socket.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    program: String,
    socket: PathBuf,
}

impl Daemon {
    /// Starts `command` and waits up to `timeout` for `socket` to appear. A stale socket
    /// file at that path is removed first (daemons refuse to bind over one). Fails if the
    /// program cannot start, exits before creating the socket, or is too slow.
    pub fn spawn(command: Command, socket: &Path, timeout: Duration) -> Result<Self, Error> {
        let program = command.get_program().to_string_lossy().into_owned();
        let err = |why: String| Error::Daemon {
            program: program.clone(),
            why,
        };
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(err(format!(
                    "cannot remove the stale socket {}: {e}",
                    socket.display()
                )))
            }
        }
        let where_ = format!("its socket {}", socket.display());
        let socket = socket.to_path_buf();
        Self::start(command, timeout, &where_, move || {
            Ok(socket.exists().then(|| socket.clone()))
        })
    }

    /// Starts `command` and waits up to `timeout` for the first Unix socket to appear in
    /// the folder `dir` (which should be empty and private to this daemon): for daemons
    /// that derive the socket's name from the path they are given (rust-vmm's
    /// vhost-device-* append the socket's index, `--socket-path X` listens on `X0`). Fails
    /// like [`Daemon::spawn`]; [`Daemon::socket`] then names the socket found.
    pub fn spawn_in(command: Command, dir: &Path, timeout: Duration) -> Result<Self, Error> {
        use std::os::unix::fs::FileTypeExt;
        let where_ = format!("a socket in {}", dir.display());
        Self::start(command, timeout, &where_, || {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            Ok(entries
                .filter_map(Result::ok)
                .find(|e| e.file_type().is_ok_and(|t| t.is_socket()))
                .map(|e| e.path()))
        })
    }

    /// Starts `command`, then polls `socket` (the socket's path once it exists) every
    /// 10 ms until it answers, the daemon exits, or `timeout` passes; `what` names the
    /// socket waited for in the messages.
    fn start(
        mut command: Command,
        timeout: Duration,
        what: &str,
        mut socket: impl FnMut() -> Result<Option<PathBuf>, String>,
    ) -> Result<Self, Error> {
        let program = command.get_program().to_string_lossy().into_owned();
        let err = |why: String| Error::Daemon {
            program: program.clone(),
            why,
        };
        let child = command
            .spawn()
            .map_err(|e| err(format!("cannot start: {e}")))?;
        let mut daemon = Self {
            child,
            program: program.clone(),
            socket: PathBuf::new(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(path) = socket().map_err(err)? {
                daemon.socket = path;
                return Ok(daemon);
            }
            if let Some(status) = daemon
                .child
                .try_wait()
                .map_err(|e| err(format!("wait: {e}")))?
            {
                return Err(err(format!("exited ({status}) before creating {what}")));
            }
            if Instant::now() >= deadline {
                return Err(err(format!("did not create {what} within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        self.child.wait()
    }

    /// Asks it to stop (SIGTERM) and waits up to `timeout` for it to exit; kills it after
    /// that. Returns its exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let program = self.program.clone();
        let err = |why: String| Error::Daemon {
            program: program.clone(),
            why,
        };
        if let Some(status) = self
            .child
            .try_wait()
            .map_err(|e| err(format!("wait: {e}")))?
        {
            return Ok(status);
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32)
            .ok_or_else(|| err("no process id".into()))?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|e| err(format!("SIGTERM: {e}")))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| err(format!("wait: {e}")))?
            {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill().map_err(|e| err(format!("kill: {e}")))?;
                return Err(err(format!(
                    "did not exit within {timeout:?} of SIGTERM; killed"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
