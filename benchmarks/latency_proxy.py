"""A latency-adding reverse proxy in front of every endpoint of a cloud (asyncio, stdlib only).

On this machine every API call is a loopback round trip; on a real cloud it is a WAN round trip
(tens to hundreds of milliseconds), and what decides an apply's wall time there is how many
calls it overlaps. This proxy puts that round trip back: one listener per upstream endpoint
(Keystone, Neutron, Nova, ...), each request held ``latency`` seconds before it is forwarded,
each new client connection ``connect_latency`` seconds before it is served (the TCP handshake a
connection pool saves). Response bodies and ``Location`` headers have every upstream base URL
rewritten to its listener, so the Keystone catalog, version documents and pagination links all
lead back through the proxy: a client configured with the proxied ``auth_url`` never reaches an
endpoint directly.

It counts what passes: requests by service, verb and route (ids folded to ``{id}``), client
connections opened, and the peak number of requests in flight, which is the concurrency the
client really achieved.

    python benchmarks/latency_proxy.py --clouds-yaml /tmp/dc/clouds.yaml --cloud devcloud-admin \
        --latency 0.1 --out /tmp/proxied-clouds.yaml

prints the listeners and writes a clouds.yaml whose every entry authenticates through the proxy
(the file keeps the original's credentials: it is written 0600, and nothing is printed of it).
``benchmarks/control_plane.py`` runs it in a thread of its own process instead (``ProxyThread``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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

_ID = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_VERSION = re.compile(r"^v\d+(?:\.\d+)?$")
#: Collections whose members are addressed by name rather than id.
_BY_NAME = frozenset({"os-keypairs"})


def route_of(path: str) -> str:
    """``/v2.0/networks/<uuid>/tags`` -> ``networks/{id}/tags``: a request's kind and shape."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    out: list[str] = []
    for part in parts:
        if _VERSION.match(part) and not out:
            continue
        if out and out[-1] == "tags":  # ``PUT .../tags/<tag>``: one route whatever the tag
            out.append("{tag}")
        elif _ID.match(part) or (out and out[-1] in _BY_NAME):
            if not out:  # Cinder's and Nova's project id in the path: not part of the route
                continue
            out.append("{id}")
        else:
            out.append(part)
    return "/".join(out) or "/"


@dataclass
class Stats:
    """What passed through; ``reset`` starts a new measurement."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    connections: int = 0
    in_flight: int = 0
    peak: int = 0
    errors: int = 0
    #: Seconds the upstreams took to answer, summed over requests (the added latency not
    #: included): at parallelism 1, the servers' own share of the wall time.
    server_seconds: float = 0.0

    def reset(self) -> None:
        self.requests = Counter()
        self.connections = 0
        self.peak = self.in_flight
        self.errors = 0
        self.server_seconds = 0.0

    def copy(self) -> Stats:
        return Stats(
            Counter(self.requests),
            self.connections,
            self.in_flight,
            self.peak,
            self.errors,
            self.server_seconds,
        )

    @property
    def total(self) -> int:
        return sum(self.requests.values())


class _Upstream:
    """One upstream endpoint: its base URL, its listener, and idle keep-alive connections."""

    def __init__(self, base: str, name: str) -> None:
        parts = urlsplit(base)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// upstreams are proxied, not {base!r}")
        self.base = f"http://{parts.netloc}"
        self.name = name
        self.host = parts.hostname
        self.port = parts.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.url = ""  # set when listening


class ProtocolError(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


async def _read_body(
    reader: asyncio.StreamReader, headers: list[tuple[str, str]], *, until_close: bool
) -> bytes:
    if (_header(headers, "transfer-encoding") or "").lower() == "chunked":
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers (if any) up to the empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = _header(headers, "content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read() if until_close else b""


class LatencyProxy:
    """Listeners for ``upstreams`` (base URL -> service name), in the running event loop."""

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        latency: float = 0.1,
        connect_latency: float | None = None,
    ) -> None:
        self.latency = latency
        self.connect_latency = latency if connect_latency is None else connect_latency
        self.upstreams = [_Upstream(base, name) for base, name in upstreams.items()]
        self.stats = Stats()
        self._servers: list[asyncio.AbstractServer] = []
        self._rewrite: re.Pattern[bytes] | None = None
        self._to_proxy: dict[bytes, bytes] = {}

    async def start(self) -> None:
        for upstream in self.upstreams:
            server = await asyncio.start_server(
                lambda r, w, u=upstream: self._serve(u, r, w), "127.0.0.1", 0, limit=2**20
            )
            port = server.sockets[0].getsockname()[1]
            upstream.url = f"http://127.0.0.1:{port}"
            self._servers.append(server)
        self._to_proxy = {u.base.encode(): u.url.encode() for u in self.upstreams}
        # A base followed by a digit is another port (``:5400`` in ``:54001``): not ours.
        alternatives = b"|".join(
            re.escape(b) for b in sorted(self._to_proxy, key=len, reverse=True)
        )
        self._rewrite = re.compile(b"(" + alternatives + rb")(?![0-9])")

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        # Client connections still open (keep-alive) end with the proxy.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for upstream in self.upstreams:
            for _, writer in upstream.idle:
                writer.close()
            upstream.idle.clear()

    def url_for(self, base: str) -> str:
        wanted = f"http://{urlsplit(base).netloc}"
        for upstream in self.upstreams:
            if upstream.base == wanted:
                return upstream.url
        raise KeyError(base)

    def rewrite(self, data: bytes) -> bytes:
        if self._rewrite is None or not data:
            return data
        return self._rewrite.sub(lambda m: self._to_proxy[m.group(1)], data)

    # -- one client connection ---------------------------------------------------------------
    async def _serve(
        self, upstream: _Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.stats.connections += 1
        try:
            await asyncio.sleep(self.connect_latency)
            while True:
                try:
                    request_line, headers = await _read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed its idle connection
                body = await _read_body(reader, headers, until_close=False)
                method, target, _version = request_line.split(" ", 2)
                self.stats.requests[(upstream.name, method, route_of(target))] += 1
                self.stats.in_flight += 1
                self.stats.peak = max(self.stats.peak, self.stats.in_flight)
                try:
                    await asyncio.sleep(self.latency)
                    started = time.monotonic()
                    try:
                        status_line, out_headers, payload = await self._forward(
                            upstream, method, target, headers, body
                        )
                    finally:
                        self.stats.server_seconds += time.monotonic() - started
                except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                    self.stats.errors += 1
                    status_line = "HTTP/1.1 502 Bad Gateway"
                    out_headers = [("Content-Type", "text/plain")]
                    payload = f"latency proxy: upstream {upstream.base}: {exc}".encode()
                finally:
                    self.stats.in_flight -= 1
                if method == "HEAD":
                    payload_out = b""
                    length = _header(out_headers, "content-length") or "0"
                else:
                    payload_out = self.rewrite(payload)
                    length = str(len(payload_out))
                head = [status_line]
                for key, value in out_headers:
                    if key.lower() in HOP_BY_HOP:
                        continue
                    if key.lower() == "location":
                        value = self.rewrite(value.encode()).decode()
                    head.append(f"{key}: {value}")
                head.append(f"Content-Length: {length}")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload_out)
                await writer.drain()
                if (_header(headers, "connection") or "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(
        self,
        upstream: _Upstream,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {upstream.host}:{upstream.port}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        # A pooled connection the server closed meanwhile fails before any answer: then (and
        # only then) the request is sent again on a new connection; it never reached the app.
        while True:
            reused = bool(upstream.idle)
            if reused:
                up_reader, up_writer = upstream.idle.pop()
            else:
                up_reader, up_writer = await asyncio.open_connection(
                    upstream.host, upstream.port, limit=2**20
                )
            try:
                up_writer.write(message)
                await up_writer.drain()
                status_line, out_headers = await _read_head(up_reader)
            except (OSError, asyncio.IncompleteReadError):
                up_writer.close()
                if reused:
                    continue
                raise
            break
        try:
            parts = status_line.split(" ", 2)
            status = int(parts[1])
            closing = (_header(out_headers, "connection") or "").lower() == "close"
            no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            payload = b"" if no_body else await _read_body(up_reader, out_headers, until_close=True)
        except BaseException:
            up_writer.close()
            raise
        if closing or (
            _header(out_headers, "content-length") is None
            and (_header(out_headers, "transfer-encoding") or "").lower() != "chunked"
            and not no_body
        ):
            up_writer.close()
        else:
            upstream.idle.append((up_reader, up_writer))
        return status_line, out_headers, payload


class ProxyThread:
    """A ``LatencyProxy`` running in its own event loop thread (for synchronous callers)."""

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        latency: float = 0.1,
        connect_latency: float | None = None,
    ) -> None:
        self.proxy = LatencyProxy(upstreams, latency=latency, connect_latency=connect_latency)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def url_for(self, base: str) -> str:
        return self.proxy.url_for(base)

    def _in_loop(self, fn: object) -> Stats:
        async def run() -> Stats:
            return fn()  # type: ignore[operator,no-any-return]

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stats(self) -> Stats:
        """A copy of the counters (read in the proxy's loop: no torn reads)."""
        return self._in_loop(self.proxy.stats.copy)

    def reset(self) -> Stats:
        """The counters so far, then start counting anew."""

        def take() -> Stats:
            taken = self.proxy.stats.copy()
            self.proxy.stats.reset()
            return taken

        return self._in_loop(take)


def connection(clouds_yaml: str, cloud: str) -> Any:
    """An openstacksdk connection to ``cloud`` of that clouds.yaml only (no OS_* variables)."""
    import openstack.config
    import openstack.connection

    config = openstack.config.OpenStackConfig(config_files=[clouds_yaml], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def catalog_upstreams(clouds_yaml: str, cloud: str) -> dict[str, str]:
    """Every endpoint base URL in the catalog, plus the auth URL: base -> service type."""
    conn = connection(clouds_yaml, cloud)
    try:
        auth_url = str(conn.config.config["auth"]["auth_url"])
        out = {f"http://{urlsplit(auth_url).netloc}": "identity"}
        for service in conn.service_catalog:
            for endpoint in service.get("endpoints", []):
                base = f"http://{urlsplit(endpoint['url']).netloc}"
                out.setdefault(base, str(service["type"]))
        return out
    finally:
        conn.close()


def proxied_clouds(clouds: Mapping[str, object], proxy_url_for: object) -> dict[str, object]:
    """A copy of a parsed clouds.yaml whose every ``auth_url`` goes through the proxy."""
    import copy

    out = copy.deepcopy(dict(clouds))
    for entry in (out.get("clouds") or {}).values():  # type: ignore[union-attr]
        auth = entry.get("auth") or {}
        if "auth_url" in auth:
            parts = urlsplit(auth["auth_url"])
            proxied = proxy_url_for(f"http://{parts.netloc}")  # type: ignore[operator]
            auth["auth_url"] = proxied + parts.path
    return out


def main() -> None:
    import os

    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clouds-yaml", required=True)
    parser.add_argument("--cloud", default="devcloud-admin", help="reads the catalog")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request")
    parser.add_argument("--connect-latency", type=float, default=None)
    parser.add_argument("--out", required=True, help="the proxied clouds.yaml to write")
    args = parser.parse_args()
    upstreams = catalog_upstreams(args.clouds_yaml, args.cloud)
    with ProxyThread(
        upstreams, latency=args.latency, connect_latency=args.connect_latency
    ) as proxy:
        with open(args.clouds_yaml) as f:
            clouds = yaml.safe_load(f)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(proxied_clouds(clouds, proxy.url_for), out)
        for base, name in upstreams.items():
            print(f"{name:15} {base} -> {proxy.url_for(base)}")
        print(f"latency {args.latency}s per request; clouds.yaml: {args.out}; Ctrl-C stops")
        try:
            while True:
                time.sleep(10)
                s = proxy.stats()
                print(f"{s.total} requests, {s.connections} connections, peak {s.peak} in flight")
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
