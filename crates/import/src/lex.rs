//! The subset of bash an ImageBuilder configuration is written in: one variable assignment
//! per line (`NAME=value`, `NAME[index]=value`, optionally `export NAME=value`), values in
//! double quotes (with `\` escapes and `$NAME` / `${NAME}` / `${NAME[i]}` expansion of
//! variables assigned earlier in the file), single quotes (literal) or unquoted words, and
//! `#` comments. `uboot-script-gen` runs `source` on the file; anything else bash could do
//! there (command substitution, arithmetic, unknown variables, arrays written as lists) is
//! refused with a diagnostic rather than guessed at.

use crate::codes::{SHELL_CONSTRUCT, SYNTAX};
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Span};
use std::collections::HashMap;

/// One assignment, with where its parts are in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assign {
    /// Variable name, e.g. `DOMU_MEM`.
    pub name: String,
    /// The index between brackets, as written (e.g. `0`, `1,0`); `None` for a scalar.
    pub index: Option<String>,
    /// The value after quote removal and expansion.
    pub value: String,
    /// `NAME[index]`.
    pub name_span: Span,
    /// The value as written (quotes included).
    pub value_span: Span,
}

impl Assign {
    /// `NAME` or `NAME[index]`, as written.
    pub fn key(&self) -> String {
        match &self.index {
            Some(i) => format!("{}[{i}]", self.name),
            None => self.name.clone(),
        }
    }

    /// The whole assignment.
    pub fn span(&self) -> Span {
        self.name_span.to(self.value_span)
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    file: FileId,
    diags: Diagnostics,
    /// Values assigned so far, by key (`NAME` or `NAME[i]`), for `$NAME` expansion.
    vars: HashMap<String, String>,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Characters that end an unquoted word (or need bash features we do not evaluate).
fn is_word_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    /// Skips to the start of the next line.
    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn error(
        &self,
        code: staticbus_diag::Code,
        start: usize,
        end: usize,
        msg: String,
    ) -> Diagnostic {
        let end = end.max(start + 1).min(self.text.len()).max(start);
        Diagnostic::new(code, self.span(start, end), msg)
    }

    /// Reads a name (`[A-Za-z_][A-Za-z0-9_]*`) at the cursor.
    fn name(&mut self) -> Option<String> {
        if !self.peek().is_some_and(is_name_start) {
            return None;
        }
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        Some(self.text[start..self.pos].to_string())
    }

    /// One line: blank, a comment, or an assignment.
    fn line(&mut self) -> Option<Assign> {
        self.skip_blanks();
        match self.peek() {
            None => return None,
            Some('\n') => {
                self.bump();
                return None;
            }
            Some('#') => {
                self.skip_line();
                return None;
            }
            _ => {}
        }
        let start = self.pos;
        let Some(mut name) = self.name() else {
            let end = self.line_end();
            let d = self
                .error(
                    SYNTAX,
                    start,
                    end,
                    "expected a variable assignment (`NAME=value`)".into(),
                )
                .label("not an assignment")
                .help("ImageBuilder configurations are bash variable assignments, one per line");
            self.diags.push(d);
            self.skip_line();
            return None;
        };
        let mut start = start;
        if name == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            self.skip_blanks();
            start = self.pos;
            match self.name() {
                Some(n) => name = n,
                None => {
                    let end = self.line_end();
                    let d = self
                        .error(
                            SYNTAX,
                            start,
                            end,
                            "expected a variable name after `export`".into(),
                        )
                        .help("write `export NAME=value` or `NAME=value`");
                    self.diags.push(d);
                    self.skip_line();
                    return None;
                }
            }
        }
        let mut index = None;
        if self.peek() == Some('[') {
            self.bump();
            let istart = self.pos;
            while self.peek().is_some_and(|c| c != ']' && c != '\n') {
                self.bump();
            }
            if self.peek() != Some(']') {
                let d = self
                    .error(
                        SYNTAX,
                        istart - 1,
                        self.pos,
                        format!("`{name}[` is not closed"),
                    )
                    .label("expected `]`")
                    .help("write the index as `NAME[0]=value`");
                self.diags.push(d);
                self.skip_line();
                return None;
            }
            let idx = self.text[istart..self.pos].trim().to_string();
            self.bump();
            index = Some(idx);
        }
        let name_end = self.pos;
        match self.peek() {
            Some('=') => {
                self.bump();
            }
            Some('+') if self.peek_at(1) == Some('=') => {
                let d = self
                    .error(
                        SHELL_CONSTRUCT,
                        name_end,
                        name_end + 2,
                        format!(
                            "`{name}+=` appends in bash; the importer only reads plain assignments"
                        ),
                    )
                    .label("append")
                    .help("write the whole value in one assignment");
                self.diags.push(d);
                self.skip_line();
                return None;
            }
            _ => {
                let end = self.line_end();
                let msg = if self.peek().is_some_and(|c| c == ' ' || c == '\t')
                    && self.text[self.pos..end].trim_start().starts_with('=')
                {
                    format!("spaces around `=`: bash runs `{name}` as a command instead of assigning it")
                } else {
                    format!("expected `=` after `{name}`")
                };
                let d = self
                    .error(SYNTAX, start, end, msg)
                    .label("not an assignment")
                    .help(format!("write `{name}=value` with no spaces around `=`"));
                self.diags.push(d);
                self.skip_line();
                return None;
            }
        }
        let vstart = self.pos;
        if self.peek() == Some('(') {
            let end = self.line_end();
            let d = self
                .error(SHELL_CONSTRUCT, vstart, end, format!("`{name}=(…)` is a bash array list; ImageBuilder configurations set one element per line"))
                .label("array list")
                .help(format!("write `{name}[0]=…`, `{name}[1]=…` instead"));
            self.diags.push(d);
            self.skip_line();
            return None;
        }
        let value = self.value()?;
        let vend = self.pos;
        self.skip_blanks();
        match self.peek() {
            None => {}
            Some('\n') => {
                self.bump();
            }
            Some('#') => self.skip_line(),
            Some(_) => {
                let end = self.line_end();
                let d = self
                    .error(
                        SYNTAX,
                        self.pos,
                        end,
                        "unexpected text after the value".into(),
                    )
                    .label("here")
                    .help(
                        "one assignment per line; quote values that contain spaces: NAME=\"a b\"",
                    );
                self.diags.push(d);
                self.skip_line();
                return None;
            }
        }
        let a = Assign {
            name,
            index,
            value,
            name_span: self.span(start, name_end),
            value_span: self.span(vstart, vend),
        };
        self.vars.insert(a.key(), a.value.clone());
        Some(a)
    }

    fn line_end(&self) -> usize {
        self.text[self.pos..]
            .find('\n')
            .map(|i| self.pos + i)
            .unwrap_or(self.text.len())
    }

    /// A value: a concatenation of quoted and unquoted parts up to a blank or end of line.
    /// `None` (with a diagnostic) when it cannot be read.
    fn value(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => break,
                Some('"') => {
                    let qstart = self.pos;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                let d = self
                                    .error(
                                        SYNTAX,
                                        qstart,
                                        qstart + 1,
                                        "unterminated double-quoted string".into(),
                                    )
                                    .label("opened here")
                                    .help("close the string with `\"`");
                                self.diags.push(d);
                                return None;
                            }
                            Some('"') => break,
                            Some('\\') => match self.peek() {
                                Some(c @ ('"' | '\\' | '$' | '`')) => {
                                    self.bump();
                                    out.push(c);
                                }
                                Some('\n') => {
                                    self.bump();
                                }
                                _ => out.push('\\'),
                            },
                            Some('$') => {
                                let at = self.pos - 1;
                                out.push_str(&self.expansion(at)?);
                            }
                            Some('`') => {
                                let at = self.pos - 1;
                                self.command_substitution(at);
                                return None;
                            }
                            Some(c) => out.push(c),
                        }
                    }
                }
                Some('\'') => {
                    let qstart = self.pos;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                let d = self
                                    .error(
                                        SYNTAX,
                                        qstart,
                                        qstart + 1,
                                        "unterminated single-quoted string".into(),
                                    )
                                    .label("opened here")
                                    .help("close the string with `'`");
                                self.diags.push(d);
                                return None;
                            }
                            Some('\'') => break,
                            Some(c) => out.push(c),
                        }
                    }
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') | None => {}
                        Some(c) => out.push(c),
                    }
                }
                Some('$') => {
                    let at = self.pos;
                    self.bump();
                    out.push_str(&self.expansion(at)?);
                }
                Some('`') => {
                    let at = self.pos;
                    self.command_substitution(at);
                    return None;
                }
                Some(c) if is_word_end(c) => {
                    if matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')') {
                        let end = self.line_end();
                        let d = self
                            .error(
                                SHELL_CONSTRUCT,
                                self.pos,
                                end,
                                format!("`{c}` is shell syntax the importer does not evaluate"),
                            )
                            .label("here")
                            .help("quote the value if the character belongs to it: NAME=\"…\"");
                        self.diags.push(d);
                        self.skip_line();
                        return None;
                    }
                    break;
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
        Some(out)
    }

    fn command_substitution(&mut self, at: usize) {
        let end = self.line_end();
        let d = self
            .error(
                SHELL_CONSTRUCT,
                at,
                end,
                "command substitution is not evaluated by the importer".into(),
            )
            .label("runs a command in bash")
            .help("write the value out: the importer reads the configuration, it does not run it");
        self.diags.push(d);
        self.skip_line();
    }

    /// After a `$` at byte `at`: `$NAME`, `${NAME}`, `${NAME[i]}`. Refuses `$(…)`,
    /// `$((…))`, other parameter forms and names not assigned earlier in the file.
    fn expansion(&mut self, at: usize) -> Option<String> {
        let (key, end) = match self.peek() {
            Some('(') => {
                self.command_substitution(at);
                return None;
            }
            Some('{') => {
                self.bump();
                let s = self.pos;
                while self.peek().is_some_and(|c| c != '}' && c != '\n') {
                    self.bump();
                }
                if self.peek() != Some('}') {
                    let d = self
                        .error(SYNTAX, at, self.pos, "`${` is not closed".into())
                        .label("expected `}`")
                        .help("write `${NAME}`");
                    self.diags.push(d);
                    self.skip_line();
                    return None;
                }
                let inner = self.text[s..self.pos].to_string();
                self.bump();
                let ok = {
                    let (n, rest) = inner
                        .find('[')
                        .map(|i| inner.split_at(i))
                        .unwrap_or((inner.as_str(), ""));
                    n.chars().next().is_some_and(is_name_start)
                        && n.chars().all(is_name_char)
                        && (rest.is_empty()
                            || (rest.starts_with('[')
                                && rest.ends_with(']')
                                && rest.len() > 2
                                && rest[1..rest.len() - 1].chars().all(|c| c.is_ascii_digit())))
                };
                if !ok {
                    let d = self
                        .error(SHELL_CONSTRUCT, at, self.pos, format!("`${{{inner}}}` is a parameter expansion the importer does not evaluate"))
                        .label("bash operator")
                        .help("write the value out, or refer to a variable as ${NAME}");
                    self.diags.push(d);
                    self.skip_line();
                    return None;
                }
                (inner, self.pos)
            }
            Some(c) if is_name_start(c) => {
                let n = self.name().unwrap_or_default();
                (n, self.pos)
            }
            _ => {
                // A lone `$` is literal in bash.
                return Some("$".into());
            }
        };
        match self.vars.get(&key) {
            Some(v) => Some(v.clone()),
            None => {
                let d = self
                    .error(SHELL_CONSTRUCT, at, end, format!("`{key}` is not assigned earlier in the file"))
                    .label("unknown variable")
                    .help("bash would take it from the environment (or expand it to nothing); write the value out");
                self.diags.push(d);
                self.skip_line();
                None
            }
        }
    }
}

/// Reads every assignment of `text` (file `file`), in order. Lines that are not
/// assignments get a diagnostic and are skipped; reading goes on with the next line.
pub fn lex(file: FileId, text: &str) -> (Vec<Assign>, Diagnostics) {
    let mut lx = Lexer {
        text,
        pos: 0,
        file,
        diags: Diagnostics::new(),
        vars: HashMap::new(),
    };
    let mut out = Vec::new();
    while lx.pos < text.len() {
        let before = lx.pos;
        if let Some(a) = lx.line() {
            out.push(a);
        }
        if lx.pos == before {
            // Cannot happen (every path consumes), but never loop forever on input.
            lx.skip_line();
            if lx.pos == before {
                break;
            }
        }
    }
    (out, lx.diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, Option<String>, String)> {
        let (a, d) = lex(FileId(0), text);
        assert!(d.is_empty(), "{d:?}");
        a.into_iter().map(|a| (a.name, a.index, a.value)).collect()
    }

    fn err(text: &str) -> Vec<&'static str> {
        let (_, d) = lex(FileId(0), text);
        d.codes()
    }

    #[test]
    fn reads_the_forms_imagebuilder_configs_use() {
        let v = ok("# c\nMEMORY_START=\"0x0\"\n  NUM_DOMUS=2 # two\nDOMU_KERNEL[0]=\"dom1/Image\"\nDOMU_MEM[1]=512\nXEN_CMD='a b'\nexport LOAD_CMD=tftpb\n\n");
        assert_eq!(
            v,
            [
                ("MEMORY_START".into(), None, "0x0".into()),
                ("NUM_DOMUS".into(), None, "2".into()),
                ("DOMU_KERNEL".into(), Some("0".into()), "dom1/Image".into()),
                ("DOMU_MEM".into(), Some("1".into()), "512".into()),
                ("XEN_CMD".into(), None, "a b".into()),
                ("LOAD_CMD".into(), None, "tftpb".into()),
            ]
        );
    }

    #[test]
    fn expands_earlier_variables_and_escapes() {
        let v = ok("D=dom1\nDOMU_KERNEL[0]=\"$D/Image\"\nDOMU_RAMDISK[0]=${D}/rd\nX=\"a \\\"q\\\" \\$D\"\nY=${DOMU_KERNEL[0]}\n");
        assert_eq!(v[1].2, "dom1/Image");
        assert_eq!(v[2].2, "dom1/rd");
        assert_eq!(v[3].2, "a \"q\" $D");
        assert_eq!(v[4].2, "dom1/Image");
    }

    #[test]
    fn a_quoted_value_may_span_lines() {
        let v = ok("XEN_CMD=\"console=dtuart\n bootscrub=0\"\nNUM_DOMUS=1\n");
        assert_eq!(v[0].2, "console=dtuart\n bootscrub=0");
        assert_eq!(v[1].0, "NUM_DOMUS");
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        assert_eq!(err("X=$(cat f)\n"), ["SB0802"]);
        assert_eq!(err("X=`cat f`\n"), ["SB0802"]);
        assert_eq!(err("X=$UNSET\n"), ["SB0802"]);
        assert_eq!(err("X=${A:-b}\n"), ["SB0802"]);
        assert_eq!(err("X=(a b)\n"), ["SB0802"]);
        assert_eq!(err("X+=a\n"), ["SB0802"]);
        assert_eq!(err("X=a; Y=b\n"), ["SB0802"]);
        assert_eq!(err("X = 1\n"), ["SB0801"]);
        assert_eq!(err("X=\"open\n"), ["SB0801"]);
        assert_eq!(err("if true; then\n"), ["SB0801"]);
        assert_eq!(err("X=a b\n"), ["SB0801"]);
        assert_eq!(err("1X=a\n"), ["SB0801"]);
    }

    #[test]
    fn reading_goes_on_after_a_bad_line() {
        let (a, d) = lex(FileId(0), "bad line\nNUM_DOMUS=1\n");
        assert_eq!(d.codes(), ["SB0801"]);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn spans_point_at_name_and_value() {
        let text = "A=1\nDOMU_MEM[0]=\"512\"\n";
        let (a, _) = lex(FileId(0), text);
        assert_eq!(&text[a[1].name_span.range()], "DOMU_MEM[0]");
        assert_eq!(&text[a[1].value_span.range()], "\"512\"");
    }
}
