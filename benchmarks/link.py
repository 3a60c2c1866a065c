"""A rate-limited link for the benchmarks: a TCP proxy on 127.0.0.1 in front of a conversion
host's sshd whose two directions are each limited to a rate, as a WAN link between two sites
would limit them. Every method's SSH connections to that host go through it, so the limit is
on the bytes on the wire, whatever the method does: nothing in tenantshift sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any


class Bucket:
    """A token bucket: ``rate`` bytes/s, bursts of a tenth of a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate / 10, 64 * 1024)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:  # FIFO: connections share the link fairly
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            if self.tokens < 0:
                await asyncio.sleep(-self.tokens / self.rate)


class Link:
    """A TCP proxy to ``target`` whose two directions are each limited to ``rate`` bytes/s
    (shared by all its connections); counts the bytes it carried. Runs its own event loop in
    a thread, so synchronous benchmark code can use it."""

    def __init__(self, target: tuple[str, int], rate: float) -> None:
        self.target = target
        self.rate = rate
        self.port = 0
        self.carried = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        up, down = Bucket(self.rate), Bucket(self.rate)

        async def pump(reader: Any, writer: Any, bucket: Bucket) -> None:
            try:
                while data := await reader.read(64 * 1024):
                    await bucket.take(len(data))
                    writer.write(data)
                    self.carried += len(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def handle(client_r: Any, client_w: Any) -> None:
            try:
                server_r, server_w = await asyncio.open_connection(*self.target)
            except OSError:
                client_w.close()
                return
            await asyncio.gather(pump(client_r, server_w, up), pump(server_r, client_w, down))

        async def start() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def parse_rate(text: str) -> float:
    """``100M`` -> bytes/s of 100 Mbit/s (``k``, ``M``, ``G``: bits, as tc reads them)."""
    units = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
    number, unit = (text[:-1], units[text[-1]]) if text[-1] in units else (text, 1.0)
    return float(number) * unit / 8
