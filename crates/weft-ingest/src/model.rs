//! The `logs` data model: core column names, internal columns, and the
//! Arrow fields they are stored as. Other crates name columns through these
//! constants, never through string literals of their own.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

pub const TIMESTAMP: &str = "timestamp";
pub const OBSERVED_AT: &str = "observed_at";
pub const SERVICE: &str = "service";
pub const LEVEL: &str = "level";
pub const MESSAGE: &str = "message";
pub const CORRELATION_ID: &str = "correlation_id";
pub const SPAN_ID: &str = "span_id";
pub const HOST: &str = "host";
/// True when the record had no usable time and `timestamp` is the receive time.
pub const TIMESTAMP_INFERRED: &str = "timestamp_inferred";
/// The record's shape: key order, nesting, leaf types and which leaves fed
/// core columns. With the columns it rebuilds the original record.
pub const SHAPE: &str = "_shape";
/// JSON object text holding fields that have no column of their own
/// (over the field cap, duplicate keys, names that collide with core columns).
pub const EXTRA: &str = "_extra";

/// Levels, in increasing severity; `level` holds one of these names.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// The core columns that come from the record's fields, in the order the
/// shape's core map codes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Core {
    Timestamp,
    Service,
    Level,
    Message,
    CorrelationId,
    SpanId,
    Host,
}

impl Core {
    pub const ALL: [Core; 7] = [
        Core::Timestamp,
        Core::Service,
        Core::Level,
        Core::Message,
        Core::CorrelationId,
        Core::SpanId,
        Core::Host,
    ];

    pub fn column(self) -> &'static str {
        match self {
            Core::Timestamp => TIMESTAMP,
            Core::Service => SERVICE,
            Core::Level => LEVEL,
            Core::Message => MESSAGE,
            Core::CorrelationId => CORRELATION_ID,
            Core::SpanId => SPAN_ID,
            Core::Host => HOST,
        }
    }

    /// One-letter code used in the shape's core map.
    pub(crate) fn code(self) -> char {
        match self {
            Core::Timestamp => 'T',
            Core::Service => 'S',
            Core::Level => 'L',
            Core::Message => 'M',
            Core::CorrelationId => 'C',
            Core::SpanId => 'P',
            Core::Host => 'H',
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Core> {
        Core::ALL.into_iter().find(|k| k.code() as u8 == c)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Column names a record field can never take: its value goes to `_extra`.
pub fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        TIMESTAMP
            | OBSERVED_AT
            | SERVICE
            | LEVEL
            | MESSAGE
            | CORRELATION_ID
            | SPAN_ID
            | HOST
            | TIMESTAMP_INFERRED
            | SHAPE
            | EXTRA
    )
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("UTC")))
}

pub fn dictionary_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The fixed leading fields of every `logs` batch, in order.
pub fn core_fields() -> Vec<Field> {
    vec![
        Field::new(TIMESTAMP, timestamp_type(), false),
        Field::new(OBSERVED_AT, timestamp_type(), false),
        Field::new(SERVICE, dictionary_utf8(), true),
        Field::new(LEVEL, dictionary_utf8(), true),
        Field::new(MESSAGE, DataType::Utf8, true),
        Field::new(CORRELATION_ID, DataType::Utf8, true),
        Field::new(SPAN_ID, DataType::Utf8, true),
        Field::new(HOST, dictionary_utf8(), true),
        Field::new(TIMESTAMP_INFERRED, DataType::Boolean, false),
        Field::new(SHAPE, dictionary_utf8(), false),
        Field::new(EXTRA, DataType::Utf8, true),
    ]
}

/// Number of fields [`core_fields`] returns; dynamic fields follow them.
pub const CORE_FIELD_COUNT: usize = 11;
