//! Helpers for weft's end-to-end tests: find the built `weft` binary, run
//! it, run the Python interop scripts, and drive `weft serve` over loopback
//! HTTP ([`daemon`]).

pub mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_owned()
}

/// A file under `testdata/`.
pub fn testdata(name: &str) -> PathBuf {
    repo_root().join("testdata").join(name)
}

/// The `weft` binary of this build profile. See [`built_bin`].
pub fn weft_bin() -> PathBuf {
    built_bin("weft")
}

/// A binary of another workspace package (`weft`, or the benches'
/// `gen-corpus`) of this build profile, in the directory above the one
/// holding this test executable. `cargo test` does not build them: run
/// `cargo build -p weft -p weft-benches` first, as README.md and `.ci/run`
/// do.
pub fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p weft -p weft-benches` before the tests",
        bin.display()
    );
    bin
}

/// Runs `weft` with `args` and returns its output.
pub fn weft(args: &[&str]) -> Output {
    Command::new(weft_bin())
        .args(args)
        .output()
        .expect("weft runs")
}

/// Runs `weft`, asserting success; returns stdout.
pub fn weft_ok(args: &[&str]) -> String {
    let out = weft(args);
    assert!(
        out.status.success(),
        "weft {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `weft token create --role ROLE --tenant TENANT --config CONFIG`: the
/// new token (its hash is appended to `config`, made if missing).
pub fn create_token(config: &Path, role: &str, tenant: &str) -> String {
    let c = config.to_str().expect("utf-8 path");
    weft_ok(&[
        "--config", c, "token", "create", "--role", role, "--tenant", tenant,
    ])
    .trim()
    .to_owned()
}

/// The Python interpreter the interop tests use (`WEFT_PYTHON`, else python3).
pub fn python() -> String {
    std::env::var("WEFT_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs a script from `tests/python/` with `args`, asserting success; returns stdout.
pub fn python_script(script: &str, args: &[&str]) -> String {
    let path = repo_root().join("tests/python").join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}
