//! The shipper protocols over loopback against the real daemon, with bodies
//! built here byte for byte as shippers send them: Elasticsearch bulk, Loki
//! push (protobuf + snappy, JSON + gzip), OTLP logs (protobuf, JSON). Each
//! checks the protocol's own answer, the stored records, the rejects, the
//! refusals (400/413/415), and that a SIGKILL loses nothing acknowledged.
//! The real client libraries are in `clients.rs`.

use std::io::Write;

use prost::Message;
use serde_json::{Value, json};
use weft_ingest::protocol::pb::{
    AnyValue, EntryAdapter, ExportLogsServiceRequest, ExportLogsServiceResponse,
    InstrumentationScope, KeyValue, LabelPairAdapter, LogRecord, PushRequest, Resource,
    ResourceLogs, ScopeLogs, StreamAdapter, Timestamp, Value as Any,
};
use weft_tests::daemon::{Daemon, DaemonOptions};

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");
const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn snappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(data).unwrap()
}

fn kv(key: &str, v: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

#[test]
fn elasticsearch_bulk_stores_documents_and_answers_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let info = d.get("/").unwrap();
    assert_eq!(info.status, 200);
    assert_eq!(info.header("x-elastic-product"), Some("Elasticsearch"));
    assert_eq!(info.json()["version"]["number"], "8.17.0");
    for path in ["/_license", "/_cluster/health"] {
        let r = d.get(path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-elastic-product"), Some("Elasticsearch"));
    }
    assert_eq!(
        d.get("/_license").unwrap().json()["license"]["status"],
        "active"
    );

    let body = concat!(
        "{\"index\":{\"_index\":\"web\",\"_id\":\"w1\"}}\n",
        "{\"@timestamp\":\"2026-11-20T10:00:00Z\",\"message\":\"GET /cart\",\"level\":\"info\",\"service\":\"web\",\"trace_id\":\"req-1\"}\n",
        "{\"create\":{}}\n",
        "{\"@timestamp\":\"2026-11-20T10:00:01Z\",\"message\":\"charge failed\",\"log.level\":\"ERROR\",\"service\":\"pay\",\"trace_id\":\"req-1\"}\n",
        "{\"delete\":{\"_id\":\"w1\"}}\n",
        "{\"index\":{}}\n",
        "{\"message\": not json}\n",
    );
    let r = d.post("/app-logs/_bulk", &[NDJSON], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-elastic-product"), Some("Elasticsearch"));
    let answer = r.json();
    assert_eq!(answer["errors"], true);
    let statuses: Vec<(String, i64)> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let (action, result) = item.as_object().unwrap().iter().next().unwrap();
            (action.clone(), result["status"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("index".into(), 201),
            ("create".into(), 201),
            ("delete".into(), 400),
            ("index".into(), 400)
        ]
    );
    assert_eq!(answer["items"][0]["index"]["_id"], "w1");
    assert_eq!(answer["items"][1]["create"]["_index"], "app-logs");
    assert_eq!(
        answer["items"][3]["index"]["error"]["type"],
        "document_parsing_exception"
    );

    let trace = "SELECT service, level, message, \"_index\", \"_id\" FROM logs \
                 WHERE correlation_id = 'req-1' ORDER BY timestamp";
    let want = vec![
        vec![
            json!("web"),
            json!("info"),
            json!("GET /cart"),
            json!("web"),
            json!("w1"),
        ],
        vec![
            json!("pay"),
            json!("error"),
            json!("charge failed"),
            json!("app-logs"),
            Value::Null,
        ],
    ];
    assert_eq!(d.rows(trace), want);
    let rejects =
        d.rows("SELECT source, line, reason, CAST(raw AS VARCHAR) FROM rejects ORDER BY line");
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0][0], "http:/_bulk");
    assert_eq!(rejects[0][1], 5);
    assert!(rejects[0][2].as_str().unwrap().contains("not supported"));
    assert_eq!(rejects[1][3], "{\"message\": not json}");

    // A malformed action line refuses the request whole, ES-style; the body
    // is kept as one reject.
    let r = d.post(
        "/_bulk",
        &[NDJSON],
        b"{\"index\":{}}\n{\"a\":1}\n{\"oops\":{}}\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("line [3]")
    );
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 2);
    assert_eq!(d.scalar("SELECT count(*) FROM rejects"), 3);
    let r = d.post("/_bulk", &[("Content-Type", "text/csv")], b"a,b\n");
    assert_eq!(r.status, 415);
    assert!(r.text().contains("application/x-ndjson"), "{}", r.text());

    // Acknowledged items survive SIGKILL (WAL replay decodes bulk again).
    d.kill();
    let d = Daemon::start(dir.path());
    assert_eq!(d.rows(trace), want);
    assert_eq!(d.scalar("SELECT count(*) FROM rejects"), 3);
}

fn loki_request() -> PushRequest {
    let entry = |s: i64, line: &str, meta: &[(&str, &str)]| EntryAdapter {
        timestamp: Some(Timestamp {
            seconds: s,
            nanos: 250,
        }),
        line: line.into(),
        structured_metadata: meta
            .iter()
            .map(|(n, v)| LabelPairAdapter {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
    };
    PushRequest {
        streams: vec![
            StreamAdapter {
                labels: r#"{service_name="billing", env="prod", level="info"}"#.into(),
                entries: vec![
                    entry(1_763_800_000, "invoice 7 sent", &[("trace_id", "loki-1")]),
                    entry(
                        1_763_800_001,
                        r#"{"msg":"invoice 8 failed","level":"error","amount":12.5}"#,
                        &[("trace_id", "loki-1")],
                    ),
                ],
                hash: 0,
            },
            StreamAdapter {
                labels: r#"{job="nightly"}"#.into(),
                entries: vec![entry(1_763_800_002, "backup done", &[])],
                hash: 0,
            },
        ],
    }
}

#[test]
fn loki_push_takes_protobuf_snappy_and_gzip_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let r = d.post(
        "/loki/api/v1/push",
        &[PROTOBUF],
        &snappy(&loki_request().encode_to_vec()),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let rows = d.rows(
        "SELECT service, level, message, correlation_id, env, amount, \
         CAST(timestamp AS BIGINT) AS ts FROM logs ORDER BY timestamp",
    );
    assert_eq!(
        rows,
        vec![
            vec![
                json!("billing"),
                json!("info"),
                json!("invoice 7 sent"),
                json!("loki-1"),
                json!("prod"),
                Value::Null,
                json!(1_763_800_000_000_000_250i64)
            ],
            vec![
                json!("billing"),
                json!("error"),
                json!("invoice 8 failed"),
                json!("loki-1"),
                json!("prod"),
                json!(12.5),
                json!(1_763_800_001_000_000_250i64)
            ],
            vec![
                json!("nightly"),
                Value::Null,
                json!("backup done"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!(1_763_800_002_000_000_250i64)
            ],
        ]
    );

    // JSON, gzip: the good entry is stored and the answer is 400 naming the
    // bad one, as Loki answers partial pushes.
    let body = json!({"streams": [{"stream": {"app": "cart"},
        "values": [["1763800003000000000", "added item", {"user": "u7"}], ["soon", "bad"]]}]});
    let r = d.post(
        "/loki/api/v1/push",
        &[JSON, ("Content-Encoding", "gzip")],
        &gzip(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("1 of 2 entries were rejected"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("entry 2: timestamp"), "{}", r.text());
    assert_eq!(
        d.rows("SELECT service, message, \"user\" FROM logs WHERE service = 'cart'"),
        vec![vec![json!("cart"), json!("added item"), json!("u7")]]
    );
    assert_eq!(
        d.rows("SELECT source, line, CAST(raw AS VARCHAR) FROM rejects"),
        vec![vec![
            json!("http:/loki/api/v1/push"),
            json!(2),
            json!("[\"soon\",\"bad\"]")
        ]]
    );

    // Refusals: bad snappy and bad protobuf are 400, a snappy bomb 413, an
    // unknown type 415; none stores a record.
    let r = d.post("/loki/api/v1/push", &[PROTOBUF], b"\x05garbage");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("snappy"), "{}", r.text());
    let r = d.post("/loki/api/v1/push", &[PROTOBUF], &snappy(b"\xff\xff\xff"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("PushRequest"), "{}", r.text());
    let r = d.post("/loki/api/v1/push", &[PROTOBUF], b"\xff\xff\xff\xff\x0f");
    assert_eq!(r.status, 413, "{}", r.text());
    let r = d.post("/loki/api/v1/push", &[("Content-Type", "text/plain")], b"x");
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 4);

    d.kill();
    let d = Daemon::start(dir.path());
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 4);
    assert_eq!(
        d.scalar("SELECT count(*) FROM logs WHERE correlation_id = 'loki-1'"),
        2
    );
}

fn otlp_request() -> ExportLogsServiceRequest {
    let trace: Vec<u8> = (0xa0..0xb0).collect();
    let record = |t: u64, sev: i32, text: &str, body: &str, span: u8| LogRecord {
        time_unix_nano: t,
        observed_time_unix_nano: t + 1_000,
        severity_number: sev,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(Any::StringValue(body.into())),
        }),
        attributes: vec![kv("order_id", Any::IntValue(42))],
        dropped_attributes_count: 0,
        flags: 1,
        trace_id: trace.clone(),
        span_id: vec![span; 8],
        event_name: String::new(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Any::StringValue("checkout".into())),
                    kv("host.name", Any::StringValue("web-1".into())),
                ],
                dropped_attributes_count: 0,
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "shop.checkout".into(),
                    version: "2.1".into(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                }),
                log_records: vec![
                    record(1_763_800_000_000_000_001, 9, "INFO", "cart priced", 1),
                    record(1_763_800_000_500_000_000, 17, "ERROR", "card declined", 2),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[test]
fn otlp_logs_take_protobuf_and_json_with_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let r = d.post(
        "/v1/logs",
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gzip(&otlp_request().encode_to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    let answer = ExportLogsServiceResponse::decode(&r.body[..]).unwrap();
    assert_eq!(answer.partial_success, None);
    let trace_id = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
    let trace = format!(
        "SELECT service, host, level, message, span_id, \"attributes.order_id\", \"scope.name\", \
         CAST(timestamp AS BIGINT) AS ts FROM logs WHERE correlation_id = '{trace_id}' \
         AND service = 'checkout' ORDER BY timestamp"
    );
    let want = vec![
        vec![
            json!("checkout"),
            json!("web-1"),
            json!("info"),
            json!("cart priced"),
            json!("0101010101010101"),
            json!(42),
            json!("shop.checkout"),
            json!(1_763_800_000_000_000_001i64),
        ],
        vec![
            json!("checkout"),
            json!("web-1"),
            json!("error"),
            json!("card declined"),
            json!("0202020202020202"),
            json!(42),
            json!("shop.checkout"),
            json!(1_763_800_000_500_000_000i64),
        ],
    ];
    assert_eq!(d.rows(&trace), want);

    // JSON with one unreadable record: the others are stored and
    // partialSuccess counts the refused one.
    let body = json!({"resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "search"}}]},
    "scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1763800001000000000", "severityText": "WARN",
         "body": {"kvlistValue": {"values": [{"key": "q", "value": {"stringValue": "shoes"}}]}},
         "traceId": trace_id, "spanId": "0303030303030303"},
        {"traceId": "not-hex", "body": {"stringValue": "lost?"}}
    ]}]}]});
    let r = d.post("/v1/logs", &[JSON], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("record 2: traceId"),
        "{answer}"
    );
    assert_eq!(
        d.rows(&format!(
            "SELECT service, level, message FROM logs WHERE correlation_id = '{trace_id}' \
             AND service = 'search'"
        )),
        vec![vec![
            json!("search"),
            json!("warn"),
            json!("{\"q\":\"shoes\"}")
        ]]
    );
    assert_eq!(
        d.scalar("SELECT count(*) FROM rejects WHERE source = 'http:/v1/logs' AND line = 2"),
        1
    );

    // Malformed bodies: clear 400s, the bytes kept; wrong type 415.
    for (headers, body) in [
        (&[PROTOBUF][..], &b"\x0a\x05\x12\x03\x0a"[..]),
        (&[JSON][..], &b"{\"resourceLogs\": 7}"[..]),
        (&[JSON][..], &b"{\"resourceLogs\": ["[..]),
    ] {
        let r = d.post("/v1/logs", headers, body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["error"].as_str().unwrap().len() > 10);
    }
    let r = d.post("/v1/logs", &[("Content-Type", "application/grpc")], b"");
    assert_eq!(r.status, 415);
    assert_eq!(d.scalar("SELECT count(*) FROM rejects"), 4);

    d.kill();
    let d = Daemon::start_with(dir.path(), &DaemonOptions::default());
    assert_eq!(d.rows(&trace), want);
    assert_eq!(d.scalar("SELECT count(*) FROM logs"), 3);
}
