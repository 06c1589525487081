//! OTLP/HTTP logs (`/v1/logs`), protobuf or the OTLP/JSON mapping.
//!
//! Each `LogRecord` becomes a record: `timestamp` (its time, else its
//! observed time), `observed_timestamp`, `severity_text` and
//! `severity_number` (which feed `level`), `body` (the `message`: a string
//! as is, any other value as JSON text), `trace_id` and `span_id` as
//! lowercase hex (feeding `correlation_id` and `span_id`; all-zero ids are
//! dropped), `flags`, `event_name`, and the attributes under `attributes.`,
//! the resource's under `resource.` (so `resource.service.name` names the
//! service) and the scope's under `scope.`.
//!
//! Records are numbered from 1 across the request; that number is the
//! `line` of their rejects.

use prost::Message;
use serde_json::{Map, Value};

use super::pb::{
    AnyValue, ArrayValue, ExportLogsPartialSuccess, ExportLogsServiceResponse,
    InstrumentationScope, KeyValue, KeyValueList, LogRecord, Resource, Value as Any,
};
use super::{Obj, Stop, each_field, float, hex, over_budget, string};
use crate::body::{Made, Sink};
use crate::reject::Reason;

// Both encodings are read record by record: only one `LogRecord` (plus its
// resource and scope) is held decoded at a time, so a body of many tiny
// records costs no more memory than the records it becomes.

pub(super) fn decode_protobuf(body: &[u8], sink: &mut Sink<'_>) {
    let mut emit = Emit::new(sink);
    let result = each_field(body, |tag, p| match tag {
        1 => resource_logs_pb(p, &mut emit),
        _ => Ok(()),
    });
    match result {
        Ok(()) => {}
        Err(Stop::OverBudget) => over_budget(emit.sink, body),
        Err(Stop::Bad(e)) => emit.sink.fail(
            body,
            "bad_protobuf",
            format!("the body is not an OTLP ExportLogsServiceRequest: {e}"),
        ),
    }
}

pub(super) fn decode_json(body: &[u8], sink: &mut Sink<'_>) {
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(e) => return sink.fail(body, "invalid_json", format!("the body is not JSON: {e}")),
    };
    let mut emit = Emit::new(sink);
    match request_json(&value, &mut emit) {
        Ok(()) => {}
        Err(Stop::OverBudget) => over_budget(emit.sink, body),
        Err(Stop::Bad(why)) => emit.sink.fail(
            body,
            "bad_shape",
            format!("not an OTLP/JSON logs request: {why}"),
        ),
    }
}

/// Writes records into the sink, numbering them from 1 across the request.
struct Emit<'s, 'a> {
    sink: &'s mut Sink<'a>,
    n: u64,
    text: String,
}

impl<'s, 'a> Emit<'s, 'a> {
    fn new(sink: &'s mut Sink<'a>) -> Self {
        Self {
            sink,
            n: 0,
            text: String::new(),
        }
    }

    fn record(
        &mut self,
        r: &LogRecord,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> Result<(), Stop> {
        self.n += 1;
        write_record(r, resource, scope, &mut self.text);
        match self.sink.vet(self.n, &self.text) {
            Made::OverBudget => return Err(Stop::OverBudget),
            Made::Refused => {}
            Made::Fits => {
                self.sink.push(self.n, self.text.as_bytes());
            }
        }
        Ok(())
    }

    /// A JSON record that could not be read holds its place as a reject.
    fn bad(&mut self, raw: &Value, why: String) {
        self.n += 1;
        self.sink
            .reject(self.n, raw.to_string().as_bytes(), bad_record(why));
    }
}

fn resource_logs_pb(b: &[u8], emit: &mut Emit<'_, '_>) -> Result<(), Stop> {
    // The resource may come after its scopes on the wire: find it first.
    let mut resource = None;
    each_field(b, |tag, p| {
        if tag == 1 {
            resource = Some(Resource::decode(p)?);
        }
        Ok(())
    })?;
    each_field(b, |tag, p| match tag {
        2 => scope_logs_pb(p, resource.as_ref(), emit),
        _ => Ok(()),
    })
}

fn scope_logs_pb(
    b: &[u8],
    resource: Option<&Resource>,
    emit: &mut Emit<'_, '_>,
) -> Result<(), Stop> {
    let mut scope = None;
    each_field(b, |tag, p| {
        if tag == 1 {
            scope = Some(InstrumentationScope::decode(p)?);
        }
        Ok(())
    })?;
    each_field(b, |tag, p| match tag {
        2 => emit.record(&LogRecord::decode(p)?, resource, scope.as_ref()),
        _ => Ok(()),
    })
}

/// The answer's `partial_success`, protobuf; empty when nothing was refused.
pub fn partial_success_protobuf(rejected: u64, message: &str) -> Vec<u8> {
    ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected as i64,
            error_message: message.to_owned(),
        }),
    }
    .encode_to_vec()
}

/// The answer's `partialSuccess`, OTLP/JSON (int64 as a string, as the
/// protobuf JSON mapping writes it).
pub fn partial_success_json(rejected: u64, message: &str) -> Value {
    if rejected == 0 {
        return Value::Object(Map::new());
    }
    serde_json::json!({
        "partialSuccess": {
            "rejectedLogRecords": rejected.to_string(),
            "errorMessage": message,
        }
    })
}

fn bad_record(detail: String) -> Reason {
    Reason::Protocol {
        label: "bad_record",
        detail,
    }
}

fn write_record(
    r: &LogRecord,
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
    text: &mut String,
) {
    text.clear();
    let mut obj = Obj::new(text);
    let time = if r.time_unix_nano != 0 {
        r.time_unix_nano
    } else {
        r.observed_time_unix_nano
    };
    if time != 0 {
        obj.time("timestamp", clamp(time));
    }
    if r.observed_time_unix_nano != 0 {
        obj.time("observed_timestamp", clamp(r.observed_time_unix_nano));
    }
    if !r.severity_text.is_empty() {
        obj.str("severity_text", &r.severity_text);
    }
    if r.severity_number != 0 {
        obj.int("severity_number", i64::from(r.severity_number));
    }
    if let Some(body) = r.body.as_ref().and_then(|b| b.value.as_ref()) {
        let out = obj.key("body");
        match body {
            Any::StringValue(s) => string(s, out),
            other => {
                let mut json = String::new();
                write_any(other, &mut json);
                string(&json, out);
            }
        }
    }
    if is_id(&r.trace_id) {
        obj.str("trace_id", &hex(&r.trace_id));
    }
    if is_id(&r.span_id) {
        obj.str("span_id", &hex(&r.span_id));
    }
    if r.flags != 0 {
        obj.int("flags", i64::from(r.flags));
    }
    if !r.event_name.is_empty() {
        obj.str("event_name", &r.event_name);
    }
    if !r.attributes.is_empty() {
        write_kvs(&r.attributes, obj.key("attributes"));
    }
    if let Some(res) = resource.filter(|r| !r.attributes.is_empty()) {
        write_kvs(&res.attributes, obj.key("resource"));
    }
    if let Some(scope) = scope {
        let out = obj.key("scope");
        let mut s = Obj::new(out);
        if !scope.name.is_empty() {
            s.str("name", &scope.name);
        }
        if !scope.version.is_empty() {
            s.str("version", &scope.version);
        }
        if !scope.attributes.is_empty() {
            write_kvs(&scope.attributes, s.key("attributes"));
        }
        s.close();
    }
    obj.close();
}

/// OTLP times are unsigned; past 2262 they no longer fit nanoseconds in an
/// i64, so they are held at the last instant that does.
fn clamp(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// A trace or span id worth keeping: present and not all zero.
fn is_id(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b != 0)
}

fn write_kvs(kvs: &[KeyValue], out: &mut String) {
    let mut obj = Obj::new(out);
    for kv in kvs {
        let out = obj.key(&kv.key);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(v) => write_any(v, out),
            None => out.push_str("null"),
        }
    }
    obj.close();
}

fn write_any(v: &Any, out: &mut String) {
    use std::fmt::Write;
    match v {
        Any::StringValue(s) => string(s, out),
        Any::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        Any::IntValue(i) => {
            let _ = write!(out, "{i}");
        }
        Any::DoubleValue(f) => float(*f, out),
        Any::BytesValue(b) => string(&base64_encode(b), out),
        Any::ArrayValue(a) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match &v.value {
                    Some(v) => write_any(v, out),
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
        Any::KvlistValue(kv) => write_kvs(&kv.values, out),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---- OTLP/JSON into the protobuf messages ----------------------------------
//
// The JSON mapping uses lowerCamelCase names, hex for trace and span ids,
// strings or numbers for 64-bit integers. snake_case names are read too.

fn get<'v>(obj: &'v Map<String, Value>, camel: &str, snake: &str) -> Option<&'v Value> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .filter(|v| !v.is_null())
}

fn list<'v>(obj: &'v Map<String, Value>, camel: &str, snake: &str) -> Result<&'v [Value], String> {
    match get(obj, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{camel} is not an array")),
    }
}

fn object<'v>(v: &'v Value, what: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not an object"))
}

fn text(obj: &Map<String, Value>, camel: &str, snake: &str) -> Result<String, String> {
    match get(obj, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{camel} is not a string")),
    }
}

fn uint(obj: &Map<String, Value>, camel: &str, snake: &str) -> Result<u64, String> {
    match get(obj, camel, snake) {
        None => Some(0),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| format!("{camel} is not an unsigned integer"))
}

fn int(obj: &Map<String, Value>, camel: &str, snake: &str) -> Result<i64, String> {
    match get(obj, camel, snake) {
        None => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| format!("{camel} is not an integer"))
}

fn hex_id(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    len: usize,
) -> Result<Vec<u8>, String> {
    let s = text(obj, camel, snake)?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = s.as_bytes();
    if bytes.len() != len * 2 {
        return Err(format!("{camel} {s:?} is not {len} bytes of hex"));
    }
    bytes
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| format!("{camel} {s:?} is not hex"))
}

/// Walks the JSON request, writing each record as it is read.
fn request_json(v: &Value, emit: &mut Emit<'_, '_>) -> Result<(), Stop> {
    let top = object(v, "the body")?;
    for rl in list(top, "resourceLogs", "resource_logs")? {
        let rl = object(rl, "a resourceLogs entry")?;
        let resource = match get(rl, "resource", "resource") {
            None => None,
            Some(r) => Some(Resource {
                attributes: kvs_from_json(list(
                    object(r, "resource")?,
                    "attributes",
                    "attributes",
                )?)?,
                dropped_attributes_count: 0,
            }),
        };
        for sl in list(rl, "scopeLogs", "scope_logs")? {
            let sl = object(sl, "a scopeLogs entry")?;
            let scope = match get(sl, "scope", "scope") {
                None => None,
                Some(s) => {
                    let s = object(s, "scope")?;
                    Some(InstrumentationScope {
                        name: text(s, "name", "name")?,
                        version: text(s, "version", "version")?,
                        attributes: kvs_from_json(list(s, "attributes", "attributes")?)?,
                        dropped_attributes_count: 0,
                    })
                }
            };
            for r in list(sl, "logRecords", "log_records")? {
                match record_from_json(r) {
                    Ok(record) => emit.record(&record, resource.as_ref(), scope.as_ref())?,
                    Err(why) => emit.bad(r, why),
                }
            }
        }
    }
    Ok(())
}

fn record_from_json(v: &Value) -> Result<LogRecord, String> {
    let r = object(v, "a log record")?;
    let severity = int(r, "severityNumber", "severity_number")?;
    Ok(LogRecord {
        time_unix_nano: uint(r, "timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: uint(r, "observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: i32::try_from(severity).map_err(|_| "severityNumber is out of range")?,
        severity_text: text(r, "severityText", "severity_text")?,
        body: get(r, "body", "body").map(any_from_json).transpose()?,
        attributes: kvs_from_json(list(r, "attributes", "attributes")?)?,
        dropped_attributes_count: 0,
        flags: u32::try_from(uint(r, "flags", "flags")?).map_err(|_| "flags is out of range")?,
        trace_id: hex_id(r, "traceId", "trace_id", 16)?,
        span_id: hex_id(r, "spanId", "span_id", 8)?,
        event_name: text(r, "eventName", "event_name")?,
    })
}

fn kvs_from_json(items: &[Value]) -> Result<Vec<KeyValue>, String> {
    items
        .iter()
        .map(|kv| {
            let kv = object(kv, "an attribute")?;
            Ok(KeyValue {
                key: text(kv, "key", "key")?,
                value: get(kv, "value", "value").map(any_from_json).transpose()?,
            })
        })
        .collect()
}

fn any_from_json(v: &Value) -> Result<AnyValue, String> {
    let obj = object(v, "an AnyValue")?;
    let value = if let Some(s) = get(obj, "stringValue", "string_value") {
        Some(Any::StringValue(
            s.as_str().ok_or("stringValue is not a string")?.to_owned(),
        ))
    } else if let Some(b) = get(obj, "boolValue", "bool_value") {
        Some(Any::BoolValue(
            b.as_bool().ok_or("boolValue is not a boolean")?,
        ))
    } else if get(obj, "intValue", "int_value").is_some() {
        Some(Any::IntValue(int(obj, "intValue", "int_value")?))
    } else if let Some(d) = get(obj, "doubleValue", "double_value") {
        let f = match d {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        Some(Any::DoubleValue(f.ok_or("doubleValue is not a number")?))
    } else if let Some(a) = get(obj, "arrayValue", "array_value") {
        let values = list(object(a, "arrayValue")?, "values", "values")?;
        Some(Any::ArrayValue(ArrayValue {
            values: values.iter().map(any_from_json).collect::<Result<_, _>>()?,
        }))
    } else if let Some(kv) = get(obj, "kvlistValue", "kvlist_value") {
        let values = list(object(kv, "kvlistValue")?, "values", "values")?;
        Some(Any::KvlistValue(KeyValueList {
            values: kvs_from_json(values)?,
        }))
    } else if let Some(b) = get(obj, "bytesValue", "bytes_value") {
        let s = b.as_str().ok_or("bytesValue is not a string")?;
        Some(Any::BytesValue(
            base64_decode(s).ok_or("bytesValue is not base64")?,
        ))
    } else {
        None
    };
    Ok(AnyValue { value })
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, RecordBatch};

    use super::*;
    use crate::protocol::Format;
    use crate::protocol::pb::{ExportLogsServiceRequest, ResourceLogs, ScopeLogs};
    use crate::protocol::testing::{column, decode};

    fn kv(key: &str, v: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
        }
    }

    fn sample() -> ExportLogsServiceRequest {
        let record = |sev: i32, text: &str, body: Any, trace: Vec<u8>| LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_number: sev,
            severity_text: text.into(),
            body: Some(AnyValue { value: Some(body) }),
            attributes: vec![
                kv("order_id", Any::IntValue(42)),
                kv("ratio", Any::DoubleValue(0.5)),
            ],
            dropped_attributes_count: 0,
            flags: 1,
            trace_id: trace,
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
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
                        name: "app.payments".into(),
                        version: "1.2".into(),
                        attributes: vec![],
                        dropped_attributes_count: 0,
                    }),
                    log_records: vec![
                        record(
                            9,
                            "INFO",
                            Any::StringValue("paid".into()),
                            (1..=16).collect(),
                        ),
                        record(
                            17,
                            "",
                            Any::KvlistValue(KeyValueList {
                                values: vec![kv("code", Any::IntValue(502))],
                            }),
                            vec![0; 16],
                        ),
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn check_sample(logs: &RecordBatch) {
        assert_eq!(
            column(logs, "service"),
            vec![Some("checkout".into()), Some("checkout".into())]
        );
        assert_eq!(column(logs, "host")[0].as_deref(), Some("web-1"));
        assert_eq!(
            column(logs, "level"),
            vec![Some("info".into()), Some("error".into())]
        );
        assert_eq!(
            column(logs, "message"),
            vec![Some("paid".into()), Some("{\"code\":502}".into())]
        );
        assert_eq!(
            column(logs, "correlation_id"),
            vec![Some("0102030405060708090a0b0c0d0e0f10".into()), None],
            "an all-zero trace id is no id"
        );
        assert_eq!(
            column(logs, "span_id")[0].as_deref(),
            Some("0102030405060708")
        );
        assert_eq!(
            column(logs, "attributes.order_id")[0].as_deref(),
            Some("42")
        );
        assert_eq!(
            column(logs, "scope.name")[1].as_deref(),
            Some("app.payments")
        );
        let ts = logs
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(ts.value(0), 1_700_000_000_123_456_789);
    }

    #[test]
    fn protobuf_records_carry_resource_scope_ids_and_severity() {
        let out = decode(Format::OtlpProtobuf, &sample().encode_to_vec());
        assert_eq!(out.fatal, None);
        assert_eq!(out.counts.accepted, 2);
        check_sample(&crate::body::concat_logs(&out.logs).unwrap());
    }

    #[test]
    fn json_mapping_reads_like_protobuf_and_bad_records_fail_alone() {
        let body = br#"{"resourceLogs":[{
            "resource":{"attributes":[
                {"key":"service.name","value":{"stringValue":"checkout"}},
                {"key":"host.name","value":{"stringValue":"web-1"}}]},
            "scopeLogs":[{"scope":{"name":"app.payments","version":"1.2"},
              "logRecords":[
                {"timeUnixNano":"1700000000123456789","observedTimeUnixNano":1700000001000000000,
                 "severityNumber":9,"severityText":"INFO","body":{"stringValue":"paid"},
                 "attributes":[{"key":"order_id","value":{"intValue":"42"}},
                               {"key":"ratio","value":{"doubleValue":0.5}}],
                 "flags":1,"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"},
                {"traceId":"xyz","body":{"stringValue":"bad id"}},
                {"timeUnixNano":"1700000000123456789","severityNumber":17,
                 "body":{"kvlistValue":{"values":[{"key":"code","value":{"intValue":502}}]}},
                 "traceId":"00000000000000000000000000000000","spanId":"0102030405060708"}
              ]}]}]}"#;
        let out = decode(Format::OtlpJson, body);
        assert_eq!(out.fatal, None);
        assert_eq!((out.counts.accepted, out.counts.rejected), (2, 1));
        check_sample(&crate::body::concat_logs(&out.logs).unwrap());
        assert_eq!(out.errors[0].line, 2);
        assert!(out.errors[0].reason.to_string().contains("traceId"));
    }

    #[test]
    fn undecodable_bodies_are_kept_whole() {
        for (format, body) in [
            (Format::OtlpProtobuf, &b"\x0a\xff\xff\xff\xff\x0f"[..]),
            (Format::OtlpJson, &b"{\"resourceLogs\": {}}"[..]),
            (Format::OtlpJson, &b"not json"[..]),
            (Format::OtlpJson, &b"[]"[..]),
        ] {
            let out = decode(format, body);
            assert!(out.fatal.is_some(), "{body:?}");
            assert!(out.logs.is_empty());
            assert_eq!(out.counts.rejected, 1);
        }
    }

    #[test]
    fn protobuf_is_read_in_any_field_order_and_a_bad_tail_refuses_it_whole() {
        // A ResourceLogs whose scopes come before its resource on the wire.
        let rl = &sample().resource_logs[0];
        let mut inner = Vec::new();
        for sl in &rl.scope_logs {
            prost::encoding::message::encode(2, sl, &mut inner);
        }
        prost::encoding::message::encode(1, rl.resource.as_ref().unwrap(), &mut inner);
        let mut body = Vec::new();
        prost::encoding::bytes::encode(1, &inner, &mut body);
        let out = decode(Format::OtlpProtobuf, &body);
        assert_eq!(out.fatal, None);
        check_sample(&crate::body::concat_logs(&out.logs).unwrap());
        // Good records, then bytes that do not decode: nothing is stored.
        let mut bad = sample().encode_to_vec();
        bad.extend_from_slice(b"\x0a\x05\x12\x03");
        let out = decode(Format::OtlpProtobuf, &bad);
        assert!(out.fatal.is_some());
        assert!(out.logs.is_empty());
        assert_eq!((out.counts.accepted, out.counts.rejected), (0, 1));
    }

    #[test]
    fn a_body_that_expands_past_its_budget_is_refused_whole() {
        // 100 KiB of resource attribute copied into 1000 two-byte records:
        // about 100 MiB of record text from a 100 KiB body.
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("blob", Any::StringValue("x".repeat(100 << 10)))],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![LogRecord::default(); 1000],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let body = req.encode_to_vec();
        assert!(body.len() < 110 << 10);
        let out = decode(Format::OtlpProtobuf, &body);
        assert!(
            out.fatal.as_deref().unwrap().contains("expands"),
            "{:?}",
            out.fatal
        );
        assert!(out.logs.is_empty());
        assert_eq!(out.counts.rejected, 1);
        // The same attribute on 10 records fits.
        let mut small = req.clone();
        small.resource_logs[0].scope_logs[0]
            .log_records
            .truncate(10);
        let out = decode(Format::OtlpProtobuf, &small.encode_to_vec());
        assert_eq!(out.fatal, None);
        assert_eq!(out.counts.accepted, 10);
    }

    #[test]
    fn base64_round_trips() {
        for bytes in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0, 255, 128, 7, 9]] {
            let text = base64_encode(bytes);
            assert_eq!(text.len() % 4, 0);
            assert_eq!(base64_decode(&text).as_deref(), Some(bytes));
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("a$"), None);
    }

    #[test]
    fn partial_success_answers() {
        assert!(partial_success_protobuf(0, "").is_empty());
        let pb =
            ExportLogsServiceResponse::decode(&partial_success_protobuf(2, "why")[..]).unwrap();
        assert_eq!(pb.partial_success.unwrap().rejected_log_records, 2);
        assert_eq!(
            partial_success_json(3, "m")["partialSuccess"]["rejectedLogRecords"],
            "3"
        );
    }
}
