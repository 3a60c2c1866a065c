"""Rendering DOT with Graphviz's ``dot``, when it is installed (it is optional: without it the
graph command prints DOT and says how to get a picture)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tenantshift.errors import TenantshiftError, UsageError

#: Output file suffixes ``graph -o`` accepts, and the ``dot -T`` format each needs (None: DOT).
FORMATS: dict[str, str | None] = {".svg": "svg", ".png": "png", ".dot": None, ".gv": None}

HINT = (
    "Graphviz's dot is not installed, so here is the DOT text instead: install Graphviz "
    "(Debian: apt-get install graphviz) to get {name} written, or pipe this into dot -Tsvg"
)


class GraphvizError(TenantshiftError):
    """``dot`` is missing or failed."""


class GraphvizMissing(GraphvizError):
    pass


def output_format(path: Path) -> str | None:
    """The ``dot -T`` format for ``path``; None for a DOT file; ``UsageError`` for anything else."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"{path}: the graph is written as {', '.join(FORMATS)} (by its suffix), not {suffix!r}"
        )
    return FORMATS[suffix]


def dot_binary() -> str | None:
    return shutil.which("dot")


def render(dot_text: str, fmt: str, *, timeout: float = 300) -> bytes:
    """``dot -T<fmt>`` of ``dot_text``; raises ``GraphvizMissing`` without Graphviz."""
    binary = dot_binary()
    if binary is None:
        raise GraphvizMissing("Graphviz's dot is not installed")
    try:
        done = subprocess.run(
            [binary, f"-T{fmt}"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"dot -T{fmt} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise GraphvizError(f"dot -T{fmt} failed: {message}")
    return done.stdout
