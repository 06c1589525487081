//! weft-ingest
