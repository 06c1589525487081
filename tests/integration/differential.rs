//! weft against independent answers on a generated corpus: traces against
//! the generator's ground truth, counts against DuckDB over the raw NDJSON.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use weft_tests::{built_bin, python_script, weft_ok};

#[test]
fn traces_match_ground_truth_and_counts_match_duckdb() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.ndjson");
    let truth = tmp.path().join("truth.ndjson");
    let gen_corpus = built_bin("gen-corpus");
    let status = Command::new(&gen_corpus)
        .arg("--out")
        .arg(&corpus)
        .args([
            "--bytes",
            "3M",
            "--seed",
            "7",
            "--truth-every",
            "40",
            "--truth",
        ])
        .arg(&truth)
        .status()
        .expect("gen-corpus runs");
    assert!(status.success());
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    weft_ok(&[
        "import",
        "--quiet",
        "--data",
        data,
        corpus.to_str().unwrap(),
    ]);

    let mut traces = BTreeMap::new();
    for line in std::fs::read_to_string(&truth).unwrap().lines() {
        let t: Value = serde_json::from_str(line).unwrap();
        let id = t["id"].as_str().unwrap().to_owned();
        let out = weft_ok(&["trace", "--json", "--data", data, &id]);
        traces.insert(id, serde_json::from_str::<Value>(&out).unwrap());
    }
    assert!(traces.len() >= 10, "only {} truth ids", traces.len());
    let traces_path = tmp.path().join("traces.json");
    std::fs::write(&traces_path, serde_json::to_string(&traces).unwrap()).unwrap();

    let q = |sql: &str| -> Value {
        serde_json::from_str(&weft_ok(&[
            "query", "--format", "json", "--data", data, sql,
        ]))
        .unwrap()
    };
    let total = q("SELECT count(*) FROM logs")["rows"][0][0].clone();
    let with_id = q("SELECT count(correlation_id) FROM logs")["rows"][0][0].clone();
    let by_service: serde_json::Map<String, Value> =
        q("SELECT service, count(*) FROM logs GROUP BY service")["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].clone()))
            .collect();
    let counts = serde_json::json!({"total": total, "with_id": with_id, "by_service": by_service});
    let counts_path = tmp.path().join("counts.json");
    std::fs::write(&counts_path, counts.to_string()).unwrap();

    let out = python_script(
        "differential.py",
        &[
            corpus.to_str().unwrap(),
            truth.to_str().unwrap(),
            traces_path.to_str().unwrap(),
            counts_path.to_str().unwrap(),
        ],
    );
    assert!(out.starts_with("ok: "), "{out}");
}
