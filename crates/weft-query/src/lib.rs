//! weft-query
