"""The reference API of ``Kind``: scalar, list and list-of-dicts references, read and mapped."""

from __future__ import annotations

import pytest

from tenantshift.resources.base import Field, Kind, key_of

BOX = Kind(
    name="box",
    fields=(
        Field("name", is_name=True),
        Field("network", ref="network"),
        Field("nets", ref="network", many=True, default=[]),
        Field("groups", ref="security_group", many=True, unordered=True, default=[]),
        Field("addrs", ref="subnet", many=True, ref_key="subnet", unordered=True, default=[]),
    ),
    key=lambda p, _: str(p["name"]),
)

PARAMS = {
    "name": "vm",
    "network": "n1",
    "nets": ["n2", "n1"],
    "groups": ["g2", "g1"],
    "addrs": [{"subnet": "s1", "ip_address": "10.0.0.5"}, {"subnet": None, "ip_address": "x"}],
}


def test_references_walk_scalars_lists_and_dicts_skipping_none() -> None:
    found = [(f.name, value) for f, value in BOX.references(PARAMS)]
    assert found == [
        ("network", "n1"),
        ("nets", "n2"),
        ("nets", "n1"),
        ("groups", "g2"),
        ("groups", "g1"),
        ("addrs", "s1"),
    ]
    assert BOX.references({"name": "vm", "network": None, "nets": None}) == []


def test_map_references_maps_every_shape_and_keeps_the_rest() -> None:
    mapped = BOX.map_references(PARAMS, lambda v: f"x.{v}")
    assert mapped["network"] == "x.n1"
    assert mapped["nets"] == ["x.n2", "x.n1"]  # ordered: order kept
    assert mapped["groups"] == ["x.g1", "x.g2"]  # unordered: sorted again after mapping
    assert mapped["addrs"] == [
        {"subnet": "x.s1", "ip_address": "10.0.0.5"},
        {"subnet": None, "ip_address": "x"},
    ]
    assert mapped["name"] == "vm"
    assert PARAMS["nets"] == ["n2", "n1"]  # a copy: the input is untouched
    assert BOX.map_references({"network": None}, lambda v: "boom") == {"network": None}


def test_unordered_lists_are_resorted_after_mapping() -> None:
    # ids sort one way, addresses another: both sides of a comparison must agree.
    mapped = BOX.map_references({"groups": ["a", "b"]}, {"a": "z", "b": "y"}.__getitem__)
    assert mapped["groups"] == ["y", "z"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"many": True}, "needs ref="), ({"ref": "subnet", "ref_key": "subnet"}, "needs many")],
)
def test_inconsistent_declarations_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Field("x", **kwargs)  # type: ignore[arg-type]


def test_key_of() -> None:
    assert key_of("subnet.app-net/app-v4") == "app-net/app-v4"
    with pytest.raises(ValueError):
        key_of("no-dot")
