//! weft-server: the HTTP surface of `weft serve`.
//!
//! A library: [`router`] builds the axum `Router` from an [`AppState`], and
//! tests drive it without a socket. Writes go to the `weft-storage`
//! [`Store`] (WAL, write buffer, segments; [`ingest`]), reads to the
//! `weft-query` engine, which sees the same buffer. Every request carries an
//! id (`X-Request-Id`, taken from the client or made up) that is echoed back
//! and logged with the request.
//!
//! Errors map to status codes in one place ([`ApiError`]): the caller's
//! mistakes are 400 with the reason, our own failures 500 with no internals.

pub mod ingest;
mod metrics;
mod shippers;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;
use weft_query::format::{self, Format};
use weft_query::saved::{self, SavedQuery};
use weft_query::{Engine, QueryOutput, ScalarValue};
use weft_storage::store::Store;

pub use ingest::IngestLimits;
use metrics::Metrics;

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub engine: Engine,
    pub saved: BTreeMap<String, SavedQuery>,
    /// Most rows a JSON answer carries before `truncated: true`.
    pub max_rows: usize,
    /// The write path; `None` serves queries only (ingest answers 503).
    pub store: Option<Arc<Store>>,
    pub ingest: IngestLimits,
    metrics: Metrics,
}

impl AppState {
    /// A query-only state over `engine`.
    pub fn new(engine: Engine, saved: BTreeMap<String, SavedQuery>, max_rows: usize) -> Self {
        Self {
            engine,
            saved,
            max_rows,
            store: None,
            ingest: IngestLimits::default(),
            metrics: Metrics::default(),
        }
    }

    /// Takes writes into `store` (whose directory the engine reads).
    pub fn with_store(mut self, store: Arc<Store>, limits: IngestLimits) -> Self {
        self.store = Some(store);
        self.ingest = limits;
        self
    }
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
        .merge(ingest_routes())
        .merge(shipper_routes())
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

fn health_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi))
}

/// The OpenAPI 3.0 document of every route here (`src/openapi.json`,
/// checked against the router by `tests/http/openapi.rs`).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn ingest_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/ingest", post(ingest::post_ingest))
        // The handler enforces its own, configurable limit.
        .layer(DefaultBodyLimit::disable())
}

/// Elasticsearch bulk, Loki push and OTLP logs (see [`shippers`]).
fn shipper_routes() -> Router<Arc<AppState>> {
    let elastic = Router::new()
        .route("/", get(shippers::es_info).head(shippers::es_info))
        .route("/_license", get(shippers::es_license))
        .route("/_cluster/health", get(shippers::es_health))
        .route("/_bulk", post(shippers::es_bulk).put(shippers::es_bulk))
        .route(
            "/{index}/_bulk",
            post(shippers::es_index_bulk).put(shippers::es_index_bulk),
        )
        .layer(middleware::from_fn(shippers::elastic_product));
    Router::new()
        .merge(elastic)
        .route("/loki/api/v1/push", post(shippers::loki_push))
        .route("/v1/logs", post(shippers::otlp_logs))
        // The handlers enforce their own, configurable limit.
        .layer(DefaultBodyLimit::disable())
}

/// 200 once the WAL is replayed and writes are taken; 503 with the reason
/// before that or after a WAL failure.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.as_ref().and_then(|s| s.unavailable()) {
        None => "ready\n".into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// Request ids come from `X-Request-Id` or are made up here; echoed back
/// and logged with the request's method, path, status and duration.
async fn request_id(req: Request, next: Next) -> Response {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            format!("{:x}-{n:x}", weft_storage::now_nanos() / 1_000)
        });
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
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
