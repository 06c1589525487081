//! Lines that could not become records, with the reason and the raw bytes.
//! They are stored as table `rejects`, never dropped.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondArray,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::model;

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    InvalidUtf8 {
        offset: usize,
    },
    NotAnObject(&'static str),
    NotJson,
    Json(weft_scan::json::Error),
    TooLong {
        len: usize,
        max: usize,
    },
    /// A protocol decoder's refusal: a bulk action weft does not support, a
    /// Loki entry without a usable timestamp, a body that does not decode.
    Protocol {
        label: &'static str,
        detail: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::InvalidUtf8 { offset } => write!(f, "invalid UTF-8 at byte {offset}"),
            Reason::NotAnObject(what) => write!(f, "not a JSON object: the line is {what}"),
            Reason::NotJson => f.write_str("not JSON: a record must be a JSON object"),
            Reason::Json(e) => write!(f, "invalid JSON: {e}"),
            Reason::TooLong { len, max } => {
                write!(
                    f,
                    "line of {len} bytes is longer than the {max}-byte limit; first {max} bytes kept"
                )
            }
            Reason::Protocol { detail, .. } => f.write_str(detail),
        }
    }
}

impl Reason {
    /// A short, stable label for metrics and summaries.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::InvalidUtf8 { .. } => "invalid_utf8",
            Reason::NotAnObject(_) => "not_an_object",
            Reason::NotJson => "not_json",
            Reason::Json(_) => "invalid_json",
            Reason::TooLong { .. } => "too_long",
            Reason::Protocol { label, .. } => label,
        }
    }
}

pub const SOURCE: &str = "source";
pub const LINE: &str = "line";
pub const REASON: &str = "reason";
pub const RAW: &str = "raw";

/// The schema of table `rejects`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(model::OBSERVED_AT, model::timestamp_type(), false),
        Field::new(SOURCE, model::dictionary_utf8(), false),
        Field::new(LINE, DataType::UInt64, false),
        Field::new(REASON, DataType::Utf8, false),
        Field::new(RAW, DataType::Binary, false),
    ]))
}

/// Accumulates rejects into a record batch.
#[derive(Default)]
pub struct RejectBatch {
    observed: Vec<i64>,
    source: StringDictionaryBuilder<Int32Type>,
    line: UInt64Builder,
    reason: StringBuilder,
    raw: BinaryBuilder,
}

impl fmt::Debug for RejectBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectBatch")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RejectBatch {
    pub fn push(&mut self, observed_at: i64, source: &str, line: u64, raw: &[u8], reason: &str) {
        self.observed.push(observed_at);
        self.source.append_value(source);
        self.line.append_value(line);
        self.reason.append_value(reason);
        self.raw.append_value(raw);
    }

    pub fn len(&self) -> usize {
        self.observed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.observed.is_empty()
    }

    pub fn finish(&mut self) -> Option<RecordBatch> {
        if self.observed.is_empty() {
            return None;
        }
        let observed =
            TimestampNanosecondArray::from(std::mem::take(&mut self.observed)).with_timezone("UTC");
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(observed),
            Arc::new(self.source.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw.finish()),
        ];
        Some(RecordBatch::try_new(schema(), arrays).expect("reject columns match the schema"))
    }
}
