"""Schemathesis hooks for weft's API fuzz run (tests/integration/api_fuzz.rs).

weft's ingest endpoints take NDJSON (`application/x-ndjson`), which
schemathesis has no serializer for: a generated string is sent as its UTF-8
bytes, any other generated value as one line of JSON.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode("utf-8")
