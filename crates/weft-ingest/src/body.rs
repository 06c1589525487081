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
    /// The records, one batch per service (see [`BatchBuilder::finish`]);
    /// empty when none was accepted.
    pub logs: Vec<RecordBatch>,
    pub rejects: Option<RecordBatch>,
    pub counts: Counts,
    /// The first refused lines (or items): [`MAX_LISTED_ERRORS`] of them,
    /// or every one for protocols that answer per item.
    pub errors: Vec<LineError>,
    /// Refused lines per reason label, all of them.
    pub reasons: Vec<(&'static str, u64)>,
    /// Set when the body as a whole could not be decoded (bad protobuf, a
    /// malformed bulk action line): nothing of it became a record and the
    /// whole body is one row of `rejects`.
    pub fatal: Option<String>,
    /// Per-item results, for protocols that answer item by item
    /// (Elasticsearch bulk); empty otherwise.
    pub items: Vec<crate::protocol::BulkItem>,
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
    let mut sink = Sink::new(source, observed_at, defaults, options, MAX_LISTED_ERRORS);
    for line in Lines::new(body, 1, options.max_line) {
        match line.too_long {
            Some(len) => {
                let reason = Reason::TooLong {
                    len,
                    max: options.max_line,
                };
                sink.reject(line.number, line.bytes, reason);
            }
            None => {
                sink.push(line.number, line.bytes);
            }
        }
    }
    sink.finish()
}

/// What [`Sink::vet`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Made {
    /// Within the limits: go on and push it.
    Fits,
    /// Over the line limit: already a reject.
    Refused,
    /// The body made more record text than its budget: refuse it whole.
    OverBudget,
}

/// A [`BatchBuilder`] that also keeps the answer's bookkeeping: the listed
/// errors and the count per reason. Every decoder writes through one.
pub(crate) struct Sink<'a> {
    pub(crate) builder: BatchBuilder,
    source: &'a Arc<str>,
    errors: Vec<LineError>,
    reasons: Vec<(&'static str, u64)>,
    max_errors: usize,
    /// Bytes of record text a decoder may still make (Loki and OTLP copy
    /// labels and resource attributes into every record, so a small body
    /// could otherwise ask for any amount of work).
    budget: u64,
    max_line: usize,
    pub(crate) fatal: Option<String>,
    pub(crate) items: Vec<crate::protocol::BulkItem>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(
        source: &'a Arc<str>,
        observed_at: i64,
        defaults: Defaults,
        options: &BodyOptions,
        max_errors: usize,
    ) -> Self {
        let mut builder =
            BatchBuilder::new(Arc::clone(&options.config), Arc::clone(&options.registry));
        builder.set_defaults(defaults);
        builder.set_observed_at(observed_at);
        Self {
            builder,
            source,
            errors: Vec::new(),
            reasons: Vec::new(),
            max_errors,
            budget: u64::MAX,
            max_line: options.max_line,
            fatal: None,
            items: Vec::new(),
        }
    }

    /// Allows `bytes` of made-up record text in all; see [`Sink::spend`].
    pub(crate) fn set_budget(&mut self, bytes: u64) {
        self.budget = bytes;
    }

    /// Takes `bytes` from the budget; false when it is spent, and the
    /// caller must refuse the body.
    pub(crate) fn spend(&mut self, bytes: usize) -> bool {
        match self.budget.checked_sub(bytes as u64) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// Vets a record a decoder wrote (not one the client sent as it is):
    /// it must fit the body's budget and the line limit. One over the limit
    /// is refused like a long line, its first `max_line` bytes kept.
    pub(crate) fn vet(&mut self, line: u64, text: &str) -> Made {
        if !self.spend(text.len()) {
            return Made::OverBudget;
        }
        if text.len() > self.max_line {
            let reason = Reason::TooLong {
                len: text.len(),
                max: self.max_line,
            };
            self.reject(line, &text.as_bytes()[..self.max_line], reason);
            return Made::Refused;
        }
        Made::Fits
    }

    /// Normalizes one record; a refused one is a reject numbered `line`.
    pub(crate) fn push(&mut self, line: u64, raw: &[u8]) -> Option<Reason> {
        let reason = self.builder.push_line(self.source, line, raw)?;
        self.note(line, reason.clone());
        Some(reason)
    }

    /// Stores `raw` as a reject numbered `line`, refused for `reason`.
    pub(crate) fn reject(&mut self, line: u64, raw: &[u8], reason: Reason) {
        self.builder.reject(self.source, line, raw, reason.clone());
        self.note(line, reason);
    }

    /// The whole body failed to decode: it becomes one reject, and nothing
    /// pushed before stays a record.
    pub(crate) fn fail(&mut self, raw: &[u8], label: &'static str, detail: String) {
        // Drop whatever was built so far: a body is taken whole or not at all.
        let _ = self.builder.finish();
        self.errors.clear();
        self.reasons.clear();
        self.items.clear();
        self.reject(
            1,
            raw,
            Reason::Protocol {
                label,
                detail: detail.clone(),
            },
        );
        self.fatal = Some(detail);
    }

    fn note(&mut self, line: u64, reason: Reason) {
        match self.reasons.iter_mut().find(|(l, _)| *l == reason.label()) {
            Some((_, n)) => *n += 1,
            None => self.reasons.push((reason.label(), 1)),
        }
        if self.errors.len() < self.max_errors {
            self.errors.push(LineError { line, reason });
        }
    }

    pub(crate) fn finish(mut self) -> BodyBatch {
        let counts = self.builder.counts();
        let (logs, rejects) = self.builder.finish();
        BodyBatch {
            logs,
            rejects,
            counts,
            errors: self.errors,
            reasons: self.reasons,
            fatal: self.fatal,
            items: self.items,
        }
    }
}

impl BodyBatch {
    /// Rows of `logs`, over all its batches.
    pub fn log_rows(&self) -> usize {
        self.logs.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Batches of one builder (one per service, see [`BatchBuilder::finish`])
/// as one batch, in their order; a column some lack is null in their rows.
/// `None` for no batches or when two give one column different types.
pub fn concat_logs(parts: &[RecordBatch]) -> Option<RecordBatch> {
    if parts.is_empty() {
        return None;
    }
    let schema = Arc::new(
        arrow::datatypes::Schema::try_merge(parts.iter().map(|b| b.schema().as_ref().clone()))
            .ok()?,
    );
    let conformed = parts
        .iter()
        .map(|b| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| match b.column_by_name(f.name()) {
                    Some(c) => Arc::clone(c),
                    None => arrow::array::new_null_array(f.data_type(), b.num_rows()),
                })
                .collect();
            RecordBatch::try_new(Arc::clone(&schema), columns).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    arrow::compute::concat_batches(&schema, &conformed).ok()
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
        assert_eq!(out.log_rows(), 2);
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
