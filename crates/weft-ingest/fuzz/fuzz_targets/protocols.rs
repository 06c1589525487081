//! The shipper protocol decoders (`weft_ingest::decode_body`) on arbitrary
//! bytes. Byte 0 picks the format (NDJSON, Elasticsearch bulk with and
//! without a path index, Loki protobuf and JSON, OTLP protobuf and JSON);
//! the rest is the body, as the daemon hands it over after decompression.
//!
//! Checks, besides "no panic and it terminates":
//! - every record is accounted for: `accepted` equals the rows of `logs` and
//!   `rejected` the rows of `rejects`; listed errors never outnumber rejects;
//! - a body refused whole (`fatal`) stores no record and is exactly one
//!   reject holding the whole body;
//! - Elasticsearch items: at most one per two lines plus one, and an item
//!   that failed has a reason.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use weft_ingest::{BodyOptions, Defaults, FieldRegistry, Format, NormalizerConfig, decode_body};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let format = match pick % 7 {
        0 => Format::Ndjson,
        1 => Format::EsBulk { index: None },
        2 => Format::EsBulk {
            index: Some("idx".into()),
        },
        3 => Format::LokiProtobuf,
        4 => Format::LokiJson,
        5 => Format::OtlpProtobuf,
        _ => Format::OtlpJson,
    };
    let options = BodyOptions {
        config: Arc::new(NormalizerConfig::default()),
        registry: Arc::new(FieldRegistry::new(64)),
        max_line: 512,
    };
    let out = decode_body(
        &format,
        body,
        &Arc::from("fuzz"),
        1_700_000_000_000_000_000,
        Defaults::default(),
        &options,
    );
    let logs = out.log_rows() as u64;
    let rejects = out.rejects.as_ref().map_or(0, |b| b.num_rows()) as u64;
    assert_eq!(out.counts.accepted, logs, "{format:?}");
    assert_eq!(out.counts.rejected, rejects, "{format:?}");
    assert!(out.errors.len() as u64 <= rejects);
    if out.fatal.is_some() && rejects > 0 {
        assert_eq!(logs, 0);
        assert_eq!(rejects, 1);
        let raw = out.rejects.as_ref().unwrap().column_by_name("raw").unwrap();
        let raw = raw
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .unwrap();
        assert_eq!(raw.value(0), body);
    }
    if let Format::EsBulk { .. } = format {
        let lines = body.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        assert!(out.items.len() as u64 <= lines);
        for item in &out.items {
            if let Some((kind, reason)) = &item.error {
                assert!(!kind.is_empty() && !reason.is_empty());
            }
        }
    }
});
