//! weft-storage's integration tests: one binary, a module per area.

mod segments;
mod store;
