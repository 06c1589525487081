//! The audit trail: one record for every query and trace lookup, over HTTP
//! or the CLI, appended to `<data dir>/audit/audit.ndjson`.
//!
//! A lookup writes twice. [`AuditLog::begin`] appends a `start` record and
//! syncs it to disk *before* the query is planned: when that write fails
//! the query does not run. [`Ticket::finish`] appends the `end` record with
//! the outcome, duration, rows and bytes scanned; a ticket dropped unfinished
//! (a client that hung up mid-stream) ends as `cancelled`. A query whose
//! process died before its end record shows as `incomplete`. Refusals that
//! never reach the engine (a token without the role) are written as one
//! `end` record.
//!
//! Each record is one `write` on a file opened for appending, so the daemon
//! and a CLI on the same directory never interleave within a record; the
//! file is only ever appended to. The `audit` table ([`AuditLog::table`])
//! folds a query's records into one row.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// What a lookup was, as the audit trail shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Entry {
    /// The token that asked, by its public id; `None` with auth off or from
    /// the CLI.
    pub token_id: Option<String>,
    pub tenant: Option<String>,
    /// `POST /v1/query`, `GET /v1/trace`, `cli query`, …
    pub endpoint: String,
    /// The SQL, or the correlation id of a trace lookup.
    pub statement: Option<String>,
    /// Bound parameters, as given.
    pub params: Option<Value>,
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// The statement was refused: not read-only, bad SQL, bad parameters.
    Refused,
    /// The token lacks the role for the endpoint.
    Denied,
    Timeout,
    MemoryLimit,
    /// Our failure.
    Error,
    /// The client went away before the answer was complete.
    Cancelled,
}

impl Outcome {
    /// The outcome a query error stands for.
    pub fn of(e: &Error) -> Self {
        match e {
            Error::Timeout(_) => Outcome::Timeout,
            Error::MemoryLimit { .. } => Outcome::MemoryLimit,
            e if e.is_client_error() => Outcome::Refused,
            _ => Outcome::Error,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Denied => "denied",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One line of the audit file.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    phase: Phase,
    /// Nanoseconds since the Unix epoch.
    time_ns: i64,
    #[serde(flatten)]
    entry: Option<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<End>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Start,
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct End {
    outcome: Outcome,
    duration_ms: f64,
    rows: Option<u64>,
    bytes_scanned: Option<u64>,
    error: Option<String>,
}

/// The append-only audit store of one data directory.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    /// Opened at the first record, so a read-only archive can be opened and
    /// fails only when a query would run unrecorded.
    file: Mutex<Option<File>>,
}

/// Longest statement kept in a record; longer ones are cut (and say so).
pub const MAX_STATEMENT: usize = 64 * 1024;

impl Entry {
    /// Cuts the statement to [`MAX_STATEMENT`] bytes.
    fn capped(mut self) -> Self {
        if let Some(s) = &mut self.statement
            && s.len() > MAX_STATEMENT
        {
            let total = s.len();
            let mut cut = MAX_STATEMENT;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str(&format!("… [cut: {total} bytes in all]"));
        }
        self
    }
}

/// Makes record ids unique within the process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// File name inside the audit directory.
const FILE: &str = "audit.ndjson";

impl AuditLog {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            file: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Appends one record as a single write and syncs it. Every record
    /// starts on a line of its own, even after a write that failed part way.
    fn append(&self, rec: &Record) -> Result<()> {
        let mut line = vec![b'\n'];
        serde_json::to_writer(&mut line, rec).map_err(|e| Error::Internal(e.to_string()))?;
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let unavailable =
            |e: std::io::Error| Error::AuditUnavailable(format!("{}: {e}", self.path().display()));
        if guard.is_none() {
            fs::create_dir_all(&self.dir).map_err(unavailable)?;
            let existed = self.path().exists();
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.path())
                .map_err(unavailable)?;
            if !existed {
                // The new file's name must survive a crash with its records.
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(unavailable)?;
            }
            *guard = Some(f);
        }
        let f = guard.as_mut().expect("opened above");
        // The leading newline is only needed after a torn write; an empty
        // line between records is harmless and keeps the common case one write.
        let r = f.write_all(&line).and_then(|()| f.sync_data());
        if let Err(e) = r {
            // Reopen next time: the file may have been rotated or fixed.
            *guard = None;
            return Err(unavailable(e));
        }
        Ok(())
    }

    /// Records that a lookup is about to run. The caller must not run it
    /// when this fails.
    pub fn begin(self: &Arc<Self>, entry: Entry) -> Result<Ticket> {
        let now = weft_storage::now_nanos();
        let id = format!(
            "{:x}-{:x}-{:x}",
            now,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.append(&Record {
            id: id.clone(),
            phase: Phase::Start,
            time_ns: now,
            entry: Some(entry.capped()),
            end: None,
        })?;
        Ok(Ticket {
            log: Arc::clone(self),
            id,
            started: Instant::now(),
            done: false,
        })
    }

    /// Records a lookup refused before it could start (one `end` record).
    pub fn refused(&self, entry: Entry, outcome: Outcome, error: &str) -> Result<()> {
        let now = weft_storage::now_nanos();
        self.append(&Record {
            id: format!(
                "{now:x}-{:x}-r{:x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            phase: Phase::End,
            time_ns: now,
            entry: Some(entry.capped()),
            end: Some(End {
                outcome,
                duration_ms: 0.0,
                rows: None,
                bytes_scanned: None,
                error: Some(error.to_owned()),
            }),
        })
    }

    /// The `audit` table's schema.
    pub fn schema() -> SchemaRef {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("id", DataType::Utf8, false),
            text("token_id"),
            text("tenant"),
            Field::new("endpoint", DataType::Utf8, false),
            text("statement"),
            text("params"),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("duration_ms", DataType::Float64, true),
            Field::new("rows", DataType::Int64, true),
            Field::new("bytes_scanned", DataType::Int64, true),
            text("error"),
        ]))
    }

    /// Every lookup recorded so far, one row each, oldest first. A start
    /// without an end is `incomplete`; lines that do not parse (a torn
    /// last write) are skipped.
    pub fn table(&self) -> Result<RecordBatch> {
        let text = match fs::read(self.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::AuditUnavailable(format!(
                    "{}: {e}",
                    self.path().display()
                )));
            }
        };
        let mut order: Vec<String> = Vec::new();
        let mut rows: HashMap<String, (i64, Option<Entry>, Option<End>)> = HashMap::new();
        for line in text.split(|b| *b == b'\n') {
            let Ok(rec) = serde_json::from_slice::<Record>(line) else {
                continue;
            };
            let row = rows.entry(rec.id.clone()).or_insert_with(|| {
                order.push(rec.id.clone());
                (rec.time_ns, None, None)
            });
            if let Phase::Start = rec.phase {
                row.0 = rec.time_ns;
            }
            if rec.entry.is_some() && row.1.is_none() {
                row.1 = rec.entry;
            }
            if rec.end.is_some() {
                row.2 = rec.end;
            }
        }
        let n = order.len();
        let mut time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut id = StringBuilder::new();
        let mut token = StringBuilder::new();
        let mut tenant = StringBuilder::new();
        let mut endpoint = StringBuilder::new();
        let mut statement = StringBuilder::new();
        let mut params = StringBuilder::new();
        let mut outcome = StringBuilder::new();
        let mut duration = Float64Builder::new();
        let mut nrows = Int64Builder::new();
        let mut bytes = Int64Builder::new();
        let mut error = StringBuilder::new();
        for key in &order {
            let (t, entry, end) = &rows[key];
            let entry = entry.clone().unwrap_or_default();
            time.append_value(*t);
            id.append_value(key);
            token.append_option(entry.token_id);
            tenant.append_option(entry.tenant);
            endpoint.append_value(entry.endpoint);
            statement.append_option(entry.statement);
            params.append_option(entry.params.map(|p| p.to_string()));
            match end {
                Some(e) => {
                    outcome.append_value(e.outcome.as_str());
                    duration.append_value(e.duration_ms);
                    nrows.append_option(e.rows.map(|r| r as i64));
                    bytes.append_option(e.bytes_scanned.map(|b| b as i64));
                    error.append_option(e.error.as_deref());
                }
                None => {
                    outcome.append_value("incomplete");
                    duration.append_null();
                    nrows.append_null();
                    bytes.append_null();
                    error.append_null();
                }
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(id.finish()),
            Arc::new(token.finish()),
            Arc::new(tenant.finish()),
            Arc::new(endpoint.finish()),
            Arc::new(statement.finish()),
            Arc::new(params.finish()),
            Arc::new(outcome.finish()),
            Arc::new(duration.finish()),
            Arc::new(nrows.finish()),
            Arc::new(bytes.finish()),
            Arc::new(error.finish()),
        ];
        RecordBatch::try_new(Self::schema(), cols).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The `audit` table: reads the file when a query scans it, not when a
/// session is made.
#[derive(Debug)]
pub struct AuditTable(pub Arc<AuditLog>);

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        AuditLog::schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let batch = self
            .0
            .table()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            AuditLog::schema(),
            projection.cloned(),
        )
        .map(|e| e as Arc<dyn datafusion::physical_plan::ExecutionPlan>)
    }
}

/// A lookup under way; [`Ticket::finish`] writes its end record.
#[derive(Debug)]
pub struct Ticket {
    log: Arc<AuditLog>,
    id: String,
    started: Instant,
    done: bool,
}

impl Ticket {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes the end record. A failure here is logged, not returned: the
    /// start record already holds who asked what.
    pub fn finish(
        mut self,
        outcome: Outcome,
        rows: Option<u64>,
        bytes_scanned: Option<u64>,
        error: Option<&str>,
    ) {
        self.done = true;
        self.write_end(outcome, rows, bytes_scanned, error);
    }

    /// Ends the ticket with the outcome of `r`.
    pub fn finish_with<T>(self, r: &Result<T>, rows: Option<u64>, bytes_scanned: Option<u64>) {
        match r {
            Ok(_) => self.finish(Outcome::Ok, rows, bytes_scanned, None),
            Err(e) => self.finish(Outcome::of(e), None, None, Some(&e.to_string())),
        }
    }

    fn write_end(
        &self,
        outcome: Outcome,
        rows: Option<u64>,
        bytes_scanned: Option<u64>,
        error: Option<&str>,
    ) {
        let rec = Record {
            id: self.id.clone(),
            phase: Phase::End,
            time_ns: weft_storage::now_nanos(),
            entry: None,
            end: Some(End {
                outcome,
                duration_ms: self.started.elapsed().as_secs_f64() * 1e3,
                rows,
                bytes_scanned,
                error: error.map(str::to_owned),
            }),
        };
        if let Err(e) = self.log.append(&rec) {
            tracing::error!(error = %e, audit_id = %self.id, "cannot write the audit end record");
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.write_end(Outcome::Cancelled, None, None, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};

    fn entry(sql: &str) -> Entry {
        Entry {
            token_id: Some("t1".into()),
            tenant: Some("acme".into()),
            endpoint: "POST /v1/query".into(),
            statement: Some(sql.into()),
            params: Some(serde_json::json!({"x": 1})),
        }
    }

    #[test]
    fn records_fold_into_one_row_per_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::new(tmp.path().join("audit")));
        let t = log.begin(entry("SELECT 1")).unwrap();
        t.finish(Outcome::Ok, Some(1), Some(10), None);
        let t = log.begin(entry("SELECT 2")).unwrap();
        drop(t);
        let open = log.begin(entry("SELECT 3")).unwrap();
        std::mem::forget(open); // a process that died mid-query
        log.refused(entry("DROP TABLE logs"), Outcome::Denied, "no role")
            .unwrap();
        // A torn write is skipped, and the record after it still counts.
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"id\":\"x\",\"pha").unwrap();
        let long = "x".repeat(MAX_STATEMENT + 10);
        log.refused(entry(&long), Outcome::Refused, "too long")
            .unwrap();

        let b = log.table().unwrap();
        assert_eq!(b.num_rows(), 5);
        let col = |n: &str| Arc::clone(b.column_by_name(n).unwrap());
        let outcome = col("outcome");
        let outcomes: Vec<&str> = (0..5)
            .map(|i| outcome.as_string::<i32>().value(i))
            .collect();
        assert_eq!(
            outcomes,
            ["ok", "cancelled", "incomplete", "denied", "refused"]
        );
        let kept = statements_len(&b, 4);
        assert!(kept < MAX_STATEMENT + 100, "statements are capped: {kept}");
        let statements = col("statement");
        assert_eq!(statements.as_string::<i32>().value(3), "DROP TABLE logs");
        let rows = col("rows");
        let rows = rows.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(rows.value(0), 1);
        assert!(rows.is_null(2));
        assert_eq!(col("tenant").as_string::<i32>().value(0), "acme");
        assert_eq!(col("params").as_string::<i32>().value(0), r#"{"x":1}"#);
    }

    fn statements_len(b: &RecordBatch, row: usize) -> usize {
        let s = b.column_by_name("statement").unwrap();
        let s = s.as_string::<i32>().value(row);
        assert!(s.ends_with(&format!("[cut: {} bytes in all]", MAX_STATEMENT + 10)));
        s.len()
    }

    #[test]
    fn an_unwritable_store_refuses_to_begin() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocked = tmp.path().join("audit");
        fs::write(&blocked, b"").unwrap();
        let log = Arc::new(AuditLog::new(&blocked));
        let e = log.begin(entry("SELECT 1")).unwrap_err();
        assert!(matches!(e, Error::AuditUnavailable(_)), "{e}");
        assert!(matches!(log.table(), Err(Error::AuditUnavailable(_))));
    }
}
