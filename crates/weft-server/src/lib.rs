//! weft-server: the HTTP surface of `weft serve`.
//!
//! A library: [`router`] builds the axum `Router` from an [`AppState`], and
//! tests drive it without a socket. Sits on top of `weft-query` (reads). The
//! ingest endpoints arrive with the WAL and write buffer (issue #4); until
//! then data comes in with `weft import` and this server answers questions
//! about it.
//!
//! Errors map to status codes in one place ([`ApiError`]): the caller's
//! mistakes are 400 with the reason, our own failures 500 with no internals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_query::format::{self, Format};
use weft_query::saved::{self, SavedQuery};
use weft_query::{Engine, QueryOutput, ScalarValue};

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub engine: Engine,
    pub saved: BTreeMap<String, SavedQuery>,
    /// Most rows a JSON answer carries before `truncated: true`.
    pub max_rows: usize,
    metrics: Metrics,
}

impl AppState {
    pub fn new(engine: Engine, saved: BTreeMap<String, SavedQuery>, max_rows: usize) -> Self {
        Self {
            engine,
            saved,
            max_rows,
            metrics: Metrics::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Metrics {
    queries_ok: AtomicU64,
    queries_client_error: AtomicU64,
    queries_server_error: AtomicU64,
    query_micros: AtomicU64,
    traces: AtomicU64,
}

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError(weft_query::Error);

impl From<weft_query::Error> for ApiError {
    fn from(e: weft_query::Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self.0 {
            weft_query::Error::UnknownQuery(_) => (StatusCode::NOT_FOUND, self.0.to_string()),
            weft_query::Error::Timeout(_) => (StatusCode::BAD_REQUEST, self.0.to_string()),
            e if e.is_client_error() => (StatusCode::BAD_REQUEST, e.to_string()),
            // Never leak internals in a 5xx body; the detail is for the operator.
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            ),
        };
        (status, Json(json!({"error": message}))).into_response()
    }
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(health_routes())
        .merge(query_routes())
        .with_state(state)
}

fn health_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        // Ready as soon as the data directory is open: there is no WAL to replay yet.
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
}

fn query_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/query", post(post_query).get(get_query))
        .route("/v1/trace/{id}", get(get_trace))
        .route("/v1/queries", get(list_queries))
        .route("/v1/queries/{name}", post(run_saved))
}

#[derive(Debug, Deserialize)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
    /// `$name` parameters, bound as values.
    #[serde(default)]
    params: HashMap<String, Value>,
}

fn param_value(v: &Value) -> Result<ScalarValue, ApiError> {
    Ok(match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        _ => {
            return Err(ApiError(weft_query::Error::BadParam(
                "parameters must be strings, numbers, booleans or null".into(),
            )));
        }
    })
}

async fn run(
    state: &AppState,
    sql: &str,
    params: HashMap<String, ScalarValue>,
) -> Result<QueryOutput, ApiError> {
    let r = state.engine.sql(sql, params).await;
    let m = &state.metrics;
    match &r {
        Ok(out) => {
            m.queries_ok.fetch_add(1, Ordering::Relaxed);
            m.query_micros
                .fetch_add(out.elapsed.as_micros() as u64, Ordering::Relaxed);
        }
        Err(e) if e.is_client_error() => {
            m.queries_client_error.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            m.queries_server_error.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(r?)
}

fn respond(state: &AppState, out: &QueryOutput, fmt: Option<&str>) -> Result<Response, ApiError> {
    let fmt: Format = match fmt.unwrap_or("json") {
        "table" => {
            return Err(ApiError(weft_query::Error::BadParam(
                "format must be json, ndjson or csv".into(),
            )));
        }
        f => f
            .parse()
            .map_err(|e: String| ApiError(weft_query::Error::BadParam(e)))?,
    };
    Ok(match fmt {
        Format::Json | Format::Table => {
            Json(format::json_document(out, state.max_rows)).into_response()
        }
        Format::Ndjson => {
            let mut s = String::new();
            for b in &out.batches {
                format::ndjson_rows(&out.schema, b, &mut s);
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], s).into_response()
        }
        Format::Csv => ([(header::CONTENT_TYPE, "text/csv")], format::csv(out)?).into_response(),
    })
}

async fn post_query(
    State(state): State<Arc<AppState>>,
    Json(req): Json<QueryRequest>,
) -> Result<Response, ApiError> {
    let params = req
        .params
        .iter()
        .map(|(k, v)| Ok((k.clone(), param_value(v)?)))
        .collect::<Result<_, ApiError>>()?;
    let out = run(&state, &req.sql, params).await?;
    respond(&state, &out, req.format.as_deref())
}

#[derive(Debug, Deserialize)]
struct QueryParams {
    sql: String,
    format: Option<String>,
}

async fn get_query(
    State(state): State<Arc<AppState>>,
    Query(q): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let out = run(&state, &q.sql, HashMap::new()).await?;
    respond(&state, &out, q.format.as_deref())
}

async fn get_trace(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.metrics.traces.fetch_add(1, Ordering::Relaxed);
    let t = state.engine.trace(&id).await?;
    let status = if t.lines.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    Ok((status, Json(t)).into_response())
}

async fn list_queries(State(state): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = state
        .saved
        .values()
        .map(|q| json!({"name": q.name, "purpose": q.purpose, "params": q.params}))
        .collect();
    Json(json!({"queries": list}))
}

#[derive(Debug, Default, Deserialize)]
struct SavedRequest {
    #[serde(default)]
    params: HashMap<String, Value>,
    #[serde(default)]
    format: Option<String>,
}

async fn run_saved(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Option<Json<SavedRequest>>,
) -> Result<Response, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let q = state
        .saved
        .get(&name)
        .ok_or_else(|| ApiError(weft_query::Error::UnknownQuery(name.clone())))?;
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
    let bound = saved::bind_all(q, &given, weft_storage::now_nanos())?;
    let out = run(&state, &q.sql, bound).await?;
    respond(&state, &out, req.format.as_deref())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    let manifest = weft_storage::Manifest::load(state.engine.root()).unwrap_or_default();
    let mut out = String::new();
    let mut line = |name: &str, help: &str, kind: &str, samples: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    line(
        "weft_queries_total",
        "SQL queries answered, by outcome.",
        "counter",
        &[
            ("{outcome=\"ok\"}", m.queries_ok.load(Ordering::Relaxed)),
            (
                "{outcome=\"client_error\"}",
                m.queries_client_error.load(Ordering::Relaxed),
            ),
            (
                "{outcome=\"server_error\"}",
                m.queries_server_error.load(Ordering::Relaxed),
            ),
        ],
    );
    line(
        "weft_query_duration_microseconds_total",
        "Time spent in successful queries.",
        "counter",
        &[("", m.query_micros.load(Ordering::Relaxed))],
    );
    line(
        "weft_trace_lookups_total",
        "Trace lookups by correlation id.",
        "counter",
        &[("", m.traces.load(Ordering::Relaxed))],
    );
    let mut counts = Vec::new();
    let mut bytes = Vec::new();
    let mut rows = Vec::new();
    let labels = ["{table=\"logs\"}", "{table=\"rejects\"}"];
    for (table, label) in [weft_storage::Table::Logs, weft_storage::Table::Rejects]
        .into_iter()
        .zip(labels)
    {
        let segs: Vec<_> = manifest.segments(table).collect();
        counts.push((label, segs.len() as u64));
        bytes.push((label, segs.iter().map(|s| s.bytes).sum()));
        rows.push((label, segs.iter().map(|s| s.rows).sum()));
    }
    line("weft_segments", "Published segments.", "gauge", &counts);
    line(
        "weft_segment_bytes",
        "Bytes in published segments.",
        "gauge",
        &bytes,
    );
    line(
        "weft_segment_rows",
        "Rows in published segments.",
        "gauge",
        &rows,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
