"""Providers: readers and writers of one cloud project behind one protocol."""

from tenantshift.providers.base import NotFoundError, Provider, ProviderError, ReadOnlyError

__all__ = ["NotFoundError", "Provider", "ProviderError", "ReadOnlyError"]
