"""The transfer tests against real sshd processes reuse the integration suite's session
fixture ``devcloud`` (loaded by path: a non-root conftest may not use pytest_plugins)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from .fakes import DST_ID, SRC_ID
from .helpers import PAIR_SIZE, STANDARD_REGIONS, make_volume

_spec = importlib.util.spec_from_file_location(
    "tests_integration_conftest",
    Path(__file__).resolve().parents[1] / "integration" / "conftest.py",
)
assert _spec and _spec.loader
_integration = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _integration  # dataclasses look their module up there
_spec.loader.exec_module(_integration)

devcloud = _integration.devcloud


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A source volume of ``PAIR_SIZE`` with the standard regions and an empty destination,
    each in its host's device directory: (source dir, destination dir, source, destination)."""
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src, dst = src_dir / f"virtio-{SRC_ID[:20]}", dst_dir / f"virtio-{DST_ID[:20]}"
    make_volume(src, PAIR_SIZE, STANDARD_REGIONS)
    with open(dst, "wb") as f:
        f.truncate(PAIR_SIZE)
    return src_dir, dst_dir, src, dst
