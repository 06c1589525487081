//! Shipper protocol decoding: the same records as NDJSON, Elasticsearch
//! bulk, Loki push (protobuf + snappy, JSON) and OTLP logs (protobuf, JSON),
//! each decoded and normalized into Arrow batches by `decode_body`, the
//! code the daemon runs per request (and again on WAL replay).
//!
//! Each format's bodies are built from the same corpus records before the
//! clock starts; then one thread decodes them all and its user+sys CPU time
//! (`getrusage(RUSAGE_THREAD)`) gives MB/s and records/s per core. MB/s is
//! counted two ways: over the body as posted (protobuf is smaller than
//! JSON), and over the corpus NDJSON the records came from (the same bytes
//! for every format, so those figures compare directly). The peer in the
//! same run is gzip -6 (flate2) over the same NDJSON bytes, same thread.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use prost::Message;
use serde_json::Value;
use weft_benches::{machine, thread_cpu, warm};
use weft_ingest::protocol::pb::{
    AnyValue, ArrayValue, EntryAdapter, ExportLogsServiceRequest, KeyValue, KeyValueList,
    LogRecord, PushRequest, Resource, ResourceLogs, ScopeLogs, StreamAdapter, Timestamp,
    Value as Any,
};
use weft_ingest::{BodyOptions, Defaults, FieldRegistry, Format, NormalizerConfig, decode_body};

#[derive(Debug, Parser)]
#[command(
    name = "bench-protocols",
    about = "Decode throughput per shipper protocol"
)]
struct Args {
    /// Corpus file (gen-corpus output).
    #[arg(long, default_value = "benches/corpus/1g.ndjson")]
    corpus: PathBuf,
    /// Bytes of the corpus to use.
    #[arg(long, default_value_t = 100_000_000)]
    bytes: u64,
    /// Records per request body.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
}

/// Builds one format's request body from corpus lines.
type BuildBody = fn(&[String]) -> Vec<u8>;

/// One request body of a format, and how many corpus bytes it carries.
struct Body {
    bytes: Vec<u8>,
    ndjson_bytes: u64,
    records: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    warm(&args.corpus)?;
    let lines = read_lines(&args)?;
    let corpus_bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    eprintln!(
        "{} records, {:.1} MB of NDJSON, {} per body",
        lines.len(),
        corpus_bytes as f64 / 1e6,
        args.batch
    );
    let formats: Vec<(&str, Format, BuildBody, bool)> = vec![
        ("NDJSON (/v1/ingest)", Format::Ndjson, ndjson, false),
        (
            "Elasticsearch _bulk",
            Format::EsBulk {
                index: Some("bench".into()),
            },
            es_bulk,
            false,
        ),
        ("Loki push, JSON", Format::LokiJson, loki_json, false),
        (
            "Loki push, protobuf + snappy",
            Format::LokiProtobuf,
            loki_protobuf,
            true,
        ),
        ("OTLP logs, JSON", Format::OtlpJson, otlp_json, false),
        (
            "OTLP logs, protobuf",
            Format::OtlpProtobuf,
            otlp_protobuf,
            false,
        ),
    ];
    println!("machine: {}", machine());
    println!(
        "corpus: {} ({} records, {:.1} MB NDJSON), {} records per body",
        args.corpus.display(),
        lines.len(),
        corpus_bytes as f64 / 1e6,
        args.batch
    );
    println!();
    println!(
        "| format | body MB | CPU s | body MB/s per core | NDJSON-equivalent MB/s per core | records/s per core | rejected |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, format, build, snappy) in formats {
        let bodies: Vec<Body> = lines
            .chunks(args.batch)
            .map(|chunk| Body {
                bytes: build(chunk),
                ndjson_bytes: chunk.iter().map(|l| l.len() as u64 + 1).sum(),
                records: chunk.len() as u64,
            })
            .collect();
        let options = BodyOptions {
            config: Arc::new(NormalizerConfig::default()),
            registry: Arc::new(FieldRegistry::new(1000)),
            max_line: 1 << 20,
        };
        let source: Arc<str> = Arc::from("bench");
        let (mut accepted, mut rejected) = (0u64, 0u64);
        let start = thread_cpu();
        for (i, body) in bodies.iter().enumerate() {
            let decoded;
            let raw: &[u8] = if snappy {
                decoded = snap::raw::Decoder::new()
                    .decompress_vec(&body.bytes)
                    .context("snappy")?;
                &decoded
            } else {
                &body.bytes
            };
            let out = decode_body(
                &format,
                raw,
                &source,
                1_763_800_000_000_000_000 + i as i64,
                Defaults::default(),
                &options,
            );
            accepted += out.counts.accepted;
            rejected += out.counts.rejected;
            std::hint::black_box(out.logs);
        }
        let cpu = thread_cpu() - start;
        let body_bytes: u64 = bodies.iter().map(|b| b.bytes.len() as u64).sum();
        let ndjson_bytes: u64 = bodies.iter().map(|b| b.ndjson_bytes).sum();
        let records: u64 = bodies.iter().map(|b| b.records).sum();
        assert_eq!(
            accepted + rejected,
            records,
            "{name}: every record answered"
        );
        println!(
            "| {name} | {:.1} | {cpu:.2} | {:.1} | {:.1} | {:.0} | {rejected} |",
            body_bytes as f64 / 1e6,
            body_bytes as f64 / 1e6 / cpu,
            ndjson_bytes as f64 / 1e6 / cpu,
            records as f64 / cpu,
        );
    }
    // The peer: gzip -6 over the same NDJSON, same thread.
    let start = thread_cpu();
    let mut gz = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(6));
    for l in &lines {
        gz.write_all(l.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()?;
    let cpu = thread_cpu() - start;
    println!(
        "| peer: gzip -6 (flate2) of the NDJSON | {:.1} | {cpu:.2} | {:.1} | {:.1} | {:.0} | — |",
        corpus_bytes as f64 / 1e6,
        corpus_bytes as f64 / 1e6 / cpu,
        corpus_bytes as f64 / 1e6 / cpu,
        lines.len() as f64 / cpu
    );
    Ok(())
}

fn read_lines(args: &Args) -> Result<Vec<String>> {
    let f = std::fs::File::open(&args.corpus)
        .with_context(|| format!("cannot read {}", args.corpus.display()))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        total += line.len() as u64 + 1;
        out.push(line);
        if total >= args.bytes {
            break;
        }
    }
    Ok(out)
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

fn es_bulk(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(b"{\"index\":{}}\n");
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The record's service, for Loki's stream labels.
fn service(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("service").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Loki streams: records grouped by service, in order within each.
fn streams(lines: &[String]) -> Vec<(String, Vec<(i64, &str)>)> {
    let mut out: Vec<(String, Vec<(i64, &str)>)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let svc = service(l);
        let ts = 1_763_800_000_000_000_000 + i as i64;
        match out.iter_mut().find(|(s, _)| *s == svc) {
            Some((_, e)) => e.push((ts, l)),
            None => out.push((svc, vec![(ts, l)])),
        }
    }
    out
}

fn loki_json(lines: &[String]) -> Vec<u8> {
    let streams: Vec<Value> = streams(lines)
        .into_iter()
        .map(|(svc, entries)| {
            serde_json::json!({
                "stream": {"service_name": svc, "env": "bench"},
                "values": entries.iter().map(|(ts, l)| serde_json::json!([ts.to_string(), l])).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).expect("json")
}

fn loki_protobuf(lines: &[String]) -> Vec<u8> {
    let req = PushRequest {
        streams: streams(lines)
            .into_iter()
            .map(|(svc, entries)| StreamAdapter {
                labels: format!("{{service_name=\"{svc}\", env=\"bench\"}}"),
                entries: entries
                    .into_iter()
                    .map(|(ts, l)| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: ts / 1_000_000_000,
                            nanos: (ts % 1_000_000_000) as i32,
                        }),
                        line: l.to_owned(),
                        structured_metadata: vec![],
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(Any::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(Any::StringValue(s.clone())),
        Value::Array(a) => Some(Any::ArrayValue(ArrayValue {
            values: a.iter().map(any).collect(),
        })),
        Value::Object(m) => Some(Any::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(any(v)),
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// The corpus records as OTLP: `message`/`msg` is the body, `level` the
/// severity text, every other field an attribute.
fn otlp(lines: &[String]) -> ExportLogsServiceRequest {
    let records = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            let Value::Object(m) = v else {
                return LogRecord::default();
            };
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let body = if m.contains_key("message") {
                "message"
            } else {
                "msg"
            };
            LogRecord {
                time_unix_nano: 1_763_800_000_000_000_000 + i as u64,
                severity_text: text("level"),
                body: m.get(body).map(any),
                attributes: m
                    .iter()
                    .filter(|(k, _)| *k != body && k.as_str() != "level")
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(any(v)),
                    })
                    .collect(),
                ..LogRecord::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "host.name".into(),
                    value: Some(any(&Value::String("bench-1".into()))),
                }],
                dropped_attributes_count: 0,
            }),
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn otlp_protobuf(lines: &[String]) -> Vec<u8> {
    otlp(lines).encode_to_vec()
}

/// OTLP/JSON as the collector writes it: camelCase, ids in hex, 64-bit
/// integers as strings.
fn otlp_json(lines: &[String]) -> Vec<u8> {
    fn any_json(v: &AnyValue) -> Value {
        use serde_json::json;
        match &v.value {
            None => json!({}),
            Some(Any::StringValue(s)) => json!({ "stringValue": s }),
            Some(Any::BoolValue(b)) => json!({ "boolValue": b }),
            Some(Any::IntValue(i)) => json!({ "intValue": i.to_string() }),
            Some(Any::DoubleValue(f)) => json!({ "doubleValue": f }),
            Some(Any::BytesValue(_)) => json!({}),
            Some(Any::ArrayValue(a)) => {
                json!({ "arrayValue": { "values": a.values.iter().map(any_json).collect::<Vec<_>>() } })
            }
            Some(Any::KvlistValue(kv)) => {
                json!({ "kvlistValue": { "values": kvs_json(&kv.values) } })
            }
        }
    }
    fn kvs_json(kvs: &[KeyValue]) -> Vec<Value> {
        kvs.iter()
            .map(
                |kv| serde_json::json!({ "key": kv.key, "value": kv.value.as_ref().map(any_json) }),
            )
            .collect()
    }
    let req = otlp(lines);
    let rl = &req.resource_logs[0];
    let records: Vec<Value> = rl.scope_logs[0]
        .log_records
        .iter()
        .map(|r| {
            serde_json::json!({
                "timeUnixNano": r.time_unix_nano.to_string(),
                "severityText": r.severity_text,
                "body": r.body.as_ref().map(any_json),
                "attributes": kvs_json(&r.attributes),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "resourceLogs": [{
            "resource": { "attributes": kvs_json(&rl.resource.as_ref().unwrap().attributes) },
            "scopeLogs": [{ "logRecords": records }],
        }]
    }))
    .expect("json")
}
