//! Tokens, roles, tenants and the audit trail; the streamed formats, the
//! row cap and the query limits.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use weft_ingest::NormalizerConfig;
use weft_query::{Engine, QueryOptions, saved};
use weft_server::{AppState, AuthConfig, IngestLimits, Role, Tenant, router};
use weft_storage::SegmentOptions;
use weft_storage::store::{Store, StoreOptions};

/// A server with tenants `acme` and `globex` (and `default`), and a token
/// of every role for each.
pub(crate) struct Site {
    router: axum::Router,
    tokens: HashMap<(&'static str, Role), String>,
    dir: tempfile::TempDir,
}

fn tenant(path: &std::path::Path, options: &QueryOptions) -> Tenant {
    let store = Store::open(
        path,
        SegmentOptions::default(),
        NormalizerConfig::default(),
        StoreOptions::default(),
    )
    .unwrap();
    store.replay().unwrap();
    let engine = Engine::over(Arc::clone(store.data()), options.clone());
    Tenant {
        engine,
        store: Some(store),
    }
}

fn site_with(auth: bool, options: QueryOptions, max_rows: usize) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AuthConfig::default();
    let mut tokens = HashMap::new();
    for t in ["acme", "globex", "default"] {
        for role in [Role::Ingest, Role::Query, Role::Admin] {
            let (token, entry) = AuthConfig::create(role, t, "now".into()).unwrap();
            config.tokens.push(entry);
            tokens.insert((t, role), token);
        }
    }
    let default = tenant(dir.path(), &options);
    let store = default.store.clone().unwrap();
    let mut state = AppState::new(default.engine, saved::load(None).unwrap(), max_rows)
        .with_store(store, IngestLimits::default());
    if auth {
        state = state.with_auth(config);
        for t in ["acme", "globex"] {
            state = state.with_tenant(t, tenant(&dir.path().join("tenants").join(t), &options));
        }
    }
    Site {
        router: router(Arc::new(state)),
        tokens,
        dir,
    }
}

pub(crate) fn site() -> Site {
    site_with(true, QueryOptions::default(), 1000)
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    frames: usize,
    /// The body ended in an error after the status was sent.
    broken: bool,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Site {
    fn token(&self, tenant: &'static str, role: Role) -> &str {
        &self.tokens[&(tenant, role)]
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        let mut frames = 0;
        let mut broken = false;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        frames += 1;
                        bytes.extend_from_slice(&data);
                    }
                }
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        Answer {
            status,
            headers,
            body: bytes,
            frames,
            broken,
        }
    }

    async fn query(&self, token: Option<&str>, body: Value) -> Answer {
        self.call(
            "POST",
            "/v1/query",
            token,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    async fn ingest(&self, token: Option<&str>, lines: &str) -> Answer {
        self.call("POST", "/v1/ingest", token, &[], lines.to_owned())
            .await
    }
}

fn lines(service: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"ts\":\"2026-11-22T10:00:{:02}Z\",\"service\":\"{service}\",\"message\":\"{service} {i}\",\"trace_id\":\"shared\"}}\n",
                i % 60
            )
        })
        .collect()
}

#[tokio::test]
async fn every_endpoint_but_health_needs_a_token_and_roles_decide_the_rest() {
    let s = site();
    for uri in ["/healthz", "/readyz"] {
        assert_eq!(
            s.call("GET", uri, None, &[], "").await.status,
            StatusCode::OK
        );
    }
    let q = json!({"sql": "SELECT 1"}).to_string();
    let routes: &[(&str, &str, &str)] = &[
        ("POST", "/v1/query", q.as_str()),
        ("GET", "/v1/query?sql=SELECT%201", ""),
        ("GET", "/v1/trace/shared", ""),
        ("GET", "/v1/queries", ""),
        ("POST", "/v1/ingest", "{}\n"),
        ("POST", "/_bulk", ""),
        ("POST", "/loki/api/v1/push", ""),
        ("POST", "/v1/logs", ""),
        ("GET", "/metrics", ""),
        ("GET", "/openapi.json", ""),
    ];
    for (method, uri, body) in routes {
        let json = [("content-type", "application/json")];
        for token in [None, Some("weft_00_00"), Some("garbage")] {
            let a = s.call(method, uri, token, &json, body.to_string()).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {token:?}"
            );
            assert_eq!(a.headers["www-authenticate"], "Bearer realm=\"weft\"");
            if *uri == "/_bulk" {
                // Elasticsearch clients check every answer for this.
                assert_eq!(a.headers["x-elastic-product"], "Elasticsearch");
            }
            assert!(a.json()["error"].as_str().unwrap().contains("token"));
        }
    }
    // Which role reaches which route: (route index, ingest, query, admin).
    // `/metrics` shows every tenant: only the default tenant's admin.
    let expect = |i: usize| match i {
        0..=3 => (false, true, true),
        4..=7 => (true, false, true),
        8 => (false, false, false),
        _ => (true, true, true),
    };
    for (i, (method, uri, body)) in routes.iter().enumerate() {
        let (ingest, query, admin) = expect(i);
        for (role, allowed) in [
            (Role::Ingest, ingest),
            (Role::Query, query),
            (Role::Admin, admin),
        ] {
            let json = [("content-type", "application/json")];
            let a = s
                .call(
                    method,
                    uri,
                    Some(s.token("acme", role)),
                    &json,
                    body.to_string(),
                )
                .await;
            if allowed {
                assert!(
                    !matches!(a.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                    "{method} {uri} as {role:?}: {}",
                    a.status
                );
            } else {
                assert_eq!(
                    a.status,
                    StatusCode::FORBIDDEN,
                    "{method} {uri} as {role:?}"
                );
                assert!(a.json()["error"].as_str().unwrap().contains(role.as_str()));
            }
        }
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_rows() {
    let s = site();
    let a = s
        .ingest(Some(s.token("acme", Role::Ingest)), &lines("acme-api", 3))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let a = s
        .ingest(
            Some(s.token("globex", Role::Admin)),
            &lines("globex-api", 2),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());

    let count = "SELECT count(*), min(service), max(service) FROM logs";
    for (tenant, n, svc) in [("acme", 3, "acme-api"), ("globex", 2, "globex-api")] {
        for role in [Role::Query, Role::Admin] {
            let a = s
                .query(Some(s.token(tenant, role)), json!({"sql": count}))
                .await;
            assert_eq!(a.json()["rows"][0], json!([n, svc, svc]), "{tenant}");
        }
        let t = s
            .call(
                "GET",
                "/v1/trace/shared",
                Some(s.token(tenant, Role::Query)),
                &[],
                "",
            )
            .await;
        assert_eq!(t.json()["line_count"], n, "{tenant}");
    }
    // Each tenant's data is in its own directory.
    for t in ["acme", "globex"] {
        assert!(s.dir.path().join("tenants").join(t).join("wal").is_dir());
    }
    // A header cannot move a token to another tenant, for reads or writes.
    for header in ["x-weft-tenant", "x-scope-orgid"] {
        let a = s
            .call(
                "POST",
                "/v1/query",
                Some(s.token("acme", Role::Query)),
                &[(header, "globex"), ("content-type", "application/json")],
                json!({"sql": count}).to_string(),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{header}");
        let a = s
            .call(
                "POST",
                "/v1/ingest",
                Some(s.token("acme", Role::Ingest)),
                &[(header, "globex")],
                lines("x", 1),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{header}");
        // Naming one's own tenant is fine.
        let a = s
            .call(
                "POST",
                "/v1/query",
                Some(s.token("acme", Role::Query)),
                &[(header, "acme"), ("content-type", "application/json")],
                json!({"sql": count}).to_string(),
            )
            .await;
        assert_eq!(a.json()["rows"][0][0], 3, "{header}");
    }
    let a = s
        .query(Some(s.token("globex", Role::Query)), json!({"sql": count}))
        .await;
    assert_eq!(a.json()["rows"][0][0], 2, "nothing reached globex");
}

#[tokio::test]
async fn every_lookup_and_refusal_is_in_the_tenants_audit_table() {
    let s = site();
    let q = s.token("acme", Role::Query);
    let ok = s
        .query(
            Some(q),
            json!({"sql": "SELECT $x AS x", "params": {"x": 7}}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let bad = s.query(Some(q), json!({"sql": "SELEC 1"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let why = bad.json()["error"].as_str().unwrap().to_owned();
    assert!(
        why.contains("SELEC") && why.contains("Line: 1, Column: 1"),
        "the position: {why}"
    );
    let drop = s.query(Some(q), json!({"sql": "DROP TABLE logs"})).await;
    assert_eq!(drop.status, StatusCode::BAD_REQUEST);
    let t = s
        .call("GET", "/v1/trace/nope?context=2", Some(q), &[], "")
        .await;
    assert_eq!(t.status, StatusCode::NOT_FOUND);
    let denied = s
        .query(
            Some(s.token("acme", Role::Ingest)),
            json!({"sql": "SELECT 2"}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    // Only admins see the audit table.
    let hidden = s
        .query(Some(q), json!({"sql": "SELECT * FROM audit"}))
        .await;
    assert_eq!(hidden.status, StatusCode::BAD_REQUEST);
    assert!(hidden.json()["error"].as_str().unwrap().contains("audit"));

    let admin = s.token("acme", Role::Admin);
    let a = s
        .query(
            Some(admin),
            json!({"sql": "SELECT endpoint, statement, params, outcome, rows, token_id IS NOT NULL, tenant FROM audit ORDER BY time, id"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let rows = a.json()["rows"].as_array().unwrap().clone();
    let want = [
        json!([
            "POST /v1/query",
            "SELECT $x AS x",
            "{\"x\":7}",
            "ok",
            1,
            true,
            "acme"
        ]),
        json!([
            "POST /v1/query",
            "SELEC 1",
            null,
            "refused",
            null,
            true,
            "acme"
        ]),
        json!([
            "POST /v1/query",
            "DROP TABLE logs",
            null,
            "refused",
            null,
            true,
            "acme"
        ]),
        json!([
            "GET /v1/trace",
            "nope",
            "{\"context\":2}",
            "ok",
            0,
            true,
            "acme"
        ]),
        json!(["POST /v1/query", null, null, "denied", null, true, "acme"]),
        json!([
            "POST /v1/query",
            "SELECT * FROM audit",
            null,
            "refused",
            null,
            true,
            "acme"
        ]),
        // The admin's own query is recorded before it runs.
        json!([
            "POST /v1/query",
            "SELECT endpoint, statement, params, outcome, rows, token_id IS NOT NULL, tenant FROM audit ORDER BY time, id",
            null,
            "incomplete",
            null,
            true,
            "acme"
        ]),
    ];
    assert_eq!(rows, want);
    // The other tenant's trail holds none of it.
    let g = s
        .query(
            Some(s.token("globex", Role::Admin)),
            json!({"sql": "SELECT count(*) FROM audit"}),
        )
        .await;
    assert_eq!(g.json()["rows"][0][0], 1, "only this query");
    // A request without a good token names no tenant: it is counted and
    // logged, not written to any trail (anyone could fill the disk so).
    let anon = s
        .query(None, json!({"sql": "SELECT 3", "x": "y".repeat(100_000)}))
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert!(!s.dir.path().join("audit/audit.ndjson").exists());
    let m = s
        .call(
            "GET",
            "/metrics",
            Some(s.token("default", Role::Admin)),
            &[],
            "",
        )
        .await;
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains("weft_auth_refused_total{status=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weft_auth_refused_total{status=\"403\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn formats_stream_and_json_stops_at_the_row_cap() {
    let s = site_with(false, QueryOptions::default(), 1000);
    let n = 200_000;
    let sql = format!("SELECT v, 'x' || v AS s FROM generate_series(1, {n}) AS t(v)");
    // JSON: the cap, then truncated.
    let a = s.query(None, json!({"sql": sql})).await;
    let doc = a.json();
    assert_eq!(doc["row_count"], 1000);
    assert_eq!(doc["truncated"], true);
    assert_eq!(doc["rows"].as_array().unwrap().len(), 1000);
    let small = s
        .query(None, json!({"sql": "SELECT 1 AS one"}))
        .await
        .json();
    assert_eq!(small["truncated"], false);
    assert_eq!(small["columns"], json!([{"name": "one", "type": "Int64"}]));

    // NDJSON: every row, sent in many pieces as batches are produced.
    let a = s.query(None, json!({"sql": sql, "format": "ndjson"})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/x-ndjson");
    let text = String::from_utf8(a.body.clone()).unwrap();
    assert_eq!(text.lines().count(), n);
    assert_eq!(
        text.lines().last().unwrap(),
        format!("{{\"v\":{n},\"s\":\"x{n}\"}}")
    );
    assert!(
        a.frames >= 10,
        "streamed, not one buffer: {} frames",
        a.frames
    );
    assert!(!a.broken);

    // CSV: a header, then every row; an empty answer is the header alone.
    let a = s.query(None, json!({"sql": sql, "format": "csv"})).await;
    assert_eq!(a.headers["content-type"], "text/csv; charset=utf-8");
    let text = String::from_utf8(a.body.clone()).unwrap();
    let mut it = text.lines();
    assert_eq!(it.next(), Some("v,s"));
    assert_eq!(it.next(), Some("1,x1"));
    assert_eq!(text.lines().count(), n + 1);
    assert!(a.frames >= 10, "{} frames", a.frames);
    let empty = s
        .query(
            None,
            json!({"sql": "SELECT 1 AS a WHERE false", "format": "csv"}),
        )
        .await;
    assert_eq!(String::from_utf8(empty.body).unwrap(), "a\n");

    // Arrow IPC: a stream any Arrow reader takes.
    let a = s.query(None, json!({"sql": sql, "format": "arrow"})).await;
    assert_eq!(
        a.headers["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(a.body), None).unwrap();
    assert_eq!(reader.schema().field(1).name(), "s");
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, n);
    let get = s
        .call(
            "GET",
            "/v1/query?sql=SELECT%2042%20AS%20x&format=ndjson",
            None,
            &[],
            "",
        )
        .await;
    assert_eq!(String::from_utf8(get.body).unwrap(), "{\"x\":42}\n");

    let nested = s
        .query(
            None,
            json!({"sql": "SELECT make_array(1, 2) AS a", "format": "csv"}),
        )
        .await;
    assert_eq!(nested.status, StatusCode::BAD_REQUEST);
    assert!(
        nested.json()["error"]
            .as_str()
            .unwrap()
            .contains("CSV cannot hold")
    );
    let bad = s
        .query(None, json!({"sql": "SELECT 1", "format": "xml"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("arrow"));
}

#[tokio::test]
async fn every_refused_statement_kind_is_400_and_recorded() {
    let s = site_with(false, QueryOptions::default(), 100);
    let refused = [
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "INSERT INTO logs (message) VALUES ('x')",
        "UPDATE logs SET message = 'x'",
        "DELETE FROM logs",
        "DROP TABLE logs",
        "COPY (SELECT 1) TO '/tmp/weft-http-escape.csv'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
        "SET datafusion.execution.target_partitions = 1",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('http://127.0.0.1:1/x.csv')",
    ];
    for sql in refused {
        for format in ["json", "ndjson", "arrow"] {
            let a = s.query(None, json!({"sql": sql, "format": format})).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{sql} ({format})");
            assert!(a.json()["error"].is_string(), "{sql}");
        }
        let saved_path = s
            .call(
                "GET",
                &format!("/v1/query?sql={}", urlencode(sql)),
                None,
                &[],
                "",
            )
            .await;
        assert_eq!(saved_path.status, StatusCode::BAD_REQUEST, "GET {sql}");
    }
    assert!(!std::path::Path::new("/tmp/weft-http-escape.csv").exists());
    let a = s
        .query(
            None,
            json!({"sql": "SELECT outcome, count(*) FROM audit GROUP BY outcome ORDER BY outcome"}),
        )
        .await;
    assert_eq!(
        a.json()["rows"],
        json!([["incomplete", 1], ["refused", refused.len() * 4]])
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_memory_limits_are_400_and_recorded() {
    let quick = site_with(
        false,
        QueryOptions {
            timeout_secs: 0.05,
            ..Default::default()
        },
        100,
    );
    let slow = "SELECT count(*) FROM generate_series(1, 6000) a CROSS JOIN generate_series(1, 6000) b WHERE a.value + b.value = 7";
    // Streamed formats wait for the first batch before the status, so a
    // query that times out before its first row is a 400 in every format.
    for format in ["json", "ndjson"] {
        let a = quick
            .query(None, json!({"sql": slow, "format": format}))
            .await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{format}: {:?} broken={}",
            String::from_utf8_lossy(&a.body),
            a.broken
        );
        assert!(
            a.json()["error"].as_str().unwrap().contains("timed out"),
            "{format}"
        );
    }
    let small = site_with(
        false,
        QueryOptions {
            memory_limit: 64 * 1024,
            ..Default::default()
        },
        100,
    );
    let big_sort = "SELECT v FROM generate_series(1, 2000000) AS t(v) ORDER BY v DESC";
    let a = small.query(None, json!({"sql": big_sort})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["error"].as_str().unwrap().contains("memory limit"),
        "{}",
        a.json()
    );

    let trail =
        |site: &Site| std::fs::read_to_string(site.dir.path().join("audit/audit.ndjson")).unwrap();
    assert_eq!(trail(&quick).matches("\"outcome\":\"timeout\"").count(), 2);
    assert_eq!(
        trail(&small)
            .matches("\"outcome\":\"memory_limit\"")
            .count(),
        1
    );
}
