//! The crash test: clients write while the daemon is SIGKILLed at random
//! moments (every fifth cycle: stopped with SIGTERM) and restarted on the
//! same data directory; in the end every acknowledged record is present
//! exactly once.
//!
//! Each record carries a globally unique `seq` and is sent once, never
//! retried, so a duplicate can only come from the daemon (a WAL record
//! replayed on top of the segment that already holds it, a batch applied
//! twice). A record whose POST did not answer 200 may or may not be stored —
//! the kill may land between the fsync and the answer — but never twice.
//!
//! Knobs (environment of the test process):
//! - `WEFT_CRASH_CYCLES`: kill/restart cycles [default: 20]
//! - `WEFT_CRASH_SEED`: seed of the kill delays and batch sizes
//! - `WEFT_CRASH_MAX_SECS`: stop cycling after this long, 0 for no limit
//!   [default: 300]; the summary says when it cut the run short
//!
//! `tests/soak.sh` runs it for many cycles in release mode.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_tests::daemon::{Daemon, DaemonOptions, http};

const CLIENTS: u64 = 4;

/// Small deterministic generator (xorshift64): kill delays and batch sizes
/// repeat for a given seed; thread scheduling does not, which is the point.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `lo..=hi` for test timings.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
        Err(_) => default,
    }
}

/// What the clients and the killer share.
struct Shared {
    /// The daemon to talk to; `None` while it is down. Cleared before each
    /// kill (right after each clean stop), so no client starts a request to
    /// a port another process might have taken over.
    addr: Mutex<Option<SocketAddr>>,
    next_seq: AtomicU64,
    stop: AtomicBool,
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    acked: Vec<u64>,
    sent: u64,
    /// Answers by status (`"conn"` for a failed connection or read).
    answers: BTreeMap<String, u64>,
    /// Answers no correct daemon gives; each fails the test.
    wrong: Vec<String>,
}

fn client(c: u64, seed: u64, shared: &Shared) -> ClientReport {
    let mut rng = XorShift::new(seed ^ (c + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut report = ClientReport::default();
    while !shared.stop.load(Ordering::Acquire) {
        let Some(addr) = *shared.addr.lock().unwrap() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let n = rng.between(1, 8);
        let first = shared.next_seq.fetch_add(n, Ordering::Relaxed);
        let seqs = first..first + n;
        let body: String = seqs
            .clone()
            .map(|s| format!("{{\"message\":\"m\",\"seq\":{s},\"client\":{c}}}\n"))
            .collect();
        report.sent += n;
        let r = http(addr, "POST", "/v1/ingest", &[], body.as_bytes());
        let key = match &r {
            Ok(r) => r.status.to_string(),
            Err(_) => "conn".to_owned(),
        };
        *report.answers.entry(key).or_default() += 1;
        match r {
            Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) if v["accepted"] == n && v["rejected"] == 0 => report.acked.extend(seqs),
                _ => report
                    .wrong
                    .push(format!("200 for {n} lines answered {}", r.text())),
            },
            // Overloaded or not ready (replaying): unacknowledged, go on.
            Ok(r) if (r.status == 429 || r.status == 503) && r.header("retry-after").is_some() => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(r) => {
                report
                    .wrong
                    .push(format!("status {} answered {}", r.status, r.text()));
            }
            // Killed under us, or not up yet: unacknowledged, go on.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    report
}

/// The daemon's settings for one cycle: vary flushing so kills land with a
/// full buffer, during age- and size-triggered flushes, during WAL rotation,
/// while the buffer is full (429), and while the process is over its
/// resident cap (429, and a flush at once whenever something is buffered).
fn cycle_options(cycle: u64, config: &std::path::Path) -> DaemonOptions {
    let o = DaemonOptions::default();
    // Six cases against a clean stop every fifth cycle: over 30 cycles
    // each case meets both kinds of stop.
    match cycle % 6 {
        1 => o.env("WEFT_FLUSH_AGE_SECS", "0.2"),
        2 => o
            .env("WEFT_FLUSH_AGE_SECS", "0.05")
            .arg("--config")
            .arg(config.to_str().expect("utf-8 path")),
        3 => o
            .env("WEFT_FLUSH_AGE_SECS", "0.2")
            .env("WEFT_MAX_BUFFER_BYTES", "262144"),
        4 => o
            .env("WEFT_FLUSH_AGE_SECS", "0.2")
            .env("WEFT_MAX_RESIDENT_BYTES", "1"),
        _ => o,
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_exactly_once() {
    let cycles = env_u64("WEFT_CRASH_CYCLES", 20);
    let seed = env_u64("WEFT_CRASH_SEED", 0x5eed_c0ff_ee00);
    let max_secs = env_u64("WEFT_CRASH_MAX_SECS", 300);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Tiny WAL files and flush size: rotation, size flushes and WAL deletion
    // happen many times per cycle.
    let config = dir.path().join("small.toml");
    std::fs::write(
        &config,
        "[serve.store]\nwal_file_bytes = 16384\nflush_bytes = 65536\n",
    )
    .unwrap();

    let shared = Arc::new(Shared {
        addr: Mutex::new(None),
        next_seq: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || client(c, seed, &shared))
        })
        .collect();

    let started = Instant::now();
    let mut rng = XorShift::new(seed);
    let mut done = 0;
    let mut stops = 0;
    let mut cut_short = false;
    for cycle in 0..cycles {
        if max_secs > 0 && started.elapsed() > Duration::from_secs(max_secs) {
            cut_short = true;
            break;
        }
        let mut d = Daemon::spawn(&data, &cycle_options(cycle, &config));
        // Clients talk to it during replay too: those answers must be 503.
        *shared.addr.lock().unwrap() = Some(d.addr());
        d.wait_ready(weft_tests::daemon::READY_TIMEOUT);
        std::thread::sleep(Duration::from_millis(rng.between(50, 400)));
        if cycle % 5 == 4 {
            // Now and then a clean stop while clients write: requests in
            // flight finish, later ones are refused, the buffer is flushed.
            // The address is cleared once the port is closed.
            let status = d.terminate();
            *shared.addr.lock().unwrap() = None;
            assert!(status.success(), "SIGTERM: {status}\n{}", d.stderr_text());
            stops += 1;
        } else {
            *shared.addr.lock().unwrap() = None;
            d.kill();
        }
        done += 1;
    }

    shared.stop.store(true, Ordering::Release);
    let mut acked = Vec::new();
    let mut sent = 0;
    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    let mut wrong = Vec::new();
    for c in clients {
        let r = c.join().expect("client thread");
        acked.extend(r.acked);
        sent += r.sent;
        for (k, v) in r.answers {
            *answers.entry(k).or_default() += v;
        }
        wrong.extend(r.wrong);
    }
    let issued = shared.next_seq.load(Ordering::Relaxed);

    // One more start: replay whatever the last kill left, then check.
    let mut d = Daemon::start_with(
        &data,
        &DaemonOptions::default().arg("--max-rows").arg("100000000"),
    );
    let duplicates = d.rows(
        "SELECT seq, count(*) FROM logs GROUP BY seq HAVING count(*) > 1 ORDER BY seq LIMIT 20",
    );
    let present: HashSet<u64> = d
        .rows("SELECT seq FROM logs")
        .iter()
        .map(|r| r[0].as_u64().expect("seq is a non-negative integer"))
        .collect();
    let total_rows = d.scalar("SELECT count(*) FROM logs");
    let rejects = d.scalar("SELECT count(*) FROM rejects");
    let manifest = std::fs::read(data.join("manifest.json")).unwrap_or_default();
    let segments = serde_json::from_slice::<Value>(&manifest)
        .ok()
        .and_then(|m| m["segments"].as_array().map(Vec::len))
        .unwrap_or(0);
    let mut missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|s| !present.contains(s))
        .collect();
    missing.sort_unstable();
    let phantom: Vec<u64> = present.iter().copied().filter(|&s| s >= issued).collect();

    eprintln!(
        "crash: cycles={done}/{cycles}{} sigterm={stops} sent={sent} acked={} present={} rows={total_rows} \
         duplicates={} missing={} rejects={rejects} answers={answers:?} segments={segments} \
         manifest_bytes={} elapsed={:.1}s seed={seed:#x}",
        if cut_short { " (time limit)" } else { "" },
        acked.len(),
        present.len(),
        duplicates.len(),
        missing.len(),
        manifest.len(),
        started.elapsed().as_secs_f64(),
    );

    assert!(wrong.is_empty(), "answers no daemon should give: {wrong:?}");
    assert!(!acked.is_empty(), "no write was ever acknowledged");
    assert!(
        duplicates.is_empty(),
        "seqs stored more than once (seq, copies): {duplicates:?}"
    );
    assert_eq!(
        total_rows,
        present.len() as i64,
        "rows without a distinct seq"
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged seqs lost, first: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(phantom.is_empty(), "seqs never sent: {phantom:?}");
    assert_eq!(rejects, 0, "no line sent was malformed");
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.stderr_text());
}
