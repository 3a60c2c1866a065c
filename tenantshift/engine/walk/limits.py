"""How much of an apply runs at once: every bound derived in one place.

The manifest gives two numbers and the conversion hosts a third: ``options.parallelism`` (API
work), ``options.copy_parallelism`` (copies per conversion host pair) and the number of pairs.
The walker's two semaphores, the pair pool, the apply's thread pool and each cloud's HTTP
connection pool all follow from them, and must agree: a thread pool smaller than what the
walker lets run makes running nodes queue for a thread, a connection pool smaller than the
threads makes requests open a connection each. So every site reads a ``Limits``, never the
options themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantshift.manifest import AnyConversionHosts, Manifest


def pair_count(hosts: AnyConversionHosts | None) -> int:
    """The conversion host pairs a manifest declares; one without any (an image streams
    through tenantshift itself and needs no pair, but still takes a copy slot)."""
    return len(hosts.all_pairs) if hosts is not None else 1


@dataclass(frozen=True)
class Limits:
    """The concurrency bounds of one apply (build with ``of`` or ``for_manifest``)."""

    #: The walker's ``api`` semaphore: resource nodes (and cleanups) in flight at once, i.e.
    #: ``options.parallelism``. Short API calls; copies never take these slots.
    api: int
    #: Copy slots per conversion host pair, ``options.copy_parallelism``: what ``PairPool``
    #: hands out on each pair. Per pair because a pair's link is what the copies share.
    per_pair: int
    #: Conversion host pairs (1 without conversion hosts).
    pairs: int
    #: The walker's ``copy`` semaphore: workload nodes in flight at once, ``per_pair`` x
    #: ``pairs``, so every pair can be full at once; the pair pool then keeps each pair to
    #: ``per_pair``. (With ``per_pair`` alone, two pairs of three would sit idle.)
    copies: int
    #: The apply's thread pool for blocking SDK calls: every node the walker lets run makes
    #: at most one blocking call at a time, so ``api + copies`` threads means no running node
    #: ever waits for a thread (the default pool, cpu + 4, capped parallelism 50 at 6).
    threads: int
    #: HTTP connections each cloud's session keeps per host: every thread may be in a call to
    #: the same API at once, and requests opens (and closes) a new connection for every call
    #: beyond its pool.
    connections: int

    @classmethod
    def of(cls, parallelism: int, copy_parallelism: int, pairs: int = 1) -> Limits:
        for name, value in (
            ("parallelism", parallelism),
            ("copy_parallelism", copy_parallelism),
            ("pairs", pairs),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        copies = copy_parallelism * pairs
        threads = parallelism + copies
        return cls(
            api=parallelism,
            per_pair=copy_parallelism,
            pairs=pairs,
            copies=copies,
            threads=threads,
            connections=threads,
        )

    @classmethod
    def for_manifest(cls, manifest: Manifest) -> Limits:
        options = manifest.options
        return cls.of(
            options.parallelism, options.copy_parallelism, pair_count(manifest.conversion_hosts)
        )
