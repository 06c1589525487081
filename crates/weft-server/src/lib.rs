//! weft-server: the HTTP surface of `weft serve`.
//!
//! A library: [`router`] builds the axum `Router` from an [`AppState`], and
//! tests drive it without a socket. Writes go to a tenant's `weft-storage`
//! [`Store`] (WAL, write buffer, segments; [`ingest`], shippers), reads to
//! its `weft-query` engine, which sees the same buffer (`query`). Every
//! request carries an id (`X-Request-Id`, taken from the client or made up)
//! that is echoed back and logged with the request.
//!
//! Every route but health passes `authorize`: with tokens configured
//! ([`auth`]) the token names the caller's role and tenant, and the request
//! only ever sees that tenant's store and engine.
//!
//! Errors map to status codes in one place ([`ApiError`]): the caller's
//! mistakes are 400 with the reason, our own failures 500 with no internals.

pub mod auth;
pub mod ingest;
mod metrics;
mod query;
mod shippers;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::Instrument;
use weft_query::Engine;
use weft_query::audit::{Entry, Outcome};
use weft_query::saved::SavedQuery;
use weft_storage::store::Store;

pub use auth::{AuthConfig, Caller, DEFAULT_TENANT, Role};
pub use ingest::IngestLimits;
use metrics::Metrics;

/// One tenant's data: its engine and, in the daemon, its store.
#[derive(Debug)]
pub struct Tenant {
    pub engine: Engine,
    /// The write path; `None` serves queries only (ingest answers 503).
    pub store: Option<Arc<Store>>,
}

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    /// By tenant id; always has [`DEFAULT_TENANT`].
    tenants: BTreeMap<String, Arc<Tenant>>,
    pub saved: BTreeMap<String, SavedQuery>,
    /// Most rows a JSON answer carries before `truncated: true`.
    pub max_rows: usize,
    pub ingest: IngestLimits,
    auth: AuthConfig,
    metrics: Metrics,
}

impl AppState {
    /// A query-only state over `engine`, as the default tenant, auth off.
    pub fn new(engine: Engine, saved: BTreeMap<String, SavedQuery>, max_rows: usize) -> Self {
        let default = Tenant {
            engine,
            store: None,
        };
        Self {
            tenants: BTreeMap::from([(DEFAULT_TENANT.to_owned(), Arc::new(default))]),
            saved,
            max_rows,
            ingest: IngestLimits::default(),
            auth: AuthConfig::default(),
            metrics: Metrics::default(),
        }
    }

    /// The default tenant takes writes into `store` (whose directory its
    /// engine reads).
    pub fn with_store(mut self, store: Arc<Store>, limits: IngestLimits) -> Self {
        let t = self
            .tenants
            .get_mut(DEFAULT_TENANT)
            .and_then(Arc::get_mut)
            .expect("set before the state is shared");
        t.store = Some(store);
        self.ingest = limits;
        self
    }

    /// Adds (or replaces) a tenant.
    pub fn with_tenant(mut self, id: &str, tenant: Tenant) -> Self {
        self.tenants.insert(id.to_owned(), Arc::new(tenant));
        self
    }

    /// Turns auth on when `auth` has tokens.
    pub fn with_auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    pub fn tenants(&self) -> impl Iterator<Item = (&str, &Arc<Tenant>)> {
        self.tenants.iter().map(|(k, v)| (k.as_str(), v))
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
            weft_query::Error::AuditUnavailable(_) => {
                tracing::error!(error = %self.0, "query refused: no audit record");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the audit trail cannot be written, so no query runs".to_owned(),
                )
            }
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
    let guard = |need: Need| middleware::from_fn_with_state((Arc::clone(&state), need), authorize);
    Router::new()
        .merge(health_routes())
        .merge(
            Router::new()
                .route("/openapi.json", get(openapi))
                .route_layer(guard(Need::AnyRole)),
        )
        .merge(
            Router::new()
                .route("/metrics", get(metrics::metrics))
                .route_layer(guard(Need::Operator)),
        )
        .merge(query_routes().route_layer(guard(Need::Read)))
        .merge(ingest_routes().route_layer(guard(Need::Write)))
        .merge(shipper_routes(&state))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// What a route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    AnyRole,
    Read,
    Write,
    /// An admin of the `default` tenant: `/metrics` shows every tenant.
    Operator,
}

impl Need {
    fn allows(self, caller: &Caller) -> bool {
        match self {
            Need::AnyRole => true,
            Need::Read => matches!(caller.role, Role::Query | Role::Admin),
            Need::Write => matches!(caller.role, Role::Ingest | Role::Admin),
            Need::Operator => caller.role == Role::Admin && caller.tenant == DEFAULT_TENANT,
        }
    }
}

/// Headers with which a client might name a tenant; the token decides.
const TENANT_HEADERS: &[&str] = &["x-weft-tenant", "x-scope-orgid"];

fn auth_error(status: StatusCode, message: String) -> Response {
    let mut resp = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"weft\""),
        );
    }
    resp
}

/// Finds the caller and its tenant, or answers 401/403.
///
/// A 403 on a read route is written to the tenant's audit trail: the
/// caller is known. A 401 is not (the caller is not, and a record per
/// anonymous request would let anyone fill the disk); it is logged and
/// counted in `/metrics`.
async fn authorize(
    State((state, need)): State<(Arc<AppState>, Need)>,
    mut req: Request,
    next: Next,
) -> Response {
    // Only refusals name the endpoint: no string per accepted request.
    let endpoint = |req: &Request| format!("{} {}", req.method(), req.uri().path());
    let caller = if state.auth.enabled() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.auth.check(given) {
            Ok(c) => c,
            Err(why) => {
                state.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
                tracing::info!(endpoint = endpoint(&req), reason = %why, "refused: no good token");
                return auth_error(StatusCode::UNAUTHORIZED, why.to_string());
            }
        }
    } else {
        Caller::local()
    };
    let Some(tenant) = state.tenants.get(&caller.tenant).cloned() else {
        return auth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("tenant {:?} is not open on this server", caller.tenant),
        );
    };
    let refusal = if let Some(named) = state
        .auth
        .enabled()
        .then(|| other_tenant(req.headers(), &caller.tenant))
        .flatten()
    {
        Some(format!(
            "this token belongs to tenant {:?}; a header cannot choose tenant {named:?}",
            caller.tenant
        ))
    } else if !need.allows(&caller) {
        Some(if need == Need::Operator && caller.role == Role::Admin {
            format!(
                "{} shows every tenant: it needs an admin token of tenant {DEFAULT_TENANT:?}",
                endpoint(&req)
            )
        } else {
            format!(
                "a token with role {} cannot use {}",
                caller.role.as_str(),
                endpoint(&req)
            )
        })
    } else {
        None
    };
    if let Some(message) = refusal {
        state.metrics.forbidden.fetch_add(1, Ordering::Relaxed);
        if need == Need::Read {
            let entry = Entry {
                token_id: caller.token_id.clone(),
                tenant: Some(caller.tenant.clone()),
                endpoint: endpoint(&req),
                statement: req.uri().query().map(str::to_owned),
                params: None,
            };
            let audit = Arc::clone(tenant.engine.audit());
            let why = message.clone();
            let written =
                tokio::task::spawn_blocking(move || audit.refused(entry, Outcome::Denied, &why))
                    .await;
            if let Ok(Err(e)) | Err(e) =
                written.map_err(|e| weft_query::Error::Internal(e.to_string()))
            {
                tracing::error!(error = %e, "cannot write the audit record of a refused request");
            }
        }
        return auth_error(StatusCode::FORBIDDEN, message);
    }
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(tenant);
    next.run(req).await
}

/// A tenant other than `own` named by any value of any tenant header.
fn other_tenant(headers: &HeaderMap, own: &str) -> Option<String> {
    TENANT_HEADERS
        .iter()
        .flat_map(|h| headers.get_all(*h))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .find(|t| t != own)
}

fn health_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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

/// Elasticsearch bulk, Loki push and OTLP logs (see [`shippers`]), each
/// behind the write guard. The Elasticsearch routes stamp `X-Elastic-Product` on
/// every answer, the guard's 401 and 403 included.
fn shipper_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let guard = || middleware::from_fn_with_state((Arc::clone(state), Need::Write), authorize);
    let elastic = Router::new()
        .route("/", get(shippers::es_info).head(shippers::es_info))
        .route("/_license", get(shippers::es_license))
        .route("/_cluster/health", get(shippers::es_health))
        .route("/_bulk", post(shippers::es_bulk).put(shippers::es_bulk))
        .route(
            "/{index}/_bulk",
            post(shippers::es_index_bulk).put(shippers::es_index_bulk),
        )
        .route_layer(guard())
        .layer(middleware::from_fn(shippers::elastic_product));
    Router::new()
        .merge(elastic)
        .merge(
            Router::new()
                .route("/loki/api/v1/push", post(shippers::loki_push))
                .route("/v1/logs", post(shippers::otlp_logs))
                .route_layer(guard()),
        )
        // The handlers enforce their own, configurable limit.
        .layer(DefaultBodyLimit::disable())
}

/// 200 once the WAL is replayed and writes are taken; 503 with the reason
/// before that or after a WAL failure.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let waiting = state.tenants().find_map(|(id, t)| {
        let reason = t.store.as_ref()?.unavailable()?;
        Some(if id == DEFAULT_TENANT {
            reason
        } else {
            format!("tenant {id}: {reason}")
        })
    });
    match waiting {
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
        .route("/v1/query", post(query::post_query).get(query::get_query))
        .route("/v1/trace/{id}", get(query::get_trace))
        .route("/v1/queries", get(query::list_queries))
        .route("/v1/queries/{name}", post(query::run_saved))
}
