//! Query benchmark: trace lookup by correlation id (no time range) and SQL
//! aggregates over growing data (1×, 10×, 100× a base corpus), with DuckDB
//! scanning the same Parquet segments in the same run.
//!
//! For each scale: generate a corpus, `weft import` it, then time
//! `Engine::trace` for sampled ids (from the generator's ground truth) and
//! a few aggregates; DuckDB runs the same lookups and aggregates over
//! `read_parquet('…/segments/**/*.parquet')`. Latencies are wall times on
//! an otherwise idle machine, after one warm-up run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::Value;
use weft_benches::{dir_size, machine, measure, sibling_binary};
use weft_query::{Engine, QueryOptions};

#[derive(Debug, Parser)]
#[command(
    name = "bench-query",
    about = "Trace lookup and aggregates: weft against DuckDB"
)]
struct Args {
    /// Base corpus size (gen-corpus syntax); scales multiply it.
    #[arg(long, default_value = "80MB")]
    base: String,
    /// Scales of the base corpus.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    scales: Vec<u64>,
    /// Scratch directory (corpora and data dirs are kept between runs).
    #[arg(long, default_value = "/tmp/weft-bench-query")]
    work: PathBuf,
    /// Trace lookups per scale.
    #[arg(long, default_value_t = 40)]
    lookups: usize,
    /// Delete each scale's corpus after importing it (saves disk).
    #[arg(long)]
    drop_corpus: bool,
}

/// (name, weft SQL, DuckDB SQL): the same question in each dialect.
/// DuckDB 2.0 has no `date_trunc` for nanosecond timestamps, so its minute
/// bucket casts to microseconds first (no effect on a minute bucket).
const AGGREGATES: &[(&str, &str, &str)] = &[
    (
        "count by service, level",
        "SELECT service, level, count(*) AS n FROM logs GROUP BY service, level ORDER BY service, level",
        "SELECT service, level, count(*) AS n FROM logs GROUP BY service, level ORDER BY service, level",
    ),
    (
        "errors",
        "SELECT count(*) AS n FROM logs WHERE level = 'error'",
        "SELECT count(*) AS n FROM logs WHERE level = 'error'",
    ),
    (
        "lines per minute",
        "SELECT date_trunc('minute', timestamp) AS m, count(*) AS n FROM logs GROUP BY m ORDER BY m",
        "SELECT date_trunc('minute', CAST(timestamp AS TIMESTAMPTZ)) AS m, count(*) AS n FROM logs GROUP BY m ORDER BY m",
    ),
];

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn bytes_of(spec: &str) -> Result<u64> {
    let t = spec.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().context("size")?;
    let mult = match t[split..].to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => bail!("unknown size suffix {other}"),
    };
    Ok(n * mult)
}

/// Generates and imports one scale (skipped when its data dir exists).
fn prepare(args: &Args, scale: u64) -> Result<(PathBuf, Vec<String>)> {
    let dir = args.work.join(format!("x{scale}"));
    let data = dir.join("data");
    let truth = dir.join("truth.ndjson");
    if !data.join("manifest.json").exists() {
        std::fs::create_dir_all(&dir)?;
        let corpus = dir.join("corpus.ndjson");
        let bytes = bytes_of(&args.base)? * scale;
        eprintln!("x{scale}: generating {:.0} MB", bytes as f64 / 1e6);
        measure(
            Command::new(sibling_binary("gen-corpus")?)
                .arg("--out")
                .arg(&corpus)
                .args([
                    "--bytes",
                    &bytes.to_string(),
                    "--truth-every",
                    "200",
                    "--truth",
                ])
                .arg(&truth),
        )?;
        eprintln!("x{scale}: importing");
        let r = measure(
            Command::new(sibling_binary("weft")?)
                .args(["import", "--quiet", "--json", "--data"])
                .arg(&data)
                .arg(&corpus),
        )?;
        eprintln!(
            "x{scale}: imported in {:.1} s wall, {:.1} s cpu",
            r.wall,
            r.cpu()
        );
        if args.drop_corpus {
            std::fs::remove_file(&corpus)?;
        }
    }
    let ids: Vec<String> = std::fs::read_to_string(&truth)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect();
    Ok((data, ids))
}

const DUCKDB: &str = r#"
import json, sys, time, duckdb
data, ids, aggs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
src = f"read_parquet('{data}/segments/**/*.parquet', union_by_name = true)"
con.execute(f"CREATE VIEW logs AS SELECT * FROM {src}")
out = {"version": duckdb.__version__, "lookups": [], "aggregates": {}}
q = "SELECT * FROM logs WHERE correlation_id = ? ORDER BY timestamp"
con.execute(q, [ids[0]]).fetchall()
for i in ids:
    t = time.perf_counter(); rows = con.execute(q, [i]).fetchall(); out["lookups"].append([(time.perf_counter() - t) * 1000, len(rows)])
for name, sql in aggs:
    con.execute(sql).fetchall()
    ts = []
    for _ in range(3):
        t = time.perf_counter(); con.execute(sql).fetchall(); ts.append((time.perf_counter() - t) * 1000)
    out["aggregates"][name] = sorted(ts)[1]
out["rows"] = con.execute("SELECT count(*) FROM logs").fetchone()[0]
print(json.dumps(out))
"#;

async fn weft_side(
    data: &Path,
    ids: &[String],
) -> Result<(Vec<(f64, usize)>, HashMap<String, f64>)> {
    let engine = Engine::open(data, QueryOptions::default())?;
    engine.trace(&ids[0]).await?; // warm-up: loads the id indexes
    let mut lookups = Vec::new();
    for id in ids {
        let t = Instant::now();
        let tr = engine.trace(id).await?;
        lookups.push((t.elapsed().as_secs_f64() * 1000.0, tr.line_count));
    }
    let mut aggs = HashMap::new();
    for (name, sql, _) in AGGREGATES {
        engine.sql(sql, HashMap::new()).await?;
        let mut ts = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            engine.sql(sql, HashMap::new()).await?;
            ts.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        aggs.insert(name.to_string(), percentile(&mut ts, 0.5));
    }
    Ok((lookups, aggs))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("machine: {}", machine());
    println!();
    println!(
        "| scale | rows | segments MB | weft trace p50 ms | p99 ms | DuckDB lookup p50 ms | DuckDB/weft |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut agg_rows = Vec::new();
    for &scale in &args.scales {
        let (data, mut ids) = prepare(&args, scale)?;
        ids.truncate(args.lookups);
        if ids.is_empty() {
            bail!("no ids in the truth file for x{scale}");
        }
        let (lookups, aggs) = rt.block_on(weft_side(&data, &ids))?;
        let aggs_json: Vec<(&str, &str)> = AGGREGATES.iter().map(|(n, _, d)| (*n, *d)).collect();
        let out = Command::new("python3")
            .args(["-c", DUCKDB])
            .arg(&data)
            .arg(serde_json::to_string(&ids)?)
            .arg(serde_json::to_string(&aggs_json)?)
            .output()?;
        if !out.status.success() {
            bail!(
                "duckdb side failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The answer is the last line: anything DuckDB prints before it
        // (a progress bar, a warning) is not ours to parse.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let duck: Value = serde_json::from_str(last.unwrap_or_default())
            .with_context(|| format!("duckdb side printed no JSON answer: {stdout}"))?;
        // Both must find the same lines.
        for (i, (w, d)) in lookups
            .iter()
            .zip(duck["lookups"].as_array().unwrap())
            .enumerate()
        {
            let d_rows = d[1].as_u64().unwrap_or(0) as usize;
            if w.1 != d_rows {
                bail!("id {}: weft {} lines, duckdb {}", ids[i], w.1, d_rows);
            }
        }
        let mut w: Vec<f64> = lookups.iter().map(|l| l.0).collect();
        let mut d: Vec<f64> = duck["lookups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[0].as_f64().unwrap())
            .collect();
        let (wp50, wp99, dp50) = (
            percentile(&mut w, 0.5),
            percentile(&mut w, 0.99),
            percentile(&mut d, 0.5),
        );
        println!(
            "| x{scale} | {} | {:.0} | {wp50:.1} | {wp99:.1} | {dp50:.1} | {:.1}x |",
            duck["rows"],
            dir_size(&data.join("segments")) as f64 / 1e6,
            dp50 / wp50
        );
        for (name, _, _) in AGGREGATES {
            let dm = duck["aggregates"][*name].as_f64().unwrap_or(f64::NAN);
            agg_rows.push(format!(
                "| x{scale} | {name} | {:.1} | {dm:.1} | {:.2} |",
                aggs[*name],
                aggs[*name] / dm
            ));
        }
        eprintln!("x{scale}: done (DuckDB {})", duck["version"]);
    }
    println!();
    println!("| scale | aggregate | weft ms | DuckDB ms | weft/DuckDB |");
    println!("|---|---|---|---|---|");
    for r in agg_rows {
        println!("{r}");
    }
    Ok(())
}
