"""Reads a weft data directory with DuckDB and pyarrow, no weft involved,
and checks what they see against the NDJSON the directory was imported from.

usage: check_segments.py DATA_DIR STYLES_NDJSON MALFORMED_NDJSON REQUEST_ID
Exits non-zero with a message on the first mismatch.
"""

import datetime as dt
import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def main():
    data, styles_path, malformed_path, request_id = sys.argv[1:5]
    manifest = json.load(open(os.path.join(data, "manifest.json")))
    segs = manifest["segments"]
    logs_segs = [s for s in segs if s["table"] == "logs"]
    reject_segs = [s for s in segs if s["table"] == "rejects"]

    # pyarrow: every segment opens, row counts match the manifest.
    tables = []
    for s in segs:
        t = pq.read_table(os.path.join(data, s["path"]))
        check(t.num_rows == s["rows"], f"{s['path']}: pyarrow {t.num_rows} rows, manifest {s['rows']}")
        meta = pq.ParquetFile(os.path.join(data, s["path"])).metadata
        check(meta.row_group(0).column(0).compression == "ZSTD", f"{s['path']} is not zstd")
        if s["table"] == "logs":
            tables.append(t)

    styles = [json.loads(l) for l in open(styles_path, encoding="utf-8") if l.strip()]
    malformed_raw = open(malformed_path, "rb").read().split(b"\n")
    want_logs = len(styles) + 4
    got_logs = sum(t.num_rows for t in tables)
    check(got_logs == want_logs, f"pyarrow sees {got_logs} log rows, want {want_logs}")

    con = duckdb.connect()
    logs = f"read_parquet('{data}/segments/**/*.parquet', union_by_name=true, hive_partitioning=true)"
    rejects = f"read_parquet('{data}/rejects/**/*.parquet', union_by_name=true)"
    n = con.execute(f"SELECT count(*) FROM {logs}").fetchone()[0]
    check(n == want_logs, f"duckdb sees {n} log rows, want {want_logs}")

    # The request, across services, by correlation id alone.
    want_req = [r for r in styles if request_id in json.dumps(r)]
    rows = con.execute(
        f"SELECT service, level, message, epoch_ns(timestamp) AS ns FROM {logs} WHERE correlation_id = ? ORDER BY ns",
        [request_id],
    ).fetchall()
    check(len(rows) == len(want_req), f"request {request_id}: duckdb {len(rows)} rows, want {len(want_req)}")
    want_services = {
        r.get("service") or r.get("name") or r.get("app") or r.get("resource", {}).get("service", {}).get("name")
        for r in want_req
    }
    check({r[0] for r in rows} == want_services, f"services {sorted(r[0] for r in rows)} != {sorted(want_services)}")
    # nginx access lines carry no level; every other line's level is normalized.
    check(all(r[1] in ("trace", "debug", "info", "warn", "error", "fatal") for r in rows if r[0] != "edge-nginx"), f"levels {rows}")
    # pyarrow agrees row for row.
    pa_rows = []
    for t in tables:
        # Nanosecond timestamps do not fit Python datetimes: compare as integers.
        t = t.select(["correlation_id", "service", "level", "message", "timestamp"])
        t = t.set_column(4, "timestamp", t.column("timestamp").cast(pa.int64()))
        d = t.to_pydict()
        for i, cid in enumerate(d["correlation_id"]):
            if cid == request_id:
                pa_rows.append((d["service"][i], d["level"][i], d["message"][i], d["timestamp"][i]))
    check(sorted(pa_rows, key=lambda r: r[3]) == rows, f"pyarrow {pa_rows} != duckdb {rows}")

    # Timestamps are UTC instants: a structlog offset time reads back as the same instant.
    offset_line = next(r for r in styles if "+02:00" in str(r.get("timestamp", "")))
    want_ts = dt.datetime.fromisoformat(offset_line["timestamp"]).astimezone(dt.timezone.utc)
    got_ts = con.execute(
        f"SELECT timestamp FROM {logs} WHERE message = ? AND service = ?",
        [offset_line["event"], offset_line["service"]],
    ).fetchall()
    check(any(t[0] == want_ts for t in got_ts), f"structlog time {offset_line['timestamp']} read back as {got_ts}")

    # A logback stack trace survives byte for byte, and ERROR became error.
    trace_line = next(r for r in styles if "stack_trace" in r)
    got = con.execute(
        f'SELECT level, stack_trace FROM {logs} WHERE stack_trace IS NOT NULL AND message = ?',
        [trace_line["message"]],
    ).fetchall()
    check(got == [("error", trace_line["stack_trace"])], f"stack trace row {got!r}")

    # Hive partition columns work for a reader.
    parts = con.execute(f"SELECT DISTINCT date FROM {logs}").fetchall()
    check(len(parts) >= 1, "no hive partitions")

    # Odd values of the malformed file's valid line, as typed columns.
    got = con.execute(
        f"SELECT n, big, dup, _extra FROM {logs} WHERE correlation_id = 'm-1' AND level = 'error'"
    ).fetchall()
    check(got == [("18446744073709551616", "1e400", 1, '{"dup":2}')], f"odd values {got!r}")

    # Rejects: raw bytes kept exactly, with line numbers and reasons.
    rej = con.execute(f"SELECT line, reason, raw FROM {rejects} ORDER BY line").fetchall()
    check(len(rej) == 9, f"{len(rej)} rejects")
    check(sum(s["rows"] for s in reject_segs) == 9, "manifest reject rows")
    for line, reason, raw in rej:
        want_raw = malformed_raw[line - 1]
        check(bytes(raw) == want_raw, f"reject line {line}: raw {bytes(raw)!r} != {want_raw!r}")
        check(len(reason) > 10, f"reject line {line}: reason {reason!r}")
    check(any(r[0] == 7 and r[1].startswith("invalid UTF-8") for r in rej), "bad utf-8 reason")
    print(f"ok: {len(logs_segs)} log segments, {n} rows, {len(rej)} rejects, read by duckdb {duckdb.__version__} and pyarrow")


if __name__ == "__main__":
    main()
