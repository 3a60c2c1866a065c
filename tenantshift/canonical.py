"""Canonical JSON: one text per value (sorted keys, no whitespace), for hashes and orderings.

At the package root, so the manifest's hash and the snapshots' digests and orderings share it.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any, *, ensure_ascii: bool = True) -> str:
    """``ensure_ascii`` only for what was hashed with non-ASCII kept as is (the manifest): the
    text is stored in saved plans, so it must not change under them."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=ensure_ascii
    )
