//! The sqllogictest suite: every `tests/slt/*.slt` file runs against one
//! data directory imported from `testdata/` (styles.ndjson and
//! malformed.ndjson, one append each, logs and rejects).
//!
//! Records of a file run one after another and every failing record is
//! reported (not only the first); the test fails listing them all.
//!
//! What the adapter shows the files:
//! - column types: `I` for integers, `R` for floats and decimals, `T` for
//!   everything else, checked strictly (`query IT` must be an int and a text);
//! - values as `weft_query::format::value` renders them (timestamps as RFC 3339
//!   UTC, binary as hex), with `NULL` for null (and so for a NaN or infinite
//!   float, as in the JSON output) and `(empty)` for the empty string;
//! - the temporary data directory's path replaced by `DATA`, so EXPLAIN output
//!   can be matched exactly, segment file names included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Record, RecordOutput, Runner};
use weft_ingest::{BatchBuilder, FieldRegistry, NormalizerConfig};
use weft_query::{Engine, QueryOptions, format};
use weft_storage::{DataDir, SegmentOptions, Table};

/// 2023-11-14T22:15:00Z: receive time of styles.ndjson (every line has its own time).
const STYLES_OBSERVED_AT: i64 = 1_700_000_100_000_000_000;
/// 2023-11-15T03:13:20.5Z: receive time of malformed.ndjson, five hours
/// after its records, so its line without a usable time and its rejects land
/// in their own hour (segments of date=2023-11-15/hour=03) and pruning shows.
/// The half second makes that segment start off a whole second, which a
/// known bug in pruning.slt needs to show.
const MALFORMED_OBSERVED_AT: i64 = 1_700_018_000_500_000_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Imports one NDJSON file as one batch, framed as `weft import` frames it:
/// a leading UTF-8 BOM dropped, lines split on `\n` with a trailing `\r`
/// removed, blank lines skipped but counted in line numbers.
fn import(data: &DataDir, registry: &Arc<FieldRegistry>, name: &str, observed_at: i64) {
    let bytes = std::fs::read(repo_root().join(name)).unwrap();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut b = BatchBuilder::new(Arc::new(NormalizerConfig::default()), Arc::clone(registry));
    b.set_observed_at(observed_at);
    let source: Arc<str> = Arc::from(name);
    for (i, line) in bytes.split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            b.push_line(&source, i as u64 + 1, line);
        }
    }
    let (logs, rejects) = b.finish();
    if !logs.is_empty() {
        data.append_batches(Table::Logs, &logs, 0).unwrap();
    }
    if let Some(rejects) = rejects {
        data.append(Table::Rejects, &rejects, 0).unwrap();
    }
}

/// The data directory every file runs against.
fn fixture(dir: &Path) {
    let data = DataDir::open_writer(dir, SegmentOptions::default()).unwrap();
    let registry = Arc::new(FieldRegistry::new(1000));
    import(
        &data,
        &registry,
        "testdata/styles.ndjson",
        STYLES_OBSERVED_AT,
    );
    import(
        &data,
        &registry,
        "testdata/malformed.ndjson",
        MALFORMED_OBSERVED_AT,
    );
}

/// One sqllogictest connection: an [`Engine`] over the fixture.
#[derive(Debug)]
struct Weft {
    engine: Arc<Engine>,
    /// The data directory as an absolute path and as DataFusion prints
    /// object-store paths (no leading `/`); both are shown as `DATA`.
    root: [String; 2],
}

impl Weft {
    fn new(engine: Arc<Engine>) -> Self {
        let abs = engine.root().to_string_lossy().into_owned();
        let rel = abs.trim_start_matches('/').to_owned();
        Self {
            engine,
            root: [abs, rel],
        }
    }

    fn render(&self, v: serde_json::Value) -> String {
        match v {
            serde_json::Value::Null => "NULL".to_owned(),
            serde_json::Value::String(s) if s.is_empty() => "(empty)".to_owned(),
            serde_json::Value::String(s) => {
                self.root.iter().fold(s, |s, root| s.replace(root, "DATA"))
            }
            other => other.to_string(),
        }
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Dictionary(_, v) => column_type(v),
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

#[async_trait]
impl AsyncDB for Weft {
    type Error = weft_query::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let out = self.engine.sql(sql, HashMap::new()).await?;
        let types = out
            .schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let mut rows = Vec::with_capacity(out.row_count());
        for batch in &out.batches {
            for r in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| {
                            // Logical nulls: a NullArray (`SELECT NULL`) has no
                            // validity buffer, and format::value renders it as "".
                            if c.logical_nulls().is_some_and(|n| n.is_null(r)) {
                                "NULL".to_owned()
                            } else {
                                self.render(format::value(c, r))
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "weft"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// What became of one file's records.
#[derive(Debug, Default)]
struct Outcome {
    passed: usize,
    /// Records under `skipif weft`: known bugs, see their comments.
    skipped: usize,
    /// One message per failing record, with its file and line.
    failures: Vec<String>,
}

/// Runs every record of one file, going on past failures.
async fn run_file(engine: &Arc<Engine>, path: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    let records = match sqllogictest::parse_file::<DefaultColumnType>(path) {
        Ok(r) => r,
        Err(e) => {
            outcome
                .failures
                .push(format!("{}: cannot parse: {e}", path.display()));
            return outcome;
        }
    };
    let conn_engine = Arc::clone(engine);
    let mut runner = Runner::new(move || {
        let db = Weft::new(Arc::clone(&conn_engine));
        async move { Ok::<_, weft_query::Error>(db) }
    });
    runner.with_column_validator(sqllogictest::strict_column_validator);
    // For `control substitution on`: the data directory, to name its files.
    runner.set_var(
        "WEFT_DATA".to_owned(),
        engine.root().to_string_lossy().into_owned(),
    );
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        let checks = matches!(
            record,
            Record::Query { .. } | Record::Statement { .. } | Record::System { .. }
        );
        match runner.run_async(record).await {
            Ok(RecordOutput::Nothing) if checks => outcome.skipped += 1,
            Ok(_) if checks => outcome.passed += 1,
            Ok(_) => {}
            Err(e) => outcome.failures.push(e.display(false).to_string()),
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    // Fixed parallelism: EXPLAIN's file groups do not depend on the machine.
    let options = QueryOptions {
        target_partitions: 2,
        ..QueryOptions::default()
    };
    let engine = Arc::new(Engine::open(dir.path(), options).unwrap());

    let slt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&slt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", slt_dir.display());

    let mut failures = Vec::new();
    for file in &files {
        let outcome = run_file(&engine, file).await;
        let name = file.file_name().unwrap().to_string_lossy();
        println!(
            "{name}: {} passed, {} failed, {} skipped",
            outcome.passed,
            outcome.failures.len(),
            outcome.skipped
        );
        if outcome.passed + outcome.failures.len() == 0 {
            failures.push(format!("{name}: no record was checked"));
        }
        failures.extend(outcome.failures);
    }
    assert!(
        failures.is_empty(),
        "{} failing record(s):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
