//! `weft import`: NDJSON files (plain, gzip or zstd) into segments, offline.
//!
//! One reader thread cuts each input into blocks of whole lines (bounded
//! memory, see `weft_scan::lines::BlockReader`) and hands them over a
//! bounded channel to one worker per core. Each worker owns a
//! `BatchBuilder` and, when it holds enough rows, sorts and writes its own
//! segments, so Parquet encoding runs in parallel too.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use weft_ingest::model::CORE_FIELD_COUNT;
use weft_ingest::{BatchBuilder, Defaults, FieldRegistry, NormalizerConfig, Reason};
use weft_scan::lines::{Block, BlockReader, Lines};
use weft_storage::{DataDir, SegmentOptions, Table, now_nanos};

/// Settings for one import run.
#[derive(Debug, Clone)]
pub(crate) struct ImportOptions {
    pub(crate) data: PathBuf,
    pub(crate) inputs: Vec<String>,
    pub(crate) normalizer: NormalizerConfig,
    pub(crate) segments: SegmentOptions,
    pub(crate) defaults: Defaults,
    pub(crate) max_line: usize,
    pub(crate) block_size: usize,
    /// A worker writes its segments when it holds this many rows…
    pub(crate) flush_rows: usize,
    /// …or this many bytes of input.
    pub(crate) flush_bytes: u64,
    pub(crate) threads: usize,
    /// Print a progress bar (only ever on a terminal).
    pub(crate) progress: bool,
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct Summary {
    pub(crate) files: usize,
    pub(crate) lines: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) segments: usize,
    pub(crate) seconds: f64,
    /// First rejects, as "source:line: reason".
    pub(crate) reject_samples: Vec<String>,
}

impl Summary {
    pub(crate) fn ratio(&self) -> f64 {
        self.bytes_in as f64 / self.bytes_out.max(1) as f64
    }

    pub(crate) fn mb_per_s(&self) -> f64 {
        self.bytes_in as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

const SAMPLE_REJECTS: usize = 10;

struct Job {
    source: Arc<str>,
    block: Block,
}

/// Opens an input, undoing gzip or zstd by their magic bytes.
fn open_input(name: &str, counter: Arc<AtomicU64>) -> Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if name == "-" {
        Box::new(io::stdin())
    } else {
        let f = File::open(name).with_context(|| format!("cannot read {name}"))?;
        Box::new(f)
    };
    let mut reader = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: raw,
            counter,
        },
    );
    let magic = {
        use std::io::BufRead;
        let buf = reader
            .fill_buf()
            .with_context(|| format!("cannot read {name}"))?;
        buf.get(..4).map(<[u8]>::to_vec).unwrap_or_default()
    };
    Ok(match magic.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            zstd::Decoder::with_buffer(reader).with_context(|| format!("cannot read {name}"))?,
        ),
        _ => Box::new(reader),
    })
}

/// Counts bytes read from the underlying (possibly compressed) input, for progress.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct Shared {
    data: DataDir,
    summary: Mutex<Summary>,
}

impl Shared {
    fn flush(&self, builder: &mut BatchBuilder) -> Result<()> {
        let counts = builder.counts();
        let (logs, rejects) = builder.finish();
        let mut out_bytes = 0;
        let mut segs = 0;
        if !logs.is_empty() {
            for m in self.data.append_batches(Table::Logs, &logs, counts.bytes)? {
                out_bytes += m.bytes;
                segs += 1;
            }
        }
        if let Some(rejects) = rejects {
            for m in self.data.append(Table::Rejects, &rejects, 0)? {
                out_bytes += m.bytes;
                segs += 1;
            }
        }
        let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        s.lines += counts.lines;
        s.accepted += counts.accepted;
        s.rejected += counts.rejected;
        s.bytes_out += out_bytes;
        s.segments += segs;
        Ok(())
    }

    fn sample(&self, source: &str, line: u64, reason: &Reason) {
        let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        if s.reject_samples.len() < SAMPLE_REJECTS {
            s.reject_samples.push(format!("{source}:{line}: {reason}"));
        }
    }
}

fn worker(
    shared: &Shared,
    rx: &Mutex<Receiver<Job>>,
    opts: &ImportOptions,
    registry: &Arc<FieldRegistry>,
) -> Result<()> {
    let mut builder = BatchBuilder::new(Arc::new(opts.normalizer.clone()), Arc::clone(registry));
    builder.set_defaults(opts.defaults.clone());
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(Job { source, block }) = job else {
            break;
        };
        builder.set_observed_at(now_nanos());
        match block {
            Block::Lines { first_line, bytes } => {
                for line in Lines::new(&bytes, first_line, opts.max_line) {
                    let reason = match line.too_long {
                        Some(len) => {
                            let reason = Reason::TooLong {
                                len,
                                max: opts.max_line,
                            };
                            builder.reject(&source, line.number, line.bytes, reason.clone());
                            Some(reason)
                        }
                        None => builder.push_line(&source, line.number, line.bytes),
                    };
                    if let Some(reason) = reason {
                        shared.sample(&source, line.number, &reason);
                    }
                }
            }
            Block::Oversized { line, prefix, len } => {
                let reason = Reason::TooLong {
                    len,
                    max: opts.max_line,
                };
                shared.sample(&source, line, &reason);
                builder.reject(&source, line, &prefix, reason);
            }
        }
        let c = builder.counts();
        if builder.rows() >= opts.flush_rows || c.bytes >= opts.flush_bytes {
            shared.flush(&mut builder)?;
        }
    }
    shared.flush(&mut builder)
}

/// Runs an import to the end and returns what it did.
pub(crate) fn run(opts: &ImportOptions) -> Result<Summary> {
    if opts.inputs.is_empty() {
        bail!("nothing to import: name one or more files, or - for standard input");
    }
    // Every named file must be readable before anything is written.
    for name in opts.inputs.iter().filter(|n| *n != "-") {
        File::open(name).with_context(|| format!("cannot read {name}"))?;
    }
    let started = Instant::now();
    let data = DataDir::open_writer(&opts.data, opts.segments.clone())
        .with_context(|| format!("cannot open data directory {}", opts.data.display()))?;
    let existing: Vec<String> = data
        .manifest()
        .table_columns(Table::Logs)
        .into_iter()
        .skip(CORE_FIELD_COUNT)
        .map(|(n, _)| n)
        .collect();
    let registry = Arc::new(FieldRegistry::with_existing(
        opts.normalizer.max_fields,
        existing,
    ));
    let shared = Shared {
        data,
        summary: Mutex::new(Summary {
            files: opts.inputs.len(),
            ..Summary::default()
        }),
    };
    let read_counter = Arc::new(AtomicU64::new(0));
    let progress = progress_bar(opts);
    let threads = opts.threads.max(1);
    let (tx, rx) = sync_channel::<Job>(threads * 2);
    let rx = Mutex::new(rx);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads + 1)
        .build()
        .context("cannot start worker threads")?;
    let results: Mutex<Vec<Result<()>>> = Mutex::new(Vec::new());
    pool.scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|_| {
                let r = worker(&shared, &rx, opts, &registry);
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            });
        }
        // The reader runs here; dropping `tx` at the end lets the workers finish.
        let tx = tx;
        let mut bytes_in = 0;
        let r = (|| -> Result<()> {
            for name in &opts.inputs {
                let source: Arc<str> = Arc::from(if name == "-" {
                    "<stdin>"
                } else {
                    name.as_str()
                });
                let input = open_input(name, Arc::clone(&read_counter))?;
                let mut reader = BlockReader::new(input, opts.block_size, opts.max_line);
                let sent = (|| -> Result<bool> {
                    while let Some(block) = reader
                        .next_block()
                        .with_context(|| format!("cannot read {source}"))?
                    {
                        if let Some(p) = &progress {
                            p.set_position(read_counter.load(Ordering::Relaxed));
                        }
                        let job = Job {
                            source: Arc::clone(&source),
                            block,
                        };
                        if tx.send(job).is_err() {
                            // Every worker stopped: their error is reported below.
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })();
                bytes_in += reader.bytes_read();
                if !sent? {
                    return Ok(());
                }
            }
            Ok(())
        })();
        drop(tx);
        results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
        shared
            .summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes_in = bytes_in;
    });
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    for r in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        r?;
    }
    let mut summary = shared
        .summary
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn progress_bar(opts: &ImportOptions) -> Option<ProgressBar> {
    if !opts.progress || !io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = opts
        .inputs
        .iter()
        .filter_map(|n| std::fs::metadata(Path::new(n)).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// The closing summary, as printed.
pub(crate) fn render(s: &Summary) -> String {
    let mut out = format!(
        "imported {} file(s): {} lines, {} accepted, {} rejected\n\
         {:.1} MB in, {:.1} MB out ({:.2}x), {} segment(s), {:.2} s, {:.1} MB/s\n",
        s.files,
        s.lines,
        s.accepted,
        s.rejected,
        s.bytes_in as f64 / 1e6,
        s.bytes_out as f64 / 1e6,
        s.ratio(),
        s.segments,
        s.seconds,
        s.mb_per_s(),
    );
    if s.rejected > 0 {
        out.push_str("rejected lines (all kept in table `rejects`):\n");
        for r in &s.reject_samples {
            out.push_str("  ");
            out.push_str(r);
            out.push('\n');
        }
        let more = s.rejected.saturating_sub(s.reject_samples.len() as u64);
        if more > 0 {
            out.push_str(&format!("  … and {more} more\n"));
        }
    }
    out
}
