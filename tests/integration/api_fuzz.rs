//! The whole HTTP API fuzzed from its own OpenAPI document by schemathesis
//! (from PyPI, installed by `.ci/run`), against the real daemon on
//! loopback: every generated request, valid or not, must get an answer that
//! is not a 5xx, and the daemon must stay healthy. `tests/python/st_hooks.py`
//! teaches schemathesis to send NDJSON bodies. Bounded: 20 examples per
//! operation, deterministic generation.

use std::process::Command;

use weft_tests::daemon::{Daemon, DaemonOptions};
use weft_tests::{create_token, python, repo_root};

/// Runs schemathesis over the daemon's own document with `headers` on every
/// request; panics on a failed run, returns its output.
fn schemathesis(d: &Daemon, headers: &[String]) -> String {
    // The document from the source tree (the router serves the same bytes,
    // see weft-server's openapi test): a caller without a good token cannot
    // fetch it from the daemon.
    let doc = repo_root().join("crates/weft-server/src/openapi.json");
    let url = format!("http://{}", d.addr());
    let mut cmd = Command::new(python());
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(&doc)
        .args(["--url", &url])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "20", "--generation-deterministic"])
        .args(["--workers", "1", "--no-color"]);
    for h in headers {
        cmd.args(["--header", h]);
    }
    let out = cmd
        .env("PYTHONPATH", repo_root().join("tests/python"))
        .env("SCHEMATHESIS_HOOKS", "st_hooks")
        .output()
        .expect("python3 runs schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}\n--- daemon ---\n{}",
        out.status,
        d.stderr_text()
    );
    // It really ran: every documented operation was tested.
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no 'Tested:' line in schemathesis output:\n{stdout}"));
    assert!(tested >= 19, "{stdout}");
    assert!(stdout.contains(" passed"), "{stdout}");
    // And the daemon is still up and answering.
    assert_eq!(d.get("/healthz").unwrap().status, 200);
    assert_eq!(d.get("/readyz").unwrap().status, 200);
    stdout
}

#[test]
fn schemathesis_finds_no_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    schemathesis(&d, &[]);
    assert!(
        d.scalar("SELECT count(*) FROM rejects") > 0,
        "fuzzed bodies are kept as rejects"
    );
}

/// With tokens: an admin of one tenant reaches every route; an ingest token
/// meets 403 on the read routes; a made-up token 401 everywhere. None of it
/// is a 5xx, and the fuzzed queries land in the tenant's audit trail.
#[test]
fn schemathesis_with_tokens_finds_no_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    let admin = create_token(&config, "admin", "fuzz");
    let ingest = create_token(&config, "ingest", "fuzz");
    let options = DaemonOptions::default().config(&config);
    let d = Daemon::start_with(&dir.path().join("data"), &options);
    for t in [&admin, &ingest, &"weft_0badc0de_0badc0de".to_owned()] {
        schemathesis(&d, &[format!("Authorization: Bearer {t}")]);
    }
    let trail =
        std::fs::read_to_string(dir.path().join("data/tenants/fuzz/audit/audit.ndjson")).unwrap();
    assert!(
        trail.contains("\"outcome\":\"denied\""),
        "the ingest token's reads"
    );
    assert!(trail.contains("\"outcome\":\"refused\""), "fuzzed SQL");
}
