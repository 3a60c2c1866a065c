"""The transfer tests against real sshd processes reuse the integration suite's session
fixture ``devcloud`` (loaded by path: a non-root conftest may not use pytest_plugins)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "tests_integration_conftest",
    Path(__file__).resolve().parents[1] / "integration" / "conftest.py",
)
assert _spec and _spec.loader
_integration = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _integration  # dataclasses look their module up there
_spec.loader.exec_module(_integration)

devcloud = _integration.devcloud
