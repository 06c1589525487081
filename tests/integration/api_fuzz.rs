//! The whole HTTP API fuzzed from its own OpenAPI document by schemathesis
//! (from PyPI, installed by `.ci/run`), against the real daemon on
//! loopback: every generated request, valid or not, must get an answer that
//! is not a 5xx, and the daemon must stay healthy. `tests/python/st_hooks.py`
//! teaches schemathesis to send NDJSON bodies. Bounded: 20 examples per
//! operation, deterministic generation.

use std::process::Command;

use weft_tests::daemon::Daemon;
use weft_tests::{python, repo_root};

#[test]
fn schemathesis_finds_no_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let url = format!("http://{}/openapi.json", d.addr());
    let out = Command::new(python())
        .args(["-m", "schemathesis.cli", "run", &url])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "20", "--generation-deterministic"])
        .args(["--workers", "1", "--no-color"])
        .env("PYTHONPATH", repo_root().join("tests/python"))
        .env("SCHEMATHESIS_HOOKS", "st_hooks")
        .output()
        .expect("python3 runs schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    assert!(
        d.scalar("SELECT count(*) FROM rejects") > 0,
        "fuzzed bodies are kept as rejects"
    );
}
