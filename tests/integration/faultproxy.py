"""A small fault-injecting HTTP reverse proxy for integration tests (stdlib only).

It sits on 127.0.0.1 in front of one real endpoint (Neutron, say) and, per request, either
forwards it or injects a fault:

- ``error``: answer 503 with a Neutron-style JSON body, without forwarding;
- ``reset``: close the connection with a TCP RST before forwarding (nothing happened);
- ``lost``: forward the request, then reset instead of answering (it *did* happen: the case
  that makes blind retries of a POST create duplicates);
- ``delay``: forward, then wait ``delay_seconds`` before answering (a slow server: a client
  with a shorter timeout gives up on a request that did happen);
- ``stall``: wait ``delay_seconds``, then forward (the request reaches the server only after
  the client gave up: a retried POST can then create a duplicate, which no lookup made in
  between can prevent; kept out of the convergence test for that reason);
- ``fail_all``: every request gets a 503 (for "bounded retries then a clear error").

Besides faults, ``latency`` holds every request that many seconds before forwarding it (a WAN
round trip), and the proxy counts client ``connections`` (in ``stats``) and the ``peak`` number
of requests in flight: the concurrency a client really reached.

Decisions are deterministic: each one is drawn from ``Random(f"{seed}:{method}:{path}:{n}")``
where ``n`` counts earlier requests with the same method and path, so thread interleaving does
not change which request gets which fault.

    with FaultProxy("http://127.0.0.1:19696", seed=1, error=0.1, reset=0.1) as proxy:
        ... point the client at proxy.url ...
        print(proxy.stats)
"""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

#: Headers that describe one hop, not the message: never copied across the proxy.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
    }
)


@dataclass
class Faults:
    """Fractions of requests (0..1) per fault; they are drawn in this order, one per request."""

    error: float = 0.0
    reset: float = 0.0
    lost: float = 0.0
    delay: float = 0.0
    stall: float = 0.0
    delay_seconds: float = 0.5
    fail_all: bool = False

    def choose(self, rng: random.Random) -> str:
        if self.fail_all:
            return "error"
        roll = rng.random()
        for name in ("error", "reset", "lost", "delay", "stall"):
            share = float(getattr(self, name))
            if roll < share:
                return name
            roll -= share
        return "forward"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out during an injected delay hangs up: expected, not news.
        pass


class FaultProxy:
    def __init__(
        self, upstream: str, *, seed: int = 0, latency: float = 0.0, **faults: Any
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_base = f"http://{parts.netloc}"
        self.seed = seed
        self.faults = Faults(**faults)
        self.latency = latency
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="faultproxy"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def configure(self, **faults: Any) -> None:
        """Change the fault mix while running (e.g. set up cleanly, then break things)."""
        with self._lock:
            for name, value in faults.items():
                if not hasattr(self.faults, name):
                    raise TypeError(f"unknown fault {name!r}")
                setattr(self.faults, name, value)

    @contextmanager
    def faulty(self, **faults: Any) -> Iterator[FaultProxy]:
        """Faults only inside the block; a clean proxy after it."""
        with self._lock:
            saved = Faults(**vars(self.faults))
        self.configure(**faults)
        try:
            yield self
        finally:
            with self._lock:
                self.faults = saved

    # -- the decision ------------------------------------------------------------------------
    def decide(self, method: str, path: str) -> str:
        with self._lock:
            key = f"{method}:{path}"
            n = self._seen[key]
            self._seen[key] += 1
            choice = self.faults.choose(random.Random(f"{self.seed}:{key}:{n}"))
            self.stats[choice] += 1
            self.stats["requests"] += 1
            return choice

    def _flight(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.peak = max(self.peak, self.in_flight)

    # -- the handler -------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy.stats["connections"] += 1

            def log_message(self, format: str, *args: Any) -> None:  # quiet tests
                pass

            def _handle(self) -> None:
                proxy._flight(+1)
                try:
                    self._handle_one()
                finally:
                    proxy._flight(-1)

            def _handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.latency:
                    time.sleep(proxy.latency)
                choice = proxy.decide(self.command, self.path.split("?", 1)[0])
                if choice == "error":
                    self._reply(
                        503,
                        {"content-type": "application/json"},
                        json.dumps(
                            {
                                "NeutronError": {
                                    "type": "ServiceUnavailable",
                                    "message": "faultproxy: injected 503",
                                    "detail": "",
                                }
                            }
                        ).encode(),
                    )
                    return
                if choice == "reset":
                    self._reset()
                    return
                if choice == "stall":
                    time.sleep(proxy.faults.delay_seconds)
                try:
                    status, headers, payload = self._forward(body)
                except OSError as exc:
                    self._reply(502, {"content-type": "text/plain"}, f"upstream: {exc}".encode())
                    return
                if choice == "delay":
                    time.sleep(proxy.faults.delay_seconds)
                if choice == "lost":
                    self._reset()
                    return
                self._reply(status, headers, payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

            def _forward(self, body: bytes | None) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=120
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    out = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                    # Pagination and version links name the real endpoint: keep them on the proxy.
                    payload = payload.replace(proxy.upstream_base.encode(), proxy.url.encode())
                    return response.status, out, payload
                finally:
                    conn.close()

            def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _reset(self) -> None:
                # SO_LINGER 0: close() sends a RST, the client sees "connection reset by peer".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                self.wfile = io.BytesIO()  # finish() flushes it; the socket is gone

        return Handler
