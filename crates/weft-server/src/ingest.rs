//! `POST /v1/ingest`: NDJSON batches from shippers.
//!
//! Checked in the order a shipper's retry logic needs: not ready or storage
//! trouble → 503, a declared body over the limit → 413 without storing any
//! of it, the in-flight byte budget spent or the write path or the process
//! at its memory cap → 429, then the body is read under the limit (413 past
//! it; a client that goes away mid-body commits nothing), decompressed
//! under its own cap (413 for a bomb, 400 for a corrupt stream) and stored
//! off the async runtime, which checks the memory caps again with the
//! body's real size. A refusal is sent once the body has been read and
//! dropped piece by piece (for at most 10 s; for a 413, up to four times
//! the limit): a client still writing it into a closed connection would see
//! a broken pipe instead of its answer. A client that sent `Expect:
//! 100-continue` gets a refusal made before reading without sending the body
//! at all. 429 and 503 carry `Retry-After`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use weft_ingest::{Defaults, Format};
use weft_storage::store::{IngestError, IngestOutcome, IngestRequest};

use crate::{AppState, Tenant};

/// Limits on what one request may bring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestLimits {
    /// Largest request body as sent (compressed or not): 413 past it.
    pub max_body_bytes: usize,
    /// Largest body after decompression: 413 past it.
    pub max_decompressed_bytes: usize,
    /// Request bytes being read or stored at once, all requests together:
    /// 429 past it.
    pub max_inflight_bytes: usize,
    /// Seconds a refused shipper is asked to wait (`Retry-After`).
    pub retry_after_secs: u64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            max_inflight_bytes: 256 << 20,
            retry_after_secs: 1,
        }
    }
}

/// Defaults a request may set by query parameter.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct IngestParams {
    service: Option<String>,
    host: Option<String>,
}

/// The answer of `POST /v1/ingest`.
#[derive(Debug, Serialize)]
struct IngestAnswer {
    accepted: u64,
    rejected: u64,
    errors: Vec<LineErrorAnswer>,
    /// True when this answers a retry of a request already stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

#[derive(Debug, Serialize)]
struct LineErrorAnswer {
    line: u64,
    reason: String,
}

/// A refusal: status, message, and whether to send `Retry-After`.
pub(crate) fn refuse(
    state: &AppState,
    source: &'static str,
    status: StatusCode,
    message: String,
) -> Response {
    let outcome = match status {
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "bad_request",
        _ => "error",
    };
    state.metrics.count_request(source, outcome);
    let mut resp = (status, Json(json!({ "error": message }))).into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            state
                .ingest
                .retry_after_secs
                .to_string()
                .parse()
                .expect("digits"),
        );
    }
    resp
}

/// Gives back reserved in-flight bytes when the request ends, however it ends.
struct Reservation<'a> {
    state: &'a AppState,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.state
            .metrics
            .inflight_bytes
            .fetch_sub(self.bytes as u64, Ordering::AcqRel);
    }
}

fn reserve(state: &AppState, bytes: usize) -> Option<Reservation<'_>> {
    let budget = state.ingest.max_inflight_bytes as u64;
    let m = &state.metrics.inflight_bytes;
    let mut cur = m.load(Ordering::Acquire);
    loop {
        // One request alone may always use the whole budget.
        if cur > 0 && cur + bytes as u64 > budget {
            return None;
        }
        match m.compare_exchange_weak(cur, cur + bytes as u64, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(Reservation { state, bytes }),
            Err(now) => cur = now,
        }
    }
}

pub(crate) async fn post_ingest(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let defaults = Defaults {
        service: params
            .service
            .or_else(|| header_text(&headers, "x-weft-service")),
        host: params.host.or_else(|| header_text(&headers, "x-weft-host")),
    };
    match store_body(
        &state,
        &tenant,
        &headers,
        body,
        Format::Ndjson,
        false,
        defaults,
    )
    .await
    {
        Ok(outcome) => Json(answer(outcome)).into_response(),
        Err(refused) => refused,
    }
}

/// Defaults a shipper protocol request may set by header: the shipper's own
/// URL and query string belong to its protocol.
pub(crate) fn header_defaults(headers: &HeaderMap) -> Defaults {
    Defaults {
        service: header_text(headers, "x-weft-service"),
        host: header_text(headers, "x-weft-host"),
    }
}

/// Reads, decompresses and stores one request body of any protocol: the
/// checks and limits every write endpoint shares. `snappy` says the body is
/// a snappy block under its `Content-Encoding` (Loki protobuf). `Err` is
/// the refusal to send as it is; nothing was stored.
pub(crate) async fn store_body(
    state: &Arc<AppState>,
    tenant: &Tenant,
    headers: &HeaderMap,
    body: Body,
    format: Format,
    snappy: bool,
    defaults: Defaults,
) -> Result<IngestOutcome, Response> {
    let source = format.protocol();
    let Some(store) = tenant.store.clone() else {
        return Err(refuse(
            state,
            source,
            StatusCode::SERVICE_UNAVAILABLE,
            "this server is read-only: no store is open".into(),
        ));
    };
    let limit = state.ingest.max_body_bytes;
    if let Some(reason) = store.unavailable() {
        skip_body(headers, body, limit).await;
        return Err(refuse(
            state,
            source,
            StatusCode::SERVICE_UNAVAILABLE,
            reason,
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // Read first (within reason), so that a client writing the body
        // whole reads its 413 rather than a broken pipe.
        if n <= drain_bound(limit) as u64 {
            skip_body(headers, body, drain_bound(limit)).await;
        }
        return Err(refuse(
            state,
            source,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes is over the {limit}-byte limit",
                declared.unwrap_or(0)
            ),
        ));
    }
    let encoding = match Encoding::of(headers) {
        Ok(e) => e,
        Err(msg) => {
            skip_body(headers, body, limit).await;
            return Err(refuse(
                state,
                source,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                msg,
            ));
        }
    };
    // Reserve what the body may take once read and decompressed.
    let expect = declared.map_or(limit, |n| n as usize);
    let expect = if encoding == Encoding::Identity && !snappy {
        expect
    } else {
        expect
            .saturating_mul(4)
            .min(state.ingest.max_decompressed_bytes)
    };
    let Some(_reservation) = reserve(state, expect) else {
        skip_body(headers, body, limit).await;
        return Err(refuse(
            state,
            source,
            StatusCode::TOO_MANY_REQUESTS,
            "too many bytes in flight; retry shortly".into(),
        ));
    };
    // A store that would refuse the body anyway gets it drained, not
    // collected and handed over: under load most bodies are refused, and
    // reading each into memory first cost about a millisecond per MiB
    // (benches/README.md). Its length on the wire is the least the body
    // may be; what passes is checked again once it is read.
    if let Err(e) = store.admission(declared.map_or(0, |n| n as usize)) {
        skip_body(headers, body, limit).await;
        return Err(refuse(state, source, status_of(&e), e.to_string()));
    }
    let mut body = body;
    let raw = match http_body_util::Limited::new(&mut body, limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            // Over the limit, or the client went away: nothing is stored.
            let too_big = e.is::<http_body_util::LengthLimitError>();
            if too_big {
                drain(body, drain_bound(limit) - limit).await;
            }
            return Err(if too_big {
                refuse(
                    state,
                    source,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is over the {limit}-byte limit"),
                )
            } else {
                refuse(
                    state,
                    source,
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            });
        }
    };
    state
        .metrics
        .ingest_wire_bytes
        .fetch_add(raw.len() as u64, Ordering::Relaxed);
    let key = header_text(headers, "idempotency-key");
    let cap = state.ingest.max_decompressed_bytes;
    let task_store = Arc::clone(&store);
    let result = tokio::task::spawn_blocking(move || {
        let mut body = encoding.decode(raw, cap)?;
        if snappy {
            body = snappy_decode(&body, cap)?;
        }
        let n = body.len() as u64;
        task_store
            .ingest(IngestRequest {
                source: source_of(&format).into(),
                body,
                format,
                defaults,
                idempotency_key: key,
            })
            .map(|o| (o, n))
            .map_err(Refusal::Store)
    })
    .await;
    match result {
        Ok(Ok((outcome, n))) => {
            state.metrics.count_outcome(source, &outcome);
            if !outcome.duplicate {
                state.metrics.count_bytes(source, n);
            }
            // A body kept whole as a reject is answered 400.
            let label = if outcome.fatal.is_none() {
                "ok"
            } else {
                "bad_request"
            };
            state.metrics.count_request(source, label);
            Ok(outcome)
        }
        Ok(Err(Refusal::TooLarge)) => Err(refuse(
            state,
            source,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body decompresses to more than the {cap}-byte limit"),
        )),
        Ok(Err(Refusal::Corrupt(msg))) => Err(refuse(state, source, StatusCode::BAD_REQUEST, msg)),
        Ok(Err(Refusal::Store(e))) => Err(refuse(state, source, status_of(&e), e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "ingest task failed");
            Err(refuse(
                state,
                source,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".into(),
            ))
        }
    }
}

/// Reads the body of a request refused before reading it, up to `limit`
/// bytes and [`DRAIN_TIME`], dropping each piece as it comes, so that a
/// client which writes its whole body before reading gets the answer, not
/// a broken pipe. A client that waits for `100 Continue` before sending
/// the body is sent none, and so never sends it.
async fn skip_body(headers: &HeaderMap, body: Body, limit: usize) {
    let waits = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits {
        drain(body, limit).await;
    }
}

/// How much of a body over `limit` is read and dropped before its 413:
/// four times the limit. Past that the connection is closed unread.
fn drain_bound(limit: usize) -> usize {
    limit.saturating_mul(4)
}

/// How long a refused body is read before the refusal goes out anyway.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads `body` to its end, dropping each piece, for at most `more` bytes
/// and [`DRAIN_TIME`].
async fn drain(body: Body, more: usize) {
    let mut body = http_body_util::Limited::new(body, more);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// The answer to a store's refusal: 429 for load, 503 for trouble.
fn status_of(e: &IngestError) -> StatusCode {
    match e {
        IngestError::Overloaded { .. } | IngestError::MemoryFull { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        IngestError::KeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        IngestError::NotReady | IngestError::Unavailable(_) | IngestError::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The `source` of a request's rejects: the endpoint it came to.
fn source_of(format: &Format) -> &'static str {
    match format {
        Format::Ndjson => "http:/v1/ingest",
        Format::EsBulk { .. } => "http:/_bulk",
        Format::LokiProtobuf | Format::LokiJson => "http:/loki/api/v1/push",
        Format::OtlpProtobuf | Format::OtlpJson => "http:/v1/logs",
    }
}

/// A snappy block (Loki's protobuf framing), refusing more than `cap`
/// bytes before allocating them.
fn snappy_decode(raw: &[u8], cap: usize) -> Result<Vec<u8>, Refusal> {
    let len = snap::raw::decompress_len(raw)
        .map_err(|e| Refusal::Corrupt(format!("corrupt snappy body: {e}")))?;
    if len > cap {
        return Err(Refusal::TooLarge);
    }
    snap::raw::Decoder::new()
        .decompress_vec(raw)
        .map_err(|e| Refusal::Corrupt(format!("corrupt snappy body: {e}")))
}

fn answer(o: IngestOutcome) -> IngestAnswer {
    IngestAnswer {
        accepted: o.accepted,
        rejected: o.rejected,
        errors: o
            .errors
            .into_iter()
            .map(|(line, reason)| LineErrorAnswer { line, reason })
            .collect(),
        duplicate: o.duplicate,
    }
}

pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Why a body was not stored.
enum Refusal {
    TooLarge,
    Corrupt(String),
    Store(IngestError),
}

/// A request body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub(crate) fn of(headers: &HeaderMap) -> Result<Self, String> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            other => Err(format!(
                "Content-Encoding {other:?} is not supported; send gzip, zstd or none"
            )),
        }
    }

    /// The decoded body, refusing more than `cap` bytes of it. A plain
    /// body is handed on without a copy when `raw` owns its bytes alone (a
    /// body read in several pieces is gathered into one buffer of its own).
    fn decode(self, raw: Bytes, cap: usize) -> Result<Vec<u8>, Refusal> {
        match self {
            Encoding::Identity => {
                if raw.len() > cap {
                    return Err(Refusal::TooLarge);
                }
                Ok(Vec::from(raw))
            }
            Encoding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(&raw[..]), cap, "gzip"),
            Encoding::Zstd => match zstd::stream::read::Decoder::new(&raw[..]) {
                Ok(d) => read_capped(d, cap, "zstd"),
                Err(e) => Err(Refusal::Corrupt(format!("corrupt zstd body: {e}"))),
            },
        }
    }
}

fn read_capped(r: impl Read, cap: usize, what: &str) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let mut limited = r.take(cap as u64 + 1);
    match limited.read_to_end(&mut out) {
        Ok(_) if out.len() > cap => Err(Refusal::TooLarge),
        Ok(_) => Ok(out),
        Err(e) => Err(Refusal::Corrupt(format!("corrupt {what} body: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decoding_is_capped_and_corruption_is_named() {
        let body = vec![b'a'; 10_000];
        let gz = gzip(&body);
        assert_eq!(
            Encoding::Gzip.decode(Bytes::from(gz.clone()), 10_000).ok(),
            Some(body.clone())
        );
        assert!(matches!(
            Encoding::Gzip.decode(Bytes::from(gz.clone()), 9_999),
            Err(Refusal::TooLarge)
        ));
        let zs = zstd::encode_all(&body[..], 3).unwrap();
        assert_eq!(
            Encoding::Zstd.decode(Bytes::from(zs.clone()), 10_000).ok(),
            Some(body)
        );
        assert!(matches!(
            Encoding::Zstd.decode(Bytes::from(zs.clone()), 100),
            Err(Refusal::TooLarge)
        ));
        match Encoding::Gzip.decode(Bytes::from_static(b"\x1f\x8b\x08\x00garbage"), 100) {
            Err(Refusal::Corrupt(m)) => assert!(m.starts_with("corrupt gzip body"), "{m}"),
            _ => panic!("corrupt gzip must be refused as corrupt"),
        }
        assert!(matches!(
            Encoding::Zstd.decode(Bytes::from_static(b"not zstd"), 100),
            Err(Refusal::Corrupt(_))
        ));
        assert!(matches!(
            Encoding::Identity.decode(Bytes::from_static(b"abc"), 2),
            Err(Refusal::TooLarge)
        ));
    }

    #[test]
    fn a_plain_body_of_its_own_is_handed_on_without_a_copy() {
        let body = b"{\"message\":\"hi\"}\n".repeat(1000);
        let owned = body.clone();
        let at = owned.as_ptr();
        let Ok(out) = Encoding::Identity.decode(Bytes::from(owned), body.len()) else {
            panic!("a body within the cap decodes");
        };
        assert_eq!(out, body);
        assert_eq!(out.as_ptr(), at, "the body's buffer is reused, not copied");
        // A body that shares its buffer is copied, and still whole.
        let shared = Bytes::from(body.clone());
        let keep = shared.clone();
        let Ok(out) = Encoding::Identity.decode(shared, body.len()) else {
            panic!("a shared body within the cap decodes");
        };
        assert_eq!(out, keep);
    }

    #[test]
    fn snappy_is_capped_before_allocating_and_corruption_is_named() {
        let body = vec![b'x'; 5_000];
        let block = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        assert_eq!(snappy_decode(&block, 5_000).ok(), Some(body));
        assert!(matches!(
            snappy_decode(&block, 4_999),
            Err(Refusal::TooLarge)
        ));
        // A header claiming 4 GiB is refused by its declared length alone.
        assert!(matches!(
            snappy_decode(b"\xff\xff\xff\xff\x0f", 1 << 20),
            Err(Refusal::TooLarge)
        ));
        assert!(matches!(
            snappy_decode(b"\x05garbage", 100),
            Err(Refusal::Corrupt(_))
        ));
    }
}
