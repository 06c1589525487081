//! `weft import` as a user runs it: the real binary on real files.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use weft_tests::{testdata, weft, weft_bin, weft_ok};

fn summary(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("summary JSON ({e}): {out}"))
}

fn manifest(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn rows(m: &Value, table: &str) -> u64 {
    m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["table"] == table)
        .map(|s| s["rows"].as_u64().unwrap())
        .sum()
}

#[test]
fn malformed_input_keeps_the_valid_rest_and_every_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let file = testdata("malformed.ndjson");
    let s = summary(&weft_ok(&[
        "import",
        "--data",
        data,
        "--json",
        file.to_str().unwrap(),
    ]));
    assert_eq!(s["accepted"], 4, "{s}");
    assert_eq!(s["rejected"], 9, "{s}");
    assert_eq!(s["lines"], 13, "{s}");
    let m = manifest(dir.path());
    assert_eq!(rows(&m, "logs"), 4);
    assert_eq!(rows(&m, "rejects"), 9);
    let samples: Vec<&str> = s["reject_samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want_prefixes = [
        ":4: not JSON",
        ":5: not a JSON object: the line is an array",
        ":6: invalid JSON: unexpected end of input",
        ":7: invalid UTF-8 at byte 17",
        ":8: invalid JSON: unpaired UTF-16 surrogate",
        ":9: invalid JSON: nesting too deep",
        ":10: not a JSON object: the line is a string",
    ];
    for want in want_prefixes {
        assert!(
            samples.iter().any(|s| s.contains(want)),
            "no reject {want:?} in {samples:#?}"
        );
    }
}

#[test]
fn human_summary_names_rejects_and_strict_fails_without_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let file = testdata("malformed.ndjson");
    let out = weft(&["import", "--data", data, "--strict", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("13 lines, 4 accepted, 9 rejected"),
        "{stdout}"
    );
    assert!(stdout.contains("malformed.ndjson:4: not JSON"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("9 line(s) rejected and --strict is set")
    );
    assert_eq!(
        rows(&manifest(dir.path()), "logs"),
        4,
        "valid lines still imported"
    );
}

#[test]
fn gzip_zstd_stdin_and_many_files_import_the_same_records() {
    let src = std::fs::read(testdata("styles.ndjson")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let gz = tmp.path().join("styles.ndjson.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(&src).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    // Named .log: the format is found by magic bytes, not by the name.
    let zst = tmp.path().join("styles.log");
    std::fs::write(&zst, zstd::encode_all(&src[..], 3).unwrap()).unwrap();

    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let plain = testdata("styles.ndjson");
    let s = summary(&weft_ok(&[
        "import",
        "--data",
        data,
        "--json",
        plain.to_str().unwrap(),
        gz.to_str().unwrap(),
        zst.to_str().unwrap(),
    ]));
    assert_eq!(s["files"], 3);
    assert_eq!(s["accepted"], 96, "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
    assert_eq!(s["bytes_in"], 3 * src.len() as u64);

    let mut child = Command::new(weft_bin())
        .args(["import", "--data", data, "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&src).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let s = summary(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(s["accepted"], 32);
    assert_eq!(
        rows(&manifest(tmp.path().join("data").as_path()), "logs"),
        128
    );
}

#[test]
fn unreadable_file_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plain = testdata("styles.ndjson");
    let out = weft(&[
        "import",
        "--data",
        data.to_str().unwrap(),
        plain.to_str().unwrap(),
        "/no/such/file.ndjson",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /no/such/file.ndjson"), "{err}");
    assert!(
        !data.exists(),
        "nothing imported when an input is unreadable"
    );
}

#[test]
fn oversized_line_is_rejected_by_the_configured_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("weft.toml");
    std::fs::write(&cfg, "[import]\nmax_line_bytes = 64\n").unwrap();
    let input = tmp.path().join("in.ndjson");
    let long = format!("{{\"msg\":\"{}\"}}", "x".repeat(10_000));
    std::fs::write(
        &input,
        format!("{{\"msg\":\"short\"}}\n{long}\n{{\"msg\":\"after\"}}\n"),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let s = summary(&weft_ok(&[
        "import",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
        input.to_str().unwrap(),
    ]));
    assert_eq!(
        (s["accepted"].as_u64(), s["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let sample = s["reject_samples"][0].as_str().unwrap();
    assert!(
        sample.ends_with(
            ":2: line of 10010 bytes is longer than the 64-byte limit; first 64 bytes kept"
        ),
        "{sample}"
    );
}

#[test]
fn bad_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("weft.toml");
    std::fs::write(&cfg, "[import]\nmax_line = 64\n").unwrap();
    let out = weft(&["import", "--config", cfg.to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid config") && err.contains("max_line"),
        "{err}"
    );
}
