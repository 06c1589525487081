//! End-to-end import benchmark: raw NDJSON → zstd Parquet segments with
//! `weft import`, beside two peers on the same input in the same run:
//! `gzip -6` (the size target) and DuckDB's own NDJSON → zstd Parquet COPY.
//!
//! Throughput is reported per core: input bytes / (user + sys CPU seconds)
//! of the measured process, so the figure does not depend on how many cores
//! the machine lent. See benches/README.md for results.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Parser;
use weft_benches::{Run, dir_size, machine, measure, sibling_binary, warm};

#[derive(Debug, Parser)]
#[command(
    name = "bench-import",
    about = "Benchmark weft import against gzip -6 and DuckDB"
)]
struct Args {
    /// Corpus file; generated with gen-corpus when missing.
    #[arg(long, default_value = "benches/corpus/1g.ndjson")]
    corpus: PathBuf,
    /// Size to generate when the corpus is missing (gen-corpus syntax).
    #[arg(long, default_value = "1G")]
    bytes: String,
    /// Scratch directory for outputs (emptied first).
    #[arg(long, default_value = "/tmp/weft-bench-import")]
    work: PathBuf,
    /// Skip the DuckDB peer.
    #[arg(long)]
    no_duckdb: bool,
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn per_core(bytes: u64, r: &Run) -> f64 {
    mb(bytes) / r.cpu().max(1e-9)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.corpus.exists() {
        if let Some(dir) = args.corpus.parent() {
            std::fs::create_dir_all(dir)?;
        }
        eprintln!("generating {} ({})", args.corpus.display(), args.bytes);
        measure(
            Command::new(sibling_binary("gen-corpus")?)
                .arg("--out")
                .arg(&args.corpus)
                .args(["--bytes", &args.bytes]),
        )?;
    }
    let input = warm(&args.corpus)?;
    if args.work.exists() {
        std::fs::remove_dir_all(&args.work)?;
    }
    std::fs::create_dir_all(&args.work)?;

    eprintln!("weft import …");
    let data = args.work.join("weft-data");
    let weft = measure(
        Command::new(sibling_binary("weft")?)
            .args(["import", "--quiet", "--json", "--data"])
            .arg(&data)
            .arg(&args.corpus),
    )?;
    let summary: serde_json::Value = serde_json::from_slice(&weft.output.stdout)
        .context("weft import --json printed no summary")?;
    let rows = summary["accepted"].as_u64().unwrap_or(0);
    if summary["rejected"].as_u64() != Some(0) {
        bail!("the corpus should import without rejects: {summary}");
    }
    let weft_out = dir_size(&data.join("segments"));

    eprintln!("gzip -6 …");
    let gz_path = args.work.join("corpus.gz");
    let gzip = measure(
        Command::new("gzip")
            .args(["-6", "-c"])
            .arg(&args.corpus)
            .stdout(Stdio::from(File::create(&gz_path)?)),
    )?;
    let gz_out = std::fs::metadata(&gz_path)?.len();
    std::fs::remove_file(&gz_path)?;

    let duck = if args.no_duckdb {
        None
    } else {
        eprintln!("duckdb COPY …");
        let out = args.work.join("duckdb.parquet");
        let script = format!(
            "import duckdb\n\
             con = duckdb.connect()\n\
             con.execute(\"SET threads = {threads}\")\n\
             con.execute(\"COPY (SELECT * FROM read_json('{corpus}', format = 'newline_delimited', union_by_name = true, sample_size = -1)) \
             TO '{out}' (FORMAT parquet, COMPRESSION zstd)\")\n\
             print(con.execute(\"SELECT count(*) FROM '{out}'\").fetchone()[0])\n",
            threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            corpus = args.corpus.display(),
            out = out.display(),
        );
        let r = measure(Command::new("python3").args(["-c", &script]))?;
        let size = std::fs::metadata(&out)?.len();
        let version = Command::new("python3")
            .args(["-c", "import duckdb; print(duckdb.__version__)"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Some((r, size, version))
    };

    println!("machine: {}", machine());
    println!(
        "input: {} ({:.1} MB, {} lines)",
        args.corpus.display(),
        mb(input),
        rows
    );
    println!();
    println!("| tool | wall s | user+sys s | MB/s per core | output MB | input/output |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, r: &Run, out: u64| {
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} | {:.1} | {:.2}x |",
            r.wall,
            r.cpu(),
            per_core(input, r),
            mb(out),
            input as f64 / out as f64
        );
    };
    row("weft import (zstd Parquet)", &weft, weft_out);
    row("gzip -6", &gzip, gz_out);
    if let Some((r, size, version)) = &duck {
        row(&format!("DuckDB {version} COPY → zstd Parquet"), r, *size);
    }
    println!();
    println!(
        "weft: {:.0} rows/s per core, {:.1} output bytes/row, {:.0} input bytes/row",
        rows as f64 / weft.cpu(),
        weft_out as f64 / rows as f64,
        input as f64 / rows as f64
    );
    println!(
        "weft output is {:.2}x smaller than gzip -6 (target >= 1.4x); {:.0} MB/s per core (target >= 250)",
        gz_out as f64 / weft_out as f64,
        per_core(input, &weft)
    );
    if let Some((r, size, _)) = &duck {
        println!(
            "against DuckDB: weft {:.2}x its per-core speed, output {:.2}x smaller",
            r.cpu() / weft.cpu(),
            *size as f64 / weft_out as f64
        );
    }
    Ok(())
}
