//! weft end to end: one test binary, a module per area.

mod cli_query;
mod differential;
mod edges;
mod import;
mod interop;
