//! One whole NDJSON request body normalized at once: what the daemon does
//! with a shipper's batch, and again with the same bytes when it replays
//! its WAL (the receive time and defaults travel with the bytes, so replay
//! gives the same rows).

use std::sync::Arc;

use arrow::array::RecordBatch;
use weft_scan::lines::Lines;

use crate::normalize::{BatchBuilder, Counts, Defaults};
use crate::reject::Reason;
use crate::{FieldRegistry, NormalizerConfig};

/// The most per-line errors one answer lists; counts stay exact.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// A refused line of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: u64,
    pub reason: Reason,
}

/// What a body became.
#[derive(Debug)]
pub struct BodyBatch {
    pub logs: Option<RecordBatch>,
    pub rejects: Option<RecordBatch>,
    pub counts: Counts,
    /// The first [`MAX_LISTED_ERRORS`] refused lines.
    pub errors: Vec<LineError>,
    /// Refused lines per reason label, all of them.
    pub reasons: Vec<(&'static str, u64)>,
}

/// How to normalize a body.
#[derive(Debug, Clone)]
pub struct BodyOptions {
    pub config: Arc<NormalizerConfig>,
    pub registry: Arc<FieldRegistry>,
    pub max_line: usize,
}

/// Normalizes every line of `body`; refused lines go to the rejects batch
/// with `source` and their line number.
pub fn normalize_body(
    body: &[u8],
    source: &Arc<str>,
    observed_at: i64,
    defaults: Defaults,
    options: &BodyOptions,
) -> BodyBatch {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut builder = BatchBuilder::new(Arc::clone(&options.config), Arc::clone(&options.registry));
    builder.set_defaults(defaults);
    builder.set_observed_at(observed_at);
    let mut errors = Vec::new();
    let mut reasons: Vec<(&'static str, u64)> = Vec::new();
    for line in Lines::new(body, 1, options.max_line) {
        let reason = match line.too_long {
            Some(len) => {
                let reason = Reason::TooLong {
                    len,
                    max: options.max_line,
                };
                builder.reject(source, line.number, line.bytes, reason.clone());
                Some(reason)
            }
            None => builder.push_line(source, line.number, line.bytes),
        };
        if let Some(reason) = reason {
            match reasons.iter_mut().find(|(l, _)| *l == reason.label()) {
                Some((_, n)) => *n += 1,
                None => reasons.push((reason.label(), 1)),
            }
            if errors.len() < MAX_LISTED_ERRORS {
                errors.push(LineError {
                    line: line.number,
                    reason,
                });
            }
        }
    }
    let counts = builder.counts();
    let (logs, rejects) = builder.finish();
    BodyBatch {
        logs,
        rejects,
        counts,
        errors,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_line: usize) -> BodyOptions {
        BodyOptions {
            config: Arc::new(NormalizerConfig::default()),
            registry: Arc::new(FieldRegistry::new(1000)),
            max_line,
        }
    }

    #[test]
    fn a_body_keeps_good_lines_and_numbers_the_bad_ones() {
        let body = b"\xEF\xBB\xBF{\"msg\":\"a\"}\r\nnot json\n\n{\"msg\":\"b\"}\n[1]\n";
        let out = normalize_body(
            body,
            &Arc::from("test"),
            7,
            Defaults::default(),
            &options(64),
        );
        assert_eq!(out.counts.accepted, 2);
        assert_eq!(out.counts.rejected, 2);
        assert_eq!(out.logs.as_ref().unwrap().num_rows(), 2);
        assert_eq!(out.rejects.as_ref().unwrap().num_rows(), 2);
        let lines: Vec<u64> = out.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 5]);
        assert_eq!(out.reasons, vec![("not_json", 1), ("not_an_object", 1)]);
    }

    #[test]
    fn an_overlong_line_is_refused_with_its_length() {
        let body = format!("{{\"msg\":\"{}\"}}\n{{\"msg\":\"ok\"}}", "x".repeat(100));
        let out = normalize_body(
            body.as_bytes(),
            &Arc::from("t"),
            1,
            Defaults::default(),
            &options(50),
        );
        assert_eq!(out.counts.accepted, 1);
        assert_eq!(
            out.errors,
            vec![LineError {
                line: 1,
                reason: Reason::TooLong { len: 110, max: 50 }
            }]
        );
    }
}
