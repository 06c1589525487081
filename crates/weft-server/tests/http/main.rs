//! The router without a socket: status codes, headers and JSON shapes.

mod access;
mod ingest;
mod openapi;
mod query;
