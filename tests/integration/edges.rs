//! The crate graph points one way: scan → ingest → storage → query → server
//! / cli. A lower layer never depends on a higher one.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// For each workspace crate, the weft crates it may depend on (normal,
/// build or dev dependencies alike).
const ALLOWED: &[(&str, &[&str])] = &[
    ("weft-scan", &[]),
    ("weft-ingest", &["weft-scan"]),
    ("weft-storage", &["weft-scan", "weft-ingest"]),
    ("weft-query", &["weft-scan", "weft-ingest", "weft-storage"]),
    (
        "weft-server",
        &["weft-scan", "weft-ingest", "weft-storage", "weft-query"],
    ),
    (
        "weft",
        &[
            "weft-scan",
            "weft-ingest",
            "weft-storage",
            "weft-query",
            "weft-server",
        ],
    ),
    (
        "weft-tests",
        &["weft-scan", "weft-ingest", "weft-storage", "weft-query"],
    ),
    (
        "weft-benches",
        &["weft-scan", "weft-ingest", "weft-storage", "weft-query"],
    ),
];

#[test]
fn crate_dependencies_point_one_way() {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(weft_tests::repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let packages = meta["packages"].as_array().unwrap();
    let mut seen = 0;
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            panic!("workspace crate {name} has no entry in ALLOWED: add it with its layer");
        };
        seen += 1;
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if dep.starts_with("weft") {
                assert!(
                    ok.contains(&dep),
                    "{name} depends on {dep}, against the layering (allowed: {ok:?})"
                );
            }
        }
    }
    assert_eq!(seen, packages.len());
    assert!(seen >= 5, "found only {seen} workspace crates");
}
