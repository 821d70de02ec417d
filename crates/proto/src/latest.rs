//! The `latest` protocol (docs/protocols.md). Being implemented.
