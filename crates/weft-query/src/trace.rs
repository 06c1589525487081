//! Trace reconstruction: one request across every service, by correlation id,
//! with no time range.
//!
//! The rows come from the lookup reader ([`crate::lookup`]) when the id
//! indexes name them, else from a plain `correlation_id = $id` query (the
//! segments table prunes by the id index, Parquet by bloom filter and page
//! index). The answer adds what an investigator asks next: per-service summary, the span
//! tree (where span and parent ids allow), total duration and the largest
//! gaps between consecutive lines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType};
use datafusion::common::ScalarValue;
use serde::Serialize;
use serde_json::Value;
use weft_ingest::model::{self, LEVELS};
use weft_ingest::rebuild::rebuild;

use crate::lookup::Lookup;
use crate::{Engine, Result};

/// One line of the request.
#[derive(Debug, Clone, Serialize)]
pub struct TraceLine {
    /// RFC 3339 UTC.
    pub timestamp: String,
    #[serde(skip)]
    pub ts_ns: i64,
    /// Milliseconds since the request's first line.
    pub offset_ms: f64,
    pub service: Option<String>,
    pub level: Option<String>,
    pub message: Option<String>,
    pub span_id: Option<String>,
    pub host: Option<String>,
    /// The original record, rebuilt from its row.
    pub fields: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    pub service: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub lines: usize,
    pub worst_level: Option<String>,
    pub errors: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpanNode {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub services: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub lines: usize,
    pub children: Vec<SpanNode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// Index (in `lines`) of the line after the gap.
    pub before_line: usize,
    pub gap_ms: f64,
    pub from_service: Option<String>,
    pub to_service: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub id: String,
    pub line_count: usize,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub duration_ms: f64,
    pub services: Vec<ServiceSummary>,
    pub spans: Vec<SpanNode>,
    pub gaps: Vec<Gap>,
    pub lines: Vec<TraceLine>,
    /// With `?context=N`: lines around the request's own, from the same
    /// service and host, that are not part of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    pub elapsed_ms: f64,
    /// Bytes read from segment files (for the audit trail).
    #[serde(skip)]
    pub bytes_scanned: u64,
}

/// The neighbourhood of a request's lines.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// Lines asked for on each side of each request line.
    pub n: usize,
    /// True when the request had more than [`CONTEXT_MAX_LINES`] lines and
    /// only the first ones got context.
    pub partial: bool,
    /// In time order, each once even when it borders several request lines.
    pub lines: Vec<ContextLine>,
}

/// A line near the request's own.
#[derive(Debug, Clone, Serialize)]
pub struct ContextLine {
    #[serde(flatten)]
    pub line: TraceLine,
    /// Index (in `lines`) of the request line it is nearest to.
    pub near: usize,
}

/// Most lines asked for on each side of a request line.
pub const CONTEXT_MAX_N: usize = 100;
/// Most request lines that get context.
pub const CONTEXT_MAX_LINES: usize = 200;

/// Fields that may name a line's parent span.
const PARENT_FIELDS: &[&str] = &["parent_span_id", "parentSpanId", "parent_id", "parentId"];

/// How many gaps to report.
const GAPS: usize = 5;

fn rfc3339(ns: i64) -> String {
    let mut s = String::new();
    weft_ingest::time::format_rfc3339(ns, &mut s);
    s
}

fn text_col(b: &RecordBatch, name: &str, row: usize) -> Option<String> {
    let c = b.column_by_name(name)?;
    if c.is_null(row) {
        return None;
    }
    let c = cast(&c.slice(row, 1), &DataType::Utf8).ok()?;
    Some(c.as_string::<i32>().value(0).to_owned())
}

fn level_rank(l: &Option<String>) -> Option<usize> {
    l.as_deref()
        .and_then(|l| LEVELS.iter().position(|x| *x == l))
}

/// Builds the trace answer from the rows of one request.
pub fn assemble(id: &str, batches: &[RecordBatch], elapsed_ms: f64) -> Trace {
    let mut lines = read_lines(batches);
    let first = lines.first().map(|l| l.ts_ns);
    let last = lines.last().map(|l| l.ts_ns);
    if let Some(f) = first {
        for l in &mut lines {
            l.offset_ms = (l.ts_ns - f) as f64 / 1e6;
        }
    }

    // Per service, in order of first appearance.
    let mut services: Vec<ServiceSummary> = Vec::new();
    let mut seen: Vec<(i64, i64)> = Vec::new();
    for l in &lines {
        let i = match services.iter().position(|s| s.service == l.service) {
            Some(i) => i,
            None => {
                services.push(ServiceSummary {
                    service: l.service.clone(),
                    first_seen: String::new(),
                    last_seen: String::new(),
                    lines: 0,
                    worst_level: None,
                    errors: 0,
                });
                seen.push((l.ts_ns, l.ts_ns));
                services.len() - 1
            }
        };
        let s = &mut services[i];
        s.lines += 1;
        seen[i].1 = seen[i].1.max(l.ts_ns);
        if level_rank(&l.level) > level_rank(&s.worst_level) {
            s.worst_level = l.level.clone();
        }
        if level_rank(&l.level) >= Some(4) {
            s.errors += 1;
        }
    }
    for (s, (f, l)) in services.iter_mut().zip(&seen) {
        s.first_seen = rfc3339(*f);
        s.last_seen = rfc3339(*l);
    }

    let spans = span_tree(&lines);

    let mut gaps: Vec<Gap> = lines
        .windows(2)
        .enumerate()
        .map(|(i, w)| Gap {
            before_line: i + 1,
            gap_ms: (w[1].ts_ns - w[0].ts_ns) as f64 / 1e6,
            from_service: w[0].service.clone(),
            to_service: w[1].service.clone(),
        })
        .collect();
    gaps.sort_by(|a, b| {
        b.gap_ms
            .total_cmp(&a.gap_ms)
            .then(a.before_line.cmp(&b.before_line))
    });
    gaps.truncate(GAPS);

    Trace {
        id: id.to_owned(),
        line_count: lines.len(),
        first_seen: first.map(rfc3339),
        last_seen: last.map(rfc3339),
        duration_ms: match (first, last) {
            (Some(f), Some(l)) => (l - f) as f64 / 1e6,
            _ => 0.0,
        },
        services,
        spans,
        gaps,
        lines,
        context: None,
        elapsed_ms,
        bytes_scanned: 0,
    }
}

/// The lines in `batches`, in time order (ties by service, then message,
/// so the answer is stable); `offset_ms` is left at 0.
fn read_lines(batches: &[RecordBatch]) -> Vec<TraceLine> {
    let mut lines = Vec::new();
    for b in batches {
        let ts = b
            .column_by_name(model::TIMESTAMP)
            .and_then(|c| cast(c, &model::timestamp_type()).ok());
        for r in 0..b.num_rows() {
            let ts_ns = ts
                .as_ref()
                .map(|c| c.as_primitive::<TimestampNanosecondType>().value(r))
                .unwrap_or(0);
            let fields = rebuild(b, r)
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null);
            lines.push(TraceLine {
                timestamp: rfc3339(ts_ns),
                ts_ns,
                offset_ms: 0.0,
                service: text_col(b, model::SERVICE, r),
                level: text_col(b, model::LEVEL, r),
                message: text_col(b, model::MESSAGE, r),
                span_id: text_col(b, model::SPAN_ID, r),
                host: text_col(b, model::HOST, r),
                fields,
            });
        }
    }
    lines.sort_by(|a, b| (a.ts_ns, &a.service, &a.message).cmp(&(b.ts_ns, &b.service, &b.message)));
    lines
}

fn parent_of(l: &TraceLine) -> Option<String> {
    PARENT_FIELDS.iter().find_map(|f| match l.fields.get(*f) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// Spans from the lines' span ids; a span whose parent is another span of
/// the request hangs under it, the rest are roots. Roots and children are in
/// order of first appearance.
fn span_tree(lines: &[TraceLine]) -> Vec<SpanNode> {
    let mut order: Vec<String> = Vec::new();
    let mut nodes: HashMap<String, (SpanNode, i64, i64)> = HashMap::new();
    for l in lines {
        let Some(span) = &l.span_id else { continue };
        let entry = nodes.entry(span.clone()).or_insert_with(|| {
            order.push(span.clone());
            (
                SpanNode {
                    span_id: span.clone(),
                    parent_span_id: None,
                    services: Vec::new(),
                    first_seen: String::new(),
                    last_seen: String::new(),
                    lines: 0,
                    children: Vec::new(),
                },
                l.ts_ns,
                l.ts_ns,
            )
        });
        entry.0.lines += 1;
        entry.2 = entry.2.max(l.ts_ns);
        if let Some(s) = &l.service
            && !entry.0.services.contains(s)
        {
            entry.0.services.push(s.clone());
        }
        if entry.0.parent_span_id.is_none() {
            entry.0.parent_span_id = parent_of(l).filter(|p| p != span);
        }
    }
    for (node, f, l) in nodes.values_mut() {
        node.first_seen = rfc3339(*f);
        node.last_seen = rfc3339(*l);
    }
    // Attach children to parents, deepest first, guarding against cycles.
    let mut children: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, span) in order.iter().enumerate() {
        let parent = nodes[span].0.parent_span_id.clone();
        match parent.and_then(|p| order.iter().position(|s| *s == p)) {
            Some(pi) if !is_ancestor(&nodes, &order, i, pi) => {
                children.entry(pi).or_default().push(span.clone())
            }
            _ => roots.push(span.clone()),
        }
    }
    fn build(
        span: &str,
        nodes: &mut HashMap<String, (SpanNode, i64, i64)>,
        children: &BTreeMap<usize, Vec<String>>,
        order: &[String],
    ) -> SpanNode {
        let i = order.iter().position(|s| s == span).expect("known span");
        let mut node = nodes.remove(span).expect("built once").0;
        for c in children.get(&i).into_iter().flatten() {
            node.children.push(build(c, nodes, children, order));
        }
        node
    }
    roots
        .iter()
        .map(|r| build(r, &mut nodes, &children, &order))
        .collect()
}

/// True when span `i` is an ancestor of span `p` (attaching `i` under `p` would loop).
fn is_ancestor(
    nodes: &HashMap<String, (SpanNode, i64, i64)>,
    order: &[String],
    i: usize,
    p: usize,
) -> bool {
    let mut cur = Some(p);
    let mut steps = 0;
    while let Some(c) = cur {
        if c == i {
            return true;
        }
        steps += 1;
        if steps > order.len() {
            return true;
        }
        cur = nodes[&order[c]]
            .0
            .parent_span_id
            .as_ref()
            .and_then(|pp| order.iter().position(|s| s == pp));
    }
    false
}

/// The `n` lines before and after one request line, from its service and
/// host, that do not carry the request's id.
fn context_sql(n: usize) -> String {
    let side = |op: &str, order: &str| {
        format!(
            "(SELECT * FROM logs \
             WHERE (service IS NOT DISTINCT FROM CAST($service AS VARCHAR)) \
             AND (host IS NOT DISTINCT FROM CAST($host AS VARCHAR)) AND timestamp {op} $ts \
             AND (correlation_id IS DISTINCT FROM $id) ORDER BY timestamp {order} LIMIT {n})"
        )
    };
    format!("{} UNION ALL {}", side("<=", "DESC"), side(">=", "ASC"))
}

impl Engine {
    /// The request with correlation id `id`, across all services and segments.
    pub async fn trace(&self, id: &str) -> Result<Trace> {
        self.trace_with_context(id, 0).await
    }

    /// [`Engine::trace`], plus the `context` lines around each request line
    /// when `context > 0` (at most [`CONTEXT_MAX_N`]).
    pub async fn trace_with_context(&self, id: &str, context: usize) -> Result<Trace> {
        if context > CONTEXT_MAX_N {
            return Err(crate::Error::BadParam(format!(
                "context must be at most {CONTEXT_MAX_N} lines, not {context}"
            )));
        }
        // The lookup and its context lookups share one timeout.
        let deadline = tokio::time::Instant::now() + self.options().timeout();
        let started = std::time::Instant::now();
        let (batches, bytes_scanned) = self.request_rows(id, deadline).await?;
        let mut t = assemble(id, &batches, 0.0);
        t.bytes_scanned = bytes_scanned;
        if context > 0 {
            let c = self.context_lines(id, &t, context, deadline).await?;
            t.bytes_scanned += c.1;
            t.context = Some(c.0);
        }
        t.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(t)
    }

    /// The rows with correlation id `id` and the bytes read for them: by
    /// the lookup reader when the id indexes name the rows, else by SQL.
    async fn request_rows(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<RecordBatch>, u64)> {
        self.data.reload()?;
        let snapshot = self.data.snapshot();
        if let Some(lookup) = Lookup::plan(self.root(), &snapshot, &self.ids, id)? {
            drop(snapshot);
            let footers = Arc::clone(&self.footers);
            let options = self.options().clone();
            let until = deadline.into_std();
            let read = tokio::task::spawn_blocking(move || {
                lookup.read(&footers, until, options.timeout(), options.memory_limit)
            });
            let found = match tokio::time::timeout_at(deadline, read).await {
                Ok(joined) => joined.map_err(|e| crate::Error::Internal(e.to_string()))??,
                Err(_) => return Err(crate::Error::Timeout(self.options().timeout())),
            };
            return Ok((found.batches, found.bytes_scanned));
        }
        let params = HashMap::from([("id".to_owned(), ScalarValue::Utf8(Some(id.to_owned())))]);
        let out = self
            .stream_until(
                crate::Reader::Query,
                "SELECT * FROM logs WHERE correlation_id = $id",
                params,
                deadline,
            )
            .await?
            .collect()
            .await?;
        Ok((out.batches, out.bytes_scanned))
    }

    async fn context_lines(
        &self,
        id: &str,
        t: &Trace,
        n: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(Context, u64)> {
        let started = std::time::Instant::now();
        let first = t.lines.first().map_or(0, |l| l.ts_ns);
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        let mut bytes = 0;
        let text = |v: &Option<String>| ScalarValue::Utf8(v.clone());
        let sql = context_sql(n);
        for (i, line) in t.lines.iter().enumerate().take(CONTEXT_MAX_LINES) {
            let params = HashMap::from([
                ("id".to_owned(), ScalarValue::Utf8(Some(id.to_owned()))),
                ("service".to_owned(), text(&line.service)),
                ("host".to_owned(), text(&line.host)),
                (
                    "ts".to_owned(),
                    ScalarValue::TimestampNanosecond(Some(line.ts_ns), Some("UTC".into())),
                ),
            ]);
            let out = self
                .stream_until(crate::Reader::Query, &sql, params, deadline)
                .await?
                .collect()
                .await?;
            bytes += out.bytes_scanned;
            for mut l in read_lines(&out.batches) {
                // A row at the same instant can border two request lines.
                if seen.insert((l.ts_ns, l.fields.to_string())) {
                    l.offset_ms = (l.ts_ns - first) as f64 / 1e6;
                    found.push(ContextLine { line: l, near: i });
                }
            }
        }
        found.sort_by(|a, b| {
            (a.line.ts_ns, a.near, &a.line.message).cmp(&(b.line.ts_ns, b.near, &b.line.message))
        });
        tracing::debug!(
            lines = found.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "trace context"
        );
        Ok((
            Context {
                n,
                partial: t.lines.len() > CONTEXT_MAX_LINES,
                lines: found,
            },
            bytes,
        ))
    }
}

/// The trace as a readable timeline.
pub fn render(t: &Trace) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if t.lines.is_empty() {
        let _ = writeln!(s, "no lines with correlation id {:?}", t.id);
        return s;
    }
    let _ = writeln!(
        s,
        "trace {}: {} lines, {} services, {:.3} ms, {} → {}",
        t.id,
        t.line_count,
        t.services.len(),
        t.duration_ms,
        t.first_seen.as_deref().unwrap_or("?"),
        t.last_seen.as_deref().unwrap_or("?")
    );
    let width = t
        .services
        .iter()
        .map(|x| x.service.as_deref().unwrap_or("-").len())
        .max()
        .unwrap_or(1);
    let _ = writeln!(s);
    for l in &t.lines {
        let msg = l.message.clone().unwrap_or_else(|| {
            // No message: show the record itself, compactly.
            l.fields.to_string()
        });
        let _ = writeln!(
            s,
            "{:>+10.3} ms  {:<width$}  {:<5}  {}",
            l.offset_ms,
            l.service.as_deref().unwrap_or("-"),
            l.level.as_deref().unwrap_or("-"),
            msg.replace('\n', "⏎ ")
        );
    }
    let _ = writeln!(s, "\nservices:");
    for x in &t.services {
        let _ = writeln!(
            s,
            "  {:<width$}  {:>4} lines  {:>3} errors  worst {:<5}  {} → {}",
            x.service.as_deref().unwrap_or("-"),
            x.lines,
            x.errors,
            x.worst_level.as_deref().unwrap_or("-"),
            x.first_seen,
            x.last_seen
        );
    }
    if !t.gaps.is_empty() {
        let _ = writeln!(s, "\nlargest gaps:");
        for g in &t.gaps {
            let _ = writeln!(
                s,
                "  {:>10.3} ms  before line {}  ({} → {})",
                g.gap_ms,
                g.before_line + 1,
                g.from_service.as_deref().unwrap_or("-"),
                g.to_service.as_deref().unwrap_or("-")
            );
        }
    }
    if !t.spans.is_empty() {
        let _ = writeln!(s, "\nspans:");
        fn walk(s: &mut String, n: &SpanNode, depth: usize) {
            let _ = writeln!(
                s,
                "  {}{}  {} ({} lines)",
                "  ".repeat(depth),
                n.span_id,
                n.services.join(", "),
                n.lines
            );
            for c in &n.children {
                walk(s, c, depth + 1);
            }
        }
        for n in &t.spans {
            walk(&mut s, n, 0);
        }
    }
    s
}
