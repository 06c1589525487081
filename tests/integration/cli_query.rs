//! `weft query`, `weft trace`, `weft queries` and `weft serve`, as a user runs them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use serde_json::Value;
use weft_tests::{testdata, weft, weft_bin, weft_ok};

const REQUEST: &str = "4e1e84b5c3f3301463d7b3128ea104b5";

fn imported() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let styles = testdata("styles.ndjson");
    let malformed = testdata("malformed.ndjson");
    weft_ok(&[
        "import",
        "--quiet",
        "--data",
        dir.path().to_str().unwrap(),
        styles.to_str().unwrap(),
        malformed.to_str().unwrap(),
    ]);
    dir
}

#[test]
fn query_formats_and_errors() {
    let dir = imported();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        weft_ok(&[
            "query",
            "--data",
            d,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM logs"
        ]),
        "n\n36\n"
    );
    let out = weft_ok(&[
        "query",
        "--data",
        d,
        "--format",
        "ndjson",
        "SELECT count(*) AS n FROM rejects",
    ]);
    assert_eq!(out, "{\"n\":9}\n");
    let out = weft_ok(&[
        "query",
        "--data",
        d,
        "SELECT level, count(*) AS n FROM logs WHERE correlation_id = 'm-1' GROUP BY level ORDER BY level",
    ]);
    assert!(
        out.contains("| error | 1 |") && out.contains("| warn  | 1 |"),
        "{out}"
    );
    let out = weft_ok(&[
        "query",
        "--data",
        d,
        "--format",
        "json",
        "--param",
        "id=m-1",
        "SELECT count(*) AS n FROM logs WHERE correlation_id = $id",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["rows"][0][0],
        3
    );

    let bad = weft(&["query", "--data", d, "DROP TABLE logs"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("read-only"));
    let bad = weft(&["query", "--data", d, "SELECT * FROM logz"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("logz"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let missing = weft(&["query", "--data", "/no/such/dir", "SELECT 1"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no data directory at /no/such/dir"));
}

#[test]
fn trace_timeline_and_json() {
    let dir = imported();
    let d = dir.path().to_str().unwrap();
    let out = weft_ok(&["trace", "--data", d, REQUEST]);
    assert!(
        out.starts_with(&format!("trace {REQUEST}: 6 lines, 6 services")),
        "{out}"
    );
    for svc in [
        "edge-nginx",
        "checkout-go",
        "cart-node",
        "inventory-rs",
        "payments-otel",
        "orders-java",
    ] {
        assert!(out.contains(svc), "{svc} missing:\n{out}");
    }
    let t: Value =
        serde_json::from_str(&weft_ok(&["trace", "--json", "--data", d, REQUEST])).unwrap();
    assert_eq!(t["line_count"], 6);
    let offsets: Vec<f64> = t["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["offset_ms"].as_f64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    let none = weft(&["trace", "--data", d, "no-such-id"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stdout).contains("no lines with correlation id"));
}

#[test]
fn saved_queries_list_and_run() {
    let dir = imported();
    let d = dir.path().to_str().unwrap();
    let list = weft_ok(&["queries"]);
    for name in [
        "trace_timeline",
        "errors_by_service",
        "silent_services",
        "slowest_requests",
        "top_reject_reasons",
        "new_errors_since",
        "request_neighbours",
    ] {
        assert!(list.contains(name), "{name} not listed:\n{list}");
    }
    let out = weft_ok(&[
        "queries",
        "run",
        "trace_timeline",
        "--data",
        d,
        "--param",
        &format!("id={REQUEST}"),
        "--format",
        "json",
    ]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["row_count"], 6);
    let out = weft_ok(&[
        "queries",
        "run",
        "top_reject_reasons",
        "--data",
        d,
        "--param",
        "since=2000-01-01T00:00:00Z",
        "--format",
        "csv",
    ]);
    assert!(out.lines().count() >= 7, "{out}");
    let bad = weft(&["queries", "run", "trace_timeline", "--data", d]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs parameter id"));
    let bad = weft(&["queries", "run", "nope", "--data", d]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no saved query named \"nope\""));
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_answers_over_loopback_and_stops_on_sigterm() {
    let dir = imported();
    let mut child = Command::new(weft_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut banner = String::new();
    for _ in 0..20 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        banner.push_str(&line);
        if let Some(rest) = line.split("http://").nth(1) {
            addr = Some(rest.split_whitespace().next().unwrap().to_owned());
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no listen address in banner:\n{banner}"));
    assert!(banner.contains("data dir"), "{banner}");
    assert_eq!(http(&addr, "GET", "/healthz", ""), (200, "ok\n".into()));
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/query",
        r#"{"sql":"SELECT count(*) AS n FROM logs"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["rows"][0][0],
        36
    );
    let (status, body) = http(&addr, "GET", &format!("/v1/trace/{REQUEST}"), "");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["line_count"],
        6
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn serve_refuses_non_loopback_without_auth() {
    let out = weft(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--data",
        "/tmp/unused-weft",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback addresses only"));
}
