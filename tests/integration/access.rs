//! The investigator API on the real daemon: tokens made by `weft token
//! create`, roles and tenants over loopback HTTP, the audit trail of HTTP
//! and CLI lookups, and a streamed answer that the client walks away from.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_tests::daemon::{Daemon, DaemonOptions, Response, http};
use weft_tests::{create_token, weft, weft_ok};

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `GET path` with `token`.
fn get(d: &Daemon, token: &str, path: &str) -> Response {
    http(
        d.addr(),
        "GET",
        path,
        &[("authorization", &bearer(token))],
        b"",
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn query(d: &Daemon, token: &str, sql: &str) -> (u16, Value) {
    let auth = bearer(token);
    let r = d.post(
        "/v1/query",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        json!({ "sql": sql }).to_string().as_bytes(),
    );
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn lines(service: &str, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "{{\"ts\":\"2026-11-22T10:00:{i:02}Z\",\"service\":\"{service}\",\"message\":\"m{i}\",\"trace_id\":\"req-{i}\"}}\n"
            )
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn tokens_roles_and_tenants_on_the_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    let data = dir.path().join("data");
    let acme_ingest = create_token(&config, "ingest", "acme");
    let acme_query = create_token(&config, "query", "acme");
    let acme_admin = create_token(&config, "admin", "acme");
    let globex_ingest = create_token(&config, "ingest", "globex");
    let globex_query = create_token(&config, "query", "globex");
    let operator = create_token(&config, "admin", "default");
    // The config keeps hashes, never tokens.
    let text = std::fs::read_to_string(&config).unwrap();
    for t in [
        &acme_ingest,
        &acme_query,
        &acme_admin,
        &globex_ingest,
        &globex_query,
    ] {
        assert!(t.starts_with("weft_"), "{t}");
        assert!(!text.contains(t.as_str()), "token stored in the config");
    }
    assert_eq!(text.matches("[[auth.tokens]]").count(), 6);
    let listed = weft_ok(&["--config", config.to_str().unwrap(), "token", "list"]);
    assert_eq!(listed.lines().count(), 6, "{listed}");
    assert!(!listed.contains(&acme_query[10..]), "list shows no secret");
    // A bad tenant id is refused and changes nothing.
    let out = weft(&[
        "--config",
        config.to_str().unwrap(),
        "token",
        "create",
        "--role",
        "admin",
        "--tenant",
        "../x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid tenant id"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    let options = DaemonOptions::default().config(&config);
    let mut d = Daemon::start_with(&data, &options);
    assert!(
        d.stderr_text().contains("auth on: 6 token(s)"),
        "{}",
        d.stderr_text()
    );

    assert_eq!(d.get("/healthz").unwrap().status, 200);
    assert_eq!(d.get("/readyz").unwrap().status, 200);
    let anon = d.post(
        "/v1/query",
        &[("content-type", "application/json")],
        br#"{"sql":"SELECT 1"}"#,
    );
    assert_eq!(anon.status, 401);
    assert_eq!(
        anon.header("www-authenticate"),
        Some("Bearer realm=\"weft\"")
    );
    assert_eq!(d.ingest("", &[], &lines("x", 1)).status, 401);

    let a = d.ingest(
        "",
        &[("authorization", &bearer(&acme_ingest))],
        &lines("acme-api", 30),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let g = d.ingest(
        "",
        &[("authorization", &bearer(&globex_ingest))],
        &lines("globex-api", 20),
    );
    assert_eq!(g.status, 200, "{}", g.text());
    // Roles.
    assert_eq!(query(&d, &acme_ingest, "SELECT 1").0, 403);
    let w = d.ingest(
        "",
        &[("authorization", &bearer(&acme_query))],
        &lines("x", 1),
    );
    assert_eq!(w.status, 403);
    let m = get(&d, &acme_query, "/metrics");
    assert_eq!(m.status, 403);
    // `/metrics` shows every tenant: a tenant's admin is not enough.
    let m = get(&d, &acme_admin, "/metrics");
    assert_eq!(m.status, 403);
    let m = get(&d, &operator, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("weft_ready{tenant=\"acme\"} 1"),
        "{}",
        m.text()
    );
    // Tenants.
    let count = "SELECT count(*), min(service) FROM logs";
    let each_tenant_has_its_rows = |d: &Daemon| {
        assert_eq!(
            query(d, &acme_query, count).1["rows"][0],
            json!([30, "acme-api"])
        );
        assert_eq!(
            query(d, &globex_query, count).1["rows"][0],
            json!([20, "globex-api"])
        );
    };
    each_tenant_has_its_rows(&d);
    let t = get(&d, &globex_query, "/v1/trace/req-3");
    assert_eq!(t.json()["line_count"], 1);
    assert_eq!(t.json()["lines"][0]["service"], "globex-api");
    let moved = d.post(
        "/v1/query",
        &[
            ("authorization", &bearer(&acme_query)),
            ("x-scope-orgid", "globex"),
            ("content-type", "application/json"),
        ],
        json!({ "sql": count }).to_string().as_bytes(),
    );
    assert_eq!(moved.status, 403);

    // Stopped and started again, each tenant's data is where it was.
    assert!(d.terminate().success());
    assert!(data.join("tenants/acme/segments").is_dir());
    assert!(data.join("tenants/globex/segments").is_dir());
    let d = Daemon::start_with(&data, &options);
    each_tenant_has_its_rows(&d);

    // The acme admin reads acme's trail: these queries, the refusals, and
    // nothing of globex's.
    let (status, trail) = query(
        &d,
        &acme_admin,
        "SELECT endpoint, outcome, count(*) FROM audit GROUP BY endpoint, outcome ORDER BY endpoint, outcome",
    );
    assert_eq!(status, 200, "{trail}");
    assert_eq!(
        trail["rows"],
        json!([
            ["POST /v1/query", "denied", 2],
            ["POST /v1/query", "incomplete", 1],
            ["POST /v1/query", "ok", 2],
        ]),
        "{trail}"
    );
    drop(d);

    // The CLI reads a tenant's directory offline, and is recorded there too.
    let acme = data.join("tenants/acme");
    let out = weft_ok(&[
        "query",
        "--data",
        acme.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM logs",
    ]);
    assert_eq!(out, "n\n30\n");
    let out = weft_ok(&[
        "trace",
        "--data",
        acme.to_str().unwrap(),
        "--context",
        "1",
        "--json",
        "req-7",
    ]);
    let trace: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trace["line_count"], 1);
    assert_eq!(
        trace["context"]["lines"].as_array().unwrap().len(),
        2,
        "{out}"
    );
    let out = weft_ok(&[
        "query",
        "--data",
        acme.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT endpoint, statement, params, outcome, rows FROM audit WHERE endpoint LIKE 'cli%' ORDER BY time",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "endpoint,statement,params,outcome,rows",
            "cli query,SELECT count(*) AS n FROM logs,,ok,1",
            "cli trace,req-7,\"{\"\"context\"\":\"\"1\"\"}\",ok,1",
            "cli query,\"SELECT endpoint, statement, params, outcome, rows FROM audit WHERE endpoint LIKE 'cli%' ORDER BY time\",,incomplete,",
        ]
    );
}

#[test]
fn without_tokens_only_loopback_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(&[
        "serve",
        "--data",
        dir.path().to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth is off") && err.contains("weft token create"),
        "{err}"
    );
}

#[test]
fn an_audit_trail_that_cannot_be_written_stops_the_query() {
    let dir = tempfile::tempdir().unwrap();
    weft_ok(&["query", "--data", dir.path().to_str().unwrap(), "SELECT 1"]);
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let out = weft(&[
        "query",
        "--data",
        dir.path().to_str().unwrap(),
        "--audit-dir",
        blocked.to_str().unwrap(),
        "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit trail unavailable, query not run")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_client_that_leaves_a_streamed_answer_cancels_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let total: u64 = 50_000_000;
    let body = json!({
        "sql": format!("SELECT v FROM generate_series(1, {total}) AS t(v)"),
        "format": "ndjson",
    })
    .to_string();
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Rows arrive while the query is still producing them.
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < 256 * 1024 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the answer ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.contains("{\"v\":1}\n{\"v\":2}\n"));
    drop(s);

    let trail = dir.path().join("audit/audit.ndjson");
    let deadline = Instant::now() + Duration::from_secs(30);
    let end = loop {
        let text = std::fs::read_to_string(&trail).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("\"outcome\":\"cancelled\""))
        {
            break serde_json::from_str::<Value>(line).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no cancelled record:\n{text}\n{}",
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let rows = end["end"]["rows"].as_u64().unwrap();
    assert!(rows > 0 && rows < total, "stopped part way: {rows}");
    assert_eq!(d.get("/healthz").unwrap().status, 200);
    assert_eq!(d.scalar("SELECT 41 + 1"), 42);
}
