//! `/openapi.json` and the router agree: every documented operation is
//! routed, and every method the router takes on a documented path is
//! documented. (The fuzz run of the whole API from this document, with
//! schemathesis, is in `tests/integration/api_fuzz.rs`.)

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use weft_server::OPENAPI;

/// A request to `path` with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{index}", "app-logs")
        .replace("{id}", "no-such-id")
        .replace("{name}", "errors_by_service")
}

#[tokio::test]
async fn the_document_and_the_router_agree() {
    // The ingest tests' app: a replayed store behind the full router (kept
    // alive to the end: it owns the data directory).
    let whole = crate::ingest::app();
    let app = whole.router.clone();

    let served = app
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let bytes = served.into_body().collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc, serde_json::from_str::<Value>(OPENAPI).unwrap());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 16, "{:?}", paths.keys());
    let mut operations = 0;
    for (path, item) in paths {
        let uri = concrete(path);
        for method in ["get", "head", "post", "put", "delete", "patch"] {
            let documented = item.get(method).is_some();
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(m)
                        .uri(&uri)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            // An unrouted path is a 404 with an empty body; a handler's own
            // 404 (no such trace, no such saved query) says why.
            let routed = status != StatusCode::METHOD_NOT_ALLOWED
                && !(status == StatusCode::NOT_FOUND && body.is_empty());
            if documented {
                operations += 1;
                assert!(routed, "{method} {path} is documented but answers {status}");
                for (code, _) in item[method]["responses"].as_object().unwrap() {
                    assert!(
                        code.parse::<u16>().is_ok(),
                        "{method} {path}: response {code}"
                    );
                }
            } else if method != "head" {
                // HEAD is answered wherever GET is; other methods must be documented.
                assert!(
                    !routed,
                    "{method} {path} is routed ({status}) but not documented"
                );
            }
        }
    }
    assert!(operations >= 20, "{operations}");
    let resp = app
        .oneshot(Request::get("/no/such/path").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_tokens_every_route_but_health_is_documented_and_answered_401() {
    let site = crate::access::site();
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = path == "/healthz" || path == "/readyz";
            assert_eq!(
                op["security"] == serde_json::json!([]),
                public,
                "{method} {path}: security"
            );
            let a = site
                .call(&method.to_uppercase(), &concrete(path), None, &[], "")
                .await;
            if public {
                assert_ne!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            } else {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
                for code in ["401", "403"] {
                    assert!(
                        op["responses"][code].is_object(),
                        "{method} {path} does not document {code}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}
