//! `weft serve` end to end over loopback: ingest, query, restarts after
//! SIGTERM and SIGKILL, idempotent retries, compressed bodies, rejects,
//! request ids and JSON logs — the real binary, a real socket.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use weft_tests::daemon::{Daemon, DaemonOptions};

/// Three records using different spellings of the core fields; the
/// request's `?service=` and `?host=` fill in what a record lacks.
const BATCH: &str = concat!(
    r#"{"message":"first","seq":1,"timestamp":"2024-05-01T12:00:00.5Z","correlation_id":"c-1"}"#,
    "\n",
    r#"{"msg":"second","seq":2,"service":"auth","ts":1714564801000,"traceId":"c-2"}"#,
    "\n",
    r#"{"message":"third","seq":3,"timestamp":"2024-05-01T12:00:02Z","host":"h9","correlation_id":"c-1"}"#,
    "\n",
);

/// What the tests compare across restarts: every row, every core field used.
const SNAPSHOT_SQL: &str = "SELECT seq, message, service, host, correlation_id, \
     CAST(timestamp AS BIGINT) AS ts_ns FROM logs ORDER BY seq";

fn snapshot(d: &Daemon) -> Vec<Vec<Value>> {
    d.rows(SNAPSHOT_SQL)
}

fn ndjson_200(d: &Daemon, query: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    let r = d.ingest(query, headers, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn ingested_rows_survive_sigterm_and_sigkill_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let health = d.get("/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(d.get("/readyz").unwrap().status, 200);

    let answer = ndjson_200(&d, "service=checkout&host=h1", &[], BATCH.as_bytes());
    assert_eq!(answer, json!({"accepted": 3, "rejected": 0, "errors": []}));
    // Acknowledged means queryable at once, before any flush.
    let before = snapshot(&d);
    let expected: Vec<Vec<Value>> = serde_json::from_value(json!([
        [
            1,
            "first",
            "checkout",
            "h1",
            "c-1",
            1_714_564_800_500_000_000_i64
        ],
        [
            2,
            "second",
            "auth",
            "h1",
            "c-2",
            1_714_564_801_000_000_000_i64
        ],
        [
            3,
            "third",
            "checkout",
            "h9",
            "c-1",
            1_714_564_802_000_000_000_i64
        ],
    ]))
    .unwrap();
    assert_eq!(before, expected);
    // A field that is no core column becomes a typed column of its own.
    assert_eq!(
        d.query("SELECT seq, message FROM logs LIMIT 1")["columns"],
        json!([{"name": "seq", "type": "Int64"}, {"name": "message", "type": "Utf8"}])
    );
    assert_eq!(
        d.rows("SELECT seq FROM logs WHERE correlation_id = 'c-1' ORDER BY seq"),
        vec![vec![json!(1)], vec![json!(3)]]
    );

    // SIGTERM flushes the buffer into segments and exits 0.
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.stderr_text());
    let segments = parquet_files(&dir.path().join("segments"));
    assert!(
        !segments.is_empty(),
        "no Parquet segment under {}/segments after SIGTERM",
        dir.path().display()
    );

    let mut d = Daemon::start(dir.path());
    assert_eq!(snapshot(&d), before, "after a SIGTERM restart");

    // New rows, then SIGKILL: no flush; the WAL alone brings them back.
    let more = concat!(
        r#"{"message":"fourth","seq":4,"timestamp":"2024-05-01T12:00:03Z","correlation_id":"c-4"}"#,
        "\n",
        r#"{"message":"fifth","seq":5,"timestamp":"2024-05-01T12:00:04Z","correlation_id":"c-4"}"#,
        "\n",
    );
    let answer = ndjson_200(&d, "service=checkout&host=h1", &[], more.as_bytes());
    assert_eq!(answer["accepted"], 2);
    let before_kill = snapshot(&d);
    assert_eq!(before_kill.len(), 5);
    assert_eq!(before_kill[..3], before[..]);
    d.kill();

    let mut d = Daemon::start(dir.path());
    assert_eq!(snapshot(&d), before_kill, "after a SIGKILL restart");
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.stderr_text());

    // And once more after the replayed rows were flushed by the SIGTERM.
    let mut d = Daemon::start(dir.path());
    assert_eq!(snapshot(&d), before_kill, "after replay, flush and restart");
    assert!(d.terminate().success());
}

#[test]
fn idempotency_key_retry_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let key = [("Idempotency-Key", "batch-0001")];
    let first = ndjson_200(&d, "", &key, BATCH.as_bytes());
    assert_eq!(first["accepted"], 3);
    assert!(first.get("duplicate").is_none_or(|v| v == false), "{first}");
    let retry = ndjson_200(&d, "", &key, BATCH.as_bytes());
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(retry["accepted"], 3, "a retry answers like the original");
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 3);

    // The same key with another body is a client error, and stores nothing.
    let other = d.ingest("", &key, b"{\"message\":\"other\",\"seq\":99}\n");
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 3);

    // The key outlives a crash (it is in the WAL record)…
    d.kill();
    let mut d = Daemon::start(dir.path());
    let retry = ndjson_200(&d, "", &key, BATCH.as_bytes());
    assert_eq!(retry["duplicate"], true, "after SIGKILL: {retry}");
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 3);

    // …and a clean stop, once the WAL holding it is gone.
    assert!(d.terminate().success());
    let mut d = Daemon::start(dir.path());
    let retry = ndjson_200(&d, "", &key, BATCH.as_bytes());
    assert_eq!(retry["duplicate"], true, "after SIGTERM: {retry}");
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 3);
    assert_eq!(d.scalar("SELECT count(DISTINCT seq) FROM logs"), 3);
    assert!(d.terminate().success());
}

#[test]
fn gzip_and_zstd_bodies_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let gz = gzip(b"{\"message\":\"g1\",\"seq\":1}\n{\"message\":\"g2\",\"seq\":2}\n");
    let answer = ndjson_200(&d, "", &[("Content-Encoding", "gzip")], &gz);
    assert_eq!(answer["accepted"], 2, "{answer}");
    let zs = zstd::encode_all(
        &b"{\"message\":\"z1\",\"seq\":3}\n{\"message\":\"z2\",\"seq\":4}\n{\"message\":\"z3\",\"seq\":5}\n"[..],
        3,
    )
    .unwrap();
    let answer = ndjson_200(&d, "", &[("Content-Encoding", "zstd")], &zs);
    assert_eq!(answer["accepted"], 3, "{answer}");

    // A corrupt stream is permanently bad data: 400, nothing stored.
    let mut torn = gzip(b"{\"message\":\"never\",\"seq\":6}\n");
    torn.truncate(torn.len() / 2);
    let r = d.ingest("", &[("Content-Encoding", "gzip")], &torn);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.ingest("", &[("Content-Encoding", "zstd")], b"not zstd at all");
    assert_eq!(r.status, 400, "{}", r.text());

    // Its stderr is a pipe, not a terminal: text logs carry no colour codes.
    let logs = d.stderr_text();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "escape codes in piped logs:\n{logs}"
    );

    assert_eq!(
        d.rows("SELECT seq, message FROM logs ORDER BY seq"),
        serde_json::from_value::<Vec<Vec<Value>>>(json!([
            [1, "g1"],
            [2, "g2"],
            [3, "z1"],
            [4, "z2"],
            [5, "z3"]
        ]))
        .unwrap()
    );
    assert!(d.terminate().success());
}

#[test]
fn body_over_the_limit_is_413_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(
        dir.path(),
        &DaemonOptions::default().env("WEFT_MAX_BODY_BYTES", "1024"),
    );
    let line = "{\"message\":\"padding padding padding\",\"seq\":1}\n";
    let big = line.repeat(2048 / line.len() + 1);
    let r = d.ingest("", &[], big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    let small = ndjson_200(&d, "", &[], line.as_bytes());
    assert_eq!(small["accepted"], 1);
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 1);
    assert!(d.terminate().success());
}

#[test]
fn bad_lines_get_per_line_errors_and_land_in_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let body = concat!(
        "{\"message\":\"good\",\"seq\":1}\n",
        "not json\n",
        "{\"message\":\"good too\",\"seq\":2}\n",
        "{\"message\":\"unterminated\n",
        "[1,2,3]\n",
    );
    let answer = ndjson_200(&d, "", &[], body.as_bytes());
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"], 3, "{answer}");
    let errors = answer["errors"].as_array().unwrap();
    let lines: Vec<&Value> = errors.iter().map(|e| &e["line"]).collect();
    assert_eq!(lines, [&json!(2), &json!(4), &json!(5)], "{answer}");
    for e in errors {
        assert!(
            e["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{answer}"
        );
    }

    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 2);
    assert_eq!(d.scalar("SELECT count(*) FROM rejects"), 3);
    assert_eq!(
        d.rows("SELECT line, source FROM rejects ORDER BY line"),
        serde_json::from_value::<Vec<Vec<Value>>>(json!([
            [2, "http:/v1/ingest"],
            [4, "http:/v1/ingest"],
            [5, "http:/v1/ingest"]
        ]))
        .unwrap()
    );
    // The raw bytes are kept: the line can be recovered.
    assert_eq!(
        d.scalar("SELECT count(*) FROM rejects WHERE raw = CAST('not json' AS BYTEA)"),
        1
    );

    // Rejects are durable like rows: they survive a crash.
    d.kill();
    let mut d = Daemon::start(dir.path());
    assert_eq!(d.scalar("SELECT count(*) FROM rejects"), 3);
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 2);
    assert!(d.terminate().success());
}

#[test]
fn request_id_is_echoed_and_logged_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(
        dir.path(),
        &DaemonOptions::default().env("WEFT_LOG_FORMAT", "json"),
    );
    let id = "e2e-request-7f3a9c";
    let r = d.ingest("", &[("X-Request-Id", id)], BATCH.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some(id));
    // Without one, the daemon makes one up and still says which.
    let r = d.get("/healthz").unwrap();
    assert!(
        r.header("x-request-id")
            .is_some_and(|v| !v.is_empty() && v != id),
        "{:?}",
        r.headers
    );
    let status = d.terminate();
    assert!(status.success(), "{status}");

    // The banner is `weft serve` and the indented lines under it; every
    // other line is one JSON object.
    let lines = d.stderr_lines();
    let banner = lines
        .iter()
        .position(|l| l == "weft serve")
        .unwrap_or_else(|| panic!("no banner:\n{}", lines.join("\n")));
    let banner_end = banner
        + 1
        + lines[banner + 1..]
            .iter()
            .take_while(|l| l.starts_with("  "))
            .count();
    let logs: Vec<&String> = lines[..banner].iter().chain(&lines[banner_end..]).collect();
    assert!(!logs.is_empty(), "no log lines:\n{}", lines.join("\n"));
    let parsed: Vec<Value> = logs
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "log line is not an object: {l}");
            v
        })
        .collect();
    let carrying = parsed.iter().filter(|v| mentions(v, id)).count();
    assert!(
        carrying >= 1,
        "no log line carries request id {id}:\n{}",
        lines.join("\n")
    );
}

/// Whether any string anywhere in `v` equals `s`.
fn mentions(v: &Value, s: &str) -> bool {
    match v {
        Value::String(x) => x == s,
        Value::Array(a) => a.iter().any(|x| mentions(x, s)),
        Value::Object(o) => o.values().any(|x| mentions(x, s)),
        _ => false,
    }
}

#[test]
fn queries_answer_during_and_after_ingest() {
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    // A short flush age, so segments are written while queries run too.
    let mut d = Daemon::start_with(
        dir.path(),
        &DaemonOptions::default().env("WEFT_FLUSH_AGE_SECS", "0.1"),
    );
    let addr = d.addr();
    let writer = std::thread::spawn(move || {
        for b in 0..BATCHES {
            let body: String = (0..PER_BATCH)
                .map(|i| format!("{{\"message\":\"w\",\"seq\":{}}}\n", b * PER_BATCH + i))
                .collect();
            let r = weft_tests::daemon::http(addr, "POST", "/v1/ingest", &[], body.as_bytes())
                .expect("ingest");
            assert_eq!(r.status, 200, "{}", r.text());
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut seen = Vec::new();
    while !writer.is_finished() {
        let n = d.scalar("SELECT count(*) FROM logs");
        // Whole batches only: a batch is visible all at once or not at all.
        assert_eq!(n as u64 % PER_BATCH, 0, "partial batch visible: {n}");
        seen.push(n);
    }
    writer.join().expect("writer");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "count went down: {seen:?}"
    );
    let total = (BATCHES * PER_BATCH) as i64;
    assert!(seen.iter().all(|&n| n <= total), "{seen:?}");
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), total);
    assert_eq!(d.scalar("SELECT count(DISTINCT seq) FROM logs"), total);
    assert_eq!(
        d.scalar("SELECT sum(seq) FROM logs"),
        total * (total - 1) / 2
    );
    assert!(d.terminate().success());
}
