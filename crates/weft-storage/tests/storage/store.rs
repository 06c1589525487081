//! The daemon's write path: acknowledged batches are buffered, flushed into
//! segments exactly once, replayed after a crash, and refused clearly.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weft_ingest::{Defaults, Format, NormalizerConfig};
use weft_storage::store::{IngestError, IngestRequest, Store, StoreOptions, WriteMemory};
use weft_storage::{SegmentOptions, Table};

/// Opens the store. A store dropped just before may still be releasing
/// its lock on its commit thread (it holds the store while it answers the
/// last request), so `Locked` is retried for a moment.
fn open_unreplayed(dir: &Path, options: StoreOptions) -> Arc<Store> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(
            dir,
            SegmentOptions::default(),
            NormalizerConfig::default(),
            options.clone(),
        ) {
            Ok(s) => return s,
            Err(weft_storage::Error::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn open(dir: &Path) -> Arc<Store> {
    open_with(dir, StoreOptions::default())
}

/// Opens the store with `options` and replays its WAL.
fn open_with(dir: &Path, options: StoreOptions) -> Arc<Store> {
    let s = open_unreplayed(dir, options);
    s.replay().unwrap();
    s
}

/// Lines with `seq` from `range`, all in one hour.
fn body(range: std::ops::Range<i64>) -> Vec<u8> {
    let mut out = String::new();
    for i in range {
        out.push_str(&format!(
            "{{\"ts\":\"2024-05-01T10:00:{:02}Z\",\"service\":\"api\",\"message\":\"m{i}\",\"seq\":{i}}}\n",
            i % 60
        ));
    }
    out.into_bytes()
}

fn request(body: Vec<u8>, key: Option<&str>) -> IngestRequest {
    IngestRequest {
        source: "test".into(),
        body,
        format: Format::Ndjson,
        defaults: Defaults::default(),
        idempotency_key: key.map(str::to_owned),
    }
}

fn seqs_of(batch: &RecordBatch, out: &mut BTreeMap<i64, usize>) {
    let col = batch.column_by_name("seq").expect("seq column");
    let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Int64).unwrap();
    let col = col.as_primitive::<Int64Type>();
    for i in 0..col.len() {
        *out.entry(col.value(i)).or_default() += 1;
    }
}

/// Every `seq` a query would see (segments ∪ buffer), with how often.
fn seqs(store: &Store) -> BTreeMap<i64, usize> {
    let snap = store.data().snapshot();
    let mut out = BTreeMap::new();
    for seg in snap.manifest.segments(Table::Logs) {
        let f = File::open(store.data().root().join(&seg.path)).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
        {
            seqs_of(&b.unwrap(), &mut out);
        }
    }
    for b in snap.batches(Table::Logs) {
        seqs_of(b, &mut out);
    }
    out
}

fn assert_exactly(store: &Store, range: std::ops::Range<i64>) {
    let got = seqs(store);
    let want: BTreeMap<i64, usize> = range.map(|i| (i, 1)).collect();
    assert_eq!(got, want);
}

#[test]
fn acknowledged_rows_are_visible_then_flushed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for k in 0..3 {
        let out = store
            .ingest(request(body(k * 10..k * 10 + 10), None))
            .unwrap();
        assert_eq!((out.accepted, out.rejected), (10, 0));
        assert_eq!(out.lsn, k as u64 + 1);
    }
    assert_exactly(&store, 0..30);
    assert_eq!(store.data().manifest().segments.len(), 0);
    let report = store.flush().unwrap().expect("something to flush");
    assert_eq!(report.checkpoint, 3);
    assert_eq!(report.rows, 30);
    assert_eq!(store.data().snapshot().buffered.len(), 0);
    assert_eq!(store.data().manifest().wal_checkpoint, 3);
    assert_exactly(&store, 0..30);
    // The flushed WAL files are gone: only the fresh file's header remains.
    assert!(
        store
            .stats()
            .wal_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            < 64
    );
    assert!(store.flush().unwrap().is_none(), "nothing left to flush");
}

/// A store flushing `flush_bytes` at a time, holding `n` acknowledged
/// batches of ten rows (`seq` 0 to 10 n).
fn with_batches(dir: &Path, flush_bytes: usize, n: i64) -> Arc<Store> {
    let options = StoreOptions {
        flush_bytes,
        ..StoreOptions::default()
    };
    let store = open_with(dir, options);
    for k in 0..n {
        store
            .ingest(request(body(k * 10..k * 10 + 10), None))
            .unwrap();
    }
    store
}

#[test]
fn a_flush_writes_the_buffer_in_parts_of_at_most_flush_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_batches(dir.path(), 1, 4);
    // The hook runs after each part, once its batches have left the buffer.
    let after: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    {
        let after = Arc::clone(&after);
        let data = Arc::clone(store.data());
        store.on_flushed(move || {
            let left = data.snapshot().buffered.len();
            after.lock().unwrap().push(left);
        });
    }
    let report = store.flush().unwrap().expect("something to flush");
    assert_eq!(*after.lock().unwrap(), vec![3, 2, 1, 0]);
    // Each batch is over one byte: one part, one segment (all rows are in
    // one hour) per batch, oldest first, and the checkpoint is the last.
    assert_eq!(report.segments.len(), 4);
    assert_eq!(report.checkpoint, 4);
    assert_eq!(report.rows, 40);
    let ids: Vec<u64> = report.segments.iter().map(|s| s.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(store.data().snapshot().buffered.len(), 0);
    assert_eq!(store.data().manifest().wal_checkpoint, 4);
    assert_exactly(&store, 0..40);
    let flushes = store
        .stats()
        .flushes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(flushes, 4);
}

#[test]
fn a_flush_part_holds_at_most_a_row_group_of_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        SegmentOptions {
            row_group_rows: 25,
            ..SegmentOptions::default()
        },
        NormalizerConfig::default(),
        StoreOptions::default(),
    )
    .unwrap();
    store.replay().unwrap();
    for k in 0..5 {
        store
            .ingest(request(body(k * 10..k * 10 + 10), None))
            .unwrap();
    }
    let after: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    {
        let after = Arc::clone(&after);
        let data = Arc::clone(store.data());
        store.on_flushed(move || after.lock().unwrap().push(data.snapshot().buffered.len()));
    }
    // Far under flush_bytes, but ten-row batches: a part takes two (a third
    // would make 30 rows); of the three left, two would leave ten rows
    // (under half a row group) behind, so the second part takes all three.
    let report = store.flush().unwrap().expect("something to flush");
    assert_eq!(*after.lock().unwrap(), vec![3, 0]);
    assert_eq!(report.segments.len(), 2);
    assert_eq!(report.rows, 50);
    assert_exactly(&store, 0..50);
}

#[test]
fn a_flush_leaves_no_small_tail_of_segments() {
    let dir = tempfile::tempdir().unwrap();
    let per_batch = {
        let store = open(dir.path());
        for k in 0..5 {
            store
                .ingest(request(body(k * 10..k * 10 + 10), None))
                .unwrap();
        }
        store.data().buffer_usage().0 / 5
        // Dropped without a flush: replay brings the same five batches back.
    };
    // Parts of two and a quarter batches: the first takes two; of the
    // three left, two would leave one batch (under half a part) behind, so
    // the second part takes all three.
    let options = StoreOptions {
        flush_bytes: per_batch * 9 / 4,
        ..StoreOptions::default()
    };
    let store = open_unreplayed(dir.path(), options);
    store.replay().unwrap();
    assert_eq!(store.data().snapshot().buffered.len(), 5);
    let report = store.flush().unwrap().expect("something to flush");
    let rows: Vec<u64> = report.segments.iter().map(|s| s.rows).collect();
    assert_eq!(rows, vec![20, 30]);
    assert_exactly(&store, 0..50);
}

#[test]
fn concurrent_flushes_store_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_batches(dir.path(), 1, 20);
    // Four flushes at once over the same twenty batches (bounded: the
    // buffer only shrinks).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| store.flush().unwrap());
        }
    });
    assert_eq!(store.data().snapshot().buffered.len(), 0);
    assert_exactly(&store, 0..200);
}

#[test]
fn a_crash_loses_nothing_acknowledged_and_repeats_nothing_flushed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.ingest(request(body(0..10), None)).unwrap();
        store.ingest(request(body(10..20), None)).unwrap();
        store.flush().unwrap();
        store.ingest(request(body(20..30), None)).unwrap();
        // Dropped without shutdown: the third batch is only in the WAL.
    }
    let store = open_unreplayed(dir.path(), StoreOptions::default());
    assert!(matches!(
        store.ingest(request(body(30..31), None)),
        Err(IngestError::NotReady)
    ));
    let report = store.replay().unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(report.rows, 10);
    assert_exactly(&store, 0..30);
    // New records number past the checkpoint though the flushed WAL files are gone.
    let out = store.ingest(request(body(30..40), None)).unwrap();
    assert!(out.lsn > store.data().manifest().wal_checkpoint);
    drop(store);
    let store = open(dir.path());
    assert_exactly(&store, 0..40);
}

#[test]
fn protocol_bodies_replay_through_their_own_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let bulk = b"{\"index\":{}}\n{\"message\":\"m1\",\"seq\":1}\n{\"delete\":{\"_id\":\"a\"}}\n{\"create\":{\"_index\":\"other\"}}\n{\"message\":\"m2\",\"seq\":2}\n";
    let loki = br#"{"streams":[{"stream":{"job":"cron"},"values":[["1714557600000000000","{\"seq\":3}"]]}]}"#;
    let mut answers = Vec::new();
    {
        let store = open(dir.path());
        for (format, body) in [
            (
                Format::EsBulk {
                    index: Some("app".into()),
                },
                &bulk[..],
            ),
            (Format::LokiJson, &loki[..]),
        ] {
            let out = store
                .ingest(IngestRequest {
                    format,
                    ..request(body.to_vec(), None)
                })
                .unwrap();
            answers.push((out.accepted, out.rejected, out.items.len()));
        }
        // Dropped unflushed: both requests are only in the WAL.
    }
    assert_eq!(answers, vec![(2, 1, 3), (1, 0, 0)]);
    let store = open(dir.path());
    assert_exactly(&store, 1..4);
    let snap = store.data().snapshot();
    let logs = snap.batches(Table::Logs).collect::<Vec<_>>();
    let indexes: Vec<String> = logs
        .iter()
        .filter_map(|b| b.column_by_name("_index"))
        .flat_map(|c| {
            let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
            let c = c.as_string::<i32>();
            (0..c.len())
                .map(|i| c.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(indexes, vec!["app", "other"]);
    let rejects: usize = snap.batches(Table::Rejects).map(|b| b.num_rows()).sum();
    assert_eq!(rejects, 1, "the unsupported delete is kept");
}

#[test]
fn an_idempotency_key_names_one_body_of_one_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let body = b"{\"index\":{}}\n{\"message\":\"m\",\"seq\":1}\n".to_vec();
    let bulk = |index: &str| IngestRequest {
        format: Format::EsBulk {
            index: Some(index.into()),
        },
        ..request(body.clone(), Some("k1"))
    };
    assert!(!store.ingest(bulk("a")).unwrap().duplicate);
    assert!(store.ingest(bulk("a")).unwrap().duplicate);
    // The same bytes for another index, or as NDJSON, are another request.
    assert!(matches!(
        store.ingest(bulk("b")),
        Err(IngestError::KeyReused(_))
    ));
    assert!(matches!(
        store.ingest(request(body.clone(), Some("k1"))),
        Err(IngestError::KeyReused(_))
    ));
    assert_exactly(&store, 1..2);
}

#[test]
fn a_retried_idempotency_key_is_stored_once_across_flush_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let first = store.ingest(request(body(0..10), Some("k1"))).unwrap();
        let again = store.ingest(request(body(0..10), Some("k1"))).unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!((again.lsn, again.accepted), (first.lsn, 10));
        assert!(matches!(
            store.ingest(request(body(5..6), Some("k1"))),
            Err(IngestError::KeyReused(k)) if k == "k1"
        ));
        store.flush().unwrap();
        store.ingest(request(body(10..20), Some("k2"))).unwrap();
    }
    // k1 is remembered from the keys file, k2 from the WAL.
    let store = open(dir.path());
    assert!(
        store
            .ingest(request(body(0..10), Some("k1")))
            .unwrap()
            .duplicate
    );
    assert!(
        store
            .ingest(request(body(10..20), Some("k2")))
            .unwrap()
            .duplicate
    );
    assert_exactly(&store, 0..20);
}

#[test]
fn bad_lines_get_reasons_and_go_to_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = body(0..2);
    b.extend_from_slice(b"not json\n[1,2]\n");
    let out = store.ingest(request(b, None)).unwrap();
    assert_eq!((out.accepted, out.rejected), (2, 2));
    let lines: Vec<u64> = out.errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![3, 4]);
    let snap = store.data().snapshot();
    let rejects: usize = snap.batches(Table::Rejects).map(|b| b.num_rows()).sum();
    assert_eq!(rejects, 2);
    store.flush().unwrap();
    assert_eq!(
        store
            .data()
            .manifest()
            .segments(Table::Rejects)
            .map(|s| s.rows)
            .sum::<u64>(),
        2
    );
}

#[test]
fn a_full_buffer_refuses_without_storing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreOptions {
            max_buffer_bytes: 1,
            ..StoreOptions::default()
        },
    );
    store.ingest(request(body(0..10), None)).unwrap();
    match store.ingest(request(body(10..20), None)) {
        Err(IngestError::Overloaded { bytes }) => assert!(bytes > 0),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_exactly(&store, 0..10);
    store.flush().unwrap();
    store.ingest(request(body(10..20), None)).unwrap();
    assert_exactly(&store, 0..20);
}

#[test]
fn the_resident_cap_refuses_and_flushes_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CAP: usize = 100 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = open_unreplayed(
        dir.path(),
        StoreOptions {
            max_resident_bytes: CAP,
            // Neither size nor age would flush during the test.
            flush_age_secs: 3600.0,
            ..StoreOptions::default()
        },
    );
    let resident = Arc::new(AtomicUsize::new(10 << 20));
    let probe = Arc::clone(&resident);
    store.set_resident_probe(move || probe.load(Ordering::Relaxed));
    store.replay().unwrap();
    store.ingest(request(body(0..10), None)).unwrap();
    store.ingest(request(body(10..20), None)).unwrap();

    // The process is a little under its cap: a request whose batches
    // would take it past is refused, and nothing of it is kept.
    resident.store(CAP - 1000, Ordering::Relaxed);
    match store.ingest(request(body(20..30), None)) {
        Err(e @ IngestError::MemoryFull { resident, cap }) => {
            assert_eq!((resident, cap), (CAP - 1000, CAP));
            assert!(e.to_string().starts_with("memory full"), "{e}");
        }
        other => panic!("expected MemoryFull, got {other:?}"),
    }
    assert_exactly(&store, 0..20);

    // The refusal asked for a flush: the flusher writes the buffer out
    // though it is neither big nor old.
    store.start_flusher();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.write_memory() != WriteMemory::default() {
        assert!(std::time::Instant::now() < deadline, "no flush");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let flushed: u64 = store
        .data()
        .manifest()
        .segments(Table::Logs)
        .map(|s| s.rows)
        .sum();
    assert_eq!(flushed, 20);
    // With nothing held, refusing would free nothing: the request goes
    // ahead though the process is still near its cap.
    store.ingest(request(body(20..30), None)).unwrap();
    assert_exactly(&store, 0..30);
    store.shutdown().unwrap();
}

#[test]
fn a_resident_cap_of_zero_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_unreplayed(
        dir.path(),
        StoreOptions {
            max_resident_bytes: 0,
            ..StoreOptions::default()
        },
    );
    store.set_resident_probe(|| usize::MAX);
    store.replay().unwrap();
    store.ingest(request(body(0..10), None)).unwrap();
    store.ingest(request(body(10..20), None)).unwrap();
    assert_exactly(&store, 0..20);
}

#[test]
fn the_cap_counts_a_request_before_its_batches_are_built() {
    // One request's batches, measured on a store of its own.
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = open(probe_dir.path());
    probe.ingest(request(body(0..200), None)).unwrap();
    let one = probe.write_memory();
    assert!(one.buffered > 0);
    assert_eq!(
        (one.decoding, one.flushing),
        (0, 0),
        "given back once buffered"
    );
    probe.flush().unwrap();
    assert_eq!(probe.write_memory(), WriteMemory::default());

    // A cap with room for one such request and a quarter.
    let dir = tempfile::tempdir().unwrap();
    let store = open_unreplayed(
        dir.path(),
        StoreOptions {
            max_buffer_bytes: one.buffered + one.buffered / 4,
            ..StoreOptions::default()
        },
    );
    store.replay().unwrap();
    store.ingest(request(body(0..200), None)).unwrap();
    assert_eq!(store.write_memory(), one);
    // Under the cap, but not with the next request's batches: refused
    // before they are built, and nothing of it is kept.
    match store.ingest(request(body(201..400), Some("k"))) {
        Err(IngestError::Overloaded { bytes }) => assert_eq!(bytes, one.buffered),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_eq!(store.write_memory(), one);
    assert_exactly(&store, 0..200);
    // A small request still fits.
    store.ingest(request(body(200..201), None)).unwrap();
    assert_exactly(&store, 0..201);
    // Once flushed, the refused request (same key) is taken.
    store.flush().unwrap();
    store.ingest(request(body(201..400), Some("k"))).unwrap();
    assert_exactly(&store, 0..400);
    assert_eq!(store.write_memory().decoding, 0);
}

#[test]
fn concurrent_requests_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    std::thread::scope(|s| {
        for t in 0..8i64 {
            let store = &store;
            s.spawn(move || {
                for k in 0..10 {
                    let start = (t * 10 + k) * 5;
                    store.ingest(request(body(start..start + 5), None)).unwrap();
                }
            });
        }
    });
    assert_exactly(&store, 0..400);
    let st = store.stats();
    let appends = st.wal_appends.load(std::sync::atomic::Ordering::Relaxed);
    let fsyncs = st.wal_fsyncs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(appends, 80);
    assert!(
        fsyncs >= 1 && fsyncs <= appends,
        "{fsyncs} fsyncs for {appends} appends"
    );
    eprintln!("group commit: {appends} records in {fsyncs} fsyncs");
    store.shutdown().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_exactly(&store, 0..400);
    assert_eq!(
        store.data().snapshot().buffered.len(),
        0,
        "shutdown flushed"
    );
}

/// Lines in hour `hour` of 2024-05-01, with `seq` from `range`, a
/// correlation id per line, and a field `x` that is a number in even
/// batches and text in odd ones (so a merge must widen it).
fn traced(hour: u32, range: std::ops::Range<i64>, x_text: bool) -> Vec<u8> {
    let mut out = String::new();
    for i in range {
        let x = if x_text {
            format!("\"t{i}\"")
        } else {
            i.to_string()
        };
        out.push_str(&format!(
            "{{\"ts\":\"2024-05-01T{hour:02}:00:{:02}Z\",\"service\":\"s{}\",\"message\":\"m{i}\",\"request_id\":\"req-{i}\",\"x\":{x},\"seq\":{i}}}\n",
            i % 60,
            i % 3
        ));
    }
    out.into_bytes()
}

#[test]
fn small_segments_of_an_hour_are_merged_into_one_and_their_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_min_segments: 3,
        ..StoreOptions::default()
    };
    let store = open_with(dir.path(), options.clone());
    // Four flushes in hour 10, two in hour 11: one segment each.
    for (k, hour) in [(0, 10), (1, 10), (2, 11), (3, 10), (4, 11), (5, 10)] {
        let body = traced(hour, k * 10..k * 10 + 10, k % 2 == 1);
        store.ingest(request(body, None)).unwrap();
        store.flush().unwrap().expect("something to flush");
    }
    let before = store.data().manifest();
    assert_eq!(before.segments(Table::Logs).count(), 6);
    let hour10: Vec<_> = before
        .segments(Table::Logs)
        .filter(|s| s.path.contains("hour=10"))
        .cloned()
        .collect();
    assert_eq!(hour10.len(), 4);

    let report = store
        .compact()
        .unwrap()
        .expect("hour 10 has four small segments");
    let mut merged: Vec<u64> = report.merged.iter().map(|s| s.id).collect();
    merged.sort_unstable();
    assert_eq!(merged, hour10.iter().map(|s| s.id).collect::<Vec<_>>());
    assert_eq!(report.written.len(), 1);
    let new = &report.written[0];
    assert_eq!(new.rows, 40);
    assert!(new.path.contains("hour=10"), "{}", new.path);
    assert_eq!(
        new.input_bytes,
        hour10.iter().map(|s| s.input_bytes).sum::<u64>()
    );
    // `x` was a number in some segments and text in others: text now.
    assert!(
        new.columns
            .iter()
            .any(|(n, t)| n == "x" && *t == weft_storage::ColumnType::Utf8),
        "{:?}",
        new.columns
    );

    // The manifest lists the merged segment instead of the four; every row
    // is there once.
    let after = store.data().manifest();
    assert_eq!(after.segments(Table::Logs).count(), 3);
    assert!(after.segments(Table::Logs).all(|s| !merged.contains(&s.id)));
    assert_exactly(&store, 0..60);

    // The merged segment's rows are sorted for trace lookup, and its id
    // index finds each request's row.
    let index = weft_storage::idindex::IdIndex::read(
        &dir.path()
            .join(new.id_index.as_ref().expect("logs have an id index")),
    )
    .unwrap();
    let f = File::open(dir.path().join(&new.path)).unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let ids = arrow::compute::cast(
        all.column_by_name("correlation_id").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let ids = ids.as_string::<i32>();
    // Seqs from each of the four merged batches (0, 1, 3 and 5).
    for seq in [0, 13, 35, 59] {
        let id = format!("req-{seq}");
        let runs = index
            .runs(&id)
            .unwrap_or_else(|| panic!("{id} not indexed"));
        let rows: Vec<usize> = runs.iter().flat_map(|r| r.rows()).collect();
        assert_eq!(rows.len(), 1, "{id}: {rows:?}");
        assert_eq!(ids.value(rows[0]), id);
    }

    // Old files stay for queries planned before the merge, until the grace
    // period ends; then they go.
    let old_files: Vec<std::path::PathBuf> = hour10
        .iter()
        .flat_map(|s| std::iter::once(&s.path).chain(s.id_index.as_ref()))
        .map(|p| dir.path().join(p))
        .collect();
    assert_eq!(old_files.len(), 8);
    assert!(old_files.iter().all(|p| p.exists()));
    assert_eq!(store.data().remove_retired(std::time::Duration::ZERO), 8);
    assert!(old_files.iter().all(|p| !p.exists()));

    // Hour 11 has two small segments, under the threshold of three.
    assert!(store.compact().unwrap().is_none());
    let stats = store.stats();
    assert_eq!(
        stats.compactions.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        stats
            .compacted_segments
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );

    // A restart reads the same segments and rows.
    drop(store);
    let store = open_with(dir.path(), options);
    assert_eq!(store.data().manifest().segments(Table::Logs).count(), 3);
    assert_exactly(&store, 0..60);
}

#[test]
fn compaction_is_off_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreOptions {
            compact_min_segments: 0,
            ..StoreOptions::default()
        },
    );
    for k in 0..10 {
        store
            .ingest(request(body(k * 10..k * 10 + 10), None))
            .unwrap();
        store.flush().unwrap();
    }
    assert!(store.compact().unwrap().is_none());
    assert_eq!(store.data().manifest().segments(Table::Logs).count(), 10);
}
