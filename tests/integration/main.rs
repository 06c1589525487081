//! weft end to end: one test binary, a module per area.

mod edges;
mod import;
mod interop;
