//! What the two stages every import must run cost on their own, each timed
//! on this thread over the whole corpus held in memory:
//!
//! - reading: framing the lines (memchr) and tokenizing each as JSON with
//!   weft's tokenizer and a visitor that keeps nothing; serde_json skipping
//!   each line (`IgnoredAny`) runs beside it as a peer;
//! - encoding: the segments a `weft import` of the corpus wrote are read
//!   back into memory and written again with the Parquet writer and weft's
//!   own writer properties. Variants with cheaper settings show what each
//!   setting costs and what it buys in size.
//!
//! Normalizing, sorting and gathering cost nothing there, so input bytes /
//! (reading + encoding CPU seconds) is a ceiling on the import's per-core
//! speed with this tokenizer, this encoder and these settings.
//!
//! Three more stages are what `weft serve` adds around them, each timed on
//! its own:
//!
//! - normalizing: the corpus made into Arrow batches with the daemon's own
//!   entry point, one request body at a time (1 MiB bodies, as
//!   `bench-ingest` posts them, and 64 MiB ones), the batches dropped after
//!   each body. As a peer, arrow-json's decoder makes the 1 MiB bodies into
//!   batches of the corpus's inferred schema;
//! - receiving: the corpus posted in 1 MiB bodies over HTTP/1.1 on loopback
//!   to an axum server on one thread (the daemon's HTTP stack), which
//!   answers each at once, or first appends it to weft's WAL and fsyncs;
//!   the serving thread's CPU is counted, the client's is not;
//! - sorting: a flush without its encoding. The 1 MiB bodies' batches are
//!   taken 128 MiB at a time, split by hour, sorted into segment order and
//!   gathered into the writer's 16 Ki-row batches with weft's own code. As
//!   a peer, each segment read back is put in time order (as its rows
//!   arrived), sorted with arrow's `lexsort_to_indices` and every column
//!   taken in that order. The same flush with each hour's rows only
//!   grouped by service, in arrival order, shows what the correlation-id
//!   sort costs.
//!
//! `zstd -3` and `zstd -1` over the raw input run in the same run as a
//! peer: what compressing the input costs with no parsing at all. The last
//! line sums the daemon's stages as `weft serve` runs them. See
//! benches/README.md for results.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::de::IgnoredAny;
use weft_benches::{cut_at_line_ends, machine, measure, thread_cpu};
use weft_ingest::model;
use weft_ingest::{BodyOptions, Defaults, FieldRegistry, NormalizerConfig, normalize_body};
use weft_scan::json::{self, JsonNumber, JsonStr, Visitor};
use weft_scan::lines::Lines;
use weft_storage::buffer::{arrow_memory, merged_schema};
use weft_storage::wal::Wal;
use weft_storage::{DataDir, SegmentOptions, Table, segment};

#[derive(Debug, Parser)]
#[command(
    name = "bench-stages",
    about = "Time reading the JSON and encoding the Parquet of an import, each alone"
)]
struct Args {
    /// The data directory a `weft import` of the corpus wrote
    /// (bench-import leaves one here).
    #[arg(long, default_value = "/tmp/weft-bench-import/weft-data")]
    data: PathBuf,
    /// The corpus that import read: its size is the input the ceiling is
    /// per, and the zstd peer compresses it.
    #[arg(long, default_value = "benches/corpus/1g.ndjson")]
    corpus: PathBuf,
    /// Rounds of the encoder variants; each is reported by its median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// The stages to run (sorting and encoding need `--data`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "reading,normalizing,receiving,sorting,encoding"
    )]
    stages: Vec<Stage>,
    /// Scratch directory for the receiving stage's WAL (emptied first).
    #[arg(long, default_value = "/tmp/weft-bench-stages")]
    work: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Stage {
    Reading,
    Normalizing,
    Receiving,
    Sorting,
    Encoding,
}

/// One segment read back: its batches (as the writer was given them) and
/// how many rows carry a correlation id (the bloom filter's size).
struct Segment {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    ids: usize,
}

/// Rows per batch handed to the writer, as the segment writer gathers them.
const BATCH_ROWS: usize = 16 * 1024;

fn read_segments(data: &Path) -> Result<Vec<Segment>> {
    let dir = DataDir::open_reader(data)
        .with_context(|| format!("cannot open {} (run bench-import first)", data.display()))?;
    let manifest = dir.manifest();
    let mut out = Vec::new();
    for seg in manifest.segments.iter().filter(|s| s.table == Table::Logs) {
        let path = dir.path_of(seg);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(BATCH_ROWS);
        let schema = Arc::clone(builder.schema());
        let reader = builder.build()?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        let id = schema.index_of(weft_ingest::model::CORRELATION_ID)?;
        let ids = batches
            .iter()
            .map(|b| b.num_rows() - b.column(id).null_count())
            .sum();
        out.push(Segment {
            schema,
            batches,
            ids,
        });
    }
    if out.is_empty() {
        bail!("{} holds no logs segments", data.display());
    }
    Ok(out)
}

/// A tokenizer visitor that keeps nothing: the cost of reading alone.
struct Skip;

impl<'a> Visitor<'a> for Skip {
    fn begin_object(&mut self, _: usize) {}
    fn end_object(&mut self, _: usize) {}
    fn begin_array(&mut self, _: usize) {}
    fn end_array(&mut self, _: usize) {}
    fn key(&mut self, key: JsonStr<'a>) {
        std::hint::black_box(key);
    }
    fn string(&mut self, value: JsonStr<'a>) {
        std::hint::black_box(value);
    }
    fn number(&mut self, value: JsonNumber<'a>) {
        std::hint::black_box(value);
    }
    fn boolean(&mut self, value: bool) {
        std::hint::black_box(value);
    }
    fn null(&mut self) {}
}

/// Runs `each` on every line of `corpus`; (CPU s, lines it accepted).
fn read(corpus: &[u8], mut each: impl FnMut(&[u8]) -> bool) -> (f64, u64) {
    let start = thread_cpu();
    let mut ok = 0;
    for line in Lines::new(corpus, 1, usize::MAX) {
        ok += u64::from(each(line.bytes));
    }
    (thread_cpu() - start, ok)
}

/// A named way to build writer properties for one segment.
type Props = Box<dyn Fn(&SchemaRef, usize) -> Result<WriterProperties>>;

/// The encoder variants; the first is weft's own settings.
fn variants() -> Vec<(&'static str, Props)> {
    let weft = |opts: SegmentOptions| -> Props {
        Box::new(move |schema: &SchemaRef, ids: usize| {
            Ok(segment::properties(schema, ids, true, &opts)?)
        })
    };
    let bare = |compression: Compression| -> Props {
        Box::new(move |_: &SchemaRef, _: usize| {
            Ok(WriterProperties::builder()
                .set_compression(compression)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::None)
                .set_max_row_group_row_count(Some(SegmentOptions::default().row_group_rows))
                .build())
        })
    };
    let level = |zstd_level| SegmentOptions {
        zstd_level,
        ..SegmentOptions::default()
    };
    vec![
        ("weft's settings (zstd 3)", weft(SegmentOptions::default())),
        ("weft's settings, zstd 1", weft(level(1))),
        (
            "weft's settings, 8192-row / 1 MiB pages",
            weft(SegmentOptions {
                page_rows: 8192,
                page_bytes: 1024 * 1024,
                ..SegmentOptions::default()
            }),
        ),
        (
            "plain, no statistics, zstd 1",
            bare(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("1 is a zstd level"),
            )),
        ),
        (
            "plain, no statistics, uncompressed",
            bare(Compression::UNCOMPRESSED),
        ),
    ]
}

/// Writes every segment with `props` into memory; (CPU s, bytes out).
fn encode(segments: &[Segment], props: &Props) -> Result<(f64, u64)> {
    let start = thread_cpu();
    let mut bytes = 0;
    for seg in segments {
        let mut writer = ArrowWriter::try_new(
            Vec::new(),
            Arc::clone(&seg.schema),
            Some(props(&seg.schema, seg.ids)?),
        )?;
        for batch in &seg.batches {
            writer.write(batch)?;
        }
        bytes += writer.into_inner()?.len() as u64;
    }
    Ok((thread_cpu() - start, bytes))
}

/// The daemon's normalizer settings, defaults throughout.
fn body_options() -> BodyOptions {
    let config = NormalizerConfig::default();
    BodyOptions {
        registry: Arc::new(FieldRegistry::new(config.max_fields)),
        config: Arc::new(config),
        max_line: weft_storage::store::StoreOptions::default().max_line,
    }
}

/// Normalizes `corpus` one body of at most `size` bytes at a time, as the
/// daemon does a request's, dropping each body's batches; (CPU s, lines
/// accepted).
fn normalize(corpus: &[u8], size: usize) -> (f64, u64) {
    let options = body_options();
    let source: Arc<str> = Arc::from("bench");
    let start = thread_cpu();
    let mut ok = 0;
    for body in cut_at_line_ends(corpus, size) {
        let out = normalize_body(body, &source, 0, Defaults::default(), &options);
        ok += out.counts.accepted;
    }
    (thread_cpu() - start, ok)
}

/// The peer of [`normalize`]: the stack's own JSON reader (arrow-json's
/// decoder) making each body of at most `size` bytes into record batches of
/// `schema`, dropping them; (CPU s, rows decoded). It does less than the
/// normalizer (no core columns, no shape, no split by service) and keeps
/// nested objects as structs.
fn decode_arrow_json(corpus: &[u8], size: usize, schema: &SchemaRef) -> Result<(f64, u64)> {
    let start = thread_cpu();
    let mut rows = 0;
    for body in cut_at_line_ends(corpus, size) {
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
            .with_batch_size(BATCH_ROWS)
            .with_coerce_primitive(true)
            .build_decoder()?;
        let mut rest = body;
        loop {
            let read = decoder.decode(rest)?;
            rest = &rest[read..];
            match decoder.flush()? {
                Some(batch) => rows += batch.num_rows() as u64,
                None if rest.is_empty() => break,
                None => {}
            }
        }
    }
    Ok((thread_cpu() - start, rows))
}

/// Posts `bodies` over HTTP/1.1 on loopback, one after another on one
/// connection, to an axum server running on one thread of its own; with
/// `wal` set the server appends each body to weft's WAL there and fsyncs
/// before it answers. Returns the serving thread's CPU seconds.
fn receive(bodies: &[&[u8]], wal: Option<&Path>) -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let wal = match wal {
        Some(dir) => {
            let bytes = weft_storage::store::StoreOptions::default().wal_file_bytes;
            Some(Arc::new(Mutex::new((Wal::open(dir, bytes)?.0, 0u64))))
        }
        None => None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<f64> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = Router::new()
                .route(
                    "/",
                    post(move |body: Bytes| {
                        let wal = wal.clone();
                        async move { store(wal.as_deref(), &body) }
                    }),
                )
                .layer(DefaultBodyLimit::disable());
            let start = thread_cpu();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await?;
            Ok(thread_cpu() - start)
        })
    });
    let posted = post_all(addr, bodies);
    let _ = stop.send(());
    let cpu = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    let answered = posted?;
    if answered != bodies.len() {
        bail!("{answered} of {} bodies answered 200", bodies.len());
    }
    Ok(cpu)
}

/// The receiving server's handler: the body into the WAL, synced, if there
/// is one.
fn store(wal: Option<&Mutex<(Wal, u64)>>, body: &[u8]) -> StatusCode {
    let Some(wal) = wal else {
        return StatusCode::OK;
    };
    let mut guard = wal.lock().unwrap_or_else(|e| e.into_inner());
    let (wal, lsn) = &mut *guard;
    *lsn += 1;
    match wal.append(*lsn, body).and_then(|()| wal.sync().map(drop)) {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// POSTs each body in turn on one keep-alive connection; how many were
/// answered 200.
fn post_all(addr: std::net::SocketAddr, bodies: &[&[u8]]) -> Result<usize> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let mut answers = BufReader::new(conn.try_clone()?);
    let mut ok = 0;
    let mut line = String::new();
    for body in bodies {
        write!(
            conn,
            "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )?;
        conn.write_all(body)?;
        line.clear();
        answers.read_line(&mut line)?;
        ok += usize::from(line.starts_with("HTTP/1.1 200"));
        let mut length = 0;
        loop {
            line.clear();
            if answers.read_line(&mut line)? == 0 {
                bail!("the server closed the connection");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        std::io::copy(&mut (&mut answers).take(length), &mut std::io::sink())?;
    }
    Ok(ok)
}

/// Arrow memory of the daemon's buffer that one flush part writes: half
/// of the 256 MiB write buffer `bench-ingest` gives the daemon.
const PART_BYTES: usize = 128 << 20;

/// A flush without its encoding: the corpus normalized in 1 MiB bodies
/// (not timed), their batches taken [`PART_BYTES`] at a time as the
/// daemon's flush takes its buffer, split by hour, sorted into segment
/// order and gathered into the 16 Ki-row batches the writer would be
/// handed; CPU seconds of the splitting, sorting and gathering.
///
/// With `by_id` false the rows of each hour are only grouped by service and
/// otherwise kept as they arrived: what a flush would cost if segments were
/// not sorted by correlation id.
fn sort_and_gather(corpus: &[u8], by_id: bool) -> Result<f64> {
    let options = body_options();
    let source: Arc<str> = Arc::from("bench");
    let mut cpu = 0.0;
    let mut part = Vec::new();
    let mut held = 0;
    let bodies = cut_at_line_ends(corpus, 1 << 20);
    let last = bodies.len().saturating_sub(1);
    for (i, body) in bodies.into_iter().enumerate() {
        let out = normalize_body(body, &source, 0, Defaults::default(), &options);
        held += arrow_memory(&out.logs, &None);
        part.extend(out.logs);
        if held < PART_BYTES && i < last {
            continue;
        }
        let start = thread_cpu();
        let batches: Vec<&RecordBatch> = part.iter().collect();
        let schema = merged_schema(Table::Logs, &batches)?.context("a part without batches")?;
        let rows = segment::Rows::new(schema, &batches)?;
        let cols: Vec<usize> = (0..rows.schema().fields().len()).collect();
        // Each batch holds one service's rows: rank the batches by service
        // (only needed when the rows are not sorted by id).
        let mut ranks: Vec<String> = Vec::new();
        let ranked = if by_id { &[][..] } else { &batches[..] };
        let rank: Vec<usize> = ranked
            .iter()
            .map(|b| {
                let name = b
                    .column_by_name(model::SERVICE)
                    .map(|c| arrow::util::display::array_value_to_string(c, 0))
                    .transpose()?
                    .unwrap_or_default();
                Ok(match ranks.iter().position(|s| *s == name) {
                    Some(i) => i,
                    None => {
                        ranks.push(name);
                        ranks.len() - 1
                    }
                })
            })
            .collect::<Result<_>>()?;
        for mut hour in rows.by_hour(model::TIMESTAMP)? {
            if by_id {
                rows.sort_logs(&mut hour.rows)?;
            } else {
                hour.rows.sort_by_key(|&(b, _)| rank[b as usize]);
            }
            for chunk in hour.rows.chunks(BATCH_ROWS) {
                std::hint::black_box(rows.project(chunk, &cols)?);
            }
        }
        drop(rows);
        part.clear();
        held = 0;
        cpu += thread_cpu() - start;
    }
    Ok(cpu)
}

/// Each segment's rows put back in time order, as they arrived, then
/// sorted as a flush sorts them with arrow's `lexsort_to_indices` and every
/// column taken in that order; CPU seconds of the sort and the take only.
fn sort_and_take(segments: &[Segment]) -> Result<f64> {
    let key = |batch: &RecordBatch, name: &str| -> Result<SortColumn> {
        Ok(SortColumn {
            values: Arc::clone(
                batch
                    .column_by_name(name)
                    .with_context(|| format!("segment without {name}"))?,
            ),
            options: None,
        })
    };
    let mut cpu = 0.0;
    for seg in segments {
        let all = concat_batches(&seg.schema, &seg.batches)?;
        let arrival = lexsort_to_indices(&[key(&all, model::TIMESTAMP)?], None)?;
        let arrived = take_record_batch(&all, &arrival)?;
        drop(all);
        let start = thread_cpu();
        let keys = [model::SERVICE, model::CORRELATION_ID, model::TIMESTAMP]
            .map(|name| key(&arrived, name))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let order = lexsort_to_indices(&keys, None)?;
        let sorted = take_record_batch(&arrived, &order)?;
        std::hint::black_box(&sorted);
        drop(sorted);
        cpu += thread_cpu() - start;
    }
    Ok(cpu)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let corpus = std::fs::read(&args.corpus)
        .with_context(|| format!("cannot read {}", args.corpus.display()))?;
    let input = corpus.len() as u64;
    let segments =
        if args.stages.contains(&Stage::Encoding) || args.stages.contains(&Stage::Sorting) {
            eprintln!("reading back {} …", args.data.display());
            read_segments(&args.data)?
        } else {
            Vec::new()
        };
    let mb = |b: u64| b as f64 / 1e6;
    let per_gb = |cpu: f64| cpu / (input as f64 / 1e9);

    println!("machine: {}", machine());
    println!("input: {} ({:.1} MB)", args.corpus.display(), mb(input));
    if !segments.is_empty() {
        let rows: usize = segments
            .iter()
            .flat_map(|s| &s.batches)
            .map(RecordBatch::num_rows)
            .sum();
        println!("{} segments, {rows} rows read back", segments.len());
    }
    println!();
    println!("| stage | CPU s | CPU s per GB of input | MB/s per core | output MB |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, cpu: f64, out: Option<u64>| {
        println!(
            "| {name} | {cpu:.2} | {:.2} | {:.0} | {} |",
            per_gb(cpu),
            mb(input) / cpu.max(1e-9),
            out.map_or("–".into(), |b| format!("{:.1}", mb(b)))
        );
    };
    // Every stage must take every line of the corpus (it holds no bad one).
    eprintln!("framing …");
    let (cpu, lines) = read(&corpus, |line| !std::hint::black_box(line).is_empty());
    row("frame lines (memchr)", cpu, None);
    let check = |name: &str, ok: u64| {
        if ok != lines {
            bail!("{name} accepted {ok} lines of {lines}");
        }
        Ok(())
    };
    let mut tokenize = None;
    // The daemon's own stages, for the sum printed last.
    let (mut normalized, mut received, mut sorted) = (None, None, None);
    if args.stages.contains(&Stage::Reading) {
        eprintln!("tokenizing …");
        let (cpu, ok) = read(&corpus, |line| {
            std::str::from_utf8(line)
                .ok()
                .is_some_and(|s| json::parse(s, &mut Skip, json::Options::default()).is_ok())
        });
        check("weft's tokenizer", ok)?;
        row(
            "frame + UTF-8 check + weft's tokenizer, keeping nothing",
            cpu,
            None,
        );
        tokenize = Some(cpu);
        eprintln!("serde_json …");
        let (cpu, ok) = read(&corpus, |line| {
            serde_json::from_slice::<IgnoredAny>(line).is_ok()
        });
        check("serde_json", ok)?;
        row("frame + serde_json skipping each line (peer)", cpu, None);
    }
    if args.stages.contains(&Stage::Normalizing) {
        for (size, name) in [(1 << 20, "1 MiB"), (64 << 20, "64 MiB")] {
            eprintln!("normalizing {name} bodies …");
            let (cpu, ok) = normalize(&corpus, size);
            check("the normalizer", ok)?;
            if size == 1 << 20 {
                normalized = Some(cpu);
            }
            row(
                &format!("frame + normalize into Arrow batches, {name} bodies"),
                cpu,
                None,
            );
        }
        eprintln!("inferring the corpus's schema for arrow-json (not timed) …");
        let (schema, _) = arrow::json::reader::infer_json_schema_from_seekable(
            std::io::Cursor::new(&corpus[..]),
            None,
        )?;
        let schema = Arc::new(schema);
        eprintln!("decoding 1 MiB bodies with arrow-json …");
        let (cpu, ok) = decode_arrow_json(&corpus, 1 << 20, &schema)?;
        check("arrow-json", ok)?;
        row(
            &format!(
                "peer: arrow-json decoding 1 MiB bodies into batches of the corpus's inferred schema ({} top-level columns)",
                schema.fields().len()
            ),
            cpu,
            None,
        );
    }
    if args.stages.contains(&Stage::Receiving) {
        let bodies = cut_at_line_ends(&corpus, 1 << 20);
        eprintln!("receiving …");
        let cpu = receive(&bodies, None)?;
        row(
            "HTTP/1.1 on loopback, 1 MiB bodies received and answered (axum, one thread)",
            cpu,
            None,
        );
        eprintln!("receiving into the WAL …");
        let _ = std::fs::remove_dir_all(&args.work);
        std::fs::create_dir_all(&args.work)
            .with_context(|| format!("cannot create {}", args.work.display()))?;
        let cpu = receive(&bodies, Some(&args.work.join("wal")))?;
        std::fs::remove_dir_all(&args.work)?;
        received = Some(cpu);
        row(
            "the same, each body appended to weft's WAL and fsynced before the answer",
            cpu,
            None,
        );
    }
    if args.stages.contains(&Stage::Sorting) {
        eprintln!("sorting and gathering as a flush does …");
        let cpu = sort_and_gather(&corpus, true)?;
        sorted = Some(cpu);
        row(
            "a flush without encoding: 1 MiB bodies' batches in 128 MiB parts, split by hour, sorted and gathered (weft's own)",
            cpu,
            None,
        );
        eprintln!("gathering by service in arrival order …");
        let cpu = sort_and_gather(&corpus, false)?;
        row(
            "the same with rows only grouped by service, in arrival order (no id sort)",
            cpu,
            None,
        );
        eprintln!("sorting with arrow's kernels …");
        let cpu = sort_and_take(&segments)?;
        row(
            "peer: each segment's rows sorted with arrow's lexsort and every column taken",
            cpu,
            None,
        );
    }
    if !args.stages.contains(&Stage::Encoding) {
        return Ok(());
    }
    // Variants take turns, `repeat` rounds of them, so a slow spell of the
    // machine spreads over all of them; each row is the median round.
    let variants = variants();
    let mut rounds = vec![Vec::new(); variants.len()];
    for round in 1..=args.repeat {
        for ((name, props), runs) in variants.iter().zip(&mut rounds) {
            eprintln!("{name} (round {round}) …");
            runs.push(encode(&segments, props)?);
        }
    }
    let mut medians = Vec::with_capacity(variants.len());
    for ((name, _), mut runs) in variants.iter().zip(rounds) {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (cpu, out) = runs[runs.len() / 2];
        medians.push(cpu);
        let spread = format!(
            "{name} (median of {}: {:.2}–{:.2} s)",
            runs.len(),
            runs[0].0,
            runs[runs.len() - 1].0
        );
        row(&format!("Parquet writer, {spread}"), cpu, Some(out));
    }
    for level in ["-3", "-1"] {
        eprintln!("zstd {level} …");
        let r = measure(
            Command::new("zstd")
                .args([level, "-T1", "-q", "-c"])
                .arg(&args.corpus)
                .stdout(Stdio::piped()),
        )?;
        row(
            &format!("zstd {level} of the raw input (peer)"),
            r.cpu(),
            Some(r.output.stdout.len() as u64),
        );
    }
    if let Some(tokenize) = tokenize {
        println!();
        println!(
            "reading with weft's tokenizer + encoding with weft's settings: {:.2} CPU s per GB, \
             a ceiling of {:.0} MB/s per core before any normalizing, sorting or gathering",
            per_gb(tokenize + medians[0]),
            mb(input) / (tokenize + medians[0])
        );
    }
    if let (Some(n), Some(r), Some(s)) = (normalized, received, sorted) {
        let sum = n + r + s + medians[0];
        println!(
            "the daemon's stages one after another (1 MiB bodies normalized, received into the WAL, \
             sorted and gathered, encoded with weft's settings): {:.2} CPU s per GB, {:.0} MB/s per core",
            per_gb(sum),
            mb(input) / sum
        );
    }
    Ok(())
}
