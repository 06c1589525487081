"""Sends a fixed set of log records to weft through real shipper client
libraries, and prints ONE line of JSON saying exactly what was sent.

usage: shippers.py otlp URL [--gzip] [--json] [--token T]
       shippers.py loki URL [--token T]
       shippers.py es   URL [--gzip] [--no-handshake] [--token T]

URL is the daemon's base, e.g. http://127.0.0.1:4318 (no path). --token
sends a weft API token the way each client can: the OTLP exporter as an
`Authorization: Bearer` header, loki-logger-handler as HTTP Basic auth (the
token as password), elasticsearch-py as its `api_key`.

- otlp: opentelemetry-sdk LoggerProvider + BatchLogRecordProcessor +
  OTLPLogExporter (HTTP/protobuf) to URL/v1/logs, records emitted through the
  Python logging bridge (LoggingHandler) inside two spans and one outside any
  span. --gzip sets Content-Encoding: gzip. --json swaps in the OTLP/JSON
  exporter (opentelemetry-exporter-otlp-json-http, application/json).
- loki: loki-logger-handler to URL/loki/api/v1/push: one handler that sends
  JSON-object lines (gzip, structured metadata, level as a label) and one
  that sends plain text lines (no compression).
- es: elasticsearch-py helpers.bulk: 5 docs to /_bulk with _index in the
  action, 1 doc to /app-logs/_bulk, then raise_on_error=False with one good
  and one malformed (truncated JSON) doc to /app-logs/_bulk. Unless
  --no-handshake, first HEAD / (ping) and GET / (info), which this client
  does not do by itself. --gzip sets http_compress=True (gzip request
  bodies, Accept-Encoding: gzip).

Output keys: "client", "libraries" (name -> version), "records" (one entry
per record the client put on the wire, in emit order) and per-client detail
(see each function). Content is deterministic apart from ids, timestamps,
process/thread ids and the script's own path/line numbers, which are printed
as sent. Exit status: 0 when every request the client made succeeded on the
client's terms (for es call 3, per-item errors are expected and reported,
not fatal); 1 otherwise, still printing the JSON line when it can.
"""

import argparse
import json
import logging
import sys
import warnings
from importlib.metadata import version

warnings.simplefilter("ignore", DeprecationWarning)


# The API token from --token, or None.
TOKEN = None


def emit(obj, ok):
    obj["ok"] = ok
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


def libs(*names):
    return {n: version(n) for n in names}


# --------------------------------------------------------------------- otlp

def run_otlp(url, use_gzip, use_json):
    from opentelemetry.exporter.otlp.common.http import Compression
    if use_json:
        from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    exported, results = [], []

    class RecordingExporter(OTLPLogExporter):
        """The real exporter; also keeps what each export call carried and its result."""

        def export(self, batch):
            result = super().export(batch)
            results.append({"records": len(batch), "result": result.name})
            for r in batch:
                exported.append(r)
            return result

    endpoint = url.rstrip("/") + "/v1/logs"
    # Resource(...) rather than Resource.create(...): exactly these attributes,
    # no telemetry.sdk.* defaults and nothing from OTEL_* environment variables.
    resource = Resource({"service.name": "checkout", "host.name": "web-1"})
    exporter = RecordingExporter(
        endpoint=endpoint,
        compression=Compression.GZIP if use_gzip else Compression.NONE,
        timeout=10,
        headers={"Authorization": f"Bearer {TOKEN}"} if TOKEN else None,
    )
    provider = LoggerProvider(resource=resource)
    # One batch: the timer never fires before force_flush.
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000, max_export_batch_size=512))
    tracer = TracerProvider(resource=resource).get_tracer("weft.shippers")

    log = logging.getLogger("weft.shippers.otlp")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    log.addHandler(handler)

    spans = {}
    with tracer.start_as_current_span("place_order") as span:
        spans["place_order"] = span.get_span_context()
        log.info("order %d placed", 42, extra={"order_id": 42, "customer": "c-7"})
        log.warning("payment retry", extra={"order_id": 42, "attempt": 2})
    with tracer.start_as_current_span("ship_order") as span:
        spans["ship_order"] = span.get_span_context()
        log.error("shipment failed", extra={"order_id": 42, "carrier": "dhl",
                                            "weight_kg": 1.5, "express": True})
    log.info("checkout idle", extra={"queue_depth": 0})

    flushed = provider.force_flush(timeout_millis=15_000)
    provider.shutdown()
    log.removeHandler(handler)

    records = []
    for r in exported:
        lr = r.log_record
        records.append({
            "message": lr.body,
            "level": {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(lr.severity_text, lr.severity_text),
            "severity_text": lr.severity_text,
            "severity_number": lr.severity_number.value if lr.severity_number else None,
            "trace_id": format(lr.trace_id, "032x") if lr.trace_id else None,
            "span_id": format(lr.span_id, "016x") if lr.span_id else None,
            "trace_flags": int(lr.trace_flags) if lr.trace_flags is not None else None,
            "time_unix_nano": lr.timestamp,
            "observed_time_unix_nano": lr.observed_timestamp,
            "attributes": dict(lr.attributes or {}),
            "scope": r.instrumentation_scope.name if r.instrumentation_scope else None,
        })
    out = {
        "client": "otlp",
        "libraries": libs("opentelemetry-sdk", "opentelemetry-exporter-otlp-json-http" if use_json
                          else "opentelemetry-exporter-otlp-proto-http"),
        "endpoint": endpoint,
        "content_type": "application/json" if use_json else "application/x-protobuf",
        "content_encoding": "gzip" if use_gzip else None,
        "resource": dict(resource.attributes),
        "spans": {name: {"trace_id": format(c.trace_id, "032x"), "span_id": format(c.span_id, "016x")}
                  for name, c in spans.items()},
        "exports": results,
        "records": records,
    }
    ok = (flushed and len(records) == 4 and bool(results)
          and all(x["result"] == LogRecordExportResult.SUCCESS.name for x in results))
    emit(out, ok)


# --------------------------------------------------------------------- loki

def run_loki(url):
    from loki_logger_handler.loki_logger_handler import LokiLoggerHandler

    endpoint = url.rstrip("/") + "/loki/api/v1/push"
    pushes = []

    def recording(handler, compressed):
        """Wrap the handler's LokiRequest.send to keep each payload it posts."""
        real = handler.request.send

        def send(data):
            entry = {"content_type": "application/json",
                     "content_encoding": "gzip" if compressed else None,
                     "payload": json.loads(data)}
            pushes.append(entry)
            try:
                real(data)
                entry["sent"] = True
            except Exception as e:  # the handler swallows it and sets .error
                entry["sent"] = False
                entry["error"] = str(e).splitlines()[0]
                raise
        handler.request.send = send

    class PlainFormatter:
        """loki-logger-handler formatter API: format(record) -> (line, metadata)."""

        def format(self, record):
            return record.getMessage(), {}

    json_labels = {"service_name": "billing", "env": "test"}
    plain_labels = {"service_name": "billing", "env": "test", "format": "text"}
    # timeout is the background flush period: long, so only our explicit flush sends.
    auth = ("weft", TOKEN) if TOKEN else None
    h_json = LokiLoggerHandler(
        url=endpoint, labels=json_labels, label_keys={"level"}, timeout=3600, auth=auth,
        compressed=True, enable_structured_loki_metadata=True,
        loki_metadata={"host": "web-1"}, loki_metadata_keys=["trace_id"])
    h_plain = LokiLoggerHandler(
        url=endpoint, labels=plain_labels, timeout=3600, compressed=False, auth=auth,
        message_in_json_format=False, default_formatter=PlainFormatter())
    recording(h_json, True)
    recording(h_plain, False)

    log = logging.getLogger("weft.shippers.loki")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(h_json)
    log.info("invoice created", extra={"invoice_id": "inv-1001", "amount_cents": 1999,
                                       "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    log.warning("invoice overdue", extra={"invoice_id": "inv-1002", "days_late": 3})
    log.error("charge declined", extra={"invoice_id": "inv-1003",
                                        "loki_metadata": {"card_brand": "visa"}})
    log.removeHandler(h_json)
    log.addHandler(h_plain)
    log.info("nightly billing run finished: 3 invoices")
    log.removeHandler(h_plain)

    # Synchronous flush. _send is the handler's own flush (its background
    # thread and atexit hook call it); nothing else sends synchronously.
    h_json._send()
    h_plain._send()

    records = []
    for p in pushes:
        for s in p["payload"]["streams"]:
            for v in s["values"]:
                line = v[1]
                rec = {"labels": s["stream"], "ts": v[0], "line": line,
                       "structured_metadata": v[2] if len(v) > 2 else None}
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    rec["message"], rec["level"] = obj.get("message"), obj.get("level")
                else:
                    rec["message"], rec["level"] = line, "INFO"
                records.append(rec)
    out = {
        "client": "loki",
        "libraries": libs("loki-logger-handler", "requests"),
        "endpoint": endpoint,
        "pushes": [{k: p[k] for k in ("content_type", "content_encoding", "sent", "error") if k in p}
                   for p in pushes],
        "records": records,
    }
    ok = (not h_json.error and not h_plain.error and len(pushes) == 2
          and all(p.get("sent") for p in pushes) and len(records) == 4)
    emit(out, ok)


# ----------------------------------------------------------------------- es

def run_es(url, handshake, use_gzip):
    import elasticsearch
    from elasticsearch import Elasticsearch, helpers

    major = elasticsearch.__versionstr__.split(".")[0]
    es = Elasticsearch(url, request_timeout=10, max_retries=0, http_compress=use_gzip,
                       api_key=TOKEN)
    out = {
        "client": "es",
        "libraries": libs("elasticsearch", "elastic-transport"),
        "url": url,
        "bulk_method": "PUT" if int(major) >= 8 else "POST",
        "content_type": f"application/vnd.elasticsearch+x-ndjson; compatible-with={major}",
        "accept": f"application/vnd.elasticsearch+json; compatible-with={major}",
        "content_encoding": "gzip" if use_gzip else None,
    }
    ok = True
    try:
        if handshake:
            out["ping"] = bool(es.ping())  # HEAD /; False on any error
            info = es.info()  # GET /
            out["info"] = {"cluster_name": info.get("cluster_name"),
                           "version": (info.get("version") or {}).get("number")}

        ts = "2025-03-01T12:00:0{}.{}Z"
        docs = [
            {"_index": "app-logs", "message": "user login", "level": "info", "service": "auth",
             "trace_id": "0af7651916cd43dd8448eb211c80319c", "@timestamp": ts.format(0, "125")},
            {"_index": "app-logs", "message": "token refreshed", "level": "debug", "service": "auth",
             "trace_id": "0af7651916cd43dd8448eb211c80319c", "@timestamp": ts.format(1, "250")},
            {"_index": "app-logs", "message": "slow query", "level": "warn", "service": "db",
             "trace_id": "b7ad6b7169203331e1a5e2d1b2c3d4e5", "@timestamp": ts.format(2, "375"),
             "duration_ms": 1234.5},
            {"_index": "app-logs", "message": "payment failed", "level": "error", "service": "billing",
             "trace_id": "b7ad6b7169203331e1a5e2d1b2c3d4e5", "@timestamp": ts.format(3, "500"),
             "http": {"status": 502, "method": "POST"}, "tags": ["payments", "retry"]},
            {"_index": "app-logs", "_id": "evt-0005", "message": "héllo wörld ✓", "level": "info",
             "service": "i18n", "trace_id": None, "@timestamp": ts.format(4, "625")},
        ]
        via_path = [{"message": "cache warmed", "level": "info", "service": "cache",
                     "trace_id": "5e1f7c2a9b8d4e3f0a1b2c3d4e5f6a7b", "@timestamp": ts.format(5, "750")}]
        with_bad = [
            {"message": "queue drained", "level": "info", "service": "worker",
             "trace_id": None, "@timestamp": ts.format(6, "875")},
            '{"message": "truncated',  # a raw string is sent as-is: {"index":{}} + this line
        ]
        calls = [
            ("index-in-action", docs, {}),
            ("index-in-path", via_path, {"index": "app-logs"}),
            ("with-bad-doc", with_bad, {"index": "app-logs", "raise_on_error": False}),
        ]
        out["bulks"] = []
        for name, actions, kw in calls:
            sent = []
            for a in actions:
                meta, src = helpers.expand_action(a)
                sent.append({"action": meta, "source": src.decode() if isinstance(src, bytes) else src})
            entry = {"name": name, "path": f"/{kw['index']}/_bulk" if "index" in kw else "/_bulk",
                     "raise_on_error": kw.get("raise_on_error", True), "sent": sent}
            out["bulks"].append(entry)
            try:
                success, errors = helpers.bulk(es, actions, **kw)
                entry["success"], entry["errors"] = success, errors
                if success + len(errors) != len(actions):
                    ok = False  # the response had fewer items than actions
            except helpers.BulkIndexError as e:
                entry["exception"] = f"BulkIndexError: {e}"
                entry["errors"] = e.errors
                ok = False
        docs_by_call = {b["name"]: b for b in out["bulks"]}
        out["records"] = [
            dict(s["source"], _index=s["action"]["index"].get("_index") or b["path"].split("/")[1])
            for b in docs_by_call.values() for s in b["sent"] if isinstance(s["source"], dict)
        ]
        if len(docs_by_call["with-bad-doc"].get("errors", [])) != 1:
            ok = False
    except Exception as e:  # transport errors, UnsupportedProductError, ApiError
        out["exception"] = f"{type(e).__name__}: {e}"
        ok = False
    emit(out, ok)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("otlp")
    p.add_argument("url")
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("loki")
    p.add_argument("url")
    p = sub.add_parser("es")
    p.add_argument("url")
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--no-handshake", action="store_true")
    for p in sub.choices.values():
        p.add_argument("--token")
    a = ap.parse_args()
    global TOKEN
    TOKEN = a.token
    # Client libraries log their own failures through logging; keep them on stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if a.cmd == "otlp":
        run_otlp(a.url, a.gzip, a.json)
    elif a.cmd == "loki":
        run_loki(a.url)
    else:
        run_es(a.url, not a.no_handshake, a.gzip)


if __name__ == "__main__":
    main()
