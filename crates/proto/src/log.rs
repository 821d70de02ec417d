//! The `log` protocol (docs/protocols.md). Being implemented.
