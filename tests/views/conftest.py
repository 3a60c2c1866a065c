from __future__ import annotations

import pytest

from tests.debian import ensure_debian


@pytest.fixture(scope="session")
def graphviz_dot() -> str:
    """Graphviz's ``dot``, installed from Debian when missing."""
    return ensure_debian("dot", "graphviz")
