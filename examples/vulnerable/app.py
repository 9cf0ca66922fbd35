"""DELIBERATELY VULNERABLE example service: do not deploy it, do not expose it. It exists to show veil's
runtime detection catching real attacks inside their traces.

Every endpoint holds a classic flaw:

    GET  /ping?host=...     command injection (the host goes into a shell command line)
    GET  /fetch?url=...     server-side request forgery (fetches any URL, cloud metadata included)
    GET  /file?name=...     path traversal / arbitrary file read
    POST /load              unsafe deserialization (pickle.loads of the request body)
    GET  /plugin?name=...   native library loading chosen by the caller

Run it (bound to 127.0.0.1 only) under veil:

    VEIL_SECURITY_RULES=examples/vulnerable/rules.yaml \
    veil run -- gunicorn -w 1 -b 127.0.0.1:8080 examples.vulnerable.app:app
"""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import urllib.request
from pathlib import Path

from flask import Flask, Response, request

FILES = Path(__file__).with_name("files")

app = Flask(__name__)


@app.get("/ping")
def ping() -> Response:
    host = request.args.get("host", "127.0.0.1")
    # FLAW: the host goes into a shell command line unquoted
    result = subprocess.run(f"echo looking up {host}", shell=True, capture_output=True, text=True, check=False)
    return Response(result.stdout, mimetype="text/plain")


@app.get("/fetch")
def fetch() -> Response:
    url = request.args["url"]
    # FLAW: any URL the caller names, the cloud metadata service included
    try:
        with urllib.request.urlopen(url, timeout=2) as upstream:
            return Response(upstream.read(), mimetype="text/plain")
    except OSError as error:
        return Response(f"fetch failed: {error.__class__.__name__}\n", status=502, mimetype="text/plain")


@app.get("/file")
def read_file() -> Response:
    name = request.args["name"]
    # FLAW: the name is joined unchecked, so ../ climbs out of the directory
    try:
        with open(os.path.join(FILES, name)) as handle:
            return Response(handle.read(), mimetype="text/plain")
    except OSError:
        return Response("no such file\n", status=404, mimetype="text/plain")


@app.post("/load")
def load() -> Response:
    # FLAW: unpickling what the caller sent runs whatever the caller wants
    try:
        value = pickle.loads(request.get_data())
    except Exception as error:
        return Response(f"bad payload: {error.__class__.__name__}\n", status=400, mimetype="text/plain")
    return Response(f"loaded {type(value).__name__}\n", mimetype="text/plain")


@app.get("/plugin")
def plugin() -> Response:
    name = request.args["name"]
    # FLAW: the caller chooses which native library the process loads
    try:
        ctypes.CDLL(name)
    except OSError:
        return Response("no such library\n", status=404, mimetype="text/plain")
    return Response(f"loaded {name}\n", mimetype="text/plain")


@app.get("/healthz")
def health() -> str:
    return "ok"
