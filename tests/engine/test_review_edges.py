"""Edge cases found in review: targeted replacements, adoption at apply time, swaps."""

from __future__ import annotations

from pathlib import Path

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def _routed_subnet() -> tuple[MemoryProvider, MemoryProvider, str]:
    """A source router with an interface on n/s, copied to the destination."""
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    router = source.create("router", {"name": "r"}, None)
    net = source.create("network", {"name": "n"}, None)
    subnet = source.create(
        "subnet", {"network": net["id"], "name": "s", "cidr": "10.0.0.0/24"}, None
    )
    source.create("router_interface", {"router": router["id"], "subnet": subnet["id"]}, None)
    return source, destination, str(subnet["id"])


def test_a_targeted_replacement_takes_its_cascade_along(tmp_path: Path) -> None:
    """``--target subnet`` whose cidr changed: the interface on it must be destroyed first, so
    it belongs to the targeted plan (like Terraform, destroying a target takes its dependents)."""
    source, destination, subnet_id = _routed_subnet()
    assert apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path).ok
    source.update("subnet", subnet_id, {"cidr": "10.9.0.0/24"})

    plan = make_plan(MANIFEST, source, destination, targets=("subnet.n/s",)).plan

    actions = {c.address: c.action for c in plan.changes}
    assert actions["router_interface.r/n/s"] is Action.REPLACE
    result = apply_plan(plan, destination, tmp_path)
    assert result.ok, {a: o.message for a, o in result.outcomes.items()}
    assert not make_plan(MANIFEST, source, destination).plan.has_changes


def test_a_create_does_not_adopt_a_copy_that_differs_in_an_immutable_field(
    tmp_path: Path,
) -> None:
    """Between plan and apply a keypair of the same name but another public key appears: the
    create must not call it "already there" (it cannot be updated into ours)."""
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    source.create("keypair", {"name": "ops", "public_key": "ssh-ed25519 AAAAours"}, None)
    plan = make_plan(MANIFEST, source, destination).plan
    destination.create("keypair", {"name": "ops", "public_key": "ssh-ed25519 AAAAtheirs"}, None)

    result = apply_plan(plan, destination, tmp_path)

    outcome = result.outcomes["keypair.ops"]
    assert not result.ok
    assert "public_key" in outcome.message
    [kept] = destination.snapshot().of_kind("keypair")
    assert kept.params["public_key"] == "ssh-ed25519 AAAAtheirs"
