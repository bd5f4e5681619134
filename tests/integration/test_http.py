"""The metrics server: prometheus-client's exposition, /healthz beside it, quiet when scrapers hang up."""

from __future__ import annotations

import gzip
import socket
import struct
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from ecgwatch.serve.http import MetricsServer


@pytest.fixture
def server():
    registry = CollectorRegistry()
    counter = Counter("ecgwatch_test_events", "events", ["n"], registry=registry)
    for i in range(3000):  # a response large enough that a client hanging up interrupts the write
        counter.labels(n=str(i)).inc()
    state = {"ok": True}
    checks = {"/healthz": lambda: (state["ok"], "fine" if state["ok"] else "broken"), "/livez": lambda: (True, "ok")}
    server = MetricsServer(registry, checks, "127.0.0.1", 0)
    server.start()
    yield server, state
    server.stop()


def get(server: MetricsServer, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_healthz_with_a_query_string_and_503_when_unhealthy(server) -> None:
    srv, state = server
    assert get(srv, "/healthz?verbose=1")[0] == 200
    state["ok"] = False
    status, _, body = get(srv, "/healthz")
    assert (status, body) == (503, b"broken\n")
    status, _, body = get(srv, "/livez")
    assert (status, body) == (200, b"ok\n")
    assert get(srv, "/nope")[0] == 404


def test_metrics_negotiate_openmetrics_and_gzip(server) -> None:
    srv, _ = server
    status, headers, body = get(srv, "/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    _, headers, body = get(srv, "/metrics", **{"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert b"ecgwatch_test_events_total" in gzip.decompress(body)


def test_a_scraper_that_hangs_up_leaves_no_traceback(server, capfd) -> None:
    srv, _ = server
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    assert get(srv, "/healthz")[0] == 200  # still serving
    srv.stop()  # waits for the handler threads' requests to finish
    assert "Traceback" not in capfd.readouterr().err
