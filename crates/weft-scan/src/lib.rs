//! weft-scan: the first stage of weft's write path.
//!
//! Bytes in, offsets and tokens out. [`lines`] frames NDJSON with `memchr`
//! into blocks and lines without copying; [`json`] tokenizes one line into
//! visitor events without building a tree. Nothing here knows about Arrow,
//! tokio or weft's data model: `weft-ingest` drives the visitor and owns what
//! the tokens mean. Kept apart so it can be fuzzed (`fuzz/`) and benchmarked
//! on its own.

pub mod json;
pub mod lines;

pub use json::{Error, ErrorKind, JsonNumber, JsonStr, Options, Visitor, parse};
pub use lines::{Block, BlockReader, Line, Lines};
