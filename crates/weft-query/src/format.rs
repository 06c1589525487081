//! Result formats: the JSON document of `POST /v1/query`, NDJSON, CSV and a
//! text table. Values keep their JSON types: numbers as numbers, booleans,
//! null; timestamps as RFC 3339 UTC strings; everything else as text.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Value, json};

use crate::{Error, QueryOutput, Result};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "table" => Format::Table,
            "json" => Format::Json,
            "ndjson" => Format::Ndjson,
            "csv" => Format::Csv,
            other => {
                return Err(format!(
                    "unknown format {other:?}: use table, json, ndjson or csv"
                ));
            }
        })
    }
}

/// A column's JSON value at `row`.
pub fn value(col: &ArrayRef, row: usize) -> Value {
    // A NullArray (`SELECT NULL`) has no validity buffer: ask for logical nulls.
    if col.is_null(row) || col.data_type() == &DataType::Null {
        return Value::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            json!(col.as_primitive::<$t>().value(row))
        };
    }
    match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => float(col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float(col.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(col.as_string_view().value(row).to_owned()),
        DataType::Timestamp(..) => {
            let ns = cast(
                &col.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
            )
            .ok()
            .map(|a| {
                a.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                    .value(0)
            });
            match ns {
                Some(ns) => {
                    let mut s = String::new();
                    weft_ingest::time::format_rfc3339(ns, &mut s);
                    Value::String(s)
                }
                None => text(col, row),
            }
        }
        DataType::Dictionary(..) => match cast(&col.slice(row, 1), &DataType::Utf8) {
            Ok(a) => value(&a, 0),
            Err(_) => text(col, row),
        },
        _ => text(col, row),
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn text(col: &ArrayRef, row: usize) -> Value {
    let opts = FormatOptions::default();
    match ArrayFormatter::try_new(col.as_ref(), &opts) {
        Ok(f) => Value::String(f.value(row).to_string()),
        Err(_) => Value::Null,
    }
}

/// Type name shown in `columns`.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Dictionary(_, v) => type_name(v),
        DataType::Timestamp(TimeUnit::Nanosecond, Some(tz)) => format!("Timestamp(ns, {tz})"),
        other => other.to_string(),
    }
}

/// The JSON document `POST /v1/query` answers with, rows capped at `max_rows`.
pub fn json_document(out: &QueryOutput, max_rows: usize) -> Value {
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": type_name(f.data_type())}))
        .collect();
    let mut rows = Vec::new();
    let total = out.row_count();
    'outer: for b in &out.batches {
        for r in 0..b.num_rows() {
            if rows.len() >= max_rows {
                break 'outer;
            }
            rows.push(Value::Array(
                b.columns().iter().map(|c| value(c, r)).collect(),
            ));
        }
    }
    json!({
        "columns": columns,
        "row_count": rows.len(),
        "truncated": total > rows.len(),
        "rows": rows,
        "elapsed_ms": out.elapsed.as_secs_f64() * 1000.0,
    })
}

/// One JSON object per row, keys in column order.
pub fn ndjson_rows(schema: &SchemaRef, batch: &RecordBatch, out: &mut String) {
    // serde_json's map sorts keys; the columns' order is written by hand.
    let keys: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| Value::String(f.name().clone()).to_string())
        .collect();
    for r in 0..batch.num_rows() {
        out.push('{');
        for (i, (k, c)) in keys.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push(':');
            out.push_str(&value(c, r).to_string());
        }
        out.push_str("}\n");
    }
}

/// CSV with a header line; text fields quoted when needed.
pub fn csv(out: &QueryOutput) -> Result<String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in &out.batches {
            let b = normalize_for_text(b)?;
            w.write(&b).map_err(|e| Error::Internal(e.to_string()))?;
        }
        if out.batches.is_empty() {
            let empty = RecordBatch::new_empty(std::sync::Arc::clone(&out.schema));
            w.write(&normalize_for_text(&empty)?)
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
    }
    String::from_utf8(buf).map_err(|e| Error::Internal(e.to_string()))
}

/// Casts dictionary columns to plain text, which the CSV writer wants.
pub fn normalize_for_text(b: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if let DataType::Dictionary(_, v) = f.data_type() {
            let c = cast(c, v).map_err(|e| Error::Internal(e.to_string()))?;
            fields.push(f.as_ref().clone().with_data_type(v.as_ref().clone()));
            cols.push(c);
        } else {
            fields.push(f.as_ref().clone());
            cols.push(std::sync::Arc::clone(c));
        }
    }
    RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        cols,
    )
    .map_err(|e| Error::Internal(e.to_string()))
}

/// A text table for terminals.
pub fn table(out: &QueryOutput) -> Result<String> {
    let s = arrow::util::pretty::pretty_format_batches(&out.batches)
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_string();
    let n = out.row_count();
    Ok(format!(
        "{s}\n{n} row{} in {:.1} ms\n",
        if n == 1 { "" } else { "s" },
        out.elapsed.as_secs_f64() * 1000.0
    ))
}
