"""A small HTTP server on 127.0.0.1 for download tests: files by URL path, optional Range
support, connections cut after N bytes, bodies held half-sent until the test releases
them, and a log of the requests. The `mirror` fixture (one per test) is registered for
every test module by conftest.py's `pytest_plugins`."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Mirror:
    """Serves {url path: bytes}; optional Range support, connection cuts, request log."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.hold: dict[str, threading.Event] = {}  # path -> half the body, then wait for it
        self.requests: list[tuple[str, str | None]] = []
        self.bad_partial: set[str] = set()  # paths answered 206 with no Content-Range
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append((self.path, self.headers.get("Range")))
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                if self.path in mirror.bad_partial:
                    self.send_response(206)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                rng = self.headers.get("Range")
                if rng and mirror.ranges:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    status = 206
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = mirror.cut_after.pop(self.path, None)
                rest = body[start:] if cut is None else body[start:start + cut]
                hold = mirror.hold.get(self.path)
                if hold is not None:
                    self.wfile.write(rest[:len(rest) // 2])
                    self.wfile.flush()
                    hold.wait(120)
                    rest = rest[len(rest) // 2:]
                self.wfile.write(rest)
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_partition(self, partition: str, bodies: dict[str, bytes], md5s: dict[str, str] | None = None):
        version, kind, split = partition.split("/")
        plan = {"files": {n: (md5s or {}).get(n) or hashlib.md5(b).hexdigest() for n, b in bodies.items()}}
        self.files[f"/{version}/download_plans/{kind}_{split}.json"] = json.dumps(plan).encode()
        for name, body in bodies.items():
            self.files[f"/{partition}/{name}"] = body


@pytest.fixture
def mirror():
    """A Mirror on a free loopback port for one test."""
    m = Mirror()
    m.thread.start()
    yield m
    m.server.shutdown()
    m.server.server_close()
