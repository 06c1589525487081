//! weft-storage: the third stage of weft's write path.
//!
//! Owns the data directory: Parquet segments in a time-partitioned tree,
//! the manifest that lists them, and for the daemon the WAL ([`wal`]) and
//! the write buffer ([`buffer`]). `weft-ingest` hands it finished Arrow
//! batches; `weft-query` reads a [`Snapshot`]: the manifest's segments and
//! the buffered batches, taken under one lock so that no row is seen twice
//! or missed while a flush moves it from the buffer into a segment.
//!
//! Layout of a data directory:
//! ```text
//! DIR/manifest.json                                   the published segments
//! DIR/LOCK                                            held by the one writer
//! DIR/segments/date=2023-11-14/hour=22/000000000001.parquet   table logs
//! DIR/segments/date=2023-11-14/hour=22/000000000001.ids       its id index
//! DIR/rejects/date=2023-11-14/hour=22/000000000002.parquet    table rejects
//! DIR/wal/00000000000000000001.wal                    the daemon's WAL
//! ```
//! A segment is published by writing a temp file, fsync, rename, fsync of the
//! directory, and then an atomic manifest update. Files a crash left
//! unpublished are removed when a writer next opens the directory.

pub mod buffer;
pub mod idindex;
pub mod manifest;
pub mod resident;
pub mod segment;
pub mod store;
pub mod wal;

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use weft_ingest::model;

pub use buffer::{Buffered, Snapshot};
pub use manifest::{ColumnType, Manifest, SegmentMeta, Table};
pub use segment::SegmentOptions;

/// Storage errors. Messages name the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("data directory {0} is in use by another weft process (LOCK is held)")]
    Locked(PathBuf),
    #[error("{path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no data directory at {0}")]
    NotFound(PathBuf),
    #[error("column {0} is missing from the batch")]
    MissingColumn(String),
    #[error("more than 4,294,967,295 rows or batches in one write")]
    TooManyRows,
    #[error("column {column} has type {data_type}, which segments cannot hold")]
    UnsupportedType { column: String, data_type: String },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("the WAL refuses calls after an earlier I/O failure ({0}); reopen it to recover")]
    WalFailed(String),
    #[error("append of lsn {lsn} to the WAL: lsns must increase, and the last one is {last}")]
    WalLsnOrder { lsn: u64, last: u64 },
    #[error("record of {0} bytes is over the WAL's 1 GiB cap")]
    WalRecordTooLarge(usize),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// fsync a directory so a rename or create inside it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// An open data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Held for the writer's lifetime; `None` for readers.
    lock: Option<File>,
    state: Mutex<State>,
    options: SegmentOptions,
    /// Memory the running segment write holds beyond the buffer (see
    /// [`Rows::tracked`](segment::Rows::tracked)).
    flushing: Arc<AtomicUsize>,
    /// The highest resident memory seen during the running flush.
    flush_resident: Arc<AtomicUsize>,
    /// Files of segments a compaction unlisted, and when: deleted once no
    /// query that started before could still open them.
    retired: Mutex<Vec<(Instant, PathBuf)>>,
}

/// What a query must see in one piece.
#[derive(Debug, Default)]
struct State {
    manifest: Manifest,
    /// Which manifest file a reader last loaded (see [`DataDir::reload`]).
    manifest_stamp: Option<FileStamp>,
    /// In WAL order.
    buffer: Vec<Arc<Buffered>>,
    buffer_bytes: usize,
}

/// Identifies one version of a file: a publish renames a new file into
/// place, so the inode changes even when size and mtime would not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).ok()?;
        Some(Self {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })
    }
}

/// What one flush wrote.
#[derive(Debug, Clone)]
pub struct FlushReport {
    pub segments: Vec<SegmentMeta>,
    /// The WAL records up to here are now in segments.
    pub checkpoint: u64,
    pub rows: u64,
    pub elapsed: Duration,
    /// How far the process's resident memory rose above where it stood
    /// when the flush began, at its highest while writing (sampled as each
    /// chunk of rows is written). It includes whatever else the process
    /// allocated meanwhile.
    pub resident_growth: usize,
}

impl FlushReport {
    /// This flush followed by `later`, as one.
    pub fn then(mut self, later: FlushReport) -> Self {
        self.segments.extend(later.segments);
        self.checkpoint = self.checkpoint.max(later.checkpoint);
        self.rows += later.rows;
        self.elapsed += later.elapsed;
        self.resident_growth = self.resident_growth.max(later.resident_growth);
        self
    }
}

/// What one compaction did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    /// The segments merged; no longer listed.
    pub merged: Vec<SegmentMeta>,
    /// The segment they became.
    pub written: Vec<SegmentMeta>,
    pub elapsed: Duration,
}

impl DataDir {
    /// Opens (creating if needed) a directory to write to. Only one writer
    /// may hold a directory. Unpublished files left by a crash are removed.
    pub fn open_writer(root: &Path, options: SegmentOptions) -> Result<Self> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let lock_path = root.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked(root.to_owned())),
            Err(TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let manifest = Manifest::load(root)?;
        let dir = Self {
            root: root.to_owned(),
            lock: Some(lock),
            state: Mutex::new(State {
                manifest,
                ..State::default()
            }),
            options,
            flushing: Arc::default(),
            flush_resident: Arc::default(),
            retired: Mutex::default(),
        };
        dir.remove_unpublished()?;
        Ok(dir)
    }

    /// Opens an existing directory to read. Takes no lock: the manifest is
    /// replaced atomically, so a reader always sees a consistent list.
    pub fn open_reader(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::NotFound(root.to_owned()));
        }
        // Stamp first: if the file is replaced in between, the next reload
        // sees a new stamp and loads again.
        let manifest_stamp = FileStamp::of(&root.join(manifest::MANIFEST_FILE));
        Ok(Self {
            root: root.to_owned(),
            lock: None,
            state: Mutex::new(State {
                manifest: Manifest::load(root)?,
                manifest_stamp,
                ..State::default()
            }),
            options: SegmentOptions::default(),
            flushing: Arc::default(),
            flush_resident: Arc::default(),
            retired: Mutex::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A snapshot of the manifest.
    pub fn manifest(&self) -> Manifest {
        self.lock_state().manifest.clone()
    }

    /// The published segments and the buffered batches, consistent with
    /// each other.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock_state();
        Snapshot {
            manifest: state.manifest.clone(),
            buffered: state.buffer.clone(),
        }
    }

    /// True for the one writer of the directory.
    pub fn is_writer(&self) -> bool {
        self.lock.is_some()
    }

    /// Re-reads the manifest from disk, for readers of a directory another
    /// process writes. The writer's own manifest is the one on disk already.
    pub fn reload(&self) -> Result<()> {
        if self.is_writer() {
            return Ok(());
        }
        // Unchanged since the last load (the usual case between queries):
        // keep it rather than parse it again.
        let stamp = FileStamp::of(&self.root.join(manifest::MANIFEST_FILE));
        if stamp.is_some() && stamp == self.lock_state().manifest_stamp {
            return Ok(());
        }
        let m = Manifest::load(&self.root)?;
        let mut state = self.lock_state();
        state.manifest = m;
        state.manifest_stamp = stamp;
        Ok(())
    }

    /// Adds an acknowledged batch to the write buffer. Callers add in WAL
    /// order.
    pub fn buffer_push(&self, batch: Buffered) {
        let mut state = self.lock_state();
        debug_assert!(state.buffer.last().is_none_or(|b| b.lsn < batch.lsn));
        state.buffer_bytes += batch.mem_bytes;
        state.buffer.push(Arc::new(batch));
    }

    /// Memory a segment write (a flush part) holds now beyond the buffered
    /// batches it reads: sort keys, gathered rows, the encoder's row group,
    /// merged dictionaries. 0 between writes.
    pub fn flush_memory(&self) -> usize {
        self.flushing.load(Ordering::Relaxed)
    }

    /// Arrow memory held by the write buffer, and the age of its oldest batch.
    pub fn buffer_usage(&self) -> (usize, Option<Duration>) {
        let state = self.lock_state();
        (
            state.buffer_bytes,
            state.buffer.first().map(|b| b.added.elapsed()),
        )
    }

    pub fn path_of(&self, seg: &SegmentMeta) -> PathBuf {
        self.root.join(&seg.path)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes segment files and temp files the manifest does not list.
    /// Returns how many were removed.
    pub fn remove_unpublished(&self) -> Result<usize> {
        let known: std::collections::HashSet<PathBuf> = self
            .lock_state()
            .manifest
            .segments
            .iter()
            .flat_map(|s| std::iter::once(&s.path).chain(s.id_index.as_ref()))
            .map(|p| self.root.join(p))
            .collect();
        let mut removed = 0;
        for table in [Table::Logs, Table::Rejects] {
            let mut stack = vec![self.root.join(table.dir())];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if !known.contains(&path) {
                        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Writes a batch as one segment per hour it spans and publishes them
    /// in one manifest update. `input_bytes` is the size of the input the
    /// rows came from (shared out by row count).
    pub fn append(
        &self,
        table: Table,
        batch: &RecordBatch,
        input_bytes: u64,
    ) -> Result<Vec<SegmentMeta>> {
        self.append_batches(table, std::slice::from_ref(batch), input_bytes)
    }

    /// [`append`](Self::append) for the rows of several batches (of one
    /// table, under their merged schema) written together.
    pub fn append_batches(
        &self,
        table: Table,
        batches: &[RecordBatch],
        input_bytes: u64,
    ) -> Result<Vec<SegmentMeta>> {
        let batches: Vec<&RecordBatch> = batches.iter().collect();
        let metas = self.write_segments(table, &batches, input_bytes)?;
        if !metas.is_empty() {
            self.publish(&metas, None)?;
        }
        Ok(metas)
    }

    /// The lsn of the newest buffered batch, if any.
    pub fn last_buffered_lsn(&self) -> Option<u64> {
        self.lock_state().buffer.last().map(|b| b.lsn)
    }

    /// Writes the oldest buffered batches, as many as fit in `max_bytes` of
    /// buffer memory and in one row group of rows (at least one batch; all
    /// of them when what would be left is under half of both, so a flush
    /// leaves no small tail of segments behind), into segments and
    /// publishes them with
    /// the WAL checkpoint of the last batch written, removing those batches
    /// from the buffer under the same lock: a snapshot sees each row either
    /// buffered or in a segment. `None` when the buffer was empty.
    ///
    /// The row bound keeps a part's working set (sort keys, row addresses,
    /// merged dictionary keys, the encoder's open row group) proportional
    /// to a row group, whatever the buffer's memory per row.
    pub fn flush_some(&self, max_bytes: usize) -> Result<Option<FlushReport>> {
        let started = std::time::Instant::now();
        let max_rows = self.options.row_group_rows.max(1);
        let taken: Vec<Arc<Buffered>> = {
            let state = self.lock_state();
            let (mut bytes, mut rows) = (0usize, 0usize);
            let mut n = 0;
            for b in &state.buffer {
                let (more_bytes, more_rows) = (bytes.saturating_add(b.mem_bytes), rows + b.rows());
                if n > 0 && (more_bytes > max_bytes || more_rows > max_rows) {
                    break;
                }
                (bytes, rows) = (more_bytes, more_rows);
                n += 1;
            }
            let rest = &state.buffer[n..];
            let rest_bytes: usize = rest.iter().map(|b| b.mem_bytes).sum();
            let rest_rows: usize = rest.iter().map(|b| b.rows()).sum();
            if rest_bytes < max_bytes / 2 && rest_rows < max_rows / 2 {
                n = state.buffer.len();
            }
            state.buffer[..n].to_vec()
        };
        let Some(last) = taken.last() else {
            return Ok(None);
        };
        let checkpoint = last.lsn;
        let resident_start = crate::resident::resident_bytes();
        self.flush_resident.store(resident_start, Ordering::Relaxed);
        let input_bytes: u64 = taken.iter().map(|b| b.input_bytes).sum();
        let mut metas = Vec::new();
        let mut rows = 0;
        for table in [Table::Logs, Table::Rejects] {
            let batches: Vec<&RecordBatch> = taken.iter().flat_map(|b| b.batches(table)).collect();
            rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            let input = if table == Table::Logs { input_bytes } else { 0 };
            metas.extend(self.write_segments(table, &batches, input)?);
        }
        self.publish(&metas, Some(checkpoint))?;
        Ok(Some(FlushReport {
            segments: metas,
            checkpoint,
            rows,
            elapsed: started.elapsed(),
            resident_growth: self
                .flush_resident
                .load(Ordering::Relaxed)
                .saturating_sub(resident_start),
        }))
    }

    /// Adds written segments to the manifest (and moves the WAL checkpoint,
    /// dropping the buffered batches it covers) in one atomic update.
    fn publish(&self, metas: &[SegmentMeta], checkpoint: Option<u64>) -> Result<()> {
        let mut state = self.lock_state();
        let mut next = state.manifest.clone();
        next.segments.extend(metas.iter().cloned());
        if let Some(c) = checkpoint {
            next.wal_checkpoint = next.wal_checkpoint.max(c);
        }
        next.store(&self.root)?;
        state.manifest = next;
        if let Some(c) = checkpoint {
            state.buffer.retain(|b| b.lsn > c);
            state.buffer_bytes = state.buffer.iter().map(|b| b.mem_bytes).sum();
        }
        Ok(())
    }

    /// Merges small segments into one, so that a daemon flushing often
    /// (by age, under memory pressure, at every stop) does not pile up
    /// segments that every publish lists and every query opens.
    ///
    /// A segment is small when it holds fewer rows than a row group. When
    /// one table's hour partition has at least `min_segments` small ones,
    /// the smallest of them are read back and written as one sorted segment
    /// (with its id index), as many as fit in a row group of rows and in
    /// `max_input_bytes` of input; the new segment replaces them in one
    /// manifest update. Queries see the rows once, before or after. The old
    /// files are deleted by [`remove_retired`](Self::remove_retired) after a
    /// grace period, or by the next [`open_writer`](Self::open_writer) after
    /// a crash. One merge per call; `None` when nothing qualifies.
    pub fn compact_some(
        &self,
        min_segments: usize,
        max_input_bytes: u64,
    ) -> Result<Option<CompactReport>> {
        let started = Instant::now();
        let max_rows = self.options.row_group_rows.max(1) as u64;
        let picked = {
            let state = self.lock_state();
            pick_small(
                &state.manifest.segments,
                min_segments.max(2),
                max_rows,
                max_input_bytes,
            )
        };
        let Some(picked) = picked else {
            return Ok(None);
        };
        let table = picked[0].table;
        let mut batches = Vec::new();
        for seg in &picked {
            let path = self.root.join(&seg.path);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
                    .build()?;
            for batch in reader {
                batches.push(batch?);
            }
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let input_bytes = picked.iter().map(|s| s.input_bytes).sum();
        let written = self.write_segments(table, &refs, input_bytes)?;
        drop(batches);
        self.replace(&picked, &written)?;
        let now = Instant::now();
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        for seg in &picked {
            for rel in std::iter::once(&seg.path).chain(seg.id_index.as_ref()) {
                retired.push((now, self.root.join(rel)));
            }
        }
        Ok(Some(CompactReport {
            merged: picked,
            written,
            elapsed: started.elapsed(),
        }))
    }

    /// Deletes the files of segments a compaction unlisted at least `grace`
    /// ago. Returns how many were deleted.
    pub fn remove_retired(&self, grace: Duration) -> usize {
        let due: Vec<PathBuf> = {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            let (due, keep) = retired.drain(..).partition(|(at, _)| at.elapsed() >= grace);
            *retired = keep;
            due.into_iter().map(|(_, p)| p).collect()
        };
        let mut removed = 0;
        for path in due {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Left for the next writer's open, which deletes unlisted files.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a compacted segment")
                }
            }
        }
        removed
    }

    /// Swaps `old` segments for `new` ones in one atomic manifest update.
    fn replace(&self, old: &[SegmentMeta], new: &[SegmentMeta]) -> Result<()> {
        let gone: std::collections::HashSet<u64> = old.iter().map(|s| s.id).collect();
        let mut state = self.lock_state();
        let mut next = state.manifest.clone();
        next.segments.retain(|s| !gone.contains(&s.id));
        next.segments.extend(new.iter().cloned());
        next.store(&self.root)?;
        state.manifest = next;
        Ok(())
    }

    /// Writes the segment files of the rows of `batches` (one per hour they
    /// span), durable but not yet published.
    fn write_segments(
        &self,
        table: Table,
        batches: &[&RecordBatch],
        input_bytes: u64,
    ) -> Result<Vec<SegmentMeta>> {
        let Some(schema) = buffer::merged_schema(table, batches)? else {
            return Ok(Vec::new());
        };
        let all = segment::Rows::new(schema, batches)?;
        let total_rows = all.num_rows() as u64;
        if total_rows == 0 {
            return Ok(Vec::new());
        }
        /// Reports the write done however it ends.
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(0, Ordering::Relaxed);
            }
        }
        let _done = Done(&self.flushing);
        let time_col = match table {
            Table::Logs => model::TIMESTAMP,
            Table::Rejects => model::OBSERVED_AT,
        };
        let columns = Manifest::columns_of(all.schema())?;
        let hours = all.by_hour(time_col)?;
        let addresses = hours.iter().map(|h| h.rows.capacity()).sum::<usize>()
            * std::mem::size_of::<segment::RowAddr>();
        let all = all
            .tracked(Arc::clone(&self.flushing), addresses)
            .watch_resident(Arc::clone(&self.flush_resident));
        let mut metas = Vec::new();
        for mut hour in hours {
            let sorted = match table {
                Table::Logs => Some(all.sort_logs(&mut hour.rows)?),
                Table::Rejects => None,
            };
            let id = {
                let mut state = self.lock_state();
                let id = state.manifest.next_id;
                state.manifest.next_id += 1;
                id
            };
            let rel = partition_path(table, hour.start, id);
            let path = self.root.join(&rel);
            let dir = path.parent().expect("partition directory");
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let logs = sorted.is_some();
            let (id_index, ids) = match sorted {
                Some((index, ids)) => {
                    let rel = rel.replace(".parquet", ".ids");
                    index.write(&self.root.join(&rel))?;
                    (Some(rel), ids)
                }
                None => (None, 0),
            };
            let props = segment::properties(all.schema(), ids, logs, &self.options)?;
            let bytes = segment::write_rows(&path, &all, &hour.rows, props)?;
            let rows = hour.rows.len() as u64;
            metas.push(SegmentMeta {
                id,
                table,
                path: rel,
                id_index,
                min_ts: hour.min_ts,
                max_ts: hour.max_ts,
                rows,
                bytes,
                input_bytes: input_bytes * rows / total_rows,
                columns: columns.clone(),
                row_groups: (rows as usize).div_ceil(self.options.row_group_rows.max(1)),
                created_at: now_nanos(),
            });
        }
        Ok(metas)
    }
}

/// The segments [`DataDir::compact_some`] merges next: in the first table
/// and hour partition (in path order) with at least `min_segments` segments
/// under `max_rows` rows, the smallest of those, as many as fit together in
/// `max_rows` rows and `max_input_bytes` of input; at least two.
fn pick_small(
    segments: &[SegmentMeta],
    min_segments: usize,
    max_rows: u64,
    max_input_bytes: u64,
) -> Option<Vec<SegmentMeta>> {
    let mut partitions: std::collections::BTreeMap<&str, Vec<&SegmentMeta>> =
        std::collections::BTreeMap::new();
    for seg in segments.iter().filter(|s| s.rows < max_rows) {
        // The path names the table's directory and the hour.
        let dir = seg.path.rsplit_once('/').map_or("", |(d, _)| d);
        partitions.entry(dir).or_default().push(seg);
    }
    for mut small in partitions.into_values() {
        if small.len() < min_segments {
            continue;
        }
        small.sort_by_key(|s| (s.rows, s.id));
        let (mut rows, mut input) = (0, 0);
        let fit: Vec<SegmentMeta> = small
            .into_iter()
            .take_while(|s| {
                rows += s.rows;
                input += s.input_bytes;
                rows <= max_rows && input <= max_input_bytes
            })
            .cloned()
            .collect();
        if fit.len() >= 2 {
            return Some(fit);
        }
    }
    None
}

/// `segments/date=YYYY-MM-DD/hour=HH/<id>.parquet`
fn partition_path(table: Table, hour_start: i64, id: u64) -> String {
    let secs = hour_start.div_euclid(1_000_000_000);
    let (y, mo, d) = weft_ingest::time::civil_from_days(secs.div_euclid(86_400));
    let h = secs.rem_euclid(86_400) / 3600;
    format!(
        "{}/date={y:04}-{mo:02}-{d:02}/hour={h:02}/{id:012}.parquet",
        table.dir()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, path: &str, rows: u64, input_bytes: u64) -> SegmentMeta {
        SegmentMeta {
            id,
            table: if path.starts_with("rejects/") {
                Table::Rejects
            } else {
                Table::Logs
            },
            path: path.to_owned(),
            id_index: None,
            min_ts: 0,
            max_ts: 0,
            rows,
            bytes: 1,
            input_bytes,
            columns: Vec::new(),
            row_groups: 1,
            created_at: 0,
        }
    }

    fn ids(picked: Option<Vec<SegmentMeta>>) -> Vec<u64> {
        picked.unwrap_or_default().iter().map(|s| s.id).collect()
    }

    #[test]
    fn compaction_picks_the_smallest_segments_of_one_partition() {
        let a = "segments/date=2024-05-01/hour=10";
        let b = "segments/date=2024-05-01/hour=11";
        let r = "rejects/date=2024-05-01/hour=10";
        let segs = vec![
            seg(1, &format!("{a}/1.parquet"), 50, 10),
            // A full row group: never merged.
            seg(2, &format!("{a}/2.parquet"), 100, 10),
            seg(3, &format!("{b}/3.parquet"), 5, 10),
            seg(4, &format!("{a}/4.parquet"), 30, 10),
            seg(5, &format!("{r}/5.parquet"), 1, 10),
            seg(6, &format!("{a}/6.parquet"), 10, 10),
            seg(7, &format!("{b}/7.parquet"), 5, 10),
            seg(8, &format!("{r}/8.parquet"), 1, 10),
        ];
        // Three small in hour 10 of logs; smallest first, up to 100 rows.
        assert_eq!(ids(pick_small(&segs, 3, 100, u64::MAX)), vec![6, 4, 1]);
        // Fewer rows per merge (all three are still small): the two smallest.
        assert_eq!(ids(pick_small(&segs, 3, 60, u64::MAX)), vec![6, 4]);
        // Less input per merge: the two smallest again.
        assert_eq!(ids(pick_small(&segs, 3, 100, 20)), vec![6, 4]);
        // Two per partition needed: rejects come first in path order, and
        // a table's partitions never mix.
        assert_eq!(ids(pick_small(&segs, 2, 100, u64::MAX)), vec![5, 8]);
        // Nothing when no partition has enough, or one would merge alone.
        assert!(pick_small(&segs, 4, 100, u64::MAX).is_none());
        assert!(pick_small(&segs, 3, 100, 10).is_none());
    }

    #[test]
    fn partition_paths_are_hive_style_by_hour() {
        let t = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(
            partition_path(Table::Logs, t, 7),
            "segments/date=2023-11-14/hour=22/000000000007.parquet"
        );
    }
}
