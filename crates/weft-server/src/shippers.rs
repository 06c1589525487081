//! The shipper protocols: Elasticsearch bulk, Loki push and OTLP/HTTP logs,
//! each answered the way its shippers expect.
//!
//! The bodies go through the same path as `/v1/ingest`
//! ([`store_body`](crate::ingest::store_body): limits, decompression, WAL,
//! buffer) and are decoded by `weft_ingest::protocol`. Shared answers:
//! 429/503 with `Retry-After` for load or trouble, 413 past the body limit,
//! 415 naming the supported content types, 400 only for what a retry cannot
//! fix.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use weft_ingest::Format;
use weft_ingest::protocol::{partial_success_json, partial_success_protobuf};
use weft_storage::store::IngestOutcome;

use crate::ingest::{header_defaults, refuse, store_body};
use crate::{AppState, Tenant};

/// The version weft answers as on `GET /`. Shippers pick their request
/// shapes by major version; 8 is the one without mapping types.
const ES_VERSION: &str = "8.17.0";

/// The body's media type, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let t = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!t.is_empty()).then_some(t)
}

fn unsupported_type(
    state: &AppState,
    source: &'static str,
    got: Option<&str>,
    supported: &str,
) -> Response {
    refuse(
        state,
        source,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type {} is not supported here; send {supported}",
            got.map_or("(none)".to_owned(), |t| format!("{t:?}"))
        ),
    )
}

/// The format the request's `Content-Type` names, of a protocol's
/// `[protobuf, json]` pair, or the 415 listing `supported`.
fn pick_format(
    state: &AppState,
    headers: &HeaderMap,
    source: &'static str,
    [protobuf, json]: [Format; 2],
    supported: &str,
) -> Result<Format, Box<Response>> {
    match media_type(headers).as_deref() {
        Some("application/x-protobuf") => Ok(protobuf),
        Some("application/json") => Ok(json),
        other => Err(Box::new(unsupported_type(state, source, other, supported))),
    }
}

/// Stores a shipper's body with the defaults its headers set.
async fn store(
    state: &Arc<AppState>,
    tenant: &Tenant,
    headers: &HeaderMap,
    body: Body,
    format: Format,
    snappy: bool,
) -> Result<IngestOutcome, Response> {
    store_body(
        state,
        tenant,
        headers,
        body,
        format,
        snappy,
        header_defaults(headers),
    )
    .await
}

// ---- Elasticsearch ---------------------------------------------------------

/// Every answer on the Elasticsearch routes says it is one: the official
/// clients refuse a server without `X-Elastic-Product`.
pub(crate) async fn elastic_product(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    resp
}

/// `GET /` and `HEAD /`: the cluster info shippers read before sending.
pub(crate) async fn es_info() -> Json<Value> {
    Json(json!({
        "name": "weft",
        "cluster_name": "weft",
        "cluster_uuid": "weft",
        "version": {
            "number": ES_VERSION,
            "build_flavor": "default",
            "build_type": "weft",
            "build_hash": "weft",
            "build_date": "2026-01-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }))
}

/// `GET /_license`: Beats check for an active license before sending.
pub(crate) async fn es_license() -> Json<Value> {
    Json(json!({
        "license": {
            "status": "active",
            "uid": "weft",
            "type": "basic",
            "issue_date_in_millis": 0,
            "max_nodes": 1000,
            "issued_to": "weft",
            "issuer": "weft",
            "start_date_in_millis": -1,
        }
    }))
}

/// `GET /_cluster/health`: Vector's health check. weft has one node and
/// no shards to allocate, so it is green whenever it answers; a store that
/// cannot take writes shows in `/readyz` and in the bulk answers.
pub(crate) async fn es_health() -> Json<Value> {
    Json(json!({
        "cluster_name": "weft",
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 0,
        "active_shards": 0,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
    }))
}

pub(crate) async fn es_bulk(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, tenant, None, headers, body).await
}

pub(crate) async fn es_index_bulk(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, tenant, Some(index), headers, body).await
}

async fn bulk(
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    index: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // Elasticsearch takes any JSON flavour here, `x-ndjson` and the
    // versioned `vnd.elasticsearch+…` types included.
    let media = media_type(&headers);
    if media.as_deref().is_some_and(|t| !t.contains("json")) {
        return unsupported_type(
            &state,
            "es_bulk",
            media.as_deref(),
            "application/x-ndjson or application/json",
        );
    }
    let format = Format::EsBulk { index };
    let outcome = match store(&state, &tenant, &headers, body, format, false).await {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    if let Some(fatal) = &outcome.fatal {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {
                    "root_cause": [{"type": "illegal_argument_exception", "reason": fatal}],
                    "type": "illegal_argument_exception",
                    "reason": fatal,
                },
                "status": 400,
            })),
        )
            .into_response();
    }
    Json(bulk_answer(&outcome, started.elapsed().as_millis() as u64)).into_response()
}

fn bulk_answer(outcome: &IngestOutcome, took_ms: u64) -> Value {
    let items: Vec<Value> = outcome
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            // Elasticsearch makes up ids it was not given; weft's name the
            // WAL record and the item, so a retry can be told apart.
            let id = item
                .id
                .clone()
                .unwrap_or_else(|| format!("{:x}-{i}", outcome.lsn));
            let result = match &item.error {
                None => json!({
                    "_index": item.index,
                    "_id": id,
                    "_version": 1,
                    "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": outcome.lsn,
                    "_primary_term": 1,
                    "status": 201,
                }),
                Some((kind, reason)) => json!({
                    "_index": item.index,
                    "_id": id,
                    "status": 400,
                    "error": {"type": kind, "reason": reason},
                }),
            };
            json!({ item.action.as_str(): result })
        })
        .collect();
    json!({
        "took": took_ms,
        "errors": outcome.items.iter().any(|i| i.error.is_some()),
        "items": items,
    })
}

// ---- Loki ------------------------------------------------------------------

/// `POST /loki/api/v1/push`: 204 when every entry was stored; otherwise the
/// valid entries are stored and the answer is 400 naming the bad ones, as
/// Loki does.
pub(crate) async fn loki_push(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match pick_format(
        &state,
        &headers,
        "loki",
        [Format::LokiProtobuf, Format::LokiJson],
        "application/x-protobuf (snappy) or application/json",
    ) {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let snappy = format == Format::LokiProtobuf;
    let outcome = match store(&state, &tenant, &headers, body, format, snappy).await {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    if let Some(fatal) = &outcome.fatal {
        return (StatusCode::BAD_REQUEST, format!("{fatal}\n")).into_response();
    }
    if outcome.rejected == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        StatusCode::BAD_REQUEST,
        refusal_text(&outcome, "entries", "entry"),
    )
        .into_response()
}

/// "2 of 5 entries were rejected (3 stored): entry 2: …; entry 4: …"
fn refusal_text(outcome: &IngestOutcome, many: &str, one: &str) -> String {
    let total = outcome.accepted + outcome.rejected;
    let mut text = format!(
        "{} of {total} {many} were rejected ({} stored)",
        outcome.rejected, outcome.accepted
    );
    for (i, (n, reason)) in outcome.errors.iter().enumerate() {
        text.push_str(if i == 0 { ": " } else { "; " });
        text.push_str(&format!("{one} {n}: {reason}"));
    }
    text.push('\n');
    text
}

// ---- OTLP ------------------------------------------------------------------

/// `POST /v1/logs`: 200 with `partial_success` naming refused records, in
/// the encoding of the request.
pub(crate) async fn otlp_logs(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match pick_format(
        &state,
        &headers,
        "otlp",
        [Format::OtlpProtobuf, Format::OtlpJson],
        "application/x-protobuf or application/json",
    ) {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let protobuf = format == Format::OtlpProtobuf;
    let outcome = match store(&state, &tenant, &headers, body, format, false).await {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    if let Some(fatal) = &outcome.fatal {
        return refuse(&state, "otlp", StatusCode::BAD_REQUEST, fatal.clone());
    }
    let message = if outcome.rejected == 0 {
        String::new()
    } else {
        refusal_text(&outcome, "log records", "record")
            .trim_end()
            .to_owned()
    };
    if protobuf {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            partial_success_protobuf(outcome.rejected, &message),
        )
            .into_response()
    } else {
        Json(partial_success_json(outcome.rejected, &message)).into_response()
    }
}
