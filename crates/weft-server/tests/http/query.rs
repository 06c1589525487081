//! Query, trace, saved-query and health endpoints over imported segments.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use weft_ingest::{BatchBuilder, FieldRegistry, NormalizerConfig};
use weft_query::{Engine, QueryOptions, saved};
use weft_server::{AppState, router};
use weft_storage::{DataDir, SegmentOptions, Table};

fn app(dir: &std::path::Path) -> axum::Router {
    {
        let data = DataDir::open_writer(dir, SegmentOptions::default()).unwrap();
        let mut b = BatchBuilder::new(
            Arc::new(NormalizerConfig::default()),
            Arc::new(FieldRegistry::new(100)),
        );
        let src: Arc<str> = Arc::from("t");
        for (i, l) in [
            r#"{"ts":"2023-11-14T22:13:20Z","service":"api","level":"info","msg":"in","trace_id":"abc"}"#,
            r#"{"ts":"2023-11-14T22:13:21Z","service":"db","level":"error","msg":"boom","trace_id":"abc"}"#,
            r#"{"ts":"2023-11-14T22:13:22Z","service":"api","level":"info","msg":"other"}"#,
        ]
        .iter()
        .enumerate()
        {
            b.push_line(&src, i as u64 + 1, l.as_bytes());
        }
        let logs = b.finish().0;
        data.append_batches(Table::Logs, &logs, 0).unwrap();
    }
    let engine = Engine::open(dir, QueryOptions::default()).unwrap();
    router(Arc::new(AppState::new(
        engine,
        saved::load(None).unwrap(),
        2,
    )))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let req = Request::builder().method(method).uri(uri);
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test]
async fn health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/readyz", None).await.0, StatusCode::OK);
    call(&app, "POST", "/v1/query", Some(json!({"sql": "SELECT 1"}))).await;
    call(&app, "POST", "/v1/query", Some(json!({"sql": "SELEC"}))).await;
    let (s, _, text) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("weft_queries_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weft_queries_total{outcome=\"client_error\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weft_segment_rows{tenant=\"default\",table=\"logs\"} 3"),
        "{text}"
    );
    assert_eq!(
        text.matches("# TYPE weft_segments gauge").count(),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn query_json_truncates_and_bad_sql_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/query",
        Some(json!({"sql": "SELECT service, message FROM logs ORDER BY timestamp"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["columns"],
        json!([{"name": "service", "type": "Utf8"}, {"name": "message", "type": "Utf8"}])
    );
    assert_eq!(v["rows"], json!([["api", "in"], ["db", "boom"]]));
    assert_eq!(v["truncated"], true);
    let (s, v, _) = call(&app, "POST", "/v1/query", Some(json!({"sql": "SELECT count(*) AS n FROM logs WHERE service = $s", "params": {"s": "api"}}))).await;
    assert_eq!((s, &v["rows"]), (StatusCode::OK, &json!([[2]])));
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/query",
        Some(json!({"sql": "SELECT nope FROM logs"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/query",
        Some(json!({"sql": "DROP TABLE logs"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("read-only"), "{v}");
    let (s, _, text) = call(
        &app,
        "GET",
        "/v1/query?sql=SELECT%20service%20FROM%20logs%20ORDER%20BY%20timestamp&format=csv",
        None,
    )
    .await;
    assert_eq!(
        (s, text.as_str()),
        (StatusCode::OK, "service\napi\ndb\napi\n")
    );
}

#[tokio::test]
async fn trace_and_saved_queries() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let (s, v, _) = call(&app, "GET", "/v1/trace/abc", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["line_count"], 2);
    assert_eq!(v["services"][1]["worst_level"], "error");
    assert_eq!(
        call(&app, "GET", "/v1/trace/none", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, v, _) = call(&app, "GET", "/v1/queries", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["queries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "trace_timeline")
    );
    let (s, v, _) = call(
        &app,
        "POST",
        "/v1/queries/trace_timeline",
        Some(json!({"params": {"id": "abc"}})),
    )
    .await;
    assert_eq!((s, v["row_count"].as_u64()), (StatusCode::OK, Some(2)));
    let (s, v, _) = call(&app, "POST", "/v1/queries/trace_timeline", Some(json!({}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("needs parameter id"),
        "{v}"
    );
    assert_eq!(
        call(&app, "POST", "/v1/queries/nope", None).await.0,
        StatusCode::NOT_FOUND
    );
}
