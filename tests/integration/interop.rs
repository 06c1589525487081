//! Segments are plain Parquet: DuckDB and pyarrow read them with no weft
//! running. Needs python3 with duckdb and pyarrow (`.ci/run` installs them).

use weft_tests::{python_script, testdata, weft_ok};

#[test]
fn duckdb_and_pyarrow_read_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let styles = testdata("styles.ndjson");
    let malformed = testdata("malformed.ndjson");
    weft_ok(&[
        "import",
        "--data",
        data,
        "--quiet",
        styles.to_str().unwrap(),
        malformed.to_str().unwrap(),
    ]);
    let out = python_script(
        "check_segments.py",
        &[
            data,
            styles.to_str().unwrap(),
            malformed.to_str().unwrap(),
            "4e1e84b5c3f3301463d7b3128ea104b5",
        ],
    );
    assert!(out.starts_with("ok: "), "{out}");
}
