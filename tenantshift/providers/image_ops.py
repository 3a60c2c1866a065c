"""The verbs an image migration needs beyond CRUD: read an image's data as a stream, write a
stream into a queued image, find and discard the copies of one source image.

A provider that can move image data offers them as its ``image_ops`` attribute (a snapshot file
or the memory double cannot). Nothing here holds a whole image: data moves as an iterator of
chunks from one Glance to the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ImageOps(Protocol):
    def image(self, image_id: str) -> dict[str, Any] | None:
        """The image's record (``status``, ``size``, ``checksum``, ``os_hash_algo``,
        ``os_hash_value``, ``provenance``, ``migrated``, ``protected``...), None when gone."""
        ...

    def marked(self, marker: str) -> list[dict[str, Any]]:
        """Every image of the project carrying this provenance marker (one listing)."""
        ...

    def discard(self, image_id: str) -> None:
        """Delete an image, unprotecting it first; one that is gone already is done."""
        ...

    def read(self, image_id: str, chunk_size: int) -> AbstractContextManager[Iterator[bytes]]:
        """The image's data in chunks of at most ``chunk_size`` bytes, streamed."""
        ...

    def write(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload ``chunks`` as the data of a queued image, streamed (one attempt: a stream
        cannot be sent twice); returns once Glance has stored and hashed it."""
        ...

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        """Add or overwrite these properties (others are kept)."""
        ...
