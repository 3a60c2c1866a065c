"""Per-run compression codecs, and how the two ends agree on one.

zstd comes from the ``zstandard`` module when installed, else straight from ``libzstd`` through
ctypes (the library is on most distributions because the ``zstd`` tool and systemd link it), so
a stdlib-only host can still use it. zlib level 1 is always there but slow on incompressible
data (~40 MiB/s measured on random bytes), so it is only used when asked for.
"""

from __future__ import annotations

import ctypes
import zlib
from typing import Any

#: The zstd levels the source compresses with. A run whose first 64 KiB (``SAMPLE``) shrinks
#: at least ``COMPRESSIBLE`` times at level 1 is compressed at ``ZSTD_LEVEL_HIGH`` (1): text,
#: database pages of numbers, zeros and repeats, where level 1 is fast and much smaller than
#: the fast levels. Every other run goes at ``ZSTD_LEVEL`` (-1, zstd's first "fast" level: no
#: Huffman coding of literals): executables, libraries, mixed data, where level 1 costs
#: 20-30% more CPU for 10% fewer bytes. Measured (docs/benchmarks.md, "Compression level"):
#: on an ext4 volume of OS files and database pages this costs 20% less CPU than level 1 alone
#: for 5% more bytes; on text-like data it sends what level 1 sends. ``ZSTD_ADAPTIVE = False``
#: compresses everything at ``ZSTD_LEVEL``. The destination needs no setting: a zstd frame
#: decompresses the same way whatever its level.
ZSTD_LEVEL = -1
ZSTD_LEVEL_HIGH = 1
ZSTD_ADAPTIVE = True
COMPRESSIBLE = 3.0
#: A run is sent compressed only if that saves at least this fraction.
WORTH_IT = 0.9
#: Codecs that are slow on incompressible input try a sample first (zlib). zstd does not
#: skip a run on its sample: it gives up on incompressible blocks quickly by itself, and
#: skipping cost 3% of the ratio on real data for no CPU saved (measured); it uses the sample
#: only to pick its level.
SAMPLE = 64 * 1024


class CodecError(Exception):
    pass


class Codec:
    name = "none"
    #: False when compressing incompressible data is expensive (sample first).
    cheap_on_random = True

    def compress(self, data: memoryview) -> bytes:
        return bytes(data)

    def decompress_into(self, payload: memoryview, out: memoryview) -> None:
        out[:] = payload


class ZlibCodec(Codec):
    name = "zlib"
    cheap_on_random = False

    def compress(self, data: memoryview) -> bytes:
        return zlib.compress(data, 1)

    def decompress_into(self, payload: memoryview, out: memoryview) -> None:
        # max_length bounds the output: a small payload from a hostile source must not
        # inflate to gigabytes before the length is checked.
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, len(out))
        except zlib.error as exc:
            raise CodecError(f"zlib run is corrupt: {exc}") from None
        if (
            len(raw) != len(out)
            or inflater.unconsumed_tail
            or inflater.unused_data
            or not inflater.eof
        ):
            raise CodecError(f"zlib run does not decompress to exactly {len(out)} bytes")
        out[:] = raw


class _LibZstd(Codec):
    """zstd through ctypes: one compression and one decompression context, reused."""

    name = "zstd"

    def __init__(self, lib: ctypes.CDLL, level: int = 1, adaptive: bool = False) -> None:
        self._lib = lib
        self._level = level
        self._adaptive = adaptive
        size_t, vp = ctypes.c_size_t, ctypes.c_void_p
        lib.ZSTD_compressBound.restype = size_t
        lib.ZSTD_compressBound.argtypes = [size_t]
        lib.ZSTD_isError.restype = ctypes.c_uint
        lib.ZSTD_isError.argtypes = [size_t]
        lib.ZSTD_createCCtx.restype = vp
        lib.ZSTD_createDCtx.restype = vp
        lib.ZSTD_compressCCtx.restype = size_t
        lib.ZSTD_compressCCtx.argtypes = [vp, vp, size_t, vp, size_t, ctypes.c_int]
        lib.ZSTD_decompressDCtx.restype = size_t
        lib.ZSTD_decompressDCtx.argtypes = [vp, vp, size_t, vp, size_t]
        self._cctx = lib.ZSTD_createCCtx()
        self._dctx = lib.ZSTD_createDCtx()
        self._out = ctypes.create_string_buffer(0)

    @staticmethod
    def _pointer(view: memoryview) -> Any:
        """An argument for a ``void *`` parameter that keeps ``view``'s memory alive for the
        call (a bare address of a temporary would dangle). A read-only buffer (bytes) cannot
        be passed with from_buffer: it is copied, only then."""
        if view.readonly:
            return bytes(view)
        return (ctypes.c_char * len(view)).from_buffer(view)

    def _compress(self, data: memoryview, level: int) -> int:
        """Compress into ``self._out``; the compressed size."""
        bound = self._lib.ZSTD_compressBound(len(data))
        if len(self._out) < bound:
            self._out = ctypes.create_string_buffer(bound)
        n = self._lib.ZSTD_compressCCtx(
            self._cctx, self._out, bound, self._pointer(data), len(data), level
        )
        if self._lib.ZSTD_isError(n):
            raise CodecError("zstd compression failed")
        return int(n)

    def _shrinks(self, sample: memoryview) -> bool:
        return COMPRESSIBLE * self._compress(sample, ZSTD_LEVEL_HIGH) <= len(sample)

    def compress(self, data: memoryview) -> bytes:
        level = self._level
        if self._adaptive and len(data) > 2 * SAMPLE and self._shrinks(data[:SAMPLE]):
            level = ZSTD_LEVEL_HIGH
        n = self._compress(data, level)  # first: it may replace self._out with a larger one
        return ctypes.string_at(self._out, n)

    def decompress_into(self, payload: memoryview, out: memoryview) -> None:
        n = self._lib.ZSTD_decompressDCtx(
            self._dctx, self._pointer(out), len(out), self._pointer(payload), len(payload)
        )
        if self._lib.ZSTD_isError(n) or n != len(out):
            raise CodecError(f"zstd run did not decompress to {len(out)} bytes")


class _ModuleZstd(Codec):
    name = "zstd"

    def __init__(self, module: Any, level: int = 1, adaptive: bool = False) -> None:
        self._module = module
        self._c = module.ZstdCompressor(level=level)
        self._high = module.ZstdCompressor(level=ZSTD_LEVEL_HIGH) if adaptive else None
        self._d = module.ZstdDecompressor()

    def compress(self, data: memoryview) -> bytes:
        high = self._high
        if (
            high is not None
            and len(data) > 2 * SAMPLE
            and COMPRESSIBLE * len(high.compress(data[:SAMPLE])) <= SAMPLE
        ):
            return bytes(high.compress(data))
        return bytes(self._c.compress(data))

    def decompress_into(self, payload: memoryview, out: memoryview) -> None:
        # zstandard sizes its output by the content size in the frame header and uses
        # max_output_size only when the header has none: check the header first, so a frame
        # claiming gigabytes is refused before anything is allocated.
        try:
            declared = self._module.frame_content_size(payload)
            if declared not in (-1, len(out)):
                raise CodecError(f"zstd frame declares {declared} bytes, expected {len(out)}")
            raw = self._d.decompress(payload, max_output_size=len(out))
        except self._module.ZstdError as exc:
            raise CodecError(f"zstd run is corrupt: {exc}") from None
        if len(raw) != len(out):
            raise CodecError(f"zstd run did not decompress to {len(out)} bytes")
        out[:] = raw


def _zstd() -> Codec | None:
    try:
        import zstandard

        return _ModuleZstd(zstandard, ZSTD_LEVEL, ZSTD_ADAPTIVE)
    except ImportError:
        pass
    # find_library runs ldconfig (a process: slow on a busy host): only if the soname fails
    for find in (lambda: "libzstd.so.1", lambda: _find_library("zstd")):
        name = find()
        if not name:
            continue
        try:
            return _LibZstd(ctypes.CDLL(name), ZSTD_LEVEL, ZSTD_ADAPTIVE)
        except (OSError, AttributeError):
            continue
    return None


def load(name: str) -> Codec:
    """A fresh codec instance (codecs hold per-stream contexts: one per stream)."""
    if name == "none":
        return Codec()
    if name == "zlib":
        return ZlibCodec()
    if name == "zstd":
        codec = _zstd()
        if codec is not None:
            return codec
    raise CodecError(f"codec {name!r} is not available here")


_available: list[str] | None = None


def available() -> list[str]:
    """The codecs this host can use, best first."""
    global _available
    if _available is None:
        _available = (["zstd"] if _zstd() is not None else []) + ["zlib", "none"]
    return list(_available)


#: What each compression setting is willing to use, in order of preference. "auto" does not
#: fall back to zlib: on a fast link zlib costs more time than it saves (see docs/transfer.md).
PREFERENCES: dict[str, list[str]] = {
    "auto": ["zstd", "none"],
    "zstd": ["zstd", "zlib", "none"],
    "zlib": ["zlib", "none"],
    "none": ["none"],
}


def preference(setting: str) -> list[str]:
    try:
        return list(PREFERENCES[setting])
    except KeyError:
        raise CodecError(f"unknown compression setting {setting!r}") from None


def negotiate(offered: list[str], local: list[str]) -> str:
    """The first codec in the peer's ``offered`` preference list that this side has too."""
    for name in offered:
        if name in local:
            return name
    return "none"


def _find_library(name: str) -> str | None:
    import ctypes.util  # imports tempfile, shutil...: only when the soname did not load

    return ctypes.util.find_library(name)
