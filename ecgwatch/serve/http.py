"""``/metrics`` for Prometheus, ``/healthz`` (ready: connected and serving) and ``/livez`` (alive: the scoring
loop turns) for container health checks and load balancers.

A liveness probe on ``/metrics`` (always 200) never restarts a stalled scorer; one on ``/healthz`` would
restart a daemon that is only waiting for its broker. ``/metrics`` is prometheus-client's own WSGI app, so
OpenMetrics negotiation, ``name[]`` filtering and gzip come with it; the checks sit beside it. Served by a
small threading WSGI server whose errors (a scraper hanging up mid-response) go to our structured log, not
as bare tracebacks on stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)
DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _LogStream:
    """What wsgiref writes its error reports to (``wsgi.errors``): our log instead of stderr."""

    def write(self, text: str) -> None:
        if text.strip():
            log.debug("http handler error", extra={"detail": text.strip()[-500:]})

    def flush(self) -> None:
        """Nothing buffered."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        """Scrapes every few seconds would drown the log."""

    def get_stderr(self) -> _LogStream:  # type: ignore[override]
        return _LogStream()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that hangs up is routine; anything else is logged once, as JSON like every log line."""
        error = sys.exc_info()[1]
        if isinstance(error, DISCONNECTS):
            return
        log.error("http request failed", exc_info=True, extra={"client": client_address[0]})


Check = Callable[[], tuple[bool, str]]


def health_app(
    registry: CollectorRegistry, checks: dict[str, Check]
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path in checks:
            ok, detail = checks[path]()
            body = detail.encode() + b"\n"
            status = "200 OK" if ok else "503 Service Unavailable"
        else:
            body, status = f"try /metrics or {' or '.join(checks)}\n".encode(), "404 Not Found"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, checks: dict[str, Check], host: str, port: int) -> None:
        self.server = make_server(host, port, health_app(registry, checks), _Server, _QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
