//! `CONSOLEIO_write` as Xen's `guest_console_write` does it (4.17–4.20).
//!
//! The hardware domain's bytes go straight to the console. Any other domain's output is
//! taken in chunks of 127 bytes; in each chunk everything up to the first newline is kept
//! if it is printable (Xen's `isprint`: 0x20–0x7E and 0xA0–0xFF) or a tab, and buffered
//! until a newline arrives or the 200-byte per-domain buffer would overflow; then the
//! buffered text and the chunk's text are printed as one line (Xen prints it with a
//! `(d<id>) ` prefix at guest DEBUG level; the [`crate::Console`] adds any prefix it wants).

/// Xen's `DOMAIN_PBUF_SIZE`.
pub(crate) const PBUF_SIZE: usize = 200;
/// Xen copies the guest's buffer in chunks of `sizeof(kbuf) - 1`.
const CHUNK: usize = 127;

/// Xen's `isprint` (`xen/lib/ctype.c`).
pub(crate) fn xen_isprint(c: u8) -> bool {
    matches!(c, 0x20..=0x7e | 0xa0..=0xff)
}

/// Feeds `data` through a domU's line buffer `pbuf`; every completed line (with its `\n`)
/// is passed to `line`.
pub(crate) fn guest_write(pbuf: &mut Vec<u8>, data: &[u8], mut line: impl FnMut(Vec<u8>)) {
    let mut rest = data;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(CHUNK)];
        let mut kept = Vec::with_capacity(chunk.len());
        let mut consumed = 0;
        let mut newline = false;
        for &c in chunk {
            consumed += 1;
            if c == b'\n' {
                newline = true;
                break;
            }
            if xen_isprint(c) || c == b'\t' {
                kept.push(c);
            }
        }
        if !newline && pbuf.len() + kept.len() < PBUF_SIZE - 1 {
            pbuf.extend_from_slice(&kept);
        } else {
            let mut out = std::mem::take(pbuf);
            out.extend_from_slice(&kept);
            out.push(b'\n');
            line(out);
        }
        rest = &rest[consumed..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pbuf: &mut Vec<u8>, data: &[u8]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        guest_write(pbuf, data, |l| v.push(l));
        v
    }

    #[test]
    fn buffers_until_newline_and_strips_controls() {
        let mut pbuf = Vec::new();
        assert!(run(&mut pbuf, b"hel\x01lo").is_empty());
        assert_eq!(pbuf, b"hello");
        assert_eq!(
            run(&mut pbuf, b" world\nnext"),
            vec![b"hello world\n".to_vec()]
        );
        assert_eq!(pbuf, b"next");
        assert_eq!(run(&mut pbuf, b"\n"), vec![b"next\n".to_vec()]);
        assert!(pbuf.is_empty());
    }

    #[test]
    fn tabs_and_latin1_are_printable_c1_and_del_are_not() {
        let mut pbuf = Vec::new();
        let l = run(&mut pbuf, b"a\tb\x7f\x85\xe9\r\n");
        assert_eq!(l, vec![b"a\tb\xe9\n".to_vec()]);
    }

    #[test]
    fn a_full_buffer_is_flushed_as_a_line() {
        let mut pbuf = Vec::new();
        // 127 + 127 bytes without newline: the second chunk would overflow 199 bytes.
        let data = vec![b'x'; 254];
        let l = run(&mut pbuf, &data);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].len(), 255);
        assert!(pbuf.is_empty());
    }

    #[test]
    fn several_lines_in_one_chunk() {
        let mut pbuf = Vec::new();
        let l = run(&mut pbuf, b"a\nb\n\nc");
        assert_eq!(l, vec![b"a\n".to_vec(), b"b\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(pbuf, b"c");
    }
}
