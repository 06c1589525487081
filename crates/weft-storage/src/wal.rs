//! The daemon's write-ahead log: where an ingested batch becomes durable.
//!
//! It sits at the front of weft-storage's write path in the daemon. The
//! commit thread owns the one [`Wal`]: it appends one record per batch, calls
//! [`Wal::sync`], and acknowledges the writers only once that returns `Ok`.
//! The batch then waits in the write buffer until a flush puts it into
//! segments and moves the manifest's `wal_checkpoint` past it; the WAL files
//! the checkpoint covers are dropped with [`Wal::remove_through`]. On start,
//! [`Wal::open`] hands back every record still here, to be replayed. What a
//! payload holds is the caller's business; this module only keeps it intact.
//!
//! # On disk
//!
//! ```text
//! DIR/00000000000000000001.wal                      records from lsn 1 on
//! DIR/00000000000000004097.wal                      the next file: first lsn 4097
//! DIR/quarantine/00000000000000000001.wal.1700000000  a damaged file, as it was found
//! ```
//! A file is named after the lsn of its first record, in 20 digits, so name
//! order is lsn order. It starts with the 8 bytes `WEFTWAL1`, then records
//! back to back, each a 20-byte header and its payload:
//! ```text
//! len: u32 LE | lsn: u64 LE | body_crc: u32 LE | head_crc: u32 LE | payload: len bytes
//! ```
//! `body_crc` is the CRC-32C of the payload and `head_crc` that of the 16
//! header bytes before it. The header's own checksum is what lets recovery
//! tell a flipped bit in `len` (damage) from a record a crash cut short (a
//! torn tail): without it, a larger `len` would just look like a payload
//! running past the end of the file. `len` is capped at 1 GiB. lsns are the
//! caller's, start at 1 and strictly increase across the whole log.
//!
//! # Durability
//!
//! [`Wal::append`] only encodes into memory. [`Wal::sync`] writes and
//! `fdatasync`s, and creating a file also fsyncs the directory, so once `sync`
//! returns `Ok` every record appended before it survives a crash. After a
//! sync that leaves the file larger than `file_bytes` the file is closed, and
//! a closed file is never written again: a file is complete on disk before
//! the next one exists, so only the last file can end in a torn write. Each
//! [`Wal::open`] starts a new file at its first sync.
//!
//! Any I/O error of an open [`Wal`] poisons it: every later call that
//! writes, syncs or removes fails with [`Error::WalFailed`]. After a failed fsync the kernel may have dropped the
//! dirty pages and marked them clean (PostgreSQL's "fsyncgate"), so a retry
//! that succeeds proves nothing. The way back is to reopen, which replays
//! what really is on disk.
//!
//! # Recovery
//!
//! Files are read in name order and every record must have a higher lsn than
//! the one before it, in its file or an earlier one (and no lower than its
//! file's name). A torn tail is cut off (`set_len`, fsync) and counted in
//! [`Recovery::truncated_bytes`]. It can only be at the end of the last file,
//! which a crash can leave cut short or extended with zeros:
//! - fewer than 20 bytes after the last good record;
//! - a header whose checksum holds but whose payload runs past the end;
//! - a payload checksum mismatch in a record followed by nothing but zeros
//!   (the very last record, or a write the file system sized but never filled);
//! - a header checksum mismatch where everything from inside that header to
//!   the end is zero (a header whose write never completed);
//! - a last file shorter than the magic (a crash right after creating it).
//!
//! Anything else is damage, never skipped in silence: the file is copied
//! as it is into `DIR/quarantine/`, the good records before the damage are
//! kept, and recovery resyncs by scanning forward byte by byte for the next
//! offset holding a whole valid record with a higher lsn, keeping records
//! from there on (again at each further damage). The live file is then
//! rewritten with what was salvaged (temp file, fsync, rename, fsync of the
//! directory), and the loss is reported in [`Recovery::quarantined`]. A file
//! left with no records is removed. Recovery reads whatever bytes it finds
//! and never panics on them.
//!
//! One loss this format cannot see: a file cut exactly at a record boundary
//! looks complete, as there is no per-file trailer to tell. lsns may have
//! gaps, so the next file's name does not tell either.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Error, Result, fsync_dir};

/// Default size after which a WAL file is closed and the next one started.
pub const DEFAULT_FILE_BYTES: u64 = 64 << 20;

/// Largest payload a record may carry.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

const MAGIC: &[u8; 8] = b"WEFTWAL1";
const HEADER: usize = 20;
const SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".tmp";
/// Capacity of the write buffer kept between syncs. A larger group's
/// buffer is freed once written: kept, it would stay resident (outside
/// every memory budget) at the size of the largest group ever committed.
const KEEP_PENDING_BYTES: usize = 4 << 20;
const QUARANTINE: &str = "quarantine";

/// One record read back at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub payload: Vec<u8>,
}

/// What recovery found and did.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Every valid record, in lsn order (across files).
    pub records: Vec<Record>,
    /// WAL files found.
    pub files: usize,
    /// Torn tail cut off the last file.
    pub truncated_bytes: u64,
    /// Files found damaged (see the module docs).
    pub quarantined: Vec<Quarantined>,
}

/// A damaged WAL file: what was lost and where the evidence is.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// The live file, now rewritten with the salvaged records (or removed
    /// when none were).
    pub file: PathBuf,
    /// The file as recovery found it.
    pub copy: PathBuf,
    /// Bytes no record could be read from.
    pub skipped_bytes: u64,
    /// Records kept from this file.
    pub salvaged_records: usize,
    /// Where and what, e.g. "record at byte 4096: payload checksum mismatch".
    pub reason: String,
}

/// A WAL file that is no longer written to.
#[derive(Debug)]
struct Closed {
    path: PathBuf,
    last_lsn: u64,
    bytes: u64,
}

/// The file appends go to.
#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: File,
    /// Highest lsn written to it.
    last_lsn: u64,
    /// Bytes written to it, magic included.
    bytes: u64,
}

/// The write-ahead log. Owned by one thread, which appends and syncs.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file_bytes: u64,
    /// Closed files, oldest first.
    closed: VecDeque<Closed>,
    /// `None` until the next sync with records creates a file.
    active: Option<Active>,
    /// Records appended since the last sync, encoded.
    pending: Vec<u8>,
    /// lsn of the first record in `pending` (when it is not empty): the name
    /// of the file a sync creates.
    pending_first: u64,
    last_lsn: u64,
    /// Why the log stopped accepting calls, after its first I/O error.
    failed: Option<String>,
    /// Makes the next fsync fail, to test poisoning.
    #[cfg(test)]
    fail_next_fsync: bool,
}

impl Wal {
    /// Opens (creating) the WAL directory `dir`, recovers what is there (see
    /// the module docs), and is ready to append after the highest recovered
    /// lsn. A file is closed once a sync leaves it larger than `file_bytes`.
    pub fn open(dir: &Path, file_bytes: u64) -> Result<(Wal, Recovery)> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let (recovery, closed) = recover(dir)?;
        let last_lsn = recovery.records.last().map_or(0, |r| r.lsn);
        let wal = Wal {
            dir: dir.to_owned(),
            file_bytes,
            closed,
            active: None,
            pending: Vec::new(),
            pending_first: 0,
            last_lsn,
            failed: None,
            #[cfg(test)]
            fail_next_fsync: false,
        };
        Ok((wal, recovery))
    }

    /// Appends one record, in memory: it is durable only after the next
    /// [`sync`](Self::sync). `lsn` must be above every lsn appended or
    /// recovered before (so at least 1); a refused record changes nothing.
    pub fn append(&mut self, lsn: u64, payload: &[u8]) -> Result<()> {
        self.append_parts(lsn, &[payload])
    }

    /// [`append`](Self::append) of a payload given in parts, back to back
    /// (a request's header and its body, without joining them first).
    pub fn append_parts(&mut self, lsn: u64, parts: &[&[u8]]) -> Result<()> {
        self.usable()?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if lsn <= self.last_lsn {
            return Err(Error::WalLsnOrder {
                lsn,
                last: self.last_lsn,
            });
        }
        if len > MAX_RECORD_BYTES {
            return Err(Error::WalRecordTooLarge(len));
        }
        if self.pending.is_empty() {
            self.pending_first = lsn;
        }
        encode(lsn, parts, &mut self.pending);
        self.last_lsn = lsn;
        Ok(())
    }

    /// Writes everything appended and fdatasyncs the current file (creating
    /// it first if there is none, which fsyncs the directory too). Then, if
    /// the file is larger than `file_bytes`, closes it: the next sync starts
    /// a new one. Returns how long the fsyncs took (zero when there was
    /// nothing to write).
    pub fn sync(&mut self) -> Result<Duration> {
        self.usable()?;
        let took = self.write_pending().map_err(|e| self.poison(e))?;
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.bytes > self.file_bytes)
        {
            self.close_active();
        }
        Ok(took)
    }

    /// Syncs what was appended, then closes the current file: the next sync
    /// starts a new one. Does nothing more when there is no current file.
    pub fn rotate(&mut self) -> Result<()> {
        self.usable()?;
        self.write_pending().map_err(|e| self.poison(e))?;
        self.close_active();
        Ok(())
    }

    /// Deletes the closed files whose every record has an lsn of at most
    /// `lsn` (never the file being appended to), then fsyncs the directory.
    /// Returns how many were removed.
    pub fn remove_through(&mut self, lsn: u64) -> Result<usize> {
        self.usable()?;
        self.remove_closed(lsn).map_err(|e| self.poison(e))
    }

    /// Bytes in live WAL files, appends not yet synced included.
    pub fn bytes(&self) -> u64 {
        let closed: u64 = self.closed.iter().map(|c| c.bytes).sum();
        let active = self.active.as_ref().map_or(0, |a| a.bytes);
        closed + active + self.pending.len() as u64
    }

    /// Highest lsn appended or recovered (0 if none).
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn usable(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(Error::WalFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Remembers the first failure; the caller still gets the error itself.
    fn poison(&mut self, e: Error) -> Error {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    fn write_pending(&mut self) -> Result<Duration> {
        if self.pending.is_empty() {
            return Ok(Duration::ZERO);
        }
        let created = self.active.is_none();
        let mut active = match self.active.take() {
            Some(active) => active,
            None => Active::create(&self.dir, self.pending_first)?,
        };
        let path = active.path.clone();
        let written = active.file.write_all(&self.pending);
        if written.is_ok() {
            active.bytes += self.pending.len() as u64;
        }
        let started = Instant::now();
        let synced = written
            .and_then(|()| self.fault())
            .and_then(|()| active.file.sync_data());
        // Kept on failure too, so that `bytes` still counts the file.
        self.active = Some(active);
        synced.map_err(|e| Error::io(&path, e))?;
        if created {
            fsync_dir(&self.dir)?;
        }
        let took = started.elapsed();
        if let Some(active) = &mut self.active {
            active.last_lsn = self.last_lsn;
        }
        if self.pending.capacity() > KEEP_PENDING_BYTES {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        Ok(took)
    }

    fn close_active(&mut self) {
        // Everything in it is synced: dropping the handle loses nothing.
        if let Some(a) = self.active.take() {
            self.closed.push_back(Closed {
                path: a.path,
                last_lsn: a.last_lsn,
                bytes: a.bytes,
            });
        }
    }

    fn remove_closed(&mut self, lsn: u64) -> Result<usize> {
        let mut removed = 0;
        // lsns rise from file to file, so the covered files are a prefix.
        while let Some(file) = self.closed.front().filter(|c| c.last_lsn <= lsn) {
            fs::remove_file(&file.path).map_err(|e| Error::io(&file.path, e))?;
            self.closed.pop_front();
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Makes the next fsync fail, for tests of what follows a failure.
    #[cfg(test)]
    pub(crate) fn fail_next_fsync(&mut self) {
        self.fail_next_fsync = true;
    }

    #[cfg(test)]
    fn fault(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.fail_next_fsync) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn fault(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Active {
    /// Creates the file named after `first_lsn` and writes the magic; the
    /// caller's sync makes both durable.
    fn create(dir: &Path, first_lsn: u64) -> Result<Active> {
        let path = dir.join(file_name(first_lsn));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.write_all(MAGIC).map_err(|e| Error::io(&path, e))?;
        Ok(Active {
            path,
            file,
            last_lsn: 0,
            bytes: MAGIC.len() as u64,
        })
    }
}

fn file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SUFFIX}")
}

/// The first lsn of a WAL file's name, `None` for any other name.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode(lsn: u64, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_RECORD_BYTES);
    let crc = parts
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    out.reserve(HEADER + len);
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    let head_crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&head_crc.to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Why the bytes at an offset are not a whole valid record.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// Fewer than [`HEADER`] bytes left.
    ShortHeader,
    HeadCrc,
    TooLong(u32),
    /// The header holds but the payload runs past the end of the file.
    PastEnd,
    /// The payload fails its checksum; the record would end at `end`.
    BodyCrc {
        end: usize,
    },
}

/// A record that checks out: lsn and payload length.
#[derive(Debug)]
struct Decoded {
    lsn: u64,
    len: usize,
}

/// Decodes the record at the start of `b`, checking both checksums.
fn decode(b: &[u8]) -> Result<Decoded, Bad> {
    let Some(head) = b.get(..HEADER) else {
        return Err(Bad::ShortHeader);
    };
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if crc32c::crc32c(&head[..16]) != u32_at(16) {
        return Err(Bad::HeadCrc);
    }
    let len = u32_at(0);
    if len as usize > MAX_RECORD_BYTES {
        return Err(Bad::TooLong(len));
    }
    let mut lsn = [0; 8];
    lsn.copy_from_slice(&head[4..12]);
    let end = HEADER + len as usize;
    let Some(payload) = b.get(HEADER..end) else {
        return Err(Bad::PastEnd);
    };
    if crc32c::crc32c(payload) != u32_at(12) {
        return Err(Bad::BodyCrc { end });
    }
    Ok(Decoded {
        lsn: u64::from_le_bytes(lsn),
        len: len as usize,
    })
}

/// Where a run of good records stopped.
#[derive(Debug)]
enum Stop {
    /// At the end of the file.
    End,
    /// At a torn tail: the rest of the file is an interrupted write.
    Torn,
    /// At damage: what is here is not the record that should follow.
    Damaged(String),
}

/// One file being read.
struct FileReader<'a> {
    bytes: &'a [u8],
    /// The last file, the only one that may end in a torn tail.
    last_file: bool,
    /// Where the trailing run of zero bytes starts (`bytes.len()` if none).
    zeros_from: usize,
}

impl FileReader<'_> {
    /// Reads records from `pos` while they check out and have lsns above
    /// `prev`. Returns the offset it stopped at and why.
    fn scan(&self, mut pos: usize, prev: &mut u64, out: &mut Vec<Record>) -> (usize, Stop) {
        loop {
            let rest = &self.bytes[pos..];
            if rest.is_empty() {
                return (pos, Stop::End);
            }
            let stop = match decode(rest) {
                Ok(d) if d.lsn > *prev => {
                    out.push(Record {
                        lsn: d.lsn,
                        payload: rest[HEADER..HEADER + d.len].to_vec(),
                    });
                    *prev = d.lsn;
                    pos += HEADER + d.len;
                    continue;
                }
                Ok(d) => Stop::Damaged(format!("lsn {} is out of order (after {})", d.lsn, prev)),
                Err(Bad::ShortHeader) if self.last_file => Stop::Torn,
                Err(Bad::ShortHeader) => Stop::Damaged(format!(
                    "{} bytes left at the end of a closed file, too few for a header",
                    rest.len()
                )),
                Err(Bad::HeadCrc) if self.last_file && self.zeros_from < pos + HEADER => Stop::Torn,
                Err(Bad::HeadCrc) => Stop::Damaged("header checksum mismatch".into()),
                Err(Bad::TooLong(len)) => Stop::Damaged(format!(
                    "length {len} is over the {MAX_RECORD_BYTES}-byte cap"
                )),
                Err(Bad::PastEnd) if self.last_file => Stop::Torn,
                Err(Bad::PastEnd) => {
                    Stop::Damaged("payload runs past the end of a closed file".into())
                }
                Err(Bad::BodyCrc { end }) if self.last_file && self.zeros_from <= pos + end => {
                    Stop::Torn
                }
                Err(Bad::BodyCrc { .. }) => Stop::Damaged("payload checksum mismatch".into()),
            };
            return (pos, stop);
        }
    }

    /// The first offset from `from` on that holds a whole valid record with
    /// an lsn above `prev`.
    fn resync(&self, from: usize, prev: u64) -> Option<usize> {
        (from..self.bytes.len())
            .find(|&p| matches!(decode(&self.bytes[p..]), Ok(d) if d.lsn > prev))
    }

    /// Reads the whole file: its records, and what could not be read.
    fn read(&self, prev: &mut u64) -> FileScan {
        let len = self.bytes.len();
        let mut s = FileScan::default();
        let mut next = if self.bytes.starts_with(MAGIC) {
            Some(MAGIC.len())
        } else if self.last_file && len < MAGIC.len() {
            s.torn_bytes = len as u64;
            None
        } else {
            s.damage
                .push("file header: not a weft WAL file (bad magic)".into());
            let found = self.resync(1, *prev);
            s.skipped_bytes += found.unwrap_or(len) as u64;
            found
        };
        while let Some(pos) = next {
            let (at, stop) = self.scan(pos, prev, &mut s.records);
            s.good_end = at as u64;
            next = match stop {
                Stop::End => None,
                Stop::Torn => {
                    s.torn_bytes += (len - at) as u64;
                    None
                }
                Stop::Damaged(reason) => {
                    s.damage.push(format!("record at byte {at}: {reason}"));
                    let found = self.resync(at + 1, *prev);
                    s.skipped_bytes += (found.unwrap_or(len) - at) as u64;
                    found
                }
            };
        }
        s
    }
}

/// What one file held.
#[derive(Debug, Default)]
struct FileScan {
    records: Vec<Record>,
    /// End of the last good record the scan stopped after.
    good_end: u64,
    torn_bytes: u64,
    skipped_bytes: u64,
    /// Each damaged spot, for [`Quarantined::reason`].
    damage: Vec<String>,
}

fn read_file(path: &Path, last_file: bool, prev: &mut u64) -> Result<(Vec<u8>, FileScan)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let reader = FileReader {
        bytes: &bytes,
        last_file,
        zeros_from: bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1),
    };
    let scan = reader.read(prev);
    Ok((bytes, scan))
}

/// Reads every WAL file in `dir`, repairs what it must (see the module
/// docs), and returns what it found with the files that still hold records.
fn recover(dir: &Path) -> Result<(Recovery, VecDeque<Closed>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if !entry
            .file_type()
            .map_err(|e| Error::io(&path, e))?
            .is_file()
        {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(first) = parse_name(name) {
            files.push((first, path));
        } else if name.strip_suffix(TMP_SUFFIX).and_then(parse_name).is_some() {
            // A rewrite a crash interrupted before its rename: the file it
            // was to replace is still there, intact.
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    files.sort();

    let mut recovery = Recovery {
        files: files.len(),
        ..Recovery::default()
    };
    let mut live = VecDeque::new();
    let mut prev = 0;
    for (i, (first, path)) in files.iter().enumerate() {
        let last_file = i + 1 == files.len();
        // A file holds its name's lsn and later ones.
        prev = prev.max(first.saturating_sub(1));
        let (bytes, scan) = read_file(path, last_file, &mut prev)?;
        recovery.truncated_bytes += scan.torn_bytes;
        let size = if !scan.damage.is_empty() {
            let copy = quarantine(dir, path, &bytes)?;
            recovery.quarantined.push(Quarantined {
                file: path.clone(),
                copy,
                skipped_bytes: scan.skipped_bytes,
                salvaged_records: scan.records.len(),
                reason: summarize(&scan.damage),
            });
            if scan.records.is_empty() {
                remove(path)?;
                0
            } else {
                rewrite(path, &scan.records)?
            }
        } else if scan.records.is_empty() {
            remove(path)?;
            0
        } else if scan.torn_bytes > 0 {
            truncate(path, scan.good_end)?;
            scan.good_end
        } else {
            if last_file {
                // Written, but perhaps never synced: the process may have
                // died between its write and its fsync. What is replayed
                // must be durable before anything is built on it.
                sync_file(path)?;
            }
            bytes.len() as u64
        };
        if let Some(last) = scan.records.last() {
            live.push_back(Closed {
                path: path.clone(),
                last_lsn: last.lsn,
                bytes: size,
            });
        }
        recovery.records.extend(scan.records);
    }
    // Makes removals and renames durable, and the entry of a file whose
    // creation a crash interrupted before its directory fsync.
    fsync_dir(dir)?;
    Ok((recovery, live))
}

/// The reasons of a file's damaged spots, in one line.
fn summarize(damage: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut reason = damage[..damage.len().min(SHOWN)].join("; ");
    if damage.len() > SHOWN {
        reason.push_str(&format!("; and {} more", damage.len() - SHOWN));
    }
    reason
}

/// Saves `bytes`, the damaged file as found, under `DIR/quarantine/`.
fn quarantine(dir: &Path, file: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let qdir = dir.join(QUARANTINE);
    fs::create_dir_all(&qdir).map_err(|e| Error::io(&qdir, e))?;
    fsync_dir(dir)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Never overwrite an earlier copy: the same file may be found damaged
    // again within the second (a crash before its rewrite was renamed).
    let mut n = 0u64;
    let (copy, mut out) = loop {
        let copy = match n {
            0 => qdir.join(format!("{name}.{secs}")),
            n => qdir.join(format!("{name}.{secs}.{n}")),
        };
        match OpenOptions::new().write(true).create_new(true).open(&copy) {
            Ok(out) => break (copy, out),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(Error::io(&copy, e)),
        }
    };
    out.write_all(bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| Error::io(&copy, e))?;
    fsync_dir(&qdir)?;
    Ok(copy)
}

/// Replaces `path` with a file holding just `records`. Returns its size.
/// The caller fsyncs the directory.
fn rewrite(path: &Path, records: &[Record]) -> Result<u64> {
    let mut out = MAGIC.to_vec();
    for r in records {
        encode(r.lsn, &[&r.payload], &mut out);
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(&out)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(out.len() as u64)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(|e| Error::io(path, e))
}

fn sync_file(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Removes a file; the caller fsyncs the directory.
fn remove(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// A payload that differs per lsn, varies in length and never ends in
    /// a zero byte (so a damaged record is never mistaken for a zero tail).
    fn payload(lsn: u64) -> Vec<u8> {
        format!("record {lsn};")
            .repeat(lsn as usize % 5 + 1)
            .into_bytes()
    }

    fn open(dir: &Path) -> (Wal, Recovery) {
        Wal::open(dir, DEFAULT_FILE_BYTES).unwrap()
    }

    /// Appends `lsns` with their [`payload`] and syncs, into one new file.
    /// Returns that file.
    fn write_records(dir: &Path, lsns: impl IntoIterator<Item = u64>) -> PathBuf {
        let (mut wal, _) = open(dir);
        for lsn in lsns {
            wal.append(lsn, &payload(lsn)).unwrap();
        }
        wal.sync().unwrap();
        wal.active.as_ref().unwrap().path.clone()
    }

    fn wal_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        files.sort();
        files
    }

    fn lsns(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.lsn).collect()
    }

    fn assert_payloads(records: &[Record]) {
        for r in records {
            assert_eq!(r.payload, payload(r.lsn), "payload of lsn {}", r.lsn);
        }
    }

    fn encoded(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(lsn, &[payload], &mut out);
        out
    }

    /// A whole file holding `lsns` with their [`payload`].
    fn file_of(lsns: &[u64]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for &lsn in lsns {
            encode(lsn, &[&payload(lsn)], &mut out);
        }
        out
    }

    /// (lsn, start, end) of each record of an undamaged file, found by
    /// walking the `len` fields without checking anything.
    fn record_spans(bytes: &[u8]) -> Vec<(u64, usize, usize)> {
        let mut spans = Vec::new();
        let mut pos = MAGIC.len();
        while pos + HEADER <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            let lsn = u64::from_le_bytes(bytes[pos + 4..pos + 12].try_into().unwrap());
            spans.push((lsn, pos, pos + HEADER + len));
            pos += HEADER + len;
        }
        spans
    }

    fn damage(path: &Path, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut bytes = fs::read(path).unwrap();
        f(&mut bytes);
        fs::write(path, &bytes).unwrap();
        bytes
    }

    #[test]
    fn decode_tells_each_kind_of_damage_apart() {
        let good = encoded(7, b"hello");
        let d = decode(&good).unwrap();
        assert_eq!((d.lsn, d.len), (7, 5));
        assert_eq!(decode(&good[..19]).unwrap_err(), Bad::ShortHeader);
        assert_eq!(decode(&good[..22]).unwrap_err(), Bad::PastEnd);
        let mut flipped = good.clone();
        flipped[1] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), Bad::HeadCrc);
        let mut flipped = good.clone();
        flipped[HEADER] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), Bad::BodyCrc { end: 25 });
        let mut huge = encoded(7, b"");
        huge[..4].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
        let crc = crc32c::crc32c(&huge[..16]);
        huge[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&huge).unwrap_err(),
            Bad::TooLong(MAX_RECORD_BYTES as u32 + 1)
        );
    }

    #[test]
    fn a_record_appended_in_parts_is_the_parts_joined() {
        assert_eq!(encoded(9, b"head and body"), {
            let mut out = Vec::new();
            encode(9, &[b"head", b"", b" and body"], &mut out);
            out
        });
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(tmp.path(), 1 << 20).unwrap();
        wal.append_parts(1, &[b"{\"a\":", b"1}"]).unwrap();
        wal.append(2, b"whole").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(tmp.path(), 1 << 20).unwrap();
        let got: Vec<(u64, &[u8])> = rec
            .records
            .iter()
            .map(|r| (r.lsn, r.payload.as_slice()))
            .collect();
        assert_eq!(got, [(1, &b"{\"a\":1}"[..]), (2, &b"whole"[..])]);
    }

    #[test]
    fn a_large_group_s_buffer_is_not_kept_after_it_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(tmp.path(), 64 << 20).unwrap();
        let big = vec![7u8; KEEP_PENDING_BYTES];
        wal.append(1, &big).unwrap();
        wal.append(2, b"small").unwrap();
        assert!(wal.pending.capacity() > KEEP_PENDING_BYTES);
        wal.sync().unwrap();
        assert_eq!(wal.pending.capacity(), 0);
        // A small group's buffer is reused.
        wal.append(3, b"small").unwrap();
        wal.sync().unwrap();
        let kept = wal.pending.capacity();
        assert!(kept > 0 && kept <= KEEP_PENDING_BYTES, "{kept}");
        drop(wal);
        let (_, rec) = Wal::open(tmp.path(), 64 << 20).unwrap();
        assert_eq!(lsns(&rec.records), [1, 2, 3]);
        assert_eq!(rec.records[0].payload, big);
    }

    #[test]
    fn file_names_are_the_first_lsn_in_20_digits() {
        assert_eq!(file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("00000000000000000042.wal"), Some(42));
        assert_eq!(parse_name("0000000000000000042.wal"), None);
        assert_eq!(parse_name("0000000000000000004x.wal"), None);
        assert_eq!(parse_name("99999999999999999999.wal"), None);
        assert_eq!(parse_name("00000000000000000042.wal.tmp"), None);
    }

    #[test]
    fn round_trip_of_many_records_across_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let (mut wal, rec) = Wal::open(&dir, 256).unwrap();
        assert!(rec.records.is_empty());
        assert_eq!(rec.files, 0);
        for lsn in 1..=200 {
            wal.append(lsn, &payload(lsn)).unwrap();
            if lsn % 3 == 0 {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        let bytes = wal.bytes();
        drop(wal);

        let files = wal_files(&dir);
        assert!(files.len() > 10, "{} files", files.len());
        let mut on_disk = 0;
        for (i, file) in files.iter().enumerate() {
            let b = fs::read(file).unwrap();
            on_disk += b.len() as u64;
            assert_eq!(&b[..8], MAGIC);
            let first = decode(&b[8..]).unwrap().lsn;
            let name = file.file_name().unwrap().to_str().unwrap();
            assert_eq!(name, file_name(first));
            // Closed at the first sync that took it past the limit.
            if i + 1 < files.len() {
                assert!(b.len() > 256, "{name} closed at {} bytes", b.len());
            }
        }
        assert_eq!(on_disk, bytes);

        let (wal, rec) = Wal::open(&dir, 256).unwrap();
        assert_eq!(lsns(&rec.records), (1..=200).collect::<Vec<_>>());
        assert_payloads(&rec.records);
        assert_eq!(rec.files, files.len());
        assert_eq!(rec.truncated_bytes, 0);
        assert!(rec.quarantined.is_empty());
        assert_eq!(wal.last_lsn(), 200);
        assert_eq!(wal.bytes(), bytes);
        assert_eq!(wal.dir(), dir);
    }

    #[test]
    fn reopen_after_clean_close_continues_after_the_last_lsn() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1..=5);
        let (mut wal, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 5]);
        assert_eq!(wal.last_lsn(), 5);
        assert!(matches!(
            wal.append(5, b"again"),
            Err(Error::WalLsnOrder { lsn: 5, last: 5 })
        ));
        wal.append(6, &payload(6)).unwrap();
        wal.append(9, &payload(9)).unwrap();
        wal.sync().unwrap();
        drop(wal);

        let (wal, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 5, 6, 9]);
        assert_payloads(&rec.records);
        assert_eq!(wal.last_lsn(), 9);
        // Each open starts a new file.
        let names: Vec<_> = wal_files(tmp.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, [file_name(1), file_name(6)]);
    }

    #[test]
    fn appends_are_durable_only_after_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        for lsn in 1..=3 {
            wal.append(lsn, &payload(lsn)).unwrap();
        }
        assert_eq!(wal_files(tmp.path()).len(), 0, "append wrote a file");
        assert!(wal.sync().is_ok());
        let synced = fs::read(&wal_files(tmp.path())[0]).unwrap().len() as u64;
        assert_eq!(wal.bytes(), synced);
        wal.append(4, &payload(4)).unwrap();
        assert_eq!(wal.bytes(), synced + encoded(4, &payload(4)).len() as u64);
        assert_eq!(wal.last_lsn(), 4);
        drop(wal);

        let (_, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 3]);
    }

    /// Writes records 1..=5 into one file, appends `tail` as a crash might
    /// leave it, and checks that recovery cuts exactly the tail and that the
    /// log goes on from there.
    fn assert_torn_tail_is_cut(tail: &[u8]) {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=5);
        let clean = fs::read(&file).unwrap();
        damage(&file, |b| b.extend_from_slice(tail));

        let (mut wal, rec) = open(tmp.path());
        assert!(rec.quarantined.is_empty(), "{:?}", rec.quarantined);
        assert_eq!(rec.truncated_bytes, tail.len() as u64);
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 5]);
        assert_payloads(&rec.records);
        assert_eq!(fs::read(&file).unwrap(), clean);
        assert_eq!(wal.bytes(), clean.len() as u64);

        wal.append(6, &payload(6)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = open(tmp.path());
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn torn_tail_partial_header_is_cut() {
        assert_torn_tail_is_cut(&encoded(6, &payload(6))[..7]);
    }

    #[test]
    fn torn_tail_partial_payload_is_cut() {
        let record = encoded(6, &payload(6));
        assert_torn_tail_is_cut(&record[..record.len() - 3]);
    }

    #[test]
    fn torn_tail_last_record_with_bad_payload_crc_is_cut() {
        let mut record = encoded(6, &payload(6));
        *record.last_mut().unwrap() ^= 0x01;
        assert_torn_tail_is_cut(&record);
    }

    #[test]
    fn torn_tail_of_zeros_is_cut() {
        assert_torn_tail_is_cut(&[0; 4096]);
    }

    #[test]
    fn torn_tail_zero_filled_after_a_partial_write_is_cut() {
        // The payload's second half never reached the disk.
        let mut record = encoded(6, &payload(6));
        let half = HEADER + (record.len() - HEADER) / 2;
        record[half..].fill(0);
        record.extend_from_slice(&[0; 1000]);
        assert_torn_tail_is_cut(&record);
        // Nor did the end of the header.
        let mut record = encoded(6, &payload(6))[..10].to_vec();
        record.extend_from_slice(&[0; 4096]);
        assert_torn_tail_is_cut(&record);
    }

    #[test]
    fn last_file_shorter_than_the_magic_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1..=5);
        let stub = tmp.path().join(file_name(6));
        fs::write(&stub, b"WEF").unwrap();

        let (mut wal, rec) = open(tmp.path());
        assert_eq!(rec.files, 2);
        assert_eq!(rec.truncated_bytes, 3);
        assert!(rec.quarantined.is_empty());
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 5]);
        assert!(!stub.exists());
        // The name is free again for the file the next sync creates.
        wal.append(6, &payload(6)).unwrap();
        wal.sync().unwrap();
        assert_eq!(&fs::read(&stub).unwrap()[..8], MAGIC);
    }

    #[test]
    fn payload_bit_flip_mid_file_is_quarantined_and_later_records_salvaged() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=10);
        let (_, start, end) = record_spans(&fs::read(&file).unwrap())[3];
        let found = damage(&file, |b| b[start + HEADER + 2] ^= 0x10);

        let (wal, rec) = open(tmp.path());
        let kept = [1, 2, 3, 5, 6, 7, 8, 9, 10];
        assert_eq!(lsns(&rec.records), kept);
        assert_payloads(&rec.records);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(rec.quarantined.len(), 1);
        let q = &rec.quarantined[0];
        assert_eq!(q.file, file);
        assert_eq!(q.copy.parent().unwrap(), tmp.path().join("quarantine"));
        assert_eq!(fs::read(&q.copy).unwrap(), found);
        assert_eq!(q.skipped_bytes, (end - start) as u64);
        assert_eq!(q.salvaged_records, 9);
        assert_eq!(
            q.reason,
            format!("record at byte {start}: payload checksum mismatch")
        );
        // The live file holds exactly what was salvaged.
        assert_eq!(fs::read(&file).unwrap(), file_of(&kept));
        assert_eq!(wal.bytes(), file_of(&kept).len() as u64);
        drop(wal);

        let (_, again) = open(tmp.path());
        assert!(again.quarantined.is_empty());
        assert_eq!(again.records, rec.records);
    }

    #[test]
    fn len_bit_flip_mid_file_is_corruption_not_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=10);
        let (_, start, end) = record_spans(&fs::read(&file).unwrap())[3];
        // len grows by 1 MiB: past the end of the file, like a torn record.
        damage(&file, |b| b[start + 2] ^= 0x10);

        let (_, rec) = open(tmp.path());
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(lsns(&rec.records), [1, 2, 3, 5, 6, 7, 8, 9, 10]);
        assert_payloads(&rec.records);
        assert_eq!(rec.quarantined.len(), 1);
        let q = &rec.quarantined[0];
        assert_eq!(q.skipped_bytes, (end - start) as u64);
        assert_eq!(q.salvaged_records, 9);
        assert_eq!(
            q.reason,
            format!("record at byte {start}: header checksum mismatch")
        );
    }

    #[test]
    fn len_bit_flip_in_the_last_record_is_corruption_not_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=10);
        let (_, start, end) = record_spans(&fs::read(&file).unwrap())[9];
        damage(&file, |b| b[start + 2] ^= 0x10);

        let (_, rec) = open(tmp.path());
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(lsns(&rec.records), (1..=9).collect::<Vec<_>>());
        assert_eq!(rec.quarantined.len(), 1);
        assert_eq!(rec.quarantined[0].skipped_bytes, (end - start) as u64);
    }

    #[test]
    fn oversized_len_with_a_valid_header_crc_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=2);
        let mut header = encoded(3, b"");
        header[..4].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
        let crc = crc32c::crc32c(&header[..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        let at = fs::read(&file).unwrap().len();
        damage(&file, |b| b.extend_from_slice(&header));

        let (_, rec) = open(tmp.path());
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(lsns(&rec.records), [1, 2]);
        assert_eq!(rec.quarantined.len(), 1);
        assert_eq!(
            rec.quarantined[0].reason,
            format!("record at byte {at}: length 1073741825 is over the 1073741824-byte cap")
        );
        assert_eq!(rec.quarantined[0].skipped_bytes, HEADER as u64);
    }

    #[test]
    fn two_damaged_records_in_one_file_are_both_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=10);
        let spans = record_spans(&fs::read(&file).unwrap());
        let (_, s3, e3) = spans[2];
        let (_, s7, e7) = spans[6];
        damage(&file, |b| {
            b[e3 - 1] ^= 0x80;
            b[s7 + 5] ^= 0x01;
        });

        let (_, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 4, 5, 6, 8, 9, 10]);
        let q = &rec.quarantined[0];
        assert_eq!(q.skipped_bytes, (e3 - s3 + e7 - s7) as u64);
        assert_eq!(
            q.reason,
            format!(
                "record at byte {s3}: payload checksum mismatch; \
                 record at byte {s7}: header checksum mismatch"
            )
        );
    }

    /// Writes records 1..=5 and 6..=10 into two files and damages the first,
    /// which a later file proves was complete.
    fn damage_closed_file(f: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf, Recovery) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        for lsn in 1..=10 {
            wal.append(lsn, &payload(lsn)).unwrap();
            if lsn == 5 {
                wal.rotate().unwrap();
            }
        }
        wal.sync().unwrap();
        drop(wal);
        let first = wal_files(tmp.path())[0].clone();
        assert_eq!(first, tmp.path().join(file_name(1)));
        damage(&first, f);
        let (_, rec) = open(tmp.path());
        (tmp, first, rec)
    }

    #[test]
    fn torn_looking_end_of_a_closed_file_is_quarantined() {
        let start_of_5 = record_spans(&file_of(&[1, 2, 3, 4, 5]))[4].1;
        for (cut_to, reason) in [
            // Into the payload of lsn 5.
            (None, "payload runs past the end of a closed file"),
            // Into its header.
            (
                Some(start_of_5 + 10),
                "10 bytes left at the end of a closed file",
            ),
        ] {
            let (_tmp, first, rec) =
                damage_closed_file(|b| b.truncate(cut_to.unwrap_or(b.len() - 3)));
            assert_eq!(rec.truncated_bytes, 0);
            assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 6, 7, 8, 9, 10]);
            assert_eq!(rec.quarantined.len(), 1);
            let q = &rec.quarantined[0];
            assert_eq!(q.file, first);
            assert!(q.reason.contains(reason), "{}", q.reason);
            assert_eq!(fs::read(&first).unwrap(), file_of(&[1, 2, 3, 4]));
        }
    }

    #[test]
    fn bad_last_record_of_a_closed_file_is_quarantined() {
        let (_tmp, first, rec) = damage_closed_file(|b| *b.last_mut().unwrap() ^= 0x04);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 6, 7, 8, 9, 10]);
        assert_eq!(rec.quarantined.len(), 1);
        assert_eq!(rec.quarantined[0].file, first);
        assert!(
            rec.quarantined[0]
                .reason
                .ends_with("payload checksum mismatch")
        );
    }

    #[test]
    fn closed_file_with_nothing_salvageable_is_removed() {
        let (tmp, first, rec) = damage_closed_file(|b| b.truncate(5));
        assert_eq!(lsns(&rec.records), [6, 7, 8, 9, 10]);
        assert_eq!(rec.quarantined.len(), 1);
        assert_eq!(rec.quarantined[0].salvaged_records, 0);
        assert_eq!(rec.quarantined[0].skipped_bytes, 5);
        assert!(!first.exists());
        assert!(rec.quarantined[0].copy.exists());
        assert_eq!(wal_files(tmp.path()).len(), 1);
    }

    #[test]
    fn bad_magic_is_corruption_and_the_records_are_salvaged() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_records(tmp.path(), 1..=5);
        damage(&file, |b| b[0] = b'X');
        let (_, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 3, 4, 5]);
        assert_eq!(rec.quarantined.len(), 1);
        assert_eq!(rec.quarantined[0].skipped_bytes, 8);
        assert!(rec.quarantined[0].reason.contains("bad magic"));
        assert_eq!(&fs::read(&file).unwrap()[..8], MAGIC);
    }

    #[test]
    fn lsn_going_backwards_is_corruption() {
        // Within a file.
        let tmp = tempfile::tempdir().unwrap();
        let bytes = file_of(&[1, 2, 5, 3, 4, 6]);
        let spans = record_spans(&bytes);
        let (at3, at6) = (spans[3].1, spans[5].1);
        fs::write(tmp.path().join(file_name(1)), &bytes).unwrap();
        let (_, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 5, 6]);
        // One damaged spot: resync looks past lsn 4 too, which is no
        // higher than 5.
        assert_eq!(
            rec.quarantined[0].reason,
            format!("record at byte {at3}: lsn 3 is out of order (after 5)")
        );
        assert_eq!(rec.quarantined[0].skipped_bytes, (at6 - at3) as u64);

        // Across files.
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(file_name(1)), file_of(&[1, 2, 3, 7])).unwrap();
        fs::write(tmp.path().join(file_name(4)), file_of(&[4, 8])).unwrap();
        let (wal, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [1, 2, 3, 7, 8]);
        assert_eq!(rec.quarantined.len(), 1);
        assert_eq!(rec.quarantined[0].file, tmp.path().join(file_name(4)));
        assert_eq!(wal.last_lsn(), 8);

        // Below the lsn its file is named after.
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(file_name(10)), file_of(&[3, 11])).unwrap();
        let (_, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [11]);
        assert_eq!(rec.quarantined.len(), 1);
    }

    #[test]
    fn remove_through_deletes_only_covered_closed_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        for lsn in 1..=10 {
            wal.append(lsn, &payload(lsn)).unwrap();
            if lsn % 3 == 0 {
                wal.rotate().unwrap();
            }
        }
        wal.sync().unwrap();
        let names = |dir: &Path| -> Vec<String> {
            wal_files(dir)
                .iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(tmp.path()),
            [file_name(1), file_name(4), file_name(7), file_name(10)]
        );
        assert_eq!(wal.remove_through(0).unwrap(), 0);
        // File 4 still holds lsn 6.
        assert_eq!(wal.remove_through(5).unwrap(), 1);
        assert_eq!(
            names(tmp.path()),
            [file_name(4), file_name(7), file_name(10)]
        );
        assert_eq!(wal.remove_through(6).unwrap(), 1);
        // File 10 is the one being appended to.
        assert_eq!(wal.remove_through(100).unwrap(), 1);
        assert_eq!(names(tmp.path()), [file_name(10)]);
        let active = fs::read(tmp.path().join(file_name(10))).unwrap();
        assert_eq!(wal.bytes(), active.len() as u64);
        wal.append(11, &payload(11)).unwrap();
        wal.sync().unwrap();
        drop(wal);

        // Recovered files are closed files too.
        let (mut wal, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [10, 11]);
        assert_eq!(wal.remove_through(10).unwrap(), 0);
        assert_eq!(wal.remove_through(11).unwrap(), 1);
        assert!(wal_files(tmp.path()).is_empty());
        assert_eq!(wal.bytes(), 0);
        assert_eq!(wal.last_lsn(), 11);
        wal.append(12, b"on").unwrap();
    }

    #[test]
    fn append_refuses_lsns_that_do_not_increase() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        assert!(matches!(
            wal.append(0, b"x"),
            Err(Error::WalLsnOrder { lsn: 0, last: 0 })
        ));
        wal.append(5, &payload(5)).unwrap();
        assert!(matches!(
            wal.append(5, b"x"),
            Err(Error::WalLsnOrder { lsn: 5, last: 5 })
        ));
        assert!(matches!(
            wal.append(4, b"x"),
            Err(Error::WalLsnOrder { lsn: 4, last: 5 })
        ));
        // Only reserved, never touched: the allocation costs no memory.
        let huge = vec![0; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            wal.append(6, &huge),
            Err(Error::WalRecordTooLarge(n)) if n == MAX_RECORD_BYTES + 1
        ));
        drop(huge);
        // Refusals are the caller's mistakes and leave the log usable.
        wal.append(6, &payload(6)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = open(tmp.path());
        assert_eq!(lsns(&rec.records), [5, 6]);
        assert_payloads(&rec.records);
    }

    #[test]
    fn failed_fsync_poisons_the_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        wal.append(1, b"one").unwrap();
        wal.sync().unwrap();
        wal.append(2, b"two").unwrap();
        wal.fail_next_fsync = true;
        let err = wal.sync().unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        // The fault is gone, but a later sync must not claim success.
        for err in [
            wal.sync().unwrap_err(),
            wal.append(3, b"three").unwrap_err(),
            wal.rotate().unwrap_err(),
            wal.remove_through(10).unwrap_err(),
        ] {
            match err {
                Error::WalFailed(reason) => {
                    assert!(reason.contains("injected fsync failure"), "{reason}")
                }
                other => panic!("expected WalFailed, got {other}"),
            }
        }
    }

    #[test]
    fn rotate_without_records_creates_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(tmp.path());
        wal.rotate().unwrap();
        wal.rotate().unwrap();
        assert_eq!(wal.sync().unwrap(), Duration::ZERO);
        assert!(wal_files(tmp.path()).is_empty());
        wal.append(1, b"a").unwrap();
        // Syncs what was appended before closing the file.
        wal.rotate().unwrap();
        wal.rotate().unwrap();
        wal.append(2, b"b").unwrap();
        wal.sync().unwrap();
        assert_eq!(
            wal_files(tmp.path()),
            [tmp.path().join(file_name(1)), tmp.path().join(file_name(2))]
        );
    }

    #[test]
    fn leftover_rewrite_temp_file_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1..=3);
        let leftover = tmp.path().join(format!("{}{TMP_SUFFIX}", file_name(1)));
        fs::write(&leftover, b"half a rewrite").unwrap();
        let unrelated = tmp.path().join("notes.txt");
        fs::write(&unrelated, b"kept").unwrap();
        let (_, rec) = open(tmp.path());
        assert!(!leftover.exists());
        assert!(unrelated.exists());
        assert_eq!(rec.files, 1);
        assert_eq!(lsns(&rec.records), [1, 2, 3]);
        assert!(rec.quarantined.is_empty());
    }

    /// xorshift64: deterministic, so a failing round can be replayed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn damaged_wal_never_panics_and_yields_only_written_records() {
        const FILE_BYTES: u64 = 300;
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let src = tempfile::tempdir().unwrap();
        let mut written = BTreeMap::new();
        let (mut wal, _) = Wal::open(src.path(), FILE_BYTES).unwrap();
        let mut lsn = 0;
        for _ in 0..60 {
            lsn += 1 + rng.below(3) as u64;
            let p: Vec<u8> = (0..rng.below(80)).map(|_| rng.next() as u8).collect();
            wal.append(lsn, &p).unwrap();
            written.insert(lsn, p);
            if rng.below(3) == 0 {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        drop(wal);
        let pristine: Vec<(String, Vec<u8>)> = wal_files(src.path())
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_str().unwrap().to_owned();
                (name, fs::read(p).unwrap())
            })
            .collect();
        assert!(pristine.len() >= 4, "{} files", pristine.len());
        let spans: Vec<_> = pristine.iter().map(|(_, b)| record_spans(b)).collect();
        assert_eq!(spans.iter().map(Vec::len).sum::<usize>(), written.len());

        for round in 0..500 {
            let mut files = pristine.clone();
            // Per file, the first byte a mutation touched.
            let mut intact: Vec<usize> = files.iter().map(|(_, b)| b.len()).collect();
            for _ in 0..1 + rng.below(3) {
                let f = rng.below(files.len());
                let b = &mut files[f].1;
                let at = rng.below(b.len() + 1);
                let touched = match rng.below(5) {
                    0 | 1 if at < b.len() => {
                        b[at] ^= 1 << rng.below(8);
                        at
                    }
                    2 => {
                        b.truncate(at);
                        at
                    }
                    3 => {
                        let end = (at + 1 + rng.below(64)).min(b.len());
                        b[at..end].fill(0);
                        at
                    }
                    _ => {
                        let from = b.len();
                        let zeros = rng.below(2) == 0;
                        for _ in 0..1 + rng.below(64) {
                            b.push(if zeros { 0 } else { rng.next() as u8 });
                        }
                        from
                    }
                };
                intact[f] = intact[f].min(touched);
            }
            let dir = tempfile::tempdir().unwrap();
            for (name, b) in &files {
                fs::write(dir.path().join(name), b).unwrap();
            }

            let (wal, rec) = Wal::open(dir.path(), FILE_BYTES)
                .unwrap_or_else(|e| panic!("round {round}: open failed: {e}"));
            for pair in rec.records.windows(2) {
                assert!(pair[0].lsn < pair[1].lsn, "round {round}: out of order");
            }
            for r in &rec.records {
                assert_eq!(
                    written.get(&r.lsn),
                    Some(&r.payload),
                    "round {round}: lsn {} was not written so",
                    r.lsn
                );
            }
            let got: BTreeSet<u64> = rec.records.iter().map(|r| r.lsn).collect();
            for (f, file_spans) in spans.iter().enumerate() {
                for &(lsn, _, _) in file_spans.iter().filter(|s| s.2 <= intact[f]) {
                    assert!(
                        got.contains(&lsn),
                        "round {round}: lsn {lsn} of {} was before the damage but is lost",
                        files[f].0
                    );
                }
            }
            assert_eq!(wal.last_lsn(), rec.records.last().map_or(0, |r| r.lsn));
            for q in &rec.quarantined {
                let name = q.file.file_name().unwrap().to_str().unwrap();
                let found = &files.iter().find(|(n, _)| n == name).unwrap().1;
                assert_eq!(&fs::read(&q.copy).unwrap(), found, "round {round}");
            }
            // Every change is noticed, except a file cut exactly at a record
            // boundary (the format has no trailer to tell), and only in the
            // last file can it be a torn tail.
            let quarantined: BTreeSet<&str> = rec
                .quarantined
                .iter()
                .map(|q| q.file.file_name().unwrap().to_str().unwrap())
                .collect();
            for (f, ((name, found), (_, was))) in files.iter().zip(&pristine).enumerate() {
                let last = f + 1 == files.len();
                let noticed =
                    quarantined.contains(name.as_str()) || (last && rec.truncated_bytes > 0);
                let clean_cut = was.starts_with(found)
                    && (found.len() == MAGIC.len() || spans[f].iter().any(|s| s.2 == found.len()));
                assert_eq!(
                    found != was && !clean_cut,
                    noticed,
                    "round {round}: {name} changed unnoticed, or noticed unchanged"
                );
            }
            drop(wal);

            // Recovery leaves a clean log: the next open repairs nothing.
            let (_, again) = Wal::open(dir.path(), FILE_BYTES).unwrap();
            assert_eq!(again.records, rec.records, "round {round}");
            assert!(again.quarantined.is_empty(), "round {round}");
            assert_eq!(again.truncated_bytes, 0, "round {round}");
        }
    }
}
