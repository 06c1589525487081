//! The daemon's write path: WAL → write buffer → segments.
//!
//! [`Store::ingest`] normalizes a request body, hands it to the commit
//! thread and returns once the body is in the WAL and fsynced; the commit
//! thread writes every request waiting at that moment and fsyncs once for
//! all of them (group commit), then adds their batches to the write buffer
//! in WAL order, so an acknowledged row is visible to queries at once. A
//! flusher thread turns the buffer into segments by size and age; the
//! segments and the WAL checkpoint are published in one manifest update,
//! and only then are the WAL files the checkpoint covers deleted.
//!
//! A WAL record holds the request as received (decompressed), with its
//! receive time, defaults and idempotency key, so replay after a crash
//! normalizes the same bytes into the same rows. Replay skips the records
//! at or below the manifest's checkpoint: they are in segments already.
//!
//! An fsync or write error poisons the WAL: from then on every ingest is
//! refused ([`IngestError::Unavailable`]), never retried and acknowledged.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weft_ingest::{
    BodyOptions, BulkItem, Defaults, FieldRegistry, Format, NormalizerConfig, decode_body,
};

use crate::wal::{self, Recovery, Wal};
use crate::{Buffered, DataDir, Error, FlushReport, Result, SegmentOptions, Table, fsync_dir};

/// Limits and intervals of the write path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Start a new WAL file past this size.
    pub wal_file_bytes: u64,
    /// Flush the buffer to segments once it holds this much Arrow memory
    /// (and write at most this much of it at a time)…
    pub flush_bytes: usize,
    /// …or once its oldest batch is this old, in seconds.
    pub flush_age_secs: f64,
    /// Refuse ingest (429) while the write path holds this much memory, or
    /// would with the request: the buffered batches, the batches of
    /// requests being normalized (reserved before they are built) and what
    /// a running flush holds beyond the buffer (see [`WriteMemory`]).
    pub max_buffer_bytes: usize,
    /// Refuse ingest (429) while the process's resident memory, plus what
    /// the request and those being normalized are about to add, would pass
    /// this: the whole process as the kernel counts it, allocator slack and
    /// all, not only what the write path counts. Refusing also starts a
    /// flush, which is what frees memory. 0 turns the check off.
    pub max_resident_bytes: usize,
    /// Longest line taken; longer ones are rejects.
    pub max_line: usize,
    /// How many idempotency keys are remembered (oldest forgotten first).
    pub idempotency_keys: usize,
    /// Merge small segments (under a row group of rows) once an hour
    /// partition has this many of them; 0 turns compaction off. See
    /// [`DataDir::compact_some`].
    pub compact_min_segments: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            wal_file_bytes: wal::DEFAULT_FILE_BYTES,
            flush_bytes: 128 << 20,
            flush_age_secs: 10.0,
            max_buffer_bytes: 512 << 20,
            max_resident_bytes: 1 << 30,
            max_line: 1 << 20,
            idempotency_keys: 100_000,
            compact_min_segments: 8,
        }
    }
}

/// One request to store.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// Where it came from, e.g. `http:/v1/ingest` (kept in rejects).
    pub source: String,
    /// The body, decompressed, in `format`.
    pub body: Vec<u8>,
    /// How the body is framed: NDJSON or a shipper protocol. The WAL keeps
    /// it with the body, so replay decodes the same way.
    pub format: Format,
    pub defaults: Defaults,
    pub idempotency_key: Option<String>,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub rejected: u64,
    /// `(line, reason)` of the first refused lines.
    pub errors: Vec<(u64, String)>,
    /// Refused lines per reason label.
    #[serde(default)]
    pub reasons: Vec<(String, u64)>,
    /// The WAL record holding it.
    pub lsn: u64,
    /// True when this answers a retry of a request already stored.
    #[serde(default)]
    pub duplicate: bool,
    /// Why the body as a whole could not be decoded (it is kept as one
    /// reject); `None` when it was read.
    #[serde(default)]
    pub fatal: Option<String>,
    /// Per-item results, for protocols that answer per item.
    #[serde(default)]
    pub items: Vec<BulkItem>,
}

/// Why a request was not stored. Nothing of it was kept.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("not ready: the WAL is being replayed")]
    NotReady,
    #[error("write path full ({bytes} bytes held); segments are being written, retry shortly")]
    Overloaded { bytes: usize },
    #[error(
        "memory full: the process holds {resident} bytes of its {cap}-byte cap; segments are being written, retry shortly"
    )]
    MemoryFull { resident: usize, cap: usize },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("idempotency key {0:?} was used before for a different body")]
    KeyReused(String),
    #[error("shutting down")]
    ShuttingDown,
}

/// Counters of the write path, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub wal_bytes: AtomicU64,
    pub wal_appends: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    pub wal_fsync_micros: AtomicU64,
    /// fsync latency histogram, bucket upper bounds in [`FSYNC_BUCKETS`].
    pub wal_fsync_buckets: [AtomicU64; FSYNC_BUCKETS.len()],
    pub wal_truncated_bytes: AtomicU64,
    pub wal_quarantined_files: AtomicU64,
    pub wal_replayed_records: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    pub flush_micros: AtomicU64,
    pub flushed_rows: AtomicU64,
    pub compactions: AtomicU64,
    pub compacted_segments: AtomicU64,
    pub compaction_errors: AtomicU64,
}

/// Upper bounds (seconds) of the fsync latency buckets.
pub const FSYNC_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// The commit thread's work.
enum Msg {
    Commit(Box<Pending>),
    /// Rotate the WAL and delete the files at or below this lsn.
    Truncate(u64, SyncSender<Result<usize>>),
    /// Make the next fsync fail.
    #[cfg(test)]
    FailNextFsync,
}

/// A normalized request waiting for its fsync.
struct Pending {
    /// The WAL record is `head` then `body` (see [`WalEntry`]): the body
    /// is not copied to make it, and is dropped once the WAL holds it.
    head: Vec<u8>,
    body: Vec<u8>,
    buffered: (
        Vec<arrow::array::RecordBatch>,
        Option<arrow::array::RecordBatch>,
    ),
    input_bytes: u64,
    /// Counts the batches until the buffer does.
    reserved: Reservation,
    reply: SyncSender<std::result::Result<u64, String>>,
}

/// Memory reserved for one request's batches while it is normalized and
/// committed; given back when dropped, after the buffer has taken them.
struct Reservation {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl Reservation {
    /// Replaces the estimate by what the batches hold.
    fn set(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.counter.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            self.counter.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
        }
        self.bytes = bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What the write path holds in memory, in bytes; ingest is refused while
/// the sum reaches [`StoreOptions::max_buffer_bytes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteMemory {
    /// Arrow memory of the buffered batches.
    pub buffered: usize,
    /// Reserved for the batches of requests being normalized or waiting
    /// for their fsync: an estimate from the body size until the batches
    /// are built, then their Arrow memory.
    pub decoding: usize,
    /// Held by a running flush beyond the buffered batches it reads.
    pub flushing: usize,
}

impl WriteMemory {
    pub fn total(&self) -> usize {
        self.buffered + self.decoding + self.flushing
    }
}

/// Reads the process's resident memory, in bytes.
type ResidentProbe = dyn Fn() -> usize + Send + Sync;

/// Arrow memory per input byte assumed for a request before any batch was
/// built, in thousandths.
const START_MEMORY_PER_INPUT: u64 = 4_000;

/// A remembered idempotency key.
#[derive(Debug, Clone)]
enum KeyState {
    /// Stored: the fingerprint of its body and the answer given.
    Done(u64, IngestOutcome),
    /// Being stored by another request now.
    InFlight,
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<String, KeyState>,
    order: VecDeque<String>,
}

/// Keys file: the answers of keyed requests whose WAL records are gone.
const KEYS_FILE: &str = "idempotency.json";

#[derive(Debug, Serialize, Deserialize)]
struct KeyRecord {
    key: String,
    fingerprint: u64,
    outcome: IngestOutcome,
}

/// The daemon's write path over one data directory.
pub struct Store {
    data: Arc<DataDir>,
    options: StoreOptions,
    body: BodyOptions,
    tx: Mutex<Option<SyncSender<Msg>>>,
    commit_thread: Mutex<Option<JoinHandle<()>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// Recovered WAL records, until replay takes them.
    recovered: Mutex<Option<Recovery>>,
    ready: AtomicBool,
    /// Set when the WAL failed: no more acknowledgements.
    failed: Mutex<Option<String>>,
    /// The last flush error, cleared by a good flush.
    flush_error: Mutex<Option<String>>,
    /// Held by a flush: two at once would write the same batches twice.
    flushing: Mutex<()>,
    keys: Mutex<Keys>,
    keys_done: Condvar,
    stats: Arc<StoreStats>,
    /// Reserved for requests being normalized (see [`WriteMemory`]).
    decoding: Arc<AtomicUsize>,
    /// Reads the process's resident memory (see [`Store::set_resident_probe`]).
    resident: Mutex<Arc<ResidentProbe>>,
    /// Set when ingest was refused for the resident cap: flush now.
    pressure: AtomicBool,
    /// The largest flush working set seen (beyond the buffer it reads).
    flush_peak: AtomicUsize,
    /// How far recent flush parts raised the process's resident memory:
    /// the largest, losing an eighth with each part that rose less.
    flush_resident_growth: AtomicUsize,
    /// Arrow memory per input byte of recent requests, in thousandths:
    /// what a reservation assumes before the batches are built.
    memory_per_input: AtomicU64,
    /// Run after each published flush part (see [`Store::on_flushed`]).
    after_flush: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.data.root())
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

/// What replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub wal_files: usize,
    /// Records found after the checkpoint and put back in the buffer.
    pub replayed: usize,
    /// Records at or below the checkpoint (already in segments).
    pub skipped: usize,
    pub rows: u64,
    pub truncated_bytes: u64,
    /// `(file, quarantined copy, reason)` of WAL files with corruption.
    pub quarantined: Vec<(PathBuf, PathBuf, String)>,
    pub elapsed_ms: u64,
}

impl Store {
    /// Opens the data directory as its one writer and recovers the WAL
    /// (torn tail cut, corruption quarantined). Nothing is ingested until
    /// [`Store::replay`] has put the recovered records back.
    pub fn open(
        root: &Path,
        segments: SegmentOptions,
        normalizer: NormalizerConfig,
        options: StoreOptions,
    ) -> Result<Arc<Self>> {
        let data = Arc::new(DataDir::open_writer(root, segments)?);
        let existing: Vec<String> = data
            .manifest()
            .table_columns(Table::Logs)
            .into_iter()
            .skip(weft_ingest::model::CORE_FIELD_COUNT)
            .map(|(n, _)| n)
            .collect();
        let body = BodyOptions {
            registry: Arc::new(FieldRegistry::with_existing(
                normalizer.max_fields,
                existing,
            )),
            config: Arc::new(normalizer),
            max_line: options.max_line,
        };
        let (wal, recovery) = Wal::open(&root.join("wal"), options.wal_file_bytes)?;
        let stats = Arc::new(StoreStats::default());
        stats.wal_bytes.store(wal.bytes(), Ordering::Relaxed);
        let store = Arc::new(Self {
            data,
            options,
            body,
            tx: Mutex::new(None),
            commit_thread: Mutex::new(None),
            flusher: Mutex::new(None),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            recovered: Mutex::new(Some(recovery)),
            ready: AtomicBool::new(false),
            failed: Mutex::new(None),
            flush_error: Mutex::new(None),
            flushing: Mutex::new(()),
            after_flush: Mutex::new(None),
            keys: Mutex::new(Keys::default()),
            keys_done: Condvar::new(),
            stats,
            decoding: Arc::default(),
            resident: Mutex::new(Arc::new(crate::resident::resident_bytes)),
            pressure: AtomicBool::new(false),
            flush_peak: AtomicUsize::new(0),
            flush_resident_growth: AtomicUsize::new(0),
            memory_per_input: AtomicU64::new(START_MEMORY_PER_INPUT),
        });
        store.load_keys()?;
        let (tx, rx) = sync_channel::<Msg>(1024);
        *lock(&store.tx) = Some(tx);
        let weak = Arc::downgrade(&store);
        // Numbers must pass the checkpoint even when the WAL files it covered
        // are gone, or replay would take new records for flushed ones.
        let next_lsn = wal.last_lsn().max(store.data.manifest().wal_checkpoint) + 1;
        let handle = std::thread::Builder::new()
            .name("weft-wal".into())
            .spawn(move || commit_loop(wal, next_lsn, rx, weak))
            .map_err(|e| Error::io(root, e))?;
        *lock(&store.commit_thread) = Some(handle);
        Ok(store)
    }

    pub fn data(&self) -> &Arc<DataDir> {
        &self.data
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// True once replay is done and the WAL is healthy.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && lock(&self.failed).is_none()
    }

    /// Why the store refuses writes, if it does.
    pub fn unavailable(&self) -> Option<String> {
        if !self.ready.load(Ordering::Acquire) {
            return Some(IngestError::NotReady.to_string());
        }
        lock(&self.failed).clone()
    }

    /// Normalizes the recovered WAL records after the checkpoint back into
    /// the write buffer, then marks the store ready.
    pub fn replay(&self) -> Result<ReplayReport> {
        let started = Instant::now();
        let Some(recovery) = lock(&self.recovered).take() else {
            return Ok(ReplayReport::default());
        };
        let checkpoint = self.data.manifest().wal_checkpoint;
        let mut report = ReplayReport {
            wal_files: recovery.files,
            truncated_bytes: recovery.truncated_bytes,
            quarantined: recovery
                .quarantined
                .iter()
                .map(|q| (q.file.clone(), q.copy.clone(), q.reason.clone()))
                .collect(),
            ..ReplayReport::default()
        };
        self.stats
            .wal_truncated_bytes
            .fetch_add(recovery.truncated_bytes, Ordering::Relaxed);
        self.stats
            .wal_quarantined_files
            .fetch_add(recovery.quarantined.len() as u64, Ordering::Relaxed);
        for record in recovery.records {
            let entry = match WalEntry::decode(&record.payload) {
                Ok(e) => e,
                Err(reason) => {
                    return Err(Error::Corrupt {
                        path: self.data.root().join("wal"),
                        reason: format!("record {}: {reason}", record.lsn),
                    });
                }
            };
            let known_key = entry
                .key
                .as_ref()
                .is_some_and(|k| lock(&self.keys).map.contains_key(*k));
            if record.lsn <= checkpoint && (entry.key.is_none() || known_key) {
                report.skipped += 1;
                continue;
            }
            let out = decode_body(
                &entry.format,
                entry.body,
                &Arc::from(entry.source),
                entry.observed_at,
                entry.defaults(),
                &self.body,
            );
            let outcome = outcome_of(&out, record.lsn);
            if let Some(key) = entry.key {
                self.remember(key.to_owned(), KeyState::Done(entry.fingerprint, outcome));
            }
            if record.lsn <= checkpoint {
                report.skipped += 1;
                continue;
            }
            report.replayed += 1;
            report.rows += out.counts.accepted;
            self.data.buffer_push(Buffered::new(
                record.lsn,
                out.logs,
                out.rejects,
                entry.body.len() as u64,
            ));
        }
        self.stats
            .wal_replayed_records
            .fetch_add(report.replayed as u64, Ordering::Relaxed);
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        self.ready.store(true, Ordering::Release);
        Ok(report)
    }

    /// Stores one request: normalized, in the WAL and fsynced, in the
    /// buffer. Blocking: call it off the async runtime.
    pub fn ingest(&self, req: IngestRequest) -> std::result::Result<IngestOutcome, IngestError> {
        if let Some(reason) = self.refusal() {
            return Err(reason);
        }
        let Some(key) = req.idempotency_key.clone() else {
            return self.store(req, 0);
        };
        let fingerprint = fingerprint(&req.format, &req.body);
        // One request per key at a time; a retry waits for the first one.
        {
            let mut keys = lock(&self.keys);
            loop {
                match keys.map.get(&key) {
                    Some(KeyState::Done(fp, outcome)) if *fp == fingerprint => {
                        return Ok(IngestOutcome {
                            duplicate: true,
                            ..outcome.clone()
                        });
                    }
                    Some(KeyState::Done(..)) => return Err(IngestError::KeyReused(key)),
                    Some(KeyState::InFlight) => {
                        keys = self.keys_done.wait(keys).unwrap_or_else(|e| e.into_inner());
                    }
                    None => {
                        keys.map.insert(key.clone(), KeyState::InFlight);
                        break;
                    }
                }
            }
        }
        let result = self.store(req, fingerprint);
        {
            let mut keys = lock(&self.keys);
            match &result {
                Ok(outcome) => {
                    keys.map
                        .insert(key.clone(), KeyState::Done(fingerprint, outcome.clone()));
                    keys.order.push_back(key);
                    while keys.order.len() > self.options.idempotency_keys {
                        if let Some(old) = keys.order.pop_front() {
                            keys.map.remove(&old);
                        }
                    }
                }
                Err(_) => {
                    keys.map.remove(&key);
                }
            }
        }
        self.keys_done.notify_all();
        result
    }

    /// What the write path holds in memory now.
    pub fn write_memory(&self) -> WriteMemory {
        WriteMemory {
            buffered: self.data.buffer_usage().0,
            decoding: self.decoding.load(Ordering::Acquire),
            flushing: self.data.flush_memory(),
        }
    }

    fn refusal(&self) -> Option<IngestError> {
        if !self.ready.load(Ordering::Acquire) {
            return Some(IngestError::NotReady);
        }
        if let Some(reason) = lock(&self.failed).clone() {
            return Some(IngestError::Unavailable(reason));
        }
        let bytes = self.write_memory().total();
        if bytes >= self.options.max_buffer_bytes {
            return Some(self.overloaded(IngestError::Overloaded { bytes }));
        }
        None
    }

    /// `refusal`, unless segments cannot be written: that is not load, it
    /// is trouble.
    fn overloaded(&self, refusal: IngestError) -> IngestError {
        match lock(&self.flush_error).clone() {
            Some(reason) => IngestError::Unavailable(format!("cannot write segments: {reason}")),
            None => refusal,
        }
    }

    /// Sets where the process's resident memory is read from: the kernel's
    /// count unless set, for tests and for embedders measured otherwise.
    pub fn set_resident_probe(&self, probe: impl Fn() -> usize + Send + Sync + 'static) {
        *lock(&self.resident) = Arc::new(probe);
    }

    /// Refuses when the process's resident memory plus `coming` bytes, not
    /// allocated yet, would pass [`StoreOptions::max_resident_bytes`], and
    /// asks the flusher to write the buffer out. `held` is what the write
    /// path holds: with nothing held, refusing would free nothing, so the
    /// request goes ahead.
    fn resident_refusal(&self, held: usize, coming: usize) -> Option<IngestError> {
        let cap = self.options.max_resident_bytes;
        if cap == 0 || held == 0 {
            return None;
        }
        let probe = Arc::clone(&lock(&self.resident));
        let resident = probe();
        if resident.saturating_add(coming) <= cap {
            return None;
        }
        self.pressure.store(true, Ordering::Release);
        Some(self.overloaded(IngestError::MemoryFull { resident, cap }))
    }

    /// Refuses, without reserving anything, a request of `input_bytes`
    /// that [`Store::ingest`] would refuse now: the server asks before it
    /// reads a body, so that a body it must refuse is drained, not
    /// collected and handed over. `input_bytes` should not overstate the
    /// body (its length on the wire, say): what passes here is checked
    /// again, with the body's real size, before it is stored.
    pub fn admission(&self, input_bytes: usize) -> std::result::Result<(), IngestError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        let bytes = self.reservation_for(input_bytes);
        self.room_for(bytes, self.decoding.load(Ordering::Acquire))
    }

    /// Reserves memory for the batches of `input_bytes` of input, or
    /// refuses when the write path would pass its cap with them, or the
    /// process its resident cap. A request alone may always have the whole
    /// cap.
    fn reserve(&self, input_bytes: usize) -> std::result::Result<Reservation, IngestError> {
        let bytes = self.reservation_for(input_bytes);
        let mut cur = self.decoding.load(Ordering::Acquire);
        loop {
            self.room_for(bytes, cur)?;
            match self.decoding.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        counter: Arc::clone(&self.decoding),
                        bytes,
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The memory the batches of `input_bytes` of input are expected to take.
    fn reservation_for(&self, input_bytes: usize) -> usize {
        let per_input = self.memory_per_input.load(Ordering::Relaxed) as usize;
        input_bytes.saturating_mul(per_input) / 1000
    }

    /// Refuses `bytes` more for requests being normalized, `decoding`
    /// already reserved, when the write path or the process would pass its cap.
    fn room_for(&self, bytes: usize, decoding: usize) -> std::result::Result<(), IngestError> {
        let max = self.options.max_buffer_bytes;
        let flushing = self.data.flush_memory();
        // A flush, running or about to start, may grow to the largest
        // working set seen so far, and allocates about as much again that
        // is not counted (zstd contexts and page buffers per column: 22 MiB
        // under heaptrack, against 25-43 MB counted; benches/README.md);
        // or, when more, by what recent flushes added to the resident set.
        let peak = self
            .flush_peak
            .fetch_max(flushing, Ordering::Relaxed)
            .max(flushing);
        let flush_growth = (2 * peak)
            .saturating_sub(flushing)
            .max(self.flush_resident_growth.load(Ordering::Relaxed));
        let held = self.data.buffer_usage().0 + flushing + decoding;
        if held > 0 && held.saturating_add(bytes) > max {
            return Err(self.overloaded(IngestError::Overloaded { bytes: held }));
        }
        // What requests being normalized and the flush will add is not
        // resident yet.
        match self.resident_refusal(held, decoding + bytes + flush_growth) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Learns the memory per input byte of a request just normalized.
    fn observe_memory(&self, input_bytes: usize, memory: usize) {
        if input_bytes < 4096 {
            return;
        }
        let now = (memory as u64).saturating_mul(1000) / input_bytes as u64;
        let old = self.memory_per_input.load(Ordering::Relaxed);
        // A moving average: one request moves it an eighth of the way.
        let next = (old * 7 + now) / 8;
        self.memory_per_input.store(next.max(1), Ordering::Relaxed);
    }

    fn store(
        &self,
        req: IngestRequest,
        fingerprint: u64,
    ) -> std::result::Result<IngestOutcome, IngestError> {
        let observed_at = crate::now_nanos();
        let entry = WalEntry {
            observed_at,
            source: &req.source,
            key: req.idempotency_key.as_deref(),
            fingerprint,
            service: req.defaults.service.as_deref(),
            host: req.defaults.host.as_deref(),
            format: req.format.clone(),
            body: &req.body,
        };
        let mut reserved = self.reserve(req.body.len())?;
        let out = decode_body(
            &req.format,
            &req.body,
            &Arc::from(req.source.as_str()),
            observed_at,
            req.defaults.clone(),
            &self.body,
        );
        let memory = crate::buffer::arrow_memory(&out.logs, &out.rejects);
        reserved.set(memory);
        self.observe_memory(req.body.len(), memory);
        let mut outcome = outcome_of(&out, 0);
        let (reply, answer) = sync_channel(1);
        let pending = Pending {
            head: entry.head(),
            input_bytes: req.body.len() as u64,
            body: req.body,
            buffered: (out.logs, out.rejects),
            reserved,
            reply,
        };
        let tx = lock(&self.tx).clone().ok_or(IngestError::ShuttingDown)?;
        tx.send(Msg::Commit(Box::new(pending)))
            .map_err(|_| IngestError::ShuttingDown)?;
        match answer.recv() {
            Ok(Ok(lsn)) => {
                outcome.lsn = lsn;
                Ok(outcome)
            }
            Ok(Err(reason)) => Err(IngestError::Unavailable(reason)),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }

    /// Writes what the buffer holds now into segments, `flush_bytes` of it
    /// at a time, oldest first. A flush's working set (sort keys, the row
    /// group being written) grows with what it writes at once, and each
    /// part frees its batches and WAL files as soon as it is published.
    pub fn flush(&self) -> Result<Option<FlushReport>> {
        let _one_at_a_time = lock(&self.flushing);
        let Some(until) = self.data.last_buffered_lsn() else {
            return Ok(None);
        };
        let mut total: Option<FlushReport> = None;
        while let Some(part) = self.flush_part()? {
            let done = part.checkpoint >= until;
            total = Some(match total {
                Some(t) => t.then(part),
                None => part,
            });
            if done {
                break;
            }
        }
        Ok(total)
    }

    /// Writes the oldest `flush_bytes` of the buffer into segments,
    /// publishes them with the WAL checkpoint, saves the idempotency
    /// answers, then deletes the WAL files the checkpoint covers.
    fn flush_part(&self) -> Result<Option<FlushReport>> {
        let report = match self.data.flush_some(self.options.flush_bytes) {
            Ok(r) => r,
            Err(e) => {
                self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                *lock(&self.flush_error) = Some(e.to_string());
                return Err(e);
            }
        };
        *lock(&self.flush_error) = None;
        let Some(report) = report else {
            return Ok(None);
        };
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .flush_micros
            .fetch_add(report.elapsed.as_micros() as u64, Ordering::Relaxed);
        self.stats
            .flushed_rows
            .fetch_add(report.rows, Ordering::Relaxed);
        let seen = self.flush_resident_growth.load(Ordering::Relaxed);
        self.flush_resident_growth.store(
            report.resident_growth.max(seen - seen / 8),
            Ordering::Relaxed,
        );
        self.save_keys()?;
        if let Some(tx) = lock(&self.tx).clone() {
            let (reply, answer) = sync_channel(1);
            if tx.send(Msg::Truncate(report.checkpoint, reply)).is_ok() {
                answer.recv().unwrap_or(Ok(0))?;
            }
        }
        if let Some(f) = lock(&self.after_flush).as_ref() {
            f();
        }
        Ok(Some(report))
    }

    /// Merges small segments, one merge per call (see
    /// [`DataDir::compact_some`]), and deletes the files of segments merged
    /// more than [`RETIRE_GRACE`] ago. A merge reads back at most a quarter
    /// of `flush_bytes` of input, so its memory stays below a flush part's.
    pub fn compact(&self) -> Result<Option<crate::CompactReport>> {
        let _one_at_a_time = lock(&self.flushing);
        self.data.remove_retired(RETIRE_GRACE);
        if self.options.compact_min_segments == 0 {
            return Ok(None);
        }
        let max_input = (self.options.flush_bytes / 4).max(1) as u64;
        match self
            .data
            .compact_some(self.options.compact_min_segments, max_input)
        {
            Ok(Some(r)) => {
                self.stats.compactions.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .compacted_segments
                    .fetch_add(r.merged.len() as u64, Ordering::Relaxed);
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.stats.compaction_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Runs `f` on the flushing thread after each flush part is published
    /// and its batches freed.
    pub fn on_flushed(&self, f: impl Fn() + Send + Sync + 'static) {
        *lock(&self.after_flush) = Some(Box::new(f));
    }

    /// Starts the thread that flushes by size and age, and at once after
    /// ingest was refused for the resident cap; on ticks with nothing to
    /// flush it merges small segments ([`compact`](Self::compact)).
    pub fn start_flusher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let stop = Arc::clone(&self.stop);
        let tick = Duration::from_millis(100);
        let mut compact_after = Instant::now();
        let handle = std::thread::Builder::new()
            .name("weft-flush".into())
            .spawn(move || {
                loop {
                    {
                        let (m, cv) = &*stop;
                        let stopped = lock(m);
                        let (stopped, _) = cv
                            .wait_timeout(stopped, tick)
                            .unwrap_or_else(|e| e.into_inner());
                        if *stopped {
                            return;
                        }
                    }
                    let Some(store) = weak.upgrade() else { return };
                    let (bytes, age) = store.data.buffer_usage();
                    let pressed = store.pressure.swap(false, Ordering::AcqRel);
                    let due = bytes >= store.options.flush_bytes
                        || age.is_some_and(|a| a.as_secs_f64() >= store.options.flush_age_secs)
                        || (pressed && bytes > 0);
                    if due {
                        if let Err(e) = store.flush() {
                            tracing::error!(error = %e, "flush failed; the rows stay in the buffer and the WAL");
                        }
                    } else if store.stopping() {
                        return;
                    } else if Instant::now() >= compact_after {
                        match store.compact() {
                            Ok(Some(r)) => tracing::debug!(
                                merged = r.merged.len(),
                                rows = r.written.iter().map(|s| s.rows).sum::<u64>(),
                                elapsed_ms = r.elapsed.as_secs_f64() * 1e3,
                                "small segments merged"
                            ),
                            Ok(None) => {}
                            Err(e) => {
                                // Whatever failed (a damaged file, a full
                                // disk) would fail again at the next tick.
                                compact_after = Instant::now() + COMPACT_BACKOFF;
                                tracing::error!(error = %e, retry_secs = COMPACT_BACKOFF.as_secs(), "compaction failed; the segments stay as they were")
                            }
                        }
                    }
                }
            })
            .expect("spawn flusher");
        *lock(&self.flusher) = Some(handle);
    }

    fn stopping(&self) -> bool {
        *lock(&self.stop.0)
    }

    /// Stops taking writes, flushes what is buffered and stops the threads.
    pub fn shutdown(&self) -> Result<Option<FlushReport>> {
        {
            let (m, cv) = &*self.stop;
            *lock(m) = true;
            cv.notify_all();
        }
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
        let report = if self.ready.load(Ordering::Acquire) && lock(&self.failed).is_none() {
            self.flush()?
        } else {
            None
        };
        lock(&self.tx).take();
        if let Some(h) = lock(&self.commit_thread).take() {
            let _ = h.join();
        }
        Ok(report)
    }

    fn remember(&self, key: String, state: KeyState) {
        let mut keys = lock(&self.keys);
        if keys.map.insert(key.clone(), state).is_none() {
            keys.order.push_back(key);
        }
        while keys.order.len() > self.options.idempotency_keys {
            if let Some(old) = keys.order.pop_front() {
                keys.map.remove(&old);
            }
        }
    }

    fn keys_path(&self) -> PathBuf {
        self.data.root().join(KEYS_FILE)
    }

    fn load_keys(&self) -> Result<()> {
        let path = self.keys_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let records: Vec<KeyRecord> =
            serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        for r in records {
            self.remember(r.key, KeyState::Done(r.fingerprint, r.outcome));
        }
        Ok(())
    }

    /// Writes the remembered answers atomically (temp, fsync, rename, fsync dir).
    fn save_keys(&self) -> Result<()> {
        let records: Vec<KeyRecord> = {
            let keys = lock(&self.keys);
            keys.order
                .iter()
                .filter_map(|k| match keys.map.get(k) {
                    Some(KeyState::Done(fp, outcome)) => Some(KeyRecord {
                        key: k.clone(),
                        fingerprint: *fp,
                        outcome: outcome.clone(),
                    }),
                    _ => None,
                })
                .collect()
        };
        let path = self.keys_path();
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&records).expect("keys serialize");
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        fsync_dir(self.data.root())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn outcome_of(out: &weft_ingest::BodyBatch, lsn: u64) -> IngestOutcome {
    IngestOutcome {
        accepted: out.counts.accepted,
        rejected: out.counts.rejected,
        errors: out
            .errors
            .iter()
            .map(|e| (e.line, e.reason.to_string()))
            .collect(),
        reasons: out
            .reasons
            .iter()
            .map(|(l, n)| ((*l).to_owned(), *n))
            .collect(),
        lsn,
        duplicate: false,
        fatal: out.fatal.clone(),
        items: out.items.clone(),
    }
}

/// Tells a retry from a different request reusing a key.
/// The same bytes sent to another protocol (or bulk index) are another
/// request. NDJSON hashes the body alone, as before formats existed, so
/// keys saved by older versions still match their retries.
fn fingerprint(format: &Format, body: &[u8]) -> u64 {
    match format {
        Format::Ndjson => crate::idindex::fnv1a(body),
        other => {
            let mut bytes = other.tag().into_bytes();
            bytes.push(0);
            bytes.extend_from_slice(body);
            crate::idindex::fnv1a(&bytes)
        }
    }
}

/// How long the files of merged segments outlive their removal from the
/// manifest, so that queries planned before can still read them.
pub const RETIRE_GRACE: Duration = Duration::from_secs(300);

/// How long the flusher waits to compact again after a compaction failed.
const COMPACT_BACKOFF: Duration = Duration::from_secs(60);

/// Most requests one group commit writes before its fsync.
const GROUP_MAX: usize = 256;

/// The commit thread: owns the WAL; appends every waiting request, fsyncs
/// once, buffers them in order, answers.
fn commit_loop(mut wal: Wal, mut next_lsn: u64, rx: Receiver<Msg>, store: std::sync::Weak<Store>) {
    let mut poisoned: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut group = Vec::new();
        let mut control = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Commit(p) => group.push(*p),
                Msg::Truncate(lsn, reply) => control.push((lsn, reply)),
                #[cfg(test)]
                Msg::FailNextFsync => wal.fail_next_fsync(),
            }
            if group.len() < GROUP_MAX {
                next = rx.try_recv().ok();
            }
        }
        let Some(store) = store.upgrade() else { return };
        if !group.is_empty() {
            let n = group.len() as u64;
            commit_group(&mut wal, next_lsn, group, &store, &mut poisoned);
            next_lsn += n;
        }
        for (lsn, reply) in control {
            let result = match &poisoned {
                Some(reason) => Err(Error::WalFailed(reason.clone())),
                None => wal.rotate().and_then(|()| wal.remove_through(lsn)),
            };
            store.stats.wal_bytes.store(wal.bytes(), Ordering::Relaxed);
            let _ = reply.send(result);
        }
    }
}

fn commit_group(
    wal: &mut Wal,
    first_lsn: u64,
    mut group: Vec<Pending>,
    store: &Store,
    poisoned: &mut Option<String>,
) {
    if let Some(reason) = poisoned.as_ref() {
        for p in group {
            let _ = p.reply.send(Err(reason.clone()));
        }
        return;
    }
    let mut result = Ok(Duration::ZERO);
    for (i, p) in group.iter_mut().enumerate() {
        if let Err(e) = wal.append_parts(first_lsn + i as u64, &[&p.head, &p.body]) {
            result = Err(e);
            break;
        }
        // The WAL holds a copy until it is written.
        p.body = Vec::new();
    }
    let result = result.and_then(|_| wal.sync());
    let stats = &store.stats;
    stats.wal_bytes.store(wal.bytes(), Ordering::Relaxed);
    match result {
        Ok(took) => {
            stats.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
            stats
                .wal_appends
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            stats
                .wal_fsync_micros
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            let secs = took.as_secs_f64();
            if let Some(i) = FSYNC_BUCKETS.iter().position(|b| secs <= *b) {
                stats.wal_fsync_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
            for (i, p) in group.into_iter().enumerate() {
                let lsn = first_lsn + i as u64;
                let Pending {
                    buffered: (logs, rejects),
                    input_bytes,
                    reserved,
                    reply,
                    ..
                } = p;
                store
                    .data
                    .buffer_push(Buffered::new(lsn, logs, rejects, input_bytes));
                // The buffer counts the batches now.
                drop(reserved);
                let _ = reply.send(Ok(lsn));
            }
        }
        Err(e) => {
            let reason = format!("WAL write failed, writes stopped until restart: {e}");
            tracing::error!(error = %e, "WAL write or fsync failed; refusing writes from now on");
            *lock(&store.failed) = Some(reason.clone());
            *poisoned = Some(reason.clone());
            for p in group {
                let _ = p.reply.send(Err(reason.clone()));
            }
        }
    }
}

/// A WAL record's payload: a request as received.
///
/// `u8 version (1) | i64 observed_at | str source | opt-str key | u64
/// fingerprint | opt-str service | opt-str host | body to the end`, where a
/// str is a u32 length and bytes and an absent opt-str has length u32::MAX;
/// integers little-endian.
#[derive(Debug, Clone, PartialEq)]
struct WalEntry<'a> {
    observed_at: i64,
    source: &'a str,
    key: Option<&'a str>,
    fingerprint: u64,
    service: Option<&'a str>,
    host: Option<&'a str>,
    format: Format,
    body: &'a [u8],
}

/// Version 2 added the body's format; version 1 entries are NDJSON.
const ENTRY_VERSION: u8 = 2;

impl<'a> WalEntry<'a> {
    fn defaults(&self) -> Defaults {
        Defaults {
            service: self.service.map(str::to_owned),
            host: self.host.map(str::to_owned),
        }
    }

    /// The entry without its body, which follows it in the record.
    fn head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.observed_at.to_le_bytes());
        put_str(&mut out, Some(self.source));
        put_str(&mut out, self.key);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        put_str(&mut out, self.service);
        put_str(&mut out, self.host);
        put_str(&mut out, Some(&self.format.tag()));
        out
    }

    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        let mut out = self.head();
        out.extend_from_slice(self.body);
        out
    }

    fn decode(mut b: &'a [u8]) -> std::result::Result<Self, String> {
        let version = take(&mut b, 1)?[0];
        if !(1..=ENTRY_VERSION).contains(&version) {
            return Err(format!("unknown entry version {version}"));
        }
        let observed_at = i64::from_le_bytes(take(&mut b, 8)?.try_into().expect("8 bytes"));
        let source = get_str(&mut b)?.ok_or("entry without a source")?;
        let key = get_str(&mut b)?;
        let fingerprint = u64::from_le_bytes(take(&mut b, 8)?.try_into().expect("8 bytes"));
        let service = get_str(&mut b)?;
        let host = get_str(&mut b)?;
        let format = if version == 1 {
            Format::Ndjson
        } else {
            let tag = get_str(&mut b)?.ok_or("entry without a format")?;
            Format::from_tag(tag).ok_or_else(|| format!("unknown body format {tag:?}"))?
        };
        Ok(Self {
            observed_at,
            source,
            key,
            fingerprint,
            service,
            host,
            format,
            body: b,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
    if b.len() < n {
        return Err("entry is cut short".into());
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn get_str<'a>(b: &mut &'a [u8]) -> std::result::Result<Option<&'a str>, String> {
    let len = u32::from_le_bytes(take(b, 4)?.try_into().expect("4 bytes"));
    if len == u32::MAX {
        return Ok(None);
    }
    let bytes = take(b, len as usize)?;
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "entry string is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fsync_stops_every_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            SegmentOptions::default(),
            NormalizerConfig::default(),
            StoreOptions::default(),
        )
        .unwrap();
        store.replay().unwrap();
        let req = |n: u8| IngestRequest {
            source: "t".into(),
            body: format!("{{\"message\":\"m{n}\"}}\n").into_bytes(),
            format: Format::Ndjson,
            defaults: Defaults::default(),
            idempotency_key: None,
        };
        store.ingest(req(1)).unwrap();
        let tx = lock(&store.tx).clone().unwrap();
        tx.send(Msg::FailNextFsync).unwrap();
        assert!(matches!(
            store.ingest(req(2)),
            Err(IngestError::Unavailable(_))
        ));
        // No retry and acknowledge: the WAL stays failed.
        assert!(matches!(
            store.ingest(req(3)),
            Err(IngestError::Unavailable(_))
        ));
        assert!(!store.is_ready());
        assert!(store.unavailable().unwrap().contains("WAL write failed"));
        // Only the acknowledged batch is in the buffer.
        assert_eq!(store.data().snapshot().buffered.len(), 1);
    }

    #[test]
    fn wal_entries_round_trip() {
        let e = WalEntry {
            observed_at: -5,
            source: "http:/v1/ingest",
            key: Some("k-1"),
            fingerprint: 42,
            service: None,
            host: Some("h"),
            format: Format::EsBulk {
                index: Some("app".into()),
            },
            body: b"{\"a\":1}\n",
        };
        let bytes = e.encode();
        assert_eq!(WalEntry::decode(&bytes).unwrap(), e);
        // A version-1 entry (no format) still reads, as NDJSON.
        let v1 = WalEntry {
            format: Format::Ndjson,
            ..e.clone()
        };
        let mut old = v1.encode();
        old[0] = 1;
        let tag_at = old.len() - v1.body.len() - 4 - "ndjson".len();
        old.drain(tag_at..tag_at + 4 + "ndjson".len());
        assert_eq!(WalEntry::decode(&old).unwrap(), v1);
        assert!(WalEntry::decode(&bytes[..10]).is_err());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(WalEntry::decode(&bad).unwrap_err().contains("version"));
    }
}
