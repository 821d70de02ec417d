//! `staticbus-mkinitramfs OUT ENTRY...`: writes an initramfs, a newc cpio archive (the
//! format the kernel unpacks), gzip-compressed when `OUT` ends in `.gz`.
//!
//! Entries, in archive paths without a leading `/`:
//!
//! * `PATH=HOSTFILE` — a regular file with HOSTFILE's contents, mode 0755 if HOSTFILE is
//!   executable, 0644 otherwise;
//! * `PATH/` — a directory (0755);
//! * `PATH=c:MAJOR:MINOR` — a character device (0600), e.g. `dev/console=c:5:1`.
//!
//! Parent directories are added automatically. The archive is reproducible: entries in
//! the order given (parents first), inode numbers counted from 1, mtime 0, uid/gid 0.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

use cpio::newc::{Builder, ModeFileType};

/// One archive member.
enum Member {
    Dir,
    File { data: Vec<u8>, exec: bool },
    CharDev { major: u32, minor: u32 },
}

fn parse(arg: &str) -> Result<(String, Member), String> {
    if let Some(dir) = arg.strip_suffix('/') {
        return Ok((clean(dir)?, Member::Dir));
    }
    let (path, what) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}`: expected PATH=HOSTFILE, PATH/ or PATH=c:MAJOR:MINOR"))?;
    let path = clean(path)?;
    if let Some(dev) = what.strip_prefix("c:") {
        let (ma, mi) = dev
            .split_once(':')
            .ok_or_else(|| format!("`{arg}`: expected c:MAJOR:MINOR"))?;
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|e| format!("`{arg}`: bad device number `{s}`: {e}"))
        };
        return Ok((
            path,
            Member::CharDev {
                major: num(ma)?,
                minor: num(mi)?,
            },
        ));
    }
    let data = std::fs::read(what).map_err(|e| format!("cannot read `{what}`: {e}"))?;
    let exec = std::fs::metadata(what)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    Ok((path, Member::File { data, exec }))
}

fn clean(p: &str) -> Result<String, String> {
    let p = p.trim_start_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("`{p}`: not a plain relative archive path"));
    }
    Ok(p.to_string())
}

fn write_archive<W: Write>(members: &[(String, Member)], mut w: W) -> io::Result<W> {
    let mut seen = BTreeSet::new();
    let mut ino = 0u32;
    let mut next = || {
        ino += 1;
        ino
    };
    for (path, m) in members {
        // Parents first.
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let dir = parts[..i].join("/");
            if seen.insert(dir.clone()) {
                w = Builder::new(&dir)
                    .ino(next())
                    .mode(0o755)
                    .set_mode_file_type(ModeFileType::Directory)
                    .nlink(2)
                    .write(w, 0)
                    .finish()?;
            }
        }
        if !seen.insert(path.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{path}` given twice"),
            ));
        }
        let b = Builder::new(path).ino(next());
        w = match m {
            Member::Dir => b
                .mode(0o755)
                .set_mode_file_type(ModeFileType::Directory)
                .nlink(2)
                .write(w, 0)
                .finish()?,
            Member::CharDev { major, minor } => b
                .mode(0o600)
                .set_mode_file_type(ModeFileType::Char)
                .rdev_major(*major)
                .rdev_minor(*minor)
                .write(w, 0)
                .finish()?,
            Member::File { data, exec } => {
                let len = u32::try_from(data.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("`{path}`: over 4 GiB"))
                })?;
                let mut fw = b
                    .mode(if *exec { 0o755 } else { 0o644 })
                    .set_mode_file_type(ModeFileType::Regular)
                    .write(w, len);
                io::copy(&mut Cursor::new(data), &mut fw)?;
                fw.finish()?
            }
        };
    }
    cpio::newc::trailer(w)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args[0] == "-h" || args[0] == "--help" {
        eprintln!(
            "usage: staticbus-mkinitramfs OUT[.gz] ENTRY...\n  \
             ENTRY: PATH=HOSTFILE | PATH/ | PATH=c:MAJOR:MINOR"
        );
        return ExitCode::from(2);
    }
    let out = &args[0];
    let mut members = Vec::new();
    for a in &args[1..] {
        match parse(a) {
            Ok(m) => members.push(m),
            Err(e) => {
                eprintln!("staticbus-mkinitramfs: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let tmp = format!("{out}.tmp");
    let r = (|| -> io::Result<()> {
        let f = BufWriter::new(File::create(&tmp)?);
        if out.ends_with(".gz") {
            let gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
            write_archive(&members, gz)?.finish()?.flush()?;
        } else {
            write_archive(&members, f)?.flush()?;
        }
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("staticbus-mkinitramfs: cannot write `{out}`: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_lists_parents_then_members_and_ends_with_the_trailer() {
        let members = vec![
            (
                "lib/modules/a.ko".to_string(),
                Member::File {
                    data: b"abc".to_vec(),
                    exec: false,
                },
            ),
            (
                "dev/console".to_string(),
                Member::CharDev { major: 5, minor: 1 },
            ),
            ("proc".to_string(), Member::Dir),
        ];
        let bytes = write_archive(&members, Vec::new()).unwrap();
        let mut r = Cursor::new(bytes);
        let mut names = Vec::new();
        loop {
            let e = cpio::NewcReader::new(r).unwrap();
            if e.entry().is_trailer() {
                break;
            }
            names.push((
                e.entry().name().to_string(),
                e.entry().mode(),
                e.entry().file_size(),
            ));
            r = e.finish().unwrap();
        }
        assert_eq!(
            names,
            vec![
                ("lib".into(), 0o040755, 0),
                ("lib/modules".into(), 0o040755, 0),
                ("lib/modules/a.ko".into(), 0o100644, 3),
                ("dev".into(), 0o040755, 0),
                ("dev/console".into(), 0o020600, 0),
                ("proc".into(), 0o040755, 0),
            ]
        );
    }

    #[test]
    fn paths_must_be_plain() {
        assert!(clean("../x").is_err());
        assert!(clean("a//b").is_err());
        assert_eq!(clean("/init").unwrap(), "init");
    }
}
