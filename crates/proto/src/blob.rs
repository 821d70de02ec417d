//! The `blob` protocol (docs/protocols.md). Being implemented.
