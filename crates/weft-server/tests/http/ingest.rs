//! `POST /v1/ingest`: answers, limits and refusals, and read-your-writes
//! through `POST /v1/query`.

use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use weft_ingest::NormalizerConfig;
use weft_query::{Engine, QueryOptions, saved};
use weft_server::{AppState, IngestLimits, router};
use weft_storage::SegmentOptions;
use weft_storage::store::{Store, StoreOptions};

pub(crate) struct App {
    pub(crate) router: axum::Router,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
}

fn app_with(options: StoreOptions, limits: IngestLimits, replay: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        SegmentOptions::default(),
        NormalizerConfig::default(),
        options,
    )
    .unwrap();
    if replay {
        store.replay().unwrap();
    }
    let engine = Engine::over(Arc::clone(store.data()), QueryOptions::default());
    let state = AppState::new(engine, saved::load(None).unwrap(), 100)
        .with_store(Arc::clone(&store), limits);
    App {
        router: router(Arc::new(state)),
        store,
        _dir: dir,
    }
}

pub(crate) fn app() -> App {
    app_with(StoreOptions::default(), IngestLimits::default(), true)
}

struct Answer {
    status: StatusCode,
    json: Value,
    headers: axum::http::HeaderMap,
}

async fn send(app: &App, req: Request<Body>) -> Answer {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    }
}

fn ingest() -> axum::http::request::Builder {
    Request::builder().method("POST").uri("/v1/ingest")
}

async fn post(app: &App, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut req = Request::builder().method("POST").uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::from(body)).unwrap()).await
}

/// The `/metrics` page as text.
async fn metrics_text(app: &App) -> String {
    let resp = app
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn count(app: &App, sql: &str) -> Value {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/query")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "sql": sql }).to_string()))
        .unwrap();
    let a = send(app, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    a.json["rows"][0][0].clone()
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "{{\"message\":\"line {i}\",\"trace_id\":\"t{}\",\"n\":{i}}}\n",
                i % 3
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn accepted_lines_are_queryable_at_once_and_bad_ones_are_named() {
    let app = app();
    let mut body = lines(5);
    body.extend_from_slice(b"{\"message\": \"cut\n");
    let a = post(&app, "/v1/ingest?service=checkout", &[], body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["accepted"], 5);
    assert_eq!(a.json["rejected"], 1);
    assert_eq!(a.json["errors"][0]["line"], 6);
    assert!(
        a.json["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{}",
        a.json
    );
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 5);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM logs WHERE service = 'checkout' AND correlation_id = 't1'"
        )
        .await,
        2
    );
    assert_eq!(count(&app, "SELECT count(*) FROM rejects").await, 1);
    // A flush moves the rows into segments: still counted once.
    app.store.flush().unwrap();
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 5);
    let a = post(&app, "/v1/ingest", &[("x-weft-service", "web")], lines(2)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 7);
    assert_eq!(
        count(&app, "SELECT count(*) FROM logs WHERE service = 'web'").await,
        2
    );
    assert_eq!(count(&app, "SELECT sum(n) FROM logs").await, 10 + 1);
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_decoded_and_corrupt_ones_are_400() {
    let app = app();
    let a = post(
        &app,
        "/v1/ingest",
        &[("content-encoding", "gzip")],
        gzip(&lines(4)),
    )
    .await;
    assert_eq!(
        (a.status, a.json["accepted"].clone()),
        (StatusCode::OK, json!(4))
    );
    let z = zstd::encode_all(&lines(3)[..], 3).unwrap();
    let a = post(&app, "/v1/ingest", &[("content-encoding", "zstd")], z).await;
    assert_eq!(
        (a.status, a.json["accepted"].clone()),
        (StatusCode::OK, json!(3))
    );
    let mut bad = gzip(&lines(4));
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let a = post(&app, "/v1/ingest", &[("content-encoding", "gzip")], bad).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
    assert!(
        a.json["error"].as_str().unwrap().contains("gzip"),
        "{}",
        a.json
    );
    let a = post(&app, "/v1/ingest", &[("content-encoding", "br")], lines(1)).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 7);
}

#[tokio::test]
async fn bodies_over_the_limits_are_413_and_store_nothing() {
    let limits = IngestLimits {
        max_body_bytes: 1000,
        max_decompressed_bytes: 5000,
        ..IngestLimits::default()
    };
    let app = app_with(StoreOptions::default(), limits, true);
    // Declared too big: refused before reading.
    let a = post(&app, "/v1/ingest", &[], lines(100)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json);
    // Not declared (streamed), too big once read.
    let chunks: Vec<Result<Bytes, std::io::Error>> = lines(100)
        .chunks(100)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let req = ingest()
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let a = send(&app, req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json);
    // A gzip bomb: small on the wire, over the cap decompressed.
    let bomb = gzip(&vec![b' '; 1 << 19]);
    assert!(bomb.len() < 1000);
    let a = post(&app, "/v1/ingest", &[("content-encoding", "gzip")], bomb).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json);
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 0);
}

#[tokio::test]
async fn a_body_that_breaks_off_commits_nothing() {
    let app = app();
    let chunks = vec![
        Ok(Bytes::from(lines(3))),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let req = ingest()
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let a = send(&app, req).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 0);
}

#[tokio::test]
async fn overload_is_429_and_not_ready_is_503_both_with_retry_after() {
    // The write path at its cap, and every process over a one-byte
    // resident cap: the first request still goes ahead (the write path
    // holds nothing a refusal would free), the next is refused.
    let write_path = StoreOptions {
        max_buffer_bytes: 1,
        ..StoreOptions::default()
    };
    let resident = StoreOptions {
        max_resident_bytes: 1,
        ..StoreOptions::default()
    };
    for (options, why) in [(write_path, "write path full"), (resident, "memory full")] {
        let full = app_with(options, IngestLimits::default(), true);
        assert_eq!(
            post(&full, "/v1/ingest", &[], lines(2)).await.status,
            StatusCode::OK
        );
        let a = post(&full, "/v1/ingest", &[], lines(2)).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.json);
        assert_eq!(a.headers["retry-after"], "1");
        let error = a.json["error"].as_str().unwrap();
        assert!(error.starts_with(why), "{error}");
        assert_eq!(count(&full, "SELECT count(*) FROM logs").await, 2);
    }

    let unready = app_with(StoreOptions::default(), IngestLimits::default(), false);
    let r = send(
        &unready,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let a = post(&unready, "/v1/ingest", &[], lines(2)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.json);
    assert_eq!(a.headers["retry-after"], "1");
    unready.store.replay().unwrap();
    let r = send(
        &unready,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        post(&unready, "/v1/ingest", &[], lines(2)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn idempotency_keys_answer_retries_and_refuse_reuse() {
    let app = app();
    let key = [("idempotency-key", "batch-7")];
    let a = post(&app, "/v1/ingest", &key, lines(3)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json.get("duplicate").is_none());
    let b = post(&app, "/v1/ingest", &key, lines(3)).await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(b.json["duplicate"], true);
    assert_eq!(b.json["accepted"], 3);
    let c = post(&app, "/v1/ingest", &key, lines(4)).await;
    assert_eq!(c.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", c.json);
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 3);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_up_and_metrics_count_ingest() {
    let app = app();
    let a = post(&app, "/v1/ingest", &[("x-request-id", "req-42")], lines(2)).await;
    assert_eq!(a.headers["x-request-id"], "req-42");
    let mut body = lines(1);
    body.extend_from_slice(b"plain text\n");
    let b = post(&app, "/v1/ingest", &[], body).await;
    let made_up = b.headers["x-request-id"].to_str().unwrap();
    assert!(!made_up.is_empty());
    let text = metrics_text(&app).await;
    for want in [
        "weft_ingest_lines_total{source=\"ndjson\",outcome=\"accepted\"} 3",
        "weft_ingest_lines_total{source=\"ndjson\",outcome=\"rejected\"} 1",
        "weft_ingest_requests_total{source=\"ndjson\",outcome=\"ok\"} 2",
        "weft_rejects_total{reason=\"not_json\"} 1",
        "weft_wal_fsync_seconds_count{tenant=\"default\"} 2",
        "weft_ready{tenant=\"default\"} 1",
        // Nothing being normalized or flushed once the answers are in.
        "weft_decoding_bytes{tenant=\"default\"} 0",
        "weft_flush_memory_bytes{tenant=\"default\"} 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        text.contains("weft_buffer_bytes{tenant=\"default\"} "),
        "{text}"
    );
    let resident: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("weft_process_resident_bytes "))
        .unwrap_or_else(|| panic!("no resident gauge in\n{text}"))
        .parse()
        .unwrap();
    assert!(resident > 1 << 20, "{resident}");
}

/// A small valid body for each shipper endpoint, with its content type.
fn shipper_bodies() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "/_bulk",
            "application/x-ndjson",
            b"{\"index\":{\"_index\":\"a\"}}\n{\"message\":\"m\"}\n".to_vec(),
        ),
        (
            "/loki/api/v1/push",
            "application/json",
            br#"{"streams":[{"stream":{"app":"x"},"values":[["1763800000000000000","m"]]}]}"#
                .to_vec(),
        ),
        (
            "/v1/logs",
            "application/json",
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"m"}}]}]}]}"#
                .to_vec(),
        ),
    ]
}

#[tokio::test]
async fn shipper_endpoints_share_the_refusals_shippers_retry_on() {
    // Not ready: 503 + Retry-After on every protocol.
    let unready = app_with(StoreOptions::default(), IngestLimits::default(), false);
    for (uri, ctype, body) in shipper_bodies() {
        let a = post(&unready, uri, &[("content-type", ctype)], body).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {}",
            a.json
        );
        assert_eq!(a.headers["retry-after"], "1", "{uri}");
    }
    // Buffer full: 429 + Retry-After.
    let full = full_app(StoreOptions {
        max_buffer_bytes: 1,
        ..StoreOptions::default()
    })
    .await;
    for (uri, ctype, body) in shipper_bodies() {
        let a = post(&full, uri, &[("content-type", ctype)], body).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{uri}: {}", a.json);
        assert_eq!(a.headers["retry-after"], "1", "{uri}");
    }
    // Over the body limit: 413, before reading; a gzip bomb: 413 too.
    let small = app_with(
        StoreOptions::default(),
        IngestLimits {
            max_body_bytes: 40,
            max_decompressed_bytes: 5000,
            ..IngestLimits::default()
        },
        true,
    );
    let capped = app_with(
        StoreOptions::default(),
        IngestLimits {
            max_body_bytes: 1000,
            max_decompressed_bytes: 5000,
            ..IngestLimits::default()
        },
        true,
    );
    let bomb = gzip(&vec![b' '; 1 << 16]);
    assert!(bomb.len() < 1000);
    for (uri, ctype, body) in shipper_bodies() {
        assert!(body.len() > 40);
        let a = post(&small, uri, &[("content-type", ctype)], body).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {}", a.json);
        let a = post(
            &capped,
            uri,
            &[("content-type", ctype), ("content-encoding", "gzip")],
            bomb.clone(),
        )
        .await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {}", a.json);
    }
    // Unknown content encoding: 415 naming what is supported.
    let app = app();
    for (uri, ctype, body) in shipper_bodies() {
        let a = post(
            &app,
            uri,
            &[("content-type", ctype), ("content-encoding", "br")],
            body,
        )
        .await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri}");
        assert!(a.json["error"].as_str().unwrap().contains("gzip"), "{uri}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 0);
    assert_eq!(count(&small, "SELECT count(*) FROM logs").await, 0);
    assert_eq!(count(&capped, "SELECT count(*) FROM logs").await, 0);
}

/// Posts an NDJSON body of `body_len` bytes on a fresh blocking connection
/// to `addr`, written whole before the answer is read, as simple clients
/// do; returns the answer as text. `chunked` sends it with no length
/// declared; `header` is one more header line, or empty.
fn post_raw(
    addr: std::net::SocketAddr,
    body_len: usize,
    chunked: bool,
    header: &str,
) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {body_len}")
    };
    write!(
        s,
        "POST /v1/ingest HTTP/1.1\r\nHost: {addr}\r\n{framing}\r\n{header}Connection: close\r\n\r\n"
    )?;
    let line = b"{\"message\":\"refused\"}\n";
    let piece: Vec<u8> = line.iter().copied().cycle().take(64 << 10).collect();
    let mut sent = 0;
    while sent < body_len {
        let n = piece.len().min(body_len - sent);
        if chunked {
            write!(s, "{n:x}\r\n")?;
        }
        s.write_all(&piece[..n])?;
        if chunked {
            s.write_all(b"\r\n")?;
        }
        sent += n;
    }
    if chunked {
        s.write_all(b"0\r\n\r\n")?;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Serves `app` on a loopback port; abort the handle to stop.
async fn serve(
    app: &App,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_inflight_budget_is_429_answered_after_the_body() {
    use tokio::io::AsyncWriteExt;
    let app = app_with(
        StoreOptions::default(),
        IngestLimits {
            max_inflight_bytes: 1 << 20,
            ..IngestLimits::default()
        },
        true,
    );
    let (addr, server) = serve(&app).await;

    // A slow client declares 1 MiB, sends a few bytes and waits: its
    // reservation spends the whole budget.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = metrics_text(&app).await;
        if text.contains("weft_ingest_inflight_bytes 1048576") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reservation:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Another client writes a 16 MiB body whole before reading: more than
    // the socket buffers hold, so it gets its answer only if the server
    // reads the body before refusing it.
    let answer = tokio::task::spawn_blocking(move || post_raw(addr, 16 << 20, false, ""))
        .await
        .unwrap()
        .expect("the refused client reads a clean answer, not a reset");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("too many bytes in flight"), "{answer}");
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 0);
    drop(slow);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_writing_a_refused_body_whole_reads_the_answer() {
    let app = app_with(
        StoreOptions::default(),
        IngestLimits {
            max_body_bytes: 16 << 20,
            ..IngestLimits::default()
        },
        true,
    );
    let (addr, server) = serve(&app).await;
    // The client reads its answer only if the server reads the body rather
    // than closing the connection on it (for a 413, up to four times the
    // limit): declared over the limit, found over it while reading, and in
    // an encoding weft does not read.
    for (how, len, chunked, header, status) in [
        ("declared", 40 << 20, false, "", "413"),
        ("chunked", 40 << 20, true, "", "413"),
        (
            "encoding",
            12 << 20,
            false,
            "Content-Encoding: br\r\n",
            "415",
        ),
    ] {
        let answer = tokio::task::spawn_blocking(move || post_raw(addr, len, chunked, header))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{how}: the client gets a reset, not its {status}: {e}"));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{how}: {answer}"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 0);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_expecting_100_continue_is_refused_before_it_sends_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Refused before the body is read: write path full, and over the size limit.
    let full = full_app(StoreOptions {
        max_buffer_bytes: 1,
        ..StoreOptions::default()
    })
    .await;
    let small = app_with(
        StoreOptions::default(),
        IngestLimits {
            max_body_bytes: 1 << 20,
            ..IngestLimits::default()
        },
        true,
    );
    for (app, status) in [(&full, "429"), (&small, "413")] {
        let (addr, server) = serve(app).await;
        // The client sends the headers only and waits, as curl does for a
        // large body: no `100 Continue` must come, only the refusal.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = vec![0u8; 512];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut head))
            .await
            .expect("an answer without the body")
            .unwrap();
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {head}"
        );
        server.abort();
    }
    assert_eq!(count(&full, "SELECT count(*) FROM logs").await, 2);
}

/// An app whose write path (or process, by `options`' caps) is full: its
/// first request, two lines, went ahead (a refusal would have freed
/// nothing) and filled it.
async fn full_app(options: StoreOptions) -> App {
    let app = app_with(options, IngestLimits::default(), true);
    assert_eq!(
        post(&app, "/v1/ingest", &[], lines(2)).await.status,
        StatusCode::OK
    );
    app
}

/// `weft_ingest_wire_bytes_total`: the bytes of bodies read whole.
async fn wire_bytes(app: &App) -> u64 {
    let text = metrics_text(app).await;
    text.lines()
        .find_map(|l| l.strip_prefix("weft_ingest_wire_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wire bytes in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_path_refuses_a_body_without_reading_it_whole() {
    for (options, why) in [
        (
            StoreOptions {
                max_buffer_bytes: 1,
                ..StoreOptions::default()
            },
            "write path full",
        ),
        (
            StoreOptions {
                max_resident_bytes: 1,
                ..StoreOptions::default()
            },
            "memory full",
        ),
    ] {
        let app = full_app(options).await;
        let (addr, server) = serve(&app).await;
        let first = lines(2).len() as u64;
        assert_eq!(wire_bytes(&app).await, first);

        // A client that writes its 16 MiB body whole before reading still
        // reads the 429, and the body was dropped as it came, never held
        // whole: it is not among the bytes read.
        let answer = tokio::task::spawn_blocking(move || post_raw(addr, 16 << 20, false, ""))
            .await
            .unwrap()
            .expect("the refused client reads a clean answer, not a reset");
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        assert!(answer.contains(why), "{answer}");
        assert_eq!(wire_bytes(&app).await, first);
        assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 2);
        server.abort();
    }
}

#[tokio::test]
async fn merged_segments_answer_queries_with_each_row_once() {
    let app = app_with(
        StoreOptions {
            compact_min_segments: 3,
            ..StoreOptions::default()
        },
        IngestLimits::default(),
        true,
    );
    // Four flushes of one hour: four small segments.
    for k in 0..4 {
        let body: String = (0..5)
            .map(|i| {
                format!(
                    "{{\"ts\":\"2024-05-01T10:00:0{i}Z\",\"message\":\"b{k} l{i}\",\"trace_id\":\"t{k}\"}}\n"
                )
            })
            .collect();
        let a = post(&app, "/v1/ingest", &[], body.into_bytes()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        app.store.flush().unwrap().expect("a batch to flush");
    }
    // Queries before the merge read (and cache) the small segments.
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 20);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM logs WHERE correlation_id = 't2'"
        )
        .await,
        5
    );
    let merged = app.store.compact().unwrap().expect("four small segments");
    assert_eq!(merged.merged.len(), 4);
    assert_eq!(
        app.store.data().remove_retired(std::time::Duration::ZERO),
        8,
        "four segments and their id indexes"
    );
    // Afterwards they read the merged segment alone: every row once.
    assert_eq!(count(&app, "SELECT count(*) FROM logs").await, 20);
    assert_eq!(
        count(&app, "SELECT count(DISTINCT message) FROM logs").await,
        20
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM logs WHERE correlation_id = 't2'"
        )
        .await,
        5
    );
    let text = metrics_text(&app).await;
    for want in [
        "weft_compactions_total{tenant=\"default\"} 1",
        "weft_compacted_segments_total{tenant=\"default\"} 4",
        "weft_compaction_errors_total{tenant=\"default\"} 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}
