//! The router without a socket: status codes, headers and JSON shapes.

mod ingest;
mod openapi;
mod query;
