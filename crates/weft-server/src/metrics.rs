//! `GET /metrics`: the server's own counters and the store's, in the
//! Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use weft_storage::store::{FSYNC_BUCKETS, IngestOutcome, Store};
use weft_storage::{Manifest, Table};

use crate::AppState;

/// Counters kept by the handlers.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) queries_ok: AtomicU64,
    pub(crate) queries_client_error: AtomicU64,
    pub(crate) queries_server_error: AtomicU64,
    pub(crate) query_micros: AtomicU64,
    pub(crate) traces: AtomicU64,
    /// Requests refused 401 (no good token) and 403 (role or tenant).
    pub(crate) unauthorized: AtomicU64,
    pub(crate) forbidden: AtomicU64,
    /// Request bytes being read or stored now.
    pub(crate) inflight_bytes: AtomicU64,
    /// Request bytes as received (before decompression).
    pub(crate) ingest_wire_bytes: AtomicU64,
    /// `(source, outcome)` → requests.
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// `(source, outcome)` → lines, where outcome is accepted or rejected.
    lines: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// source → bytes of lines stored (decompressed).
    bytes: Mutex<BTreeMap<&'static str, u64>>,
    /// reject reason label → lines.
    reasons: Mutex<BTreeMap<String, u64>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K, n: u64) {
    *m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(k)
        .or_default() += n;
}

impl Metrics {
    pub(crate) fn count_request(&self, source: &'static str, outcome: &'static str) {
        bump(&self.requests, (source, outcome), 1);
    }

    pub(crate) fn count_outcome(&self, source: &'static str, o: &IngestOutcome) {
        if o.duplicate {
            return;
        }
        bump(&self.lines, (source, "accepted"), o.accepted);
        bump(&self.lines, (source, "rejected"), o.rejected);
        for (label, n) in &o.reasons {
            bump(&self.reasons, label.clone(), *n);
        }
    }

    pub(crate) fn count_bytes(&self, source: &'static str, n: u64) {
        bump(&self.bytes, source, n);
    }
}

/// Prometheus text, one family at a time.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{labels} {v}");
    }

    fn one(&mut self, name: &str, help: &str, kind: &str, v: impl std::fmt::Display) {
        self.family(name, help, kind);
        self.sample(name, "", v);
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn snapshot<K: Clone + Ord, V: Copy>(m: &Mutex<BTreeMap<K, V>>) -> Vec<(K, V)> {
    m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    let mut t = Text(String::new());
    t.family(
        "weft_queries_total",
        "SQL queries answered, by outcome.",
        "counter",
    );
    t.sample(
        "weft_queries_total",
        "{outcome=\"ok\"}",
        load(&m.queries_ok),
    );
    t.sample(
        "weft_queries_total",
        "{outcome=\"client_error\"}",
        load(&m.queries_client_error),
    );
    t.sample(
        "weft_queries_total",
        "{outcome=\"server_error\"}",
        load(&m.queries_server_error),
    );
    t.one(
        "weft_query_duration_seconds_total",
        "Time spent in successful queries.",
        "counter",
        load(&m.query_micros) as f64 / 1e6,
    );
    t.one(
        "weft_trace_lookups_total",
        "Trace lookups by correlation id.",
        "counter",
        load(&m.traces),
    );
    t.family(
        "weft_auth_refused_total",
        "Requests refused: 401 without a good token, 403 outside the token's role or tenant.",
        "counter",
    );
    t.sample(
        "weft_auth_refused_total",
        "{status=\"401\"}",
        load(&m.unauthorized),
    );
    t.sample(
        "weft_auth_refused_total",
        "{status=\"403\"}",
        load(&m.forbidden),
    );

    t.family(
        "weft_ingest_requests_total",
        "Ingest requests, by source protocol and outcome.",
        "counter",
    );
    for ((source, outcome), n) in snapshot(&m.requests) {
        t.sample(
            "weft_ingest_requests_total",
            &format!("{{source=\"{source}\",outcome=\"{outcome}\"}}"),
            n,
        );
    }
    t.family(
        "weft_ingest_lines_total",
        "Lines ingested, by source protocol and outcome.",
        "counter",
    );
    for ((source, outcome), n) in snapshot(&m.lines) {
        t.sample(
            "weft_ingest_lines_total",
            &format!("{{source=\"{source}\",outcome=\"{outcome}\"}}"),
            n,
        );
    }
    t.family(
        "weft_ingest_bytes_total",
        "Bytes of lines stored (decompressed), by source protocol.",
        "counter",
    );
    for (source, n) in snapshot(&m.bytes) {
        t.sample(
            "weft_ingest_bytes_total",
            &format!("{{source=\"{source}\"}}"),
            n,
        );
    }
    t.one(
        "weft_ingest_wire_bytes_total",
        "Ingest request bytes as received, before decompression.",
        "counter",
        load(&m.ingest_wire_bytes),
    );
    t.one(
        "weft_ingest_inflight_bytes",
        "Request bytes being read or stored now.",
        "gauge",
        load(&m.inflight_bytes),
    );
    t.one(
        "weft_process_resident_bytes",
        "Resident memory of the whole process, as the kernel counts it (what the resident cap checks).",
        "gauge",
        weft_storage::resident::resident_bytes() as u64,
    );
    t.family(
        "weft_rejects_total",
        "Lines rejected, by reason.",
        "counter",
    );
    for (reason, n) in snapshot(&m.reasons) {
        t.sample("weft_rejects_total", &format!("{{reason=\"{reason}\"}}"), n);
    }

    // The store's own signals, one series per tenant.
    let stores: Vec<(&str, &Arc<Store>)> = state
        .tenants()
        .filter_map(|(id, t)| Some((id, t.store.as_ref()?)))
        .collect();
    store_metrics(&mut t, &stores);
    let manifests: Vec<(&str, Manifest)> = state
        .tenants()
        .map(|(id, t)| {
            let m = match &t.store {
                Some(store) => store.data().manifest(),
                None => Manifest::load(t.engine.root()).unwrap_or_default(),
            };
            (id, m)
        })
        .collect();
    for (name, help) in [
        ("weft_segments", "Published segments."),
        ("weft_segment_bytes", "Bytes in published segments."),
        ("weft_segment_rows", "Rows in published segments."),
    ] {
        t.family(name, help, "gauge");
        for (tenant, manifest) in &manifests {
            for table in [Table::Logs, Table::Rejects] {
                let segs: Vec<_> = manifest.segments(table).collect();
                let v: u64 = match name {
                    "weft_segments" => segs.len() as u64,
                    "weft_segment_bytes" => segs.iter().map(|s| s.bytes).sum(),
                    _ => segs.iter().map(|s| s.rows).sum(),
                };
                t.sample(
                    name,
                    &format!("{{tenant=\"{tenant}\",table=\"{}\"}}", table.name()),
                    v,
                );
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], t.0).into_response()
}

/// One gauge or counter with a series per tenant's store.
fn per_store(
    t: &mut Text,
    stores: &[(&str, &Arc<Store>)],
    (name, help, kind): (&str, &str, &str),
    value: impl Fn(&Store) -> f64,
) {
    t.family(name, help, kind);
    for (tenant, store) in stores {
        t.sample(name, &format!("{{tenant=\"{tenant}\"}}"), value(store));
    }
}

fn store_metrics(t: &mut Text, stores: &[(&str, &Arc<Store>)]) {
    let stat = |f: fn(&weft_storage::store::StoreStats) -> &AtomicU64| {
        move |s: &Store| load(f(s.stats())) as f64
    };
    per_store(
        t,
        stores,
        (
            "weft_ready",
            "1 once the WAL is replayed and writes are taken.",
            "gauge",
        ),
        |s| f64::from(u8::from(s.is_ready())),
    );
    per_store(
        t,
        stores,
        ("weft_wal_bytes", "Bytes in live WAL files.", "gauge"),
        stat(|s| &s.wal_bytes),
    );
    per_store(
        t,
        stores,
        (
            "weft_wal_records_total",
            "Records appended to the WAL.",
            "counter",
        ),
        stat(|s| &s.wal_appends),
    );
    t.family(
        "weft_wal_fsync_seconds",
        "WAL fsync latency (one fsync per group commit).",
        "histogram",
    );
    for (tenant, store) in stores {
        let s = store.stats();
        let mut cumulative = 0;
        for (bound, n) in FSYNC_BUCKETS.iter().zip(&s.wal_fsync_buckets) {
            cumulative += load(n);
            t.sample(
                "weft_wal_fsync_seconds_bucket",
                &format!("{{tenant=\"{tenant}\",le=\"{bound}\"}}"),
                cumulative,
            );
        }
        t.sample(
            "weft_wal_fsync_seconds_bucket",
            &format!("{{tenant=\"{tenant}\",le=\"+Inf\"}}"),
            load(&s.wal_fsyncs),
        );
        let label = format!("{{tenant=\"{tenant}\"}}");
        t.sample(
            "weft_wal_fsync_seconds_sum",
            &label,
            load(&s.wal_fsync_micros) as f64 / 1e6,
        );
        t.sample("weft_wal_fsync_seconds_count", &label, load(&s.wal_fsyncs));
    }
    per_store(
        t,
        stores,
        (
            "weft_wal_truncated_bytes_total",
            "Torn-tail bytes cut from the WAL at start.",
            "counter",
        ),
        stat(|s| &s.wal_truncated_bytes),
    );
    per_store(
        t,
        stores,
        (
            "weft_wal_quarantined_files_total",
            "WAL files found corrupt at start and quarantined.",
            "counter",
        ),
        stat(|s| &s.wal_quarantined_files),
    );
    per_store(
        t,
        stores,
        (
            "weft_wal_replayed_records_total",
            "WAL records put back into the buffer at start.",
            "counter",
        ),
        stat(|s| &s.wal_replayed_records),
    );
    per_store(
        t,
        stores,
        (
            "weft_buffer_bytes",
            "Arrow memory held by the write buffer.",
            "gauge",
        ),
        |s| s.data().buffer_usage().0 as f64,
    );
    per_store(
        t,
        stores,
        (
            "weft_decoding_bytes",
            "Memory reserved for the batches of requests being normalized or waiting for their fsync.",
            "gauge",
        ),
        |s| s.write_memory().decoding as f64,
    );
    per_store(
        t,
        stores,
        (
            "weft_flush_memory_bytes",
            "Memory a running flush holds beyond the buffered batches it writes.",
            "gauge",
        ),
        |s| s.write_memory().flushing as f64,
    );
    per_store(
        t,
        stores,
        (
            "weft_flushes_total",
            "Buffer flushes to segments (each part of a flush counts once).",
            "counter",
        ),
        stat(|s| &s.flushes),
    );
    per_store(
        t,
        stores,
        (
            "weft_flush_errors_total",
            "Flushes that failed (rows stay buffered).",
            "counter",
        ),
        stat(|s| &s.flush_errors),
    );
    per_store(
        t,
        stores,
        (
            "weft_flush_duration_seconds_total",
            "Time spent flushing.",
            "counter",
        ),
        |s| load(&s.stats().flush_micros) as f64 / 1e6,
    );
    per_store(
        t,
        stores,
        (
            "weft_flushed_rows_total",
            "Rows written to segments by flushes.",
            "counter",
        ),
        stat(|s| &s.flushed_rows),
    );
    for (name, help, field) in [
        (
            "weft_compactions_total",
            "Merges of small segments into one.",
            stat(|s| &s.compactions),
        ),
        (
            "weft_compacted_segments_total",
            "Small segments merged away by compactions.",
            stat(|s| &s.compacted_segments),
        ),
        (
            "weft_compaction_errors_total",
            "Compactions that failed (the segments stay as they were).",
            stat(|s| &s.compaction_errors),
        ),
    ] {
        per_store(t, stores, (name, help, "counter"), field);
    }
}
