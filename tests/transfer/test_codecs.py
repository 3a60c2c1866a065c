"""The codecs' ctypes paths: buffers that are read-only (bytes) or slices of a larger buffer."""

from __future__ import annotations

import ctypes
import os

import pytest

from tenantshift.transfer.agent import codecs

MiB = 1024 * 1024


def _lib() -> ctypes.CDLL:
    """libzstd.so.1: on every Debian host (systemd and the zstd tool link it), this machine and
    CI included, and what stdlib-only conversion hosts compress with; its absence fails."""
    return ctypes.CDLL("libzstd.so.1")


def _libzstd() -> codecs.Codec:
    return codecs._LibZstd(_lib())


def test_libzstd_round_trip_with_read_only_and_sliced_buffers() -> None:
    codec = _libzstd()
    data = (b"compressible " * 100000)[:MiB] + os.urandom(4096)
    # a read-only input (bytes) and a slice of a larger buffer both compress
    packed = codec.compress(memoryview(data))
    again = codec.compress(memoryview(bytearray(b"x" * 100 + data))[100:])
    assert len(packed) < len(data) // 4 and again == packed
    # a read-only payload decompresses too: the copy made for ctypes must outlive the call
    big = bytearray(2 * len(data))
    for _ in range(20):  # a dangling pointer would show as a corrupt run sooner or later
        codec.decompress_into(memoryview(bytes(packed)), memoryview(big)[7 : 7 + len(data)])
        assert big[7 : 7 + len(data)] == data
    with pytest.raises(codecs.CodecError):
        codec.decompress_into(memoryview(packed), memoryview(bytearray(len(data) - 1)))


def test_the_zstd_level_is_a_fast_level_and_frames_decode_alike() -> None:
    # The source picks the level; the destination decodes any level's frames the same way.
    assert codecs.ZSTD_LEVEL == -1 and codecs.ZSTD_LEVEL_HIGH == 1 and codecs.ZSTD_ADAPTIVE
    data = bytearray((b"tenant volume 12345 " * 60000)[:MiB])
    lib = _lib()
    fast, default = codecs._LibZstd(lib, -1), codecs._LibZstd(lib, 1)
    for packed in (fast.compress(memoryview(data)), default.compress(memoryview(data))):
        out = bytearray(len(data))
        codecs._LibZstd(lib, 5).decompress_into(memoryview(bytearray(packed)), memoryview(out))
        assert out == data


def test_adaptive_level_follows_the_sample() -> None:
    # Text-like runs (the sample shrinks >= 3x at level 1) go at level 1, others at -1: each
    # is smaller than or equal to the fast level's result, and every one decodes.
    lib = _lib()
    adaptive = codecs._LibZstd(lib, -1, adaptive=True)
    fast, default = codecs._LibZstd(lib, -1), codecs._LibZstd(lib, 1)
    text = bytearray((b"tenant volume 12345 router subnet " * 40000)[:MiB])
    mixed = bytearray(os.urandom(MiB // 2) + bytes(MiB // 2))  # sample incompressible
    assert adaptive.compress(memoryview(text)) == default.compress(memoryview(text))
    assert adaptive.compress(memoryview(mixed)) == fast.compress(memoryview(mixed))
    small = bytearray(text[: 2 * codecs.SAMPLE])  # too short to sample: the base level
    assert adaptive.compress(memoryview(small)) == fast.compress(memoryview(small))
    for data in (text, mixed):
        packed = adaptive.compress(memoryview(data))
        out = bytearray(len(data))
        adaptive.decompress_into(memoryview(bytearray(packed)), memoryview(out))
        assert out == data
