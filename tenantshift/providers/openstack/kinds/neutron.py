"""Neutron kinds: network, subnet, router, security group and rule.

They share one shape (``network.<verb>_<kind>`` proxy calls, project-filtered plural listings,
tags, one quota call), so ``NeutronHandler`` does the work and each kind is a few lines of data:
its plural, its SDK attribute names, the fields not to send as null, the query parts of its key.
Only the router (the gateway is an external network *name*) and the rule (no tags, no update,
409 on a duplicate) add behaviour.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from tenantshift.providers.openstack import records as rec
from tenantshift.providers.openstack.connection import ConflictError
from tenantshift.providers.openstack.kinds import neutron_records as nrec
from tenantshift.providers.openstack.kinds.base import (
    KindHandler,
    Listing,
    Names,
    NeutronTags,
    ProvenanceStore,
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


def _read_neutron_quota(
    ctx: ProviderContext, project: str, attrs: Collection[str]
) -> dict[str, Usage]:
    quota = ctx.call(
        "network.get_quota(details)", lambda: ctx.conn.network.get_quota(project, details=True)
    )
    out: dict[str, Usage] = {}
    for attr in attrs:
        detail = getattr(quota, attr, None) or {}
        limit = detail.get("limit")
        if limit is None:
            continue
        out[attr] = Usage(
            limit=int(limit), used=detail.get("used") or 0, reserved=detail.get("reserved") or 0
        )
    return out


#: One ``get_quota(details=True)`` answers for every Neutron kind.
NEUTRON_QUOTA = QuotaSource("neutron", _read_neutron_quota)


def _unless_default(
    params: Mapping[str, Any], field: str, default: Any, *, creating: bool
) -> dict[str, Any]:
    """An attribute of an optional extension (``stateful``, ``service_types``): a create sends
    it only when it is not the default, so a cloud without the extension still takes the
    create; an update sends it whenever it changes (clearing it is a change)."""
    if field not in params:
        return {}
    value = params[field]
    if value is None or (creating and value == default):
        return {}
    return {field: sorted(value) if isinstance(value, list) else value}


#: Shared by every tagged Neutron kind (stateless: per-kind state lives on the handler).
TAGS = NeutronTags()


class NeutronHandler(KindHandler):
    """A Neutron kind with the usual proxy verbs and a project-filtered plural listing."""

    provenance_store: ClassVar[ProvenanceStore | None] = TAGS
    quota_source = NEUTRON_QUOTA
    #: The proxy's listing (``networks``); also the kind's attribute in Neutron's quota.
    plural: ClassVar[str]
    #: Key fields -> list-query filters, besides the name (a subnet's name is per network).
    key_filters: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "plural" in cls.__dict__:
            cls.quota_attr = cls.plural

    # -- reading ---------------------------------------------------------------------------
    def list(self, project_id: str) -> SdkObjects:
        return list(getattr(self.ctx.conn.network, self.plural)(project_id=project_id))

    def fetch(self, id: str) -> SdkObject:
        get = getattr(self.ctx.conn.network, f"get_{self.kind}")
        return self.ctx.call(f"network.get_{self.kind}", lambda: get(id))

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        """Server-side filtered: by our tag first, then by the natural key's parts."""
        lister = getattr(self.ctx.conn.network, self.plural)
        project = self.ctx.project_id
        if source_id is not None:
            tagged = self.ctx.call(
                f"network.{self.plural}(tags)",
                lambda: list(lister(project_id=project, tags=rec.provenance_tag(source_id))),
            )
            found = [self.to_record(r) for r in tagged]
            if found:
                return found
        query: dict[str, Any] = {"project_id": project, "name": params.get("name")}
        for field, attr in self.key_filters.items():
            query[attr] = params[field]
        by_key = self.ctx.call(f"network.{self.plural}(name)", lambda: list(lister(**query)))
        return [self.to_record(r) for r in by_key]

    # -- writing ---------------------------------------------------------------------------
    def create(self, params: Mapping[str, Any], marker: str | None, recover: Recover) -> Record:
        try:
            return super().create(params, marker, recover)
        except ConflictError as exc:
            # Rules: Neutron refuses a duplicate (and names it). If it is our rule, it is done.
            found = recover()
            if found is not None:
                return found
            raise ConflictError(f"{exc} (wanted {dict(params)})", call=exc.call) from None

    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        create = getattr(self.ctx.conn.network, f"create_{self.kind}")
        return self.ctx.call(
            f"network.create_{self.kind}", lambda: create(**attrs), recover=recover
        )

    def update_call(self, id: str, attrs: dict[str, Any]) -> SdkObject:
        update = getattr(self.ctx.conn.network, f"update_{self.kind}")
        return self.ctx.call(f"network.update_{self.kind}", lambda: update(id, **attrs))

    def delete_call(self, id: str) -> None:
        remove = getattr(self.ctx.conn.network, f"delete_{self.kind}")
        # Neutron deletes synchronously: nothing to wait for afterwards.
        self.ctx.call(f"network.delete_{self.kind}", lambda: remove(id, ignore_missing=False))


@register_handler
class NetworkHandler(NeutronHandler):
    kind = "network"
    plural = "networks"
    drop_none = frozenset({"mtu", "description", "is_port_security_enabled", "is_admin_state_up"})

    def to_record(self, res: SdkObject) -> Record:
        return nrec.network_record(res)

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        # External networks are infrastructure, not tenant resources, even when owned here.
        return [self.to_record(n) for n in raw if not n.is_router_external]


@register_handler
class SubnetHandler(NeutronHandler):
    kind = "subnet"
    plural = "subnets"
    sdk_names = {"network": "network_id"}
    drop_none = frozenset({"description", "ipv6_ra_mode", "ipv6_address_mode", "is_dhcp_enabled"})
    key_filters = {"network": "network_id"}
    handled_fields = frozenset({"service_types"})

    def request_extras(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        return _unless_default(params, "service_types", [], creating=creating)

    def to_record(self, res: SdkObject) -> Record:
        self.ctx.subnet_gateways[str(res.id)] = res.gateway_ip
        return nrec.subnet_record(res)

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        # The subnets of an external network go with it (the project may own that network).
        external = {n.id for n in listing.get("network", ()) if n.is_router_external}
        return [r for r in map(self.to_record, raw) if r["network"] not in external]


@register_handler
class RouterHandler(NeutronHandler):
    kind = "router"
    plural = "routers"
    drop_none = frozenset({"description", "is_admin_state_up"})
    #: The gateway is sent as ``external_gateway_info`` with the network's *id*.
    handled_fields = frozenset({"external_network"})

    def to_record(self, res: SdkObject) -> Record:
        names = self.ctx.external_names()
        gateway = (res.external_gateway_info or {}).get("network_id")
        if gateway and gateway not in names:
            names = self.ctx.external_names(refresh=True)
        return nrec.router_record(res, names)

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        # ``externals`` has just listed the external networks: no refresh per router.
        names = self.ctx.external_names()
        return [nrec.router_record(r, names) for r in raw]

    def externals(self) -> dict[str, Names]:
        names = self.ctx.external_names(refresh=True)
        return {"external_network": sorted(set(names.values()))}

    def request_extras(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        if "external_network" not in params:
            return {}
        ext = params["external_network"]
        if not ext:
            # On create no gateway is the default; on update an empty dict clears it.
            return {} if creating else {"external_gateway_info": {}}
        return {"external_gateway_info": {"network_id": self.ctx.external_id(str(ext))}}


@register_handler
class SecurityGroupHandler(NeutronHandler):
    kind = "security_group"
    plural = "security_groups"
    drop_none = frozenset({"description"})
    handled_fields = frozenset({"stateful"})

    def request_extras(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        return _unless_default(params, "stateful", True, creating=creating)

    def to_record(self, res: SdkObject) -> Record:
        return nrec.security_group_record(res)


@register_handler
class SecurityGroupRuleHandler(NeutronHandler):
    """Rules take no tags and have no update call: matched by content, replaced on change."""

    kind = "security_group_rule"
    plural = "security_group_rules"
    provenance_store = None
    sdk_names = {
        "security_group": "security_group_id",
        "ethertype": "ether_type",
        "remote_group": "remote_group_id",
    }
    drop_none = frozenset(
        {
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group",
            "description",
        }
    )

    def to_record(self, res: SdkObject) -> Record:
        return nrec.security_group_rule_record(res)

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        net = self.ctx.conn.network
        group = params["security_group"]
        rules = self.ctx.call(
            "network.security_group_rules",
            lambda: list(net.security_group_rules(security_group_id=group)),
        )
        return [self.to_record(r) for r in rules]

    def update_call(self, id: str, attrs: dict[str, Any]) -> SdkObject:
        return KindHandler.update_call(self, id, attrs)  # Neutron has no rule update
