//! Real shipper client libraries against the real daemon over loopback:
//! the OpenTelemetry Python SDK's OTLP/HTTP exporters (protobuf, gzip,
//! JSON) logging inside spans, loki-logger-handler pushing to Loki's API,
//! and elasticsearch-py's `helpers.bulk`. `tests/python/shippers.py` sends
//! through each client and prints what it sent; these tests then find every
//! record in weft with its fields, level and correlation id. Needs the
//! packages of tests/python/requirements.txt (`.ci/run` installs them).

use std::process::Command;

use serde_json::{Value, json};
use weft_tests::daemon::{Daemon, DaemonOptions};
use weft_tests::{create_token, python, python_script, repo_root, weft_ok};

/// Runs one client through `shippers.py` against `d`; returns its report.
fn send(d: &Daemon, client: &str, flags: &[&str]) -> Value {
    let url = format!("http://{}", d.addr());
    let mut args = vec![client, url.as_str()];
    args.extend_from_slice(flags);
    let out = python_script("shippers.py", &args);
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("shippers.py {args:?} printed no JSON ({e}): {out}"));
    assert_eq!(report["ok"], true, "{report}");
    report
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// weft's level for a Python logging level name.
fn level_of(python: &str) -> Value {
    match python.to_ascii_uppercase().as_str() {
        "DEBUG" => json!("debug"),
        "INFO" => json!("info"),
        "WARN" | "WARNING" => json!("warn"),
        "ERROR" => json!("error"),
        "CRITICAL" | "FATAL" => json!("fatal"),
        other => panic!("unexpected level {other}"),
    }
}

/// The one row of `logs` whose message is `message`, as column → value.
fn record(d: &Daemon, message: &str, columns: &[&str]) -> Vec<Value> {
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let sql = format!(
        "SELECT {} FROM logs WHERE message = {}",
        cols.join(", "),
        quote(message)
    );
    let mut rows = d.rows(&sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.remove(0)
}

fn same(got: &Value, want: &Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => got == want,
    }
}

fn check_otlp(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let report = send(&d, "otlp", flags);
    let records = report["records"].as_array().unwrap();
    assert!(records.len() >= 4, "{report}");
    assert!(
        records.iter().filter(|r| r["trace_id"].is_string()).count() >= 3,
        "logs inside spans carry trace ids: {report}"
    );
    assert_eq!(
        d.scalar("SELECT count(*) FROM logs"),
        records.len() as i64,
        "{report}"
    );
    for r in records {
        let message = r["message"].as_str().unwrap();
        let got = record(
            &d,
            message,
            &[
                "level",
                "correlation_id",
                "span_id",
                "service",
                "host",
                "timestamp",
            ],
        );
        let ts = d.scalar(&format!(
            "SELECT CAST(timestamp AS BIGINT) FROM logs WHERE message = {}",
            quote(message)
        ));
        assert_eq!(got[0], level_of(r["level"].as_str().unwrap()), "{r}");
        assert_eq!(got[1], r["trace_id"], "{r}");
        assert_eq!(got[2], r["span_id"], "{r}");
        assert_eq!(got[3], json!("checkout"));
        assert_eq!(got[4], json!("web-1"));
        assert_eq!(ts, r["time_unix_nano"].as_i64().unwrap(), "{r}");
        for (key, want) in r["attributes"].as_object().unwrap() {
            let column = format!("attributes.{key}");
            let got = record(&d, message, &[column.as_str()]);
            assert!(same(&got[0], want), "{column}: {} != {want}", got[0]);
        }
    }
    // One request across services would share this id: the trace lookup
    // finds the span's records and nothing else.
    let first = &records[0];
    let id = first["trace_id"].as_str().unwrap();
    let in_trace = records.iter().filter(|r| r["trace_id"] == id).count();
    assert_eq!(
        d.scalar(&format!(
            "SELECT count(*) FROM logs WHERE correlation_id = {}",
            quote(id)
        )),
        in_trace as i64
    );
}

#[test]
fn opentelemetry_sdk_exporter_protobuf() {
    check_otlp(&[]);
}

#[test]
fn opentelemetry_sdk_exporter_protobuf_gzip() {
    check_otlp(&["--gzip"]);
}

#[test]
fn opentelemetry_sdk_exporter_json() {
    check_otlp(&["--json"]);
}

#[test]
fn loki_logger_handler_push() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let report = send(&d, "loki", &[]);
    let records = report["records"].as_array().unwrap();
    assert!(records.len() >= 4, "{report}");
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), records.len() as i64);
    assert_eq!(d.scalar("SELECT count(*) FROM rejects"), 0);
    for r in records {
        let message = r["message"].as_str().unwrap();
        let got = record(
            &d,
            message,
            &["service", "level", "correlation_id", "host", "env"],
        );
        let labels = &r["labels"];
        let line: Option<Value> = serde_json::from_str(r["line"].as_str().unwrap()).ok();
        // The level comes from the line's own field, else the label; a
        // plain-text line with no level label has none.
        let level = line
            .as_ref()
            .and_then(|l| l.get("level"))
            .or(labels.get("level"))
            .map_or(Value::Null, |l| level_of(l.as_str().unwrap()));
        let meta = &r["structured_metadata"];
        assert_eq!(got[0], labels["service_name"], "{r}");
        assert_eq!(got[1], level, "{r}");
        assert_eq!(got[2], *meta.get("trace_id").unwrap_or(&Value::Null), "{r}");
        assert_eq!(got[3], *meta.get("host").unwrap_or(&Value::Null), "{r}");
        assert_eq!(got[4], labels["env"], "{r}");
        let ts = d.scalar(&format!(
            "SELECT CAST(timestamp AS BIGINT) FROM logs WHERE message = {}",
            quote(message)
        ));
        assert_eq!(ts.to_string(), r["ts"].as_str().unwrap(), "{r}");
        // The line's other fields are columns of their own.
        if let Some(Value::Object(fields)) = &line {
            for key in ["invoice_id", "amount_cents", "days_late"] {
                if let Some(want) = fields.get(key) {
                    assert_eq!(record(&d, message, &[key])[0], *want, "{key} of {r}");
                }
            }
        }
    }
}

fn check_elasticsearch(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let report = send(&d, "es", flags);
    assert_eq!(report["ping"], true, "{report}");
    let records = report["records"].as_array().unwrap();
    assert!(records.len() >= 7, "{report}");
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), records.len() as i64);
    for r in records {
        let message = r["message"].as_str().unwrap();
        let got = record(
            &d,
            message,
            &["service", "level", "correlation_id", "_index"],
        );
        assert_eq!(got[0], r["service"], "{r}");
        assert_eq!(got[1], r["level"], "{r}");
        assert_eq!(got[2], r["trace_id"], "{r}");
        assert_eq!(got[3], r["_index"], "{r}");
        let ts = d.rows(&format!(
            "SELECT to_char(timestamp, '%Y-%m-%dT%H:%M:%S%.3fZ') FROM logs WHERE message = {}",
            quote(message)
        ));
        assert_eq!(ts[0][0], r["@timestamp"], "{r}");
        if let Some(status) = r.pointer("/http/status") {
            assert_eq!(record(&d, message, &["http.status"])[0], *status);
        }
        if let Some(ms) = r.get("duration_ms") {
            assert!(same(&record(&d, message, &["duration_ms"])[0], ms));
        }
    }
    // The document the client sent broken failed alone: reported as a
    // failed item to the client and kept in rejects.
    let failed: Vec<&Value> = report["bulks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["errors"].as_array().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["index"]["status"], 400);
    assert_eq!(
        d.scalar("SELECT count(*) FROM rejects WHERE source = 'http:/_bulk'"),
        1
    );
}

#[test]
fn elasticsearch_py_helpers_bulk() {
    check_elasticsearch(&[]);
}

#[test]
fn elasticsearch_py_helpers_bulk_gzip() {
    check_elasticsearch(&["--gzip"]);
}

/// With auth on, each client sends an ingest token the way it can (the OTLP
/// exporter as a Bearer header, loki-logger-handler as HTTP Basic,
/// elasticsearch-py as its `api_key`); every record lands in the token's
/// tenant and nowhere else, and a token without the ingest role is refused.
#[test]
fn shipper_clients_send_tokens_and_land_in_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    let ingest = create_token(&config, "ingest", "shippers");
    let reader = create_token(&config, "query", "shippers");
    let data = dir.path().join("data");
    let options = DaemonOptions::default().config(&config);
    let d = Daemon::start_with(&data, &options);
    let url = format!("http://{}", d.addr());
    let mut sent = 0;
    for (client, flag) in [
        ("otlp", None),
        ("otlp", Some("--json")),
        ("loki", None),
        ("es", None),
    ] {
        let mut args = vec![client, url.as_str(), "--token", ingest.as_str()];
        args.extend(flag);
        let out = python_script("shippers.py", &args);
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        sent += report["records"].as_array().unwrap().len();
    }
    let auth = format!("Bearer {reader}");
    let answer = d.post(
        "/v1/query",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        br#"{"sql":"SELECT count(*) FROM logs"}"#,
    );
    assert_eq!(
        answer.json()["rows"][0][0],
        sent as i64,
        "{}",
        answer.text()
    );
    // Nothing reached the default tenant.
    let default = weft_ok(&[
        "query",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM logs",
    ]);
    assert_eq!(default, "n\n0\n");
    // A read-only token is refused by every client's first write.
    for client in ["otlp", "es"] {
        let out = Command::new(python())
            .arg(repo_root().join("tests/python/shippers.py"))
            .args([client, url.as_str(), "--token", reader.as_str()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{client} with a query token");
    }
}
