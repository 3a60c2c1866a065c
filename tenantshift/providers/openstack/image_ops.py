"""``ImageOps`` over Glance's v2 API: data streamed with ``GET``/``PUT /images/{id}/file``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from openstack import exceptions as sdk_exc

from tenantshift.providers.base import ProviderError
from tenantshift.providers.openstack.connection import classify, to_provider_error
from tenantshift.providers.openstack.kinds.image import ImageHandler

if TYPE_CHECKING:
    from tenantshift.providers.openstack.provider import OpenStackProvider

OCTETS = {"Content-Type": "application/octet-stream"}


class OpenStackImageOps:
    def __init__(self, provider: OpenStackProvider) -> None:
        self.provider = provider

    @property
    def _handler(self) -> ImageHandler:
        handler = self.provider.handlers["image"]
        assert isinstance(handler, ImageHandler)
        return handler

    def image(self, image_id: str) -> dict[str, Any] | None:
        return self._handler.get(image_id)

    def marked(self, marker: str) -> list[dict[str, Any]]:
        return self._handler.candidates(marker, {})

    def discard(self, image_id: str) -> None:
        handler = self._handler
        current = handler.get(image_id)
        if current is None:
            return
        if current["protected"]:
            handler.update(image_id, {"protected": False})
        handler.delete(image_id)

    @contextmanager
    def read(self, image_id: str, chunk_size: int) -> Iterator[Iterator[bytes]]:
        image = self.provider.conn.image
        call = "image.download_image"

        def open_stream() -> Any:
            response = image.request(f"/images/{image_id}/file", "GET", stream=True)
            sdk_exc.raise_from_response(response)
            return response

        response = self.provider.call(call, open_stream)
        try:
            yield self._chunks(response, chunk_size, call)
        finally:
            response.close()

    def _chunks(self, response: Any, chunk_size: int, call: str) -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size=chunk_size)
        except Exception as exc:  # a reset mid-stream: ours, not requests'
            raise to_provider_error(self.provider.label, call, classify(exc), 1) from None

    def write(self, image_id: str, chunks: Iterable[bytes]) -> None:
        image = self.provider.conn.image
        call = "image.upload_image"
        try:
            # A generator body goes out with chunked transfer encoding, a chunk at a time.
            response = image.request(
                f"/images/{image_id}/file", "PUT", data=iter(chunks), headers=OCTETS
            )
            sdk_exc.raise_from_response(response)
        except ProviderError:
            raise  # the source side of the stream failed: already ours
        except Exception as exc:
            error = to_provider_error(self.provider.label, call, classify(exc), 1)
            raise error from None

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        handler = self._handler
        handler.write_metadata(handler.fetch_or_missing(image_id, "update"), properties)
