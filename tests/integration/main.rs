//! weft end to end: one test binary, a module per area.

mod access;
mod api_fuzz;
mod cli_query;
mod clients;
mod crash;
mod daemon;
mod differential;
mod edges;
mod import;
mod interop;
mod shippers;
mod tls;
