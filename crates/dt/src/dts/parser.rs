//! Recursive-descent parser over the token stream, following dtc's bison grammar and its
//! semantic actions (merging, deletion, label handling, integer expression evaluation).

use super::codes;
use super::lexer::{unescape, Lexer, Tok, Token};
use super::live::{ILabel, IProp, IValue, Live, NodeId};
use crate::tree::{Chunk, ChunkKind, Elem, MemReserve};
use staticbus_diag::{Diagnostic, Diagnostics, Span};

/// Maximum node nesting (counted from the root, merges included).
pub(crate) const MAX_DEPTH: usize = 256;
/// Maximum nesting of parentheses and `?:` in integer expressions.
const MAX_EXPR_DEPTH: usize = 64;
/// Syntax errors reported before giving up.
const MAX_SYNTAX_ERRORS: usize = 25;

/// The parser's result.
pub(crate) struct Parsed {
    pub live: Live,
    pub memreserve: Vec<MemReserve>,
}

#[derive(Debug)]
enum Fail {
    /// Reported; skip to a synchronisation point and go on.
    Recover,
    /// Reported; stop parsing.
    Fatal,
}

type PResult<T> = Result<T, Fail>;

enum Item {
    Prop(IProp),
    /// A complete node (a `/delete-node/` marker).
    Node(NodeId),
    /// `name {`: a child node whose body starts at the current `{`.
    Open(PendingNode),
}

/// A child node whose body is being parsed.
struct PendingNode {
    name: String,
    span: Span,
    labels: Vec<ILabel>,
    omit: bool,
}

/// One open node body.
struct Frame {
    open: Span,
    props: Vec<IProp>,
    children: Vec<NodeId>,
    first_child: Option<Span>,
    /// The node this body belongs to (None for the outermost body).
    pending: Option<PendingNode>,
}

impl Frame {
    fn new(open: Span, pending: Option<PendingNode>) -> Frame {
        Frame {
            open,
            props: Vec::new(),
            children: Vec::new(),
            first_child: None,
            pending,
        }
    }

    fn add_child(&mut self, id: NodeId, span: Option<Span>) {
        if self.first_child.is_none() {
            self.first_child = span.or(Some(self.open));
        }
        self.children.push(id);
    }
}

struct NodeBody {
    props: Vec<IProp>,
    children: Vec<NodeId>,
}

/// Parses the tokens `lx` hands out (up to `Eof`).
pub(crate) fn parse(mut lx: Lexer<'_>, diags: &mut Diagnostics) -> Parsed {
    let cur = lx.next_token();
    let mut p = Parser {
        lx,
        cur,
        live: Live::default(),
        diags,
        memreserve: Vec::new(),
        syntax_errors: 0,
        not_found: Vec::new(),
        root_deleted: None,
    };
    p.file();
    if let (Some(root), Some(span)) = (p.live.root, p.root_deleted) {
        if p.live.nodes[root].deleted {
            let d = Diagnostic::new(codes::ROOT_DELETED, span, "the root node is deleted")
                .label("deletes the whole tree")
                .help("delete the unwanted child nodes instead of the root");
            p.diags.push(d);
        }
    }
    let not_found = std::mem::take(&mut p.not_found);
    for (mut d, r) in not_found {
        if p.live.get_by_ref(&r).is_some() {
            d = d.note(format!(
                "`{r}` exists further down; dtc applies these blocks in file order, so the \
                 target must be defined before it is referenced here"
            ));
        }
        p.diags.push(d);
    }
    Parsed {
        live: p.live,
        memreserve: p.memreserve,
    }
}

struct Parser<'a, 'l> {
    lx: Lexer<'l>,
    /// The current token.
    cur: Token,
    live: Live,
    diags: &'a mut Diagnostics,
    memreserve: Vec<MemReserve>,
    syntax_errors: usize,
    /// "Label or path not found" diagnostics, with the reference (notes added at the end).
    not_found: Vec<(Diagnostic, String)>,
    /// The last `/delete-node/` of the root, if any.
    root_deleted: Option<Span>,
}

fn describe(t: &Tok, text: &str) -> String {
    match t {
        Tok::V1 => "`/dts-v1/`".into(),
        Tok::Plugin => "`/plugin/`".into(),
        Tok::MemReserve => "`/memreserve/`".into(),
        Tok::Bits => "`/bits/`".into(),
        Tok::DelProp => "`/delete-property/`".into(),
        Tok::DelNode => "`/delete-node/`".into(),
        Tok::OmitNoRef => "`/omit-if-no-ref/`".into(),
        Tok::Incbin => "`/incbin/`".into(),
        Tok::Label => format!("label `{text}:`"),
        Tok::Literal(_) => "a number".into(),
        Tok::CharLit(_) => "a character literal".into(),
        Tok::LabelRef | Tok::PathRef => format!("reference `{text}`"),
        Tok::Byte(_) => "a byte".into(),
        Tok::Name => format!("name `{}`", text.strip_prefix('\\').unwrap_or(text)),
        Tok::Str => "a string".into(),
        Tok::Shl => "`<<`".into(),
        Tok::Shr => "`>>`".into(),
        Tok::Le => "`<=`".into(),
        Tok::Ge => "`>=`".into(),
        Tok::EqEq => "`==`".into(),
        Tok::Ne => "`!=`".into(),
        Tok::AndAnd => "`&&`".into(),
        Tok::OrOr => "`||`".into(),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Bad => "an invalid token".into(),
        Tok::Eof => "end of input".into(),
    }
}

#[derive(Clone, Copy)]
enum BinOp {
    Or,
    And,
    BitOr,
    BitXor,
    BitAnd,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Shl,
    Shr,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl Parser<'_, '_> {
    fn peek(&self) -> &Tok {
        &self.cur.tok
    }

    fn peek_span(&self) -> Span {
        self.cur.span
    }

    fn bump(&mut self) -> Span {
        let s = self.cur.span;
        if self.cur.tok != Tok::Eof {
            self.cur = self.lx.next_token();
        }
        s
    }

    /// The current token's text.
    fn text(&self) -> &str {
        self.lx.text(self.cur.span)
    }

    /// The current token's text as a label, property or node name (`Label`, `Name`; a
    /// name's leading backslash dropped), or a `LabelRef`'s label.
    fn name(&self) -> String {
        let t = self.text();
        match self.cur.tok {
            Tok::Name => t.strip_prefix('\\').unwrap_or(t),
            Tok::LabelRef => t.strip_prefix('&').unwrap_or(t),
            _ => t,
        }
        .to_string()
    }

    /// The current `Str` token's bytes after escape processing (no NUL).
    fn string_bytes(&self) -> Vec<u8> {
        let b = self.text().as_bytes();
        match b.len() {
            0 | 1 => Vec::new(),
            n => unescape(&b[1..], n - 2).0,
        }
    }

    fn at(&self, c: char) -> bool {
        *self.peek() == Tok::Punct(c)
    }

    /// Reports a syntax error at the current token (unless it is an already reported bad
    /// token) and returns how to continue.
    fn syntax(&mut self, expected: &str) -> Fail {
        self.syntax_help(expected, None)
    }

    fn syntax_help(&mut self, expected: &str, help: Option<&str>) -> Fail {
        let tok = *self.peek();
        if tok == Tok::Bad {
            return Fail::Recover;
        }
        self.syntax_errors += 1;
        if self.syntax_errors > MAX_SYNTAX_ERRORS {
            let d = Diagnostic::new(
                codes::SYNTAX,
                self.peek_span(),
                "too many syntax errors; giving up",
            )
            .label("parsing stopped here")
            .help("fix the errors above first");
            self.diags.push(d);
            return Fail::Fatal;
        }
        let span = self.peek_span();
        let mut d = Diagnostic::new(
            codes::SYNTAX,
            span,
            format!(
                "syntax error: expected {expected}, found {}",
                describe(&tok, self.text())
            ),
        )
        .label(format!("expected {expected}"));
        if let Some(h) = help {
            d = d.help(h);
        } else if matches!(tok, Tok::Eof) {
            d = d.help(
                "the input ends in the middle of a definition; check for a missing `}` or `;`",
            );
        } else {
            d = d.help("see the DTS syntax: `name = value;`, `name { ... };`, values are \"strings\", <cells>, [bytes] or &references");
        }
        self.diags.push(d);
        if tok == Tok::Eof {
            Fail::Fatal
        } else {
            Fail::Recover
        }
    }

    /// Fails when so many diagnostics have piled up that going on is pointless.
    fn check_budget(&mut self) -> PResult<()> {
        if self.diags.len() > super::MAX_ERRORS {
            Err(Fail::Fatal)
        } else {
            Ok(())
        }
    }

    fn expect(&mut self, c: char, expected: &str) -> PResult<Span> {
        if self.at(c) {
            Ok(self.bump())
        } else {
            Err(self.syntax(expected))
        }
    }

    /// Skips to just after the next `;` at this nesting level, or to the `}` closing the
    /// current node body (not consumed).
    fn recover_body(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                Tok::Punct(';') if depth == 0 => {
                    self.bump();
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    /// Skips to just after the next `;` outside braces.
    fn recover_top(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth = depth.saturating_sub(1),
                Tok::Punct(';') if depth == 0 => {
                    self.bump();
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn file(&mut self) {
        match self.peek() {
            Tok::V1 => {}
            Tok::Plugin => {
                self.plugin();
                return;
            }
            Tok::Bad => return,
            t => {
                let d = Diagnostic::new(
                    codes::MISSING_V1,
                    self.peek_span(),
                    format!(
                        "expected `/dts-v1/;` at the start of the file, found {}",
                        describe(t, self.text())
                    ),
                )
                .label("dtc requires the /dts-v1/; header first")
                .help("add `/dts-v1/;` as the first line");
                self.diags.push(d);
                return;
            }
        }
        while *self.peek() == Tok::V1 {
            self.bump();
            if let Err(_e) = self.expect(';', "`;` after /dts-v1/") {
                return;
            }
            if *self.peek() == Tok::Plugin {
                self.plugin();
                return;
            }
        }
        while matches!(self.peek(), Tok::Label | Tok::MemReserve) {
            match self.memreserve() {
                Ok(m) => self.memreserve.push(m),
                Err(Fail::Fatal) => return,
                Err(Fail::Recover) => self.recover_top(),
            }
        }
        while *self.peek() != Tok::Eof {
            if self.check_budget().is_err() {
                return;
            }
            match self.top_item() {
                Ok(()) => {}
                Err(Fail::Fatal) => return,
                Err(Fail::Recover) => self.recover_top(),
            }
        }
        if self.live.root.is_none() && !self.diags.has_errors() {
            let d = Diagnostic::new(
                codes::SYNTAX,
                self.peek_span(),
                "syntax error: no root node",
            )
            .label("expected `/ { ... };` before the end of the input")
            .help("a device tree needs a root node: `/ { ... };`");
            self.diags.push(d);
        }
    }

    fn plugin(&mut self) {
        let d = Diagnostic::new(
            codes::PLUGIN,
            self.peek_span(),
            "device-tree overlays (/plugin/) are not supported",
        )
        .label("this is an overlay, not a host device tree")
        .help("give the base host device tree; apply overlays with fdtoverlay first");
        self.diags.push(d);
    }

    fn memreserve(&mut self) -> PResult<MemReserve> {
        let mut labels = Vec::new();
        while let Tok::Label = self.peek() {
            labels.push(self.name());
            self.bump();
        }
        if *self.peek() != Tok::MemReserve {
            return Err(self.syntax_help(
                "`/memreserve/` after the label",
                Some("before the first node, labels can only be attached to /memreserve/ entries"),
            ));
        }
        let start = self.bump();
        let (address, _) = self.prim(0)?;
        let (size, _) = self.prim(0)?;
        let end = self.expect(';', "`;` after the /memreserve/ entry")?;
        Ok(MemReserve {
            address,
            size,
            labels,
            span: Some(start.to(end)),
        })
    }

    /// `&label` or `&{path}` → (reference for lookup, reference as written without `&`).
    fn dt_ref(&mut self) -> PResult<(String, String, Span)> {
        match self.peek() {
            Tok::LabelRef => {
                let l = self.name();
                let s = self.bump();
                Ok((l.clone(), l, s))
            }
            Tok::PathRef => {
                let t = self.text();
                let written = t.strip_prefix('&').unwrap_or(t).to_string();
                let p = written
                    .strip_prefix('{')
                    .and_then(|p| p.strip_suffix('}'))
                    .unwrap_or(&written)
                    .to_string();
                let s = self.bump();
                Ok((p, written, s))
            }
            _ => Err(self.syntax("a reference (`&label` or `&{/path}`)")),
        }
    }

    fn not_found(&mut self, r: &str, written: &str, span: Span, what: &str) {
        let d = Diagnostic::new(
            codes::REF_NOT_FOUND,
            span,
            format!("label or path `&{written}` not found"),
        )
        .label(format!("no such node at this point ({what})"))
        .help("check the spelling; labels are defined as `label: node { ... };` and paths must match node names exactly, including unit addresses");
        self.not_found.push((d, r.to_string()));
    }

    fn top_item(&mut self) -> PResult<()> {
        match *self.peek() {
            Tok::Punct('/') => {
                let slash = self.bump();
                let body = self.nodedef(1)?;
                match self.live.root {
                    None => {
                        let id = self.live.new_node(
                            String::new(),
                            Some(slash),
                            Vec::new(),
                            body.props,
                            body.children,
                            false,
                        );
                        self.live.root = Some(id);
                    }
                    Some(root) => {
                        let id = self.live.new_node(
                            String::new(),
                            None,
                            Vec::new(),
                            body.props,
                            body.children,
                            false,
                        );
                        self.live.merge(root, id);
                    }
                }
                Ok(())
            }
            Tok::Label | Tok::LabelRef | Tok::PathRef => {
                let mut label = None;
                if let Tok::Label = self.peek() {
                    let l = self.name();
                    let s = self.bump();
                    label = Some((l, s));
                }
                let (r, written, rspan) = self.dt_ref()?;
                let target = self.live.get_by_ref(&r);
                let depth = target.map_or(0, |t| self.live.depth(t));
                let body = self.nodedef(depth + 1)?;
                let id = self.live.new_node(
                    String::new(),
                    None,
                    Vec::new(),
                    body.props,
                    body.children,
                    false,
                );
                match target {
                    Some(t) => {
                        if let Some((l, s)) = label {
                            self.live.add_node_label(t, &l, Some(s));
                        }
                        self.live.merge(t, id);
                    }
                    None => self.not_found(&r, &written, rspan, "cannot merge this block"),
                }
                Ok(())
            }
            Tok::DelNode | Tok::OmitNoRef => {
                let del = *self.peek() == Tok::DelNode;
                let start = self.bump();
                let (r, written, rspan) = self.dt_ref()?;
                let end = self.expect(';', "`;`")?;
                match self.live.get_by_ref(&r) {
                    Some(t) if del => {
                        if Some(t) == self.live.root {
                            self.root_deleted = Some(start.to(end));
                        }
                        self.live.delete_node(t);
                    }
                    Some(t) => self.live.nodes[t].omit = true,
                    None => self.not_found(
                        &r,
                        &written,
                        rspan,
                        if del {
                            "nothing to delete"
                        } else {
                            "nothing to mark"
                        },
                    ),
                }
                Ok(())
            }
            Tok::MemReserve => Err(self.syntax_help(
                "a node",
                Some("/memreserve/ entries must come before the first node"),
            )),
            Tok::Plugin => {
                self.plugin();
                Err(Fail::Fatal)
            }
            _ => Err(self.syntax_help(
                "`/ {`, `&label {`, `&{/path} {` or `/delete-node/ &label;`",
                None,
            )),
        }
    }

    /// `{ props subnodes } ;`, with nested nodes handled by an explicit stack (no
    /// recursion). `depth` is the nesting level of this body (the root's is 1).
    fn nodedef(&mut self, depth: usize) -> PResult<NodeBody> {
        if depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let open = self.expect('{', "`{`")?;
        let mut stack = vec![Frame::new(open, None)];
        loop {
            self.check_budget()?;
            match self.peek() {
                Tok::Punct('}') => {
                    self.bump();
                    if self.at(';') {
                        self.bump();
                    } else if let Fail::Fatal =
                        self.syntax_help("`;` after `}`", Some("every node ends with `};`"))
                    {
                        return Err(Fail::Fatal);
                    }
                    let Some(f) = stack.pop() else {
                        return Err(Fail::Fatal);
                    };
                    let body = NodeBody {
                        props: f.props,
                        children: f.children,
                    };
                    let Some(p) = f.pending else {
                        return Ok(body);
                    };
                    let id = self.live.new_node(
                        p.name,
                        Some(p.span),
                        p.labels,
                        body.props,
                        body.children,
                        false,
                    );
                    self.live.nodes[id].omit = p.omit;
                    if let Some(top) = stack.last_mut() {
                        top.add_child(id, Some(p.span));
                    }
                }
                Tok::Eof => {
                    let open = stack.last().map_or(open, |f| f.open);
                    return Err(self.eof_in_node(open));
                }
                _ => match self.body_item() {
                    Ok(Item::Prop(p)) => {
                        let Some(top) = stack.last_mut() else {
                            return Err(Fail::Fatal);
                        };
                        match top.first_child {
                            Some(c) => {
                                let open = top.open;
                                self.prop_after_node(&p, c, open);
                            }
                            None => top.props.push(p),
                        }
                    }
                    Ok(Item::Node(id)) => {
                        let span = self.live.nodes[id].span;
                        if let Some(top) = stack.last_mut() {
                            top.add_child(id, span);
                        }
                    }
                    Ok(Item::Open(pending)) => {
                        if depth + stack.len() > MAX_DEPTH {
                            return Err(self.too_deep());
                        }
                        let open = self.bump();
                        stack.push(Frame::new(open, Some(pending)));
                    }
                    Err(Fail::Recover) => self.recover_body(),
                    Err(Fail::Fatal) => return Err(Fail::Fatal),
                },
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&mut self) -> Fail {
        let d = Diagnostic::new(
            codes::TOO_DEEP,
            self.peek_span(),
            format!("nodes nested more than {MAX_DEPTH} levels deep"),
        )
        .label("too deep")
        .help("real device trees are a few levels deep; check for unbalanced braces");
        self.diags.push(d);
        Fail::Fatal
    }

    #[cold]
    #[inline(never)]
    fn eof_in_node(&mut self, open: Span) -> Fail {
        let d = Diagnostic::new(
            codes::SYNTAX,
            self.peek_span(),
            "syntax error: unexpected end of input inside a node",
        )
        .label("expected `};`")
        .with(open, "this `{` is never closed")
        .help("add the missing `};`");
        self.diags.push(d);
        Fail::Fatal
    }

    #[cold]
    #[inline(never)]
    fn prop_after_node(&mut self, p: &IProp, first_child: Span, open: Span) {
        let d = Diagnostic::new(
            codes::PROP_AFTER_NODE,
            p.span.unwrap_or(open),
            format!("property `{}` after a child node", p.name),
        )
        .label("properties must precede subnodes")
        .with(first_child, "first child node of this block")
        .help("move the property above the first child node");
        self.diags.push(d);
    }

    fn expect_name(&mut self, what: &str) -> PResult<(String, Span)> {
        match self.peek() {
            Tok::Name => {
                let n = self.name();
                let s = self.bump();
                Ok((n, s))
            }
            _ => Err(self.syntax(what)),
        }
    }

    fn body_item(&mut self) -> PResult<Item> {
        let mut labels = Vec::new();
        let mut omit = None;
        loop {
            match *self.peek() {
                Tok::Label => {
                    let l = self.name();
                    let s = self.bump();
                    labels.push(ILabel {
                        name: l,
                        span: Some(s),
                        deleted: false,
                    });
                }
                Tok::OmitNoRef => omit = Some(self.bump()),
                _ => break,
            }
        }
        match *self.peek() {
            Tok::DelProp => {
                if omit.is_some() {
                    return Err(self.syntax("a node after /omit-if-no-ref/"));
                }
                let start = self.bump();
                let (name, nspan) = self.expect_name("a property name after /delete-property/")?;
                let end = self.expect(';', "`;`")?;
                Ok(Item::Prop(IProp {
                    name,
                    name_span: Some(nspan),
                    span: Some(start.to(end)),
                    labels,
                    value: IValue::default(),
                    deleted: true,
                }))
            }
            Tok::DelNode => {
                self.bump();
                let (name, nspan) = self.expect_name("a node name after /delete-node/")?;
                self.expect(';', "`;`")?;
                let id = self
                    .live
                    .new_node(name, Some(nspan), labels, Vec::new(), Vec::new(), true);
                self.live.nodes[id].omit = omit.is_some();
                Ok(Item::Node(id))
            }
            Tok::Name => {
                let name = self.name();
                let nspan = self.bump();
                match self.peek() {
                    Tok::Punct('{') => Ok(Item::Open(PendingNode {
                        name,
                        span: nspan,
                        labels,
                        omit: omit.is_some(),
                    })),
                    _ if omit.is_some() => Err(self.syntax("`{` (only nodes can be /omit-if-no-ref/)")),
                    Tok::Punct(';') => {
                        let end = self.bump();
                        Ok(Item::Prop(IProp {
                            name,
                            name_span: Some(nspan),
                            span: Some(nspan.to(end)),
                            labels,
                            value: IValue::default(),
                            deleted: false,
                        }))
                    }
                    Tok::Punct('=') => {
                        self.bump();
                        let value = self.value()?;
                        let end = self.expect(';', "`,` or `;` after the value")?;
                        Ok(Item::Prop(IProp {
                            name,
                            name_span: Some(nspan),
                            span: Some(nspan.to(end)),
                            labels,
                            value,
                            deleted: false,
                        }))
                    }
                    _ => Err(self.syntax("`=`, `;` or `{` after the name")),
                }
            }
            _ => Err(self.syntax_help(
                "a property or a child node",
                Some("inside a node: `name = value;`, `name;`, `name { ... };`, `/delete-property/ name;` or `/delete-node/ name;`"),
            )),
        }
    }

    fn value_labels(&mut self, v: &mut IValue) {
        while let Tok::Label = self.peek() {
            let l = self.name();
            let s = self.bump();
            v.labels.push((l, s));
        }
    }

    fn value(&mut self) -> PResult<IValue> {
        let mut v = IValue::default();
        loop {
            self.value_labels(&mut v);
            match *self.peek() {
                Tok::Str => {
                    let s = self.string_bytes();
                    let span = self.bump();
                    let offset = v.bytes.len();
                    v.bytes.extend_from_slice(&s);
                    v.bytes.push(0);
                    push_chunk(&mut v, offset, ChunkKind::String, span);
                }
                Tok::Punct('<') | Tok::Bits => self.cells(&mut v)?,
                Tok::Punct('[') => self.bytes(&mut v)?,
                Tok::LabelRef | Tok::PathRef => {
                    let (_, written, span) = self.dt_ref()?;
                    let offset = v.bytes.len();
                    push_chunk(&mut v, offset, ChunkKind::PathRef(written), span);
                }
                Tok::Incbin => {
                    let d = Diagnostic::new(
                        codes::INCBIN,
                        self.peek_span(),
                        "/incbin/ is not supported",
                    )
                    .label("binary includes are not read by staticbus")
                    .help("write the bytes as a byte string `[...]`, or build the DTB with dtc and check it as a DTB");
                    self.diags.push(d);
                    return Err(Fail::Recover);
                }
                _ => {
                    return Err(self.syntax_help(
                        "a value",
                        Some("values are \"strings\", <cells>, /bits/ N <cells>, [bytes] or &references, separated by commas"),
                    ))
                }
            }
            self.value_labels(&mut v);
            if self.at(',') {
                self.bump();
            } else {
                return Ok(v);
            }
        }
    }

    fn cells(&mut self, v: &mut IValue) -> PResult<()> {
        let start = self.peek_span();
        let mut bits: u32 = 32;
        if *self.peek() == Tok::Bits {
            self.bump();
            match *self.peek() {
                Tok::Literal(n) => {
                    let s = self.bump();
                    if matches!(n, 8 | 16 | 32 | 64) {
                        bits = n as u32;
                    } else {
                        let d = Diagnostic::new(
                            codes::BAD_BITS,
                            s,
                            format!("/bits/ {n}: array elements must be 8, 16, 32 or 64 bits"),
                        )
                        .label("invalid element width")
                        .help("use /bits/ 8, /bits/ 16, /bits/ 32 or /bits/ 64");
                        self.diags.push(d);
                    }
                }
                _ => return Err(self.syntax("an element width (8, 16, 32 or 64) after /bits/")),
            }
        }
        self.expect('<', "`<`")?;
        let offset = v.bytes.len();
        let mut elems = Vec::new();
        let end = loop {
            self.check_budget()?;
            match *self.peek() {
                Tok::Punct('>') => break self.bump(),
                Tok::Label => {
                    let l = self.name();
                    let s = self.bump();
                    v.labels.push((l, s));
                }
                Tok::Literal(_) | Tok::CharLit(_) | Tok::Punct('(') => {
                    let (val, span) = self.prim(0)?;
                    if bits < 64 {
                        let mask = (1u64 << bits) - 1;
                        if val > mask && (val | mask) != u64::MAX {
                            let d = Diagnostic::new(
                                codes::VALUE_RANGE,
                                span,
                                format!("value {val:#x} does not fit in a {bits}-bit element"),
                            )
                            .label(format!("out of range for /bits/ {bits}"))
                            .help(if bits == 32 {
                                "split 64-bit values into two cells (<hi lo>), or use /bits/ 64"
                            } else {
                                "use a wider /bits/ width or a smaller value"
                            });
                            self.diags.push(d);
                        }
                    }
                    push_int(&mut v.bytes, val, bits);
                    elems.push(Elem {
                        span: Some(span),
                        reference: None,
                    });
                }
                Tok::LabelRef | Tok::PathRef => {
                    let (_, written, span) = self.dt_ref()?;
                    if bits != 32 {
                        let d = Diagnostic::new(
                            codes::REF_WIDTH,
                            span,
                            format!("reference in a /bits/ {bits} array"),
                        )
                        .label("phandles are 32-bit")
                        .help("put references in a separate <...> group without /bits/");
                        self.diags.push(d);
                    }
                    push_int(&mut v.bytes, u64::MAX >> (64 - bits), bits);
                    elems.push(Elem {
                        span: Some(span),
                        reference: (bits == 32).then_some(written),
                    });
                }
                _ => {
                    return Err(self.syntax_help(
                        "a number, `(expression)`, `&reference` or `>`",
                        Some("cells are numbers (42, 0x2a, 'c'), parenthesised expressions or &references; negative numbers need parentheses: (-1)"),
                    ))
                }
            }
        };
        // Exactly sized: a big tree has hundreds of thousands of these.
        elems.shrink_to_fit();
        push_chunk(
            v,
            offset,
            ChunkKind::Cells {
                bits: bits as u8,
                elems,
            },
            start.to(end),
        );
        Ok(())
    }

    fn bytes(&mut self, v: &mut IValue) -> PResult<()> {
        let start = self.bump();
        let offset = v.bytes.len();
        let end = loop {
            match *self.peek() {
                Tok::Byte(b) => {
                    self.bump();
                    v.bytes.push(b);
                }
                Tok::Label => {
                    let l = self.name();
                    let s = self.bump();
                    v.labels.push((l, s));
                }
                Tok::Punct(']') => break self.bump(),
                _ => {
                    return Err(self.syntax_help(
                        "pairs of hex digits or `]`",
                        Some("byte strings hold two hex digits per byte: [0a 1b 2c] or [0a1b2c]"),
                    ))
                }
            }
        };
        push_chunk(v, offset, ChunkKind::Bytes, start.to(end));
        Ok(())
    }

    /// `integer_prim`: a literal, a character literal or `( expr )`.
    fn prim(&mut self, depth: usize) -> PResult<(u64, Span)> {
        match *self.peek() {
            Tok::Literal(v) | Tok::CharLit(v) => Ok((v, self.bump())),
            Tok::Punct('(') => {
                let open = self.bump();
                let (v, _) = self.expr(depth + 1)?;
                let close = self.expect(')', "`)`")?;
                Ok((v, open.to(close)))
            }
            _ => Err(self.syntax_help(
                "a number or `(expression)`",
                Some("numbers are decimal (42), hex (0x2a), octal (052) or characters ('*')"),
            )),
        }
    }

    fn expr(&mut self, depth: usize) -> PResult<(u64, Span)> {
        if depth > MAX_EXPR_DEPTH {
            let d = Diagnostic::new(
                codes::TOO_DEEP,
                self.peek_span(),
                format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
            )
            .label("too deep")
            .help("simplify the expression");
            self.diags.push(d);
            return Err(Fail::Fatal);
        }
        let (c, cs) = self.binary(0, depth)?;
        if self.at('?') {
            self.bump();
            let (a, _) = self.expr(depth + 1)?;
            self.expect(':', "`:` in `?:`")?;
            let (b, bs) = self.expr(depth + 1)?;
            return Ok((if c != 0 { a } else { b }, cs.to(bs)));
        }
        Ok((c, cs))
    }

    /// The binary operator at the current token and its precedence level (0 = `||`,
    /// 9 = `*`; higher binds tighter).
    fn binop(&self) -> Option<(BinOp, usize)> {
        Some(match self.peek() {
            Tok::OrOr => (BinOp::Or, 0),
            Tok::AndAnd => (BinOp::And, 1),
            Tok::Punct('|') => (BinOp::BitOr, 2),
            Tok::Punct('^') => (BinOp::BitXor, 3),
            Tok::Punct('&') => (BinOp::BitAnd, 4),
            Tok::EqEq => (BinOp::Eq, 5),
            Tok::Ne => (BinOp::Ne, 5),
            Tok::Punct('<') => (BinOp::Lt, 6),
            Tok::Punct('>') => (BinOp::Gt, 6),
            Tok::Le => (BinOp::Le, 6),
            Tok::Ge => (BinOp::Ge, 6),
            Tok::Shl => (BinOp::Shl, 7),
            Tok::Shr => (BinOp::Shr, 7),
            Tok::Punct('+') => (BinOp::Add, 8),
            Tok::Punct('-') => (BinOp::Sub, 8),
            Tok::Punct('*') => (BinOp::Mul, 9),
            Tok::Punct('/') => (BinOp::Div, 9),
            Tok::Punct('%') => (BinOp::Mod, 9),
            _ => return None,
        })
    }

    /// Precedence climbing over dtc's left-associative binary operators.
    fn binary(&mut self, min_level: usize, depth: usize) -> PResult<(u64, Span)> {
        let (mut l, mut ls) = self.unary(depth)?;
        while let Some((op, level)) = self.binop() {
            if level < min_level {
                break;
            }
            self.bump();
            let (r, rs) = self.binary(level + 1, depth)?;
            let span = ls.to(rs);
            l = self.apply(op, l, r, span);
            ls = span;
        }
        Ok((l, ls))
    }

    #[inline(never)]
    fn apply(&mut self, op: BinOp, l: u64, r: u64, span: Span) -> u64 {
        match op {
            BinOp::Or => u64::from(l != 0 || r != 0),
            BinOp::And => u64::from(l != 0 && r != 0),
            BinOp::BitOr => l | r,
            BinOp::BitXor => l ^ r,
            BinOp::BitAnd => l & r,
            BinOp::Eq => u64::from(l == r),
            BinOp::Ne => u64::from(l != r),
            BinOp::Lt => u64::from(l < r),
            BinOp::Gt => u64::from(l > r),
            BinOp::Le => u64::from(l <= r),
            BinOp::Ge => u64::from(l >= r),
            BinOp::Shl => {
                if r < 64 {
                    l << r
                } else {
                    0
                }
            }
            BinOp::Shr => {
                if r < 64 {
                    l >> r
                } else {
                    0
                }
            }
            BinOp::Add => l.wrapping_add(r),
            BinOp::Sub => l.wrapping_sub(r),
            BinOp::Mul => l.wrapping_mul(r),
            BinOp::Div | BinOp::Mod => {
                if r == 0 {
                    let d = Diagnostic::new(codes::DIV_ZERO, span, "division by zero")
                        .label("the right operand is 0")
                        .help("dtc evaluates expressions at compile time; fix the divisor");
                    self.diags.push(d);
                    0
                } else if let BinOp::Div = op {
                    l / r
                } else {
                    l % r
                }
            }
        }
    }

    fn unary(&mut self, depth: usize) -> PResult<(u64, Span)> {
        let mut ops = Vec::new();
        let start = self.peek_span();
        while let Tok::Punct(c @ ('-' | '~' | '!')) = *self.peek() {
            ops.push(c);
            self.bump();
        }
        let (mut v, s) = self.prim(depth)?;
        for op in ops.iter().rev() {
            v = match op {
                '-' => v.wrapping_neg(),
                '~' => !v,
                _ => u64::from(v == 0),
            };
        }
        Ok((v, if ops.is_empty() { s } else { start.to(s) }))
    }
}

fn push_chunk(v: &mut IValue, offset: usize, kind: ChunkKind, span: Span) {
    if v.chunks.capacity() == 0 {
        // Most values are one chunk; the list grows as usual past that.
        v.chunks.reserve_exact(1);
    }
    v.chunks.push(Chunk {
        offset: offset as u32,
        len: (v.bytes.len() - offset) as u32,
        kind,
        span: Some(span),
    });
}

fn push_int(bytes: &mut Vec<u8>, v: u64, bits: u32) {
    match bits {
        8 => bytes.push(v as u8),
        16 => bytes.extend_from_slice(&(v as u16).to_be_bytes()),
        64 => bytes.extend_from_slice(&v.to_be_bytes()),
        _ => bytes.extend_from_slice(&(v as u32).to_be_bytes()),
    }
}
