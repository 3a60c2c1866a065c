"""Nova keypairs: owned by the user, not the project; only the public half ever moves."""

from tenantshift.resources.base import REGISTRY, Field, Kind

KEYPAIR = REGISTRY.register(
    Kind(
        name="keypair",
        doc="A keypair, keyed by name. Nova keypairs carry no metadata: matched by name.",
        fields=(
            # Templated by map.names like every other name: a keypair belongs to the user, so
            # a renamed copy is a new key of the destination user (the server's key_name
            # follows, being a reference to it).
            Field("name", is_name=True),
            Field("public_key", replace=True),
            Field("type", replace=True, default="ssh"),
        ),
        key=lambda p, _: str(p["name"]),
        provenance=False,
    )
)
