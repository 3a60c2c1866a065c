"""The manifest schema: frozen pydantic models, one per section.

Validators raise ``ValueError`` with messages written for the user; the loader turns them into
file:line diagnostics. Messages never include secret values.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_PAIR",
    "KINDS",
    "AnyConversionHosts",
    "Auth",
    "CloudRef",
    "ConversionHost",
    "ConversionHosts",
    "ConversionPair",
    "ConversionPool",
    "Deploy",
    "HostPair",
    "KindSelect",
    "Manifest",
    "Map",
    "Options",
    "Select",
    "Workloads",
    "as_pair",
]

#: Every resource kind tenantshift knows, in reference order. The resource layer checks that
#: its registry matches this tuple.
KINDS: tuple[str, ...] = (
    "network",
    "subnet",
    "router",
    "router_interface",
    "security_group",
    "security_group_rule",
    "port",
    "keypair",
    "volume",
    "server",
    "image",
)

#: Validation-context key holding the directory that relative paths are resolved against.
BASE_DIR = "base_dir"


class _Model(BaseModel):
    # Attribute docstrings become field descriptions (JSON schema, docs), so each field is
    # documented exactly once, next to its declaration.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Expand ``~``; make a relative path relative to the manifest's directory (not the
    current directory, so a manifest behaves the same wherever tenantshift is run from)."""
    value = value.expanduser()
    base = (info.context or {}).get(BASE_DIR)
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value


def _looks_like_id(value: str) -> bool:
    """Keystone ids are 32 hex digits (UUIDs without dashes)."""
    return re.fullmatch(r"[0-9a-fA-F]{32}", value) is not None


# --------------------------------------------------------------------------- clouds


class Auth(_Model):
    """Inline Keystone v3 credentials: password or application credential."""

    auth_url: str
    """Keystone URL, e.g. ``https://keystone.example.com:5000/v3``."""
    username: str | None = None
    """User name (password auth, or application credential given by name)."""
    user_id: str | None = None
    """User id, instead of ``username``."""
    password: SecretStr | None = None
    """Password (password auth). Prefer ``{{ env.VAR }}`` over writing it in the file."""
    user_domain_name: str | None = None
    """Domain of the user by name; ``Default`` when neither it nor ``user_domain_id`` is given."""
    user_domain_id: str | None = None
    """Domain of the user by id."""
    project_name: str | None = None
    """Project to scope to, by name (password auth)."""
    project_id: str | None = None
    """Project to scope to, by id (password auth)."""
    project_domain_name: str | None = None
    """Domain of the project by name; ``Default`` when a project name is given without a domain."""
    project_domain_id: str | None = None
    """Domain of the project by id."""
    application_credential_id: str | None = None
    """Application credential id."""
    application_credential_name: str | None = None
    """Application credential name (needs ``username`` or ``user_id``)."""
    application_credential_secret: SecretStr | None = None
    """Application credential secret."""

    @field_validator("auth_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("auth_url must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_method(self) -> Auth:
        has_password = self.password is not None
        has_appcred = self.application_credential_secret is not None
        if has_password and has_appcred:
            raise ValueError("give either 'password' or 'application_credential_secret', not both")
        if not has_password and not has_appcred:
            raise ValueError(
                "inline auth needs 'password' (with 'username' or 'user_id') or "
                "'application_credential_secret' (with 'application_credential_id' or "
                "'application_credential_name')"
            )
        has_user = self.username is not None or self.user_id is not None
        if has_password and not has_user:
            raise ValueError("password auth needs 'username' or 'user_id'")
        # Fields the chosen method would not send: refused rather than silently dropped.
        if has_password:
            for name in ("application_credential_id", "application_credential_name"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"'{name}' is for application credential auth "
                        "(with 'application_credential_secret'), not with 'password'"
                    )
        if has_appcred:
            if self.application_credential_id is None:
                if self.application_credential_name is None:
                    raise ValueError(
                        "application credential auth needs 'application_credential_id' or "
                        "'application_credential_name'"
                    )
                if not has_user:
                    raise ValueError("'application_credential_name' needs 'username' or 'user_id'")
            project = ("project_name", "project_id", "project_domain_name", "project_domain_id")
            if any(getattr(self, name) is not None for name in project):
                raise ValueError(
                    "application credentials are bound to their project; "
                    "remove 'project_name' / 'project_id' / 'project_domain_*'"
                )
        return self

    @property
    def auth_type(self) -> str:
        """The keystoneauth plugin name for these credentials."""
        return "v3applicationcredential" if self.application_credential_secret else "password"

    def to_auth_dict(self, project: str | None = None) -> dict[str, str]:
        """The ``auth`` dict for openstacksdk, secrets revealed. ``project`` (name or id)
        overrides the project in these credentials."""
        out: dict[str, str] = {"auth_url": self.auth_url}
        plain: tuple[str, ...] = ("username", "user_id", "user_domain_name", "user_domain_id")
        if self.auth_type == "password":
            plain += ("project_name", "project_id", "project_domain_name", "project_domain_id")
        else:
            plain += ("application_credential_id", "application_credential_name")
        for name in plain:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if project is not None and self.auth_type == "password":
            out.pop("project_name", None)
            out.pop("project_id", None)
            out["project_id" if _looks_like_id(project) else "project_name"] = project
        # Keystone needs a domain to resolve names; "Default" is what nearly every cloud uses
        # and what the openstack CLI assumes too.
        if "username" in out and "user_domain_id" not in out:
            out.setdefault("user_domain_name", "Default")
        if "project_name" in out and "project_domain_id" not in out:
            out.setdefault("project_domain_name", "Default")
        if self.password is not None:
            out["password"] = self.password.get_secret_value()
        if self.application_credential_secret is not None:
            out["application_credential_secret"] = (
                self.application_credential_secret.get_secret_value()
            )
        return out


class CloudRef(_Model):
    """Where a project lives: a ``clouds.yaml`` entry or inline credentials."""

    cloud: str | None = None
    """Name of a ``clouds.yaml`` entry. Exactly one of ``cloud`` and ``auth``."""
    auth: Auth | None = None
    """Inline credentials. Exactly one of ``cloud`` and ``auth``."""
    snapshot: Path | None = None
    """A snapshot file saved by ``tenantshift snapshot``, instead of ``cloud``/``auth``: plan
    offline against it (read-only, so apply refuses to write to it)."""
    project: str | None = None
    """Project override, by name or id (32 hex digits are taken as an id)."""
    region: str | None = None
    """Region name; the cloud's default when omitted."""
    verify: bool | str = True
    """TLS verification: ``true``, ``false`` or the path of a CA bundle. With ``cloud``, an
    omitted ``verify`` keeps whatever ``clouds.yaml`` says."""

    @field_validator("verify", mode="before")
    @classmethod
    def _verify_type(cls, value: Any) -> Any:
        # Checked up front: the bool|str union would otherwise report two confusing errors.
        if not isinstance(value, bool | str) or value == "":
            raise ValueError("must be true, false or the path of a CA bundle")
        # A quoted "false" (e.g. rendered from a variable) means false, not a file named so.
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value

    @field_validator("snapshot")
    @classmethod
    def _snapshot_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve_path(value, info)

    @field_validator("verify")
    @classmethod
    def _verify_path(cls, value: bool | str, info: ValidationInfo) -> bool | str:
        if isinstance(value, str):
            return str(_resolve_path(Path(value), info))
        return value

    @model_validator(mode="after")
    def _cloud_xor_auth(self) -> CloudRef:
        given = [k for k in ("cloud", "auth", "snapshot") if getattr(self, k) is not None]
        if len(given) > 1:
            both = " and ".join(given)
            raise ValueError(f"give one of 'cloud', 'auth' and 'snapshot', not {both}")
        if not given:
            raise ValueError(
                "needs 'cloud' (a clouds.yaml entry), 'auth' (inline credentials) "
                "or 'snapshot' (a saved snapshot file)"
            )
        if self.auth is not None and self.project is not None and self.auth.auth_type != "password":
            raise ValueError(
                "'project' cannot be used with application credentials: "
                "they are bound to their project"
            )
        return self

    def to_connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``openstack.connect()``. The only place secrets are revealed."""
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs["auth_type"] = self.auth.auth_type
            kwargs["auth"] = self.auth.to_auth_dict(self.project)
        else:
            kwargs["cloud"] = self.cloud
            if self.project is not None:
                kwargs["project_id" if _looks_like_id(self.project) else "project_name"] = (
                    self.project
                )
        if self.region is not None:
            kwargs["region_name"] = self.region
        # With a clouds.yaml entry, only an explicit `verify` overrides the entry's own setting.
        if self.auth is not None or "verify" in self.model_fields_set:
            if isinstance(self.verify, str):
                kwargs["verify"] = True
                kwargs["cacert"] = self.verify
            else:
                kwargs["verify"] = self.verify
        return kwargs


# --------------------------------------------------------------------------- select


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression '{value}': {exc}") from None
    return value


#: A regular expression, checked when the manifest is loaded.
Regex = Annotated[str, AfterValidator(_check_regex)]


class KindSelect(_Model):
    """Which resources of one kind to migrate, by name. Patterns are anchored (full match)."""

    include: tuple[Regex, ...] | None = None
    """Names to take; everything when omitted."""
    exclude: tuple[Regex, ...] = ()
    """Names to leave out, applied after ``include``."""

    _include: tuple[re.Pattern[str], ...] | None = PrivateAttr(default=None)
    _exclude: tuple[re.Pattern[str], ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        # Compiled once here rather than on every call; re caches too, but not unboundedly.
        if self.include is not None:
            self._include = tuple(re.compile(p) for p in self.include)
        self._exclude = tuple(re.compile(p) for p in self.exclude)

    def selects(self, name: str) -> bool:
        """Whether a resource with this name is selected."""
        if self._include is not None and not any(p.fullmatch(name) for p in self._include):
            return False
        return not any(p.fullmatch(name) for p in self._exclude)


class Select(_Model):
    """Per-kind selection. A kind that is not listed is taken whole."""

    network: KindSelect = KindSelect()
    """Networks."""
    subnet: KindSelect = KindSelect()
    """Subnets."""
    router: KindSelect = KindSelect()
    """Routers."""
    router_interface: KindSelect = KindSelect()
    """Router interfaces."""
    security_group: KindSelect = KindSelect()
    """Security groups."""
    security_group_rule: KindSelect = KindSelect()
    """Security group rules."""
    port: KindSelect = KindSelect()
    """Ports of servers (and free ports): matched by name, or the key for unnamed ones."""
    keypair: KindSelect = KindSelect()
    """Keypairs."""
    volume: KindSelect = KindSelect()
    """Volumes."""
    server: KindSelect = KindSelect()
    """Servers (workloads)."""
    image: KindSelect = KindSelect()
    """Glance images the source project owns (workloads: their data is streamed)."""

    def selects(self, kind: str, name: str) -> bool:
        """Whether the resource ``name`` of ``kind`` is selected: it must fully match one
        ``include`` pattern (when any are given) and no ``exclude`` pattern."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        rule: KindSelect = getattr(self, kind)
        return rule.selects(name)


# Select's fields are declared one by one (for their docs and for "did you mean" on typos);
# this keeps them from drifting away from KINDS.
assert tuple(Select.model_fields) == KINDS, "Select fields must match KINDS"


# --------------------------------------------------------------------------- map

_NAME_FIELDS = ("name", "kind")


class Map(_Model):
    """How names and references change on the way to the destination."""

    flavors: dict[str, str] = {}
    """Source flavor name -> destination flavor name."""
    networks: dict[str, str] = {}
    """Source network name -> an existing destination network to use instead (not migrated)."""
    external_networks: dict[str, str] = {}
    """Source external network name -> destination external network (router gateways)."""
    availability_zones: dict[str, str] = {}
    """Source availability zone -> destination availability zone."""
    volume_types: dict[str, str] = {}
    """Source volume type -> destination volume type."""
    names: str = "{name}"
    """Template of destination names: ``str.format`` with ``{name}`` and optionally ``{kind}``."""

    @field_validator("names")
    @classmethod
    def _names_template(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"invalid names template: {exc}") from None
        fields = [f for _, f, _, _ in parsed if f is not None]
        for name in fields:
            # "{name.upper}" or "{name[0]}" would reach into the object: plain fields only.
            if name not in _NAME_FIELDS:
                raise ValueError(
                    f"unknown placeholder '{{{name}}}' in names template; "
                    "only {name} and {kind} are allowed"
                )
        if "name" not in fields:
            raise ValueError(
                "names template must contain {name}, or every resource of a kind "
                "would get the same name"
            )
        try:
            value.format(name="x", kind="network")
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"invalid names template: {exc}") from None
        return value

    def rename(self, kind: str, name: str) -> str:
        """The destination name of resource ``name`` of ``kind``."""
        return self.names.format(name=name, kind=kind)


# --------------------------------------------------------------------------- conversion hosts

_SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def _check_public_key(value: str) -> str:
    """An OpenSSH public key line: ``<type> <base64> [comment]``. The base64 blob must start
    with its own type name, which catches a pasted fingerprint or a truncated key."""
    parts = value.split()
    problem = "host_key must be an OpenSSH public key line: '<type> <base64> [comment]'"
    if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
        raise ValueError(f"{problem}, with type one of {', '.join(_SSH_KEY_TYPES)}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{problem}; the key part is not valid base64") from None
    kind = parts[0].encode()
    if blob[:4] != len(kind).to_bytes(4, "big") or blob[4 : 4 + len(kind)] != kind:
        raise ValueError(f"{problem}; the key data does not match type {parts[0]}")
    return value


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"'{value}' is not an IP network such as 192.0.2.0/24") from None
    return value


#: An IPv4 or IPv6 network in CIDR notation, checked when the manifest is loaded.
Cidr = Annotated[str, AfterValidator(_check_cidr)]


class Deploy(_Model):
    """What ``tenantshift conversion-hosts deploy`` creates for this host (and ``remove``
    deletes again). Resources found by name that tenantshift did not create (a security group
    or keypair of the user's) are used as they are and never changed or deleted."""

    image: str = Field(min_length=1)
    """Image to boot, by name or id (a conversion image: sshd, python3, sudo for ``user``)."""
    flavor: str = Field(min_length=1)
    """Flavor, by name or id."""
    network: str = Field(min_length=1)
    """Existing network to put the server on, by name or id."""
    floating_ip_network: str | None = None
    """External network to take a floating IP from; the address tenantshift and the other
    host connect to. Without it, the server's fixed IP on ``network`` is the address."""
    security_group: str = Field(default="tenantshift-conversion", min_length=1)
    """Security group for the server; created when missing, with SSH (tcp/22) allowed from the
    other conversion host and from ``allow_ssh_from``."""
    allow_ssh_from: tuple[Cidr, ...] = ()
    """Networks (CIDR) besides the other conversion host allowed to SSH in: where tenantshift
    runs. Only added to a security group tenantshift created."""
    keypair: str = Field(default="tenantshift-conversion", min_length=1)
    """Nova keypair holding the public half of ``key_file``; created when missing. An existing
    keypair of that name must hold the same public key."""
    availability_zone: str | None = None
    """Availability zone for the server; the cloud's default when omitted."""
    volume_size: int | None = Field(default=None, ge=1, le=16384)
    """Boot from a new volume of this many GiB made from ``image`` (deleted with the server);
    boot from the image (ephemeral disk) when omitted."""
    metadata: dict[str, str] = {}
    """Extra server metadata (e.g. for the cloud's own tooling); tenantshift adds its marker."""
    trust_first_use: bool = False
    """When the console log shows no host keys, accept the key the server offers at the first
    connection (reported with its fingerprint) instead of failing. Either way the key is
    recorded and verified on every later connection."""

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("tenantshift"):
                raise ValueError(f"metadata key '{key}': keys starting with 'tenantshift' are ours")
        return value


class ConversionHost(_Model):
    """A server that volumes are attached to while their data is copied, reached over SSH."""

    server: str | None = None
    """Name of the conversion host server in its cloud (to check it is ACTIVE); with
    ``deploy``, the name of the server to create."""
    address: str | None = Field(default=None, min_length=1)
    """Address tenantshift (and the other conversion host) connects to. With ``deploy`` it is
    optional: the deployed server's floating IP (or fixed IP) unless given here (a NAT or port
    forward in front of the host)."""
    port: int = Field(default=22, ge=1, le=65535)
    """SSH port."""
    user: str = "cloud-user"
    """SSH user (needs passwordless sudo for block devices)."""
    key_file: Path
    """Private key file; ``~`` is expanded, relative paths are relative to the manifest."""
    host_key: Annotated[str, AfterValidator(_check_public_key)] | None = None
    """The host's OpenSSH public key line, e.g. ``ssh-ed25519 AAAA...``."""
    known_hosts: Path | None = None
    """A known_hosts file to verify the host key against (relative to the manifest)."""
    host_key_policy: Literal["verify", "insecure-skip"] = "verify"
    """``verify`` (needs ``host_key`` or ``known_hosts``, or ``deploy``) or ``insecure-skip``
    (explicit opt-out of host key checking)."""
    device_dir: str = "/dev/disk/by-id"
    """Where attached volumes appear, by id, on the host."""
    python: str = "python3"
    """Python interpreter on the host, for the copy helper."""
    deploy: Deploy | None = None
    """Have ``tenantshift conversion-hosts deploy`` create this host; its address and host key
    then come from the deployment record in the state directory."""

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve_path(value, info)

    @model_validator(mode="after")
    def _host_key_required(self) -> ConversionHost:
        if self.deploy is not None:
            if self.server is None:
                raise ValueError("'deploy' needs 'server': the name of the server to create")
            for name in ("host_key", "known_hosts"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"with 'deploy', the host key comes from the deployment (console log "
                        f"or first connection); remove '{name}'"
                    )
            return self
        if self.address is None:
            raise ValueError(
                "needs 'address' (where to connect), or 'deploy' to have tenantshift create "
                "the host"
            )
        if self.host_key_policy == "verify" and self.host_key is None and self.known_hosts is None:
            raise ValueError(
                "host_key_policy 'verify' needs 'host_key' (an OpenSSH public key line) or "
                "'known_hosts'; to skip host key checking, set host_key_policy: insecure-skip"
            )
        return self

    def connect_address(self) -> str:
        """The address to connect to; a deployed host not deployed yet has none."""
        if self.address is None:
            raise ValueError(
                f"conversion host {self.server!r} is not deployed yet: run "
                "'tenantshift conversion-hosts deploy -m MANIFEST'"
            )
        return self.address


#: The name the single-pair form's pair gets (journal, plan, messages).
DEFAULT_PAIR = "default"


class ConversionPair(_Model):
    """One source conversion host and the destination host that pulls from it."""

    name: str
    """The pair's name (lowercase letters, digits, ``-``, ``_``): the plan shows it, the
    journal records it, so a re-run resumes a node's copies on the same pair."""
    source: ConversionHost
    """Conversion host in the source cloud."""
    destination: ConversionHost
    """Conversion host in the destination cloud; it pulls data from the source host."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", value):
            raise ValueError(
                "a pair name is 1-32 lowercase letters, digits, '-' or '_', starting with a "
                "letter or digit"
            )
        return value


class _Pairs:
    """What every consumer reads of either form: one normalised tuple of pairs."""

    @property
    def all_pairs(self) -> tuple[ConversionPair, ...]:
        """Every pair, in manifest order (the one-pair form is one pair, ``default``)."""
        raise NotImplementedError

    def pair(self, name: str) -> ConversionPair:
        for pair in self.all_pairs:
            if pair.name == name:
                return pair
        raise KeyError(f"no conversion host pair {name!r} in the manifest")

    def only_pair(self) -> ConversionPair:
        """The pair of a one-pair configuration (the transfer layer's own tests, tools)."""
        pairs = self.all_pairs
        if len(pairs) != 1:
            raise ValueError(f"{len(pairs)} conversion host pairs: name the pair to use")
        return pairs[0]


class ConversionHosts(_Pairs, _Model):
    """The pair of conversion hosts that workload data flows between (the one-pair form)."""

    source: ConversionHost
    """Conversion host in the source cloud."""
    destination: ConversionHost
    """Conversion host in the destination cloud; it pulls data from the source host."""

    @property
    def all_pairs(self) -> tuple[ConversionPair, ...]:
        # Not validated again: the hosts were, and a deployed host's address and host key
        # are filled in from the deploy record afterwards (which 'deploy' forbids a user to
        # write by hand, so re-validating them here would refuse the deployed hosts).
        return (
            ConversionPair.model_construct(
                name=DEFAULT_PAIR, source=self.source, destination=self.destination
            ),
        )


def _host_identity(host: ConversionHost) -> list[str]:
    """What makes two entries the same host: its server, or its SSH endpoint."""
    return ([f"server {host.server!r}"] if host.server else []) + [
        f"address {host.address}:{host.port}"
    ]


class ConversionPool(_Pairs, _Model):
    """Several pairs of conversion hosts (the pool form): volume copies are spread across
    them, largest first, ``options.copy_parallelism`` at once per pair."""

    pairs: list[ConversionPair] = Field(min_length=1)
    """The pairs, each with a unique ``name``; a host (server or address:port) may serve one
    pair only."""

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, value: Any) -> Any:
        if isinstance(value, dict) and ({"source", "destination"} & set(value)):
            raise ValueError(
                "give either 'source' and 'destination' (one pair) or 'pairs' (a pool), not both"
            )
        return value

    @field_validator("pairs")
    @classmethod
    def _distinct(cls, pairs: list[ConversionPair]) -> list[ConversionPair]:
        names: set[str] = set()
        used: dict[str, str] = {}
        for pair in pairs:
            if pair.name in names:
                raise ValueError(f"pair name {pair.name!r} is used twice")
            names.add(pair.name)
            if pair.source.deploy is not None or pair.destination.deploy is not None:
                raise ValueError(
                    f"pair {pair.name!r}: 'deploy' is for the one-pair form (source and "
                    "destination); a pool's hosts are declared (address and host key)"
                )
            # Two pairs on one host would share its link and its slots, and a failover from
            # one to the other would land on the host that just failed.
            for side, host in (("source", pair.source), ("destination", pair.destination)):
                for identity in _host_identity(host):
                    key = f"{side} {identity}"
                    if key in used:
                        raise ValueError(
                            f"the {side} host ({identity}) is in pairs {used[key]!r} and "
                            f"{pair.name!r}: a host may serve one pair only"
                        )
                    used[key] = pair.name
        return pairs

    @property
    def all_pairs(self) -> tuple[ConversionPair, ...]:
        return tuple(self.pairs)


def _hosts_form(value: Any) -> str:
    """Which form a ``conversion_hosts`` value is: ``pairs`` makes it a pool."""
    if isinstance(value, dict):
        return "pool" if "pairs" in value else "pair"
    return "pool" if isinstance(value, ConversionPool) else "pair"


#: The manifest's ``conversion_hosts``: one pair (``source``/``destination``) or a pool.
AnyConversionHosts = ConversionHosts | ConversionPool

#: What the transfer layer accepts: one pair, or a one-pair ``ConversionHosts``.
HostPair = ConversionPair | ConversionHosts


def as_pair(hosts: HostPair) -> ConversionPair:
    """The one pair ``hosts`` names."""
    return hosts if isinstance(hosts, ConversionPair) else hosts.only_pair()


# --------------------------------------------------------------------------- workloads, options


class Workloads(_Model):
    """How servers are migrated."""

    stop_source_servers: bool = False
    """Stop ACTIVE source servers before copying (otherwise they must already be SHUTOFF)."""
    start_destination_servers: bool = False
    """Start servers in the destination once created (otherwise they stay SHUTOFF)."""
    preserve_fixed_ips: bool = True
    """Create destination ports with the source ports' fixed IPs."""
    preserve_macs: bool = False
    """Create destination ports with the source ports' MAC addresses."""
    mode: Literal["cold", "warm"] = "cold"
    """``cold``: a server is stopped and all of its data copied before it boots in the
    destination. ``warm``: each apply *syncs* the running servers' volumes into their
    destination volumes (only what changed since the last sync moves), until ``cutover``
    says to stop them and move the last changes."""
    warm_servers: list[str] | None = None
    """With ``mode: warm``: the source servers (by name) that migrate warm; the others
    migrate cold. Default: every selected server."""
    cutover: bool | list[str] = False
    """With ``mode: warm``: ``true`` cuts every warm server over in the next apply (stop,
    final delta, boot in the destination), a list of server names cuts over those; ``false``:
    the next apply syncs again."""

    @model_validator(mode="after")
    def _warm_fields_need_warm_mode(self) -> Workloads:
        if self.mode == "cold":
            for name in ("warm_servers", "cutover"):
                if getattr(self, name) not in (None, False):
                    raise ValueError(f"{name} needs mode: warm (mode is cold)")
            return self
        if self.warm_servers is not None and not self.warm_servers:
            raise ValueError("warm_servers is empty: leave it out (every server) or use mode: cold")
        if isinstance(self.cutover, list):
            if not self.cutover:
                raise ValueError("cutover is an empty list: use false to keep syncing")
            if self.warm_servers is not None:
                cold = sorted(set(self.cutover) - set(self.warm_servers))
                if cold:
                    raise ValueError(
                        f"cutover names {', '.join(cold)}, not in warm_servers: only a warm "
                        "server is cut over"
                    )
        return self

    def warm_phase(self, server_name: str | None) -> Literal["sync", "cutover"] | None:
        """What the next apply does with a source server's migration: ``sync`` (warm, the
        server keeps running), ``cutover`` (warm, the last changes and the boot), or None
        (cold)."""
        if self.mode == "cold" or server_name is None:
            return None
        if self.warm_servers is not None and server_name not in self.warm_servers:
            return None
        cut = self.cutover if isinstance(self.cutover, bool) else server_name in self.cutover
        return "cutover" if cut else "sync"


class Options(_Model):
    """Engine settings."""

    parallelism: int = Field(default=10, ge=1, le=256)
    """How many resource operations run at once."""
    copy_parallelism: int = Field(default=2, ge=1, le=64)
    """How many volume copies run at once."""
    prune: bool = False
    """Delete destination resources (created by tenantshift) that are no longer selected."""
    state_dir: Path | None = None
    """Directory for the journal and lock; default ``<manifest dir>/.tenantshift/<stem>``."""

    def resolve_state_dir(self, manifest_path: Path | None) -> Path:
        """The state directory for the manifest at ``manifest_path`` (current directory and
        stem ``manifest`` when the manifest was not loaded from a file)."""
        base = manifest_path.parent if manifest_path is not None else Path.cwd()
        if self.state_dir is not None:
            path = self.state_dir.expanduser()
            return path if path.is_absolute() else base / path
        stem = manifest_path.stem if manifest_path is not None else "manifest"
        return base / ".tenantshift" / stem


# --------------------------------------------------------------------------- manifest


class Manifest(_Model):
    """A migration manifest."""

    version: Literal[1]
    """Manifest format version; must be 1."""
    source: CloudRef
    """The project to migrate from."""
    destination: CloudRef
    """The project to migrate to."""
    select: Select = Select()
    """What to take, per kind; everything the source project owns by default."""
    map: Map = Map()
    """Renames and mappings applied to the desired state."""
    conversion_hosts: (
        Annotated[
            Annotated[ConversionHosts, Tag("pair")] | Annotated[ConversionPool, Tag("pool")],
            Discriminator(_hosts_form),
        ]
        | None
    ) = None
    """Needed only to migrate workloads (servers and their volumes)."""
    workloads: Workloads = Workloads()
    """Workload migration settings."""
    options: Options = Options()
    """Engine settings."""

    # Where the manifest was loaded from; set by load_manifest(). Private, so it is neither
    # validated nor dumped nor hashed: moving a file does not change what it asks for.
    _path: Path | None = PrivateAttr(default=None)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if type(value) is int and value == 1:
            return value
        if type(value) is int:
            raise ValueError(f"unsupported manifest version {value}; this tenantshift reads 1")
        # Not lax here: `version: true` or `"1"` would otherwise be taken as 1.
        raise ValueError("must be the number 1")

    @property
    def path(self) -> Path | None:
        """Absolute path of the manifest file, when loaded from one."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the manifest are relative to."""
        return self._path.parent if self._path is not None else Path.cwd()

    @property
    def state_dir(self) -> Path:
        """The resolved state directory (journal, lock)."""
        return self.options.resolve_state_dir(self._path)
