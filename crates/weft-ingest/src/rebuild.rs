//! Rebuilds a record's original JSON from its row: the shape gives key order,
//! nesting and leaf types; values come from the dynamic columns, the core
//! columns and `_extra`.
//!
//! What comes back equals the original up to whitespace and number spelling,
//! with two documented exceptions in the fields that fed core columns: a
//! text timestamp comes back as RFC 3339 UTC (same instant, offset not kept),
//! and an epoch float timestamp comes back at nanosecond precision. A level
//! comes back exactly as written.
//!
//! Works on batches read back from Parquet too, whatever type a column was
//! widened or cast to.

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use weft_scan::json::{self, JsonNumber, JsonStr, Visitor};

use crate::keypath::KeyPath;
use crate::model::{self, Core, LEVELS};
use crate::time::{self, EpochUnit};

/// Why a row could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("column {0} is missing")]
    MissingColumn(&'static str),
    #[error("malformed shape: {0}")]
    Shape(String),
    #[error("no value for field {0:?}")]
    MissingValue(String),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One row's column values as text, fetched on demand.
struct Row<'b> {
    batch: &'b RecordBatch,
    row: usize,
}

impl Row<'_> {
    fn text(&self, name: &str) -> Result<Option<String>> {
        let Some(col) = self.batch.column_by_name(name) else {
            return Ok(None);
        };
        text_at(col, self.row)
    }
}

fn text_at(col: &ArrayRef, row: usize) -> Result<Option<String>> {
    if col.is_null(row) {
        return Ok(None);
    }
    let one = col.slice(row, 1);
    let s = if one.data_type() == &DataType::Utf8 {
        one
    } else {
        cast(&one, &DataType::Utf8)?
    };
    let s = s
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to utf8");
    Ok(Some(s.value(0).to_owned()))
}

/// A core entry from the shape: which leaf fed it and how it was written.
struct CoreEntry {
    core: Core,
    leaf: usize,
    detail: String,
}

fn parse_core_map(map: &str) -> Result<Vec<CoreEntry>> {
    let mut out = Vec::new();
    for entry in map.split('\t').filter(|e| !e.is_empty()) {
        let b = entry.as_bytes();
        let core = Core::from_code(b[0])
            .ok_or_else(|| Error::Shape(format!("unknown core code in {entry:?}")))?;
        let digits = entry[1..].bytes().take_while(u8::is_ascii_digit).count();
        let leaf = entry[1..1 + digits]
            .parse()
            .map_err(|_| Error::Shape(format!("bad leaf index in {entry:?}")))?;
        out.push(CoreEntry {
            core,
            leaf,
            detail: entry[1 + digits..].to_owned(),
        });
    }
    Ok(out)
}

/// `_extra` as (key, raw JSON value) pairs in order, each used once.
#[derive(Default)]
struct Extra {
    entries: Vec<(String, String, bool)>,
}

impl Extra {
    fn parse(text: &str) -> Result<Self> {
        #[derive(Default)]
        struct Collect<'a> {
            text: &'a str,
            depth: usize,
            key: String,
            start: usize,
            out: Vec<(String, String, bool)>,
        }
        impl<'a> Collect<'a> {
            fn leaf(&mut self, raw: &str) {
                if self.depth == 1 {
                    self.out
                        .push((std::mem::take(&mut self.key), raw.to_owned(), false));
                }
            }
        }
        impl<'a> Visitor<'a> for Collect<'a> {
            fn begin_object(&mut self, _: usize) {
                self.depth += 1;
            }
            fn end_object(&mut self, _: usize) {
                self.depth -= 1;
            }
            fn begin_array(&mut self, at: usize) {
                if self.depth == 1 {
                    self.start = at;
                }
                self.depth += 1;
            }
            fn end_array(&mut self, end: usize) {
                self.depth -= 1;
                let raw = &self.text[self.start..end];
                self.leaf(raw);
            }
            fn key(&mut self, k: JsonStr<'a>) {
                if self.depth == 1 {
                    self.key = k.decode();
                }
            }
            fn string(&mut self, v: JsonStr<'a>) {
                let raw = format!("\"{}\"", v.raw());
                self.leaf(&raw);
            }
            fn number(&mut self, v: JsonNumber<'a>) {
                self.leaf(v.raw());
            }
            fn boolean(&mut self, b: bool) {
                self.leaf(if b { "true" } else { "false" });
            }
            fn null(&mut self) {
                self.leaf("null");
            }
        }
        let mut c = Collect {
            text,
            ..Default::default()
        };
        json::parse(text, &mut c, json::Options::default())
            .map_err(|e| Error::Shape(format!("_extra: {e}")))?;
        Ok(Self { entries: c.out })
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let e = self
            .entries
            .iter_mut()
            .find(|(k, _, used)| !*used && k == key)?;
        e.2 = true;
        Some(e.1.clone())
    }
}

/// Walks the skeleton and writes the record.
struct Writer<'b> {
    row: Row<'b>,
    cores: Vec<CoreEntry>,
    extra: Extra,
    out: String,
    keys: KeyPath,
    leaf: usize,
    /// Paths whose column value was already used by an earlier leaf.
    taken: Vec<String>,
    error: Option<Error>,
}

impl Writer<'_> {
    fn emit_leaf(&mut self, code: u8) -> Result<()> {
        let i = self.leaf;
        self.leaf += 1;
        if let Some(pos) = self.cores.iter().position(|c| c.leaf == i) {
            let entry = &self.cores[pos];
            return self.emit_core(entry.core, &entry.detail.clone(), code);
        }
        let path = self.keys.path.clone();
        let from_column = !model::is_reserved(&path) && !self.taken.contains(&path);
        if from_column && let Some(text) = self.row.text(&path)? {
            self.taken.push(path);
            self.emit_text(&text, code);
            return Ok(());
        }
        match self.extra.take(&path) {
            Some(raw) => {
                self.out.push_str(&raw);
                Ok(())
            }
            None => Err(Error::MissingValue(path)),
        }
    }

    /// Writes a value held as text: strings quoted, the rest as they are.
    fn emit_text(&mut self, text: &str, code: u8) {
        if code == b'0' {
            self.out.push('"');
            json::escape_into(text, &mut self.out);
            self.out.push('"');
        } else {
            self.out.push_str(text);
        }
    }

    fn emit_core(&mut self, core: Core, detail: &str, code: u8) -> Result<()> {
        match core {
            Core::Timestamp => {
                let col = self
                    .row
                    .batch
                    .column_by_name(model::TIMESTAMP)
                    .ok_or(Error::MissingColumn(model::TIMESTAMP))?;
                let col = cast(col, &model::timestamp_type())?;
                let ns = col
                    .as_primitive::<TimestampNanosecondType>()
                    .value(self.row.row);
                let d = detail.as_bytes();
                let unit = d.get(1).copied().and_then(EpochUnit::from_code);
                match (d.first(), unit) {
                    (Some(b't'), _) => {
                        self.out.push('"');
                        time::format_rfc3339(ns, &mut self.out);
                        self.out.push('"');
                    }
                    (Some(b'x'), Some(u)) if ns % u.nanos() == 0 => {
                        self.out.push_str(&format!("\"{}\"", ns / u.nanos()));
                    }
                    (Some(b'x'), Some(u)) => {
                        let v = time::to_epoch_float(ns, u);
                        self.out.push_str(&format!("\"{v:?}\""));
                    }
                    (Some(b'i'), Some(u)) => self.out.push_str(&(ns / u.nanos()).to_string()),
                    (Some(b'f'), Some(u)) => {
                        let v = time::to_epoch_float(ns, u);
                        self.out.push_str(&format!("{v:?}"));
                    }
                    _ => return Err(Error::Shape(format!("bad timestamp form {detail:?}"))),
                }
            }
            Core::Level => {
                if let Some(raw) = detail.strip_prefix(':') {
                    self.out.push_str(raw);
                } else {
                    let l = self
                        .row
                        .text(model::LEVEL)?
                        .ok_or_else(|| Error::MissingValue(model::LEVEL.into()))?;
                    if !LEVELS.contains(&l.as_str()) {
                        return Err(Error::Shape(format!("unknown level {l:?}")));
                    }
                    self.out.push('"');
                    self.out.push_str(&l);
                    self.out.push('"');
                }
            }
            _ => {
                let name = core.column();
                let text = self
                    .row
                    .text(name)?
                    .ok_or_else(|| Error::MissingValue(name.into()))?;
                self.emit_text(&text, code);
            }
        }
        Ok(())
    }

    fn fail(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }
}

impl<'a> Visitor<'a> for Writer<'_> {
    fn begin_object(&mut self, _: usize) {
        self.out.push('{');
        self.keys.open();
    }
    fn end_object(&mut self, _: usize) {
        self.out.push('}');
        self.keys.close();
    }
    fn begin_array(&mut self, _: usize) {
        self.error
            .get_or_insert(Error::Shape("array in skeleton".into()));
    }
    fn end_array(&mut self, _: usize) {}
    fn key(&mut self, key: JsonStr<'a>) {
        self.keys.key(key, &mut self.out);
    }
    fn string(&mut self, _: JsonStr<'a>) {
        self.error
            .get_or_insert(Error::Shape("string in skeleton".into()));
    }
    fn number(&mut self, n: JsonNumber<'a>) {
        let code = n.raw().as_bytes()[0];
        let r = if matches!(code, b'0'..=b'3') && n.raw().len() == 1 {
            self.emit_leaf(code)
        } else {
            Err(Error::Shape(format!("bad leaf code {}", n.raw())))
        };
        self.fail(r);
    }
    fn boolean(&mut self, _: bool) {
        self.error
            .get_or_insert(Error::Shape("bool in skeleton".into()));
    }
    fn null(&mut self) {
        self.out.push_str("null");
    }
}

/// The original record of `row` as JSON text.
pub fn rebuild(batch: &RecordBatch, row: usize) -> Result<String> {
    let r = Row { batch, row };
    let shape = r
        .text(model::SHAPE)?
        .ok_or(Error::MissingColumn(model::SHAPE))?;
    let (skeleton, map) = shape.split_once('\t').unwrap_or((&shape, ""));
    let extra = match r.text(model::EXTRA)? {
        Some(t) => Extra::parse(&t)?,
        None => Extra::default(),
    };
    let mut w = Writer {
        row: r,
        cores: parse_core_map(map)?,
        extra,
        out: String::with_capacity(shape.len() * 2),
        keys: KeyPath::default(),
        leaf: 0,
        taken: Vec::new(),
        error: None,
    };
    json::parse(skeleton, &mut w, json::Options::default())
        .map_err(|e| Error::Shape(e.to_string()))?;
    match w.error {
        Some(e) => Err(e),
        None => Ok(w.out),
    }
}

/// Rebuilds every row of a batch.
pub fn rebuild_all(batch: &RecordBatch) -> Result<Vec<String>> {
    (0..batch.num_rows()).map(|i| rebuild(batch, i)).collect()
}
