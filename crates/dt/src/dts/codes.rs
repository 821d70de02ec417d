//! Diagnostic codes of the DTS parser (SB0001–SB0039).

use staticbus_diag::{Code, Severity};

const fn err(id: &'static str, title: &'static str, xen: &'static str) -> Code {
    Code {
        id,
        severity: Severity::Error,
        title,
        xen,
    }
}

const DTC_SYNTAX: &str = "dtc rejects the file (\"syntax error\"); Xen never sees it";

/// The token stream does not match the DTS grammar.
pub const SYNTAX: Code = err("SB0001", "DTS syntax error", DTC_SYNTAX);
/// The main file does not start with `/dts-v1/;`.
pub const MISSING_V1: Code = err(
    "SB0002",
    "missing /dts-v1/; header",
    "dtc rejects the file (\"syntax error\" at the first token); Xen never sees it",
);
/// `/plugin/;` (device-tree overlay) input.
pub const PLUGIN: Code = err(
    "SB0003",
    "/plugin/ overlays are not host device trees",
    "dtc builds an overlay blob (.dtbo, with __fixups__ and fragment@N/__overlay__ nodes) \
     instead of a complete tree; Xen cannot boot it as its host device tree",
);
/// `/*` without `*/`.
pub const UNTERMINATED_COMMENT: Code = err("SB0004", "unterminated comment", DTC_SYNTAX);
/// `"` without a closing `"` (or a backslash-newline inside a string).
pub const UNTERMINATED_STRING: Code = err("SB0005", "unterminated string literal", DTC_SYNTAX);
/// `\x` not followed by a hex digit.
pub const BAD_ESCAPE: Code = err(
    "SB0006",
    "invalid escape sequence",
    "dtc aborts (\"\\x used with no following hex digits\"); Xen never sees the file",
);
/// An integer literal strtoull cannot fully parse (`08`).
pub const BAD_LITERAL: Code = err(
    "SB0007",
    "bad integer literal",
    "dtc rejects the file (\"Bad integer literal\"); Xen never sees it",
);
/// An integer literal above 2^64-1.
pub const LITERAL_RANGE: Code = err(
    "SB0008",
    "integer literal out of range",
    "dtc rejects the file (\"Integer literal out of range\"); Xen never sees it",
);
/// `''`, `'ab'` or an unterminated character literal.
pub const BAD_CHAR: Code = err(
    "SB0009",
    "bad character literal",
    "dtc rejects the file (\"Empty character literal\" / \"Character literal has N \
     characters\"); Xen never sees it",
);
/// `/` or `%` by zero in an integer expression.
pub const DIV_ZERO: Code = err(
    "SB0010",
    "division by zero",
    "dtc rejects the file (\"Division by zero\"); Xen never sees it",
);
/// A cell value that does not fit the array's element width.
pub const VALUE_RANGE: Code = err(
    "SB0011",
    "value out of range for the array element width",
    "dtc 1.6 rejects the file (\"Value out of range for N-bit array element\"); dtc 1.7 \
     only warns and silently truncates the value that Xen then reads",
);
/// `/bits/` with a width other than 8, 16, 32 or 64.
pub const BAD_BITS: Code = err(
    "SB0012",
    "invalid /bits/ width",
    "dtc rejects the file (\"Array elements must be 8, 16, 32 or 64-bits\"); Xen never sees it",
);
/// A `&ref` inside a `/bits/ 8|16|64` array.
pub const REF_WIDTH: Code = err(
    "SB0013",
    "reference in an array whose elements are not 32-bit",
    "dtc rejects the file (\"References are only allowed in arrays with 32-bit elements\"); \
     Xen never sees it",
);
/// A property after a child node in the same node body.
pub const PROP_AFTER_NODE: Code = err(
    "SB0014",
    "properties must precede subnodes",
    "dtc rejects the file (\"Properties must precede subnodes\"); Xen never sees it",
);
/// `&label { … }`, `/delete-node/ &label;` or `/omit-if-no-ref/ &label;` whose target does
/// not exist (yet).
pub const REF_NOT_FOUND: Code = err(
    "SB0015",
    "label or path not found",
    "dtc rejects the file (\"Label or path … not found\"); Xen never sees it",
);
/// `#include`, `#define`, … : C preprocessor input given to the DTS parser.
pub const CPP_DIRECTIVE: Code = err(
    "SB0016",
    "C preprocessor directive in DTS input",
    "dtc does not run the C preprocessor and rejects the line (\"syntax error\"); Xen never \
     sees the file",
);
/// `/include/` of a file that cannot be read.
pub const INCLUDE_NOT_FOUND: Code = err(
    "SB0017",
    "cannot read /include/ file",
    "dtc aborts (\"Couldn't open …\"); Xen never sees the file",
);
/// `/include/` nesting deeper than the configured maximum.
pub const INCLUDE_DEPTH: Code = err(
    "SB0018",
    "/include/ nested too deeply",
    "dtc aborts (\"Includes nested too deeply\", at 200 levels); Xen never sees the file",
);
/// A file that (directly or indirectly) includes itself.
pub const INCLUDE_CYCLE: Code = err(
    "SB0019",
    "/include/ cycle",
    "dtc recurses until \"Includes nested too deeply\" and aborts; Xen never sees the file",
);
/// `/incbin/` (not supported by staticbus).
pub const INCBIN: Code = err(
    "SB0020",
    "/incbin/ is not supported",
    "dtc would splice the named binary file into the property value",
);
/// Node or expression nesting beyond the parser's limit.
pub const TOO_DEEP: Code = err(
    "SB0021",
    "nesting too deep",
    "dtc and Xen would accept deep trees, but no real host tree nests this deeply; Xen's \
     device-tree code recurses per level",
);
/// Two live child nodes with the same name.
pub const DUP_NODE: Code = err(
    "SB0022",
    "duplicate node name",
    "dtc rejects the file (ERROR duplicate_node_names); in a blob made without dtc, Xen's \
     path lookups find only the first node",
);
/// Two properties with the same name in one node.
pub const DUP_PROP: Code = err(
    "SB0023",
    "duplicate property name",
    "dtc rejects the file (ERROR duplicate_property_names); in a blob made without dtc, \
     libfdt and Xen read only the first property",
);
/// A node name with a character outside `[a-zA-Z0-9,._+@-]`.
pub const NODE_NAME_CHARS: Code = err(
    "SB0024",
    "bad character in node name",
    "dtc rejects the file (ERROR node_name_chars); Xen never sees it",
);
/// A node name with more than one `@`.
pub const NODE_NAME_FORMAT: Code = err(
    "SB0025",
    "multiple '@' in node name",
    "dtc rejects the file (ERROR node_name_format); Xen never sees it",
);
/// A property name with a character outside `[a-zA-Z0-9,._+*#?-]`.
pub const PROP_NAME_CHARS: Code = err(
    "SB0026",
    "bad character in property name",
    "dtc rejects the file (ERROR property_name_chars); Xen never sees it",
);
/// A `name` property whose value is not one string.
pub const NAME_NOT_STRING: Code = err(
    "SB0027",
    "\"name\" property is not a string",
    "dtc rejects the file (ERROR name_is_string); Xen never sees it",
);
/// A `name` property that differs from the node's base name.
pub const NAME_MISMATCH: Code = err(
    "SB0028",
    "\"name\" property does not match the node name",
    "dtc rejects the file (ERROR name_properties); a matching one is silently dropped",
);
/// A character no DTS token can start with (control characters, non-ASCII, `$`, …).
pub const BAD_CHAR_INPUT: Code = err("SB0029", "unexpected character", DTC_SYNTAX);
/// `// comment` on the last line without a newline: dtc's lexer needs the newline.
pub const LINE_COMMENT_EOF: Code = err(
    "SB0030",
    "// comment at end of file without a newline",
    "dtc's lexer only recognises // comments that end with a newline and rejects the file \
     (\"syntax error\"); Xen never sees it",
);
/// More `/include/` expansions than the parser allows in total.
pub const TOO_MANY_INCLUDES: Code = err(
    "SB0031",
    "too many /include/ expansions",
    "dtc would keep expanding (possibly exponentially); no real host tree needs this many",
);
/// `&{}`: an empty reference.
pub const EMPTY_REF: Code = err(
    "SB0032",
    "empty reference",
    "dtc 1.6 rejects `&{}` (\"syntax error\"); dtc 1.7 crashes on an assertion",
);
/// The root node deleted (`/delete-node/ &{/};`, or `/omit-if-no-ref/` on an unreferenced
/// root).
pub const ROOT_DELETED: Code = err(
    "SB0033",
    "root node deleted",
    "dtc writes a blob without any node, which libfdt and Xen reject",
);

/// Every code this module emits.
pub const ALL: &[Code] = &[
    SYNTAX,
    MISSING_V1,
    PLUGIN,
    UNTERMINATED_COMMENT,
    UNTERMINATED_STRING,
    BAD_ESCAPE,
    BAD_LITERAL,
    LITERAL_RANGE,
    BAD_CHAR,
    DIV_ZERO,
    VALUE_RANGE,
    BAD_BITS,
    REF_WIDTH,
    PROP_AFTER_NODE,
    REF_NOT_FOUND,
    CPP_DIRECTIVE,
    INCLUDE_NOT_FOUND,
    INCLUDE_DEPTH,
    INCLUDE_CYCLE,
    INCBIN,
    TOO_DEEP,
    DUP_NODE,
    DUP_PROP,
    NODE_NAME_CHARS,
    NODE_NAME_FORMAT,
    PROP_NAME_CHARS,
    NAME_NOT_STRING,
    NAME_MISMATCH,
    BAD_CHAR_INPUT,
    LINE_COMMENT_EOF,
    TOO_MANY_INCLUDES,
    EMPTY_REF,
    ROOT_DELETED,
];
