//! The read endpoints: SQL, traces and saved queries, each recorded in the
//! caller's tenant's audit trail before it runs.
//!
//! JSON answers are documents: rows up to the row cap, then
//! `truncated: true`, and the query is stopped there. NDJSON, CSV and Arrow
//! IPC are streamed: each batch is encoded and sent as DataFusion produces
//! it, so a large result is never held whole; they are bounded by the query
//! timeout, not the row cap. An error after the first bytes went out ends
//! the stream early (the client sees a broken chunked body, the audit
//! trail and the log the reason).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_query::audit::{Entry, Outcome, Ticket};
use weft_query::format;
use weft_query::saved;
use weft_query::{QueryOutput, QueryStream, Reader, ScalarValue};

use crate::auth::{Caller, Role};
use crate::{ApiError, AppState, Tenant};

/// The formats the query endpoints answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Ndjson,
    Csv,
    Arrow,
}

fn answer_format(f: Option<&str>) -> Result<Answer, weft_query::Error> {
    Ok(match f.unwrap_or("json") {
        "json" => Answer::Json,
        "ndjson" => Answer::Ndjson,
        "csv" => Answer::Csv,
        "arrow" => Answer::Arrow,
        other => {
            return Err(weft_query::Error::BadParam(format!(
                "unknown format {other:?}: use json, ndjson, csv or arrow"
            )));
        }
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueryRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
    /// `$name` parameters, bound as values.
    #[serde(default)]
    params: HashMap<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueryParams {
    sql: String,
    format: Option<String>,
}

fn param_value(v: &Value) -> Result<ScalarValue, weft_query::Error> {
    Ok(match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        _ => {
            return Err(weft_query::Error::BadParam(
                "parameters must be strings, numbers, booleans or null".into(),
            ));
        }
    })
}

fn reader(caller: &Caller) -> Reader {
    if caller.role == Role::Admin {
        Reader::Admin
    } else {
        Reader::Query
    }
}

fn entry(caller: &Caller, endpoint: String, statement: &str, params: Option<Value>) -> Entry {
    Entry {
        token_id: caller.token_id.clone(),
        tenant: Some(caller.tenant.clone()),
        endpoint,
        statement: Some(statement.to_owned()),
        params,
    }
}

/// Writes the start record (off the async threads: it syncs to disk).
/// When it cannot be written the lookup does not run (503).
async fn begin(tenant: &Tenant, entry: Entry) -> Result<Ticket, ApiError> {
    let audit = Arc::clone(tenant.engine.audit());
    tokio::task::spawn_blocking(move || audit.begin(entry))
        .await
        .map_err(|e| ApiError(weft_query::Error::Internal(e.to_string())))?
        .map_err(ApiError)
}

fn count(state: &AppState, r: &Result<(), &weft_query::Error>, elapsed_micros: u64) {
    let m = &state.metrics;
    match r {
        Ok(()) => {
            m.queries_ok.fetch_add(1, Ordering::Relaxed);
            m.query_micros.fetch_add(elapsed_micros, Ordering::Relaxed);
        }
        Err(e) if e.is_client_error() => {
            m.queries_client_error.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            m.queries_server_error.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes a ticket's end record off the async threads (it syncs to disk).
async fn finish(
    ticket: Ticket,
    outcome: Outcome,
    rows: Option<u64>,
    bytes: Option<u64>,
    error: Option<String>,
) {
    let write = move || ticket.finish(outcome, rows, bytes, error.as_deref());
    if let Err(e) = tokio::task::spawn_blocking(write).await {
        tracing::error!(error = %e, "audit end record task failed");
    }
}

/// Ends `ticket` with the error and answers it.
async fn failed(state: &AppState, ticket: Ticket, e: weft_query::Error) -> ApiError {
    count(state, &Err(&e), 0);
    finish(ticket, Outcome::of(&e), None, None, Some(e.to_string())).await;
    ApiError(e)
}

/// Runs one statement for `caller` and answers it in `fmt`: the shared path
/// of `POST`/`GET /v1/query` and saved queries.
#[allow(clippy::too_many_arguments)]
async fn run(
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    caller: &Caller,
    endpoint: String,
    sql: &str,
    params: Result<HashMap<String, ScalarValue>, weft_query::Error>,
    shown: Option<Value>,
    fmt: Option<&str>,
) -> Result<Response, ApiError> {
    let ticket = begin(&tenant, entry(caller, endpoint, sql, shown)).await?;
    let fmt = match answer_format(fmt) {
        Ok(f) => f,
        Err(e) => return Err(failed(&state, ticket, e).await),
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => return Err(failed(&state, ticket, e).await),
    };
    let stream = match tenant.engine.stream(reader(caller), sql, params).await {
        Ok(s) => s,
        Err(e) => return Err(failed(&state, ticket, e).await),
    };
    match fmt {
        Answer::Json => json_answer(&state, stream, ticket).await,
        streamed => streamed_answer(state, stream, ticket, streamed).await,
    }
}

/// Collects up to the row cap (one more row tells whether it was reached)
/// and stops the query there.
async fn json_answer(
    state: &AppState,
    mut stream: QueryStream,
    ticket: Ticket,
) -> Result<Response, ApiError> {
    let cap = state.max_rows;
    let mut batches = Vec::new();
    let mut rows = 0;
    while rows <= cap {
        match stream.next().await {
            None => break,
            Some(Ok(b)) => {
                let keep = b.num_rows().min(cap + 1 - rows);
                rows += keep;
                batches.push(b.slice(0, keep));
            }
            Some(Err(e)) => return Err(failed(state, ticket, e).await),
        }
    }
    let out = QueryOutput {
        schema: Arc::clone(&stream.schema),
        batches,
        elapsed: stream.elapsed(),
        bytes_scanned: stream.bytes_scanned(),
    };
    count(state, &Ok(()), out.elapsed.as_micros() as u64);
    let doc = format::json_document(&out, cap);
    finish(
        ticket,
        Outcome::Ok,
        Some(rows.min(cap) as u64),
        Some(out.bytes_scanned),
        None,
    )
    .await;
    Ok(Json(doc).into_response())
}

/// Encodes batches as they come.
enum Encoder {
    Ndjson,
    Csv { header: bool },
    Arrow(Box<StreamWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(fmt: Answer, schema: &SchemaRef) -> Result<(Self, Vec<u8>), weft_query::Error> {
        let internal = |e: arrow::error::ArrowError| weft_query::Error::Internal(e.to_string());
        Ok(match fmt {
            Answer::Ndjson | Answer::Json => (Encoder::Ndjson, Vec::new()),
            Answer::Csv => {
                // Nested values have no CSV form: say so before the 200.
                if let Some(f) = schema.fields().iter().find(|f| f.data_type().is_nested()) {
                    return Err(weft_query::Error::BadParam(format!(
                        "column {:?} is a {}, which CSV cannot hold: use format json, ndjson or arrow",
                        f.name(),
                        format::type_name(f.data_type())
                    )));
                }
                (Encoder::Csv { header: true }, Vec::new())
            }
            Answer::Arrow => {
                let mut w = StreamWriter::try_new(Vec::new(), schema).map_err(internal)?;
                // The schema message goes out before any row.
                let head = std::mem::take(w.get_mut());
                (Encoder::Arrow(Box::new(w)), head)
            }
        })
    }

    fn batch(&mut self, schema: &SchemaRef, b: &RecordBatch) -> Result<Vec<u8>, weft_query::Error> {
        let internal = |e: arrow::error::ArrowError| weft_query::Error::Internal(e.to_string());
        match self {
            Encoder::Ndjson => {
                let mut s = String::new();
                format::ndjson_rows(schema, b, &mut s);
                Ok(s.into_bytes())
            }
            Encoder::Csv { header } => {
                let mut buf = Vec::new();
                let b = format::normalize_for_text(b)?;
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .build(&mut buf);
                w.write(&b).map_err(internal)?;
                drop(w);
                *header = false;
                Ok(buf)
            }
            Encoder::Arrow(w) => {
                w.write(b).map_err(internal)?;
                Ok(std::mem::take(w.get_mut()))
            }
        }
    }

    /// What closes the stream: a CSV header when no row came, the IPC
    /// end-of-stream marker.
    fn finish(&mut self, schema: &SchemaRef) -> Result<Vec<u8>, weft_query::Error> {
        match self {
            Encoder::Csv { header: true } => {
                self.batch(schema, &RecordBatch::new_empty(Arc::clone(schema)))
            }
            Encoder::Arrow(w) => {
                w.finish()
                    .map_err(|e| weft_query::Error::Internal(e.to_string()))?;
                Ok(std::mem::take(w.get_mut()))
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// A streamed answer under way.
struct Streamer {
    state: Arc<AppState>,
    stream: QueryStream,
    ticket: Option<Ticket>,
    encoder: Encoder,
    /// The first chunk (Arrow's schema message), sent before any batch.
    head: Option<Vec<u8>>,
    /// The first batch, taken before the answer's status was chosen.
    first: Option<RecordBatch>,
    done: bool,
}

impl Streamer {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if let Some(head) = self.head.take().filter(|h| !h.is_empty()) {
            return Some(Ok(Bytes::from(head)));
        }
        while !self.done {
            let next = match self.first.take() {
                Some(b) => Some(Ok(b)),
                None => self.stream.next().await,
            };
            let step = match next {
                Some(Ok(b)) if b.num_rows() == 0 => continue,
                Some(Ok(b)) => self.encoder.batch(&self.stream.schema, &b),
                None => {
                    self.done = true;
                    match self.encoder.finish(&self.stream.schema) {
                        Ok(tail) => {
                            self.end(Ok(())).await;
                            Ok(tail)
                        }
                        Err(e) => Err(e),
                    }
                }
                Some(Err(e)) => Err(e),
            };
            match step {
                Ok(chunk) if chunk.is_empty() => continue,
                Ok(chunk) => return Some(Ok(Bytes::from(chunk))),
                Err(e) => {
                    self.done = true;
                    tracing::warn!(error = %e, rows = self.stream.rows(), "streamed query failed after its answer began");
                    self.end(Err(&e)).await;
                    return Some(Err(std::io::Error::other(e.to_string())));
                }
            }
        }
        None
    }

    async fn end(&mut self, r: Result<(), &weft_query::Error>) {
        count(&self.state, &r, self.stream.elapsed().as_micros() as u64);
        if let Some(t) = self.ticket.take() {
            let rows = Some(self.stream.rows());
            let bytes = Some(self.stream.bytes_scanned());
            match r {
                Ok(()) => finish(t, Outcome::Ok, rows, bytes, None).await,
                Err(e) => finish(t, Outcome::of(e), rows, bytes, Some(e.to_string())).await,
            }
        }
    }
}

impl Drop for Streamer {
    /// The client went away mid-answer: the query stops here, and the trail
    /// says how far it got (written on the blocking pool: it syncs to disk).
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let rows = self.stream.rows();
            tracing::info!(rows, "client left a streamed answer; query cancelled");
            let bytes = self.stream.bytes_scanned();
            let write = move || t.finish(Outcome::Cancelled, Some(rows), Some(bytes), None);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(write)),
                Err(_) => write(),
            }
        }
    }
}

/// Streams the answer. The first batch is awaited before the status is
/// sent, so a query that fails before producing rows (most timeouts and
/// memory limits) is still a 400 with its reason.
async fn streamed_answer(
    state: Arc<AppState>,
    mut stream: QueryStream,
    ticket: Ticket,
    fmt: Answer,
) -> Result<Response, ApiError> {
    let first = loop {
        match stream.next().await {
            Some(Ok(b)) if b.num_rows() == 0 => continue,
            Some(Ok(b)) => break Some(b),
            None => break None,
            Some(Err(e)) => return Err(failed(&state, ticket, e).await),
        }
    };
    let (encoder, head) = match Encoder::new(fmt, &stream.schema) {
        Ok(x) => x,
        Err(e) => return Err(failed(&state, ticket, e).await),
    };
    let content_type = match fmt {
        Answer::Csv => "text/csv; charset=utf-8",
        Answer::Arrow => "application/vnd.apache.arrow.stream",
        _ => "application/x-ndjson",
    };
    let streamer = Streamer {
        state,
        stream,
        ticket: Some(ticket),
        encoder,
        head: Some(head),
        done: false,
        first,
    };
    let body = futures::stream::unfold(streamer, |mut s| async move {
        s.next_chunk().await.map(|chunk| (chunk, s))
    });
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

fn bound(
    params: &HashMap<String, Value>,
) -> Result<HashMap<String, ScalarValue>, weft_query::Error> {
    params
        .iter()
        .map(|(k, v)| Ok((k.clone(), param_value(v)?)))
        .collect()
}

pub(crate) async fn post_query(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Json(req): Json<QueryRequest>,
) -> Result<Response, ApiError> {
    let shown = (!req.params.is_empty()).then(|| json!(req.params));
    let params = bound(&req.params);
    run(
        state,
        tenant,
        &caller,
        "POST /v1/query".into(),
        &req.sql,
        params,
        shown,
        req.format.as_deref(),
    )
    .await
}

pub(crate) async fn get_query(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Query(q): Query<QueryParams>,
) -> Result<Response, ApiError> {
    run(
        state,
        tenant,
        &caller,
        "GET /v1/query".into(),
        &q.sql,
        Ok(HashMap::new()),
        None,
        q.format.as_deref(),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TraceParams {
    /// Lines of context around each of the request's lines.
    #[serde(default)]
    context: usize,
}

pub(crate) async fn get_trace(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Path(id): Path<String>,
    Query(p): Query<TraceParams>,
) -> Result<Response, ApiError> {
    state.metrics.traces.fetch_add(1, Ordering::Relaxed);
    let shown = (p.context > 0).then(|| json!({ "context": p.context }));
    let ticket = begin(&tenant, entry(&caller, "GET /v1/trace".into(), &id, shown)).await?;
    let t = match tenant.engine.trace_with_context(&id, p.context).await {
        Ok(t) => t,
        Err(e) => return Err(failed(&state, ticket, e).await),
    };
    finish(
        ticket,
        Outcome::Ok,
        Some(t.line_count as u64),
        Some(t.bytes_scanned),
        None,
    )
    .await;
    let status = if t.lines.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    Ok((status, Json(t)).into_response())
}

pub(crate) async fn list_queries(State(state): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = state
        .saved
        .values()
        .map(|q| json!({"name": q.name, "purpose": q.purpose, "params": q.params}))
        .collect();
    Json(json!({"queries": list}))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SavedRequest {
    #[serde(default)]
    params: HashMap<String, Value>,
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn run_saved(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Path(name): Path<String>,
    body: Option<Json<SavedRequest>>,
) -> Result<Response, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let endpoint = format!("POST /v1/queries/{name}");
    let shown = (!req.params.is_empty()).then(|| json!(req.params));
    let Some(q) = state.saved.get(&name).cloned() else {
        let e = weft_query::Error::UnknownQuery(name.clone());
        let audit = Arc::clone(tenant.engine.audit());
        let entry = entry(&caller, endpoint, &name, shown);
        let why = e.to_string();
        tokio::task::spawn_blocking(move || audit.refused(entry, Outcome::Refused, &why))
            .await
            .map_err(|e| ApiError(weft_query::Error::Internal(e.to_string())))?
            .map_err(ApiError)?;
        return Err(ApiError(e));
    };
    let given: HashMap<String, String> = req
        .params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    let params = saved::bind_all(&q, &given, weft_storage::now_nanos());
    run(
        Arc::clone(&state),
        tenant,
        &caller,
        endpoint,
        &q.sql,
        params,
        shown,
        req.format.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named_or_refused() {
        assert_eq!(answer_format(None).unwrap(), Answer::Json);
        assert_eq!(answer_format(Some("arrow")).unwrap(), Answer::Arrow);
        let e = answer_format(Some("table")).unwrap_err().to_string();
        assert!(e.contains("json, ndjson, csv or arrow"), "{e}");
    }
}
