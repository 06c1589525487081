//! Segments on disk: what is published, how it is laid out and sorted, and
//! that every record still rebuilds after the Parquet round trip.

use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use weft_ingest::rebuild::rebuild;
use weft_ingest::{BatchBuilder, FieldRegistry, NormalizerConfig, model};
use weft_storage::{DataDir, Error, SegmentOptions, Table};

fn batch(lines: &[String]) -> (Vec<RecordBatch>, Option<RecordBatch>) {
    let mut b = BatchBuilder::new(
        Arc::new(NormalizerConfig::default()),
        Arc::new(FieldRegistry::new(1000)),
    );
    b.set_observed_at(1_700_000_000_000_000_000);
    let src: Arc<str> = Arc::from("t");
    for (i, l) in lines.iter().enumerate() {
        b.push_line(&src, i as u64 + 1, l.as_bytes());
    }
    let (logs, rejects) = b.finish();
    (logs, rejects)
}

fn read(path: &std::path::Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn lines() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..300 {
        let svc = ["api", "db", "web"][i % 3];
        // Three hours: 22:xx, 23:xx on the 14th, 00:xx on the 15th.
        let hour = i / 100;
        let ts = format!("2023-11-14T{:02}:10:{:02}Z", 22 + hour, i % 60).replace("T24", "T00");
        let ts = if hour == 2 {
            ts.replace("2023-11-14", "2023-11-15")
        } else {
            ts
        };
        let id = if i % 7 == 0 {
            String::new()
        } else {
            format!(",\"trace_id\":\"id-{:03}\"", i % 40)
        };
        out.push(format!(
            r#"{{"ts":"{ts}","service":"{svc}","msg":"line {i} caf\u00e9","n":{i}{id}}}"#
        ));
    }
    out
}

#[test]
fn segments_are_partitioned_by_hour_sorted_and_published_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open_writer(dir.path(), SegmentOptions::default()).unwrap();
    let input = lines();
    let (logs, _) = batch(&input);
    let metas = data.append_batches(Table::Logs, &logs, 12_345).unwrap();
    assert_eq!(metas.len(), 3, "one segment per hour");
    let paths: Vec<&str> = metas.iter().map(|m| m.path.as_str()).collect();
    assert!(
        paths[0].starts_with("segments/date=2023-11-14/hour=22/"),
        "{paths:?}"
    );
    assert!(
        paths[1].starts_with("segments/date=2023-11-14/hour=23/"),
        "{paths:?}"
    );
    assert!(
        paths[2].starts_with("segments/date=2023-11-15/hour=00/"),
        "{paths:?}"
    );
    assert_eq!(metas.iter().map(|m| m.rows).sum::<u64>(), 300);

    // A reader sees exactly what the writer published.
    let reader = DataDir::open_reader(dir.path()).unwrap();
    assert_eq!(reader.manifest().segments, metas);

    let mut rebuilt = Vec::new();
    for m in &metas {
        let path = data.path_of(m);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), m.bytes);
        let b = read(&path);
        assert_eq!(b.num_rows() as u64, m.rows);
        // Sorted by service, then correlation_id (nulls last), then timestamp.
        let svc = arrow::compute::cast(
            b.column_by_name("service").unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let svc = svc.as_string::<i32>();
        let id = b
            .column_by_name("correlation_id")
            .unwrap()
            .as_string::<i32>();
        for r in 1..b.num_rows() {
            let a = (svc.value(r - 1), id.is_null(r - 1), id.value(r - 1));
            let c = (svc.value(r), id.is_null(r), id.value(r));
            assert!(a <= c, "row {r}: {a:?} > {c:?}");
        }
        let ts = b
            .column_by_name(model::TIMESTAMP)
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(arrow::compute::min(ts), Some(m.min_ts));
        assert_eq!(arrow::compute::max(ts), Some(m.max_ts));
        // The bloom filter on correlation_id is there.
        let file = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let md = file.metadata();
        let id_col = md
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "correlation_id")
            .unwrap();
        for rg in md.row_groups() {
            assert!(rg.column(id_col).bloom_filter_offset().is_some());
            assert!(
                rg.column(id_col).column_index_offset().is_some(),
                "page index written"
            );
        }
        // The id index holds exactly the segment's ids.
        let ids =
            weft_storage::idindex::IdIndex::read(&dir.path().join(m.id_index.as_ref().unwrap()))
                .unwrap();
        let distinct: std::collections::HashSet<&str> = id.iter().flatten().collect();
        assert_eq!(ids.len(), distinct.len());
        assert!(distinct.iter().all(|i| ids.may_contain(i)));
        assert!(!ids.may_contain("id-999"));
        // …and names exactly the rows holding each one.
        for want in &distinct {
            let mut named: Vec<usize> = ids
                .runs(want)
                .expect("rows known")
                .iter()
                .flat_map(|r| r.rows())
                .collect();
            named.sort_unstable();
            let held: Vec<usize> = (0..b.num_rows())
                .filter(|&r| id.is_valid(r) && id.value(r) == *want)
                .collect();
            assert_eq!(named, held, "rows of {want}");
        }
        for r in 0..b.num_rows() {
            rebuilt.push(rebuild(&b, r).unwrap());
        }
    }
    // Every record comes back, exactly once.
    let mut want: Vec<serde_json::Value> = input
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut got: Vec<serde_json::Value> = rebuilt
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let key = |v: &serde_json::Value| v["n"].as_i64().unwrap();
    want.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, want);
}

#[test]
fn rejects_go_to_their_own_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open_writer(dir.path(), SegmentOptions::default()).unwrap();
    let (_, rejects) = batch(&["{\"ok\":1}".into(), "not json".into()]);
    let metas = data.append(Table::Rejects, &rejects.unwrap(), 9).unwrap();
    assert_eq!(metas.len(), 1);
    assert!(
        metas[0]
            .path
            .starts_with("rejects/date=2023-11-14/hour=22/")
    );
    let b = read(&data.path_of(&metas[0]));
    assert_eq!(
        b.column_by_name("raw").unwrap().as_binary::<i32>().value(0),
        b"not json"
    );
}

/// A reader follows the writer's publishes: `reload` picks up each new
/// manifest (an empty directory's included) and keeps an unchanged one.
#[test]
fn readers_reload_only_a_changed_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open_writer(dir.path(), SegmentOptions::default()).unwrap();
    let reader = DataDir::open_reader(dir.path()).unwrap();
    assert!(reader.manifest().segments.is_empty());
    let (logs, _) = batch(&lines()[..10]);
    let first = data.append_batches(Table::Logs, &logs, 0).unwrap();
    reader.reload().unwrap();
    assert_eq!(reader.manifest().segments, first);
    reader.reload().unwrap();
    assert_eq!(reader.manifest().segments, first, "unchanged manifest kept");
    // Published twice in quick succession: each one is seen.
    for _ in 0..3 {
        let more = data.append_batches(Table::Logs, &logs, 0).unwrap();
        reader.reload().unwrap();
        assert_eq!(reader.manifest().segments, data.manifest().segments);
        assert!(more.iter().all(|m| reader.manifest().segments.contains(m)));
    }
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _w = DataDir::open_writer(dir.path(), SegmentOptions::default()).unwrap();
    match DataDir::open_writer(dir.path(), SegmentOptions::default()) {
        Err(Error::Locked(p)) => assert_eq!(p, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Readers need no lock.
    assert!(DataDir::open_reader(dir.path()).is_ok());
}

#[test]
fn unpublished_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let data = DataDir::open_writer(dir.path(), SegmentOptions::default()).unwrap();
        let (logs, _) = batch(&lines()[..10]);
        data.append_batches(Table::Logs, &logs, 1).unwrap();
    }
    // A crash between the segment rename and the manifest update leaves a file
    // the manifest does not list, and a crash mid-write leaves a temp file.
    let part = dir.path().join("segments/date=2023-11-14/hour=22");
    std::fs::write(part.join("000000000099.parquet"), b"orphan").unwrap();
    std::fs::write(part.join(".000000000100.parquet.tmp"), b"half").unwrap();
    let data = DataDir::open_writer(dir.path(), SegmentOptions::default()).unwrap();
    assert!(!part.join("000000000099.parquet").exists());
    assert!(!part.join(".000000000100.parquet.tmp").exists());
    let m = data.manifest();
    assert_eq!(m.segments.len(), 1);
    assert!(
        data.path_of(&m.segments[0]).exists(),
        "published segment kept"
    );
}

#[test]
fn reader_of_missing_dir_is_a_clear_error() {
    let e = DataDir::open_reader(std::path::Path::new("/nonexistent/weft")).unwrap_err();
    assert_eq!(e.to_string(), "no data directory at /nonexistent/weft");
}
