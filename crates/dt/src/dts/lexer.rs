//! The DTS lexer. It reproduces dtc's flex scanner: the same start conditions (INITIAL,
//! V1, PROPNODENAME, BYTESTRING) switched by the same tokens, the same longest-match
//! choices, the same escape handling, and `/include/` expanded lexically (the included
//! file's tokens are spliced into the stream wherever the directive appears).
//!
//! The parser pulls tokens one at a time, so no token vector of the whole input is ever
//! held (on a 6 MB tree it was over a million tokens). Lexing runs twice: [`scan`] lexes
//! everything once and reports every lexical diagnostic, keeping no tokens; then
//! [`Lexer::replay`] lexes again on demand for the parser, silently, with the same
//! `/include/` outcomes and stopping where the first pass stopped. So the lexer's
//! diagnostics still come before the parser's, and the parser's error budget still counts
//! all of them, exactly as when the whole input was lexed before parsing.

use super::codes;
use super::{DtsOptions, FileLoader};
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Sources, Span};
use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// Total `/include/` expansions allowed in one parse (guards against exponential DAGs).
const MAX_INCLUDE_EXPANSIONS: usize = 4096;

/// A token kind. Tokens with text (names, labels, references, strings) carry none: the
/// parser reads it from the token's span ([`Lexer::text`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    V1,
    Plugin,
    MemReserve,
    Bits,
    DelProp,
    DelNode,
    OmitNoRef,
    Incbin,
    /// `name:` (the span covers the name without the colon).
    Label,
    /// An integer literal (already converted; errors already reported).
    Literal(u64),
    /// A character literal's value.
    CharLit(u64),
    /// `&label` (the span covers the `&`).
    LabelRef,
    /// `&{…}` (the span covers `&{` and `}`).
    PathRef,
    /// Two hex digits inside `[…]`.
    Byte(u8),
    /// A property or node name (the span covers a leading backslash, if any).
    Name,
    /// A string literal (the span covers the quotes).
    Str,
    Shl,
    Shr,
    Le,
    Ge,
    EqEq,
    Ne,
    AndAnd,
    OrOr,
    /// Any other single character.
    Punct(char),
    /// A lexical error that has already been reported.
    Bad,
    Eof,
}

/// A token with its span.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Initial,
    V1,
    PropNodeName,
    ByteString,
}

#[derive(Clone)]
struct Frame {
    file: FileId,
    text: Rc<str>,
    pos: usize,
    /// The path the file was opened under (its directory anchors relative includes).
    path: PathBuf,
    /// Normalised path, for cycle detection.
    key: PathBuf,
}

/// What the first pass saw, for the second to lex the same tokens.
pub(crate) struct Recording {
    /// The main file.
    file: FileId,
    text: Rc<str>,
    /// Every `/include/` in lexing order: the file expanded, or None when it was not.
    includes: Vec<Option<Frame>>,
    /// Tokens the first pass produced (fewer than the input holds if it gave up).
    tokens: usize,
}

/// The first pass: lexes `text` (registered as `name`) and everything it includes,
/// reports every lexical problem to `diags`, and keeps no tokens.
pub(crate) fn scan(
    sources: &mut Sources,
    name: &str,
    text: String,
    opts: &DtsOptions,
    loader: &dyn FileLoader,
    diags: &mut Diagnostics,
) -> Recording {
    let text: Rc<str> = Rc::from(text);
    let file = sources.add_text(name, text.to_string());
    let path = PathBuf::from(name);
    let mut lx = Lexer {
        sources: Some(sources),
        opts,
        loader,
        diags: Some(diags),
        out: VecDeque::new(),
        keep: false,
        produced: 0,
        limit: usize::MAX,
        replay: None,
        recorded: Vec::new(),
        files: vec![(file, text.clone())],
        main: (file, text.len()),
        state: State::Initial,
        stack: vec![Frame {
            file,
            text: text.clone(),
            pos: 0,
            key: normalize(&path),
            path,
        }],
        cache: HashMap::new(),
        expansions: 0,
        stopped: false,
        done: false,
    };
    while lx.advance() {}
    Recording {
        file,
        text,
        includes: lx.recorded,
        tokens: lx.produced,
    }
}

/// Lexes a file and everything it includes. The first pass ([`scan`]) reports; the
/// second ([`Lexer::replay`]) hands the tokens to the parser one at a time.
pub(crate) struct Lexer<'a> {
    /// None in the second pass (every file is registered already).
    sources: Option<&'a mut Sources>,
    opts: &'a DtsOptions,
    loader: &'a dyn FileLoader,
    /// None in the second pass (every lexical problem is reported already).
    diags: Option<&'a mut Diagnostics>,
    /// Tokens lexed and not yet taken (second pass).
    out: VecDeque<Token>,
    /// Whether tokens are kept (second pass) or only counted (first pass).
    keep: bool,
    produced: usize,
    /// The second pass stops after as many tokens as the first produced.
    limit: usize,
    /// Second pass: the first pass's `/include/` outcomes, in order.
    replay: Option<std::vec::IntoIter<Option<Frame>>>,
    /// First pass: the `/include/` outcomes.
    recorded: Vec<Option<Frame>>,
    /// Text of every file read, for [`Lexer::text`].
    files: Vec<(FileId, Rc<str>)>,
    /// The main file and its length (where `Eof` is).
    main: (FileId, usize),
    state: State,
    stack: Vec<Frame>,
    cache: HashMap<PathBuf, (FileId, Rc<str>)>,
    expansions: usize,
    /// Set after too many errors: the rest of the input is ignored.
    stopped: bool,
    /// The input is used up (or the first pass stopped here).
    done: bool,
}

impl<'a> Lexer<'a> {
    /// The second pass over what [`scan`] recorded (`opts` and `loader` are not used
    /// again: every `/include/` is replayed).
    pub(crate) fn replay(
        rec: Recording,
        opts: &'a DtsOptions,
        loader: &'a dyn FileLoader,
    ) -> Lexer<'a> {
        let path = PathBuf::new();
        Lexer {
            sources: None,
            opts,
            loader,
            diags: None,
            out: VecDeque::new(),
            keep: true,
            produced: 0,
            limit: rec.tokens,
            replay: Some(rec.includes.into_iter()),
            recorded: Vec::new(),
            files: vec![(rec.file, rec.text.clone())],
            main: (rec.file, rec.text.len()),
            state: State::Initial,
            stack: vec![Frame {
                file: rec.file,
                text: rec.text,
                pos: 0,
                key: path.clone(),
                path,
            }],
            cache: HashMap::new(),
            expansions: 0,
            stopped: false,
            done: false,
        }
    }

    /// The next token; `Eof` at the end, and again after it.
    pub(crate) fn next_token(&mut self) -> Token {
        loop {
            if let Some(t) = self.out.pop_front() {
                return t;
            }
            if !self.advance() {
                let (file, end) = self.main;
                return Token {
                    tok: Tok::Eof,
                    span: Span::new(file, end, end),
                };
            }
        }
    }

    /// The source text under `span` (of a token this lexer produced).
    pub(crate) fn text(&self, span: Span) -> &str {
        let text = match self.files.iter().rev().find(|(f, _)| *f == span.file) {
            Some((_, t)) => t,
            None => return "",
        };
        text.get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `[a-zA-Z0-9,._+*#?@-]`
pub(crate) fn is_propnode_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b",._+*#?@-".contains(&c)
}

fn is_path_char(c: u8) -> bool {
    is_propnode_char(c) || c == b'/'
}

fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Length of `{LABEL}` at `i` (0 if none).
fn label_len(b: &[u8], i: usize) -> usize {
    if i < b.len() && is_label_start(b[i]) {
        let mut j = i + 1;
        while j < b.len() && is_label_char(b[j]) {
            j += 1;
        }
        j - i
    } else {
        0
    }
}

/// Matches dtc's STRING regex `"([^\\"]|\\.)*"` at `i` (which holds `"`): the end offset, or
/// the reason it does not match.
fn scan_string(b: &[u8], i: usize) -> Result<usize, StrErr> {
    let mut j = i + 1;
    loop {
        match b.get(j) {
            None => return Err(StrErr::Eof),
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => match b.get(j + 1) {
                None => return Err(StrErr::Eof),
                Some(b'\n') => return Err(StrErr::BackslashNewline(j)),
                Some(_) => j += 2,
            },
            Some(_) => j += 1,
        }
    }
}

enum StrErr {
    Eof,
    BackslashNewline(usize),
}

/// Emulates `strtol` on a window of at most `max` bytes with radix 16: skips leading
/// whitespace and a sign like the C library does. Returns (value, bytes consumed), or None
/// when no digit was converted.
fn strtol_hex_window(w: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    while i < w.len() && is_ws(w[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < w.len() && (w[i] == b'+' || w[i] == b'-') {
        neg = w[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i64 = 0;
    while i < w.len() && w[i].is_ascii_hexdigit() {
        v = v * 16 + i64::from((w[i] as char).to_digit(16).unwrap_or(0));
        i += 1;
    }
    if i == start {
        return None;
    }
    Some((if neg { -v } else { v }, i))
}

/// dtc's `data_copy_escape_string` on `raw[..len]`; `raw` may extend one byte past `len`
/// (the closing delimiter), which an escape at the very end reads like dtc does. Returns
/// the bytes (no NUL) and the offset of the first bad `\x` escape, if any.
pub(crate) fn unescape(raw: &[u8], len: usize) -> (Vec<u8>, Option<usize>) {
    let mut out = Vec::with_capacity(len);
    let mut bad = None;
    let mut i = 0;
    while i < len {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            out.push(0);
            break;
        };
        let mut j = i + 1;
        let v = match e {
            b'a' => 0x07,
            b'b' => 0x08,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 0x0b,
            b'f' => 0x0c,
            b'r' => b'\r',
            b'0'..=b'7' => {
                let mut v: u32 = 0;
                let mut k = i;
                while k < raw.len() && k < i + 3 && (b'0'..=b'7').contains(&raw[k]) {
                    v = v * 8 + u32::from(raw[k] - b'0');
                    k += 1;
                }
                j = k;
                v as u8
            }
            b'x' => {
                let w = &raw[j..raw.len().min(j + 2)];
                match strtol_hex_window(w) {
                    Some((v, n)) => {
                        j += n;
                        v as u8
                    }
                    None => {
                        bad.get_or_insert(i - 1);
                        0
                    }
                }
            }
            other => other,
        };
        out.push(v);
        i = j;
    }
    (out, bad)
}

/// Lexical normalisation of a path (drops `.`, folds `dir/..`).
fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.last(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out.iter().collect()
}

const CPP_DIRECTIVES: &[&str] = &[
    "include",
    "include_next",
    "import",
    "define",
    "undef",
    "if",
    "ifdef",
    "ifndef",
    "elif",
    "else",
    "endif",
    "error",
    "warning",
    "pragma",
    "line",
];

impl Lexer<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        let f = self.stack.last().map(|f| f.file).unwrap_or(FileId(0));
        Span::new(f, start, end)
    }

    fn push_tok(&mut self, tok: Tok, start: usize, end: usize) {
        let span = self.span(start, end);
        self.push_token(Token { tok, span });
    }

    fn push_token(&mut self, t: Token) {
        self.produced += 1;
        if self.keep {
            self.out.push_back(t);
        }
    }

    fn error(&mut self, d: Diagnostic) {
        if self.stopped {
            return;
        }
        let Some(diags) = self.diags.as_deref_mut() else {
            return;
        };
        let span = d.location.as_span();
        diags.push(d);
        if diags.len() >= super::MAX_ERRORS {
            self.stopped = true;
            if let Some(span) = span {
                diags.push(
                    Diagnostic::new(codes::SYNTAX, span, "too many errors; giving up")
                        .label("the rest of the input was not read")
                        .help("fix the errors above first"),
                );
            }
        }
    }

    /// Lexes one more item (which may produce no token, or open or close a file).
    /// False once the input is used up, the first pass gave up, or the second pass has
    /// produced what the first did.
    fn advance(&mut self) -> bool {
        if self.done || self.stopped || self.produced >= self.limit {
            self.done = true;
            return false;
        }
        let Some(frame) = self.stack.last() else {
            self.done = true;
            return false;
        };
        if frame.pos >= frame.text.len() {
            self.stack.pop();
            return true;
        }
        let text = frame.text.clone();
        let pos = frame.pos;
        let idx = self.stack.len() - 1;
        let next = self.step(text.as_bytes(), pos);
        // `step` may have pushed an included file above `idx`; the including file
        // resumes at `next` once that one ends.
        self.stack[idx].pos = next;
        true
    }

    /// Lexes one item at `i` and returns the offset after it.
    fn step(&mut self, b: &[u8], i: usize) -> usize {
        let c = b[i];
        let at_bol = i == 0 || b[i - 1] == b'\n';

        // /include/ {WS}* {STRING}
        if b[i..].starts_with(b"/include/") {
            let mut j = i + 9;
            while j < b.len() && is_ws(b[j]) {
                j += 1;
            }
            if b.get(j) == Some(&b'"') {
                if let Ok(end) = scan_string(b, j) {
                    let name = String::from_utf8_lossy(&b[j + 1..end - 1]).into_owned();
                    self.include(&name, i, end);
                    return end;
                }
            }
            let d = Diagnostic::new(
                codes::SYNTAX,
                self.span(i, i + 9),
                "/include/ must be followed by a quoted file name",
            )
            .label("expected `\"file.dtsi\"` after this")
            .help("write `/include/ \"file.dtsi\"`");
            self.error(d);
            self.push_tok(Tok::Bad, i, i + 9);
            return i + 9;
        }

        if c == b'#' {
            if at_bol {
                if let Some(end) = line_marker(b, i) {
                    return end;
                }
            }
            if let Some(end) = self.cpp_directive(b, i) {
                return end;
            }
        }

        if c == b'"' {
            return self.string(b, i);
        }

        if c == b'/' {
            const KW: &[(&[u8], Tok)] = &[
                (b"/dts-v1/", Tok::V1),
                (b"/plugin/", Tok::Plugin),
                (b"/memreserve/", Tok::MemReserve),
                (b"/bits/", Tok::Bits),
                (b"/delete-property/", Tok::DelProp),
                (b"/delete-node/", Tok::DelNode),
                (b"/omit-if-no-ref/", Tok::OmitNoRef),
            ];
            for (kw, tok) in KW {
                if b[i..].starts_with(kw) {
                    let end = i + kw.len();
                    self.state = match tok {
                        Tok::V1 | Tok::MemReserve | Tok::Bits => State::V1,
                        Tok::DelProp | Tok::DelNode | Tok::OmitNoRef => State::PropNodeName,
                        _ => self.state,
                    };
                    self.push_tok(*tok, i, end);
                    return end;
                }
            }
            if b[i..].starts_with(b"/incbin/") && matches!(self.state, State::Initial | State::V1) {
                self.push_tok(Tok::Incbin, i, i + 8);
                return i + 8;
            }
            if b[i..].starts_with(b"/*") {
                return match find(b, i + 2, b"*/") {
                    Some(k) => k + 2,
                    None => {
                        let d = Diagnostic::new(
                            codes::UNTERMINATED_COMMENT,
                            self.span(i, i + 2),
                            "unterminated /* comment",
                        )
                        .label("this comment is never closed")
                        .help("close the comment with `*/`");
                        self.error(d);
                        b.len()
                    }
                };
            }
            if b[i..].starts_with(b"//") {
                return match b[i..].iter().position(|&x| x == b'\n') {
                    Some(k) => i + k + 1,
                    None => {
                        let d = Diagnostic::new(
                            codes::LINE_COMMENT_EOF,
                            self.span(i, b.len()),
                            "// comment at the end of the file without a newline",
                        )
                        .label("dtc only accepts a // comment that ends with a newline")
                        .help("add a newline at the end of the file");
                        self.error(d);
                        b.len()
                    }
                };
            }
        }

        // Labels win over names, bytes and everything else when they match.
        let ll = label_len(b, i);
        if ll > 0 && b.get(i + ll) == Some(&b':') {
            self.push_tok(Tok::Label, i, i + ll);
            return i + ll + 1;
        }

        match self.state {
            State::V1 if c.is_ascii_digit() => return self.literal(b, i),
            State::ByteString
                if c.is_ascii_hexdigit() && b.get(i + 1).is_some_and(|x| x.is_ascii_hexdigit()) =>
            {
                let s = std::str::from_utf8(&b[i..i + 2]).unwrap_or("00");
                let v = u8::from_str_radix(s, 16).unwrap_or(0);
                self.push_tok(Tok::Byte(v), i, i + 2);
                return i + 2;
            }
            State::ByteString if c == b']' => {
                self.state = State::V1;
                self.push_tok(Tok::Punct(']'), i, i + 1);
                return i + 1;
            }
            State::PropNodeName => {
                let start = if c == b'\\' { i + 1 } else { i };
                let mut j = start;
                while j < b.len() && is_propnode_char(b[j]) {
                    j += 1;
                }
                if j > start {
                    self.state = State::V1;
                    self.push_tok(Tok::Name, i, j);
                    return j;
                }
            }
            _ => {}
        }

        if c == b'\'' {
            if let Some(end) = self.char_literal(b, i) {
                return end;
            }
        }

        if c == b'&' {
            let ll = label_len(b, i + 1);
            if ll > 0 {
                self.push_tok(Tok::LabelRef, i, i + 1 + ll);
                return i + 1 + ll;
            }
            if b.get(i + 1) == Some(&b'{') {
                let mut j = i + 2;
                while j < b.len() && is_path_char(b[j]) {
                    j += 1;
                }
                if b.get(j) == Some(&b'}') {
                    if j == i + 2 {
                        let d = Diagnostic::new(
                            codes::EMPTY_REF,
                            self.span(i, j + 1),
                            "empty reference `&{}`",
                        )
                        .label("no path or label inside the braces")
                        .help("write `&{/path/to/node}` or `&label`");
                        self.error(d);
                        self.push_tok(Tok::Bad, i, j + 1);
                        return j + 1;
                    }
                    self.push_tok(Tok::PathRef, i, j + 1);
                    return j + 1;
                }
                let d = Diagnostic::new(
                    codes::SYNTAX,
                    self.span(i, j.min(b.len())),
                    "malformed path reference",
                )
                .label("`&{` must be followed by a node path and `}`")
                .help(
                    "path references look like `&{/soc/serial@9000000}`; node names may \
                     only contain letters, digits and `,._+*#?@-`",
                );
                self.error(d);
                self.push_tok(Tok::Bad, i, i + 2);
                return i + 2;
            }
        }

        if is_ws(c) {
            let mut j = i + 1;
            while j < b.len() && is_ws(b[j]) {
                j += 1;
            }
            return j;
        }

        const OPS: &[(&[u8], Tok)] = &[
            (b"<<", Tok::Shl),
            (b">>", Tok::Shr),
            (b"<=", Tok::Le),
            (b">=", Tok::Ge),
            (b"==", Tok::EqEq),
            (b"!=", Tok::Ne),
            (b"&&", Tok::AndAnd),
            (b"||", Tok::OrOr),
        ];
        for (op, tok) in OPS {
            if b[i..].starts_with(op) {
                self.push_tok(*tok, i, i + 2);
                return i + 2;
            }
        }

        // `.`: one character.
        if c.is_ascii() && b"/{};=<>[],()+-*%&|^~!?:".contains(&c) {
            match c {
                b'[' => self.state = State::ByteString,
                b'{' | b';' => self.state = State::PropNodeName,
                _ => {}
            }
            self.push_tok(Tok::Punct(c as char), i, i + 1);
            return i + 1;
        }
        self.unexpected_char(b, i)
    }

    fn unexpected_char(&mut self, b: &[u8], i: usize) -> usize {
        // A bare word is reported once, not letter by letter.
        if is_label_char(b[i]) {
            let mut j = i + 1;
            while j < b.len() && is_label_char(b[j]) {
                j += 1;
            }
            let word = String::from_utf8_lossy(&b[i..j]).into_owned();
            let (msg, help) = match self.state {
                State::ByteString => (
                    format!("`{word}` in a byte string"),
                    "byte strings hold pairs of hex digits, e.g. [0a 1b 2c]",
                ),
                State::Initial => (
                    format!("unexpected `{word}` before /dts-v1/;"),
                    "start the file with `/dts-v1/;`",
                ),
                _ => (
                    format!("unexpected word `{word}`"),
                    "bare words are only allowed as node or property names; quote strings \
                     (\"text\"), write numbers in decimal, 0x hex or 0 octal, and \
                     references as &label",
                ),
            };
            let d = Diagnostic::new(codes::BAD_CHAR_INPUT, self.span(i, j), msg)
                .label("not valid here")
                .help(help);
            self.error(d);
            self.push_tok(Tok::Bad, i, j);
            return j;
        }
        // Decode one UTF-8 character (the text is valid UTF-8).
        let len = match b[i] {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        }
        .min(b.len() - i);
        let ch = std::str::from_utf8(&b[i..i + len])
            .ok()
            .and_then(|s| s.chars().next())
            .unwrap_or('\u{fffd}');
        let what = match self.state {
            State::ByteString => "in a byte string `[...]` (expected pairs of hex digits)",
            State::PropNodeName => {
                "here (node and property names may contain letters, digits and `,._+*#?@-`)"
            }
            _ => "here",
        };
        let d = Diagnostic::new(
            codes::BAD_CHAR_INPUT,
            self.span(i, i + len),
            format!("unexpected character {ch:?} {what}"),
        )
        .label("not valid DTS syntax")
        .help(if self.state == State::ByteString {
            "byte strings hold pairs of hex digits, e.g. [0a 1b 2c]"
        } else {
            "outside strings and comments, DTS uses only names, numbers and the punctuation \
             / { } ; = < > [ ] , ( ) & and operators inside (...)"
        });
        self.error(d);
        self.push_tok(Tok::Bad, i, i + len);
        i + len
    }

    fn string(&mut self, b: &[u8], i: usize) -> usize {
        match scan_string(b, i) {
            Ok(end) => {
                // The second pass reports nothing, and the parser unescapes the text
                // itself.
                let bad = if self.diags.is_some() {
                    unescape(&b[i + 1..end], end - i - 2).1
                } else {
                    None
                };
                if let Some(k) = bad {
                    let at = i + 1 + k;
                    let d = Diagnostic::new(
                        codes::BAD_ESCAPE,
                        self.span(at, (at + 2).min(end)),
                        "`\\x` escape without hex digits",
                    )
                    .label("expected one or two hex digits after `\\x`")
                    .help("write e.g. `\\x0a`, or `\\\\x` for a literal backslash and x");
                    self.error(d);
                }
                self.push_tok(Tok::Str, i, end);
                end
            }
            Err(StrErr::Eof) => {
                let d = Diagnostic::new(
                    codes::UNTERMINATED_STRING,
                    self.span(i, i + 1),
                    "unterminated string literal",
                )
                .label("this string is never closed")
                .help("add the closing `\"`");
                self.error(d);
                self.push_tok(Tok::Bad, i, b.len());
                b.len()
            }
            Err(StrErr::BackslashNewline(k)) => {
                let d = Diagnostic::new(
                    codes::UNTERMINATED_STRING,
                    self.span(k, k + 2),
                    "backslash-newline inside a string literal",
                )
                .label("dtc does not allow line continuations in strings")
                .with(self.span(i, i + 1), "string starts here")
                .help(
                    "write `\\n` for a newline, or close the string and continue with `, \"...\"`",
                );
                self.error(d);
                // Resume after the string as if the continuation were allowed.
                let mut j = k + 2;
                loop {
                    match b.get(j) {
                        None => break,
                        Some(b'"') => {
                            j += 1;
                            break;
                        }
                        Some(b'\\') => j += 2,
                        Some(_) => j += 1,
                    }
                }
                let j = j.min(b.len());
                self.push_tok(Tok::Bad, i, j);
                j
            }
        }
    }

    fn char_literal(&mut self, b: &[u8], i: usize) -> Option<usize> {
        // Longest match of '([^']|\\')*': the closing quote is the first quote not preceded
        // by a backslash; failing that, the last escaped one.
        let mut j = i + 1;
        let mut candidate = None;
        let mut end = None;
        while j < b.len() {
            if b[j] == b'\'' {
                if j > i + 1 && b[j - 1] == b'\\' {
                    candidate = Some(j);
                } else {
                    end = Some(j);
                    break;
                }
            }
            j += 1;
        }
        let Some(close) = end.or(candidate) else {
            let d = Diagnostic::new(
                codes::BAD_CHAR,
                self.span(i, i + 1),
                "unterminated character literal",
            )
            .label("no closing `'`")
            .help("write a character literal as 'a' or '\\n'");
            self.error(d);
            self.push_tok(Tok::Bad, i, i + 1);
            return Some(i + 1);
        };
        let (bytes, bad) = unescape(&b[i + 1..=close], close - i - 1);
        let span = self.span(i, close + 1);
        let value = if bad.is_some() {
            let d = Diagnostic::new(codes::BAD_ESCAPE, span, "`\\x` escape without hex digits")
                .label("expected one or two hex digits after `\\x`")
                .help("write e.g. '\\x41'");
            self.error(d);
            0
        } else if bytes.is_empty() {
            let d = Diagnostic::new(codes::BAD_CHAR, span, "empty character literal")
                .label("no character between the quotes")
                .help("write e.g. 'a', or use the number 0");
            self.error(d);
            0
        } else {
            if bytes.len() > 1 {
                let d = Diagnostic::new(
                    codes::BAD_CHAR,
                    span,
                    format!(
                        "character literal has {} characters instead of 1",
                        bytes.len()
                    ),
                )
                .label("a character literal holds exactly one character")
                .help("use a string (\"...\") or a byte string ([...]) for several bytes");
                self.error(d);
            }
            u64::from(bytes[0])
        };
        self.push_token(Token {
            tok: Tok::CharLit(value),
            span,
        });
        Some(close + 1)
    }

    fn literal(&mut self, b: &[u8], i: usize) -> usize {
        let hex = b[i] == b'0'
            && matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
        let mut j = if hex { i + 2 } else { i };
        while j < b.len()
            && (if hex {
                b[j].is_ascii_hexdigit()
            } else {
                b[j].is_ascii_digit()
            })
        {
            j += 1;
        }
        let digits_end = j;
        for suffix in [&b"ULL"[..], b"UL", b"LL", b"U", b"L"] {
            if b[j..].starts_with(suffix) {
                j += suffix.len();
                break;
            }
        }
        let span = self.span(i, j);
        let text = String::from_utf8_lossy(&b[i..j]).into_owned();
        // strtoull(text, &e, 0)
        let (radix, start) = if hex {
            (16, i + 2)
        } else if b[i] == b'0' {
            (8, i)
        } else {
            (10, i)
        };
        let mut v: u64 = 0;
        let mut overflow = false;
        let mut k = start;
        while k < digits_end {
            let Some(d) = (b[k] as char).to_digit(radix) else {
                break;
            };
            match v
                .checked_mul(u64::from(radix))
                .and_then(|x| x.checked_add(u64::from(d)))
            {
                Some(x) => v = x,
                None => overflow = true,
            }
            k += 1;
        }
        if b[k..j].iter().any(|&c| c != b'U' && c != b'L') {
            let d = Diagnostic::new(
                codes::BAD_LITERAL,
                span,
                format!("bad integer literal '{text}'"),
            )
            .label("a leading 0 makes this an octal number, which cannot contain 8 or 9")
            .help("drop the leading zeros for a decimal number, or write hex as 0x...");
            self.error(d);
        }
        if overflow {
            let d = Diagnostic::new(
                codes::LITERAL_RANGE,
                span,
                format!("integer literal '{text}' out of range"),
            )
            .label("does not fit in 64 bits")
            .help("integer literals must be at most 0xffffffffffffffff");
            self.error(d);
            v = u64::MAX;
        }
        self.push_token(Token {
            tok: Tok::Literal(v),
            span,
        });
        j
    }

    /// `#include` and friends at the start of a line: dtc does not run cpp.
    fn cpp_directive(&mut self, b: &[u8], i: usize) -> Option<usize> {
        // Only blanks may precede the `#` on its line.
        let blanks = b[..i]
            .iter()
            .rev()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        if i > blanks && b[i - blanks - 1] != b'\n' {
            return None;
        }
        let mut j = i + 1;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let word_start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        let word = std::str::from_utf8(&b[word_start..j]).unwrap_or("");
        let line_marker_like =
            word_start > i + 1 && word.bytes().all(|c| c.is_ascii_digit()) && !word.is_empty();
        // `#include = <1>;` would be a (strange) property name, not a directive.
        let mut k = j;
        while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
            k += 1;
        }
        let directive = CPP_DIRECTIVES.contains(&word)
            && !b.get(j).is_some_and(|&c| is_propnode_char(c))
            && !matches!(b.get(k), Some(b'=' | b';' | b'{'));
        if !directive && !line_marker_like {
            return None;
        }
        // The directive runs to the end of the line (with backslash continuations).
        let mut end = j;
        while end < b.len() && b[end] != b'\n' {
            if b[end] == b'\\' && b.get(end + 1) == Some(&b'\n') {
                end += 2;
            } else {
                end += 1;
            }
        }
        let span = self.span(i, end);
        let d = if line_marker_like {
            Diagnostic::new(codes::CPP_DIRECTIVE, span, "malformed line marker")
                .label("dtc only accepts `# <line> \"<file>\"` markers here")
                .help("pass the output of `cpp -E` unchanged, or remove the line")
        } else {
            let mut d = Diagnostic::new(
                codes::CPP_DIRECTIVE,
                span,
                format!("C preprocessor directive `#{word}` in DTS input"),
            )
            .label("dtc does not run the C preprocessor")
            .help(
                "run the file through the C preprocessor first (`cpp -nostdinc -undef -x \
                 assembler-with-cpp -I include file.dts`), or use dtc's own `/include/ \
                 \"file.dtsi\"`",
            );
            if word == "include" {
                d = d.note(
                    "`/include/ \"file\"` is dtc's built-in include and needs no preprocessor",
                );
            }
            d
        };
        self.error(d);
        Some(end)
    }

    /// `/include/ "name"` at `start..end`: the first pass resolves it and records the
    /// outcome, the second replays that outcome.
    fn include(&mut self, name: &str, start: usize, end: usize) {
        let frame = match &mut self.replay {
            Some(replay) => replay.next().flatten(),
            None => {
                let frame = self.resolve_include(name, start, end);
                self.recorded.push(frame.clone());
                frame
            }
        };
        if let Some(f) = frame {
            if !self.files.iter().any(|(file, _)| *file == f.file) {
                self.files.push((f.file, f.text.clone()));
            }
            self.stack.push(f);
        }
    }

    /// The file `/include/ "name"` expands to, or None (reported) when it is not expanded.
    fn resolve_include(&mut self, name: &str, start: usize, end: usize) -> Option<Frame> {
        let span = self.span(start, end);
        if self.expansions >= MAX_INCLUDE_EXPANSIONS {
            if self.expansions == MAX_INCLUDE_EXPANSIONS {
                self.expansions += 1;
                let d = Diagnostic::new(
                    codes::TOO_MANY_INCLUDES,
                    span,
                    format!("more than {MAX_INCLUDE_EXPANSIONS} /include/ expansions"),
                )
                .label("not expanded")
                .help("include each file once");
                self.error(d);
            }
            return None;
        }
        self.expansions += 1;
        if self.stack.len() > self.opts.max_include_depth {
            let d = Diagnostic::new(
                codes::INCLUDE_DEPTH,
                span,
                format!(
                    "/include/ nested more than {} levels deep",
                    self.opts.max_include_depth
                ),
            )
            .label("not expanded")
            .help("flatten the include hierarchy");
            self.error(d);
            return None;
        }
        let cur_dir = self
            .stack
            .last()
            .and_then(|f| f.path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let mut candidates = vec![if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            cur_dir.join(name)
        }];
        if !Path::new(name).is_absolute() {
            candidates.extend(self.opts.include_dirs.iter().map(|d| d.join(name)));
        }
        let mut found = None;
        let mut failure = None;
        for cand in &candidates {
            let key = normalize(cand);
            if let Some(pos) = self.stack.iter().position(|f| f.key == key) {
                let chain: Vec<String> = self.stack[pos..]
                    .iter()
                    .map(|f| f.path.display().to_string())
                    .chain(std::iter::once(cand.display().to_string()))
                    .collect();
                let d = Diagnostic::new(
                    codes::INCLUDE_CYCLE,
                    span,
                    format!("/include/ cycle: {}", chain.join(" -> ")),
                )
                .label("this file is already being included")
                .help("remove the recursive /include/");
                self.error(d);
                return None;
            }
            if let Some((file, text)) = self.cache.get(&key) {
                found = Some((cand.clone(), key, *file, text.clone()));
                break;
            }
            match self.loader.load(cand) {
                Ok(text) => {
                    // Only the first pass resolves includes, and it has the sources.
                    let sources = self.sources.as_deref_mut()?;
                    let text: Rc<str> = Rc::from(text);
                    let file =
                        sources.add_text(cand.to_string_lossy().into_owned(), text.to_string());
                    self.cache.insert(key.clone(), (file, text.clone()));
                    found = Some((cand.clone(), key, file, text));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    failure = Some((cand.clone(), e));
                    break;
                }
            }
        }
        let Some((path, key, file, text)) = found else {
            let mut d = match failure {
                Some((p, e)) => Diagnostic::new(
                    codes::INCLUDE_NOT_FOUND,
                    span,
                    format!("cannot read include file {}: {e}", p.display()),
                )
                .label("included here"),
                None => Diagnostic::new(
                    codes::INCLUDE_NOT_FOUND,
                    span,
                    format!("include file \"{name}\" not found"),
                )
                .label("included here"),
            };
            let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            d = d
                .note(format!("searched: {}", tried.join(", ")))
                .help("check the file name, or add its directory to the include path");
            self.error(d);
            return None;
        };
        Some(Frame {
            file,
            text,
            pos: 0,
            path,
            key,
        })
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// dtc's line-marker rule `^"#"(line)?[ \t]+[0-9]+[ \t]+{STRING}([ \t]+[0-9]+)*`: the
/// end offset if it matches at `i`.
fn line_marker(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b[j..].starts_with(b"line") {
        j += 4;
    }
    let blanks = |j: usize| {
        let mut k = j;
        while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
            k += 1;
        }
        k
    };
    let digits = |j: usize| {
        let mut k = j;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        k
    };
    let k = blanks(j);
    if k == j {
        return None;
    }
    let d = digits(k);
    if d == k {
        return None;
    }
    let k = blanks(d);
    if k == d || b.get(k) != Some(&b'"') {
        return None;
    }
    let mut end = scan_string(b, k).ok()?;
    loop {
        let k = blanks(end);
        if k == end {
            break;
        }
        let d = digits(k);
        if d == k {
            break;
        }
        end = d;
    }
    Some(end)
}
