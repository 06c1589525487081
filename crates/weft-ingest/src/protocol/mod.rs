//! Shipper protocols: Elasticsearch bulk, Loki push and OTLP/HTTP logs,
//! decoded into the same records as NDJSON.
//!
//! Each decoder turns a protocol's items into one JSON object per record and
//! feeds it to the same [`BatchBuilder`](crate::BatchBuilder) NDJSON lines go
//! through, so alias lists, typing, the field cap and rejects work the same
//! for every protocol. The daemon keeps the decoded-but-unparsed body in its
//! WAL with its [`Format`], and replay runs the same decoder again: a
//! protocol needs no WAL format of its own.
//!
//! A body that does not decode as a whole (bad protobuf, a malformed bulk
//! action line, a JSON document of the wrong shape) is kept whole as one
//! reject and reported in [`BodyBatch::fatal`]; items that fail alone are
//! rejects of their own and the rest is stored.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::body::Sink;
use crate::normalize::Defaults;
use crate::{BodyBatch, BodyOptions, MAX_LISTED_ERRORS, normalize_body};

mod es;
mod loki;
mod otlp;
pub mod pb;

pub use otlp::{partial_success_json, partial_success_protobuf};

/// How a request body is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`POST /v1/ingest`).
    Ndjson,
    /// Elasticsearch `_bulk`: action lines and documents; `index` is the
    /// one named in the path, if any.
    EsBulk { index: Option<String> },
    /// Loki `PushRequest`, protobuf (already snappy-decompressed).
    LokiProtobuf,
    /// Loki push in JSON.
    LokiJson,
    /// OTLP `ExportLogsServiceRequest`, protobuf.
    OtlpProtobuf,
    /// OTLP logs in the OTLP/JSON mapping.
    OtlpJson,
}

impl Format {
    /// The name kept in the WAL and shown in metrics.
    pub fn tag(&self) -> String {
        match self {
            Format::EsBulk { index: Some(i) } => format!("es_bulk:{i}"),
            other => other.label().to_owned(),
        }
    }

    /// Reads back [`Format::tag`].
    pub fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "ndjson" => Format::Ndjson,
            "es_bulk" => Format::EsBulk { index: None },
            "loki_protobuf" => Format::LokiProtobuf,
            "loki_json" => Format::LokiJson,
            "otlp_protobuf" => Format::OtlpProtobuf,
            "otlp_json" => Format::OtlpJson,
            _ => Format::EsBulk {
                index: Some(tag.strip_prefix("es_bulk:")?.to_owned()),
            },
        })
    }

    /// The protocol, whatever its encoding: the `source` label of metrics.
    pub fn protocol(&self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::EsBulk { .. } => "es_bulk",
            Format::LokiProtobuf | Format::LokiJson => "loki",
            Format::OtlpProtobuf | Format::OtlpJson => "otlp",
        }
    }

    /// A short stable name of protocol and encoding.
    pub fn label(&self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::EsBulk { .. } => "es_bulk",
            Format::LokiProtobuf => "loki_protobuf",
            Format::LokiJson => "loki_json",
            Format::OtlpProtobuf => "otlp_protobuf",
            Format::OtlpJson => "otlp_json",
        }
    }
}

/// What became of one Elasticsearch bulk item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkItem {
    /// `index`, `create`, `update` or `delete`.
    pub action: String,
    pub index: Option<String>,
    pub id: Option<String>,
    /// Why the item was not stored: an Elasticsearch-style error type and
    /// the reason. `None` when it was stored.
    pub error: Option<(String, String)>,
}

/// Loki and OTLP write shared parts (stream labels, resource and scope
/// attributes) into every record. The record text a body may turn into is
/// capped at this many times its size (or [`MIN_BUDGET`]); past it the body
/// is refused whole, so a few megabytes cannot ask for terabytes of work.
pub const EXPANSION: u64 = 8;

/// The record text any Loki or OTLP body may make, however small it is.
pub const MIN_BUDGET: u64 = 16 << 20;

/// Refuses a body whose records outgrew their budget.
pub(crate) fn over_budget(sink: &mut Sink<'_>, body: &[u8]) {
    sink.fail(
        body,
        "too_large",
        format!(
            "the body expands to more than {EXPANSION}x its size (at least {} MiB) of records: \
             split it, or send shared labels and attributes with fewer records each",
            MIN_BUDGET >> 20
        ),
    );
}

/// Decodes `body` in `format` into records and rejects. Never fails: what
/// cannot be decoded is kept as rejects and named in the answer.
pub fn decode_body(
    format: &Format,
    body: &[u8],
    source: &Arc<str>,
    observed_at: i64,
    defaults: Defaults,
    options: &BodyOptions,
) -> BodyBatch {
    if *format == Format::Ndjson {
        return normalize_body(body, source, observed_at, defaults, options);
    }
    let mut sink = Sink::new(
        source,
        observed_at,
        defaults.clone(),
        options,
        MAX_LISTED_ERRORS,
    );
    if matches!(
        format,
        Format::LokiProtobuf | Format::LokiJson | Format::OtlpProtobuf | Format::OtlpJson
    ) {
        sink.set_budget(
            (body.len() as u64)
                .saturating_mul(EXPANSION)
                .max(MIN_BUDGET),
        );
    }
    match format {
        Format::Ndjson => unreachable!("handled above"),
        Format::EsBulk { index } => es::decode(body, index.as_deref(), options.max_line, &mut sink),
        Format::LokiProtobuf => loki::decode_protobuf(body, &defaults, &mut sink),
        Format::LokiJson => loki::decode_json(body, &defaults, &mut sink),
        Format::OtlpProtobuf => otlp::decode_protobuf(body, &mut sink),
        Format::OtlpJson => otlp::decode_json(body, &mut sink),
    }
    sink.finish()
}

/// Why decoding stopped before the end of the body.
pub(crate) enum Stop {
    /// The body does not decode (or has the wrong shape): refuse it whole.
    Bad(String),
    /// Its records outgrew the body's budget.
    OverBudget,
}

impl From<prost::DecodeError> for Stop {
    fn from(e: prost::DecodeError) -> Self {
        Stop::Bad(e.to_string())
    }
}

impl From<String> for Stop {
    fn from(why: String) -> Self {
        Stop::Bad(why)
    }
}

/// Calls `f` with the tag and payload of each length-delimited field of a
/// protobuf message, in order; other fields are skipped.
pub(crate) fn each_field<'b>(
    mut buf: &'b [u8],
    mut f: impl FnMut(u32, &'b [u8]) -> Result<(), Stop>,
) -> Result<(), Stop> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf)?;
        if wire != WireType::LengthDelimited {
            skip_field(wire, tag, &mut buf, DecodeContext::default())?;
            continue;
        }
        let len = usize::try_from(decode_varint(&mut buf)?).unwrap_or(usize::MAX);
        if len > buf.len() {
            return Err(Stop::Bad(format!(
                "field {tag} claims {len} bytes but {} remain",
                buf.len()
            )));
        }
        let (payload, rest) = buf.split_at(len);
        buf = rest;
        f(tag, payload)?;
    }
    Ok(())
}

/// Writes one JSON object, key by key, escaping as it goes.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    /// Starts a member; the value is written next.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        string(key, self.out);
        self.out.push(':');
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        string(value, out);
    }

    pub(crate) fn int(&mut self, key: &str, value: i64) {
        use std::fmt::Write;
        let out = self.key(key);
        let _ = write!(out, "{value}");
    }

    /// A time as RFC 3339 text with its full fraction: unlike an epoch
    /// number, its unit is never guessed from its size.
    pub(crate) fn time(&mut self, key: &str, ns: i64) {
        let out = self.key(key);
        out.push('"');
        crate::time::format_rfc3339(ns, out);
        out.push('"');
    }

    /// Members written as raw JSON text (`"a":1,"b":2`), from a record
    /// whose braces were taken off.
    pub(crate) fn members(&mut self, inner: &str) {
        if inner.trim().is_empty() {
            return;
        }
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push_str(inner);
    }

    pub(crate) fn close(self) {
        self.out.push('}');
    }
}

/// Appends `s` as a JSON string.
pub(crate) fn string(s: &str, out: &mut String) {
    out.push('"');
    weft_scan::json::escape_into(s, out);
    out.push('"');
}

/// Appends a float as JSON: finite numbers as numbers, the rest as text.
pub(crate) fn float(f: f64, out: &mut String) {
    use std::fmt::Write;
    if f.is_finite() {
        let _ = write!(out, "{f:?}");
    } else {
        string(&f.to_string(), out);
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// An object's text without its outer braces, when `text` (trimmed) is
/// `{…}`; used to add members to a record without parsing it twice.
pub(crate) fn inner_of_object(text: &str) -> Option<&str> {
    let t = text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'));
    t.strip_prefix('{')?.strip_suffix('}')
}

/// What the decoders' unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, RecordBatch};

    use super::{Format, decode_body};
    use crate::{BodyBatch, BodyOptions, Defaults, FieldRegistry, NormalizerConfig};

    /// The receive time the tests decode at.
    pub(crate) const OBSERVED_AT: i64 = 7;

    pub(crate) fn decode(format: Format, body: &[u8]) -> BodyBatch {
        let options = BodyOptions {
            config: Arc::new(NormalizerConfig::default()),
            registry: Arc::new(FieldRegistry::new(1000)),
            max_line: 1 << 20,
        };
        decode_body(
            &format,
            body,
            &Arc::from("test"),
            OBSERVED_AT,
            Defaults::default(),
            &options,
        )
    }

    /// A column as text, nulls as `None`.
    pub(crate) fn column(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let col = arrow::compute::cast(
            batch.column_by_name(name).expect(name),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let col = col.as_string::<i32>();
        (0..col.len())
            .map(|i| col.is_valid(i).then(|| col.value(i).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_tags_round_trip() {
        for f in [
            Format::Ndjson,
            Format::EsBulk { index: None },
            Format::EsBulk {
                index: Some("app:logs".into()),
            },
            Format::LokiProtobuf,
            Format::LokiJson,
            Format::OtlpProtobuf,
            Format::OtlpJson,
        ] {
            assert_eq!(Format::from_tag(&f.tag()), Some(f.clone()), "{f:?}");
        }
        assert_eq!(Format::from_tag("csv"), None);
    }

    #[test]
    fn objects_are_written_as_valid_json() {
        let mut s = String::new();
        let mut o = Obj::new(&mut s);
        o.str("a\"b", "line\nbreak");
        o.int("n", -3);
        o.members(" \"x\": [1, 2] ");
        o.members("  ");
        float(f64::NAN, o.key("f"));
        float(1.0, o.key("g"));
        o.close();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a\"b": "line\nbreak", "n": -3, "x": [1, 2], "f": "NaN", "g": 1.0})
        );
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(inner_of_object(" {\"a\":1}\r"), Some("\"a\":1"));
        assert_eq!(inner_of_object("[1]"), None);
    }
}
