//! The normalizer end to end: lines in, `logs` and `rejects` batches out,
//! and every accepted record rebuilt from its row.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType};
use proptest::prelude::*;
use serde_json::Value;
use weft_ingest::rebuild::rebuild;
use weft_ingest::{BatchBuilder, Defaults, FieldRegistry, NormalizerConfig, model};

const OBSERVED: i64 = 1_800_000_000_000_000_000;

fn builder_with(config: NormalizerConfig) -> BatchBuilder {
    let cap = config.max_fields;
    let mut b = BatchBuilder::new(Arc::new(config), Arc::new(FieldRegistry::new(cap)));
    b.set_observed_at(OBSERVED);
    b
}

/// Normalizes `lines` in one builder; the `logs` rows come back as one
/// batch in line order.
fn run(lines: &[&str]) -> (Option<RecordBatch>, Option<RecordBatch>) {
    let (logs, rejects) = run_parts(lines);
    (in_line_order(&logs), rejects)
}

/// Normalizes `lines` in one builder, line `i` received at `OBSERVED + i`
/// ns (which tells the line of a row in the builder's per-service batches).
fn run_parts(lines: &[&str]) -> (Vec<RecordBatch>, Option<RecordBatch>) {
    let mut b = builder_with(NormalizerConfig::default());
    let src: Arc<str> = Arc::from("test.ndjson");
    for (i, l) in lines.iter().enumerate() {
        b.set_observed_at(OBSERVED + i as i64);
        b.push_line(&src, i as u64 + 1, l.as_bytes());
    }
    b.finish()
}

/// The (batch, row) of each line, in line order, for batches of
/// [`run_parts`].
fn line_rows(parts: &[RecordBatch]) -> Vec<(usize, usize)> {
    let mut at = Vec::new();
    for (p, b) in parts.iter().enumerate() {
        let observed = b
            .column_by_name(model::OBSERVED_AT)
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        for r in 0..b.num_rows() {
            at.push((observed.value(r), p, r));
        }
    }
    at.sort_unstable();
    at.into_iter().map(|(_, p, r)| (p, r)).collect()
}

/// The builder's batches (one per service) as one batch ordered by
/// `observed_at`.
fn in_line_order(parts: &[RecordBatch]) -> Option<RecordBatch> {
    use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
    let all = weft_ingest::body::concat_logs(parts)?;
    let order = sort_to_indices(
        all.column_by_name(model::OBSERVED_AT).unwrap(),
        Some(SortOptions::default()),
        None,
    )
    .unwrap();
    Some(take_record_batch(&all, &order).unwrap())
}

fn text(batch: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let c = batch.column_by_name(col)?;
    if c.is_null(row) {
        return None;
    }
    let c = cast(&c.slice(row, 1), &DataType::Utf8).unwrap();
    Some(c.as_string::<i32>().value(0).to_string())
}

fn ts(batch: &RecordBatch, row: usize) -> i64 {
    batch
        .column_by_name(model::TIMESTAMP)
        .unwrap()
        .as_primitive::<TimestampNanosecondType>()
        .value(row)
}

const S: i64 = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z in ns

#[test]
fn house_styles_fill_core_columns() {
    let lines = [
        // Go zap
        r#"{"level":"info","ts":1700000000.5,"caller":"pay.go:88","msg":"charged","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","service":"checkout-go","status":200}"#,
        // pino
        r#"{"level":50,"time":1700000000123,"pid":42,"hostname":"node-3","reqId":"4bf92f3577b34da6a3ce929d0e0e4736","msg":"cart failed","name":"cart-node"}"#,
        // structlog
        r#"{"event":"billed","correlation_id":"c-1","level":"warning","timestamp":"2023-11-15T00:13:20.000001+02:00","service":"billing-py"}"#,
        // logback
        r#"{"@timestamp":"2023-11-14T22:13:20.123Z","message":"boom","level":"ERROR","level_value":40000,"traceId":"t-9","app":"orders-java","stack_trace":"java.lang.X\n\tat a.b"}"#,
        // Rust tracing
        r#"{"timestamp":"2023-11-14T22:13:20.123456789Z","level":"DEBUG","fields":{"message":"reserved","qty":3},"span":{"request_id":"r-7","name":"reserve"},"service":"inventory-rs"}"#,
        // nginx access log
        r#"{"time":"14/Nov/2023:22:13:20 +0000","status":404,"request_id":"n-1","host":"edge-1","service":"edge-nginx"}"#,
        // OTel-style
        r#"{"timestamp":"2023-11-14T22:13:20Z","severity_text":"INFO","severity_number":9,"body":"paid","resource":{"service":{"name":"payments-otel"},"host":{"name":"pay-2"}},"attributes":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}"#,
    ];
    let (logs, rejects) = run(&lines);
    assert!(rejects.is_none(), "no rejects expected");
    let logs = logs.unwrap();
    assert_eq!(logs.num_rows(), 7);
    let want = [
        (
            "checkout-go",
            "info",
            "charged",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            S + 500_000_000,
        ),
        (
            "cart-node",
            "error",
            "cart failed",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            S + 123_000_000,
        ),
        ("billing-py", "warn", "billed", "c-1", S + 1_000),
        ("orders-java", "error", "boom", "t-9", S + 123_000_000),
        ("inventory-rs", "debug", "reserved", "r-7", S + 123_456_789),
        ("edge-nginx", "", "", "n-1", S),
        (
            "payments-otel",
            "info",
            "paid",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            S,
        ),
    ];
    for (row, (service, level, msg, id, t)) in want.iter().enumerate() {
        assert_eq!(
            text(&logs, "service", row).as_deref(),
            Some(*service),
            "row {row}"
        );
        assert_eq!(
            text(&logs, "level", row).unwrap_or_default(),
            *level,
            "row {row}"
        );
        assert_eq!(
            text(&logs, "message", row).unwrap_or_default(),
            *msg,
            "row {row}"
        );
        assert_eq!(
            text(&logs, "correlation_id", row).as_deref(),
            Some(*id),
            "row {row}"
        );
        assert_eq!(ts(&logs, row), *t, "row {row}");
        assert_eq!(
            text(&logs, "timestamp_inferred", row).as_deref(),
            Some("false")
        );
    }
    assert_eq!(
        text(&logs, "span_id", 0).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(
        text(&logs, "span_id", 6).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(text(&logs, "host", 1).as_deref(), Some("node-3"));
    assert_eq!(text(&logs, "host", 6).as_deref(), Some("pay-2"));
    // Fields that fed no core column keep their own typed columns.
    assert_eq!(text(&logs, "status", 0).as_deref(), Some("200"));
    assert_eq!(
        logs.column_by_name("status").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(text(&logs, "fields.qty", 4).as_deref(), Some("3"));
    assert_eq!(text(&logs, "level_value", 3).as_deref(), Some("40000"));
    assert_eq!(
        text(&logs, "stack_trace", 3).as_deref(),
        Some("java.lang.X\n\tat a.b")
    );
    // The traceparent itself is kept.
    assert!(text(&logs, "attributes.traceparent", 6).is_some());
}

#[test]
fn missing_or_bad_time_uses_receive_time_and_says_so() {
    let (logs, _) = run(&[
        r#"{"msg":"no time"}"#,
        r#"{"msg":"bad","time":"yesterday"}"#,
    ]);
    let logs = logs.unwrap();
    for row in 0..2 {
        assert_eq!(ts(&logs, row), OBSERVED + row as i64);
        assert_eq!(
            text(&logs, "timestamp_inferred", row).as_deref(),
            Some("true")
        );
    }
    // The unparsable value is not lost: `time` is reserved for nothing, so it has a column.
    assert_eq!(text(&logs, "time", 1).as_deref(), Some("yesterday"));
}

#[test]
fn bad_lines_are_rejected_with_reasons_and_the_rest_kept() {
    let lines: [&[u8]; 7] = [
        br#"{"msg":"ok 1"}"#,
        b"plain text line",
        br#"[1,2,3]"#,
        br#"{"msg":"truncated"#,
        b"{\"msg\":\"bad \xff utf8\"}",
        br#"{"msg":"ok 2"}"#,
        br#""a string""#,
    ];
    let mut b = builder_with(NormalizerConfig::default());
    let src: Arc<str> = Arc::from("in.ndjson");
    for (i, l) in lines.iter().enumerate() {
        b.push_line(&src, i as u64 + 1, l);
    }
    let counts = b.counts();
    assert_eq!((counts.accepted, counts.rejected), (2, 5));
    let (logs, rejects) = b.finish();
    assert_eq!(in_line_order(&logs).unwrap().num_rows(), 2);
    let rejects = rejects.unwrap();
    assert_eq!(rejects.num_rows(), 5);
    let reasons: Vec<String> = (0..5)
        .map(|r| text(&rejects, "reason", r).unwrap())
        .collect();
    assert_eq!(reasons[0], "not JSON: a record must be a JSON object");
    assert_eq!(reasons[1], "not a JSON object: the line is an array");
    assert!(
        reasons[2].starts_with("invalid JSON: unexpected end of input"),
        "{}",
        reasons[2]
    );
    assert_eq!(reasons[3], "invalid UTF-8 at byte 12");
    assert_eq!(reasons[4], "not a JSON object: the line is a string");
    let line_nos: Vec<String> = (0..5).map(|r| text(&rejects, "line", r).unwrap()).collect();
    assert_eq!(line_nos, ["2", "3", "4", "5", "7"]);
    let raw = rejects.column_by_name("raw").unwrap().as_binary::<i32>();
    assert_eq!(raw.value(3), lines[4], "raw bytes kept exactly");
    assert_eq!(text(&rejects, "source", 0).as_deref(), Some("in.ndjson"));
}

#[test]
fn conflicting_types_widen_and_nothing_is_dropped() {
    let (logs, _) = run(&[
        r#"{"n":1,"f":1,"s":true}"#,
        r#"{"n":2.5,"f":"x","s":3}"#,
        r#"{"n":3}"#,
    ]);
    let logs = logs.unwrap();
    assert_eq!(
        logs.column_by_name("n").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        logs.column_by_name("f").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(text(&logs, "f", 0).as_deref(), Some("1"));
    assert_eq!(text(&logs, "s", 0).as_deref(), Some("true"));
    assert_eq!(text(&logs, "s", 1).as_deref(), Some("3"));
    assert_eq!(text(&logs, "s", 2), None);
    // Rebuilt as written, but for the spelling of numbers in the widened column.
    let back: Vec<String> = (0..3).map(|r| rebuild(&logs, r).unwrap()).collect();
    assert_eq!(
        back,
        [
            r#"{"n":1.0,"f":1,"s":true}"#,
            r#"{"n":2.5,"f":"x","s":3}"#,
            r#"{"n":3.0}"#
        ]
    );
}

#[test]
fn field_cap_sends_new_fields_to_extra() {
    let config = NormalizerConfig {
        max_fields: 2,
        ..Default::default()
    };
    let mut b = builder_with(config);
    let src: Arc<str> = Arc::from("x");
    let line = r#"{"a":1,"b":"two","c":[1,2],"d":{"e":false}}"#;
    b.push_line(&src, 1, line.as_bytes());
    let (logs, _) = b.finish();
    let logs = in_line_order(&logs).unwrap();
    assert!(logs.column_by_name("a").is_some());
    assert!(logs.column_by_name("b").is_some());
    assert!(logs.column_by_name("c").is_none());
    assert_eq!(
        text(&logs, "_extra", 0).as_deref(),
        Some(r#"{"c":[1,2],"d.e":false}"#)
    );
    let back: Value = serde_json::from_str(&rebuild(&logs, 0).unwrap()).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
}

#[test]
fn records_of_many_shapes_rebuild_exactly_in_one_builder() {
    // More distinct skeletons than the builder remembers (it starts afresh
    // past a few thousand), shapes seen again after that, and a message
    // beyond the tenth leaf, so core entries name two-digit leaves.
    let mut lines: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"service":"s{}","k{i}":{i},"n":"x{i}"}}"#, i % 3))
        .collect();
    for i in 0..50 {
        lines.push(format!(r#"{{"service":"s","k{i}":"again","n":{i}}}"#));
        lines.push(format!(r#"{{"service":"s","k{i}":{i},"n":"x{i}"}}"#));
    }
    let wide = (0..12)
        .map(|j| format!(r#""f{j}":{j}"#))
        .collect::<Vec<_>>();
    lines.push(format!(r#"{{{},"msg":"late"}}"#, wide.join(",")));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (logs, rejects) = run_parts(&refs);
    assert!(rejects.is_none());
    // Services s0, s1, s2, s and none: a batch each.
    assert_eq!(logs.len(), 5);
    let at = line_rows(&logs);
    assert_eq!(at.len(), lines.len());
    for (line, &(part, row)) in lines.iter().zip(&at) {
        assert_eq!(&rebuild(&logs[part], row).unwrap(), line, "{line}");
    }
    let (part, row) = at[lines.len() - 1];
    assert_eq!(text(&logs[part], "message", row).as_deref(), Some("late"));
    let (part, row) = at[7];
    assert_eq!(text(&logs[part], "k7", row).as_deref(), Some("7"));
}

#[test]
fn duplicate_keys_and_reserved_names_keep_every_value_in_order() {
    let line = r#"{"msg":"first","msg":"second","x":1,"x":2,"observed_at":"mine","level":"banana","a.b":1,"a":{"b":2}}"#;
    let (logs, _) = run(&[line]);
    let logs = logs.unwrap();
    assert_eq!(text(&logs, "message", 0).as_deref(), Some("first"));
    assert_eq!(text(&logs, "msg", 0).as_deref(), Some("second"));
    assert_eq!(text(&logs, "x", 0).as_deref(), Some("1"));
    assert_eq!(text(&logs, "level", 0), None, "banana is no level");
    assert_eq!(
        text(&logs, "_extra", 0).as_deref(),
        Some(r#"{"x":2,"observed_at":"mine","level":"banana","a.b":2}"#)
    );
    // Rebuilt with duplicates, in the original key order, byte for byte.
    assert_eq!(rebuild(&logs, 0).unwrap(), line);
}

#[test]
fn a_skeleton_met_again_is_read_as_the_first_time() {
    // The second and third lines reuse the first one's skeleton (its path
    // ids and core candidates are worked out once); the fourth spells a key
    // with an escape, a skeleton of its own with the same paths.
    let lines = [
        r#"{"msg":"one","msg":"two","service":"a","n":1,"o":{"k":true}}"#,
        r#"{"msg":"three","msg":"four","service":"a","n":2,"o":{"k":false}}"#,
        r#"{"msg":"","msg":"five","service":"a","n":3,"o":{"k":true}}"#,
        r#"{"m\u0073g":"six","msg":"seven","service":"a","n":4,"o":{"k":true}}"#,
    ];
    let (logs, rejects) = run(&lines);
    assert!(rejects.is_none());
    let logs = logs.unwrap();
    let messages: Vec<_> = (0..4).map(|r| text(&logs, "message", r)).collect();
    let seconds: Vec<_> = (0..4).map(|r| text(&logs, "msg", r)).collect();
    let n: Vec<_> = (0..4).map(|r| text(&logs, "n", r)).collect();
    let k: Vec<_> = (0..4).map(|r| text(&logs, "o.k", r)).collect();
    assert_eq!(
        messages,
        [Some("one"), Some("three"), Some(""), Some("six")].map(|m| m.map(String::from))
    );
    assert_eq!(
        seconds,
        [Some("two"), Some("four"), Some("five"), Some("seven")].map(|m| m.map(String::from))
    );
    assert_eq!(n, ["1", "2", "3", "4"].map(|v| Some(v.to_owned())));
    assert_eq!(
        k,
        ["true", "false", "true", "true"].map(|v| Some(v.to_owned()))
    );
    for (row, line) in lines.iter().enumerate() {
        assert_eq!(&rebuild(&logs, row).unwrap(), line);
    }
}

#[test]
fn traceparent_feeds_ids_unless_zero_or_malformed() {
    let (logs, _) = run(&[
        r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#,
        r#"{"traceparent":"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}"#,
        r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}"#,
        r#"{"traceparent":"zz-not-a-traceparent"}"#,
        r#"{"traceparent":"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}"#,
        r#"{"trace_id":"explicit","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#,
    ]);
    let logs = logs.unwrap();
    let id = |r| text(&logs, "correlation_id", r);
    let span = |r| text(&logs, "span_id", r);
    assert_eq!(id(0).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(span(0).as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(
        (id(1), span(1).as_deref()),
        (None, Some("00f067aa0ba902b7"))
    );
    assert_eq!((id(2).is_some(), span(2)), (true, None));
    assert_eq!((id(3), span(3)), (None, None));
    assert_eq!((id(4), span(4)), (None, None), "uppercase hex is malformed");
    assert_eq!(
        id(5).as_deref(),
        Some("explicit"),
        "explicit id wins over traceparent"
    );
    for row in 0..6 {
        assert!(text(&logs, "traceparent", row).is_some(), "kept as a field");
    }
}

#[test]
fn each_service_s_lines_make_a_batch_with_only_their_columns() {
    let (logs, rejects) = run_parts(&[
        r#"{"service":"a","only_a":1,"shared":"x"}"#,
        r#"{"service":"b","only_b":true,"shared":2}"#,
        r#"{"service":"a","only_a":2}"#,
    ]);
    assert!(rejects.is_none());
    assert_eq!(logs.len(), 2);
    let names = |b: &RecordBatch| -> Vec<String> {
        b.schema().fields()[model::CORE_FIELD_COUNT..]
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    let (a, b) = (&logs[0], &logs[1]);
    assert_eq!(names(a), ["only_a", "shared"]);
    assert_eq!(names(b), ["only_b", "shared"]);
    // Rows keep their order within a service; types are each batch's own.
    assert_eq!(a.num_rows(), 2);
    assert_eq!(text(a, "only_a", 1).as_deref(), Some("2"));
    assert_eq!(text(a, "shared", 1), None);
    assert_eq!(
        a.schema().field_with_name("shared").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        b.schema().field_with_name("shared").unwrap().data_type(),
        &DataType::Int64
    );
}

#[test]
fn services_past_the_part_limit_share_the_last_batch() {
    let lines: Vec<String> = (0..70)
        .map(|i| format!(r#"{{"service":"s{i}","f{i}":{i}}}"#))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (logs, _) = run_parts(&refs);
    assert_eq!(logs.len(), 64);
    assert!(logs[..63].iter().all(|b| b.num_rows() == 1));
    let last = &logs[63];
    assert_eq!(last.num_rows(), 7);
    for (row, i) in (63..70).enumerate() {
        assert_eq!(
            text(last, "service", row).as_deref(),
            Some(format!("s{i}").as_str())
        );
        assert_eq!(text(last, &format!("f{i}"), row), Some(i.to_string()));
    }
    // Every line is there once, and rebuilds.
    let at = line_rows(&logs);
    for (line, &(part, row)) in lines.iter().zip(&at) {
        assert_eq!(&rebuild(&logs[part], row).unwrap(), line);
    }
}

#[test]
fn defaults_fill_service_and_host_only_when_missing() {
    let mut b = builder_with(NormalizerConfig::default());
    b.set_defaults(Defaults {
        service: Some("from-request".into()),
        host: Some("h0".into()),
    });
    let src: Arc<str> = Arc::from("x");
    b.push_line(&src, 1, br#"{"msg":"a"}"#);
    b.push_line(&src, 2, br#"{"msg":"b","service":"own"}"#);
    b.push_line(&src, 3, br#"{"msg":"c"}"#);
    let (logs, _) = b.finish();
    // One batch per service, in the order services were first seen.
    assert_eq!(logs.len(), 2);
    let (defaulted, own) = (&logs[0], &logs[1]);
    assert_eq!(defaulted.num_rows(), 2);
    for row in 0..2 {
        assert_eq!(
            text(defaulted, "service", row).as_deref(),
            Some("from-request")
        );
    }
    assert_eq!(text(defaulted, "message", 1).as_deref(), Some("c"));
    assert_eq!(text(own, "service", 0).as_deref(), Some("own"));
    assert_eq!(text(own, "host", 0).as_deref(), Some("h0"));
}

#[test]
fn levels_rebuild_exactly_as_written() {
    let lines = [
        r#"{"level":30,"msg":"pino"}"#,
        r#"{"level":"WARNING","msg":"py"}"#,
        r#"{"level":"info","msg":"plain"}"#,
        r#"{"severity_number":17,"msg":"otel"}"#,
        r#"{"ts":1700000000123,"msg":"ms"}"#,
        r#"{"ts":"1700000000","msg":"digits"}"#,
    ];
    let (logs, _) = run(&lines);
    let logs = logs.unwrap();
    let levels: Vec<_> = (0..4).map(|r| text(&logs, "level", r).unwrap()).collect();
    assert_eq!(levels, ["info", "warn", "info", "error"]);
    for (row, line) in lines.iter().enumerate() {
        assert_eq!(&rebuild(&logs, row).unwrap(), line);
    }
}

// ---- round trip: every record comes back from its row ----

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zé \"\\\\\n\t😀]{0,10}".prop_map(Value::String),
        prop::sample::select(vec![
            "INFO",
            "warning",
            "ERR",
            "debug",
            "banana",
            "30",
            "2023-11-14T22:13:20.123Z",
            "2023-11-15T00:13:20+02:00",
            "yesterday",
            "1700000000",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ])
        .prop_map(|s| Value::String(s.into())),
        prop::sample::select(vec![30i64, 40000, 9, 1_700_000_000, 1_700_000_000_123])
            .prop_map(Value::from),
        Just(Value::from(1_700_000_000.25f64)),
        prop::collection::vec(any::<i32>().prop_map(Value::from), 0..3).prop_map(Value::Array),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "ts",
        "time",
        "timestamp",
        "level",
        "severity_number",
        "msg",
        "message",
        "event",
        "trace_id",
        "reqId",
        "span_id",
        "service",
        "host",
        "traceparent",
        "a",
        "b",
        "a.b",
        "x",
        "q\"k",
        "observed_at",
        "_shape",
        "name",
        "fields",
    ])
    .prop_map(String::from)
}

fn record() -> impl Strategy<Value = Value> {
    let value = leaf().prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec((key(), inner), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()))
    });
    prop::collection::vec((key(), value), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// Instant of a timestamp value, the way the normalizer reads it.
fn instant(v: &Value) -> Option<i64> {
    use weft_ingest::time::{Parsed, from_epoch_float, from_epoch_int, parse_text};
    match v {
        Value::String(s) => match parse_text(s)? {
            Parsed::Text(ns) | Parsed::EpochText(ns, _) => Some(ns),
        },
        Value::Number(n) => match n.as_i64() {
            Some(i) => from_epoch_int(i).map(|x| x.0),
            None => from_epoch_float(n.as_f64()?).map(|x| x.0),
        },
        _ => None,
    }
}

/// Equal up to number spelling (`1` and `1.0`), except that a timestamp may
/// come back as another spelling of the same instant.
fn same(orig: &Value, back: &Value) -> bool {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (a, b) if a == b => true,
        (Value::Number(a), Value::Number(b))
            if (a.is_f64() || b.is_f64()) && a.as_f64() == b.as_f64() =>
        {
            true
        }
        (a, b) => match (instant(a), instant(b)) {
            (Some(x), Some(y)) => (x - y).abs() <= 1_000,
            _ => false,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn every_record_rebuilds_from_its_row(records in prop::collection::vec(record(), 1..6)) {
        let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (logs, rejects) = run_parts(&refs);
        prop_assert!(rejects.is_none());
        let at = line_rows(&logs);
        prop_assert_eq!(at.len(), records.len());
        for (line, (orig, &(part, row))) in records.iter().zip(&at).enumerate() {
            let text = rebuild(&logs[part], row).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(same(orig, &back), "line {}\n orig {}\n back {}", line, lines[line], text);
        }
    }
}
