//! Loki push (`/loki/api/v1/push`), protobuf or JSON.
//!
//! Each entry becomes a record: the entry's timestamp as `timestamp`, the
//! line's own fields when the line is a JSON object (kept as `message`
//! otherwise), then the stream labels and the entry's structured metadata
//! as fields. Where the line and a label share a name the line's field wins
//! and the label goes to `_extra`. Labels feed `service` through the alias
//! lists (`service`, `service_name`, `app`, …); a stream whose only naming
//! label is `job` gets `job` as its default service.
//!
//! Entries are numbered from 1 across the whole request; that number is
//! the `line` of their rejects.

use prost::Message;
use serde_json::Value;

use super::pb::EntryAdapter;
use super::{Obj, Stop, each_field, inner_of_object, over_budget};
use crate::body::{Made, Sink};
use crate::normalize::Defaults;
use crate::reject::Reason;

/// Read stream by stream and entry by entry: only one decoded entry is held
/// at a time, so many tiny entries cost no more memory than their records.
pub(super) fn decode_protobuf(body: &[u8], defaults: &Defaults, sink: &mut Sink<'_>) {
    let mut n = 0;
    let mut text = String::new();
    let result = each_field(body, |tag, stream| match tag {
        1 => stream_pb(stream, defaults, sink, &mut n, &mut text),
        _ => Ok(()),
    });
    sink.builder.set_defaults(defaults.clone());
    match result {
        Ok(()) => {}
        Err(Stop::OverBudget) => over_budget(sink, body),
        Err(Stop::Bad(e)) => sink.fail(
            body,
            "bad_protobuf",
            format!("the body is not a Loki PushRequest: {e}"),
        ),
    }
}

/// One `StreamAdapter`: its labels (wherever they sit), then its entries.
fn stream_pb(
    b: &[u8],
    defaults: &Defaults,
    sink: &mut Sink<'_>,
    n: &mut u64,
    text: &mut String,
) -> Result<(), Stop> {
    let mut labels_text = "";
    each_field(b, |tag, p| {
        if tag == 1 {
            labels_text = std::str::from_utf8(p)
                .map_err(|_| Stop::Bad("stream labels are not UTF-8".into()))?;
        }
        Ok(())
    })?;
    let labels = parse_labels(labels_text);
    if let Ok(labels) = &labels {
        sink.builder.set_defaults(stream_defaults(labels, defaults));
    }
    each_field(b, |tag, p| {
        if tag != 2 {
            return Ok(());
        }
        let entry = EntryAdapter::decode(p)?;
        *n += 1;
        let labels = match &labels {
            Ok(l) => l,
            Err(why) => {
                sink.reject(*n, entry.line.as_bytes(), bad_entry(why.clone()));
                return Ok(());
            }
        };
        let ts = match entry.timestamp {
            None => None,
            Some(t) => match (t.seconds.checked_mul(1_000_000_000))
                .and_then(|s| s.checked_add(i64::from(t.nanos)))
            {
                Some(ns) => Some(ns),
                None => {
                    sink.reject(
                        *n,
                        entry.line.as_bytes(),
                        bad_entry(format!("timestamp {}s is out of range", t.seconds)),
                    );
                    return Ok(());
                }
            },
        };
        let meta: Vec<(&str, &str)> = entry
            .structured_metadata
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        if push_entry(sink, *n, ts, &entry.line, labels, &meta, text) {
            Ok(())
        } else {
            Err(Stop::OverBudget)
        }
    })
}

pub(super) fn decode_json(body: &[u8], defaults: &Defaults, sink: &mut Sink<'_>) {
    let streams = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut top)) => match top.remove("streams") {
            Some(Value::Array(streams)) => streams,
            _ => {
                return sink.fail(
                    body,
                    "bad_shape",
                    "a Loki push body is {\"streams\": [...]}: no streams array".into(),
                );
            }
        },
        Ok(_) => {
            return sink.fail(
                body,
                "bad_shape",
                "a Loki push body is a JSON object {\"streams\": [...]}".into(),
            );
        }
        Err(e) => {
            return sink.fail(body, "invalid_json", format!("the body is not JSON: {e}"));
        }
    };
    let mut n = 0;
    let mut text = String::new();
    for stream in &streams {
        let (labels, values) = match stream_parts(stream) {
            Ok(parts) => parts,
            Err(why) => {
                // Entries cannot be told apart: the stream is one reject.
                n += 1;
                sink.reject(n, stream.to_string().as_bytes(), bad_entry(why));
                continue;
            }
        };
        if let Ok(labels) = &labels {
            sink.builder.set_defaults(stream_defaults(labels, defaults));
        }
        for value in values {
            n += 1;
            let entry = labels
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|labels| json_entry(value).map(|e| (labels, e)));
            match entry {
                Ok((labels, (ts, line, meta))) => {
                    if !push_entry(sink, n, Some(ts), line, labels, &meta, &mut text) {
                        return over_budget(sink, body);
                    }
                }
                Err(why) => sink.reject(n, value.to_string().as_bytes(), bad_entry(why)),
            }
        }
    }
    sink.builder.set_defaults(defaults.clone());
}

type Labels = Vec<(String, String)>;

/// A JSON stream's labels (or why they are unusable) and its entries.
fn stream_parts(stream: &Value) -> Result<(Result<Labels, String>, &[Value]), String> {
    let Value::Object(stream) = stream else {
        return Err("a stream is an object {\"stream\": {...}, \"values\": [...]}".into());
    };
    let Some(Value::Array(values)) = stream.get("values") else {
        return Err("a stream has no \"values\" array".into());
    };
    let labels = match stream.get("stream") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("stream label {k:?} is not a string")),
            })
            .collect(),
        Some(_) => Err("\"stream\" is not an object of labels".into()),
    };
    Ok((labels, values))
}

/// A JSON entry read: its timestamp, line and structured metadata.
type JsonEntry<'v> = (i64, &'v str, Vec<(&'v str, &'v str)>);

/// One JSON entry: `[ts, line]` or `[ts, line, {metadata}]`.
fn json_entry(value: &Value) -> Result<JsonEntry<'_>, String> {
    let Value::Array(parts) = value else {
        return Err("an entry is [\"<unix ns>\", \"<line>\"(, {metadata})]".into());
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("an entry has 2 or 3 parts, not {}", parts.len()));
    }
    let ts = match &parts[0] {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| format!("timestamp {} is not a count of nanoseconds", parts[0]))?;
    let Value::String(line) = &parts[1] else {
        return Err("the log line is not a string".into());
    };
    let meta = match parts.get(2) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.as_str(), s.as_str())),
                _ => Err(format!("structured metadata {k:?} is not a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("structured metadata is not an object".into()),
    };
    Ok((ts, line, meta))
}

/// Stores one entry (or its reject); false when the body's budget is spent.
fn push_entry(
    sink: &mut Sink<'_>,
    n: u64,
    ts: Option<i64>,
    line: &str,
    labels: &Labels,
    meta: &[(&str, &str)],
    text: &mut String,
) -> bool {
    let write = |text: &mut String, body: Result<&str, &str>| {
        text.clear();
        let mut obj = Obj::new(text);
        if let Some(ts) = ts {
            obj.time("timestamp", ts);
        }
        match body {
            Ok(inner) => obj.members(inner),
            Err(line) => obj.str("message", line),
        }
        for (k, v) in labels {
            obj.str(k, v);
        }
        for (k, v) in meta {
            obj.str(k, v);
        }
        obj.close();
    };
    if let Some(inner) = inner_of_object(line) {
        write(text, Ok(inner));
        match sink.vet(n, text) {
            Made::OverBudget => return false,
            Made::Refused => return true,
            Made::Fits => {}
        }
        if sink.builder.try_push(text.as_bytes()).is_ok() {
            return true;
        }
    }
    // Not a JSON object: the line is the message.
    write(text, Err(line));
    match sink.vet(n, text) {
        Made::OverBudget => return false,
        Made::Refused => return true,
        Made::Fits => {}
    }
    sink.push(n, text.as_bytes());
    true
}

fn bad_entry(detail: String) -> Reason {
    Reason::Protocol {
        label: "bad_entry",
        detail,
    }
}

/// Labels that name a service in some shipper's convention; with none of
/// them, `job` names it.
const SERVICE_LABELS: &[&str] = &["service_name", "service", "app", "application"];

fn stream_defaults(labels: &Labels, defaults: &Defaults) -> Defaults {
    let named = labels
        .iter()
        .any(|(k, _)| SERVICE_LABELS.contains(&k.as_str()));
    let job = labels
        .iter()
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v.clone());
    Defaults {
        service: if named {
            defaults.service.clone()
        } else {
            job.or_else(|| defaults.service.clone())
        },
        host: defaults.host.clone(),
    }
}

/// Parses Prometheus label text: `{name="value", other="v\"q"}`.
pub(super) fn parse_labels(text: &str) -> Result<Labels, String> {
    let bad = |why: &str| format!("stream labels {text:?}: {why}");
    let t = text.trim();
    let Some(rest) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return Err(bad("expected {name=\"value\", …}"));
    };
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') {
            return Err(bad("expected a label name and ="));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err(bad("a label value is quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(bad("unterminated label value")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    _ => return Err(bad("unknown escape in a label value")),
                },
                Some(c) => value.push(c),
            }
        }
        out.push((name, value));
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(_) => return Err(bad("expected , between labels")),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use prost::Message;

    use super::*;
    use crate::protocol::Format;
    use crate::protocol::pb::{LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
    use crate::protocol::testing::{OBSERVED_AT, column, decode};

    #[test]
    fn labels_parse_with_escapes_and_refuse_garbage() {
        assert_eq!(
            parse_labels(r#"{job="api", msg="say \"hi\"\n",empty=""}"#).unwrap(),
            vec![
                ("job".into(), "api".into()),
                ("msg".into(), "say \"hi\"\n".into()),
                ("empty".into(), "".into())
            ]
        );
        assert_eq!(parse_labels("{}").unwrap(), vec![]);
        for bad in [
            "job=\"x\"",
            "{job=x}",
            "{job=\"x}",
            "{=\"x\"}",
            "{a=\"1\" b=\"2\"}",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protobuf_entries_become_records_with_labels_and_metadata() {
        let req = PushRequest {
            streams: vec![
                StreamAdapter {
                    labels: r#"{job="batch", env="prod"}"#.into(),
                    entries: vec![
                        EntryAdapter {
                            timestamp: Some(Timestamp {
                                seconds: 1_700_000_000,
                                nanos: 5,
                            }),
                            line: "plain text ERROR".into(),
                            structured_metadata: vec![LabelPairAdapter {
                                name: "trace_id".into(),
                                value: "abc123".into(),
                            }],
                        },
                        EntryAdapter {
                            timestamp: None,
                            line: r#"{"level":"error","msg":"boom","env":"line"}"#.into(),
                            structured_metadata: vec![],
                        },
                    ],
                    hash: 0,
                },
                StreamAdapter {
                    labels: "not labels".into(),
                    entries: vec![EntryAdapter {
                        timestamp: None,
                        line: "kept".into(),
                        structured_metadata: vec![],
                    }],
                    hash: 0,
                },
                StreamAdapter {
                    labels: r#"{service_name="web", job="j"}"#.into(),
                    entries: vec![EntryAdapter {
                        timestamp: None,
                        line: "{not json".into(),
                        structured_metadata: vec![],
                    }],
                    hash: 0,
                },
            ],
        };
        let out = decode(Format::LokiProtobuf, &req.encode_to_vec());
        assert_eq!(out.fatal, None);
        assert_eq!((out.counts.accepted, out.counts.rejected), (3, 1));
        let logs = crate::body::concat_logs(&out.logs).unwrap();
        assert_eq!(
            column(&logs, "message"),
            vec![
                Some("plain text ERROR".into()),
                Some("boom".into()),
                Some("{not json".into())
            ]
        );
        assert_eq!(
            column(&logs, "service"),
            vec![
                Some("batch".into()),
                Some("batch".into()),
                Some("web".into())
            ]
        );
        assert_eq!(
            column(&logs, "correlation_id")[0].as_deref(),
            Some("abc123")
        );
        assert_eq!(column(&logs, "level")[1].as_deref(), Some("error"));
        // The line's own `env` wins; the label's goes to `_extra`.
        assert_eq!(column(&logs, "env")[1].as_deref(), Some("line"));
        assert!(
            column(&logs, "_extra")[1]
                .as_deref()
                .unwrap()
                .contains("prod")
        );
        let ts = logs
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(ts.value(0), 1_700_000_000_000_000_005);
        assert_eq!(ts.value(1), OBSERVED_AT, "no timestamp: the receive time");
        assert_eq!(out.errors[0].line, 3);
        assert!(out.errors[0].reason.to_string().contains("not labels"));
    }

    #[test]
    fn json_push_keeps_good_entries_and_names_bad_ones() {
        let body = br#"{"streams":[
            {"stream":{"app":"api","level":"info"},
             "values":[["1700000000000000000","hello"],
                       ["yesterday","bad ts"],
                       ["1700000000000000001","with meta",{"user":"u1"}],
                       ["1700000000000000002"]]},
            {"values":[["1","no labels"]]},
            {"stream":{"a":1},"values":[["1","x"]]},
            42
        ]}"#;
        let out = decode(Format::LokiJson, body);
        assert_eq!(out.fatal, None);
        assert_eq!((out.counts.accepted, out.counts.rejected), (3, 4));
        let logs = crate::body::concat_logs(&out.logs).unwrap();
        assert_eq!(
            column(&logs, "service"),
            vec![Some("api".into()), Some("api".into()), None]
        );
        let ts = logs
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(
            ts.values().to_vec(),
            vec![1_700_000_000_000_000_000, 1_700_000_000_000_000_001, 1]
        );
        assert_eq!(column(&logs, "user")[1].as_deref(), Some("u1"));
        let lines: Vec<u64> = out.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4, 6, 7]);
        let rejects = out.rejects.unwrap();
        let raw = rejects.column_by_name("raw").unwrap().as_binary::<i32>();
        assert_eq!(raw.value(0), br#"["yesterday","bad ts"]"#);
    }

    #[test]
    fn an_entry_over_the_line_limit_is_refused_alone() {
        let long = "y".repeat((1 << 20) + 10);
        let body = serde_json::json!({"streams": [{"stream": {"app": "a"},
            "values": [["1", long], ["2", "short"]]}]});
        let out = decode(Format::LokiJson, body.to_string().as_bytes());
        assert_eq!(out.fatal, None);
        assert_eq!((out.counts.accepted, out.counts.rejected), (1, 1));
        assert_eq!(out.errors[0].reason.label(), "too_long");
        let rejects = out.rejects.unwrap();
        let raw = rejects.column_by_name("raw").unwrap().as_binary::<i32>();
        assert_eq!(raw.value(0).len(), 1 << 20);
    }

    #[test]
    fn undecodable_bodies_are_kept_whole() {
        for (format, body) in [
            (Format::LokiProtobuf, &b"\xff\xff\xff\xff"[..]),
            (Format::LokiJson, &b"{\"streams\": 3}"[..]),
            (Format::LokiJson, &b"[1]"[..]),
            (Format::LokiJson, &b"{\"streams\": ["[..]),
        ] {
            let out = decode(format, body);
            assert!(out.fatal.is_some());
            assert!(out.logs.is_empty());
            let rejects = out.rejects.unwrap();
            assert_eq!(
                rejects
                    .column_by_name("raw")
                    .unwrap()
                    .as_binary::<i32>()
                    .value(0),
                body
            );
        }
    }
}
