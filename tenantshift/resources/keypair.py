"""Nova keypairs: owned by the user, not the project; only the public half ever moves."""

from tenantshift.resources.base import REGISTRY, Field, Kind

KEYPAIR = REGISTRY.register(
    Kind(
        name="keypair",
        doc="A keypair, keyed by name. Nova keypairs carry no metadata: matched by name.",
        fields=(
            Field("name"),
            Field("public_key", replace=True),
            Field("type", replace=True, default="ssh"),
        ),
        key=lambda p, _: str(p["name"]),
        provenance=False,
    )
)
