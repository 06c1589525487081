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
//! Normalizing, sorting and gathering cost nothing here, so input bytes /
//! (reading + encoding CPU seconds) is a ceiling on the import's per-core
//! speed with this tokenizer, this encoder and these settings.
//! `zstd -3` and `zstd -1` over the raw input run in the same run as a
//! peer: what compressing the input costs with no parsing at all.
//! See benches/README.md for results.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use clap::Parser;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::de::IgnoredAny;
use weft_benches::{machine, measure, thread_cpu};
use weft_scan::json::{self, JsonNumber, JsonStr, Visitor};
use weft_scan::lines::Lines;
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

fn main() -> Result<()> {
    let args = Args::parse();
    let corpus = std::fs::read(&args.corpus)
        .with_context(|| format!("cannot read {}", args.corpus.display()))?;
    let input = corpus.len() as u64;
    eprintln!("reading back {} …", args.data.display());
    let segments = read_segments(&args.data)?;
    let rows: usize = segments
        .iter()
        .flat_map(|s| &s.batches)
        .map(RecordBatch::num_rows)
        .sum();
    let mb = |b: u64| b as f64 / 1e6;
    let per_gb = |cpu: f64| cpu / (input as f64 / 1e9);

    println!("machine: {}", machine());
    println!(
        "input: {} ({:.1} MB); {} segments, {rows} rows read back",
        args.corpus.display(),
        mb(input),
        segments.len()
    );
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
    let lines = rows as u64;
    let check = |name: &str, ok: u64| {
        if ok != lines {
            bail!("{name} accepted {ok} lines of {lines}");
        }
        Ok(())
    };
    eprintln!("framing …");
    let (cpu, ok) = read(&corpus, |line| !std::hint::black_box(line).is_empty());
    check("framing", ok)?;
    row("frame lines (memchr)", cpu, None);
    eprintln!("tokenizing …");
    let (tokenize, ok) = read(&corpus, |line| {
        std::str::from_utf8(line)
            .ok()
            .is_some_and(|s| json::parse(s, &mut Skip, json::Options::default()).is_ok())
    });
    check("weft's tokenizer", ok)?;
    row(
        "frame + UTF-8 check + weft's tokenizer, keeping nothing",
        tokenize,
        None,
    );
    eprintln!("serde_json …");
    let (cpu, ok) = read(&corpus, |line| {
        serde_json::from_slice::<IgnoredAny>(line).is_ok()
    });
    check("serde_json", ok)?;
    row("frame + serde_json skipping each line (peer)", cpu, None);
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
    println!();
    println!(
        "reading with weft's tokenizer + encoding with weft's settings: {:.2} CPU s per GB, \
         a ceiling of {:.0} MB/s per core before any normalizing, sorting or gathering",
        per_gb(tokenize + medians[0]),
        mb(input) / (tokenize + medians[0])
    );
    Ok(())
}
