//! HTTP ingest benchmark: concurrent clients post NDJSON batches of a corpus
//! to a real `weft serve` over loopback, every answer only after the WAL
//! fsync.
//!
//! Three phases on one daemon:
//! 1. closed loop: every client posts as fast as answers come back. The
//!    daemon's user+sys CPU (from /proc), counted until the write buffer is
//!    empty again (every acknowledged byte in a segment), gives MB/s per
//!    core; the wall rate is the sustainable load.
//! 2. open loop at half that rate: latency p50/p99.
//! 3. open loop at twice that rate: latency, and the answers must all be
//!    2xx, 429 or 503 (no 5xx of other kinds, no resets), while the daemon's
//!    peak RSS stays under its configured resident cap.
//!
//! The peer in the same run is `gzip -6` over the same bytes (CPU per core).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use weft_benches::{machine, measure, sibling_binary, warm};

#[derive(Debug, Parser)]
#[command(name = "bench-ingest", about = "HTTP ingest with fsync-before-ack")]
struct Args {
    /// Corpus file (gen-corpus output).
    #[arg(long, default_value = "benches/corpus/1g.ndjson")]
    corpus: PathBuf,
    /// Bytes of the corpus to send in the closed-loop phase.
    #[arg(long, default_value_t = 400_000_000)]
    bytes: u64,
    /// Bytes per request (cut at line ends).
    #[arg(long, default_value_t = 1 << 20)]
    batch: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of each open-loop phase.
    #[arg(long, default_value_t = 20.0)]
    secs: f64,
    /// Write buffer cap given to the daemon (bytes).
    #[arg(long, default_value_t = 256 << 20)]
    max_buffer: u64,
    /// In-flight request budget given to the daemon (bytes).
    #[arg(long, default_value_t = 128 << 20)]
    max_inflight: u64,
    /// Resident memory cap given to the daemon (bytes; default the write
    /// buffer cap plus the in-flight budget; 0 turns the check off).
    #[arg(long)]
    max_resident: Option<u64>,
    /// Buffer memory a flush writes per part (bytes; default half the
    /// write buffer cap).
    #[arg(long)]
    flush_bytes: Option<u64>,
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "/tmp/weft-bench-ingest")]
    work: PathBuf,
}

impl Args {
    fn resident_cap(&self) -> u64 {
        self.max_resident
            .unwrap_or(self.max_buffer + self.max_inflight)
    }
}

/// The daemon under test.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(args: &Args, data: &Path) -> Result<Self> {
        let config = data.with_extension("toml");
        std::fs::write(
            &config,
            format!(
                "[serve.store]\nmax_buffer_bytes = {}\nmax_resident_bytes = {}\nflush_bytes = {}\n[serve.limits]\nmax_inflight_bytes = {}\n",
                args.max_buffer,
                args.resident_cap(),
                args.flush_bytes.unwrap_or(args.max_buffer / 2),
                args.max_inflight
            ),
        )?;
        let mut child = Command::new(sibling_binary("weft")?)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().context("daemon exited before listening")??;
            if let Some(rest) = line.trim().strip_prefix("listening: http://") {
                break rest.split_whitespace().next().context("address")?.parse()?;
            }
        };
        // Keep draining stderr so the daemon never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let d = Daemon { child, addr };
        let started = Instant::now();
        while post(d.addr, "/readyz", &[], "GET").ok().map(|r| r.0) != Some(200) {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("daemon not ready after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// user+sys CPU seconds so far, from /proc/PID/stat.
    fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // Fields after the name: state is 0, utime 11, stime 12.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Waits until the write buffer holds nothing (the daemon's
    /// `weft_buffer_bytes`, summed over tenants); returns how long that took.
    fn wait_buffer_empty(&self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let (status, text) = post(self.addr, "/metrics", &[], "GET")?;
            if status != 200 {
                bail!("GET /metrics answered {status}");
            }
            let held: Vec<f64> = text
                .lines()
                .filter(|l| {
                    l.starts_with("weft_buffer_bytes{") || l.starts_with("weft_buffer_bytes ")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect();
            if held.is_empty() {
                bail!("GET /metrics has no weft_buffer_bytes sample");
            }
            let held: f64 = held.iter().sum();
            if held == 0.0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("the write buffer still held {held} bytes after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn peak_rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn post(addr: SocketAddr, path: &str, body: &[u8], method: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

/// The corpus cut into batches at line ends.
fn batches(corpus: &Path, total: u64, batch: usize) -> Result<Vec<Arc<Vec<u8>>>> {
    let mut f =
        std::fs::File::open(corpus).with_context(|| format!("cannot read {}", corpus.display()))?;
    let mut all = Vec::new();
    (&mut f).take(total).read_to_end(&mut all)?;
    if let Some(end) = all.iter().rposition(|&b| b == b'\n') {
        all.truncate(end + 1);
    }
    Ok(weft_benches::cut_at_line_ends(&all, batch)
        .into_iter()
        .map(|piece| Arc::new(piece.to_vec()))
        .collect())
}

#[derive(Debug, Default)]
struct Tally {
    statuses: Mutex<std::collections::BTreeMap<u16, u64>>,
    latencies_ms: Mutex<Vec<f64>>,
    acked_bytes: AtomicU64,
    /// Requests not sent because 256 were already outstanding.
    skipped: AtomicU64,
}

impl Tally {
    fn record(&self, status: u16, ms: f64, bytes: usize) {
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
        if status == 200 {
            self.latencies_ms.lock().unwrap().push(ms);
            self.acked_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.lock().unwrap().clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    fn statuses(&self) -> String {
        self.statuses
            .lock()
            .unwrap()
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every client posts the next batch as soon as its last one is answered;
/// a 429/503 is retried after a short pause.
fn closed_loop(d: &Daemon, batches: &[Arc<Vec<u8>>], clients: usize) -> Tally {
    let next = AtomicUsize::new(0);
    let tally = Tally::default();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = batches.get(i) else { return };
                    loop {
                        let t = Instant::now();
                        let status = post(d.addr, "/v1/ingest", b, "POST").map_or(0, |r| r.0);
                        tally.record(status, t.elapsed().as_secs_f64() * 1e3, b.len());
                        if status == 200 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
    });
    tally
}

/// Requests start on a fixed schedule (`rate` bytes/s in `batch`-sized
/// requests), whether or not earlier ones were answered; refused ones are
/// not retried (the refusal is the answer being measured).
fn open_loop(d: &Daemon, batches: &[Arc<Vec<u8>>], rate: f64, secs: f64) -> Tally {
    let tally = Tally::default();
    let avg = batches.iter().map(|b| b.len()).sum::<usize>() as f64 / batches.len() as f64;
    let interval = Duration::from_secs_f64(avg / rate);
    let start = Instant::now();
    let in_flight = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mut k = 0usize;
        while start.elapsed().as_secs_f64() < secs {
            let due = start + interval * k as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Bounded: at most 256 requests outstanding from this client side.
            if in_flight.load(Ordering::Relaxed) >= 256 {
                tally.skipped.fetch_add(1, Ordering::Relaxed);
                k += 1;
                continue;
            }
            let b = &batches[k % batches.len()];
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (tally, in_flight) = (&tally, &in_flight);
            s.spawn(move || {
                let t = Instant::now();
                let status = post(d.addr, "/v1/ingest", b, "POST").map_or(0, |r| r.0);
                tally.record(status, t.elapsed().as_secs_f64() * 1e3, b.len());
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            k += 1;
        }
    });
    tally
}

fn main() -> Result<()> {
    let args = Args::parse();
    warm(&args.corpus)?;
    let batches = batches(&args.corpus, args.bytes, args.batch)?;
    let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
    if args.work.exists() {
        std::fs::remove_dir_all(&args.work)?;
    }
    std::fs::create_dir_all(&args.work)?;
    let d = Daemon::start(&args, &args.work.join("data"))?;

    eprintln!(
        "closed loop: {} requests of ≤ {} bytes from {} clients …",
        batches.len(),
        args.batch,
        args.clients
    );
    let cpu0 = d.cpu();
    let t0 = Instant::now();
    let closed = closed_loop(&d, &batches, args.clients);
    let wall = t0.elapsed().as_secs_f64();
    let cpu_acked = d.cpu() - cpu0;
    let acked = closed.acked_bytes.load(Ordering::Relaxed);
    if acked != total {
        bail!("acknowledged {acked} of {total} bytes");
    }
    let sustainable = acked as f64 / wall;
    // What the buffer still holds at the last answer is written to
    // segments later (by age, 10 s by default): its share of the work is
    // counted only once the buffer is empty.
    let flushed_after = d.wait_buffer_empty(Duration::from_secs(120))?;
    let cpu = d.cpu() - cpu0;

    // The peer: gzip -6 over the same bytes.
    let sample = args.work.join("sample.ndjson");
    {
        let mut f = std::fs::File::create(&sample)?;
        for b in &batches {
            f.write_all(b)?;
        }
    }
    warm(&sample)?;
    let gzip = measure(
        Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -6 -c {} > /dev/null", sample.display())),
    )?;
    std::fs::remove_file(&sample)?;

    eprintln!("open loop at half load ({:.1} MB/s) …", sustainable / 2e6);
    let half = open_loop(&d, &batches, sustainable / 2.0, args.secs);
    eprintln!(
        "open loop at twice the load ({:.1} MB/s) …",
        sustainable * 2.0 / 1e6
    );
    let double = open_loop(&d, &batches, sustainable * 2.0, args.secs);
    let rss = d.peak_rss();
    let cap = args.resident_cap();

    let mb = |b: f64| b / 1e6;
    println!("machine: {}", machine());
    println!(
        "closed loop: {} MB in {:.2} s wall, daemon {:.2} s user+sys until the buffer was empty ({:.1} s after the last answer): {:.1} MB/s per core, {:.1} MB/s wall; answers {}",
        mb(acked as f64) as u64,
        wall,
        cpu,
        flushed_after.as_secs_f64(),
        mb(acked as f64) / cpu.max(1e-9),
        mb(sustainable),
        closed.statuses()
    );
    println!(
        "  to the last answer only (the buffered rest not yet in segments): daemon {:.2} s user+sys, {:.1} MB/s per core",
        cpu_acked,
        mb(acked as f64) / cpu_acked.max(1e-9)
    );
    println!(
        "peer gzip -6 on the same bytes: {:.2} s user+sys: {:.1} MB/s per core (weft/gzip {:.2}x)",
        gzip.cpu(),
        mb(total as f64) / gzip.cpu().max(1e-9),
        (mb(acked as f64) / cpu.max(1e-9)) / (mb(total as f64) / gzip.cpu().max(1e-9))
    );
    for (name, t) in [("half load", &half), ("twice the load", &double)] {
        println!(
            "{name}: p50 {:.1} ms, p99 {:.1} ms (of 200s), answers {} ({} not sent: 256 outstanding)",
            t.percentile(0.5),
            t.percentile(0.99),
            t.statuses(),
            t.skipped.load(Ordering::Relaxed)
        );
    }
    let bad: u64 = double
        .statuses
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| !matches!(**s, 200..=299 | 429 | 503))
        .map(|(_, n)| *n)
        .sum();
    println!(
        "peak RSS {:.1} MB, {} the resident cap of {:.1} MB; answers other than 2xx/429/503 at twice the load: {bad}",
        mb(rss as f64),
        if rss <= cap { "under" } else { "OVER" },
        mb(cap as f64)
    );
    Ok(())
}
