"""Differential checks of weft against independent answers.

usage: differential.py CORPUS TRUTH TRACES_JSON WEFT_COUNTS_JSON

- TRACES_JSON: {id: weft trace --json output} for the ids in TRUTH. Each
  trace must hold exactly the truth's lines (same service, message and
  instant), nothing else, in time order.
- WEFT_COUNTS_JSON: weft's answers to the count queries below; DuckDB reads
  the raw NDJSON and must agree.
"""

import datetime as dt
import json
import sys

import duckdb


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def instant_ns(rec):
    """The record's instant in ns, read the way each house style writes it."""
    for key in ("timestamp", "@timestamp", "time", "ts"):
        if key not in rec:
            continue
        v = rec[key]
        if isinstance(v, (int, float)):
            if abs(v) < 1e11:
                s = str(v) if isinstance(v, int) else repr(v)
                whole, _, frac = s.partition(".")
                return int(whole) * 10**9 + int((frac + "000000000")[:9] or 0)
            return int(v) * 10**6  # pino: ms
        s = v.replace("Z", "+00:00")
        frac_ns = 0
        if "." in s:
            head, rest = s.split(".", 1)
            digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
            tz = rest[len(digits):]
            frac_ns = int((digits + "000000000")[:9])
            s = head + tz
        d = dt.datetime.fromisoformat(s)
        return int(d.timestamp()) * 10**9 + frac_ns
    fail(f"no time in {rec}")


def service(rec):
    return (rec.get("service") or rec.get("name") or rec.get("app")
            or rec.get("resource", {}).get("service", {}).get("name"))


def message(rec):
    for k in ("message", "msg", "event", "body"):
        if k in rec:
            return rec[k]
    return rec.get("fields", {}).get("message")


def main():
    corpus, truth_path, traces_path, counts_path = sys.argv[1:5]
    lines = open(corpus, encoding="utf-8").read().split("\n")
    truth = [json.loads(l) for l in open(truth_path) if l.strip()]
    traces = json.load(open(traces_path))
    checked = 0
    for t in truth:
        got = traces.get(t["id"])
        if got is None:
            fail(f"no weft trace for {t['id']}")
        want = []
        for n in t["lines"]:
            rec = json.loads(lines[n])
            want.append((instant_ns(rec), service(rec), message(rec)))
        have = []
        for l in got["lines"]:
            have.append((instant_ns({"timestamp": l["timestamp"]}), l["service"], l["message"]))
        if sorted(have, key=repr) != sorted(want, key=repr):
            fail(f"{t['id']}: weft lines {have} != truth {want}")
        if [h[0] for h in have] != sorted(h[0] for h in have):
            fail(f"{t['id']}: not in time order: {have}")
        if [w[0] for w in want] != [h[0] for h in have]:
            fail(f"{t['id']}: order differs from truth's instants")
        checked += 1

    weft = json.load(open(counts_path))
    con = duckdb.connect()
    # One JSON value per line; fields read by path, independent of schema inference.
    raw = f"read_ndjson_objects('{corpus}')"
    total = con.execute(f"SELECT count(*) FROM {raw}").fetchone()[0]
    if total != weft["total"]:
        fail(f"count: duckdb {total}, weft {weft['total']}")
    by_service = dict(con.execute(
        f"SELECT coalesce(json->>'$.service', json->>'$.name', json->>'$.app', json->>'$.resource.service.name') AS s, "
        f"count(*) FROM {raw} GROUP BY s"
    ).fetchall())
    if by_service != weft["by_service"]:
        fail(f"by service: duckdb {by_service}, weft {weft['by_service']}")
    with_id = con.execute(
        f"SELECT count(*) FROM {raw} WHERE coalesce(json->>'$.trace_id', json->>'$.reqId', json->>'$.correlation_id', "
        f"json->>'$.traceId', json->>'$.span.request_id', json->>'$.request_id', json->>'$.attributes.traceparent') IS NOT NULL"
    ).fetchone()[0]
    if with_id != weft["with_id"]:
        fail(f"lines with an id: duckdb {with_id}, weft {weft['with_id']}")
    print(f"ok: {checked} traces equal the ground truth; {total} lines, {len(by_service)} services, {with_id} with ids agree with duckdb {duckdb.__version__}")


if __name__ == "__main__":
    main()
