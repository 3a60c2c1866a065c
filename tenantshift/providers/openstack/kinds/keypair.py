"""Nova keypairs: owned by the user, addressed by name, no metadata (matched by name)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from tenantshift.providers.openstack.connection import ConflictError
from tenantshift.providers.openstack.kinds.base import (
    KindHandler,
    ProviderContext,
    QuotaSource,
    Records,
    Recover,
    SdkObject,
    SdkObjects,
    Usage,
    register_handler,
)
from tenantshift.resources import Record


def keypair_record(res: Any) -> Record:
    return {
        "name": res.name,
        "public_key": (res.public_key or "").strip(),
        "type": res.type or "ssh",
        # Nova keypairs are addressed by name.
        "id": res.name,
        "provenance": None,
        "fingerprint": res.fingerprint,
        "user_id": getattr(res, "user_id", None),
        "created_at": res.created_at,
    }


def _read_nova_limits(
    ctx: ProviderContext, project: str, attrs: Collection[str]
) -> dict[str, Usage]:
    """Nova's absolute limits: a limit without usage (the handler counts its records)."""
    limits = ctx.call("compute.get_limits", lambda: ctx.conn.compute.get_limits())
    absolute = getattr(limits, "absolute", None)
    out: dict[str, Usage] = {}
    for attr in attrs:
        value = getattr(absolute, attr, None)
        if value is not None:
            out[attr] = Usage(limit=int(value))
    return out


NOVA_LIMITS = QuotaSource("nova-limits", _read_nova_limits)


@register_handler
class KeypairHandler(KindHandler):
    kind = "keypair"
    quota_source = NOVA_LIMITS
    quota_attr = "keypairs"
    drop_none = frozenset({"type"})

    def list(self, project_id: str) -> SdkObjects:
        # Keypairs belong to the user, not the project: the listing takes no project filter.
        return list(self.ctx.conn.compute.keypairs())

    def to_record(self, res: SdkObject) -> Record:
        return keypair_record(res)

    def fetch(self, id: str) -> SdkObject:
        compute = self.ctx.conn.compute
        return self.ctx.call("compute.get_keypair", lambda: compute.get_keypair(id))

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        found = self.get(str(params["name"]))
        return [found] if found else []

    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        compute = self.ctx.conn.compute

        def same_key() -> Record | None:
            found = recover()
            if found is not None and found["public_key"] != str(attrs["public_key"]).strip():
                raise ConflictError(
                    f"{self.ctx.label}: keypair {attrs['name']!r} exists with another public key",
                    call="compute.create_keypair",
                )
            return found

        try:
            return self.ctx.call(
                "compute.create_keypair",
                lambda: compute.create_keypair(**attrs),
                recover=same_key,
            )
        except ConflictError:
            found = same_key()
            if found is None:
                raise
            return found

    def delete_call(self, id: str) -> None:
        compute = self.ctx.conn.compute
        self.ctx.call(
            "compute.delete_keypair", lambda: compute.delete_keypair(id, ignore_missing=False)
        )
