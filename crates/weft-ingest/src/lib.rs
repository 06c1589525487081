//! weft-ingest: the second stage of weft's write path.
//!
//! Takes lines framed by `weft-scan` and turns them into Arrow record
//! batches of table `logs` (core columns from configurable alias lists, every
//! other field typed in a column of its own) plus table `rejects` for lines
//! that are not records. The protocol decoders ([`protocol`]: Elasticsearch
//! bulk, Loki push, OTLP logs) feed the same builder. It knows nothing of files, the WAL or
//! Parquet: `weft-storage` owns where batches go.

pub mod body;
pub mod config;
mod dynamic;
mod keypath;
pub mod level;
pub mod model;
pub mod normalize;
pub mod protocol;
pub mod rebuild;
pub mod registry;
pub mod reject;
pub mod time;

pub use body::{BodyBatch, BodyOptions, LineError, MAX_LISTED_ERRORS, normalize_body};
pub use config::{Aliases, NormalizerConfig};
pub use normalize::{BatchBuilder, Counts, Defaults};
pub use protocol::{BulkItem, Format, decode_body};
pub use registry::FieldRegistry;
pub use reject::Reason;
